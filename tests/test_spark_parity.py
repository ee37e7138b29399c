"""One feature definition, two engines: Spark computes what DuckDB computes, value for value.

The same staged warehouse is copied into two homes; the real ``customer_snapshots``,
``customer_features`` and ``churn_labels`` assets materialize a range of months in each, once
with ``CHURN_ENGINE=duckdb`` and once with ``spark`` (local[2], the SQL transpiled by
:mod:`churn.engine.dialect`, tables exchanged as Parquet through the lake). Every row of the
three tables is compared: keys, integers, strings, dates and booleans exactly, DOUBLEs within a
relative 1e-9 (in practice they are bit-identical: the blocking leakage check, which recomputes a
sample on DuckDB and compares with ``EXCEPT``, passes on the Spark-computed features).

A minimal purchase log runs the generated event-feature family the same way. One Spark session
serves the whole module; the data is small (a few hundred customers, three
months) because Spark's fixed cost per query, not the data, dominates here.
"""

from __future__ import annotations

import math
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.engine import engine_config_from_env
from churn.engine.dialect import referenced_tables, to_spark
from churn.engine.duckdb import DuckDBEngine
from churn.engine.spark import SparkEngine, stop_sessions
from churn.features import FEATURE_NAMES
from churn.features.shape import build_event_spec, save_spec
from churn.ingest.landing import find_source_file, land_file
from churn.ingest.schema import RAW_TABLES
from churn.ingest.staging import stage_table
from churn.settings import load_settings
from churn.synthetic import GeneratorConfig, generate
from churn_assets.definitions import defs
from churn_assets.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    last_observation_date,
)
from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource

# The months the conftest's calendar (start 2025-01, 8 months, 3 burn-in) partitions.
SOURCE = GeneratorConfig(customers=300, months=8, seed=11, start_date=date(2025, 1, 1))
FIRST, LAST = "2025-05-01", "2025-07-01"
TABLES = {  # and their least number of columns besides the keys
    "customer_snapshots": 0,
    "customer_features": len(FEATURE_NAMES),  # + the generated extras of the event vocabulary
    "churn_labels": 3,
}
RELATIVE_TOLERANCE = 1e-9


def _stage(folder: Path) -> Path:
    generate(SOURCE, folder / "raw", folder / "truth")
    path = folder / "staged.duckdb"
    con = duckdb.connect(str(path))
    try:
        for table in RAW_TABLES:
            land_file(con, find_source_file(folder / "raw", table), table, replace=True)
        for table in RAW_TABLES:
            stage_table(con, table)
        # What the stg_events asset decides: the generated family's vocabulary and churn rule.
        settings = load_settings()
        spec = build_event_spec(
            con,
            None,
            last_observation_date=last_observation_date(settings),
            horizon_days=settings.horizon_days,
        )
        save_spec(con, spec)
    finally:
        con.close()
    return path


def _materialize(home: Path, engine: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets=list(defs.assets or []),
        selection=dg.AssetSelection.assets(
            "customer_snapshots", "customer_features", "churn_labels"
        ),
        resources={
            "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
            "churn_home": ChurnHomeResource(home=str(home)),
            "engine": EngineResource(name=engine, home=str(home)),
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags={PARTITION_RANGE_START_TAG: FIRST, PARTITION_RANGE_END_TAG: LAST},
    )


@pytest.fixture(scope="module", autouse=True)
def _one_spark_session():
    """Every test of the module shares the process's session; it stops with the module."""
    yield
    stop_sessions()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dg.ExecuteInProcessResult]]:
    root = tmp_path_factory.mktemp("spark-parity")
    staged = _stage(root / "source")
    found = {}
    for engine in ("duckdb", "spark"):
        home = root / engine
        home.mkdir()
        shutil.copy(staged, home / "warehouse.duckdb")
        found[engine] = (home, _materialize(home, engine))
    return found


def _rows(home: Path, table: str) -> tuple[list[tuple], list[tuple[str, str]]]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        schema = [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()]
        rows = con.execute(
            f"SELECT * FROM {table} ORDER BY observation_date, customer_id"
        ).fetchall()
    finally:
        con.close()
    return rows, schema


def _same(left, right, kind: str) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if kind == "DOUBLE":
        return math.isclose(left, right, rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0)
    return left == right


def _differing(expected: list[tuple], actual: list[tuple], schema: list[tuple[str, str]]):
    """(column, key, expected, actual) of every value that differs beyond the tolerance."""
    return [
        (schema[i][0], e[:2], e[i], a[i])
        for e, a in zip(expected, actual, strict=True)
        for i, (_, kind) in enumerate(schema)
        if not _same(e[i], a[i], kind)
    ]


@pytest.mark.parametrize("table", list(TABLES))
def test_spark_rows_equal_duckdb_rows(runs, table):
    duck_rows, duck_schema = _rows(runs["duckdb"][0], table)
    spark_rows, spark_schema = _rows(runs["spark"][0], table)
    assert spark_schema == duck_schema
    assert len(duck_rows) > 500 and len(spark_rows) == len(duck_rows)
    assert len(duck_schema) >= 2 + TABLES[table]
    differing = _differing(duck_rows, spark_rows, duck_schema)
    assert not differing, f"{len(differing)} values differ, e.g. {differing[:5]}"
    dates = {row[1] for row in duck_rows}
    assert dates == {date(2025, 5, 1), date(2025, 6, 1), date(2025, 7, 1)}


def test_the_comparison_is_not_vacuous(runs):
    """Most features vary across rows and labels hold both outcomes, so equal means equal."""
    rows, schema = _rows(runs["duckdb"][0], "customer_features")
    varying = [
        name for i, (name, _) in enumerate(schema[2:], start=2) if len({r[i] for r in rows}) > 1
    ]
    assert len(varying) >= len(FEATURE_NAMES) - 3, set(FEATURE_NAMES) - set(varying)
    labels, _ = _rows(runs["duckdb"][0], "churn_labels")
    assert {row[2] for row in labels} >= {True, False}


def test_spark_run_reports_its_engine_and_passes_every_check(runs):
    home, result = runs["spark"]
    assert result.success
    engines = {
        m.asset_key.to_user_string(): m.metadata["engine"].value
        for m in result.get_asset_materialization_events()
        for m in [m.materialization]
    }
    assert engines == dict.fromkeys(TABLES, "spark")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_future_leakage"] and checks["rows_match_active_customers"], checks
    assert all(checks.values()), checks
    partitions = sorted(p.name for p in (home / "lake" / "customer_features").iterdir())
    assert partitions[:3] == [
        f"observation_date={d}" for d in ("2025-05-01", "2025-06-01", "2025-07-01")
    ]
    _, duck = runs["duckdb"]
    assert {
        m.materialization.metadata["engine"].value for m in duck.get_asset_materialization_events()
    } == {"duckdb"}


EDGE_SQL = """
SELECT id,
    date_diff('year', s, d) AS years,
    date_diff('month', s, d) AS months,
    date_diff('day', s, d) AS days,
    CAST(s + to_years(date_diff('year', s, d)) AS DATE) AS anniversary,
    CAST(s + to_months(date_diff('month', s, d) + 1) AS DATE) AS next_billing_day,
    n / 1000.0 / 10.1 AS ratio,
    (n * 30.0 / 7 + 1) / (n + 1) AS trend,
    CAST(round(1000 * pow(0.5, date_diff('day', s, d) / 7.0)) AS BIGINT) AS weight,
    CAST(round(x * 1000) AS BIGINT) AS milli
FROM edge_cases
"""


def test_dialect_keeps_duckdb_calendar_and_arithmetic(tmp_path):
    """The constructs whose Spark translation would change values: calendar differences count
    boundaries, month arithmetic clamps to the month's end, decimal literals divide as DOUBLE."""
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE edge_cases (id INTEGER, s DATE, d DATE, n BIGINT, x DOUBLE);
        INSERT INTO edge_cases VALUES
            (1, DATE '2024-12-31', DATE '2025-01-01', 7, 0.0005),
            (2, DATE '2024-02-29', DATE '2025-03-01', 123456, 2.675),
            (3, DATE '2025-01-31', DATE '2025-02-28', 1, 1.0005),
            (4, DATE '2023-03-15', DATE '2025-03-14', 999999, 12.3455);
        """
    )
    expected = con.execute(f"{EDGE_SQL} ORDER BY id").fetchall()
    engine = SparkEngine(tmp_path / "lake")
    actual = [tuple(r) for r in engine.run(con, EDGE_SQL, None, "edge").orderBy("id").collect()]
    assert actual == expected
    assert expected[0][1:3] == (1, 1)  # one boundary crossed, though only a day passed


PURCHASE_LOG = """
CREATE TABLE log_events AS
SELECT 'u' || (i % 150) AS customer_id,
    TIMESTAMP '2024-01-01' + to_seconds(CAST(hash(i, 't') % (120 * 86400) AS BIGINT)) AS event_time,
    ['view', 'add_to_cart', 'purchase', 'view', 'refund'][1 + CAST(hash(i, 'e') % 5 AS BIGINT)]
        AS event_type,
    'u' || (i % 150) || '_' || CAST(hash(i, 's') % 40 AS BIGINT) AS session_id,
    CASE WHEN hash(i, 'a') % 3 = 0 THEN NULL ELSE CAST(hash(i, 'a') % 10000 AS DOUBLE) / 100 END
        AS amount
FROM range(12000) t(i);
CREATE TABLE log_customers AS
SELECT 'u' || i AS customer_id,
    CASE WHEN i % 4 = 0 THEN NULL ELSE DATE '2023-12-01' + CAST(i % 30 AS INTEGER) END
        AS signup_date,
    ['free', 'paid'][1 + CAST(i % 2 AS BIGINT)] AS plan
FROM range(160) t(i);
CREATE TABLE log_snapshots AS
SELECT DISTINCT e.customer_id, d.observation_date
FROM log_events e, (VALUES (DATE '2024-03-01'), (DATE '2024-04-01')) d(observation_date)
WHERE e.event_time < d.observation_date;
"""


def test_generated_event_features_equal_on_spark(tmp_path):
    """The generated family of an event log (a purchase log: its own vocabulary, a measure
    with NULLs, sessions, a profile column, customers without signup) on both engines."""
    from churn.features import SourceTables, events

    con = duckdb.connect()
    con.execute(PURCHASE_LOG)
    spec = events.EventFeatureSpec(
        event_types=("view", "purchase", "add_to_cart"),
        other_types=True,
        measures=("amount",),
        has_sessions=True,
        profile=(("plan", "categorical", "VARCHAR"),),
    )
    events.write_vocabulary(con, spec, "log_vocabulary")
    sql = events.feature_sql(
        spec,
        SourceTables(
            snapshots="log_snapshots",
            customers="log_customers",
            events="log_events",
            vocabulary="log_vocabulary",
        ),
    )
    window = ("2024-03-01", "2024-05-01")
    DuckDBEngine().compute(con, "on_duckdb", sql, table="generated", window=window)
    SparkEngine(tmp_path / "lake").compute(con, "on_spark", sql, table="generated", window=window)
    schema = [(n, k) for n, k, *_ in con.execute("DESCRIBE on_duckdb").fetchall()]
    assert [(n, k) for n, k, *_ in con.execute("DESCRIBE on_spark").fetchall()] == schema
    assert len(schema) == 2 + len(events.features(spec))
    order = " ORDER BY observation_date, customer_id"
    expected = con.execute(f"SELECT * FROM on_duckdb{order}").fetchall()
    actual = con.execute(f"SELECT * FROM on_spark{order}").fetchall()
    assert len(expected) > 200 and len(actual) == len(expected)
    differing = _differing(expected, actual, schema)
    assert not differing, f"{len(differing)} values differ, e.g. {differing[:5]}"


def test_referenced_tables_are_what_spark_must_receive():
    from churn.features import SourceTables, feature_sql

    assert set(referenced_tables(feature_sql(SourceTables(snapshots="_w")))) == {
        "_w",
        "stg_events",
        "stg_customers",
        "stg_payments",
        "stg_tickets",
    }
    assert "ASOF" not in to_spark(feature_sql()).upper()


def test_engine_is_chosen_by_configuration():
    assert engine_config_from_env({}).name == "duckdb"
    chosen = engine_config_from_env({"CHURN_ENGINE": "Spark", "CHURN_SPARK_MASTER": "local[4]"})
    assert (chosen.name, chosen.spark_master) == ("spark", "local[4]")
    with pytest.raises(ValueError, match="CHURN_ENGINE"):
        engine_config_from_env({"CHURN_ENGINE": "polars"})
