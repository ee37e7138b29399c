"""Calibrated probabilities: kept only when no worse on validation, carried by the pickled model,
shown the same by batch scoring and the service, and gated on test ECE."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from churn.features import FEATURE_NAMES, FEATURES
from churn.modeling.calibration import (
    calibrate,
    calibrate_models,
    ece_equal_count,
    fit_isotonic,
)
from churn.modeling.candidates import LightGBMConfig, LogisticConfig
from churn.modeling.gate import GATE_RULES, ChampionComparison, decide
from churn.modeling.metrics import auc, brier
from churn.modeling.training import Economics, evaluate_candidates, prepare, train_candidates
from churn.scoring.scorer import Scorer
from tests.small_data import HORIZON_DAYS, training_frame


def _overconfident(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that rank well but run hot: the truth is 0.6 x the score."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(1.2, 4.0, rows)
    y = (rng.random(rows) < 0.6 * scores).astype(np.float64)
    return scores, y


def test_isotonic_calibration_of_overconfident_scores_is_kept_and_helps_new_rows():
    scores, y = _overconfident(8000, seed=0)
    calibration = calibrate(scores, y)
    assert calibration.report["kept"] is True
    fresh_scores, fresh_y = _overconfident(8000, seed=1)
    before = ece_equal_count(fresh_y, fresh_scores)
    after = ece_equal_count(fresh_y, calibration.apply(fresh_scores))
    assert after < before / 2
    assert brier(fresh_y, calibration.apply(fresh_scores)) < brier(fresh_y, fresh_scores)


def test_calibration_changes_no_ranking():
    scores, y = _overconfident(5000, seed=2)
    calibrated = calibrate(scores, y).apply(scores)
    order = np.argsort(scores)
    assert (np.diff(calibrated[order]) > 0).all()
    assert auc(y, calibrated) == auc(y, scores)
    assert calibrated.min() > 0.0 and calibrated.max() < 1.0


@pytest.mark.parametrize("seed", range(6))
def test_a_kept_calibration_never_makes_validation_brier_worse(seed: int):
    rng = np.random.default_rng(seed)
    truth = rng.beta(1.0, 8.0, 600)  # already calibrated scores: little to gain, easy to lose
    y = (rng.random(truth.size) < truth).astype(np.float64)
    calibration = calibrate(truth, y, seed=seed)
    report = calibration.report
    if report["kept"]:
        before = report["validation_before"]["brier"]
        assert report["validation_after_cross_fitted"]["brier"] <= before
        assert brier(y, calibration.apply(truth)) <= before


def test_ece_uses_ten_equal_count_bins():
    scores = np.repeat(np.linspace(0.05, 0.95, 10), 10)
    y = np.zeros(100)
    assert ece_equal_count(y, scores) == pytest.approx(float(scores.mean()))
    y[::2] = 1.0  # every bin observes 0.5
    assert ece_equal_count(y, scores) == pytest.approx(float(np.abs(0.5 - scores).mean()))


def test_calibration_refuses_mismatched_rows_or_one_class():
    with pytest.raises(ValueError, match="1 scores, 2 labels"):
        fit_isotonic([0.1], [0, 1])
    with pytest.raises(ValueError, match="both classes"):
        calibrate([0.1, 0.2], [0, 0])


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory):
    """Both candidates trained on the small generated data and calibrated on its validation."""
    frame = training_frame(tmp_path_factory.mktemp("calibration"))
    data = prepare(
        frame,
        list(FEATURE_NAMES),
        validation_months=1,
        test_months=2,
        horizon_days=HORIZON_DAYS,
        features=list(FEATURES),
    )
    models = train_candidates(
        data, LogisticConfig(), LightGBMConfig(n_estimators=200, early_stopping_rounds=20)
    )
    reports = calibrate_models(models, data.validation.X, data.validation.y)
    return data, models, reports


def test_a_calibrated_model_predicts_through_its_map_and_keeps_raw_reasons(calibrated):
    data, models, reports = calibrated
    assert set(reports) == set(models)
    for name, model in models.items():
        raw = model.raw_proba(data.test.X)
        if model.calibration is None:
            assert reports[name]["kept"] is False
            np.testing.assert_allclose(model.predict_proba(data.test.X), raw)
            continue
        np.testing.assert_allclose(model.predict_proba(data.test.X), model.calibration.apply(raw))
        # the reasons still add up to the raw model's log-odds
        contributions = model.contributions(data.test.X[:50])
        np.testing.assert_allclose(
            model.bias + contributions.sum(axis=1), model.log_odds(data.test.X[:50]), atol=1e-6
        )
        # the map travels with the pickle the model store keeps
        again = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(
            again.predict_proba(data.test.X), model.predict_proba(data.test.X)
        )


def test_served_probability_equals_batch_probability_for_a_calibrated_model(calibrated):
    data, models, _ = calibrated
    model = models["lightgbm"]
    if model.calibration is None:  # force a map on, to test the path whatever validation said
        model.calibration = calibrate(model.raw_proba(data.validation.X), data.validation.y)
    evaluation = evaluate_candidates(data, {"lightgbm": model}, None, Economics())
    card = {
        "feature_order": [spec.name for spec in data.specs],
        "thresholds": evaluation.thresholds,
        "risk_tiers": {
            "low_medium": evaluation.risk_tier_cuts[0],
            "medium_high": evaluation.risk_tier_cuts[1],
        },
    }
    scorer = Scorer(model, card, "churn_model:test")
    served, _ = scorer.probabilities_and_contributions(data.test.X)
    np.testing.assert_allclose(served, model.predict_proba(data.test.X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(served, evaluation.winning.test_scores, rtol=1e-9, atol=1e-12)
    assert not np.allclose(served, model.raw_proba(data.test.X))


def _versus() -> ChampionComparison:
    return ChampionComparison(
        champion_tag="churn_model:old",
        rows=1000,
        champion_auc=0.75,
        new_auc=0.76,
        auc_delta=0.01,
        ci_low=-0.01,
        ci_high=0.03,
        confidence=0.95,
    )


def test_the_gate_refuses_a_winner_calibrated_worse_than_the_champion_by_the_margin():
    decision = decide(
        0.76, auc_floor=0.6, versus=_versus(), test_ece=0.08, champion_ece=0.03, ece_margin=0.02
    )
    assert not decision.promoted and decision.blocks
    assert decision.rule == "calibration_worse" and decision.rule in GATE_RULES
    assert "test ECE 0.0800 vs 0.0300" in decision.reason
    assert "ece_margin 0.0200" in decision.reason
    within = decide(
        0.76, auc_floor=0.6, versus=_versus(), test_ece=0.045, champion_ece=0.03, ece_margin=0.02
    )
    assert within.promoted and within.rule == "not_worse"
    off = decide(0.76, auc_floor=0.6, versus=_versus(), test_ece=0.5, champion_ece=0.0)
    assert off.promoted


def test_model_performance_tracks_realized_calibration_by_month() -> None:
    import duckdb

    from churn.monitoring.performance import stored_scores_realized
    from tests.test_monitoring import _scored_world

    con = duckdb.connect()
    _scored_world(con)
    march, april = stored_scores_realized(con, {"v1": 0.45, "v2": 0.35}.get)
    # March: p 0.1 .. 0.8 in 8 bins of one row, churners at p >= 0.5
    expected = np.mean([abs(float(i >= 4) - (i + 1) / 10) for i in range(8)])
    assert march.ece == pytest.approx(expected)
    assert march.to_dict()["ece"] == pytest.approx(expected)
    assert april.ece is not None
