"""Alerts from asset bodies: one call beside the check result it reports on.

``alert_unless(passed, context, text)`` posts ``"churn: <text>"`` to ``CHURN_ALERT_WEBHOOK``
(:func:`churn.monitoring.alerts.post`) when ``passed`` is False. The text names what happened and
where (the check, the month, the model) and the numbers. A down webhook becomes a warning in the
step's log and never fails the step.
"""

from __future__ import annotations

import dagster as dg

from churn.monitoring import alerts


def alert_unless(passed: bool, context: dg.AssetExecutionContext | None, text: str) -> bool:
    """Post ``text`` when ``passed`` is False; returns whether an alert was delivered."""
    if passed:
        return False
    warn = context.log.warning if context is not None else None
    return alerts.post(f"churn: {text}", warn=warn)
