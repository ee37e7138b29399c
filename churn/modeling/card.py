"""The model card: what a saved model is, how good it was, what it was trained on, and where from.

It is stored beside the model (``card.json``) and is the service's source of truth: the request
schemas come from ``feature_schema``, the default threshold and risk tiers from ``thresholds``
and ``risk_tiers``, ``/model`` returns it whole.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.modeling.spec import specs_to_dicts

if TYPE_CHECKING:
    from churn.modeling.gate import GateDecision
    from churn.modeling.training import Evaluation, TrainingData


def git_commit() -> str:
    """The code's short commit, so a model traces back to the code that trained it."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_card(
    data: TrainingData,
    evaluation: Evaluation,
    decision: GateDecision,
    *,
    run_id: str,
    source: str,
    horizon_days: int,
    shape_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of ``evaluation``'s winner, trained on ``data`` and let through by ``decision``.

    ``shape_fields`` (:meth:`churn.features.shape.SourceShape.card_fields`) record the source's
    shape and, for an events source, the generated feature family (``event_features``: the
    chosen event vocabulary, measures, profile, windows) and the ``churn_definition``, so the
    service generates exactly the features the model was trained on."""
    winner = evaluation.winning
    return dict(shape_fields or {}) | {
        "model_kind": evaluation.winner,
        "trained_at": datetime.now(UTC).isoformat(),
        "feature_order": [spec.name for spec in data.specs],
        "feature_schema": specs_to_dicts(data.specs),
        "thresholds": evaluation.thresholds,
        "risk_tiers": {
            "low_medium": evaluation.risk_tier_cuts[0],
            "medium_high": evaluation.risk_tier_cuts[1],
        },
        "metrics": {
            "test": winner.test,
            "validation": winner.validation,
            "oracle_auc": evaluation.oracle_auc,
        },
        "data_window": data.window(),
        "horizon_days": horizon_days,
        "lineage": {
            "data_fingerprint": data.fingerprint,
            "git_commit": git_commit(),
            "dagster_run_id": run_id,
            "source": source,
            "split_kind": data.window()["kind"],
            "gate": decision.reason,
        },
    }
