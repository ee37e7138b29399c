"""Materialize the real asset graph in-process into a given CHURN_HOME."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from churn.ingest.sources import SOURCE_TABLE, flat_observation_date
from churn.settings import Settings, load_settings, today
from churn.sources.base import add_months
from churn.sources.registry import landed
from churn.warehouse import connect, table_exists
from churn_assets.definitions import defs
from churn_assets.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    sync_calendar,
)
from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource


@dataclass
class GraphRun:
    home: Path
    result: dg.ExecuteInProcessResult

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def checks(self) -> dict[str, dg.AssetCheckEvaluation]:
        return {
            f"{e.asset_key.to_user_string()}:{e.check_name}": e
            for e in self.result.get_asset_check_evaluations()
        }


LAND = dg.AssetSelection.groups("raw", "staging")


def staged_calendar(home: Path, settings: Settings) -> tuple[date, date] | None:
    """The calendar of what ``home``'s warehouse has staged (None: nothing staged yet)."""
    warehouse = home / "warehouse.duckdb"
    if not warehouse.exists():
        return None
    with connect(warehouse) as con:
        if not table_exists(con, SOURCE_TABLE):
            return None  # nothing landed by this code (a test may plant tables)
        source = landed(con)
        table = f"stg_{source.calendar_table.name}"
        if not table_exists(con, table):
            return None
        return source.calendar(con, settings, today())


def expected_calendar(settings: Settings) -> tuple[date, date] | None:
    """The calendar a source will have once landed, when its config alone says so (the
    synthetic generator's months, an ``observation.end``, a flat ``as_of``)."""
    config = settings.source_config
    if config is None:
        size = settings.synthetic
        return (
            add_months(size.start_date, size.burn_in_months),
            add_months(size.start_date, size.months),
        )
    if config.flat is not None and not config.flat.time_column:
        month = flat_observation_date(config).replace(day=1)
        return month, month
    if config.observation is not None and config.observation.end is not None:
        return config.observation.start, config.observation.end
    return None


def materialize_graph(
    home: Path,
    selection: str | dg.AssetSelection = "*",
    *,
    first: str | None = None,
    last: str | None = None,
    raise_on_error: bool = True,
    run_config: dict | None = None,
    engine: str = "duckdb",
    instance: dg.DagsterInstance | None = None,
) -> GraphRun:
    """Run ``selection`` over the observation range [first, last] with resources in ``home``.

    A string selection is comma-separated asset keys, or ``*`` for the whole graph; ``engine``
    is the engine resource's choice (``duckdb`` or ``spark``). The observation calendar lives in
    the Dagster instance (written by staging): a fresh ephemeral instance gets the calendar of
    what is staged, else the one the config implies, else the source is landed and staged first
    (a calendar that follows the data).
    """
    if isinstance(selection, str) and selection != "*":
        selection = dg.AssetSelection.assets(*selection.split(","))
    elif selection == "*":
        selection = dg.AssetSelection.all()
    settings = load_settings()
    instance = instance or dg.DagsterInstance.ephemeral()
    resources = {
        "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
        "churn_home": ChurnHomeResource(home=str(home)),
        "engine": EngineResource(name=engine, home=str(home)),
    }
    calendar = staged_calendar(home, settings) or expected_calendar(settings)
    if calendar is None:
        dg.materialize(
            assets=list(defs.assets or []),
            selection=LAND,
            resources=resources,
            instance=instance,
            run_config=run_config,
        )
        calendar = staged_calendar(home, settings)
    if calendar is not None:
        sync_calendar(instance, *calendar)
    first = first or (calendar[0].isoformat() if calendar else None)
    last = last or (calendar[1].isoformat() if calendar else None)
    tags = {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last} if first else {}
    result = dg.materialize(
        assets=list(defs.assets or []),
        selection=selection,
        resources=resources,
        instance=instance,
        tags=tags,
        raise_on_error=raise_on_error,
        run_config=run_config,
    )
    return GraphRun(home=home, result=result)


@contextmanager
def own_bentoml_store(store: Path) -> Iterator[Path]:
    """Point this process's BentoML model and Bento stores at ``store`` (and ``BENTOML_HOME``),
    so a test with its own source never meets the session's champion: a store holds one
    source's models (``SourceMismatchError`` otherwise). BentoML resolves its stores once per
    process, hence the container patch (a test-only use of its internals)."""
    import os

    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    for folder in (store / "models", store / "bentos"):
        folder.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(store)
    try:
        with (
            BentoMLContainer.model_store.patch(ModelStore(str(store / "models"))),
            BentoMLContainer.bento_store.patch(BentoStore(str(store / "bentos"))),
        ):
            yield store
    finally:
        if previous is None:
            os.environ.pop("BENTOML_HOME", None)
        else:
            os.environ["BENTOML_HOME"] = previous
