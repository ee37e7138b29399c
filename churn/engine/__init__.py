"""[engine] Where the snapshot, feature and label SQL runs: DuckDB (default) or Apache Spark.

The SQL is written once, in DuckDB's dialect (:mod:`churn.ingest.staging`, :mod:`churn.features`);
an :class:`Engine` runs a query over the warehouse's relations and leaves its rows in a table of
the warehouse connection, so everything downstream (checks, training, scoring, monitoring) reads
the same tables whichever engine computed them.

* :class:`~churn.engine.duckdb.DuckDBEngine` runs it in the warehouse itself.
* :class:`~churn.engine.spark.SparkEngine` exports the relations the query reads to Parquet in
  the lake, runs the query transpiled by :mod:`churn.engine.dialect` on Spark, writes the result
  to the lake partitioned by observation date and loads the window back.

Chosen by configuration (:func:`churn.settings.engine_config`, the ``engine`` of the settings):
``CHURN_ENGINE=duckdb|spark``, ``CHURN_SPARK_MASTER`` (default ``local[2]``) or
``CHURN_SPARK_REMOTE`` (a Spark Connect URL), ``CHURN_LAKE`` (default ``$CHURN_HOME/lake``),
``CHURN_SPARK_DRIVER_MEMORY`` (default ``2g``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")
Params = Sequence[Any] | Mapping[str, Any] | None


class Engine(Protocol):
    """Runs one DuckDB-dialect query and leaves its rows in a temp table of ``con``."""

    name: str

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
        """``CREATE [TEMP] TABLE into AS sql``, ``into`` a temp table unless ``persist``.

        ``table`` is the asset's table, which names its folder in the lake. With a ``window`` =
        [start, end) the rows are one partitioned asset's observation dates (the lake keeps the
        table's other months); without, the query is the whole table (staging)."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """Which engine, and for Spark where it runs and where tables are exchanged."""

    name: EngineName = "duckdb"
    spark_master: str = "local[2]"
    spark_remote: str = ""
    lake: str = ""
    spark_driver_memory: str = "2g"

    def build(self, home: Path) -> Engine:
        if self.name == "duckdb":
            from churn.engine.duckdb import DuckDBEngine

            return DuckDBEngine()
        from churn.engine.spark import SparkEngine

        return SparkEngine(
            lake=Path(self.lake) if self.lake else home / "lake",
            master=self.spark_master,
            remote=self.spark_remote or None,
            driver_memory=self.spark_driver_memory,
        )
