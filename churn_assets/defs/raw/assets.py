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

from churn.ingest.incoming import quarantine, table_for
from churn.ingest.landing import SourceFileError, no_rows_warning
from churn.ingest.schema import RAW_TABLES, TABLES_BY_NAME
from churn.ingest.sources import SOURCE_TABLE, record_source
from churn.ingest.staging import raw_name
from churn.settings import load_settings
from churn.sources import registry
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
    """A source config YAML (or ``synthetic``) for this run, overriding ``CHURN_SOURCE``. Its
    calendar replaces the previous one when it is staged; the run's own partition range was
    fixed before, so the new months are run by ``new_month_sensor`` or a following run."""


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
        source = registry.source_for(
            None if source_name == "synthetic" else load_source(source_name)
        )
    except SourceConfigError as error:
        raise dg.Failure(description=str(error)) from error
    raw_dir = churn_home.folder("raw")
    source.prepare_files(
        settings,
        raw_dir,
        churn_home.folder("truth"),
        regenerate=config.regenerate,
        log=context.log.info,
    )
    # One transaction for the whole reload: a run killed after some tables were replaced (or
    # before the incoming files were replayed) leaves every raw table as it was.
    with warehouse.connect(context) as con, transaction(con):
        loaded = []
        for table in RAW_TABLES:
            if not source.has_table(table):
                # No empty stand-in: a table that exists says the source has one.
                con.execute(f"DROP TABLE IF EXISTS {raw_name(table)}")
                context.log.info(f"{raw_name(table)}: no table ({source.absence_reason(table)})")
                continue
            started = time.perf_counter()
            try:
                path, rows = source.land(con, table, raw_dir)
            except SourceFileError as error:
                raise dg.Failure(description=str(error)) from error
            origin = path.name if path is not None else f"nothing ({source.absence_reason(table)})"
            context.log.info(f"{raw_name(table)}: {rows:,} rows from {origin}")
            if (warning := no_rows_warning(path, rows)) is not None:
                context.log.warning(f"{raw_name(table)}: {warning}")
            loaded.append((table, path, round(time.perf_counter() - started, 3)))
        _forget_other_source(con, context, source_name)
        record_source(con, source_name, source.config, source.observation_date)
        if source.replays_incoming:
            # incoming/ files, under the source's own column names
            source.replay_incoming(con, context.log.info, context.log.warning)
        shape = {"source": source_name, "source_shape": source.kind}
        for table, path, seconds in loaded:
            metadata = table_metadata(con, raw_name(table), column_descriptions(table.name))
            origin = (
                {"source_file": dg.MetadataValue.path(str(path))}
                if path is not None
                else {"note": f"empty: {source.absence_reason(table)}"}
            )
            yield dg.MaterializeResult(
                asset_key=raw_name(table),
                metadata=metadata | origin | shape | {"load_seconds": seconds},
            )
        for table in RAW_TABLES:
            if not source.has_table(table):
                yield dg.MaterializeResult(
                    asset_key=raw_name(table),
                    metadata=shape | {"table": "none", "note": source.absence_reason(table)},
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
        source = registry.landed(con)
        refusal = source.incoming_refusal()
        if refusal is not None:
            raise dg.Failure(description=refusal)
        for name in config.incoming_files:
            path = Path(name)
            if not path.exists():
                context.log.warning(f"{path} is gone (landed by an earlier run?); skipped")
                continue
            table = table_for(path)
            if table is not None and not source.has_table(table):
                reason = f"{path.name}: {source.absence_reason(table)}"
                target = quarantine(path, reason, churn_home.folder("quarantine"))
                quarantined.append(reason)
                context.log.warning(f"quarantined {target}: {reason}")
                continue
            try:
                outcome = source.append_incoming(con, path, churn_home.folder("landed"))
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
            metadata = (
                table_metadata(con, raw_name(table), column_descriptions(table.name))
                if source.has_table(table)
                else {"table": "none", "note": source.absence_reason(table)}
            )
            yield dg.MaterializeResult(
                asset_key=raw_name(table),
                metadata=metadata
                | {
                    "incoming_files": dg.MetadataValue.json(landed.get(table.name, [])),
                    "quarantined_files": dg.MetadataValue.json(quarantined),
                },
            )
