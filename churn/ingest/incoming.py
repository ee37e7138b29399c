"""Files dropped into ``$CHURN_HOME/incoming/``: which table, whether they are fit to land, and
landing each exactly once.

Validation reads only the file (an in-memory DuckDB), never the warehouse, so the sensor that
calls it can run while a pipeline holds the warehouse's write lock. A file is accepted only if
every value can be stored in the raw table's column type: the raw tables landed from Parquet are
typed, and appending a CSV (read as text) relies on those casts succeeding. Row-level business
rules (ranges, allowed values, unknown customers) stay in staging, which rejects rows with reasons.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb

from churn.ingest.landing import (
    SUPPORTED_SUFFIXES,
    SourceFileError,
    file_columns,
    land_file,
    read_expression,
)
from churn.ingest.schema import RAW_TABLES, TABLES_BY_NAME, Table
from churn.warehouse import transaction

REASON_SUFFIX = ".reason.txt"


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_for(path: Path) -> Table | None:
    """``payments.csv`` or ``payments_2025-10.parquet`` -> the payments table; else None."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    for table in sorted(RAW_TABLES, key=lambda t: -len(t.name)):
        if stem == table.name or stem.startswith(f"{table.name}_"):
            return table
    return None


def candidate_files(folder: Path) -> list[Path]:
    """Regular files directly in ``folder``, excluding hidden and partial (``.part``) ones."""
    if not folder.exists():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".part", ".tmp"))
    )


def validate_file(path: Path) -> Table:
    """The table ``path`` lands in, or :class:`SourceFileError` saying why it cannot land."""
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise SourceFileError(
            f"{path.name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})"
        )
    table = table_for(path)
    if table is None:
        known = ", ".join(sorted(TABLES_BY_NAME))
        raise SourceFileError(
            f"{path.name}: not a known table; name files <table>.csv|parquet or "
            f"<table>_<anything>.csv|parquet with <table> one of {known}"
        )
    con = duckdb.connect()
    try:
        present = set(file_columns(con, path))
        missing = [name for name in table.column_names if name not in present]
        if missing and path.suffix == ".csv" and _header_complete(path, table):
            raise SourceFileError(
                f"{path.name}: cannot be read as CSV: its header has every column but the rows "
                "do not parse consistently (truncated file or stray delimiters)"
            )
        if missing:
            raise SourceFileError(
                f"{path.name}: missing column(s) {', '.join(missing)} required by table "
                f"'{table.name}' (expected: {', '.join(table.column_names)})"
            )
        source = read_expression(path)
        try:
            rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        except duckdb.Error as error:
            raise SourceFileError(f"{path.name}: cannot be read ({error})") from error
        if rows == 0:
            raise SourceFileError(f"{path.name}: no rows")
        _check_types(con, path, table, source)
        _check_keys(con, path, table, source)
    finally:
        con.close()
    return table


def _header_complete(path: Path, table: Table) -> bool:
    """Whether the first line names every column: then a parse failure means broken rows."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        header = {name.strip().strip('"') for name in handle.readline().split(",")}
    return all(name in header for name in table.column_names)


def _check_types(con: duckdb.DuckDBPyConnection, path: Path, table: Table, source: str) -> None:
    typed = [c for c in table.columns if c.sql_type != "VARCHAR"]
    if not typed:
        return
    text = {c.name: f"nullif(trim(CAST(\"{c.name}\" AS VARCHAR)), '')" for c in typed}
    counts = con.execute(
        "SELECT "
        + ", ".join(
            f"count(*) FILTER (WHERE {text[c.name]} IS NOT NULL "
            f"AND TRY_CAST({text[c.name]} AS {c.sql_type}) IS NULL)"
            for c in typed
        )
        + f" FROM {source}"
    ).fetchone()
    wrong = {c.name: (c.sql_type, n) for c, n in zip(typed, counts, strict=True) if n}
    if wrong:
        details = "; ".join(f"{name}: {n} value(s) not {kind}" for name, (kind, n) in wrong.items())
        raise SourceFileError(f"{path.name}: wrong types ({details})")


def _check_keys(con: duckdb.DuckDBPyConnection, path: Path, table: Table, source: str) -> None:
    key = ", ".join(f'"{name}"' for name in table.key)
    duplicated = con.execute(
        f"SELECT count(*) FROM (SELECT {key} FROM {source} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]
    if duplicated:
        raise SourceFileError(
            f"{path.name}: {duplicated} duplicate key value(s) in ({', '.join(table.key)})"
        )


def quarantine(path: Path, reason: str, folder: Path) -> Path:
    """Move ``path`` into ``folder`` with a ``<name>.reason.txt`` beside it; return new path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{content_hash(path)[:12]}_{path.name}"
    shutil.move(str(path), target)
    (folder / f"{target.name}{REASON_SUFFIX}").write_text(reason.rstrip() + "\n")
    return target


LANDED_TABLE = "raw_landed_files"
LANDED_DDL = f"""
CREATE TABLE IF NOT EXISTS {LANDED_TABLE} (
    file_name VARCHAR, table_name VARCHAR, content_sha256 VARCHAR PRIMARY KEY, rows BIGINT,
    landed_at TIMESTAMPTZ, archived_path VARCHAR
)
"""
"""Every file accepted from ``incoming/``: its content hash is recorded in the same transaction
as its rows, so a file is landed exactly once however often it is dropped or a run retried."""


def append_incoming(
    con: duckdb.DuckDBPyConnection, path: Path, landed_dir: Path
) -> tuple[str, int] | None:
    """Append one incoming file to its raw table exactly once and archive it.

    Returns (table, rows), or None when a file with the same content was landed before (the
    file is then archived without loading it again).
    """
    table = table_for(path)
    if table is None:
        raise SourceFileError(f"{path.name}: not a known table")
    digest = content_hash(path)
    con.execute(LANDED_DDL)
    landed_dir.mkdir(parents=True, exist_ok=True)
    archived = landed_dir / f"{digest[:12]}_{path.name}"
    seen = con.execute(
        f"SELECT count(*) FROM {LANDED_TABLE} WHERE content_sha256 = ?", [digest]
    ).fetchone()[0]
    if seen:
        shutil.move(str(path), archived)
        return None
    shutil.copy2(path, archived)  # land from the archive: its name is unique per content
    with transaction(con):
        rows = land_file(con, archived, table, replace=False)
        con.execute(
            f"INSERT INTO {LANDED_TABLE} VALUES (?, ?, ?, ?, now(), ?)",
            [path.name, table.name, digest, rows, str(archived)],
        )
    path.unlink()
    return table.name, rows


def replay_landed(
    con: duckdb.DuckDBPyConnection, log: Callable[[str], None], warn: Callable[[str], None]
) -> None:
    """After a full reload, re-append every file accepted from ``incoming/`` before, in order."""
    con.execute(LANDED_DDL)
    landed = con.execute(
        f"SELECT table_name, archived_path FROM {LANDED_TABLE} ORDER BY landed_at"
    ).fetchall()
    for table_name, archived in landed:
        path = Path(archived)
        if not path.exists():
            warn(f"archived incoming file {path} is gone; not replayed")
            continue
        rows = land_file(con, path, TABLES_BY_NAME[table_name], replace=False)
        log(f"raw_{table_name}: replayed {rows:,} rows from {path.name}")
