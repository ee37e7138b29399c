"""The classic baselines: BG/NBD recovers what generated the data, and every baseline is
scored on exactly the champion's test rows of a real (small) event log."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np
import pytest

from churn.features import FEATURE_NAMES, FEATURES
from churn.ingest.landing import find_source_file, land_file
from churn.ingest.schema import RAW_TABLES
from churn.ingest.staging import stage_table
from churn.modeling.baselines import (
    BGNBD,
    COUNTS_LOGISTIC,
    FLAT_LOGISTIC,
    RECENCY,
    BGNBDParams,
    classic_baselines,
    compare_baselines,
    fit_bgnbd,
    p_alive,
    p_no_event,
    simulate_bgnbd,
    window_count_columns,
)
from churn.modeling.candidates import LightGBMConfig, LogisticConfig
from churn.modeling.metrics import auc
from churn.modeling.training import Economics, evaluate_candidates, prepare, train_candidates
from tests.small_data import HORIZON_DAYS, training_frame
from tests.test_bring_your_own_data import flat_run  # noqa: F401 (fixture)
from tests.test_event_log_pipeline import purchases  # noqa: F401 (fixture)

LOG = logging.getLogger(__name__)


@pytest.mark.parametrize("seed", [0, 1])
def test_bgnbd_fit_recovers_the_parameters_that_generated_the_data(seed: int):
    truth = BGNBDParams(r=0.5, alpha=5.0, a=0.8, b=2.5)
    x, t_x, T = simulate_bgnbd(truth, customers=10_000, T=52.0, seed=seed)
    fitted = fit_bgnbd(x, t_x, T)
    assert fitted.r == pytest.approx(truth.r, rel=0.1)
    assert fitted.alpha == pytest.approx(truth.alpha, rel=0.1)
    # a and b trade off against each other; the mean dropout probability is what is identified
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(
        truth.a / (truth.a + truth.b), abs=0.03
    )


def test_bgnbd_probabilities_behave():
    params = BGNBDParams(r=0.5, alpha=5.0, a=0.8, b=2.5)
    # no repeat event: never seen dropping out
    assert p_alive(params, [0], [0.0], [10.0])[0] == 1.0
    # same history, a longer silence since the last event: less likely alive, more likely quiet
    alive = p_alive(params, [4, 4], [5.0, 5.0], [6.0, 30.0])
    assert alive[0] > alive[1]
    quiet = p_no_event(params, [4, 4], [5.0, 5.0], [6.0, 30.0], horizon=4.0)
    assert 0.0 < quiet[0] < quiet[1] < 1.0


def test_window_count_columns_are_simple_counts_plus_tenure():
    names = [
        "tenure_days",
        "type_login_30d",
        "type_login_90d",
        "events_30d",
        "shares_30d",
        "events_trend_30d_90d",
        "events_ewm_30d",
        "amount_sum_30d",
        "amount_paid_90d",
        "amount_mean_90d",
        "avg_session_minutes_30d",
        "plan",
    ]
    assert window_count_columns(names) == [
        "type_login_30d",
        "type_login_90d",
        "events_30d",
        "shares_30d",
        "tenure_days",
    ]
    assert window_count_columns(["plan", "tenure_days"]) == []


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory):
    """The small generated data's training rows, and a DuckDB holding its staged events."""
    folder: Path = tmp_path_factory.mktemp("baselines")
    frame = training_frame(folder)
    con = duckdb.connect()
    for table in RAW_TABLES:  # the same landing and staging the pipeline runs
        land_file(con, find_source_file(folder / "raw", table), table, replace=True)
    for table in RAW_TABLES:
        stage_table(con, table)
    data = prepare(
        frame,
        list(FEATURE_NAMES),
        validation_months=1,
        test_months=2,
        horizon_days=HORIZON_DAYS,
        features=list(FEATURES),
    )
    yield data, con
    con.close()


def test_every_event_log_baseline_scores_the_champions_test_rows(small_log):
    data, con = small_log
    scores, fitted = classic_baselines(data, con, horizon_days=HORIZON_DAYS, flat=False)
    assert set(scores) == {RECENCY, BGNBD, COUNTS_LOGISTIC}
    for name, values in scores.items():
        assert len(values) == data.test.rows, name
        assert np.isfinite(values).all(), name
    # BG/NBD was refitted at each test date on the events before it
    test_dates = sorted({str(d)[:10] for d in data.test.frame["observation_date"]})
    assert sorted(fitted[BGNBD]) == test_dates
    assert "tenure_days" in fitted[COUNTS_LOGISTIC]
    # the classics carry signal on this data: better than a coin
    assert auc(data.test.y, scores[BGNBD]) > 0.55
    assert auc(data.test.y, scores[COUNTS_LOGISTIC]) > 0.55

    models = train_candidates(
        data, LogisticConfig(), LightGBMConfig(n_estimators=200, early_stopping_rounds=20)
    )
    evaluation = evaluate_candidates(data, models, None, Economics())
    comparison = compare_baselines(
        data.test.y, evaluation.winner, evaluation.winning.test_scores, scores, n_boot=200
    )
    assert comparison.rows == data.test.rows == len(evaluation.winning.test_scores)
    assert comparison.best_baseline in scores
    best = comparison.auc[comparison.best_baseline]
    assert comparison.margin == pytest.approx(comparison.auc[evaluation.winner] - best)
    assert comparison.ci_low <= comparison.margin <= comparison.ci_high
    table = {row[0]: row for row in comparison.table()}
    assert table[evaluation.winner][3] is None
    assert table[BGNBD][3] == pytest.approx(comparison.auc[evaluation.winner] - table[BGNBD][1])
    floats = comparison.as_floats()
    assert floats["bgnbd_auc"] == table[BGNBD][1]
    assert floats["recency_auc"] == pytest.approx(evaluation.baselines["recency_auc"])


def test_a_flat_table_gets_the_raw_column_logistic_regression_and_no_bgnbd(small_log):
    data, _ = small_log
    scores, _ = classic_baselines(data, None, horizon_days=HORIZON_DAYS, flat=True)
    assert FLAT_LOGISTIC in scores and BGNBD not in scores
    assert len(scores[FLAT_LOGISTIC]) == data.test.rows


def test_a_baseline_scored_on_other_rows_is_refused():
    with pytest.raises(ValueError, match="baseline 'short' scored 2 rows, the test has 3"):
        compare_baselines([0, 1, 0], "model", [0.1, 0.9, 0.2], {"short": [0.1, 0.2]})


def test_model_evaluation_reports_the_baselines_on_the_winners_test_rows(materialized):
    from tests.test_models import materialization

    metadata = materialization(materialized, "model_evaluation").metadata
    split = materialization(materialized, "candidate_models").metadata["split"].value
    assert metadata["baseline_rows"].value == split["rows"]["test"]
    records = {r.data["model"]: r.data for r in metadata["baselines"].value.records}
    winner = metadata["winner"].value
    assert {winner, RECENCY, BGNBD, COUNTS_LOGISTIC} <= set(records)
    assert records[winner]["test_roc_auc"] == pytest.approx(
        metadata["test_roc_auc"].value, abs=1e-4
    )
    assert 0.5 < metadata["baseline_bgnbd_auc"].value < 1.0
    margin = metadata["margin_over_best_baseline"].value
    assert margin["ci_low"] <= margin["margin"] <= margin["ci_high"]
    assert "data:image/png;base64," in metadata["plot_baselines"].value
    card = materialization(materialized, "champion_model").metadata["model_card"].value
    assert card["metrics"]["baselines"]["bgnbd_auc"] == pytest.approx(
        metadata["baseline_bgnbd_auc"].value
    )


def test_a_purchase_log_reports_bgnbd_and_counts_on_the_same_rows(purchases):  # noqa: F811
    _, run = purchases
    evaluation = run.metadata("model_evaluation")
    split = run.metadata("candidate_models")["split"]
    assert evaluation["baseline_rows"] == split["rows"]["test"]
    records = {r.data["model"]: r.data for r in evaluation["baselines"].records}
    assert {RECENCY, BGNBD, COUNTS_LOGISTIC} <= set(records)
    assert 0.5 < evaluation["baseline_bgnbd_auc"] < 1.0
    LOG.info("purchases: %s", {name: r["test_roc_auc"] for name, r in records.items()})
    LOG.info(
        "margin %s, test_ece %s", evaluation["margin_over_best_baseline"], evaluation["test_ece"]
    )
    card = run.card()["metrics"]
    assert card["calibration"]["test_ece"] == pytest.approx(evaluation["test_ece"])
    assert card["baselines"]["bgnbd_auc"] == pytest.approx(evaluation["baseline_bgnbd_auc"])


def test_a_flat_table_reports_the_raw_column_logistic_regression(flat_run):  # noqa: F811
    from tests.test_bring_your_own_data import _metadata

    evaluation = _metadata(flat_run, "model_evaluation")
    split = _metadata(flat_run, "candidate_models")["split"]
    assert evaluation["baseline_rows"] == split["rows"]["test"]
    records = {r.data["model"]: r.data for r in evaluation["baselines"].records}
    assert FLAT_LOGISTIC in records and BGNBD not in records
    LOG.info("flat: %s", {name: r["test_roc_auc"] for name, r in records.items()})
