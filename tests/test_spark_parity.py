"""One feature definition, two engines: Spark computes what DuckDB computes, value for value.

The same landed (raw) warehouse is copied into two homes; the real staging assets and the
``customer_snapshots``, ``customer_features`` and ``churn_labels`` assets materialize a range of
months in each, once with ``CHURN_ENGINE=duckdb`` and once with ``spark`` (local[2], the SQL
transpiled by :mod:`churn.engine.dialect`, tables exchanged as Parquet through the lake). Every
row of the staged tables and of the three feature-side tables is compared: keys, integers,
strings, dates, timestamps and booleans exactly, DOUBLEs within a relative 1e-9 (in practice
they are bit-identical: the blocking leakage check, which recomputes a sample on DuckDB and
compares with ``EXCEPT``, passes on the Spark-computed features). Staging's rules are compared
again on dirty raw rows (bad numbers, categories, dates, offsets, duplicates, unknown
customers), rejects and reasons included.

A minimal purchase log runs the generated event-feature family the same way. One Spark session
serves the whole module; the data is small (a few hundred customers, three
months) because Spark's fixed cost per query, not the data, dominates here.
"""

from __future__ import annotations

import math
import shutil
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.engine.dialect import referenced_tables, to_spark
from churn.engine.duckdb import DuckDBEngine
from churn.engine.spark import SparkEngine, stop_sessions
from churn.features import FEATURE_NAMES
from churn.ingest.landing import find_source_file, land_file
from churn.ingest.schema import RAW_TABLES
from churn.ingest.staging import stage_table
from churn.settings import engine_config
from churn.synthetic import GeneratorConfig, generate
from churn_assets.definitions import defs
from churn_assets.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    sync_calendar,
)
from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource

pytestmark = pytest.mark.spark

# The months the conftest's calendar (start 2025-01, 8 months, 3 burn-in) partitions.
SOURCE = GeneratorConfig(customers=300, months=8, seed=11, start_date=date(2025, 1, 1))
FIRST, LAST = "2025-05-01", "2025-07-01"
TABLES = {  # and their least number of columns besides the keys
    "customer_snapshots": 0,
    "customer_features": len(FEATURE_NAMES),  # + the generated extras of the event vocabulary
    "churn_labels": 3,
}
STAGED = {  # and their least number of rows
    "stg_customers": 300,
    "stg_events": 10_000,
    "stg_payments": 1_000,
    "stg_tickets": 50,
    "stg_cancellations": 20,
}
RELATIVE_TOLERANCE = 1e-9


def _land(folder: Path) -> Path:
    """The synthetic source's files landed in a warehouse: what the raw assets leave."""
    generate(SOURCE, folder / "raw", folder / "truth")
    path = folder / "landed.duckdb"
    con = duckdb.connect(str(path))
    try:
        for table in RAW_TABLES:
            land_file(con, find_source_file(folder / "raw", table), table, replace=True)
    finally:
        con.close()
    return path


def _materialize(home: Path, engine: str) -> dg.ExecuteInProcessResult:
    # The months live in the instance (staging writes them); a run's range must exist first.
    instance = dg.DagsterInstance.ephemeral()
    sync_calendar(instance, date.fromisoformat(FIRST), date.fromisoformat(LAST))
    return dg.materialize(
        assets=list(defs.assets or []),
        selection=dg.AssetSelection.groups("staging")
        | dg.AssetSelection.assets("customer_snapshots", "customer_features", "churn_labels"),
        resources={
            "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
            "churn_home": ChurnHomeResource(home=str(home)),
            "engine": EngineResource(name=engine, home=str(home)),
        },
        instance=instance,
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
    landed = _land(root / "source")
    found = {}
    for engine in ("duckdb", "spark"):
        home = root / engine
        home.mkdir()
        shutil.copy(landed, home / "warehouse.duckdb")
        found[engine] = (home, _materialize(home, engine))
    return found


def _rows(home: Path, table: str) -> tuple[list[tuple], list[tuple[str, str]]]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        schema = [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()]
        rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()
    return rows, schema


def _same(left, right, kind: str) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if kind in ("DOUBLE", "FLOAT"):
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


@pytest.mark.parametrize("table", list(STAGED))
def test_spark_staging_equals_duckdb_staging(runs, table):
    for name in (table, f"{table}_rejects"):
        duck_rows, duck_schema = _rows(runs["duckdb"][0], name)
        spark_rows, spark_schema = _rows(runs["spark"][0], name)
        assert spark_schema == duck_schema, name
        assert len(spark_rows) == len(duck_rows), name
        differing = _differing(duck_rows, spark_rows, duck_schema)
        assert not differing, f"{name}: {len(differing)} values differ, e.g. {differing[:5]}"
    assert len(_rows(runs["duckdb"][0], table)[0]) >= STAGED[table]


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
    staged = [name for table in STAGED for name in (table, f"{table}_rejects")]
    assert engines == dict.fromkeys([*staged, *TABLES], "spark")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_future_leakage"] and checks["rows_match_active_customers"], checks
    assert all(checks.values()), checks
    assert list((home / "lake" / "stg_events").glob("*.parquet"))
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
    assert engine_config({}).name == "duckdb"
    chosen = engine_config({"CHURN_ENGINE": "Spark", "CHURN_SPARK_MASTER": "local[4]"})
    assert (chosen.name, chosen.spark_master) == ("spark", "local[4]")
    with pytest.raises(ValueError, match="CHURN_ENGINE"):
        engine_config({"CHURN_ENGINE": "polars"})


DIRTY_ROWS = {  # overrides of a valid row: what a hand-kept CSV source sends
    "customers": [
        {"customer_id": "d-1", "region": " NORTH ", "age": "34.0", "signup_date": "2025/01/03"},
        {"customer_id": "d-2", "region": "mars", "plan": "Gold"},
        {"customer_id": "d-3", "age": "12"},
        {"customer_id": "d-4", "age": "abc", "monthly_fee": "1.5d"},
        {"customer_id": "d-5", "signup_date": "2025"},
        {"customer_id": "d-6", "age": "12.5e1", "monthly_fee": "-3"},
        {"customer_id": "", "contract": "weekly"},
        {"customer_id": "d-7", "age": "40.5", "signup_date": "2025-02-30"},
    ],
    "events": [
        {"event_id": "d-e1", "event_time": "2025-03-01 22:00:00-05:00"},
        {"event_id": "d-e2", "event_time": "2025-03-01T23:30:00Z", "event_type": " Login"},
        {"event_id": "d-e3", "event_time": "2025-13-01 10:00:00"},
        {"event_id": "d-e4", "customer_id": "nobody", "event_type": "dance"},
        {"event_id": "d-e5", "event_time": "2025-03-02", "session_id": ""},
        {"event_id": "d-e6", "event_time": "2025"},
    ],
    "payments": [
        {"payment_id": "d-p1", "amount": "-5"},
        {"payment_id": "d-p2", "amount": "12.50", "status": "FAILED"},
        {"payment_id": "d-p3", "payment_date": "2025-02-30", "attempt": "2.0"},
        {"payment_id": "d-p4", "customer_id": "nobody", "amount": "1e3"},
        {"payment_id": "d-p5", "amount": "", "attempt": "x"},
    ],
}


def _dirty_warehouse(folder: Path) -> Path:
    """The synthetic customers, events and payments as text (as a CSV source lands them), with
    dirty rows and a newer, conflicting version of a few customers."""
    from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS

    generate(SOURCE, folder / "raw", folder / "truth")
    path = folder / "dirty.duckdb"
    con = duckdb.connect(str(path))
    try:
        for table in (CUSTOMERS, EVENTS, PAYMENTS):
            land_file(con, find_source_file(folder / "raw", table), table, replace=True)
            text = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in table.column_names)
            con.execute(
                f"CREATE OR REPLACE TABLE raw_{table.name} AS "
                f"SELECT {text}, _loaded_at, _source_file FROM raw_{table.name}"
            )
            if table is CUSTOMERS:  # a newer, conflicting version of five customers
                first, second = next(c.allowed for c in CUSTOMERS.columns if c.name == "plan")[:2]
                con.execute(
                    "INSERT INTO raw_customers SELECT * REPLACE ("
                    "CASE WHEN plan = ? THEN ? ELSE ? END AS plan, "
                    "_loaded_at + INTERVAL 1 HOUR AS _loaded_at) FROM raw_customers "
                    "ORDER BY customer_id LIMIT 5",
                    [first, second, first],
                )
            template = con.execute(
                f"SELECT * FROM raw_{table.name} ORDER BY ALL LIMIT 1"
            ).fetchone()
            names = [d[0] for d in con.description]
            for overrides in DIRTY_ROWS[table.name]:
                row = dict(zip(names, template, strict=True)) | overrides
                con.execute(
                    f"INSERT INTO raw_{table.name} VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )
    finally:
        con.close()
    return path


def test_staging_rules_equal_on_spark_for_dirty_rows(tmp_path):
    """Every value rule (types, ranges, categories, dates with offsets, required fields, unknown
    customers, the newest version of a key) decides the same on Spark: the same rows staged, the
    same rows rejected with the same reasons."""
    from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS

    dirty = _dirty_warehouse(tmp_path / "source")
    results = {}
    for name, engine in (("duckdb", DuckDBEngine()), ("spark", SparkEngine(tmp_path / "lake"))):
        (tmp_path / name).mkdir()
        shutil.copy(dirty, tmp_path / name / "warehouse.duckdb")
        con = duckdb.connect(str(tmp_path / name / "warehouse.duckdb"))
        try:
            results[name] = [stage_table(con, t, engine) for t in (CUSTOMERS, EVENTS, PAYMENTS)]
        finally:
            con.close()
    assert results["spark"] == results["duckdb"]
    customers, events, _ = results["duckdb"]
    assert customers.conflicting_keys == 5 and customers.duplicates_dropped == 5
    assert events.rejects_by_rule["unknown_customer"] == 1
    broken = {rule for r in results["duckdb"] for rule, n in r.rejects_by_rule.items() if n}
    assert broken == {
        "missing_required",
        "invalid_type",
        "not_allowed",
        "out_of_range",
        "unknown_customer",
    }
    for table in ("customers", "events", "payments"):
        for name in (f"stg_{table}", f"stg_{table}_rejects"):
            duck_rows, duck_schema = _rows(tmp_path / "duckdb", name)
            spark_rows, spark_schema = _rows(tmp_path / "spark", name)
            assert spark_schema == duck_schema, name
            differing = _differing(duck_rows, spark_rows, duck_schema)
            assert not differing, f"{name}: {len(differing)} differ, e.g. {differing[:5]}"
    con = duckdb.connect(str(tmp_path / "spark" / "warehouse.duckdb"), read_only=True)
    try:  # the offsets were converted to UTC, the accepted spellings normalized
        assert con.execute("SELECT event_time FROM stg_events WHERE event_id = 'd-e1'").fetchone()[
            0
        ] == datetime(2025, 3, 2, 3, 0)
        assert con.execute(
            "SELECT region, age, signup_date FROM stg_customers WHERE customer_id = 'd-1'"
        ).fetchone() == ("north", 34, date(2025, 1, 3))
        reasons = dict(
            con.execute(
                "SELECT customer_id, reject_reason FROM stg_customers_rejects "
                "WHERE customer_id LIKE 'd-%'"
            ).fetchall()
        )
    finally:
        con.close()
    assert reasons["d-4"].startswith("invalid_type: monthly_fee=1.5d is not a valid DOUBLE")
    assert "d-1" not in reasons and "d-7" in reasons
