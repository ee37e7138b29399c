"""What the Dagster UI shows for the data and monitoring assets: per-partition row counts, the drift
report's inline summary, and Evidently's report stating the same drift limit as drift_check."""

import json
from pathlib import Path

import dagster as dg
import duckdb

from churn.monitoring.drift import DEFAULT_DRIFT_SHARE
from tests.graph import GraphRun, materialize_graph
from tests.test_models import copy_home, materialization


def test_each_partition_of_a_range_reports_its_own_row_count(
    materialized: GraphRun, tmp_path: Path
):
    home = copy_home(materialized, tmp_path)
    run = materialize_graph(home, "customer_snapshots", first="2025-05-01", last="2025-06-01")
    events = [
        e.event_specific_data.materialization for e in run.result.get_asset_materialization_events()
    ]
    counts = {e.partition: e.metadata["dagster/row_count"].value for e in events}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        expected = dict(
            con.execute(
                "SELECT strftime(observation_date, '%Y-%m-%d'), count(*) FROM customer_snapshots "
                "WHERE observation_date BETWEEN DATE '2025-05-01' AND DATE '2025-06-01' "
                "GROUP BY 1"
            ).fetchall()
        )
    assert set(counts) == {"2025-05-01", "2025-06-01"}
    assert counts == expected
    assert all(0 < n < sum(counts.values()) for n in counts.values())  # not the range's total


def test_the_drift_report_summary_is_inline_and_evidently_states_the_check_limit(
    materialized: GraphRun,
):
    metadata = materialization(materialized, "drift_report").metadata
    table = metadata["drift_by_feature"]
    assert isinstance(table, dg.TableMetadataValue)
    verdicts = {record.data["feature"]: record.data["drifted"] for record in table.records}
    assert sorted(f for f, drifted in verdicts.items() if drifted) == sorted(
        metadata["drifted_columns"].value
    )
    assert f"limit {DEFAULT_DRIFT_SHARE:.0%}" in metadata["drift_summary"].value
    assert metadata["report_url"].value.startswith("file://")
    assert Path(metadata["report_html"].value).exists()
    payload = json.loads(Path(metadata["report_json"].value).read_text())
    limits = {
        m["config"]["drift_share"]
        for m in payload["evidently"]["metrics"]
        if "drift_share" in m["config"]
    }
    assert limits == {DEFAULT_DRIFT_SHARE}  # the report header's threshold, not Evidently's 0.5


def _markdown_rows(text: str) -> list[list[str]]:
    """The body rows of a markdown table (header and rule dropped)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_customer_scores_shows_tables_high_to_low_rounded_and_who_moved(
    materialized: GraphRun,
):
    """Tiers, thresholds and tiers per month are markdown tables (not JSON), tiers run high to
    low, numbers are rounded, and the number of customers who changed tier is a figure."""
    metadata = materialization(materialized, "customer_scores").metadata
    newest = metadata["newest_observation_date"].value
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        tiers = dict(
            con.execute(
                "SELECT risk_tier, count(*) FROM customer_scores WHERE observation_date = ? "
                "GROUP BY 1",
                [newest],
            ).fetchall()
        )
        moved = con.execute(
            "SELECT count(*) FROM customer_scores WHERE observation_date = ? "
            "AND tier_change IN ('new_high', 'up', 'down')",
            [newest],
        ).fetchone()[0]
    for key in ("tier_counts", "tier_counts_newest_month", "thresholds", "tiers_per_month"):
        assert isinstance(metadata[key], dg.MarkdownMetadataValue), key
    newest_rows = _markdown_rows(metadata["tier_counts_newest_month"].value)
    assert [row[:2] for row in newest_rows] == [
        [tier, f"{tiers.get(tier, 0):,}"] for tier in ("high", "medium", "low")
    ]
    per_month = _markdown_rows(metadata["tiers_per_month"].value)
    for day in {row[0] for row in per_month}:
        order = [row[1] for row in per_month if row[0] == day]
        assert order == sorted(order, key=["high", "medium", "low"].index)
    assert all(len(row[4].split(".")[1]) == 3 for row in per_month)  # mean p to 3 places
    threshold = metadata["decision_threshold"].value
    assert threshold == round(threshold, 4)
    assert _markdown_rows(metadata["thresholds"].value)[0][1] == f"{threshold:.4f}"
    assert metadata["customers_moved_newest_month"].value == moved > 0
