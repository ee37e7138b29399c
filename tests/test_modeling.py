"""churn.modeling: the shared encoding, both candidates, splits, metrics, thresholds and plots.

Model tests train on a small real training set built without Dagster (``tests/small_data.py``:
the generator, the real staging and feature SQL, real categories), so they run in seconds and
never wait for the whole graph; metric and threshold tests use hand-made numbers whose right
answer is known.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pytest

from churn.features import FEATURE_NAMES, FEATURES
from churn.modeling import (
    ChurnModel,
    FeatureSpec,
    LightGBMConfig,
    assign_tier,
    assign_tiers,
    build_feature_specs,
    encode_frame,
    encode_records,
    evaluate,
    expected_value_threshold,
    metrics,
    plots,
    risk_tiers,
    stratified_split,
    time_split,
    train_lightgbm,
    train_logistic,
    validation_errors,
)
from churn.modeling.spec import specs_from_dicts, specs_to_dicts
from tests.small_data import training_frame

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST_LIGHTGBM = LightGBMConfig(n_estimators=200, early_stopping_rounds=30, learning_rate=0.05)


@dataclass
class Prepared:
    frame: pd.DataFrame
    specs: list[FeatureSpec]
    X: np.ndarray
    y: np.ndarray
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    frame = training_frame(tmp_path_factory.mktemp("small-data"))
    split = time_split(frame["observation_date"])
    train, valid, test = split.masks(frame["observation_date"])
    specs = build_feature_specs(frame[train | valid])
    return Prepared(
        frame,
        specs,
        encode_frame(frame, specs),
        frame["churned"].to_numpy(),
        train,
        valid,
        test,
    )


@pytest.fixture(scope="module")
def lightgbm_model(prepared: Prepared) -> ChurnModel:
    p = prepared
    return train_lightgbm(
        p.X[p.train], p.y[p.train], p.X[p.valid], p.y[p.valid], p.specs, FAST_LIGHTGBM
    )


@pytest.fixture(scope="module")
def logistic_model(prepared: Prepared) -> ChurnModel:
    return train_logistic(prepared.X[prepared.train], prepared.y[prepared.train], prepared.specs)


# ---- specs and encoding ---------------------------------------------------------------------


def test_specs_follow_the_feature_declarations(prepared: Prepared) -> None:
    assert [s.name for s in prepared.specs] == list(FEATURE_NAMES)
    for spec, feature in zip(prepared.specs, FEATURES, strict=True):
        assert spec.kind == feature.kind
        if spec.kind == "categorical":
            assert spec.dtype == "string"
            assert list(spec.categories) == sorted(spec.categories)
        else:
            assert spec.minimum <= spec.observed_min <= spec.observed_max <= spec.maximum
    counts = {s.name: s for s in prepared.specs}["events_30d"]
    assert counts.minimum == 0 and counts.dtype == "integer"
    assert {s.name: s for s in prepared.specs}["age"].maximum == 110  # the raw column's contract


def test_specs_round_trip_through_json_dicts(prepared: Prepared) -> None:
    assert specs_from_dicts(specs_to_dicts(prepared.specs)) == prepared.specs


def test_encode_records_equals_encode_frame_exactly(prepared: Prepared) -> None:
    rows = prepared.frame.iloc[:200]
    records = rows[list(FEATURE_NAMES)].to_dict("records")
    from_records = encode_records(records, prepared.specs)
    from_frame = encode_frame(rows, prepared.specs)
    np.testing.assert_array_equal(from_records, from_frame)
    assert from_records.dtype == np.float64


def test_unknown_and_missing_categories_encode_as_nan(prepared: Prepared) -> None:
    record = prepared.frame[list(FEATURE_NAMES)].iloc[0].to_dict()
    unknown = record | {"plan": "platinum", "region": None}
    encoded = encode_records([unknown], prepared.specs)
    frame_encoded = encode_frame(pd.DataFrame([unknown]), prepared.specs)
    np.testing.assert_array_equal(encoded, frame_encoded)
    index = {name: j for j, name in enumerate(FEATURE_NAMES)}
    assert np.isnan(encoded[0, index["plan"]]) and np.isnan(encoded[0, index["region"]])
    assert not np.isnan(encoded[0, index["contract"]])


def test_validation_refuses_absurd_values_but_not_new_categories(prepared: Prepared) -> None:
    record = prepared.frame[list(FEATURE_NAMES)].iloc[0].to_dict()
    assert validation_errors(record | {"plan": "platinum"}, prepared.specs) == []
    errors = validation_errors(record | {"events_30d": -1, "age": 500}, prepared.specs)
    assert any(e.startswith("events_30d") for e in errors)
    assert any(e.startswith("age") for e in errors)
    assert validation_errors({}, prepared.specs)[0].endswith("missing")


# ---- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["lightgbm_model", "logistic_model"])
def test_models_predict_probabilities_and_tolerate_unknown_categories(
    fixture: str, request: pytest.FixtureRequest, prepared: Prepared
) -> None:
    model: ChurnModel = request.getfixturevalue(fixture)
    p = model.predict_proba(prepared.X[prepared.test])
    assert p.shape == (prepared.test.sum(),)
    assert np.all((p > 0) & (p < 1))
    row = prepared.X[:1].copy()
    row[0, list(FEATURE_NAMES).index("plan")] = np.nan
    assert np.isfinite(model.predict_proba(row)).all()
    assert model.feature_names == list(FEATURE_NAMES)


def test_lightgbm_predicts_the_same_from_codes_and_from_a_categorical_frame(
    lightgbm_model, prepared: Prepared
) -> None:
    """The code matrix is what LightGBM saw; a pandas frame with categories in spec order must
    map to the same codes (pandas codes == spec codes), so both views give identical scores."""
    rows = prepared.frame.iloc[:300]
    frame = rows[list(FEATURE_NAMES)].copy()
    for spec in prepared.specs:
        if spec.kind == "categorical":
            frame[spec.name] = pd.Categorical(frame[spec.name], categories=list(spec.categories))
        else:
            frame[spec.name] = frame[spec.name].astype("float64")
    booster = lightgbm_model.booster
    from_frame = booster.predict(frame)
    from_codes = lightgbm_model.predict_proba(encode_frame(rows, prepared.specs))
    np.testing.assert_array_equal(from_codes, from_frame)
    assert 0 < lightgbm_model.best_iteration <= FAST_LIGHTGBM.n_estimators
    assert booster.current_iteration() == lightgbm_model.best_iteration


def test_lightgbm_contributions_add_up_to_the_log_odds(lightgbm_model, prepared) -> None:
    X = prepared.X[:100]
    contributions = lightgbm_model.contributions(X)
    assert contributions.shape == (100, len(FEATURE_NAMES))
    raw = lightgbm_model.booster.predict(X, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1) + lightgbm_model.bias, raw, atol=1e-9)


def test_logistic_contributions_reconstruct_the_pipeline(logistic_model, prepared) -> None:
    X = prepared.X[:100]
    model = logistic_model
    pipeline_log_odds = model.pipeline.decision_function(X)
    contributions = model.contributions(X)
    np.testing.assert_allclose(contributions.sum(axis=1) + model.bias, pipeline_log_odds, 1e-9)
    np.testing.assert_allclose(model.predict_proba(X), model.pipeline.predict_proba(X)[:, 1])
    numeric = [j for j, s in enumerate(prepared.specs) if s.kind == "numeric"]
    coef = model.pipeline.named_steps["classifier"].coef_.ravel()[-len(numeric) :]
    z = model.pipeline.named_steps["columns"].transform(X)[:, -len(numeric) :]
    np.testing.assert_allclose(contributions[:, numeric], z * coef, atol=1e-12)


@pytest.mark.parametrize("fixture", ["lightgbm_model", "logistic_model"])
def test_top_reasons_are_the_largest_contributions(
    fixture: str, request: pytest.FixtureRequest, prepared: Prepared
) -> None:
    model: ChurnModel = request.getfixturevalue(fixture)
    X = prepared.X[:5]
    records = prepared.frame[list(FEATURE_NAMES)].iloc[:5].to_dict("records")
    reasons = model.top_reasons(X, records, k=3)
    contributions = model.contributions(X)
    for i, row in enumerate(reasons):
        magnitudes = [abs(reason["contribution"]) for reason in row]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert magnitudes[0] == pytest.approx(np.abs(contributions[i]).max())
        assert all(reason["value"] == records[i][reason["feature"]] for reason in row)
    decoded = model.top_reasons(X[:1], k=36)[0]
    plan = next(reason for reason in decoded if reason["feature"] == "plan")
    assert plan["value"] == records[0]["plan"]


@pytest.mark.parametrize("fixture", ["lightgbm_model", "logistic_model"])
def test_models_pickle_to_identical_predictions(
    fixture: str, request: pytest.FixtureRequest, prepared: Prepared
) -> None:
    model: ChurnModel = request.getfixturevalue(fixture)
    restored = pickle.loads(pickle.dumps(model))
    X = prepared.X[prepared.test]
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(restored.contributions(X), model.contributions(X))
    assert restored.kind == model.kind and restored.specs == model.specs


# ---- splits ---------------------------------------------------------------------------------


def test_time_split_is_ordered_and_covers_the_last_months() -> None:
    dates = pd.Series(pd.date_range("2025-01-01", periods=9, freq="MS").repeat(3))
    split = time_split(dates)
    assert max(split.train_dates) < min(split.validation_dates) < min(split.test_dates)
    assert split.test_dates == (date(2025, 8, 1), date(2025, 9, 1))
    assert split.validation_dates == (date(2025, 7, 1),)
    assert len(split.train_dates) == 6 and split.embargoed == ()
    train, valid, test = split.masks(dates)
    assert (train.sum(), valid.sum(), test.sum()) == (18, 3, 6)
    assert not (train & valid).any() and not (valid & test).any()


def test_time_split_on_the_warehouse_is_time_ordered(prepared: Prepared) -> None:
    dates = prepared.frame["observation_date"]
    assert dates[prepared.train].max() < dates[prepared.valid].min()
    assert dates[prepared.valid].max() < dates[prepared.test].min()


def test_time_split_embargoes_open_label_windows() -> None:
    weekly = pd.date_range("2025-01-06", periods=12, freq="7D")
    split = time_split(weekly, validation_months=2, test_months=2, horizon_days=10)
    assert split.embargoed == (weekly[7].date(), weekly[9].date())
    assert max(split.train_dates) == weekly[6].date()


def test_time_split_refuses_too_few_dates() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        time_split(["2025-01-01", "2025-02-01", "2025-03-01"])


def test_stratified_split_keeps_the_base_rate() -> None:
    y = np.r_[np.ones(100), np.zeros(900)]
    split = stratified_split(y, validation_share=0.2, test_share=0.2, seed=1)
    everything = np.concatenate([split.train, split.validation, split.test])
    assert np.array_equal(np.sort(everything), np.arange(1000))
    for block in (split.train, split.validation, split.test):
        assert y[block].mean() == pytest.approx(0.1, abs=0.01)


def test_stratified_split_keeps_a_customers_snapshots_in_one_block() -> None:
    """A flat table grown by snapshots holds each customer at several dates; a customer in both
    training and test would make the test score an in-sample one."""
    rng = np.random.default_rng(3)
    customers = np.repeat([f"C{i}" for i in range(300)], 3)
    y = (rng.random(customers.size) < 0.15).astype(int)
    split = stratified_split(y, validation_share=0.2, test_share=0.2, seed=1, groups=customers)
    blocks = [set(customers[b]) for b in (split.train, split.validation, split.test)]
    assert not (blocks[0] & blocks[1] or blocks[0] & blocks[2] or blocks[1] & blocks[2])
    assert sum(len(b) for b in blocks) == 300
    assert len(blocks[2]) == pytest.approx(60, abs=2)


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_match_scikit_learn() -> None:
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    score = np.round(np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, y.size), 0.001, 0.999), 2)
    result = evaluate(y, score, threshold=0.3)
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)
    assert result["pr_auc"] == pytest.approx(sk.average_precision_score(y, score), abs=1e-12)
    assert result["brier"] == pytest.approx(sk.brier_score_loss(y, score), abs=1e-12)
    assert result["log_loss"] == pytest.approx(sk.log_loss(y, score), abs=1e-12)
    assert result["precision"] == pytest.approx(sk.precision_score(y, score >= 0.3))
    assert result["recall"] == pytest.approx(sk.recall_score(y, score >= 0.3))
    assert result["f1"] == pytest.approx(sk.f1_score(y, score >= 0.3))
    assert (result["rows"], result["positives"]) == (2000, int(y.sum()))


def test_lift_and_capture_on_a_hand_made_example() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 0] * 2)  # 6 positives in 20: base rate 0.3
    score = np.linspace(1.0, 0.05, 20)  # the top 10% are rows 0 and 1: one churner
    lift, capture = metrics.top_share_stats(y, score, 0.1)
    assert lift == pytest.approx((1 / 2) / 0.3)
    assert capture == pytest.approx(1 / 6)
    result = evaluate(y, score, 0.5)
    assert result["top_decile_capture"] == pytest.approx(1 / 6)


def test_calibration_error_is_zero_when_calibrated() -> None:
    y = np.array([0, 0, 0, 1] * 25 + [1, 1, 1, 0] * 25)
    score = np.r_[np.full(100, 0.25), np.full(100, 0.75)]
    assert metrics.expected_calibration_error(y, score) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(y, 1 - score) == pytest.approx(0.5)
    table = metrics.calibration_table(y, score, bins=4)
    assert [row["rows"] for row in table] == [100, 100]


def test_auc_handles_ties_and_degenerate_labels() -> None:
    assert metrics.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert np.isnan(metrics.auc([0, 0, 0], [0.1, 0.2, 0.3]))


# ---- thresholds -----------------------------------------------------------------------------


def test_expected_value_threshold_on_a_hand_made_example() -> None:
    """Contacting costs 10, saving a churner is worth 0.5 * 100 = 50: every churner contacted
    is +40, every stayer -10, so the best list is the top four (40 + 40 - 10 + 40 = 110),
    beating the top two (80) and the top five (100)."""
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    threshold, ev, curve = expected_value_threshold(
        y, score, intervention_cost=10, retained_value=100, success_rate=0.5
    )
    assert threshold == pytest.approx(0.6)
    assert ev == pytest.approx(110 / 8)
    assert curve["expected_value_per_customer"].max() == pytest.approx(110 / 8)
    nobody, zero, _ = expected_value_threshold(
        y, score, intervention_cost=100, retained_value=100, success_rate=0.5
    )
    assert nobody > score.max() and zero == 0.0


def test_risk_tiers_are_monotone_and_high_is_the_decision() -> None:
    scores = np.random.default_rng(3).beta(1, 20, 1000)
    threshold = float(np.quantile(scores, 0.8))
    cuts = risk_tiers(scores, threshold)
    assert cuts[0] <= cuts[1] == threshold
    ordered = [assign_tier(p, cuts) for p in np.sort(scores)]
    rank = {"low": 0, "medium": 1, "high": 2}
    assert [rank[t] for t in ordered] == sorted(rank[t] for t in ordered)
    assert list(assign_tiers(np.sort(scores), cuts)) == ordered
    assert ordered.count("high") == (scores >= threshold).sum()
    # medium and low split the rest half and half
    assert ordered.count("medium") == pytest.approx(ordered.count("low"), abs=2)


def test_tier_cuts_follow_the_threshold_for_old_cards_and_requests() -> None:
    from churn.modeling.card import card_tier_cuts
    from churn.modeling.thresholds import tier_cuts

    old = {
        "thresholds": {"decision": 0.157},
        "risk_tiers": {"low_medium": 0.023, "medium_high": 0.047},
    }
    assert card_tier_cuts(old) == (0.023, 0.157)
    assert card_tier_cuts(old, 0.01) == (0.01, 0.01)
    assert tier_cuts(0.2, 0.1) == (0.1, 0.1)
    p = np.array([0.01, 0.03, 0.1, 0.157, 0.5])
    assert list(assign_tiers(p, card_tier_cuts(old))) == ["low", "medium", "medium", "high", "high"]


# ---- plots ----------------------------------------------------------------------------------


def test_plots_return_png_bytes() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(int)
    scores = {"a": np.clip(0.2 + 0.3 * y + rng.normal(0, 0.2, 500), 0, 1), "b": rng.random(500)}
    images = [
        plots.roc_curve(y, scores),
        plots.pr_curve(y, scores),
        plots.calibration_plot(y, scores),
        plots.feature_importance(list(FEATURE_NAMES), list(rng.random(len(FEATURE_NAMES)))),
        plots.confusion_matrix(y, scores["a"], 0.4),
    ]
    for png in images:
        assert png.startswith(PNG_MAGIC)
        assert len(png) > 5_000
