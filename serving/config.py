"""Every ``CHURN_*`` setting of the scoring service, parsed and checked once, at startup.

A setting that cannot be honoured stops the service before it listens, with an error that names
the variable and says what is expected: ``CHURN_RATE_BURST=nan`` used to be accepted and made
every request hang 30 s and fail, ``CHURN_MAX_BODY_BYTES=-1`` made even ``/healthz`` answer 413.
``serving.service`` calls :func:`load_serving_settings` at import, which runs in the
``bentoml serve`` process itself, so a bad value is one clear error and a non-zero exit rather
than a worker that dies and is restarted forever.

Non-numeric settings are validated where they are parsed (``CHURN_SERVING_MODE`` and
``CHURN_CANARY_FRACTION`` in ``serving.challenger``, the rate limits in ``serving.ratelimit``);
this module calls those parsers so that all of them run at the same moment.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY_BYTES_ENV = "CHURN_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""Room for a full ``/score_events`` history (~150 bytes per event) and any batch of 1000."""
MAX_INFLIGHT_BYTES_ENV = "CHURN_MAX_INFLIGHT_BYTES"
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
"""Request bytes being parsed or scored at once in one worker (see ``serving.limits``)."""
TRUSTED_PROXIES_ENV = "CHURN_TRUSTED_PROXIES"
FORWARDED_ALLOW_IPS_ENV = "FORWARDED_ALLOW_IPS"
"""uvicorn's own variable, read when BentoML builds the server: which peers may set
``X-Forwarded-For``. uvicorn defaults it to loopback; we set it from ``CHURN_TRUSTED_PROXIES``."""
MAX_BYTES_LIMIT = 1 << 40
"""Above 1 TiB a byte limit is a typo, not a setting."""


class SettingError(ValueError):
    """A ``CHURN_*`` variable with a value the service cannot honour; the message names it."""


def positive_int(
    env: Mapping[str, str], name: str, default: int, maximum: int = MAX_BYTES_LIMIT
) -> int:
    """``env[name]`` as an integer in ``[1, maximum]``; unset or empty -> ``default``."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected a whole number") from None
    if not 1 <= value <= maximum:
        raise SettingError(f"{name}={raw!r}: must be between 1 and {maximum}")
    return value


def finite_float(name: str, raw: str, minimum: float, maximum: float = math.inf) -> float:
    """``raw`` as a finite float in ``[minimum, maximum]``, else :class:`SettingError`."""
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected a number") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        bound = (
            f"between {minimum:g} and {maximum:g}"
            if math.isfinite(maximum)
            else (f"a finite number >= {minimum:g}")
        )
        raise SettingError(f"{name}={raw!r}: must be {bound}")
    return value


def trusted_proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """``CHURN_TRUSTED_PROXIES``: comma-separated addresses or networks (``10.0.0.0/8``) whose
    ``X-Forwarded-For`` is believed; empty (the default) believes nobody's."""
    raw = env.get(TRUSTED_PROXIES_ENV) or ""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item)
        except ValueError:
            raise SettingError(
                f"{TRUSTED_PROXIES_ENV}: {item!r} is not an IP address or network "
                "(host bits must be zero: 10.0.0.0/8, not 10.0.0.1/8)"
            ) from None
    return items


@dataclass(frozen=True)
class ServingSettings:
    max_body_bytes: int
    max_inflight_bytes: int
    trusted_proxies: tuple[str, ...]


def load_serving_settings(
    env: Mapping[str, str] | None = None, *, has_challenger: bool = False
) -> ServingSettings:
    """Parse and check every serving setting (see the module docstring); raise on the first bad
    one with its name. Also runs the rate-limit and serving-mode parsers."""
    from serving.challenger import serving_mode
    from serving.ratelimit import configured_limits

    env = os.environ if env is None else env
    max_body = positive_int(env, MAX_BODY_BYTES_ENV, DEFAULT_MAX_BODY_BYTES)
    inflight = positive_int(env, MAX_INFLIGHT_BYTES_ENV, max(DEFAULT_MAX_INFLIGHT_BYTES, max_body))
    if inflight < max_body:
        raise SettingError(
            f"{MAX_INFLIGHT_BYTES_ENV}={inflight} is below {MAX_BODY_BYTES_ENV}={max_body}: "
            "a single allowed body could never be accepted"
        )
    configured_limits(env)
    serving_mode(has_challenger, env)
    return ServingSettings(max_body, inflight, trusted_proxies(env))


def apply_trusted_proxies(proxies: tuple[str, ...]) -> None:
    """Tell uvicorn whose forwarded headers to believe (nobody's unless configured). BentoML
    builds uvicorn's config after importing the service, in the same process, so setting its
    variable here takes effect; it is not a BentoML setting."""
    os.environ[FORWARDED_ALLOW_IPS_ENV] = ",".join(proxies)
