"""Alerts: a short message to a chat webhook when something needs a person.

``CHURN_ALERT_WEBHOOK`` (read by :mod:`churn.settings`) receives ``{"text": "..."}``, the body
Slack's incoming webhooks accept (and Mattermost, Rocket.Chat, Teams' Slack-compatible
connectors). The pipeline posts one when the quality gate refuses a model, when drift_check
fails and when realized quality drops below its check; the text names what happened and the
numbers.

An alert is a side effect of a run, never a reason for it to fail: a webhook that is down, slow
or misconfigured costs at most :data:`TIMEOUT_SECONDS` and a logged warning.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable

TIMEOUT_SECONDS = 5.0
"""How long a post may take: an alert must not hold a pipeline step hostage."""
MAX_TEXT_CHARS = 3_000
"""Chat webhooks cut or refuse long messages; a drift list of 60 features is cut here instead."""

log = logging.getLogger(__name__)


def message(text: str) -> dict[str, str]:
    """The Slack-compatible body: ``{"text": ...}``, cut to :data:`MAX_TEXT_CHARS`."""
    if len(text) > MAX_TEXT_CHARS:
        text = text[: MAX_TEXT_CHARS - 1] + "…"
    return {"text": text}


def post(
    text: str,
    *,
    webhook: str | None = None,
    timeout: float = TIMEOUT_SECONDS,
    warn: Callable[[str], object] | None = None,
) -> bool:
    """Post ``text`` to ``webhook`` (default: the settings' ``CHURN_ALERT_WEBHOOK``).

    Returns whether the webhook accepted it (a 2xx answer). No webhook configured: nothing is
    sent (False). Any failure (refused connection, timeout, a 4xx/5xx answer) is logged through
    ``warn`` (a Dagster step passes ``context.log.warning``) and returns False; it never raises,
    because an alert must not fail the run it reports on.
    """
    if webhook is None:
        from churn.settings import load_settings

        webhook = load_settings().alert_webhook
    if not webhook:
        return False
    request = urllib.request.Request(
        webhook,
        data=json.dumps(message(text)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return 200 <= answer.status < 300
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
        (warn or log.warning)(
            f"alert not delivered to CHURN_ALERT_WEBHOOK ({type(error).__name__}: {error}); "
            f"the alert was: {text[:300]}"
        )
        return False
