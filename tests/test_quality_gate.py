"""The quality gate on small in-memory arrays: which rule decides, and that a model worse than the
champion on the same test rows is never promoted (unless a tolerance says so, out loud)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from churn.modeling.card import json_safe
from churn.modeling.gate import (
    GATE_RULES,
    ChampionComparison,
    compare_with_champion,
    decide,
    same_training_data,
)
from churn_assets.metadata import table_value

ROWS = 3000


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    """Labels (about 20% churn) and a latent risk the scores are noisy readings of."""
    rng = np.random.default_rng(11)
    risk = rng.normal(size=ROWS)
    y = (rng.random(ROWS) < 1 / (1 + np.exp(-(risk * 1.5 - 1.6)))).astype(np.int8)
    return y, risk


def _scores(risk: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """A model that reads the risk through ``noise``: more noise, lower AUC."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(risk + rng.normal(scale=noise, size=risk.size))))


def _gate(y, champion, new, *, tolerance: float = 0.0, floor: float = 0.6):
    versus = compare_with_champion(y, champion, new, "churn_model:old", n_boot=300)
    return versus, decide(versus.new_auc, auc_floor=floor, tolerance=tolerance, versus=versus)


def test_a_champion_better_on_the_same_rows_refuses_the_new_model(rows):
    y, risk = rows
    champion, worse = _scores(risk, 0.3, 1), _scores(risk, 1.5, 2)
    versus, decision = _gate(y, champion, worse)
    assert versus.champion_auc > versus.new_auc + 0.03
    assert versus.ci_high is not None and versus.ci_high < 0
    assert not decision.promoted
    assert decision.rule == "significantly_worse"
    assert "worse than champion churn_model:old" in decision.reason
    assert f"{versus.champion_auc:.4f}" in decision.reason and "CI [" in decision.reason


def test_a_slightly_lower_point_estimate_is_refused_without_tolerance(rows):
    """The reported case: 0.7560 against a champion's 0.7649 passed a 0.01 tolerance."""
    y, risk = rows
    champion = _scores(risk, 0.6, 3)
    rng = np.random.default_rng(4)
    # The same model with a little extra noise: lower on the point estimate, not significantly.
    slightly = champion + rng.normal(scale=0.01, size=champion.size)
    versus, decision = _gate(y, champion, slightly)
    assert -0.01 < versus.auc_delta < 0
    assert not versus.significantly_worse
    assert not decision.promoted and decision.rule == "below_champion"

    _, tolerated = _gate(y, champion, slightly, tolerance=0.01)
    assert tolerated.promoted and tolerated.rule == "within_tolerance"
    assert "tolerance rule" in tolerated.reason


def test_an_equal_model_is_promoted(rows):
    y, risk = rows
    champion = _scores(risk, 0.6, 5)
    versus, decision = _gate(y, champion, champion.copy())
    assert versus.auc_delta == 0 and versus.ci_low == versus.ci_high == 0
    assert decision.promoted and decision.rule == "not_worse"


def test_a_better_model_is_promoted_with_both_aucs_and_the_interval(rows):
    y, risk = rows
    versus, decision = _gate(y, _scores(risk, 1.5, 6), _scores(risk, 0.3, 7))
    assert versus.auc_delta > 0.03 and versus.ci_low > 0
    assert decision.promoted and decision.rule == "not_worse"
    assert decision.champion_auc == versus.champion_auc
    assert decision.test_auc == versus.new_auc
    assert decision.auc_delta == pytest.approx(decision.test_auc - decision.champion_auc)
    assert decision.ci_low < decision.auc_delta < decision.ci_high


def test_leakage_and_floor_refuse_before_any_comparison(rows):
    y, risk = rows
    champion = _scores(risk, 0.6, 8)
    versus = compare_with_champion(y, champion, champion, "churn_model:old", n_boot=50)
    leaky = decide(0.99, auc_floor=0.6, versus=versus)
    assert not leaky.promoted and leaky.rule == "leakage_ceiling"
    low = decide(0.55, auc_floor=0.6, versus=versus)
    assert not low.promoted and low.rule == "auc_floor"


def test_without_a_comparable_champion_the_reason_says_so():
    first = decide(0.75, auc_floor=0.6)
    assert first.promoted and first.rule == "no_champion"
    other = decide(0.75, auc_floor=0.6, champion_tag="churn_model:flat")
    assert other.promoted and other.rule == "incomparable_champion"
    assert "churn_model:flat" in other.reason and "not compared" in other.reason


def test_single_class_resamples_leave_no_interval_and_the_point_estimate_decides():
    comparison = ChampionComparison(
        "churn_model:old", 10, 0.8, 0.79, -0.01, None, None, confidence=0.95
    )
    assert not comparison.significantly_worse and "no interval" in comparison.interval
    decision = decide(0.79, auc_floor=0.6, versus=comparison)
    assert not decision.promoted and decision.rule == "below_champion"


def test_every_rule_is_documented():
    y = np.array([0, 1] * 50, dtype=np.int8)
    scores = np.linspace(0, 1, 100)
    versus = compare_with_champion(y, scores, scores, "c", n_boot=20)
    seen = {
        decide(0.99, auc_floor=0.6).rule,
        decide(0.5, auc_floor=0.6).rule,
        decide(0.7, auc_floor=0.6).rule,
        decide(0.7, auc_floor=0.6, champion_tag="c").rule,
        decide(versus.new_auc, auc_floor=0.0, versus=versus).rule,
        decide(0.7, auc_floor=0.6, champion_tag="c", same_data_window=WINDOW).rule,
    }
    assert seen <= set(GATE_RULES)


WINDOW = {
    "kind": "time",
    "train_dates": ["2025-04-01", "2025-05-01"],
    "validation_dates": ["2025-06-01"],
    "test_dates": ["2025-07-01"],
    "embargoed": [],
    "rows": {"train": 10, "validation": 5, "test": 5},
}
CARD = {"data_window": WINDOW, "lineage": {"data_fingerprint": "abc"}}


def test_the_champion_window_and_rows_again_is_nothing_new_whatever_the_auc(rows):
    """The reported case: a drift retrain on the same rows promoted the identical model."""
    y, risk = rows
    champion = _scores(risk, 0.6, 5)
    versus = compare_with_champion(y, champion, champion.copy(), "churn_model:abc", n_boot=50)
    assert same_training_data(WINDOW, "abc", CARD)
    decision = decide(versus.new_auc, auc_floor=0.6, versus=versus, same_data_window=WINDOW)
    assert not decision.promoted and decision.rule == "nothing_new"
    assert not decision.blocks  # a warning: nothing failed
    assert decision.reason.startswith(
        "nothing new to learn: same training window 2025-04-01..2025-07-01 and rows as "
        "champion churn_model:abc"
    )
    assert decision.champion_auc == versus.champion_auc  # the figures are still reported
    refused = decide(0.5, auc_floor=0.6, champion_tag="churn_model:abc")
    assert not refused.promoted and refused.blocks


@pytest.mark.parametrize(
    ("window", "fingerprint", "card"),
    [
        (WINDOW | {"test_dates": ["2025-08-01"]}, "abc", CARD),  # a newer window
        (WINDOW, "def", CARD),  # same dates, other rows (labels or features changed)
        (WINDOW, "abc", {"data_window": WINDOW}),  # an older card without a fingerprint
        (WINDOW, "abc", {"lineage": {"data_fingerprint": "abc"}}),  # ... or without a window
    ],
)
def test_anything_new_is_not_the_same_training_data(window, fingerprint, card):
    assert not same_training_data(window, fingerprint, card)


def test_the_fingerprint_covers_keys_features_and_labels_only():
    import pandas as pd

    from churn.modeling.training import fingerprint

    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "observation_date": ["2025-04-01", "2025-04-01"],
            "tenure_days": [10.0, 20.0],
            "churned": [0, 1],
            "_loaded_at": ["t1", "t1"],
        }
    )
    base = fingerprint(frame, ["tenure_days"])
    assert fingerprint(frame.assign(_loaded_at="t2"), ["tenure_days"]) == base
    assert fingerprint(frame.iloc[::-1], ["tenure_days"]) == base  # row order is not data
    assert fingerprint(frame.assign(tenure_days=[10.0, 20.0 + 1e-12]), ["tenure_days"]) == base
    assert fingerprint(frame.assign(churned=[1, 1]), ["tenure_days"]) != base
    assert fingerprint(frame.assign(tenure_days=[10.0, 21.0]), ["tenure_days"]) != base


def test_json_safe_turns_nan_and_infinity_into_null():
    card = {"metrics": {"precision": math.nan, "lift": np.float64(2.5), "x": [np.inf, 1]}}
    safe = json_safe(card)
    assert safe == {"metrics": {"precision": None, "lift": 2.5, "x": [None, 1]}}
    json.dumps(safe, allow_nan=False)


def test_table_values_are_strict_json_records():
    table = table_value(["metric", "value"], [("precision", math.nan), ("auc", 0.76543)])
    records = [record.data for record in table.records]
    assert records == [{"metric": "precision", "value": None}, {"metric": "auc", "value": 0.7654}]
    assert [column.type for column in table.schema.columns] == ["string", "float"]
