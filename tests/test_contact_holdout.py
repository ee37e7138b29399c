"""Whom to contact and the control group (``contact``, ``holdout`` in ``customer_scores``),
each customer's own value, and the realized effect ``model_performance`` reports.

The rule itself on plain frames (fast), then the real graph: the session's materialized
synthetic data, its champion, ``customer_scores`` re-materialized into the same warehouse.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn.modeling.training import Economics
from churn.monitoring.performance import newcombe, realized_effect, wilson
from churn.scoring.contact import (
    DAYS_PER_MONTH,
    choose_contacts,
    customer_values,
    expected_values,
    value_feature,
)
from churn.sources.config import load_source
from tests.graph import materialize_graph

DAY = date(2025, 6, 1)


def _frame(n: int = 1000, seed: int = 3, day: date = DAY) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.6, n)
    labels = (p >= 0.2).astype(np.int64)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "observation_date": pd.Timestamp(day),
            "churn_label": labels,
            "expected_value": expected_values(p, np.full(n, 240.0), Economics()),
        }
    )


# --- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5])
def test_the_holdout_is_exactly_the_share_of_the_selected(share):
    frame = _frame()
    contact, holdout = choose_contacts(frame, Economics(holdout_share=share))
    selected = (frame["churn_label"] == 1) & (frame["expected_value"] > 0)
    assert (contact | holdout).sum() == selected.sum()
    assert holdout.sum() == round(share * selected.sum())
    assert not (contact & holdout).any()
    assert not (contact | holdout)[~selected.to_numpy()].any()


def test_the_holdout_is_the_same_whatever_the_row_order():
    frame = _frame()
    contact, holdout = choose_contacts(frame, Economics())
    shuffled = frame.sample(frac=1, random_state=1)
    contact2, holdout2 = choose_contacts(shuffled.reset_index(drop=True), Economics())
    held = set(frame.loc[holdout, "customer_id"])
    assert held == set(shuffled.loc[holdout2, "customer_id"])
    assert set(frame.loc[contact, "customer_id"]) == set(shuffled.loc[contact2, "customer_id"])


def test_each_month_draws_its_own_holdout():
    frame = _frame()
    later = frame.assign(observation_date=pd.Timestamp(date(2025, 7, 1)))
    both = pd.concat([frame, later], ignore_index=True)
    _, holdout = choose_contacts(both, Economics(holdout_share=0.3))
    ids, n = both["customer_id"].to_numpy(), len(frame)
    first, second = set(ids[:n][holdout[:n]]), set(ids[n:][holdout[n:]])
    assert len(first) == len(second) == round(0.3 * ((frame["churn_label"] == 1).sum()))
    assert first != second  # the hash takes the month: not one permanent control group


@pytest.mark.parametrize(
    ("economics", "expected"),
    [(Economics(capacity_count=50), 50), (Economics(capacity_share=0.05), 50)],
)
def test_capacity_keeps_the_best_expected_values(economics, expected):
    frame = _frame()
    contact, holdout = choose_contacts(frame, economics)
    kept = contact | holdout
    assert kept.sum() == expected
    assert holdout.sum() == round(0.1 * expected)
    ev = frame["expected_value"].to_numpy()
    candidates = (frame["churn_label"] == 1).to_numpy() & (ev > 0)
    assert ev[kept].min() >= ev[candidates & ~kept].max()


def test_a_capacity_above_the_candidates_keeps_them_all_and_zero_keeps_none():
    frame = _frame()
    everyone, _ = choose_contacts(frame, Economics(capacity_count=10**6, holdout_share=0))
    assert everyone.sum() == ((frame["churn_label"] == 1) & (frame["expected_value"] > 0)).sum()
    nobody, held = choose_contacts(frame, Economics(capacity_count=0))
    assert not nobody.any() and not held.any()


def test_a_high_tier_customer_with_a_negative_expected_value_is_not_contacted():
    frame = _frame().assign(churn_label=1)  # everyone high, some worth less than a contact
    contact, _ = choose_contacts(frame, Economics(holdout_share=0))
    assert (contact == (frame["expected_value"] > 0)).all()


# --- each customer's value ------------------------------------------------------------------------


def test_an_event_log_value_is_the_monthly_average_of_the_longest_window(tmp_path):
    (tmp_path / "events.csv").write_text("customer_id,event_time,amount\nc1,2024-05-01,3\n")
    (tmp_path / "source.yaml").write_text(
        "shape: events\nobservation: {start: 2024-04-01}\nchurn: {inactive_days: 90}\n"
        "tables:\n  events: {path: events.csv, measures: [Qty, amount]}\n"
        "economics: {retained_value: {measure: amount, months: 12, default: 50}}\n"
    )
    config = load_source(tmp_path / "source.yaml")
    economics = Economics(**config.economics.model_dump())
    assert value_feature(economics, config) == ("amount_sum_90d", DAYS_PER_MONTH / 90)
    features = pd.DataFrame({"amount_sum_90d": [90.0, 0.0, np.nan, -5.0]})
    values = customer_values(features, economics, config)
    np.testing.assert_allclose(values, [90 / 90 * DAYS_PER_MONTH * 12, 50, 50, 50])
    wider = pd.DataFrame({"amount_sum_30d": [1.0], "amount_sum_180d": [360.0]})
    assert value_feature(economics, config, list(wider.columns))[0] == "amount_sum_180d"
    np.testing.assert_allclose(
        customer_values(wider, economics, config), [360 / 180 * DAYS_PER_MONTH * 12]
    )


def test_a_flat_value_is_its_column_times_months(tmp_path):
    (tmp_path / "customers.csv").write_text("id,churned,MonthlyCharges\nc1,yes,20\n")
    (tmp_path / "source.yaml").write_text(
        'shape: flat\ntable: customers.csv\nid_column: id\nlabel: {column: churned, positive: "yes"}\n'
        "economics: {retained_value: {measure: MonthlyCharges, months: 6}}\n"
    )
    config = load_source(tmp_path / "source.yaml")
    economics = Economics(**config.economics.model_dump())
    values = customer_values(pd.DataFrame({"monthly_charges": [20.0, None]}), economics, config)
    np.testing.assert_allclose(values, [120.0, 240.0])
    with pytest.raises(ValueError, match=r"economics\.retained_value\.measure"):
        customer_values(pd.DataFrame({"other": [1.0]}), economics, config)


# --- the interval ---------------------------------------------------------------------------------


def test_newcombe_matches_the_published_examples():
    # Newcombe (1998), Statistics in Medicine 17, table II, method 10.
    d, low, high = newcombe(56, 70, 48, 80)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    d, low, high = newcombe(9, 10, 3, 10)
    assert (round(low, 4), round(high, 4)) == (0.1705, 0.809)
    low, high = wilson(0, 10)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)


# --- the real graph -------------------------------------------------------------------------------


def _read(warehouse: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def test_customer_scores_hold_out_the_configured_share_every_month(materialized):
    per_month = _read(
        materialized.warehouse,
        "SELECT observation_date, count_if(contact) AS contacted, count_if(holdout) AS held, "
        "count_if(contact AND holdout) AS both, "
        "count_if((contact OR holdout) AND NOT (churn_label = 1 AND expected_value > 0)) AS "
        "outside, count_if(churn_label = 1 AND expected_value > 0) AS candidates "
        "FROM customer_scores GROUP BY ALL ORDER BY 1",
    )
    assert len(per_month) > 3
    assert (per_month["both"] == 0).all() and (per_month["outside"] == 0).all()
    selected = per_month["contacted"] + per_month["held"]
    assert (selected == per_month["candidates"]).all()  # no cap by default
    assert (per_month["held"] == [round(0.1 * n) for n in selected]).all()
    assert per_month["held"].sum() > 0


def test_rescoring_keeps_the_same_control_group(materialized):
    month = _read(
        materialized.warehouse,
        "SELECT max(observation_date) AS d FROM customer_scores WHERE holdout",
    )["d"][0].date()
    query = (
        "SELECT customer_id, contact, holdout, scored_at FROM customer_scores "
        "WHERE observation_date = ? ORDER BY customer_id"
    )
    before = _read(materialized.warehouse, query, [month])
    run = materialize_graph(
        materialized.home, "customer_scores", first=month.isoformat(), last=month.isoformat()
    )
    assert run.result.success
    after = _read(materialized.warehouse, query, [month])
    assert after["scored_at"].min() > before["scored_at"].max()
    pd.testing.assert_frame_equal(before.drop(columns="scored_at"), after.drop(columns="scored_at"))
    metadata = run.result.asset_materializations_for_node("customer_scores")[-1].metadata
    assert metadata["held_out_newest_month"].value >= 0
    assert "holdout_share" in metadata["economics"].value


def test_a_value_from_a_measure_changes_expected_value_not_the_label(materialized, champion):
    from churn.scoring.batch import score_frame
    from churn.scoring.scorer import Scorer

    features = _read(
        materialized.warehouse,
        "SELECT * FROM customer_features WHERE observation_date = "
        "(SELECT max(observation_date) FROM customer_features) ORDER BY customer_id",
    )
    scorer = Scorer(champion.model, champion.card, champion.version)
    flat = score_frame(scorer, features, Economics())
    economics = replace(Economics(), retained_value_measure="amount", retained_value_months=12)
    own = score_frame(scorer, features, economics)
    monthly = features["amount_paid_90d"].to_numpy(dtype=float) * DAYS_PER_MONTH / 90
    expected = np.where(monthly > 0, monthly * 12, 240.0)
    np.testing.assert_allclose(own["retained_value"], expected)
    np.testing.assert_allclose(
        own["expected_value"], own["churn_probability"] * 0.3 * expected - 10, atol=1e-9
    )
    assert own["retained_value"].nunique() > 10  # customers are worth different amounts
    pd.testing.assert_series_equal(own["churn_label"], flat["churn_label"])
    pd.testing.assert_series_equal(own["risk_tier"], flat["risk_tier"])
    chosen = own["contact"] | own["holdout"]
    assert (own.loc[chosen, "churn_label"] == 1).all()
    assert (own.loc[chosen, "expected_value"] > 0).all()


@pytest.fixture(scope="module")
def champion(materialized):
    from churn import registry

    return registry.load_model()


def test_no_contact_effect_exists_in_the_default_history_and_the_interval_says_so(materialized):
    """Without a true effect each interval covers 0 but for chance. The test reads several
    intervals (each matured month and the pooled row), so it holds them to a family-wise 95%:
    Bonferroni, each at 1 - 0.05 / k. At 95% each, k intervals fail together by chance more
    often than 5% (the pooled row of this world sat at a lower bound of +0.001)."""
    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        family = len(realized_effect(con))
        effects = realized_effect(con, confidence=1 - 0.05 / max(family, 1))
        matured = {
            d.isoformat()
            for (d,) in con.execute(
                "SELECT DISTINCT observation_date FROM churn_labels WHERE churned IS NOT NULL"
            ).fetchall()
        }
    finally:
        con.close()
    months = [e for e in effects if e.observation_date != "all"]
    assert {e.observation_date for e in months} == matured
    measured = [e for e in effects if e.difference is not None]
    assert measured, "no matured month had both contacted and held-out customers"
    for e in measured:
        assert e.ci_low <= 0 <= e.ci_high, e
        assert e.difference == pytest.approx(e.contacted_churn_rate - e.held_out_churn_rate)
    events = materialized.result.asset_materializations_for_node("model_performance")
    metadata = events[-1].metadata
    assert "Newcombe" in metadata["realized_effect_method"].value
    by_month = metadata["customer_scores_realized_results"].value
    assert all(0 < row["holdout_share"] < row["contact_share"] for row in by_month)


@pytest.mark.slow
def test_the_flat_example_values_each_customer_by_its_own_monthly_charges():
    """The flat example's config takes the value from ``MonthlyCharges`` (12 months): the card
    keeps that, the threshold is still chosen with the fallback 240, and ``customer_scores``
    holds each customer's own value and the configured holdout."""
    from tests.byod_support import run_example

    run = run_example("flat")
    card = run.cards()[-1]
    assert card["economics"]["retained_value_measure"] == "MonthlyCharges"
    assert card["economics"]["retained_value_months"] == 12
    assert card["economics"]["retained_value"] == 240
    scores = _read(
        run.warehouse,
        "SELECT s.*, f.monthly_charges FROM customer_scores s "
        "JOIN customer_features f USING (customer_id, observation_date)",
    )
    charges = scores["monthly_charges"].to_numpy(dtype=float)
    expected = np.where(charges > 0, charges * 12, 240.0)
    np.testing.assert_allclose(scores["retained_value"], expected)
    selected = scores["contact"] | scores["holdout"]
    assert selected.sum() > 0
    assert scores["holdout"].sum() == round(0.1 * selected.sum())
    assert (scores.loc[selected, "risk_tier"] == "high").all()
