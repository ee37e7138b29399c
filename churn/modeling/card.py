"""The model card: what a saved model is, how good it was, what it was trained on, and where from.

It is stored beside the model (``card.json``) and is the service's source of truth: the request
schemas come from ``feature_schema``, the default threshold and risk tiers from ``thresholds``
and ``risk_tiers``, ``/model`` returns it whole. ``risk_tiers["medium_high"]`` equals the decision
threshold (``high`` is ``churn_label = 1``); :func:`card_tier_cuts` derives it for older cards.

The decision threshold is the model's own: ``thresholds["decision"]``, the expected-value
threshold chosen on validation with the card's ``economics`` (cost of a contact, value of a kept
customer, success rate). Cards written before it existed have only ``thresholds["default"]``
(0.5); :func:`decision_threshold` and :func:`card_economics` read both generations.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.modeling.spec import specs_to_dicts

if TYPE_CHECKING:
    from churn.features.definition import Feature
    from churn.modeling.gate import GateDecision
    from churn.modeling.training import Economics, Evaluation, TrainingData


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON data: NaN and infinities become None (JSON has neither), numpy
    scalars become Python numbers, tuples become lists; dates and decimals become strings."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return json_safe(float(value))
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return value


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
    gate_settings: dict[str, Any],
    shape_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of ``evaluation``'s winner, trained on ``data`` and let through by ``decision``:
    strict JSON (NaN -> null), because the service returns it whole at ``/model``.

    ``shape_fields`` (:meth:`churn.sources.base.Source.card_fields`, with
    :func:`time_growing_fields`) record the source's shape, its time-growing features and, for
    an events source, the generated feature family (``event_features``: the chosen event
    vocabulary, measures, profile, windows) and the ``churn_definition``, so the service
    generates exactly the features the model was trained on."""
    from churn.modeling.gate import GATE_RULES, LEAKAGE_CEILING
    from churn.scoring.reasons import feature_descriptions, reference_distribution

    winner = evaluation.winning
    return json_safe(
        dict(shape_fields or {})
        | {
            "model_kind": evaluation.winner,
            "trained_at": datetime.now(UTC).isoformat(),
            "feature_order": [spec.name for spec in data.specs],
            "feature_schema": specs_to_dicts(data.specs),
            # Plain-language reasons (churn.scoring.reasons): a phrase per feature, and the
            # training rows' percentiles the service compares a customer's value with.
            "feature_descriptions": feature_descriptions(data.specs),
            "reference": reference_distribution(data.specs, data.train.X),
            "thresholds": evaluation.thresholds,
            "economics": asdict(evaluation.economics),
            "risk_tiers": {
                "low_medium": evaluation.risk_tier_cuts[0],
                "medium_high": evaluation.risk_tier_cuts[1],
            },
            "metrics": {
                "test": winner.test,
                "validation": winner.validation,
                "oracle_auc": evaluation.oracle_auc,
                "baselines": evaluation.baselines,
                "calibration": evaluation.calibration,
                "at_decision_threshold": evaluation.decision_metrics,
            },
            "backtest": evaluation.backtest,
            # what time-ordered CV tried and chose (churn.modeling.selection); None when off
            "model_selection": evaluation.selection,
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
            "quality_gate": {
                "rule": decision.rule,
                "reason": decision.reason,
                "versus_champion": {
                    "champion_tag": decision.champion_tag,
                    "champion_auc": decision.champion_auc,
                    "test_auc": decision.test_auc,
                    "auc_delta": decision.auc_delta,
                    "ci_low": decision.ci_low,
                    "ci_high": decision.ci_high,
                },
                "settings": gate_settings | {"leakage_ceiling": LEAKAGE_CEILING},
                "rules": GATE_RULES,
            },
        }
    )


TIME_GROWING_KEY = "time_growing_features"


def time_growing_fields(features: Iterable[Feature]) -> dict[str, list[str]]:
    """The card's ``time_growing_features``: the model's features that grow with the
    observation date by construction (``Feature.time_growing``), so drift monitoring compares
    them so that ageing alone is no alarm (:mod:`churn.monitoring.drift`)."""
    return {TIME_GROWING_KEY: [feature.name for feature in features if feature.time_growing]}


def decision_threshold(card: dict[str, Any]) -> float:
    """Where a score becomes ``churn_label = 1``: the card's decision threshold, or the old
    cards' fixed default."""
    thresholds = card["thresholds"]
    return float(thresholds["decision"] if "decision" in thresholds else thresholds["default"])


def card_tier_cuts(card: Mapping[str, Any], threshold: float | None = None) -> tuple[float, float]:
    """The (low/medium, medium/high) cuts in force at ``threshold`` (default: the card's
    decision threshold). The high cut is always the threshold, so ``risk_tier = 'high'`` and
    ``churn_label = 1`` are one decision; older cards stored a score-quantile high cut that
    disagreed with the threshold, and are derived from the threshold here, at load."""
    from churn.modeling.thresholds import tier_cuts

    decision = decision_threshold(dict(card)) if threshold is None else float(threshold)
    tiers = card.get("risk_tiers") or {}
    return tier_cuts(float(tiers.get("low_medium", decision)), decision)


def card_economics(card: dict[str, Any]) -> Economics:
    """The contact economics the model's threshold was chosen with; the defaults for old cards
    (they were chosen with the defaults too unless the run was configured otherwise)."""
    from churn.modeling.training import Economics

    return Economics(**card.get("economics", {}))
