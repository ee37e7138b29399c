"""Scored rows -> prediction-log records (:mod:`churn.monitoring.prediction_log`) for monitoring.

The writer buffers in memory and a background thread writes, so the request pays for building
these dicts and one list append, nothing on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from churn.monitoring.prediction_log import PredictionLogWriter, PredictionRecord
from churn.scoring.scorer import ScoredRows

DEFAULT_CHURN_HOME = "./data"


def prediction_log_folder() -> Path:
    """``$CHURN_HOME/prediction_logs`` (CHURN_HOME defaults to ./data, as everywhere)."""
    return Path(os.environ.get("CHURN_HOME") or DEFAULT_CHURN_HOME).resolve() / "prediction_logs"


def open_writer(flush_seconds: float = 1.0) -> PredictionLogWriter:
    return PredictionLogWriter(prediction_log_folder(), flush_seconds=flush_seconds)


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
