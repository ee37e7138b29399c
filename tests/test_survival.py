"""Time to churn and customer value (issue 26, items 1 and 2): the hazard model's survival curve,
its evaluation beside lifelines' Cox model, and the columns it adds to ``customer_scores``.

Unit tests train on the small real training set (``tests/small_data.py``); the graph tests read
the session's materialized graph (real assets into a temp DuckDB, the champion in its store).
"""

from __future__ import annotations

import itertools
import pickle
from dataclasses import replace

import duckdb
import numpy as np
import pytest

from churn.features import FEATURE_NAMES
from churn.modeling import LightGBMConfig, train_lightgbm
from churn.modeling.survival import (
    HORIZONS,
    LIFETIME_CAP_MONTHS,
    SURVIVAL_COLUMNS,
    ValueRule,
    fit_survival,
    follow_up,
    survival_columns,
    value_rule,
)
from churn.modeling.training import Economics, prepare
from tests.small_data import HORIZON_DAYS, training_frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    frame = training_frame(tmp_path_factory.mktemp("survival"))
    data = prepare(
        frame,
        list(FEATURE_NAMES),
        validation_months=1,
        test_months=2,
        horizon_days=HORIZON_DAYS,
    )
    hazard = train_lightgbm(
        data.train.X, data.train.y, data.validation.X, data.validation.y, data.specs,
        LightGBMConfig(),
    )  # fmt: skip
    return data, hazard, fit_survival(data, hazard, HORIZON_DAYS)


def test_horizon_probabilities_never_decrease_and_lifetime_is_capped(trained):
    data, _, survival = trained
    survival = replace(survival, value=ValueRule(fallback=20.0))
    columns = survival.predict(data.test.X)
    kept = list(survival.horizons)
    assert kept == [name for name in HORIZONS if name in kept]
    for shorter, longer in itertools.pairwise(kept):
        assert (columns[longer] >= columns[shorter]).all()
    assert ((columns[kept[0]] >= 0) & (columns[kept[-1]] <= 1)).all()
    lifetime = columns["expected_lifetime_months"]
    assert ((lifetime > 0) & (lifetime <= LIFETIME_CAP_MONTHS)).all()
    assert (columns["clv"] > 0).all() and (columns["clv"] < 20.0 * lifetime + 1e-9).all()


def test_a_horizon_longer_than_the_matured_history_is_left_out_and_said(trained):
    _, _, survival = trained
    # the small world matures five months of history: 180 days cannot be checked
    assert "p_churn_180d" not in survival.horizons
    assert "fewer than the 6" in survival.left_out["p_churn_180d"]
    assert survival.card()["left_out"] == survival.left_out


def test_formulas_on_known_hazards():
    columns = survival_columns(np.array([0.0, 0.1, 1.0]), HORIZONS, value_per_month=10.0)
    assert columns["p_churn_30d"] == pytest.approx([0.0, 0.1, 1.0])
    assert columns["p_churn_90d"] == pytest.approx([0.0, 1 - 0.9**3, 1.0])
    assert columns["expected_lifetime_months"] == pytest.approx(
        [60.0, sum(0.9**t for t in range(1, 61)), 0.0]
    )
    discount = 1.1 ** (-1 / 12)
    assert columns["clv"][1] == pytest.approx(
        10.0 * sum((0.9 * discount) ** t for t in range(1, 61))
    )


def test_value_per_month_is_a_year_of_the_configured_number_or_the_measures_average(trained):
    data, _, _ = trained
    X = np.array([[np.nan] * len(data.specs)])
    assert value_rule(Economics(), None, data.specs).monthly(X) == pytest.approx([20.0])
    measured = Economics(retained_value_measure="amount", retained_value_months=6)
    rule = value_rule(measured, None, data.specs)
    assert data.specs[rule.feature_index].name == "amount_paid_90d"
    X[0, rule.feature_index] = 90.0
    assert rule.monthly(X) == pytest.approx([90.0 * (365.25 / 12) / 90])
    X[0, rule.feature_index] = 0.0  # no value of their own: the configured number over months
    assert rule.monthly(X) == pytest.approx([240.0 / 6])
    with pytest.raises(ValueError, match=r"economics\.retained_value\.measure"):
        value_rule(Economics(retained_value_measure="minutes"), None, data.specs)


def test_follow_up_reads_the_cohorts_later_rows(trained):
    data, _, _ = trained
    cohort, durations, events = follow_up(data.test.frame)
    first = data.test.frame.loc[cohort]
    churned_first = first["churned"].to_numpy() == 1
    assert (durations[churned_first] == 1).all() and (events[churned_first] == 1).all()
    assert set(np.unique(durations)) <= {1.0, 2.0}


def test_c_index_beside_the_cox_baseline(trained):
    _, _, survival = trained
    metrics = survival.metrics
    # the small world (1,200 customers, two test months) reaches about 0.75
    assert metrics["survival_c_index"] >= 0.7
    assert 0 < metrics["integrated_brier"] < 0.25
    cox = metrics["cox_baseline"]
    assert "error" in cox or cox["c_index"] > 0.5


def test_survival_travels_inside_the_pickled_model(trained):
    data, hazard, survival = trained
    hazard.survival = survival
    try:
        loaded = pickle.loads(pickle.dumps(hazard))
    finally:
        del hazard.survival
    assert loaded.survival.hazard is loaded  # one object, no second copy of the booster
    np.testing.assert_allclose(
        loaded.survival.predict(data.test.X)["p_churn_30d"], hazard.predict_proba(data.test.X)
    )


# --- the graph ----------------------------------------------------------------------------


def test_every_score_row_has_clv_and_consistent_horizons(materialized):
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        scores = con.execute(
            f"SELECT churn_probability, {', '.join(SURVIVAL_COLUMNS)} FROM customer_scores"
        ).df()
    assert len(scores) > 0
    assert scores["clv"].notna().all() and (scores["clv"] > 0).all()
    assert scores["expected_lifetime_months"].notna().all()
    present = [name for name in HORIZONS if scores[name].notna().all()]
    assert present[:1] == ["p_churn_30d"]
    for shorter, longer in itertools.pairwise(present):
        assert (scores[longer] >= scores[shorter]).all()


def test_the_card_keeps_the_survival_metrics(materialized):
    from churn import registry

    card = registry.load_model().card
    survival = card["survival"]
    assert survival["metrics"]["survival_c_index"] > 0.5
    assert "cox_baseline" in survival["metrics"]
    assert set(survival["horizons"]) | set(survival["left_out"]) == set(HORIZONS)


def test_the_score_object_carries_the_same_numbers_as_the_table(materialized):
    """The service's score objects come from the same Scorer and the same pickled survival
    model as customer_scores: the numbers agree, and the response model keeps them."""
    from churn import registry
    from churn.scoring.scorer import Scorer
    from serving.schemas import Score

    champion = registry.load_model()
    scorer = Scorer(champion.model, champion.card, champion.version)
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        newest = con.execute("SELECT max(observation_date) FROM customer_scores").fetchone()[0]
        features = con.execute(
            "SELECT * FROM customer_features WHERE observation_date = ? ORDER BY customer_id "
            "LIMIT 20",
            [newest],
        ).df()
        stored = (
            con.execute(
                f"SELECT customer_id, {', '.join(SURVIVAL_COLUMNS)} FROM customer_scores "
                "WHERE observation_date = ?",
                [newest],
            )
            .df()
            .set_index("customer_id")
        )
    records = features[scorer.feature_order].astype(object).to_dict("records")
    records = [{k: (None if v != v else v) for k, v in r.items()} for r in records]
    scored = scorer.score(features["customer_id"].tolist(), records).scores
    for score in scored:
        row = stored.loc[score["customer_id"]]
        for name in SURVIVAL_COLUMNS:
            if row[name] == row[name]:  # not NULL: a horizon the model reports
                assert score[name] == pytest.approx(row[name], rel=1e-9), name
            else:
                assert name not in score
        dumped = Score.model_validate(score).model_dump()
        assert dumped["clv"] == pytest.approx(score["clv"])
        assert "p_churn_180d" in dumped or "p_churn_180d" not in score


@pytest.mark.slow
def test_a_flat_source_trains_and_scores_without_survival():
    """A flat table observed once has no time axis: the champion is trained and every row is
    scored as before, the survival columns are NULL and the card says why."""
    from churn.modeling.survival import FLAT_REASON
    from tests.byod_support import run_example

    run = run_example("flat")
    (card,) = run.cards()
    assert card["survival"] == {"skipped": FLAT_REASON}
    with duckdb.connect(str(run.warehouse), read_only=True) as con:
        scores = con.execute(
            f"SELECT churn_probability, {', '.join(SURVIVAL_COLUMNS)} FROM customer_scores"
        ).df()
    assert len(scores) > 0 and scores["churn_probability"].notna().all()
    assert scores[SURVIVAL_COLUMNS].isna().all().all()


def test_a_test_cohort_without_churn_is_reported_not_evaluated(trained):
    data, hazard, _ = trained
    quiet = replace(data, test=replace(data.test, frame=data.test.frame.assign(churned=0)))
    survival = fit_survival(quiet, hazard, HORIZON_DAYS)
    assert "no pairs to compare" in survival.metrics["not_evaluated"]
    assert survival.predict(data.test.X)["p_churn_30d"].shape == (data.test.rows,)
