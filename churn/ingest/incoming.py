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
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb

from churn.ingest.landing import (
    SUPPORTED_SUFFIXES,
    SourceFileError,
    file_columns,
    land_file,
    plain_path,
    read_expression,
)
from churn.ingest.schema import RAW_TABLES, TABLES_BY_NAME, Table
from churn.ingest.values import unparsable
from churn.sql import quote_identifier
from churn.warehouse import transaction

REASON_SUFFIX = ".reason.txt"


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Lander = Callable[[duckdb.DuckDBPyConnection, Path, Table, str], int]
"""Appends one validated file to its raw table: (connection, file, table, recorded file name)
-> rows. The default is the contract's typed append (with a source's renames); an event log
brings its own (its mapping, whole-row event ids)."""
Renames = Mapping[str, Mapping[str, str]]
"""table name -> (contract column -> the file's column): a mapped source's own column names
(its YAML's ``columns:``), so its incoming files look like its own files."""


def table_for(path: Path) -> Table | None:
    """``incoming/payments/<any name>``, ``payments.csv`` or ``payments_2025-10.parquet`` -> the
    payments table; else None."""
    if path.parent.name in TABLES_BY_NAME:
        return TABLES_BY_NAME[path.parent.name]
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    for table in sorted(RAW_TABLES, key=lambda t: -len(t.name)):
        if stem == table.name or stem.startswith(f"{table.name}_"):
            return table
    return None


def candidate_files(folder: Path) -> list[Path]:
    """Regular files in ``folder`` and in its ``<table>/`` subfolders, excluding hidden and
    partial (``.part``) ones."""
    if not folder.exists():
        return []
    folders = [folder] + [
        folder / name for name in sorted(TABLES_BY_NAME) if (folder / name).is_dir()
    ]
    return sorted(
        p
        for where in folders
        for p in where.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".part", ".tmp"))
    )


def validate_file(path: Path, *, contents: bool = True, renames: Renames | None = None) -> Table:
    """The table ``path`` lands in, or :class:`SourceFileError` saying why it cannot land.

    ``renames`` are the source's own column names per table (a five-table config's mapping):
    its files are checked, and later landed, under those names.

    The cheap checks (suffix, table name, header) read a few kilobytes. ``contents`` adds the
    full read: row count, every value against its column's type by the rule landing applies
    (:mod:`churn.ingest.values`), duplicate keys. The sensor does the full read only for small
    files; the landing run always does it, so every landed file passed the same checks.
    """
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise SourceFileError(
            f"{path.name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})"
        )
    table = table_for(path)
    if table is None:
        known = ", ".join(sorted(TABLES_BY_NAME))
        raise SourceFileError(
            f"{path.name}: not a known table; put files in incoming/<table>/ or name them "
            f"<table>.csv|parquet or <table>_<anything>.csv|parquet with <table> one of {known}"
        )
    with plain_path(path) as readable:
        _check_contents(readable, table, contents, dict((renames or {}).get(table.name, {})))
    return table


def _check_contents(path: Path, table: Table, contents: bool, renames: dict[str, str]) -> None:
    """The header, and with ``contents`` every value and key, of the file at ``path`` (its
    columns named as ``renames`` says)."""
    con = duckdb.connect()
    try:
        present = set(file_columns(con, path))
        names = [renames.get(name, name) for name in table.column_names]
        missing = [name for name in names if name not in present]
        if missing and path.suffix == ".csv" and _header_complete(path, names):
            raise SourceFileError(
                f"{path.name}: cannot be read as CSV: its header has every column but the rows "
                "do not parse consistently (truncated file or stray delimiters)"
            )
        if missing:
            raise SourceFileError(
                f"{path.name}: missing column(s) {', '.join(missing)} required by table "
                f"'{table.name}' (expected: {', '.join(names)})"
            )
        if not contents:
            return
        source = read_expression(path)
        try:
            rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        except duckdb.Error as error:
            raise SourceFileError(f"{path.name}: cannot be read ({error})") from error
        if rows == 0:
            raise SourceFileError(f"{path.name}: no rows")
        _check_types(con, path, table, source, renames)
        _check_keys(con, path, table, source, renames)
    finally:
        con.close()


def _header_complete(path: Path, names: list[str]) -> bool:
    """Whether the first line names every column: then a parse failure means broken rows."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        header = {name.strip().strip('"') for name in handle.readline().split(",")}
    return all(name in header for name in names)


def _check_types(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: Table,
    source: str,
    renames: dict[str, str],
) -> None:
    typed = [c for c in table.columns if c.sql_type != "VARCHAR"]
    if not typed:
        return
    counts = con.execute(
        "SELECT "
        + ", ".join(
            f"count(*) FILTER (WHERE "
            f"{unparsable(quote_identifier(renames.get(c.name, c.name)), c.sql_type)})"
            for c in typed
        )
        + f" FROM {source}"
    ).fetchone()
    wrong = {
        renames.get(c.name, c.name): (c.sql_type, n)
        for c, n in zip(typed, counts, strict=True)
        if n
    }
    if wrong:
        details = "; ".join(f"{name}: {n} value(s) not {kind}" for name, (kind, n) in wrong.items())
        raise SourceFileError(f"{path.name}: wrong types ({details})")


def _check_keys(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: Table,
    source: str,
    renames: dict[str, str],
) -> None:
    names = [renames.get(name, name) for name in table.key]
    key = ", ".join(quote_identifier(name) for name in names)
    duplicated = con.execute(
        f"SELECT count(*) FROM (SELECT {key} FROM {source} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]
    if duplicated:
        raise SourceFileError(
            f"{path.name}: {duplicated} duplicate key value(s) in ({', '.join(names)})"
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
    con: duckdb.DuckDBPyConnection,
    path: Path,
    landed_dir: Path,
    renames: Renames | None = None,
    *,
    validate: Callable[[Path], Table] | None = None,
    land: Lander | None = None,
) -> tuple[str, int] | None:
    """Validate one incoming file, append it to its raw table exactly once and archive it.

    Returns (table, rows), or None when a file with the same content was landed before (the
    file is then archived without loading it again). A file that fails validation or landing
    raises :class:`SourceFileError` and leaves no trace: no rows, no hash, no archive copy.

    The archive copy gets its final name only after the transaction committed: the sensor
    takes an archived copy for "already ingested", so a copy of a file that did not land
    would make the sensor quarantine it with a false reason.

    ``validate`` and ``land`` replace the contract's checks and append for a source whose files
    follow their own shape (an event log).
    """
    table = validate(path) if validate is not None else validate_file(path, renames=renames)
    land = land or _contract_lander(renames)
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
    pending = landed_dir / f".pending_{archived.name}"  # hidden: not a landed file yet
    shutil.copy2(path, pending)  # land from the copy: the user may touch the original
    landed = False
    try:
        with transaction(con):
            rows = land(con, pending, table, archived.name)
            con.execute(
                f"INSERT INTO {LANDED_TABLE} VALUES (?, ?, ?, ?, now(), ?)",
                [path.name, table.name, digest, rows, str(archived)],
            )
        landed = True
    finally:
        if not landed:
            pending.unlink(missing_ok=True)
    pending.replace(archived)
    path.unlink()
    return table.name, rows


def _contract_lander(renames: Renames | None) -> Lander:
    def land(con: duckdb.DuckDBPyConnection, path: Path, table: Table, name: str) -> int:
        table_renames = (renames or {}).get(table.name)
        return land_file(con, path, table, replace=False, renames=table_renames, source_name=name)

    return land


def redelivered_name(raw_table: str) -> str:
    """Where :func:`set_aside_redelivered` keeps the rows it took out of ``raw_table``."""
    return f"{raw_table}_redelivered"


def set_aside_redelivered(
    con: duckdb.DuckDBPyConnection, raw_table: str, key: str, source_file: str
) -> int:
    """Move the rows just appended from ``source_file`` whose ``key`` an earlier file already
    delivered out of ``raw_table`` into :func:`redelivered_name`; return how many.

    Why at landing: a feed that re-sends events (a retried export, overlapping windows) must
    not count them twice, and the first delivery is the one already staged, scored and
    learned from; staging keeps the newest version of a key, so the later copy would
    otherwise replace it. The rows are kept aside, as they arrived, not lost. Runs inside the
    caller's transaction (the file's landing)."""
    raw, aside, column = (
        quote_identifier(n) for n in (raw_table, redelivered_name(raw_table), key)
    )
    con.execute(f"CREATE TABLE IF NOT EXISTS {aside} AS SELECT * FROM {raw} LIMIT 0")
    repeated = (
        f"_source_file = ? AND {column} IN (SELECT {column} FROM {raw} "
        f"WHERE _source_file <> ? AND {column} IS NOT NULL)"
    )
    con.execute(
        f"INSERT INTO {aside} BY NAME SELECT * FROM {raw} WHERE {repeated}", [source_file] * 2
    )
    return con.execute(f"DELETE FROM {raw} WHERE {repeated}", [source_file] * 2).fetchone()[0]


def replay_landed(
    con: duckdb.DuckDBPyConnection,
    log: Callable[[str], None],
    warn: Callable[[str], None],
    renames: Renames | None = None,
    land: Lander | None = None,
    keep: Callable[[str], bool] | None = None,
) -> None:
    """After a full reload, re-append every file accepted from ``incoming/`` before, in order.

    ``keep`` (archived file name -> replay it?) lets a source replay only the files it landed
    itself, when the same home held another source before."""
    con.execute(LANDED_DDL)
    landed = con.execute(
        f"SELECT table_name, archived_path FROM {LANDED_TABLE} ORDER BY landed_at"
    ).fetchall()
    for table_name, archived in landed:
        path = Path(archived)
        if keep is not None and not keep(path.name):
            log(f"{path.name}: landed for another source; not replayed")
            continue
        if not path.exists():
            warn(f"archived incoming file {path} is gone; not replayed")
            continue
        rows = (land or _contract_lander(renames))(con, path, TABLES_BY_NAME[table_name], path.name)
        log(f"raw_{table_name}: replayed {rows:,} rows from {path.name}")
