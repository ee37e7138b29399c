"""Every ``CHURN_*`` setting of the scoring service, parsed and checked once into one object.

A setting that cannot be honoured stops the service before it listens, with an error that names
the variable and says what is expected. A value that parses but cannot work is refused too:
``CHURN_RATE_BURST=nan`` would grant no token ever (every request would hang and fail), and
``CHURN_MAX_BODY_BYTES=-1`` would make even ``/healthz`` answer 413.
``serving.service`` calls :func:`load_serving_settings` when it is imported, which happens in the
``bentoml serve`` process itself, so a bad value is one clear error and a non-zero exit rather
than a worker that dies and is restarted forever.

This module and :mod:`churn.settings` are the only ones that touch ``os.environ``: every other
serving module receives its settings as arguments (the middleware as ``add_asgi_middleware``
options, the service class from :data:`serving.service.SETTINGS`), so a test builds them from a
plain dict and nothing re-reads a variable per request. The parsers of every setting live here
(rate limits, serving mode included), so this module imports no other serving module and the
service's modules form no import cycle. Writes to the process environment, for what BentoML
and uvicorn read after importing the service, are the ``apply_*`` functions at the end.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn.settings import churn_home

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
API_KEYS_ENV = "CHURN_API_KEYS"
MODEL_TAG_ENV = "CHURN_MODEL_TAG"
CHALLENGER_TAG_ENV = "CHURN_CHALLENGER_TAG"
MODE_ENV = "CHURN_SERVING_MODE"
FRACTION_ENV = "CHURN_CANARY_FRACTION"
RATE_ENV = "CHURN_RATE_LIMIT"
BURST_ENV = "CHURN_RATE_BURST"
PER_KEY_ENV = "CHURN_RATE_LIMIT_KEYS"
OMP_THREADS_ENV = "OMP_NUM_THREADS"
HEAD_TIMEOUT_ENV = "CHURN_HEAD_TIMEOUT_SECONDS"
DEFAULT_HEAD_TIMEOUT_SECONDS = 10.0
"""From a connection's first byte (or its previous answer) to the end of its request head.
Browsers send a head in one packet; a client trickling one is holding a connection open."""
BODY_TIMEOUT_ENV = "CHURN_BODY_TIMEOUT_SECONDS"
DEFAULT_BODY_TIMEOUT_SECONDS = 20.0
"""From the end of the head to the end of the body: below BentoML's 30 s request timeout, so a
slow upload gets our 408 rather than its 504 (``serving.limits``)."""
MIN_BODY_RATE_ENV = "CHURN_MIN_BODY_RATE"
DEFAULT_MIN_BODY_RATE = 16 * 1024
"""Bytes per second a body must average once its grace period is over (``serving.limits``)."""
MAX_TIMEOUT_SECONDS = 3600.0
MAX_BYTES_LIMIT = 1 << 40
"""Above 1 TiB a byte limit is a typo, not a setting."""

SHADOW, CANARY, OFF = "shadow", "canary", "off"
MODES = (SHADOW, CANARY, OFF)
DEFAULT_CANARY_FRACTION = 0.1

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


class SettingError(ValueError):
    """A ``CHURN_*`` variable with a value the service cannot honour; the message names it."""


class RateLimitConfigError(SettingError):
    """A malformed limit: raised at startup, so a typo stops the service."""


class ServingConfigError(SettingError):
    """A serving-mode setting that cannot be honoured; raised at startup."""


# --- numbers and addresses -------------------------------------------------------------------


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


def api_keys(env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Non-empty keys from ``CHURN_API_KEYS``; unset or empty means authentication is off.

    A value that holds no real key (``,`` or blanks) refuses to start: whoever set it meant to
    turn authentication on, and starting open would say nothing about it."""
    raw = env.get(API_KEYS_ENV) or ""
    keys = tuple(key.strip().encode() for key in raw.split(",") if key.strip())
    if raw and not keys:
        raise SettingError(
            f"{API_KEYS_ENV}={raw!r}: holds no key; give comma-separated keys, or unset it to "
            "serve without authentication"
        )
    return keys


# --- rate limits (``serving.ratelimit`` enforces them) ---------------------------------------


@dataclass(frozen=True)
class Limit:
    rate: float
    """Tokens per second."""
    burst: float

    def describe(self) -> str:
        return f"{self.rate:g}/s, burst {self.burst:g}"


@dataclass(frozen=True)
class RateLimits:
    default: Limit | None = None
    per_key: Mapping[bytes, Limit] = field(default_factory=dict)
    """SHA-256 of the key -> its limit."""

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.per_key)


def key_digest(key: bytes) -> bytes:
    """How a key is remembered in the limits table: never the key itself."""
    return hashlib.sha256(key).digest()


def parse_rate(text: str, name: str = RATE_ENV) -> float:
    """``<n>/s``, ``<n>/m`` or ``<n>/h`` as tokens per second."""
    match = _RATE.match(text.lower())
    if not match or match.group(2) not in _UNITS:
        raise RateLimitConfigError(f"{name}: rate {text!r}: expected '<n>/s', '<n>/m' or '<n>/h'")
    rate = float(match.group(1)) / _UNITS[match.group(2)]
    if not 0 < rate < math.inf:
        raise RateLimitConfigError(f"{name}: rate {text!r} must be positive and finite")
    return rate


def parse_limit(
    text: str, burst: str | None = None, *, name: str = RATE_ENV, burst_name: str = BURST_ENV
) -> Limit:
    """``100/s`` (+ optional burst) -> :class:`Limit`; default burst: one second's worth.
    A burst must be a finite number >= 1 (``nan`` compares false with everything, so it would
    pass a ``< 1`` check and then no token would ever be granted)."""
    rate = parse_rate(text, name)
    if burst in (None, ""):
        return Limit(rate, max(1.0, math.ceil(rate)))
    try:
        size = finite_float(burst_name, str(burst), 1.0, 1e12)
    except SettingError as error:
        raise RateLimitConfigError(str(error)) from None
    return Limit(rate, size)


def configured_limits(env: Mapping[str, str]) -> RateLimits:
    """``CHURN_RATE_LIMIT``, ``CHURN_RATE_BURST`` and ``CHURN_RATE_LIMIT_KEYS`` (see
    ``serving.ratelimit``); all unset means no limits."""
    rate = (env.get(RATE_ENV) or "").strip()
    default = parse_limit(rate, (env.get(BURST_ENV) or "").strip() or None) if rate else None
    per_key: dict[bytes, Limit] = {}
    for item in (env.get(PER_KEY_ENV) or "").split(","):
        if not item.strip():
            continue
        key, sep, spec = item.strip().rpartition("=")
        if not sep or not key:
            raise RateLimitConfigError(f"{PER_KEY_ENV}: expected '<key>=<rate>[:<burst>]' items")
        rate_text, _, burst = spec.partition(":")
        per_key[key_digest(key.strip().encode())] = parse_limit(
            rate_text, burst or None, name=PER_KEY_ENV, burst_name=f"{PER_KEY_ENV} (burst)"
        )
    return RateLimits(default, per_key)


# --- serving mode (``serving.challenger`` routes by it) --------------------------------------


@dataclass(frozen=True)
class ServingMode:
    mode: str
    canary_fraction: float

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"serving_mode": self.mode}
        if self.mode == CANARY:
            out["canary_fraction"] = self.canary_fraction
        return out


def requested_mode(env: Mapping[str, str]) -> tuple[str, float]:
    """``CHURN_SERVING_MODE`` (``""`` when unset: the default follows the challenger) and
    ``CHURN_CANARY_FRACTION``, each checked on its own."""
    raw = (env.get(MODE_ENV) or "").strip().lower()
    if raw and raw not in MODES:
        raise ServingConfigError(f"{MODE_ENV}={raw!r}: expected one of {', '.join(MODES)}")
    fraction_raw = (env.get(FRACTION_ENV) or "").strip()
    try:
        fraction = float(fraction_raw) if fraction_raw else DEFAULT_CANARY_FRACTION
    except ValueError:
        raise ServingConfigError(f"{FRACTION_ENV}={fraction_raw!r}: not a number") from None
    if not 0.0 <= fraction <= 1.0:  # also refuses nan, which compares false with everything
        raise ServingConfigError(f"{FRACTION_ENV}={fraction}: must be between 0 and 1")
    return raw, fraction


def resolve_mode(requested: str, fraction: float, has_challenger: bool) -> ServingMode:
    """Shadow by default when a challenger is packaged, off otherwise. Asking for shadow or
    canary without a challenger is a configuration error (the operator expects two models)."""
    mode = requested or (SHADOW if has_challenger else OFF)
    if mode != OFF and not has_challenger:
        raise ServingConfigError(
            f"{MODE_ENV}={mode} needs a challenger, and this service has none: build the Bento "
            f"with one (churn_bento does when the store holds one) or set {CHALLENGER_TAG_ENV}"
        )
    return ServingMode(mode, fraction)


def serving_mode(has_challenger: bool, env: Mapping[str, str]) -> ServingMode:
    """The mode ``env`` asks for, given whether a challenger is packaged."""
    return resolve_mode(*requested_mode(env), has_challenger)


# --- the one object --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingSettings:
    """Everything the service reads from its environment, parsed once."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    trusted_proxies: tuple[str, ...] = ()
    api_keys: tuple[bytes, ...] = field(default=(), repr=False)
    """``CHURN_API_KEYS``; kept out of ``repr`` so a logged settings object shows no secret."""
    rate_limits: RateLimits = field(default_factory=RateLimits, repr=False)
    requested_mode: str = ""
    """``CHURN_SERVING_MODE`` as given (validated); ``""`` lets :meth:`serving_mode` choose."""
    canary_fraction: float = DEFAULT_CANARY_FRACTION
    model_tag: str | None = None
    """``CHURN_MODEL_TAG``; the Bento's ``model_tag`` build argument wins over it."""
    challenger_tag: str | None = None
    """``CHURN_CHALLENGER_TAG`` as given: a tag, ``auto``, ``none`` or unset."""
    prediction_logs_dir: Path = field(default_factory=lambda: churn_home({}) / "prediction_logs")
    head_timeout_seconds: float = DEFAULT_HEAD_TIMEOUT_SECONDS
    """``CHURN_HEAD_TIMEOUT_SECONDS``: a request head not complete by then is 408 and closed."""
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    """``CHURN_BODY_TIMEOUT_SECONDS``: a body not complete by then is 408 and closed."""
    min_body_rate: int = DEFAULT_MIN_BODY_RATE
    """``CHURN_MIN_BODY_RATE`` (bytes/s): a body falling behind it is 408 and closed."""

    def serving_mode(self, has_challenger: bool) -> ServingMode:
        """Who answers, once it is known whether a challenger is packaged."""
        return resolve_mode(self.requested_mode, self.canary_fraction, has_challenger)


def load_serving_settings(
    env: Mapping[str, str] | None = None, *, has_challenger: bool | None = None
) -> ServingSettings:
    """Parse and check every serving setting; raise on the first bad one with its name.

    ``env`` defaults to this process's environment. With ``has_challenger`` given, the serving
    mode is also checked against it (shadow and canary need a challenger); without it only
    the values themselves are, since the challenger is resolved from these settings."""
    env = os.environ if env is None else env
    max_body = positive_int(env, MAX_BODY_BYTES_ENV, DEFAULT_MAX_BODY_BYTES)
    inflight = positive_int(env, MAX_INFLIGHT_BYTES_ENV, max(DEFAULT_MAX_INFLIGHT_BYTES, max_body))
    if inflight < max_body:
        raise SettingError(
            f"{MAX_INFLIGHT_BYTES_ENV}={inflight} is below {MAX_BODY_BYTES_ENV}={max_body}: "
            "a single allowed body could never be accepted"
        )
    mode, fraction = requested_mode(env)
    settings = ServingSettings(
        head_timeout_seconds=_seconds(env, HEAD_TIMEOUT_ENV, DEFAULT_HEAD_TIMEOUT_SECONDS),
        body_timeout_seconds=_seconds(env, BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT_SECONDS),
        min_body_rate=positive_int(env, MIN_BODY_RATE_ENV, DEFAULT_MIN_BODY_RATE),
        max_body_bytes=max_body,
        max_inflight_bytes=inflight,
        trusted_proxies=trusted_proxies(env),
        api_keys=api_keys(env),
        rate_limits=configured_limits(env),
        requested_mode=mode,
        canary_fraction=fraction,
        model_tag=(env.get(MODEL_TAG_ENV) or "").strip() or None,
        challenger_tag=env.get(CHALLENGER_TAG_ENV),
        prediction_logs_dir=churn_home(env) / "prediction_logs",
    )
    if has_challenger is not None:
        settings.serving_mode(has_challenger)
    return settings


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """``env[name]`` as a finite number of seconds in ``[0.1, 3600]``; unset -> ``default``.
    ``nan`` or ``inf`` would mean no timeout at all, which is what the setting exists to stop."""
    raw = (env.get(name) or "").strip()
    return finite_float(name, raw, 0.1, MAX_TIMEOUT_SECONDS) if raw else default


# --- what the process environment must carry for BentoML and uvicorn -------------------------


def apply_trusted_proxies(proxies: tuple[str, ...]) -> None:
    """Tell uvicorn whose forwarded headers to believe (nobody's unless configured). uvicorn
    reads its variable when BentoML builds its ``Config`` in each worker; it is not a BentoML
    setting, so the environment is the only way in."""
    os.environ[FORWARDED_ALLOW_IPS_ENV] = ",".join(proxies)


def apply_single_thread_default() -> None:
    """One OpenMP thread per worker unless the operator chose otherwise: a request is one row,
    a thread pool costs more to wake than the trees take, and threads across workers
    oversubscribe. OpenMP reads the variable when it starts, so it must be in the worker's
    environment before numpy or LightGBM load: set in the ``bentoml serve`` process, before its
    workers are spawned, which inherit it."""
    os.environ.setdefault(OMP_THREADS_ENV, "1")
