"""The feature SQL on DuckDB and on local Spark, same data, same SQL: time and parity.

The data is a *minimal* subscription source generated in SQL (the synthetic generator's full
history, ~370 events per customer-year, would not fit this measurement at 1M customers on a
small machine): per customer about two events a month, a monthly payment (5% failed), a support
ticket for one in ten, a cancellation for one in fifty. The schema and types are the staged
tables', so the real ``customer_snapshots`` / ``customer_features`` SQL runs unchanged.

The query is the one the ``customer_features`` asset runs for such a source: the hand-written
subscription family joined to the generated family of its event vocabulary (decided from the
staged events as the ``stg_events`` asset decides it).

Timed per engine: the feature query over every observation date (Spark: export of the inputs to
Parquet, the transpiled query, the partitioned write and the read-back into DuckDB, i.e. what
the asset step pays); Spark's session start is timed apart. Then the two results are compared
(rows differing, with ``EXCEPT ALL``).

``python -m benchmarks.engines --customers 10000 100000 --months 12``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from churn.engine.duckdb import DuckDBEngine
from churn.engine.spark import SparkEngine, spark_session, stop_sessions
from churn.features import SourceTables
from churn.features.event_spec import VOCABULARY_TABLE, load_spec
from churn.features.events import feature_sql
from churn.features.snapshots import active_customers_sql
from churn.sources.synthetic import SyntheticSource

ENGINES = ("duckdb", "spark")
DRIVER_MEMORY = "6g"
"""A local session's memory unless ``CHURN_SPARK_DRIVER_MEMORY`` says otherwise: at 1M customers
the window's joins hold tens of millions of rows, which the engine's default of 2g would spill."""
START = date(2024, 1, 1)
BURN_IN_MONTHS = 3

_SOURCE_SQL = """
-- A deterministic draw in [0, n) from a key: the "random" choices of the minimal source.
CREATE OR REPLACE TEMP MACRO draw(key, n) AS CAST(hash(key) % n AS BIGINT);

CREATE OR REPLACE TABLE stg_customers AS
SELECT 'c' || i AS customer_id,
    CAST($start AS DATE) - CAST(draw(i || '/signup', 365) AS INTEGER)
        + CAST(draw(i || '/late', 4) = 0 AS INTEGER) * CAST(draw(i || '/in', $days - 1) AS INTEGER)
        AS signup_date,
    ['north', 'south', 'east', 'west'][1 + draw(i || '/region', 4)] AS region,
    ['basic', 'pro', 'team'][1 + draw(i || '/plan', 3)] AS plan,
    CAST(9.99 + draw(i || '/fee', 4000) / 100 AS DOUBLE) AS monthly_fee,
    ['monthly', 'annual'][1 + draw(i || '/contract', 2)] AS contract,
    ['card', 'invoice', 'paypal'][1 + draw(i || '/pay', 3)] AS payment_method,
    CAST(18 + draw(i || '/age', 60) AS INTEGER) AS age,
    ['ads', 'organic', 'referral'][1 + draw(i || '/channel', 3)] AS acquisition_channel
FROM range($customers) t(i);

CREATE OR REPLACE TABLE stg_events AS
SELECT 'e' || i || '_' || k AS event_id, 'c' || i AS customer_id,
    'c' || i || '_' || (draw(i || '/' || k || '/day', $days)) AS session_id,
    CAST($start AS TIMESTAMP) + to_days(CAST(draw(i || '/' || k || '/day', $days) AS INTEGER))
        + to_seconds(CAST(draw(i || '/' || k || '/s', 86400) AS BIGINT)) AS event_time,
    ['login', 'page_view', 'feature_use', 'export', 'share'][1 + draw(i || '/' || k || '/type', 5)]
        AS event_type,
    CAST(draw(i || '/' || k || '/dur', 600000) / 1000 AS DOUBLE) AS duration_seconds
FROM range($customers) t(i), range(2 * $months) r(k);

CREATE OR REPLACE TABLE stg_payments AS
SELECT 'p' || i || '_' || m AS payment_id, 'c' || i AS customer_id,
    CAST(CAST($start AS DATE) + to_months(m) AS DATE)
        + CAST(draw(i || '/pday', 28) AS INTEGER)
        AS payment_date,
    CAST(9.99 + draw(i || '/fee', 4000) / 100 AS DOUBLE) AS amount,
    CASE WHEN draw(i || '/' || m || '/fail', 20) = 0 THEN 'failed' ELSE 'succeeded' END AS status,
    'card' AS payment_method, 1 AS attempt
FROM range($customers) t(i), range($months) r(m);

CREATE OR REPLACE TABLE stg_tickets AS
SELECT 't' || i AS ticket_id, 'c' || i AS customer_id,
    CAST($start AS TIMESTAMP) + to_days(CAST(draw(i || '/tday', $days) AS INTEGER)) AS created_at,
    ['billing', 'technical', 'cancellation_request'][1 + draw(i || '/cat', 3)] AS category,
    ['low', 'high'][1 + draw(i || '/prio', 2)] AS priority
FROM range($customers) t(i) WHERE draw(i || '/ticket', 10) = 0;

CREATE OR REPLACE TABLE stg_cancellations AS
SELECT 'c' || i AS customer_id,
    CAST($start AS DATE) + CAST(draw(i || '/cday', $days) AS INTEGER) AS cancel_date,
    'voluntary' AS churn_type, 'price' AS reason
FROM range($customers) t(i) WHERE draw(i || '/cancel', 50) = 0;
"""


def build_source(path: Path, customers: int, months: int) -> dict[str, int]:
    """The minimal source and its snapshots in a fresh warehouse file; returns row counts."""
    con = duckdb.connect(str(path))
    try:
        params = {"start": START, "days": months * 30, "customers": customers, "months": months}
        for statement in _SOURCE_SQL.split(";"):
            if statement.strip():
                con.execute(statement, _params_used(statement, params))
        first, end = _add_months(START, BURN_IN_MONTHS), _add_months(START, months)
        con.execute(
            f"CREATE OR REPLACE TABLE customer_snapshots AS {active_customers_sql()}",
            [first, end],
        )
        # What the stg_events asset decides: the event vocabulary of the generated family.
        SyntheticSource().decide_features(con, last_observation_date=end, horizon_days=30)
        return {
            table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("stg_customers", "stg_events", "stg_payments", "customer_snapshots")
        }
    finally:
        con.close()


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    return date(day.year + month // 12, month % 12 + 1, 1)


def _params_used(statement: str, params: dict) -> dict:
    return {name: value for name, value in params.items() if f"${name}" in statement}


def measure(customers: int, months: int, workdir: Path, engines: tuple[str, ...]) -> dict:
    """Build the source at this size, run the feature SQL on each engine, compare."""
    folder = workdir / f"engines-{customers}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "warehouse.duckdb"
    started = time.perf_counter()
    rows = build_source(path, customers, months)
    figures: dict = {
        "customers": customers,
        "months": months,
        "rows": rows,
        "source_seconds": round(time.perf_counter() - started, 1),
        "seconds": {},
    }
    print(
        f"[engines]   source: {rows['stg_events']:,} events, {rows['customer_snapshots']:,} "
        f"snapshot rows in {figures['source_seconds']} s",
        file=sys.stderr,
        flush=True,
    )
    con = duckdb.connect(str(path))
    window = (START.isoformat(), _add_months(START, months + 1).isoformat())
    spec = load_spec(con)
    asset_sql = feature_sql(spec, SourceTables(vocabulary=VOCABULARY_TABLE))
    figures["features"] = len(con.execute(f"DESCRIBE {asset_sql}").fetchall()) - 2
    try:
        for name in engines:
            memory = os.environ.get("CHURN_SPARK_DRIVER_MEMORY") or DRIVER_MEMORY
            engine = (
                DuckDBEngine()
                if name == "duckdb"
                else SparkEngine(folder / "lake", driver_memory=memory)
            )
            if name == "spark":
                started = time.perf_counter()
                spark_session(driver_memory=memory)
                figures["spark_session_start_seconds"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            engine.compute(
                con,
                f"features_{name}",
                asset_sql,
                table="customer_features",
                window=window,
            )
            figures["seconds"][name] = round(time.perf_counter() - started, 1)
            figures.setdefault("load", {})[name] = round(os.getloadavg()[0], 2)
            if isinstance(engine, SparkEngine):
                # Where Spark's time went: the exchange, the query with its write, the load back.
                figures["spark_phase_seconds"] = {
                    phase: round(seconds, 1) for phase, seconds in engine.phase_seconds.items()
                }
            print(f"[engines]   {name}: {figures['seconds'][name]} s", file=sys.stderr, flush=True)
        if len(engines) == 2:
            figures["rows_differing"] = _rows_differing(con)
    finally:
        con.close()
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def _rows_differing(con: duckdb.DuckDBPyConnection) -> int:
    """Rows in one result and not the other (``EXCEPT ALL`` both ways), one observation date at
    a time: at 1M customers the whole tables' hash tables outgrew this machine's memory."""
    dates = [
        d
        for (d,) in con.execute(
            "SELECT observation_date FROM features_duckdb UNION "
            "SELECT observation_date FROM features_spark"
        ).fetchall()
    ]
    differing = 0
    for day in dates:
        differing += con.execute(
            "SELECT count(*) FROM ("
            "(SELECT * FROM features_duckdb WHERE observation_date = $day EXCEPT ALL "
            "SELECT * FROM features_spark WHERE observation_date = $day) UNION ALL "
            "(SELECT * FROM features_spark WHERE observation_date = $day EXCEPT ALL "
            "SELECT * FROM features_duckdb WHERE observation_date = $day))",
            {"day": day},
        ).fetchone()[0]
    return differing


def render(results: list[dict]) -> str:
    lines = [
        f"{'customers x months':>20} {'events':>12} {'snapshot rows':>14} "
        f"{'DuckDB s':>9} {'Spark s':>9} {'Spark/DuckDB':>13} {'differing':>10}"
    ]
    for r in results:
        duck, spark = r["seconds"].get("duckdb"), r["seconds"].get("spark")
        ratio = f"{spark / duck:.1f}x" if duck and spark else "n/a"
        lines.append(
            f"{r['customers']:>12,} x {r['months']:>5} {r['rows']['stg_events']:>12,} "
            f"{r['rows']['customer_snapshots']:>14,} {duck if duck is not None else 'n/a':>9} "
            f"{spark if spark is not None else 'n/a':>9} {ratio:>13} "
            f"{r.get('rows_differing', 'n/a'):>10}"
        )
    starts = [
        r["spark_session_start_seconds"] for r in results if "spark_session_start_seconds" in r
    ]
    if starts:
        lines.append(f"Spark session start (once per process): {starts[0]} s")
    for r in results:
        if "spark_phase_seconds" in r:
            phases = ", ".join(f"{k} {v} s" for k, v in r["spark_phase_seconds"].items())
            lines.append(f"Spark at {r['customers']:,}: {phases}; load {r.get('load')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__)
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="churn-bench-engines-"))
    results = []
    try:
        for customers in args.customers:
            print(f"[engines] {customers:,} customers x {args.months} months", file=sys.stderr)
            results.append(measure(customers, args.months, workdir, tuple(args.engines)))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        stop_sessions()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(results))
    print(json.dumps({"cpus": os.cpu_count(), "load": os.getloadavg(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
