"""Metadata a data engineer wants on every table: size, schema with descriptions, a preview.

What the Dagster UI (1.13) shows inline: numbers, text, and ``MetadataValue.table`` (always
rendered as a table). Markdown and JSON are inline only when short (under 1,000 characters) and
otherwise sit behind "[Show Markdown]" / "[Show JSON]"; there is no image type. So tabular
figures go out as tables (:func:`table_value`), and JSON is made strict (:func:`json_safe`):
a NaN in a JSON or table value is not JSON, and the UI cannot parse it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import duckdb

from churn.modeling.card import json_safe
from churn.sources.base import add_months
from churn.sql import quote_identifier
from churn_assets.partitions import partition_window


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A small markdown table; avoids pulling ``tabulate`` in just for previews."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def column_schema(
    con: duckdb.DuckDBPyConnection, table: str, descriptions: Mapping[str, str]
) -> dg.TableSchema:
    described = con.execute(f"DESCRIBE {quote_identifier(table)}").fetchall()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(sql_type), description=descriptions.get(name))
            for name, sql_type, *_ in described
        ]
    )


def _cell(value: Any) -> str | int | float | bool | None:
    value = json_safe(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, 4)
    return str(value)


def _column_type(values: Sequence[Any]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {int}:
        return "int"
    if kinds and kinds <= {int, float}:
        return "float"
    if kinds == {bool}:
        return "bool"
    return "string"


def table_value(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dg.MetadataValue:
    """A table the Dagster UI renders inline (floats to 4 decimals, NaN as null)."""
    cells = [[_cell(v) for v in row] for row in rows]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=_column_type([row[i] for row in cells]))
            for i, name in enumerate(columns)
        ]
    )
    records = [dg.TableRecord(dict(zip(columns, row, strict=True))) for row in cells]
    return dg.MetadataValue.table(records=records, schema=schema)


def preview(con: duckdb.DuckDBPyConnection, query: str, limit: int = 10) -> dg.MetadataValue:
    relation = con.sql(f"SELECT * FROM ({query}) LIMIT {int(limit)}")
    return table_value(relation.columns, relation.fetchall())


PARTITION_COLUMN = "observation_date"
"""The column every time-partitioned table of the warehouse is partitioned by (the monthly
observation partitions of ``customer_snapshots``, ``customer_features``, ``churn_labels``)."""


def _rows_per_partition(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Give each partition of a multi-partition run its own ``dagster/row_count``.

    A single-run backfill materializes a range of partitions in one step, and Dagster copies the
    step's metadata onto every partition's materialization; without this each month would show
    the whole range's count. Partition-scoped metadata (``add_asset_metadata(partition_key=)``)
    overrides it, month by month. Outside a partitioned Dagster step this does nothing.
    """
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return
    partitions = context.assets_def.partitions_def
    if partitions is None:
        return  # first: an unpartitioned asset in a run tagged with a range has no keys
    if not context.has_partition_key_range:
        return
    keys = context.partition_keys
    if len(keys) < 2:
        return
    first, last = partition_window(context)
    column = quote_identifier(PARTITION_COLUMN)
    counts = dict(
        con.execute(
            f"SELECT {column}, count(*) FROM {quote_identifier(table)} "
            f"WHERE {column} >= ? AND {column} < ? GROUP BY 1",
            [first, last],
        ).fetchall()
    )
    for key in keys:
        start = dt.date.fromisoformat(key)
        end = add_months(start, 1)
        rows = sum(n for day, n in counts.items() if start <= _as_date(day) < end)
        context.add_asset_metadata({"dagster/row_count": rows}, partition_key=key)


def _as_date(value: Any) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def table_metadata(
    con: duckdb.DuckDBPyConnection,
    table: str,
    descriptions: Mapping[str, str],
    *,
    where: str = "TRUE",
) -> dict[str, Any]:
    """Row count, schema and a preview of ``table`` (optionally of the rows just written).

    In a run over several partitions, each partition's materialization gets its own row count
    (see :func:`_rows_per_partition`); ``dagster/row_count`` here is the whole range's.

    ``where`` is SQL written by the calling asset from its partition window (see
    ``_in_window``), never from data; the table name is quoted.
    """
    quoted = quote_identifier(table)
    rows = con.execute(f"SELECT count(*) FROM {quoted} WHERE {where}").fetchone()[0]
    _rows_per_partition(con, table)
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(con, table, descriptions),
        "dagster/table_name": f"warehouse.main.{table}",
        "preview": preview(con, f"SELECT * FROM {quoted} WHERE {where}"),
    }


# --- customer_scores: what the retention side of the UI reads ---------------------------------

TIER_ORDER = ("high", "medium", "low")
"""Riskiest first, as a reader scans them (alphabetical order would put low before medium)."""

MOVED = ("new_high", "up", "down")
"""The tier changes that count as a customer having moved since last month."""


def _tier_rank(tier: str) -> int:
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)


def tier_table(counts: Mapping[str, int]) -> dg.MetadataValue:
    """Customers per risk tier, high to low, with each tier's share (a table, not JSON)."""
    total = sum(counts.values())
    rows = [
        [tier, f"{counts.get(tier, 0):,}", f"{counts.get(tier, 0) / total:.1%}" if total else ""]
        for tier in sorted(counts, key=_tier_rank)
    ]
    return dg.MetadataValue.md(markdown_table(["risk_tier", "customers", "share"], rows))


def tiers_per_month_table(rows: Sequence[Sequence[Any]]) -> dg.MetadataValue:
    """(observation_date, risk_tier, customers, labelled 1, mean p) rows, month by month with
    the tiers high to low and the mean probability rounded to three places."""
    ordered = sorted(rows, key=lambda row: (str(row[0]), _tier_rank(row[1])))
    cells = [
        [day, tier, f"{n:,}", f"{int(k or 0):,}", f"{p:.3f}"] for day, tier, n, k, p in ordered
    ]
    columns = ["observation_date", "risk_tier", "customers", "churn_label = 1", "mean p"]
    return dg.MetadataValue.md(markdown_table(columns, cells))


def thresholds_table(decision: float, cuts: Sequence[float]) -> dg.MetadataValue:
    """The decision threshold and the tier cut points, as probabilities to four places."""
    rows = [
        ["decision threshold (churn_label = 1, tier high)", f"{decision:.4f}"],
        ["low | medium cut", f"{cuts[0]:.4f}"],
        ["medium | high cut", f"{cuts[1]:.4f}"],
    ]
    return dg.MetadataValue.md(markdown_table(["threshold", "probability"], rows))


def moved_count(changes: Sequence[Sequence[Any]]) -> int:
    """Customers whose tier changed since last month, from (tier_change, customers, ...) rows
    (``new`` customers had no tier last month, so they did not move)."""
    return int(sum(row[1] for row in changes if row[0] in MOVED))
