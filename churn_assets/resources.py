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
            yield con
        finally:
            con.close()


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


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(path=settings.warehouse_location),
        "churn_home": ChurnHomeResource(home=str(settings.home)),
    }
