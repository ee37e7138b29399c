"""Metadata a data engineer wants on every table: size, schema with descriptions, a preview."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import duckdb

from churn.sql import quote_identifier


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


def preview(con: duckdb.DuckDBPyConnection, query: str, limit: int = 10) -> dg.MetadataValue:
    relation = con.sql(f"SELECT * FROM ({query}) LIMIT {int(limit)}")
    return dg.MetadataValue.md(markdown_table(relation.columns, relation.fetchall()))


def table_metadata(
    con: duckdb.DuckDBPyConnection,
    table: str,
    descriptions: Mapping[str, str],
    *,
    where: str = "TRUE",
) -> dict[str, Any]:
    """Row count, schema and a preview of ``table`` (optionally of the rows just written).

    ``where`` is SQL written by the calling asset from its partition window (see
    ``_in_window``), never from data; the table name is quoted."""
    quoted = quote_identifier(table)
    rows = con.execute(f"SELECT count(*) FROM {quoted} WHERE {where}").fetchone()[0]
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(con, table, descriptions),
        "dagster/table_name": f"warehouse.main.{table}",
        "preview": preview(con, f"SELECT * FROM {quoted} WHERE {where}"),
    }
