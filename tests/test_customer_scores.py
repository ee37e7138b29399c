"""``customer_scores``, its CRM export, the model's decision threshold and the backtest.

Real parts throughout: the session's materialized graph (small synthetic data), the champion in
its BentoML store, the built Bento under a real ``bentoml serve`` for the parity checks.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from datetime import date, timedelta

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from churn.modeling.card import card_economics, decision_threshold
from tests.graph import materialize_graph
from tests.serving_support import Server, bento_tag, serving, start


@pytest.fixture(scope="module")
def champion(materialized):
    from churn import registry

    return registry.load_model()


def _scores(materialized, where: str = "TRUE", params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        return con.execute(
            f"SELECT * FROM customer_scores WHERE {where} ORDER BY observation_date, customer_id",
            params or [],
        ).df()
    finally:
        con.close()


def _query(materialized, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# --- the table ------------------------------------------------------------------------------


def test_every_observed_customer_is_scored_once_per_date(materialized):
    per_date = dict(
        _query(
            materialized,
            "SELECT observation_date, count(*) FROM customer_features GROUP BY ALL",
        )
    )
    scored = dict(
        _query(
            materialized,
            "SELECT observation_date, count(DISTINCT customer_id) FROM customer_scores "
            "GROUP BY ALL",
        )
    )
    assert scored == per_date
    duplicates = _query(
        materialized,
        "SELECT count(*) FROM (SELECT customer_id, observation_date FROM customer_scores "
        "GROUP BY ALL HAVING count(*) > 1)",
    )
    assert duplicates == [(0,)]


def test_rows_follow_the_champion_card(materialized, champion):
    scores = _scores(materialized)
    card = champion.card
    threshold = decision_threshold(card)
    assert "decision" in card["thresholds"]
    assert threshold == card["thresholds"]["expected_value"]
    assert (scores["threshold"] == threshold).all()
    assert (scores["model_version"] == champion.version).all()
    p = scores["churn_probability"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert (scores["churn_label"].to_numpy() == (p >= threshold)).all()
    # One decision: high <=> churn_label = 1 <=> p >= threshold; medium/low split the rest.
    assert card["risk_tiers"]["medium_high"] == threshold
    high = scores["risk_tier"].to_numpy() == "high"
    assert (high == (scores["churn_label"].to_numpy() == 1)).all()
    low = card["risk_tiers"]["low_medium"]
    assert low <= threshold
    expected_tier = np.where(p >= threshold, "high", np.where(p >= low, "medium", "low"))
    assert (scores["risk_tier"].to_numpy() == expected_tier).all()
    economics = card_economics(card)
    assert economics.intervention_cost == card["economics"]["intervention_cost"]
    value = p * economics.success_rate * economics.retained_value - economics.intervention_cost
    np.testing.assert_allclose(scores["expected_value"], value, rtol=0, atol=1e-12)
    pushes = scores[[f"reason_{k}_contribution" for k in (1, 2, 3)]].to_numpy()
    rest = np.abs(pushes[~high])
    assert (rest[:, 0] >= rest[:, 1]).all() and (rest[:, 1] >= rest[:, 2]).all()
    # A high customer's reasons only raise the risk (an empty slot has no feature).
    risky = pushes[high]
    assert (risky[:, 0] > 0).all()
    assert ((risky[:, 1:] > 0) | np.isnan(risky[:, 1:])).all()
    assert (np.isnan(risky[:, 1:]) == scores.loc[high, ["reason_2_feature", "reason_3_feature"]]
            .isna().to_numpy()).all()  # fmt: skip
    assert set(scores["reason_1_feature"]) <= set(card["feature_order"])
    ranks = scores.sort_values(["observation_date", "risk_rank"])
    for _, month in ranks.groupby("observation_date"):
        assert month["risk_rank"].tolist() == list(range(1, len(month) + 1))
        assert month["churn_probability"].is_monotonic_decreasing


def test_the_decision_threshold_labels_a_real_share_not_almost_no_one(materialized):
    """At 0.5 the champion labelled almost no one; at the expected-value threshold the contact
    list is a real share of the base, and the customers on it are riskier than the rest."""
    scores = _scores(materialized)
    labelled = scores["churn_label"].mean()
    assert 0.01 < labelled < 0.6
    assert (scores["churn_probability"] >= 0.5).mean() < labelled
    on_list = scores.loc[scores["churn_label"] == 1, "expected_value"]
    assert on_list.min() > scores.loc[scores["churn_label"] == 0, "expected_value"].max() - 1e-9


def test_reason_values_are_the_customers_feature_values(materialized, champion):
    specs = {spec.name: spec for spec in champion.model.specs}
    rows = _query(
        materialized,
        "SELECT s.reason_1_feature, s.reason_1_value, s.reason_2_feature, s.reason_2_value, f.* "
        "FROM customer_scores s JOIN customer_features f USING (customer_id, observation_date) "
        "USING SAMPLE 200 ROWS",
    )
    names = ["reason_1_feature", "reason_1_value", "reason_2_feature", "reason_2_value"]
    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        columns = names + [c[0] for c in con.execute("DESCRIBE customer_features").fetchall()]
    finally:
        con.close()
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        for k in (1, 2):
            feature, text = record[f"reason_{k}_feature"], record[f"reason_{k}_value"]
            if feature is None:  # a high customer with a single risk-raising reason
                assert k == 2 and text is None
                continue
            value = record[feature]
            if value is None:
                assert text is None
            elif specs[feature].kind == "numeric":
                assert float(text) == pytest.approx(float(value), rel=1e-12)
            else:
                assert text == str(value)


# --- the export -----------------------------------------------------------------------------


def test_newest_month_is_exported_as_parquet_and_csv(materialized):
    newest = _query(materialized, "SELECT max(observation_date) FROM customer_scores")[0][0]
    table = _scores(materialized, "observation_date = ?", [newest])
    folder = materialized.home / "exports"
    expected = {
        f"customer_scores_{stem}.{ext}"
        for stem in ("latest", newest.isoformat())
        for ext in ("parquet", "csv")
    }
    assert expected <= {path.name for path in folder.iterdir()}
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]
    for stem in ("latest", newest.isoformat()):
        parquet = pd.read_parquet(folder / f"customer_scores_{stem}.parquet")
        csv = pd.read_csv(folder / f"customer_scores_{stem}.csv")
        assert len(parquet) == len(csv) == len(table)
        assert parquet["churn_probability"].is_monotonic_decreasing  # riskiest first
        merged = parquet.merge(table, on="customer_id", suffixes=("", "_table"))
        assert len(merged) == len(table)
        np.testing.assert_array_equal(
            merged["churn_probability"], merged["churn_probability_table"]
        )
        assert list(csv.columns) == list(parquet.columns)
        assert csv["customer_id"].tolist() == parquet["customer_id"].tolist()
    events = materialized.result.asset_materializations_for_node("customer_scores")
    metadata = events[-1].metadata
    assert metadata["export_latest_parquet"].value == str(folder / "customer_scores_latest.parquet")
    assert f"| high | {(table['risk_tier'] == 'high').sum():,} |" in (
        metadata["tier_counts_newest_month"].value
    )


# --- re-scoring replaces ----------------------------------------------------------------------


def test_rescoring_a_month_replaces_it_and_leaves_the_others(materialized):
    dates = [
        d
        for (d,) in _query(
            materialized, "SELECT DISTINCT observation_date FROM customer_scores ORDER BY 1"
        )
    ]
    month = dates[len(dates) // 2]
    before = _scores(materialized)
    run = materialize_graph(
        materialized.home, "customer_scores", first=month.isoformat(), last=month.isoformat()
    )
    assert run.result.success
    after = _scores(materialized)
    assert len(after) == len(before)
    same_month = after["observation_date"].dt.date == month
    old_month = before["observation_date"].dt.date == month
    assert after.loc[same_month, "scored_at"].min() > before.loc[old_month, "scored_at"].max()
    # The same champion and features: the replaced month has the very same scores.
    np.testing.assert_array_equal(
        after.loc[same_month, "churn_probability"], before.loc[old_month, "churn_probability"]
    )
    others_before = before.loc[~old_month].reset_index(drop=True)
    others_after = after.loc[~same_month].reset_index(drop=True)
    pd.testing.assert_frame_equal(others_before, others_after)


# --- the same numbers as the service ----------------------------------------------------------


@pytest.fixture(scope="module")
def server(materialized, tmp_path_factory) -> Iterator[Server]:
    started = {"open": start(bento_tag(materialized), tmp_path_factory.mktemp("scores"), None)}
    with serving(started):
        yield started["open"]


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _features(row: dict, names: list[str]) -> dict:
    """The ``features`` object of a request for an offline row, JSON round-tripped."""
    return json.loads(json.dumps({name: row[name] for name in names}))


def _sample(materialized, names: list[str], rows: int = 300) -> tuple[list[dict], pd.DataFrame]:
    """Feature rows of the newest month (as a client would send them) and their stored scores."""
    columns = ", ".join(f'"{name}"' for name in ("customer_id", "observation_date", *names))
    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        cursor = con.execute(
            f"SELECT {columns} FROM customer_features WHERE observation_date = "
            "(SELECT max(observation_date) FROM customer_features) "
            "ORDER BY hash(customer_id) LIMIT ?",
            [rows * 3],
        )
        columns = [c[0] for c in cursor.description]
        features = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    # Rows the service accepts: its request schema refuses a null feature value, while the
    # offline path scores a missing value as missing (the model's own handling).
    features = [row for row in features if all(row[name] is not None for name in names)]
    features = features[:rows]
    ids = [row["customer_id"] for row in features]
    day = features[0]["observation_date"]
    stored = _scores(materialized, "observation_date = ?", [day]).set_index("customer_id")
    return features, stored.loc[ids]


@pytest.mark.slow  # a real `bentoml serve` of the built Bento
def test_stored_scores_equal_score_batch_value_for_value(materialized, http, champion):
    names = champion.card["feature_order"]
    features, stored = _sample(materialized, names)
    response = http.post(
        "/score_batch",
        json={
            "customers": [
                {"customer_id": row["customer_id"], "features": _features(row, names)}
                for row in features
            ]
        },
    )
    assert response.status_code == 200, response.text
    online = response.json()["scores"]
    assert len(online) == len(stored) == len(features) >= 100
    for score, (customer_id, row) in zip(online, stored.iterrows(), strict=True):
        assert score["customer_id"] == customer_id
        assert score["churn_probability"] == pytest.approx(row["churn_probability"], abs=1e-12)
        assert score["churn_label"] == row["churn_label"]
        assert score["threshold"] == row["threshold"]
        assert score["risk_tier"] == row["risk_tier"]
        assert score["model_version"] == row["model_version"]
        assert len(score["reasons"]) == row[[f"reason_{k}_feature" for k in (1, 2, 3)]].count()
        for k, reason in enumerate(score["reasons"], start=1):
            assert reason["feature"] == row[f"reason_{k}_feature"]
            assert reason["text"] == row[f"reason_{k}_text"]
            assert reason["contribution"] == pytest.approx(
                row[f"reason_{k}_contribution"], abs=1e-12
            )
            text = row[f"reason_{k}_value"]
            if isinstance(reason["value"], str) or reason["value"] is None:
                assert reason["value"] == text
            else:
                assert float(text) == reason["value"]


@pytest.mark.slow  # a real `bentoml serve` of the built Bento
def test_service_answers_at_the_cards_decision_threshold_unless_told(materialized, http, champion):
    names = champion.card["feature_order"]
    features, _ = _sample(materialized, names, 40)
    customers = [
        {"customer_id": row["customer_id"], "features": _features(row, names)} for row in features
    ]
    card = http.post("/model", json={}).json()
    threshold = card["thresholds"]["decision"]
    assert threshold == decision_threshold(champion.card) != card["thresholds"]["default"]
    answer = http.post("/score_batch", json={"customers": customers}).json()["scores"]
    assert {score["threshold"] for score in answer} == {threshold}
    assert all(s["churn_label"] == int(s["churn_probability"] >= threshold) for s in answer)
    one = http.post("/score", json=customers[0]).json()
    assert one["threshold"] == threshold
    told = http.post("/score_batch", json={"customers": customers, "threshold": 0.5}).json()
    assert {score["threshold"] for score in told["scores"]} == {0.5}
    assert all(s["churn_label"] == int(s["churn_probability"] >= 0.5) for s in told["scores"])
    for s in answer + told["scores"]:
        assert (s["risk_tier"] == "high") == (s["churn_label"] == 1)


def test_a_card_without_a_decision_threshold_keeps_its_default(champion):
    from churn.scoring.scorer import Scorer

    old = {k: v for k, v in champion.card.items() if k != "economics"}
    old["thresholds"] = {"default": 0.5, "expected_value": champion.card["thresholds"]["decision"]}
    scorer = Scorer(champion.model, old, champion.version)
    assert scorer.default_threshold == 0.5
    assert card_economics(old).intervention_cost == 10.0


# --- the backtest -----------------------------------------------------------------------------


def test_backtest_origins_train_only_on_matured_labels():
    from churn.modeling.backtest import origins

    dates = [date(2025, month, 1) for month in range(1, 8)]
    chosen = origins(dates, horizon_days=30, months=3)
    assert [origin for origin, _ in chosen] == dates[-3:]
    for origin, train in chosen:
        assert train and all(d + timedelta(days=30) <= origin for d in train)
        assert max(train) < origin
    # February's label window (30 days from Feb 1) is still open on March 1.
    assert origins(dates, horizon_days=30, months=6)[0][0] == date(2025, 2, 1)
    march = dict(origins(dates, horizon_days=30, months=6))[date(2025, 3, 1)]
    assert march == [date(2025, 1, 1)]


def test_backtest_on_the_test_data(materialized, champion):
    from churn.modeling.backtest import backtest, recipe_of
    from churn.sources.registry import resolve

    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        frame = con.sql("SELECT * FROM training_set ORDER BY observation_date, customer_id").df()
        shape = resolve(con)
    finally:
        con.close()
    horizon = shape.label_days
    features = list(shape.features)
    months = backtest(frame, features, recipe_of(champion.model), horizon_days=horizon, months=3)
    assert len(months) == 3
    matured = sorted({d.date() for d in frame["observation_date"]})
    assert [m.observation_date for m in months] == [d.isoformat() for d in matured[-3:]]
    for month in months:
        origin = date.fromisoformat(month.observation_date)
        assert date.fromisoformat(month.train_to) + timedelta(days=horizon) <= origin
        in_train = frame["observation_date"].dt.date.between(
            date.fromisoformat(month.train_from), date.fromisoformat(month.train_to)
        )
        assert month.train_rows == int(in_train.sum())
        assert month.rows == int((frame["observation_date"].dt.date == origin).sum())
        assert month.roc_auc is not None and 0.55 < month.roc_auc < 0.98
        assert month.top_decile_lift > 1.0
        assert 0 < month.top_decile_capture <= 1
    # The card and model_evaluation carry the same backtest of the champion's recipe.
    assert [m["observation_date"] for m in champion.card["backtest"]]
    events = materialized.result.asset_materializations_for_node("model_evaluation")
    assert "backtest" in events[-1].metadata and "plot_backtest" in events[-1].metadata


def test_model_evaluation_reports_precision_and_recall_at_the_decision_threshold(
    materialized, champion
):
    at = champion.card["metrics"]["at_decision_threshold"]
    assert at["test"]["threshold"] == champion.card["thresholds"]["decision"]
    assert 0 < at["test"]["precision"] <= 1 and 0 < at["test"]["recall"] <= 1
    metadata = materialized.result.asset_materializations_for_node("model_evaluation")[-1].metadata
    table = metadata["at_decision_threshold"]
    assert {"precision", "recall"} <= {column.name for column in table.schema.columns}
    rows = {record.data["block"]: record.data for record in table.records}
    assert rows["test"]["precision"] == pytest.approx(at["test"]["precision"], abs=1e-4)


def test_model_performance_reports_the_stored_scores_per_matured_month(materialized):
    events = materialized.result.asset_materializations_for_node("model_performance")
    results = events[-1].metadata["customer_scores_realized_results"].value
    matured = {
        d.isoformat()
        for (d,) in _query(
            materialized,
            "SELECT DISTINCT observation_date FROM churn_labels WHERE churned IS NOT NULL",
        )
    }
    assert {r["observation_date"] for r in results} == matured
    for result in results:
        assert result["window"] in {"train", "validation", "test", "unseen"}
        assert result["roc_auc"] is None or 0.5 < result["roc_auc"] < 1
        assert result["top_decile_capture"] is None or 0 <= result["top_decile_capture"] <= 1
        assert not (isinstance(result["roc_auc"], float) and math.isnan(result["roc_auc"]))


# --- the automation keeps the newest month fresh ---------------------------------------------


def test_automation_rescores_only_the_newest_month_on_a_new_champion_or_features():
    """Declarative automation evaluated on a fresh instance: every month materialized (with its
    blocking feature checks passed), then a new champion, new features for an old month, and
    new features for the newest month."""
    import dagster as dg

    from churn.settings import load_settings
    from churn_assets.definitions import defs
    from churn_assets.defs.features.assets import FEATURE_CHECKS
    from churn_assets.partitions import calendar_keys, sync_calendar
    from tests.graph import expected_calendar

    instance = dg.DagsterInstance.ephemeral()
    calendar = expected_calendar(load_settings())
    assert calendar is not None
    sync_calendar(instance, *calendar)
    months = calendar_keys(instance)
    scores = dg.AssetKey("customer_scores")

    def materialized(key: str, partition: str | None = None) -> None:
        event = dg.AssetMaterialization(asset_key=key, partition=partition)
        instance.report_runless_asset_event(event)

    def features(month: str, checked: bool = True) -> None:
        materialized("customer_features", month)
        for check in FEATURE_CHECKS if checked else ():
            evaluation = dg.AssetCheckEvaluation(
                asset_key=check.asset_key, check_name=check.name, passed=True, partition=month
            )
            instance.report_runless_asset_event(evaluation)

    for month in months:
        features(month)
        materialized("customer_scores", month)
    materialized("champion_model")
    selection = dg.AssetSelection.assets(scores)

    def tick(cursor=None):
        return dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=cursor
        )

    def requested(result) -> set[str]:
        return result.get_requested_partitions(scores) if result.total_requested else set()

    result = tick()
    materialized("champion_model")
    result = tick(result.cursor)
    assert requested(result) == {months[-1]}
    result = tick(result.cursor)
    assert requested(result) == set()  # handled: not requested again
    features(months[0], checked=False)
    result = tick(result.cursor)
    assert requested(result) == set()  # an old month's features: left to whoever rebuilt them
    features(months[-1], checked=False)
    result = tick(result.cursor)
    assert requested(result) == {months[-1]}


# --- plain reasons, month over month, no silent gaps -------------------------------------------


def test_every_row_has_a_plain_reason_with_a_rounded_number(materialized):
    import re

    scores = _scores(materialized)
    texts = scores["reason_1_text"]
    assert texts.notna().all()
    assert texts.str.contains(r"\d").all()
    assert not texts.str.contains(r"\d\.\d{4,}").any(), "values are rounded for people"
    assert not texts.str.contains("_").all(), "phrases, not column names"
    sample = texts[texts.str.contains(r"% of customers")]
    assert len(sample) > 0.5 * len(texts)
    assert all(re.search(r"\((fewer|more|lower|higher|like|the same)", t) for t in sample[:50])


def test_tier_change_compares_with_the_previous_month(materialized):
    scores = _scores(materialized)
    dates = sorted(scores["observation_date"].unique())
    assert len(dates) >= 2
    first = scores[scores["observation_date"] == dates[0]]
    assert (first["tier_change"] == "new").all() and first["previous_tier"].isna().all()
    rank = {"low": 0, "medium": 1, "high": 2}
    for before, after in itertools.pairwise(dates):
        old = scores[scores["observation_date"] == before].set_index("customer_id")
        new = scores[scores["observation_date"] == after].set_index("customer_id")
        for customer_id, row in new.iterrows():
            if customer_id not in old.index:
                assert row["tier_change"] == "new" and pd.isna(row["previous_tier"])
                continue
            previous = old.loc[customer_id]
            assert row["previous_tier"] == previous["risk_tier"]
            assert row["previous_probability"] == previous["churn_probability"]
            now, was = rank[row["risk_tier"]], rank[previous["risk_tier"]]
            expected = (
                "new_high"
                if row["risk_tier"] == "high" and previous["risk_tier"] != "high"
                else "up"
                if now > was
                else "down"
                if now < was
                else "same"
            )
            assert row["tier_change"] == expected
    later = scores[scores["observation_date"] == dates[-1]]["tier_change"]
    assert {"same", "new_high"} <= set(later) or {"same", "up"} <= set(later)
    metadata = materialized.result.asset_materializations_for_node("customer_scores")[-1].metadata
    assert "new_high" in metadata["tier_changes_newest_month"].value
    assert metadata["new_high_newest_month"].value == (later == "new_high").sum()


def test_unscored_customers_are_listed_with_a_reason(materialized):
    newest = _query(materialized, "SELECT max(observation_date) FROM customer_scores")[0][0]
    path = materialized.home / "exports" / f"customer_scores_unscored_{newest.isoformat()}.csv"
    unscored = pd.read_csv(path, dtype={"customer_id": str})
    scored = set(_scores(materialized, "observation_date = ?", [newest])["customer_id"])
    assert len(unscored) > 0 and not set(unscored["customer_id"].dropna()) & scored
    assert unscored["reason"].notna().all()
    assert set(unscored["reason_kind"]) <= {"rejected", "cancelled", "not_observed"}
    metadata = materialized.result.asset_materializations_for_node("customer_scores")[-1].metadata
    assert metadata["unscored_customers"].value == len(unscored)
    assert metadata["export_unscored_csv"].value == str(path)
