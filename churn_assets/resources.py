"""Resources: where the warehouse and the state directories are, chosen by configuration.

Assets never build paths or connections themselves; swapping the warehouse for a shared engine
or the state folder for a mounted volume is a change of resource configuration only.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from churn import warehouse
from churn.diskspace import disk_full, is_disk_full
from churn.engine import Engine, EngineConfig
from churn.settings import Settings

WAREHOUSE_POOL = "duckdb_warehouse"
"""Every asset that writes ``warehouse.duckdb`` runs in this pool; dagster.yaml limits it to 1."""


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse. Opened per step and closed at once: DuckDB allows one writer.

    ``path`` is anything ``duckdb.connect`` opens: a local file (default
    ``$CHURN_HOME/warehouse.duckdb``, or ``CHURN_WAREHOUSE``) or ``md:<database>`` for a shared
    MotherDuck database (token in ``motherduck_token``); asset code never sees the difference.
    """

    path: str
    lock_timeout_seconds: float = 300.0

    @contextmanager
    def connect(
        self, context: dg.AssetExecutionContext | None = None, *, read_only: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        on_wait = context.log.warning if context is not None else None
        con = warehouse.connect(
            Path(self.path),
            read_only=read_only,
            lock_timeout_seconds=self.lock_timeout_seconds,
            on_wait=on_wait,
        )
        try:
            try:
                yield con
            finally:
                con.close()  # a checkpoint at close can be the write that finds the disk full
        except duckdb.Error as error:
            if is_disk_full(error):  # say so and where, not only DuckDB's "IO Error"
                raise disk_full(
                    error, Path(self.path), "the warehouse", "CHURN_WAREHOUSE (or CHURN_HOME)"
                ) from error
            raise


class ChurnHomeResource(dg.ConfigurableResource):
    """The state folder (``CHURN_HOME``): raw files, reports, logs, ground truth."""

    home: str

    @property
    def root(self) -> Path:
        return Path(self.home)

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


class EngineResource(dg.ConfigurableResource):
    """Where staging, snapshots, features and labels are computed: ``duckdb`` (in the warehouse) or
    ``spark`` (the same SQL transpiled, see :mod:`churn.engine`). Either way the results land in
    the warehouse, so the checks and everything downstream are the same.

    From the settings (``Settings.engine``): ``CHURN_ENGINE``, ``CHURN_SPARK_MASTER`` (default
    ``local[2]``), ``CHURN_SPARK_REMOTE`` (a Spark Connect URL, instead of a master),
    ``CHURN_LAKE`` (default ``$CHURN_HOME/lake``), where Spark exchanges Parquet with the
    warehouse, and ``CHURN_SPARK_DRIVER_MEMORY`` (default ``2g``).
    """

    name: str = "duckdb"
    spark_master: str = "local[2]"
    spark_remote: str = ""
    lake: str = ""
    spark_driver_memory: str = "2g"
    home: str = "."

    def engine(self) -> Engine:
        config = EngineConfig(
            name=self.name,  # type: ignore[arg-type]
            spark_master=self.spark_master,
            spark_remote=self.spark_remote,
            lake=self.lake,
            spark_driver_memory=self.spark_driver_memory,
        )
        return config.build(Path(self.home))


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    engine = settings.engine
    return {
        "warehouse": WarehouseResource(path=settings.warehouse_location),
        "churn_home": ChurnHomeResource(home=str(settings.home)),
        "engine": EngineResource(
            name=engine.name,
            spark_master=engine.spark_master,
            spark_remote=engine.spark_remote,
            lake=engine.lake,
            spark_driver_memory=engine.spark_driver_memory,
            home=str(settings.home),
        ),
    }
