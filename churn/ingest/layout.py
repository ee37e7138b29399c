"""How each source layout lands and stages: the one place the raw and staging steps ask.

Four layouts feed the same raw and staged tables:

* synthetic — the generator's five files in ``$CHURN_HOME/raw``;
* five-table events — the user's five subscription files, columns renamed onto the contract;
* event log — only events are certain (:mod:`churn.ingest.eventlog`);
* flat — one customer table (:mod:`churn.ingest.flat`); the other raw tables stay empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from churn.ingest import eventlog
from churn.ingest.flat import InferredColumn, stage_flat
from churn.ingest.landing import (
    SourceFileError,
    create_empty_raw,
    find_source_file,
    land_file,
    land_flat,
)
from churn.ingest.schema import CANCELLATIONS, CUSTOMERS, EVENTS, Table
from churn.ingest.staging import StagingResult, stage_table
from churn.sources.config import SourceConfig

if TYPE_CHECKING:
    from churn.engine import Engine


def layout_name(source: SourceConfig | None) -> str:
    if source is None:
        return "synthetic"
    if source.is_flat:
        return "flat"
    return "event_log" if source.is_event_log else "events"


def land_table(
    con: duckdb.DuckDBPyConnection, source: SourceConfig | None, table: Table, raw_dir: Path
) -> tuple[Path | None, int]:
    """Replace ``raw_<table>`` from the source: (file landed or None, rows)."""
    if source is None:
        path = find_source_file(raw_dir, table)
        if path is None:
            raise SourceFileError(
                f"No source file for '{table.name}' in {raw_dir}: "
                f"expected {table.name}.parquet or {table.name}.csv."
            )
        return path, land_file(con, path, table, replace=True)
    if source.is_flat:
        if table is not CUSTOMERS:
            create_empty_raw(con, table)
            return None, 0
        return source.flat.path, land_flat(con, source.flat.path)
    if source.is_event_log:
        return eventlog.land_event_log_table(con, source, table)
    mapped = source.tables[table.name]
    return mapped.path, land_file(con, mapped.path, table, replace=True, renames=mapped.columns)


@dataclass(frozen=True)
class Staged:
    """What staging one table did, and what it decided on the way."""

    result: StagingResult
    key: str
    """The staged table's key, as SQL (for the uniqueness check)."""
    inferred: list[InferredColumn] | None = None
    """Column decisions of a flat table or an event log's customers table."""
    time_formats: dict[str, str] = field(default_factory=dict)
    """column -> how its times were read (an event log's detected formats, with why)."""


def stage(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig | None,
    table: Table,
    flat_observation_date: date | None,
    engine: Engine | None = None,
) -> Staged:
    """Rebuild ``stg_<table>`` and its rejects for the source's layout, the staging SQL run by
    ``engine`` (DuckDB in the warehouse when None)."""
    key = ", ".join(table.key)
    if source is not None and source.is_flat and table is CUSTOMERS:
        result, inferred = stage_flat(con, source.flat, flat_observation_date, engine)
        return Staged(result, "customer_id, observation_date", inferred)
    if source is not None and source.is_event_log:
        if table is CUSTOMERS:
            result, inferred, time = eventlog.stage_customers(con, source, engine)
            formats = {"signup_date": f"{time.kind} ({time.reason})"} if time else {}
            return Staged(result, "customer_id", inferred, formats)
        if table is EVENTS:
            result, time = eventlog.stage_events(con, source, engine)
            return Staged(result, key, None, {"event_time": f"{time.kind} ({time.reason})"})
        if table is CANCELLATIONS:
            result, time = eventlog.stage_cancellations(con, source, engine)
            formats = {"cancel_date": f"{time.kind} ({time.reason})"} if time else {}
            return Staged(result, key, None, formats)
    return Staged(stage_table(con, table, engine), key)
