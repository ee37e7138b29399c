"""[raw] The source's five tables landed in DuckDB as they arrived.

With the default synthetic source, the generator writes the files first when they are absent,
so a fresh ``CHURN_HOME`` materializes end to end with no manual step.

Files accepted from ``incoming/`` (see ``incoming_files_sensor``) are *appended*: each is landed
once (its content hash is recorded in ``raw_landed_files`` in the same transaction as its rows)
and archived under ``$CHURN_HOME/landed/``. A full reload from the source replays the archived
files after it, so the raw layer is always "source + every accepted incoming file".
"""

import time
from pathlib import Path

import dagster as dg

from churn.ingest.incoming import append_incoming, quarantine, replay_landed
from churn.ingest.landing import SourceFileError, find_source_file
from churn.ingest.layout import land_table, layout_name
from churn.ingest.schema import RAW_TABLES, TABLES_BY_NAME
from churn.ingest.sources import (
    SOURCE_TABLE,
    active_source,
    flat_observation_date,
    record_source,
)
from churn.ingest.staging import raw_name
from churn.settings import load_settings
from churn.sources.config import SourceConfigError, load_source
from churn.warehouse import table_exists, transaction
from churn_assets.metadata import table_metadata
from churn_assets.partitions import SINGLE_RUN
from churn_assets.resources import WAREHOUSE_POOL, ChurnHomeResource, WarehouseResource

LINEAGE_DESCRIPTIONS = {
    "_loaded_at": "When this row was landed in the warehouse.",
    "_source_file": "File the row came from.",
}


class RawSourceConfig(dg.Config):
    """How the raw layer is fed."""

    regenerate: bool = False
    """Rewrite the synthetic source files even when they already exist."""
    incoming_files: list[str] | None = None
    """Validated files from ``incoming/`` to append; when set, the source is not reloaded."""
    source: str | None = None
    """A source config YAML (or ``synthetic``) for this run, overriding ``CHURN_SOURCE``. The
    observation calendar still comes from ``CHURN_SOURCE`` at load time: for an events source
    with another calendar, set the variable and restart instead."""


def column_descriptions(table_name: str) -> dict[str, str]:
    table = TABLES_BY_NAME[table_name]
    return {column.name: column.description for column in table.columns} | LINEAGE_DESCRIPTIONS


def _raw_spec(table_name: str) -> dg.AssetSpec:
    table = TABLES_BY_NAME[table_name]
    return dg.AssetSpec(
        key=raw_name(table),
        group_name="raw",
        description=f"{table.description} Landed as-is from the source, with load time and file.",
        kinds={"duckdb"},
        owners=["team:data-engineering"],
        skippable=False,
    )


def _generate_synthetic(context: dg.AssetExecutionContext, churn_home: ChurnHomeResource) -> None:
    """Write the embedded synthetic source, logging progress each simulated month."""
    from churn.synthetic import generate

    config = load_settings().synthetic.generator_config()
    last_logged = [-1.0]

    def progress(stage: str, fraction: float) -> None:
        if fraction - last_logged[0] >= 0.1 or fraction >= 1.0:
            context.log.info(f"synthetic source: {stage} {fraction:.0%}")
            last_logged[0] = fraction

    summary = generate(
        config, churn_home.folder("raw"), churn_home.folder("truth"), progress=progress
    )
    context.log.info(
        f"synthetic source: {summary.rows} in {summary.seconds:.1f} s -> {churn_home.folder('raw')}"
    )


DERIVED_TABLES = ("customer_snapshots", "customer_features", "churn_labels", "training_set")


def _forget_other_source(con, context: dg.AssetExecutionContext, source_name: str) -> None:
    """Switching sources in one CHURN_HOME: the partitioned tables keep rows per month, so
    drop them rather than mix the old source's months with the new one's."""
    if not table_exists(con, SOURCE_TABLE):
        return
    previous = con.execute(f"SELECT source FROM {SOURCE_TABLE}").fetchone()
    if previous is None or previous[0] == source_name:
        return
    for table in DERIVED_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    context.log.warning(
        f"source changed from {previous[0]} to {source_name}: dropped {', '.join(DERIVED_TABLES)}"
    )


@dg.multi_asset(
    specs=[_raw_spec(table.name) for table in RAW_TABLES],
    pool=WAREHOUSE_POOL,
    backfill_policy=SINGLE_RUN,
    description="Land the source files (synthetic by default) into the raw_* tables.",
)
def raw_tables(
    context: dg.AssetExecutionContext,
    config: RawSourceConfig,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
):
    if config.incoming_files:
        yield from _land_incoming(context, config, warehouse, churn_home)
        return
    settings = load_settings()
    source_name = config.source or settings.source
    try:
        source = None if source_name == "synthetic" else load_source(source_name)
    except SourceConfigError as error:
        raise dg.Failure(description=str(error)) from error
    raw_dir = churn_home.folder("raw")
    if source is None:
        absent = [t.name for t in RAW_TABLES if find_source_file(raw_dir, t) is None]
        if config.regenerate or absent:
            _generate_synthetic(context, churn_home)
    shape = layout_name(source)
    # One transaction for the whole reload: a run killed after some tables were replaced (or
    # before the incoming files were replayed) leaves every raw table as it was.
    with warehouse.connect(context) as con, transaction(con):
        loaded = []
        observation_date = None
        if source is not None and source.is_flat:
            observation_date = flat_observation_date(source)
        for table in RAW_TABLES:
            started = time.perf_counter()
            try:
                path, rows = land_table(con, source, table, raw_dir)
            except SourceFileError as error:
                raise dg.Failure(description=str(error)) from error
            origin = path.name if path is not None else f"nothing (a {shape} source has none)"
            context.log.info(f"{raw_name(table)}: {rows:,} rows from {origin}")
            loaded.append((table, path, round(time.perf_counter() - started, 3)))
        _forget_other_source(con, context, source_name)
        record_source(con, source_name, source, observation_date)
        if source is None or not (source.is_flat or source.is_event_log):
            # incoming/ files follow the five-table contract; an event log has its own columns
            replay_landed(con, context.log.info, context.log.warning)
        for table, path, seconds in loaded:
            metadata = table_metadata(con, raw_name(table), column_descriptions(table.name))
            origin = (
                {"source_file": dg.MetadataValue.path(str(path))}
                if path is not None
                else {"note": f"empty: a {shape} source has no {table.name} table"}
            )
            yield dg.MaterializeResult(
                asset_key=raw_name(table),
                metadata=metadata
                | origin
                | {"source": source_name, "source_shape": shape, "load_seconds": seconds},
            )


def _land_incoming(
    context: dg.AssetExecutionContext,
    config: RawSourceConfig,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
):
    """Append the sensor's files one by one, each validated and landed in its own transaction:
    a file that fails is quarantined with its own error and the others still land. An error
    that is not the file's (the warehouse, the disk) fails the run, and the sensor retries."""
    landed: dict[str, list[str]] = {}
    quarantined: list[str] = []
    with warehouse.connect(context) as con:
        source, _ = active_source(con)
        if source is not None and source.is_event_log:
            raise dg.Failure(
                description=f"incoming/ files follow the five-table contract; the {source.name} "
                "source is an event log: add the rows to its own files and "
                "re-materialize raw_tables"
            )
        for name in config.incoming_files:
            path = Path(name)
            if not path.exists():
                context.log.warning(f"{path} is gone (landed by an earlier run?); skipped")
                continue
            try:
                outcome = append_incoming(con, path, churn_home.folder("landed"))
            except SourceFileError as error:
                target = quarantine(path, str(error), churn_home.folder("quarantine"))
                quarantined.append(f"{path.name}: {error}")
                context.log.warning(f"quarantined {target}: {error}")
                continue
            if outcome is None:
                context.log.info(f"{path.name}: same content landed before; skipped")
                continue
            table_name, rows = outcome
            landed.setdefault(table_name, []).append(f"{path.name} ({rows:,} rows)")
            context.log.info(f"raw_{table_name}: appended {rows:,} rows from {path.name}")
        for table in RAW_TABLES:
            metadata = table_metadata(con, raw_name(table), column_descriptions(table.name))
            yield dg.MaterializeResult(
                asset_key=raw_name(table),
                metadata=metadata
                | {
                    "incoming_files": dg.MetadataValue.json(landed.get(table.name, [])),
                    "quarantined_files": dg.MetadataValue.json(quarantined),
                },
            )
