"""The EDA report: its numbers agree with direct DuckDB queries, and it names every feature.

The graph is materialized once per session (``materialized``); these tests read its warehouse
read-only and the ``eda_report`` materialization's metadata. One test runs the analysis on a
hand-made flat table, the bring-your-own-data shape, where the features differ.
"""

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.features import FEATURES
from churn.reports.eda import MAX_SEGMENT_CARDINALITY, EdaResult, analyze
from tests.graph import GraphRun

DECLARED_KINDS = {feature.name: feature.kind for feature in FEATURES}

EXPECTED_METADATA = {
    "report",
    "overview",
    "rows",
    "labeled_rows",
    "churn_rate",
    "feature_count",
    "months_excluded_unmatured",
    "feature_summary",
    "churn_by_segment",
    "churn_by_month",
    "label_correlations",
    "feature_pairs",
    "plot_churn_by_month",
    "plot_churn_by_segment",
    "plot_label_correlations",
    "plot_distributions_by_label",
}


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def kinds(materialized: GraphRun) -> dict[str, str]:
    """The source's features as the asset reads them: declared plus generated from events."""
    from churn.sources.registry import resolve

    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        return {f.name: f.kind for f in resolve(con).features}


@pytest.fixture(scope="module")
def report(materialized: GraphRun, kinds) -> EdaResult:
    """The analysis the asset ran, recomputed on the same warehouse (it is deterministic)."""
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        return analyze(con, kinds=kinds, render_plots=False)


@pytest.fixture(scope="module")
def metadata(materialized: GraphRun) -> dict[str, dg.MetadataValue]:
    events = [
        e
        for e in materialized.result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("eda_report")
    ]
    assert len(events) == 1
    return events[0].materialization.metadata


def test_metadata_has_every_section_and_embedded_plots(metadata):
    assert set(metadata) >= EXPECTED_METADATA
    for name in EXPECTED_METADATA:
        if name.startswith("plot_"):
            assert "](data:image/png;base64," in metadata[name].value, name
    assert "| contract | monthly |" in metadata["churn_by_segment"].value


def test_segments_are_the_declared_categorical_features(report, kinds):
    assert {n for n, k in kinds.items() if k == "categorical"} == {
        n for n, k in DECLARED_KINDS.items() if k == "categorical"
    }
    categorical = [name for name, kind in kinds.items() if kind == "categorical"]
    segments = list(dict.fromkeys(s.segment for s in report.segments))
    assert segments == [*categorical, "tenure_band"]


def test_churn_rate_by_contract_matches_duckdb(materialized: GraphRun, report, metadata):
    expected = query(
        materialized.warehouse,
        """
        SELECT f.contract, count(*), avg(CAST(l.churned AS DOUBLE))
        FROM customer_features f JOIN churn_labels l USING (customer_id, observation_date)
        WHERE l.churned IS NOT NULL GROUP BY ALL ORDER BY 1
        """,
    )
    reported = [(s.value, s.rows, s.churn_rate) for s in report.segments if s.segment == "contract"]
    assert [(v, n) for v, n, _ in reported] == [(v, n) for v, n, _ in expected]
    assert [r for *_, r in reported] == pytest.approx([r for *_, r in expected])
    table = metadata["churn_by_segment"].value
    for value, rows, rate in expected:
        assert f"| contract | {value} | {rows} |" in table and f"{rate:.2%}" in table


def test_tenure_bands_cover_every_matured_row(materialized: GraphRun, report):
    bands = {s.value: s.rows for s in report.segments if s.segment == "tenure_band"}
    under_3m = query(
        materialized.warehouse,
        "SELECT count(*) FROM customer_features f JOIN churn_labels l "
        "USING (customer_id, observation_date) WHERE l.churned IS NOT NULL AND tenure_days < 91",
    )[0][0]
    assert list(bands) == ["<3m", "3-12m", "1-2y", "2y+"]
    assert bands["<3m"] == under_3m
    assert sum(bands.values()) == report.labeled_rows


def test_churn_rate_per_month_excludes_the_unmatured_month(
    materialized: GraphRun, report, metadata
):
    expected = query(
        materialized.warehouse,
        "SELECT observation_date, avg(CAST(churned AS DOUBLE)) FROM churn_labels "
        "GROUP BY ALL HAVING count(churned) > 0 ORDER BY 1",
    )
    newest = query(materialized.warehouse, "SELECT max(observation_date) FROM churn_labels")[0][0]
    matured = [(m.observation_date, m.churn_rate) for m in report.matured_months]
    assert [d for d, _ in matured] == [d for d, _ in expected]
    assert [r for _, r in matured] == pytest.approx([r for _, r in expected])
    assert [m.observation_date for m in report.excluded_months] == [newest]
    assert metadata["months_excluded_unmatured"].value == [newest.isoformat()]
    assert "excluded: labels not matured" in metadata["churn_by_month"].value


def test_feature_summary_matches_duckdb(materialized: GraphRun, report):
    columns = [name for (name, *_) in query(materialized.warehouse, "DESCRIBE customer_features")]
    by_name = {f.name: f for f in report.features}
    assert list(by_name) == columns[2:]  # every column but the two keys, in table order
    missing, distinct, p50, mean = query(
        materialized.warehouse,
        "SELECT avg(CAST(tenure_days IS NULL AS DOUBLE)), count(DISTINCT tenure_days), "
        "median(tenure_days), avg(tenure_days) FROM customer_features",
    )[0]
    tenure = by_name["tenure_days"]
    assert (tenure.kind, tenure.missing_share, tenure.distinct) == ("numeric", missing, distinct)
    assert tenure.quantiles[2] == pytest.approx(p50) and tenure.mean == pytest.approx(mean)
    assert by_name["contract"].kind == "categorical" and by_name["contract"].distinct == 2


def test_strongest_label_correlation_matches_duckdb(materialized: GraphRun, report):
    strongest = report.label_correlations[0]
    r = query(
        materialized.warehouse,
        f"SELECT corr(CAST(f.{strongest.left} AS DOUBLE), CAST(l.churned AS DOUBLE)) "
        "FROM customer_features f JOIN churn_labels l USING (customer_id, observation_date)",
    )[0][0]
    assert strongest.r == pytest.approx(r)
    rs = [abs(c.r) for c in report.label_correlations]
    assert rs == sorted(rs, reverse=True) and len(rs) >= 30
    assert abs(report.feature_pairs[0].r) > 0.9  # e.g. logins and sessions move together


def test_html_report_exists_and_names_every_feature(materialized: GraphRun, metadata):
    path = materialized.home / "reports" / "eda" / "eda_report.html"
    assert metadata["report"].value == str(path)
    text = path.read_text(encoding="utf-8")
    features = [name for (name, *_) in query(materialized.warehouse, "DESCRIBE customer_features")]
    assert [f for f in features[2:] if f"<td>{f}</td>" not in text] == []
    assert text.count('src="data:image/png;base64,') == 4
    assert "labels not matured" in text


def test_flat_customer_table_with_other_features():
    """Bring-your-own-data: other columns and types; segments only from those that exist."""
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE customer_features AS
        SELECT 'c' || i AS customer_id, DATE '2025-01-01' AS observation_date,
            CASE WHEN i % 3 = 0 THEN 'annual' ELSE 'monthly' END AS contract,
            i % 2 = 0 AS has_partner, CAST(i % 97 AS DOUBLE) AS spend,
            CASE WHEN i % 10 = 0 THEN NULL ELSE i % 40 END AS tenure_days
        FROM range(1000) t(i)
        """
    )
    con.execute(
        "CREATE TABLE churn_labels AS SELECT customer_id, observation_date, "
        "CAST(contract = 'monthly' AND spend < 30 AS INTEGER) AS churned FROM customer_features"
    )
    result = analyze(con)
    assert [f.name for f in result.features] == ["contract", "has_partner", "spend", "tenure_days"]
    assert {s.segment for s in result.segments} == {"contract", "tenure_band"}
    by_contract = {s.value: s.churn_rate for s in result.segments if s.segment == "contract"}
    assert by_contract["annual"] == 0.0 and by_contract["monthly"] > 0.3
    assert next(f for f in result.features if f.name == "tenure_days").missing_share == 0.1
    assert result.label_correlations[0].left == "spend" and result.label_correlations[0].r < 0
    assert result.excluded_months == [] and set(result.images) >= {"churn_by_segment"}


def test_declared_kinds_choose_the_features_and_segments():
    """Kinds from the source's declarations (or a card) beat the warehouse types: a 0/1 flag
    staged as a category is a segment; a many-valued category is summarized but not a segment;
    a column the model does not use is left out; a user's odd column name stays data."""
    odd = 'plan "gold" it\'s'
    con = duckdb.connect()
    con.execute(
        f"""
        CREATE TABLE customer_features AS
        SELECT 'c' || i AS customer_id, DATE '2025-01-01' AS observation_date,
            i % 2 AS senior, 'city' || (i % {MAX_SEGMENT_CARDINALITY + 10}) AS city,
            CASE WHEN i % 4 = 0 THEN 'gold' ELSE 'basic' END AS "{odd.replace('"', '""')}",
            CAST(i % 97 AS DOUBLE) AS spend, i AS row_number_not_a_feature
        FROM range(800) t(i)
        """
    )
    con.execute(
        "CREATE TABLE churn_labels AS SELECT customer_id, observation_date, "
        "CAST(senior = 1 AND spend < 50 AS INTEGER) AS churned FROM customer_features"
    )
    kinds = {"senior": "categorical", "city": "categorical", odd: "categorical", "spend": "numeric"}
    result = analyze(con, kinds=kinds, render_plots=False)
    by_name = {f.name: f for f in result.features}
    assert list(by_name) == list(kinds)
    assert by_name["senior"].kind == "categorical" and by_name["senior"].top_share == 0.5
    assert by_name["city"].distinct == MAX_SEGMENT_CARDINALITY + 10
    assert list(dict.fromkeys(s.segment for s in result.segments)) == ["senior", odd]
    senior = {s.value: s.churn_rate for s in result.segments if s.segment == "senior"}
    assert senior["0"] == 0.0 and senior["1"] > 0.4
    gold = {s.value: s.rows for s in result.segments if s.segment == odd}
    assert gold == {"gold": 200, "basic": 600}
    assert [c.left for c in result.label_correlations] == ["spend"]
