"""Landing source files into ``raw_*`` tables as they are, with their provenance.

Raw tables keep the file's own values (CSV as text, Parquet as typed) so that staging, not the
loader, decides what is valid and every rejected row can be shown exactly as it arrived.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import duckdb

from churn.ingest.schema import Table
from churn.ingest.staging import raw_name
from churn.ingest.values import converted, is_json, json_text
from churn.sql import quote_identifier, quote_literal, quote_path

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


GLOB_CHARACTERS = frozenset("*?[\\")
ALIAS_STEM = "churn-glob-free-alias"


@contextmanager
def plain_path(path: Path) -> Iterator[Path]:
    """``path``, or a symlink to it with a plain name when its path holds glob characters.

    ``read_csv``/``read_parquet`` expand ``*``, ``?`` and ``[...]`` in a path, and a backslash
    next to them cannot be escaped at all: a file named ``customers_*.csv`` would read every
    customers file, ``customers_?\\.csv`` none. Such a file is read through a link with a plain
    name in a temp folder; ``_source_file`` and error messages keep the real name.
    """
    if not GLOB_CHARACTERS & set(str(path)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="churn-read-") as folder:
        alias = Path(folder) / f"{ALIAS_STEM}{path.suffix}"
        alias.symlink_to(path.resolve())
        try:
            yield alias
        except SourceFileError as error:  # the user needs the real name in the reason
            raise SourceFileError(str(error).replace(alias.name, path.name)) from error


def read_expression(path: Path) -> str:
    """A DuckDB relation over the file: CSV read as text so no value is coerced on the way in."""
    quoted = quote_path(path)
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


DATA_ERRORS = (
    duckdb.DataError,
    duckdb.InvalidInputException,
    duckdb.BinderException,
    duckdb.ParserException,
)
"""What a file's own content can cause (unparsable values, broken CSV, missing columns): the
file is at fault and is quarantined. Any other error (a held or full disk, a lost lock) is the
run's, and the file is retried."""


def file_types(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    """Each column of the file and the type DuckDB reads it as (all VARCHAR for a CSV).

    A 0-byte file is refused as empty: DuckDB reads it as one column ``column0``, and the
    user was told their file "has: column0"."""
    try:
        empty = path.stat().st_size == 0
    except OSError as error:
        raise SourceFileError(f"{path.name}: cannot be read ({error})") from error
    if empty:
        raise SourceFileError(f"{path.name}: empty file (0 bytes)")
    try:
        return {
            row[0]: str(row[1])
            for row in con.execute(f"DESCRIBE SELECT * FROM {read_expression(path)}").fetchall()
        }
    except duckdb.Error as error:
        raise SourceFileError(f"{path.name}: cannot be read ({error})") from error


def file_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    return list(file_types(con, path))


def landed_value(column: str, arrived_type: str) -> str:
    """SQL of a file column as it lands: as it arrived, except a ``JSON`` column (DuckDB's type
    for a JSON column whose values disagree, such as one number among string ids), which lands
    as the text of each value: ``C15``, not ``"C15"`` (that never joined), and ``15``."""
    name = quote_identifier(column)
    return json_text(name) if is_json(arrived_type) else name


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


def select_from_file(
    path: Path,
    table: Table,
    renames: Mapping[str, str] | None = None,
    *,
    arrived_types: Mapping[str, str] | None = None,
    target_types: Mapping[str, str] | None = None,
    source_name: str | None = None,
) -> str:
    """The schema's columns from the file plus load time and source file name; ``renames``
    maps a contract column to the file's own name for it (a user's events source).

    With ``target_types`` (appending to an existing raw table), each column is converted to
    the target's type by the same rule validation applied (:mod:`churn.ingest.values`): blanks
    are missing and offsets become UTC, so a file that validated always appends."""
    renames = renames or {}
    arrived_types = arrived_types or {}
    target_types = target_types or {}
    selected = []
    for name in table.column_names:
        file_column = renames.get(name, name)
        expression = quote_identifier(file_column)
        if name in target_types:
            arrived = arrived_types.get(file_column, "VARCHAR")
            expression = converted(expression, arrived, target_types[name])
        selected.append(f"{expression} AS {quote_identifier(name)}")
    source = quote_literal(source_name or path.name)
    return (
        f"SELECT {', '.join(selected)}, now() AS _loaded_at, {source} AS _source_file "
        f"FROM {read_expression(path)}"
    )


def land_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: Table,
    *,
    replace: bool,
    renames: Mapping[str, str] | None = None,
    source_name: str | None = None,
) -> int:
    """Load one file into ``raw_<table>`` (replacing or appending) and return its row count;
    ``source_name`` is recorded as ``_source_file`` (default: the file's name)."""
    with plain_path(path) as readable:
        return _land_file(con, readable, table, replace, renames, source_name or path.name)


def _land_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: Table,
    replace: bool,
    renames: Mapping[str, str] | None,
    source_name: str,
) -> int:
    missing = missing_columns(con, path, table, renames)
    if missing:
        expected = [(renames or {}).get(name, name) for name in table.column_names]
        raise SourceFileError(
            f"{path.name}: missing column(s) {', '.join(missing)} required by table "
            f"'{table.name}' (expected: {', '.join(expected)})"
        )
    target = raw_name(table)
    try:
        if replace:
            select = select_from_file(path, table, renames, source_name=source_name)
            con.execute(f"CREATE OR REPLACE TABLE {target} AS {select}")
        else:
            target_types = {
                name: str(kind) for name, kind, *_ in con.execute(f"DESCRIBE {target}").fetchall()
            }
            select = select_from_file(
                path,
                table,
                renames,
                arrived_types=file_types(con, path),
                target_types=target_types,
                source_name=source_name,
            )
            con.execute(f"INSERT INTO {target} BY NAME {select}")
    except DATA_ERRORS as error:
        raise SourceFileError(f"{path.name}: cannot be loaded into {target} ({error})") from error
    return con.execute(
        f"SELECT count(*) FROM {target} WHERE _source_file = ?", [source_name or path.name]
    ).fetchone()[0]


FLAT_RESERVED = frozenset({"_loaded_at", "_source_file", "reject_reason", "reject_rules"})
"""Columns landing and staging add to a flat table's own: DuckDB would silently rename one of
two equal names (``_loaded_at_1``), and lineage or reject reasons would read the user's data."""


def land_flat(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """A flat customer table into ``raw_customers`` with *all* its columns, as they arrived."""
    source = quote_literal(path.name)
    try:
        with plain_path(path) as readable:
            clashing = [c for c in file_columns(con, readable) if c.lower() in FLAT_RESERVED]
            if clashing:
                raise SourceFileError(
                    f"{path.name}: column(s) {', '.join(map(repr, clashing))} have names the "
                    f"pipeline writes next to yours ({', '.join(sorted(FLAT_RESERVED))}); "
                    "rename them in the file"
                )
            types = file_types(con, readable)
            columns = ", ".join(
                f"{landed_value(c, kind)} AS {quote_identifier(c)}" for c, kind in types.items()
            )
            con.execute(
                f"CREATE OR REPLACE TABLE raw_customers AS SELECT {columns}, now() AS _loaded_at, "
                f"{source} AS _source_file FROM {read_expression(readable)}"
            )
    except DATA_ERRORS as error:
        raise SourceFileError(f"{path.name}: cannot be loaded ({error})") from error
    return con.execute("SELECT count(*) FROM raw_customers").fetchone()[0]


def no_rows_warning(path: Path | None, rows: int) -> str | None:
    """What to tell the user when a source file landed no rows (a CSV with only its header):
    the run goes on, since an empty table is valid, but not silently."""
    if path is None or rows:
        return None
    return (
        f"{path.name}: 0 rows (the file has a header or schema and no rows); "
        "everything downstream of this table will be empty"
    )


def create_empty_raw(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """An empty ``raw_<table>`` with the contract's typed columns: an event log has no payments
    or tickets (and maybe no customers or cancellations), and its staging stages zero rows."""
    columns = ", ".join(f"{quote_identifier(c.name)} {c.sql_type}" for c in table.columns)
    con.execute(
        f"CREATE OR REPLACE TABLE {raw_name(table)} ({columns}, _loaded_at TIMESTAMPTZ, "
        "_source_file VARCHAR)"
    )
