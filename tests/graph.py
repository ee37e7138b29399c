"""Materialize the real asset graph in-process into a given CHURN_HOME."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from churn.settings import load_settings
from churn_assets.definitions import defs
from churn_assets.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    first_observation_date,
    last_observation_date,
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


def materialize_graph(
    home: Path,
    selection: str | dg.AssetSelection = "*",
    *,
    first: str | None = None,
    last: str | None = None,
    raise_on_error: bool = True,
    run_config: dict | None = None,
    engine: str = "duckdb",
) -> GraphRun:
    """Run ``selection`` over the observation range [first, last] with resources in ``home``.

    A string selection is comma-separated asset keys, or ``*`` for the whole graph; ``engine``
    is the engine resource's choice (``duckdb`` or ``spark``).
    """
    if isinstance(selection, str) and selection != "*":
        selection = dg.AssetSelection.assets(*selection.split(","))
    settings = load_settings()
    first = first or first_observation_date(settings).isoformat()
    last = last or last_observation_date(settings).isoformat()
    result = dg.materialize(
        assets=list(defs.assets or []),
        selection=selection,
        resources={
            "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
            "churn_home": ChurnHomeResource(home=str(home)),
            "engine": EngineResource(name=engine, home=str(home)),
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
        raise_on_error=raise_on_error,
        run_config=run_config,
    )
    return GraphRun(home=home, result=result)
