"""Landing source files into ``raw_*`` tables as they are, with their provenance.

Raw tables keep the file's own values (CSV as text, Parquet as typed) so that staging, not the
loader, decides what is valid and every rejected row can be shown exactly as it arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb

from churn.ingest.schema import Table
from churn.ingest.staging import raw_name

SUPPORTED_SUFFIXES = (".parquet", ".csv")
"""What ``incoming/`` and the synthetic folder hold; a source config may also name JSON Lines."""


class SourceFileError(ValueError):
    """A source file that cannot be landed; the message names the file and what is wrong."""


def find_source_file(folder: Path, table: Table) -> Path | None:
    """``<table>.parquet`` or ``<table>.csv`` in ``folder``, Parquet preferred."""
    for suffix in SUPPORTED_SUFFIXES:
        candidate = folder / f"{table.name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def read_expression(path: Path) -> str:
    """A DuckDB relation over the file: CSV read as text so no value is coerced on the way in."""
    quoted = "'" + str(path).replace("'", "''") + "'"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return f"read_csv({quoted}, header = true, all_varchar = true)"
    if suffix == ".parquet":
        return f"read_parquet({quoted})"
    if suffix == ".jsonl":  # JSON Lines: one object per line, values typed as JSON types them
        return f"read_json({quoted}, format = 'newline_delimited')"
    if suffix == ".json":  # an array of objects or JSON Lines: DuckDB tells them apart
        return f"read_json({quoted}, format = 'auto')"
    raise SourceFileError(
        f"{path.name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)}, .jsonl, .json)"
    )


def file_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        return [
            row[0]
            for row in con.execute(f"DESCRIBE SELECT * FROM {read_expression(path)}").fetchall()
        ]
    except duckdb.Error as error:
        raise SourceFileError(f"{path.name}: cannot be read ({error})") from error


def missing_columns(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: Table,
    renames: Mapping[str, str] | None = None,
) -> list[str]:
    present = set(file_columns(con, path))
    renames = renames or {}
    return [
        renames.get(name, name)
        for name in table.column_names
        if renames.get(name, name) not in present
    ]


def select_from_file(path: Path, table: Table, renames: Mapping[str, str] | None = None) -> str:
    """The schema's columns from the file plus load time and source file name; ``renames``
    maps a contract column to the file's own name for it (a user's events source)."""
    renames = renames or {}
    columns = ", ".join(f'"{renames.get(name, name)}" AS "{name}"' for name in table.column_names)
    source = "'" + path.name.replace("'", "''") + "'"
    return (
        f"SELECT {columns}, now() AS _loaded_at, {source} AS _source_file "
        f"FROM {read_expression(path)}"
    )


def land_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: Table,
    *,
    replace: bool,
    renames: Mapping[str, str] | None = None,
) -> int:
    """Load one file into ``raw_<table>`` (replacing or appending) and return its row count."""
    missing = missing_columns(con, path, table, renames)
    if missing:
        expected = [(renames or {}).get(name, name) for name in table.column_names]
        raise SourceFileError(
            f"{path.name}: missing column(s) {', '.join(missing)} required by table "
            f"'{table.name}' (expected: {', '.join(expected)})"
        )
    target = raw_name(table)
    select = select_from_file(path, table, renames)
    try:
        if replace:
            con.execute(f"CREATE OR REPLACE TABLE {target} AS {select}")
        else:
            con.execute(f"INSERT INTO {target} BY NAME {select}")
    except duckdb.Error as error:
        raise SourceFileError(f"{path.name}: cannot be loaded into {target} ({error})") from error
    return con.execute(
        f"SELECT count(*) FROM {target} WHERE _source_file = ?", [path.name]
    ).fetchone()[0]


def land_flat(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """A flat customer table into ``raw_customers`` with *all* its columns, as they arrived."""
    source = "'" + path.name.replace("'", "''") + "'"
    try:
        con.execute(
            "CREATE OR REPLACE TABLE raw_customers AS SELECT *, now() AS _loaded_at, "
            f"{source} AS _source_file FROM {read_expression(path)}"
        )
    except duckdb.Error as error:
        raise SourceFileError(f"{path.name}: cannot be loaded ({error})") from error
    return con.execute("SELECT count(*) FROM raw_customers").fetchone()[0]


def create_empty_raw(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """An empty ``raw_<table>`` with the contract's typed columns: a flat source has no events,
    payments, tickets or cancellations, and the graph stays whole (staging stages zero rows)."""
    columns = ", ".join(f'"{c.name}" {c.sql_type}' for c in table.columns)
    con.execute(
        f"CREATE OR REPLACE TABLE {raw_name(table)} ({columns}, _loaded_at TIMESTAMPTZ, "
        "_source_file VARCHAR)"
    )
