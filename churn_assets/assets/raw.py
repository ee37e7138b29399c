"""[raw] The source's five tables landed in DuckDB as they arrived.

With the default synthetic source, the generator writes the files first when they are absent,
so a fresh ``CHURN_HOME`` materializes end to end with no manual step.
"""

import time

import dagster as dg

from churn.landing import SourceFileError, find_source_file, land_file
from churn.schema import RAW_TABLES, TABLES_BY_NAME
from churn.settings import load_settings
from churn.staging import raw_name
from churn_assets.metadata import table_metadata
from churn_assets.partitions import SINGLE_RUN
from churn_assets.resources import ChurnHomeResource, WarehouseResource

WAREHOUSE_POOL = "duckdb_warehouse"
"""Every asset that writes ``warehouse.duckdb`` runs in this pool; dagster.yaml limits it to 1."""

LINEAGE_DESCRIPTIONS = {
    "_loaded_at": "When this row was landed in the warehouse.",
    "_source_file": "File the row came from.",
}


class RawSourceConfig(dg.Config):
    """How the raw layer is fed."""

    regenerate: bool = False
    """Rewrite the synthetic source files even when they already exist."""


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
    from churn.synthetic import GeneratorConfig, generate

    size = load_settings().synthetic
    config = GeneratorConfig(
        customers=size.customers,
        months=size.months,
        seed=size.seed,
        start_date=size.start_date,
        burn_in_months=size.burn_in_months,
    )
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
    settings = load_settings()
    raw_dir = churn_home.folder("raw")
    if settings.is_synthetic:
        absent = [t.name for t in RAW_TABLES if find_source_file(raw_dir, t) is None]
        if config.regenerate or absent:
            _generate_synthetic(context, churn_home)
    with warehouse.connect(context) as con:
        for table in RAW_TABLES:
            path = find_source_file(raw_dir, table)
            if path is None:
                raise dg.Failure(
                    description=f"No source file for '{table.name}' in {raw_dir}: expected "
                    f"{table.name}.parquet or {table.name}.csv.",
                )
            started = time.perf_counter()
            try:
                rows = land_file(con, path, table, replace=True)
            except SourceFileError as error:
                raise dg.Failure(description=str(error)) from error
            context.log.info(f"{raw_name(table)}: {rows:,} rows from {path.name}")
            metadata = table_metadata(con, raw_name(table), column_descriptions(table.name))
            yield dg.MaterializeResult(
                asset_key=raw_name(table),
                metadata=metadata
                | {
                    "source_file": dg.MetadataValue.path(str(path)),
                    "load_seconds": round(time.perf_counter() - started, 3),
                },
            )
