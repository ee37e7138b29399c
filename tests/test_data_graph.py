"""The data graph materialized for real into DuckDB: checks, rejects, leakage, backfill."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.features import FEATURE_NAMES
from churn.ingest.schema import RAW_TABLES
from churn.sources.registry import resolve
from tests.graph import GraphRun, materialize_graph

STAGING = dg.AssetSelection.groups("raw", "staging")


def read(path: Path, query: str, params=None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def home_with_raw_copy(tmp_path: Path, source: Path) -> Path:
    """A fresh CHURN_HOME holding a copy of the session's raw files, to be edited by a test."""
    shutil.copytree(source / "raw", tmp_path / "raw")
    return tmp_path


def test_every_table_of_the_graph_is_in_the_warehouse(materialized: GraphRun):
    tables = {name for (name,) in read(materialized.warehouse, "SHOW TABLES")}
    expected = {f"raw_{t.name}" for t in RAW_TABLES} | {f"stg_{t.name}" for t in RAW_TABLES}
    expected |= {f"stg_{t.name}_rejects" for t in RAW_TABLES}
    expected |= {"customer_snapshots", "customer_features", "churn_labels", "training_set"}
    assert expected <= tables
    for table in expected - {f"stg_{t.name}_rejects" for t in RAW_TABLES}:
        assert read(materialized.warehouse, f"SELECT count(*) FROM {table}")[0][0] > 0, table


def test_all_checks_pass_on_good_data(materialized: GraphRun):
    checks = materialized.checks()
    assert len(checks) >= 35
    failed = {name: check.description for name, check in checks.items() if not check.passed}
    assert failed == {}


def test_features_exist_for_every_active_customer_and_date(materialized: GraphRun):
    per_date = read(
        materialized.warehouse,
        """
        SELECT s.observation_date, count(*) AS snapshots, count(f.customer_id) AS features
        FROM customer_snapshots s LEFT JOIN customer_features f USING (customer_id, observation_date)
        GROUP BY ALL ORDER BY 1
        """,
    )
    assert len(per_date) == 6  # 2025-04-01 .. 2025-09-01 for an 8-month source with 3 burn-in
    assert all(snapshots == features > 0 for _, snapshots, features in per_date)
    columns = [row[0] for row in read(materialized.warehouse, "DESCRIBE customer_features")]
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        shape = resolve(con)
    # The hand-written family first, then the generated features it does not already have.
    assert columns[2:] == shape.feature_names
    assert columns[2 : 2 + len(FEATURE_NAMES)] == list(FEATURE_NAMES)
    assert {"type_login_7d", "sessions_7d", "duration_seconds_sum_30d"} <= set(columns)


def test_newest_snapshot_is_unlabeled_and_the_rest_matured(materialized: GraphRun):
    rows = read(
        materialized.warehouse,
        "SELECT observation_date, count(churned), avg(CAST(churned AS DOUBLE)) "
        "FROM churn_labels GROUP BY ALL ORDER BY 1",
    )
    *matured, newest = rows
    assert newest[1] == 0
    assert all(labeled > 0 and 0.005 < rate < 0.3 for _, labeled, rate in matured)
    training_dates = read(
        materialized.warehouse, "SELECT DISTINCT observation_date FROM training_set"
    )
    assert newest[0] not in {d for (d,) in training_dates}


def test_planted_bad_rows_are_rejected_with_their_reason(materialized: GraphRun, tmp_path: Path):
    home = home_with_raw_copy(tmp_path, materialized.home)
    events = home / "raw" / "events.parquet"
    with duckdb.connect() as con:
        con.execute(
            f"""
            COPY (
                SELECT * FROM read_parquet('{events}')
                UNION ALL SELECT * REPLACE ('planted-negative' AS event_id, -5.0 AS duration_seconds)
                    FROM (SELECT * FROM read_parquet('{events}') LIMIT 1)
                UNION ALL SELECT * REPLACE ('planted-type' AS event_id, 'teleport' AS event_type)
                    FROM (SELECT * FROM read_parquet('{events}') LIMIT 1)
                UNION ALL SELECT * REPLACE ('planted-stranger' AS event_id, 'C-nobody' AS customer_id)
                    FROM (SELECT * FROM read_parquet('{events}') LIMIT 1)
                UNION ALL SELECT * REPLACE ('planted-missing' AS event_id, NULL AS customer_id)
                    FROM (SELECT * FROM read_parquet('{events}') LIMIT 1)
            ) TO '{tmp_path / "events.parquet"}' (FORMAT parquet)
            """
        )
    shutil.move(tmp_path / "events.parquet", events)

    run = materialize_graph(home, STAGING)

    reasons = dict(
        read(run.warehouse, "SELECT event_id, reject_reason FROM stg_events_rejects ORDER BY 1")
    )
    assert reasons == {
        "planted-missing": "missing_required: customer_id is missing",
        "planted-negative": "out_of_range: duration_seconds=-5.0 is below 0",
        "planted-stranger": "unknown_customer: customer_id=C-nobody is not in stg_customers",
        "planted-type": "not_allowed: event_type=teleport is not one of login, page_view, "
        "feature_use, export, share",
    }
    staged = read(run.warehouse, "SELECT count(*) FROM stg_events WHERE event_id LIKE 'planted%'")
    assert staged[0][0] == 0
    checks = run.checks()
    failed = {name for name, check in checks.items() if not check.passed}
    assert failed == {
        "stg_events:required_fields_present",
        "stg_events:values_in_range",
        "stg_events:categories_allowed",
        "stg_events:customers_known",
    }
    assert checks["stg_events:reject_share_below_limit"].passed


def test_a_mostly_broken_source_blocks_everything_downstream(
    materialized: GraphRun, tmp_path: Path
):
    home = home_with_raw_copy(tmp_path, materialized.home)
    payments = home / "raw" / "payments.parquet"
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE ('bitcoin' AS payment_method) FROM read_parquet('{payments}')) "
            f"TO '{tmp_path / 'p.parquet'}' (FORMAT parquet)"
        )
    shutil.move(tmp_path / "p.parquet", payments)

    run = materialize_graph(home, raise_on_error=False)

    assert not run.result.success
    assert not run.checks()["stg_payments:reject_share_below_limit"].passed
    materialized_keys = {
        event.asset_key.to_user_string() for event in run.result.get_asset_materialization_events()
    }
    assert "stg_customers" in materialized_keys
    assert "customer_features" not in materialized_keys
    assert "training_set" not in materialized_keys


def test_features_ignore_planted_future_rows(materialized: GraphRun, tmp_path: Path):
    """Rows dated at or after an observation date cannot change that snapshot's features."""
    date = "2025-05-01"
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(materialized.warehouse, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        before = con.execute(
            f"SELECT * FROM customer_features WHERE observation_date = DATE '{date}' ORDER BY 1"
        ).fetchall()
        con.execute(
            f"""
            INSERT INTO stg_events SELECT * REPLACE (
                'future-' || event_id AS event_id,
                TIMESTAMP '{date}' + INTERVAL (hash(event_id) % 40) DAY AS event_time)
            FROM stg_events WHERE event_time < DATE '{date}' LIMIT 5000;
            INSERT INTO stg_payments SELECT * REPLACE (
                'future-' || payment_id AS payment_id, DATE '{date}' AS payment_date,
                'failed' AS status)
            FROM stg_payments LIMIT 500;
            INSERT INTO stg_tickets SELECT * REPLACE (
                'future-' || ticket_id AS ticket_id, TIMESTAMP '{date}' AS created_at)
            FROM stg_tickets LIMIT 200;
            """
        )
        con.execute(
            "CREATE TEMP VIEW one_date AS SELECT customer_id, observation_date "
            f"FROM customer_snapshots WHERE observation_date = DATE '{date}'"
        )
        shape = resolve(con)
        after = con.execute(
            f"SELECT * FROM ({shape.feature_sql('one_date')}) ORDER BY 1"
        ).fetchall()
        assert after == before
        assert shape.leakage(con, [date], sample_size=10_000).passed


def test_leakage_check_catches_a_feature_that_reads_the_future(materialized: GraphRun, tmp_path):
    date = "2025-05-01"
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(materialized.warehouse, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        # A leaky feature: 30-day event counts taken *after* the observation date.
        con.execute(
            f"""
            UPDATE customer_features f SET events_30d = (
                SELECT count(*) FROM stg_events e WHERE e.customer_id = f.customer_id
                  AND e.event_time >= f.observation_date
                  AND e.event_time < f.observation_date + INTERVAL 30 DAY)
            WHERE observation_date = DATE '{date}'
            """
        )
        verdict = resolve(con).leakage(con, [date], sample_size=10_000)
        assert not verdict.passed and date in verdict.description


def test_one_month_can_be_backfilled_alone(materialized: GraphRun, tmp_path: Path):
    home = tmp_path
    shutil.copytree(materialized.home / "raw", home / "raw")
    shutil.copy(materialized.warehouse, home / "warehouse.duckdb")
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("DELETE FROM customer_features WHERE observation_date = DATE '2025-06-01'")
        con.execute("UPDATE customer_features SET age = -1 WHERE observation_date = '2025-05-01'")
    run = materialize_graph(
        home, "customer_snapshots,customer_features", first="2025-06-01", last="2025-06-01"
    )
    assert run.result.success
    per_date = dict(
        read(
            run.warehouse,
            "SELECT CAST(observation_date AS VARCHAR), count(*) FILTER (WHERE age = -1) * 1000000 "
            "+ count(*) FROM customer_features GROUP BY 1",
        )
    )
    original = dict(
        read(
            materialized.warehouse,
            "SELECT CAST(observation_date AS VARCHAR), count(*) FROM customer_features GROUP BY 1",
        )
    )
    assert per_date["2025-06-01"] == original["2025-06-01"]  # rebuilt
    assert per_date["2025-05-01"] // 1_000_000 == original["2025-05-01"]  # untouched


@pytest.mark.parametrize("table", [t.name for t in RAW_TABLES])
def test_a_source_file_missing_a_column_fails_with_its_name(
    materialized: GraphRun, tmp_path: Path, table: str
):
    home = home_with_raw_copy(tmp_path, materialized.home)
    path = home / "raw" / f"{table}.parquet"
    with duckdb.connect() as con:
        first_column = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchone()[0]
        con.execute(
            f"COPY (SELECT * EXCLUDE ({first_column}) FROM read_parquet('{path}')) "
            f"TO '{tmp_path / 'x.parquet'}' (FORMAT parquet)"
        )
    shutil.move(tmp_path / "x.parquet", path)
    run = materialize_graph(home, dg.AssetSelection.groups("raw"), raise_on_error=False)
    assert not run.result.success
    failure = next(e for e in run.result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert f"{table}.parquet: missing column(s) {first_column}" in message
