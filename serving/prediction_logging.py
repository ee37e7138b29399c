"""Scored rows -> prediction-log records (:mod:`churn.monitoring.prediction_log`) for monitoring.

The writer buffers in memory and a background thread writes, so the request pays for building
these dicts and one list append, nothing on disk.

Every 200 must reach the log: while the writer cannot write, ``/readyz`` answers 503 (the
service's ``__is_ready__`` asks :attr:`PredictionLogWriter.healthy`), and once its in-memory
backlog is full :class:`LogBacklogMiddleware` refuses scoring with 503 and ``Retry-After``
instead of answering rows that could not be logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from churn.monitoring.prediction_log import PredictionLogWriter, PredictionRecord
from churn.scoring.scorer import ScoredRows
from serving.auth import ASGIApp, Receive, Scope, Send, _is_open
from serving.errors import send_error

BACKLOG_RETRY_AFTER_SECONDS = 5
_current: PredictionLogWriter | None = None
"""The writer of this worker's service (one per worker), for :class:`LogBacklogMiddleware`:
BentoML builds middleware from the class alone, before the service instance exists."""


def open_writer(folder: Path, flush_seconds: float = 1.0) -> PredictionLogWriter:
    """The worker's writer into ``folder`` (the settings' ``prediction_logs_dir``:
    ``$CHURN_HOME/prediction_logs``), remembered for :class:`LogBacklogMiddleware`."""
    global _current
    _current = PredictionLogWriter(folder, flush_seconds=flush_seconds)
    return _current


class LogBacklogMiddleware:
    """503 for scoring requests while the prediction log's backlog is full (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = _current
        if (
            writer is None
            or writer.has_room
            or scope["type"] != "http"
            or _is_open(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        await send_error(
            send,
            503,
            "prediction log unavailable",
            kind="log_unavailable",
            loc=[],
            msg=f"{writer.buffered} scored rows wait for the prediction log's disk; "
            f"retry in {BACKLOG_RETRY_AFTER_SECONDS} s",
            headers=[(b"retry-after", str(BACKLOG_RETRY_AFTER_SECONDS).encode())],
        )


def prediction_records(
    request_id: str,
    route: str,
    model_version: str,
    customer_ids: Sequence[str],
    features: Sequence[Mapping[str, Any]],
    scored: ScoredRows,
    threshold: float,
    observation_date: date | None = None,
) -> list[PredictionRecord]:
    """One record per scored row, with the features exactly as the model received them."""
    logged_at = datetime.now(UTC).isoformat()
    observed = observation_date.isoformat() if observation_date is not None else None
    return [
        {
            "request_id": request_id,
            "logged_at": logged_at,
            "route": route,
            "model_version": model_version,
            "customer_id": customer_id,
            "features": dict(features[i]),
            "churn_probability": float(scored.probabilities[i]),
            "churn_label": int(scored.labels[i]),
            "threshold": threshold,
            "risk_tier": scored.tiers[i],
            "observation_date": observed,
        }
        for i, customer_id in enumerate(customer_ids)
    ]
