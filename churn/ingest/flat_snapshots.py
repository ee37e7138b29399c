"""A flat table grows by snapshots: each file from ``incoming/customers/`` is the customer table
as of one date, appended to ``raw_customers`` and staged as that date's snapshot.

Why snapshots rather than appended rows: a flat table has no history, only "the customers as
they are now". A new export of it is the state at a new date, and its label column is the
outcome known at that date. So every file gets one snapshot date, by the rule
:func:`snapshot_date_rule` states (a date in the file name, else the config's ``time_column``
per row, else the month it lands in), recorded in ``flat_snapshot_files`` in the same transaction
as its rows: a replay after a full reload finds the same date, whatever day it runs. Staging keeps
for each date the rows of the newest file that has it (:func:`latest_files_relation`): a second
file for an already staged month replaces that month's snapshot as a whole, and the staging
metadata lists what was replaced (:func:`replaced_snapshots`).

Validation reads only the file and the config's own table (for its header and types), never the
warehouse, so the incoming sensor can run while a pipeline holds the write lock.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb

from churn.ingest.landing import (
    DATA_ERRORS,
    FLAT_RESERVED,
    SUPPORTED_SUFFIXES,
    SourceFileError,
    file_types,
    plain_path,
    read_expression,
)
from churn.ingest.values import unparsable
from churn.sources.config import FlatSource, Observation
from churn.sql import quote_identifier, quote_literal
from churn.warehouse import table_exists

SNAPSHOT_FILES = "flat_snapshot_files"
SNAPSHOT_FILES_DDL = f"""
CREATE TABLE IF NOT EXISTS {SNAPSHOT_FILES} (
    source_file VARCHAR PRIMARY KEY, snapshot_date DATE, date_rule VARCHAR, sequence BIGINT,
    rows BIGINT
)
"""
"""One row per landed incoming file of a flat table: the ``_source_file`` its raw rows carry,
the snapshot date they were given (NULL: each row's ``time_column``), why, and the landing
order (newest file wins a date). The config's own file has no row: sequence 0."""

FILE_DATE_COLUMN = "_churn_file_snapshot_date"
FILE_SEQUENCE_COLUMN = "_churn_file_sequence"
"""Columns :func:`latest_files_relation` adds to the raw rows for staging."""

_NAME_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?:-(\d{2}))?(?!\d)")


def date_in_name(name: str) -> date | None:
    """The month start of the last ``YYYY-MM`` or ``YYYY-MM-DD`` in a file name
    (``customers_2026-12-01.csv``, ``customers_2026-12.csv``), else None."""
    found = None
    for match in _NAME_DATE.finditer(name):
        year, month, day = (int(part) if part else 1 for part in match.groups())
        try:
            found = date(year, month, day).replace(day=1)
        except ValueError:
            continue  # not a date (a version number, say): look further
    return found


def snapshot_date_rule(name: str, source: FlatSource, today: date) -> tuple[date | None, str]:
    """(snapshot date, why) of a new file: the date in its name; else None when the config has
    a ``time_column`` (each row's own month); else the month it lands in by ``today``."""
    named = date_in_name(name)
    if named is not None:
        return named, "file name"
    if source.time_column:
        return None, f"time_column {source.time_column!r}"
    return today.replace(day=1), "landing month"


def check_snapshot_date(
    name: str, snapshot: date | None, observation: Observation | None, today: date
) -> None:
    """A snapshot date the calendar cannot hold: after the month in progress, or outside
    ``observation.start`` .. ``observation.end`` when the config sets them."""
    if snapshot is None:
        return
    current = today.replace(day=1)
    if snapshot > current:
        raise SourceFileError(
            f"{name}: snapshot date {snapshot} is after the month in progress ({current}, by "
            "CHURN_TODAY or the clock); the calendar cannot hold it"
        )
    if observation is not None and snapshot < observation.start:
        raise SourceFileError(
            f"{name}: snapshot date {snapshot} is before observation.start "
            f"{observation.start}; the calendar cannot hold it"
        )
    if observation is not None and observation.end is not None and snapshot > observation.end:
        raise SourceFileError(
            f"{name}: snapshot date {snapshot} is after observation.end {observation.end}; "
            "the calendar cannot hold it"
        )


def check_flat_file(path: Path, source: FlatSource, *, contents: bool = True) -> None:
    """Whether ``path`` can land as a snapshot of ``source``'s table, else
    :class:`SourceFileError` naming the file and the column at fault.

    Its columns must be the table's own (the config's file is the reference): the id and label
    columns (and ``time_column``) present, no column the table does not have, none of the names
    the pipeline adds. With ``contents``: rows present, every value storable in the raw
    column's type (a Parquet table is typed), each customer once per snapshot.
    """
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise SourceFileError(
            f"{path.name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})"
        )
    con = duckdb.connect()
    try:
        with plain_path(source.path) as reference:
            expected = file_types(con, reference)
        with plain_path(path) as readable:
            present = file_types(con, readable)
            _check_columns(path.name, source, list(present), expected)
            if contents:
                _check_rows(con, path.name, readable, source, present, expected)
    finally:
        con.close()


def _check_columns(
    name: str, source: FlatSource, present: list[str], expected: dict[str, str]
) -> None:
    clashing = [c for c in present if c.lower() in FLAT_RESERVED]
    if clashing:
        raise SourceFileError(
            f"{name}: column(s) {', '.join(map(repr, clashing))} have names the pipeline "
            f"writes next to yours ({', '.join(sorted(FLAT_RESERVED))}); rename them"
        )
    required = [("id_column", source.id_column), ("label.column", source.label_column)]
    if source.time_column:
        required.append(("time_column", source.time_column))
    missing = [f"{column!r} ({key})" for key, column in required if column not in present]
    if missing:
        raise SourceFileError(f"{name}: missing column(s) {', '.join(missing)}")
    unknown = [c for c in present if c not in expected]
    if unknown:
        raise SourceFileError(
            f"{name}: column(s) {', '.join(map(repr, unknown))} are not columns of "
            f"{source.path.name} (a snapshot has the table's own columns: "
            f"{', '.join(expected)})"
        )


def _check_rows(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    source: FlatSource,
    present: dict[str, str],
    expected: dict[str, str],
) -> None:
    relation = read_expression(path)
    try:
        rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    except duckdb.Error as error:
        raise SourceFileError(f"{name}: cannot be read ({error})") from error
    if rows == 0:
        raise SourceFileError(f"{name}: no rows")
    typed = [c for c in present if expected[c] != "VARCHAR" and present[c] != expected[c]]
    if typed:
        counts = con.execute(
            "SELECT "
            + ", ".join(
                f"count(*) FILTER (WHERE {unparsable(quote_identifier(c), expected[c])})"
                for c in typed
            )
            + f" FROM {relation}"
        ).fetchone()
        wrong = [
            f"{c}: {n} value(s) not {expected[c]}" for c, n in zip(typed, counts, strict=True) if n
        ]
        if wrong:
            raise SourceFileError(f"{name}: wrong types ({'; '.join(wrong)})")
    key = [source.id_column] + ([source.time_column] if source.time_column else [])
    grouped = ", ".join(quote_identifier(c) for c in key)
    duplicated = con.execute(
        f"SELECT count(*) FROM (SELECT {grouped} FROM {relation} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]
    if duplicated:
        raise SourceFileError(
            f"{name}: {duplicated} customer(s) appear more than once in ({', '.join(key)}); "
            "a snapshot holds each customer once"
        )


def recorded_date(con: duckdb.DuckDBPyConnection, source_file: str) -> tuple[bool, date | None]:
    """(recorded?, date) of a file landed before: a replay keeps the date it was given."""
    con.execute(SNAPSHOT_FILES_DDL)
    row = con.execute(
        f"SELECT snapshot_date FROM {SNAPSHOT_FILES} WHERE source_file = ?", [source_file]
    ).fetchone()
    return (row is not None, row[0] if row else None)


def landed_snapshot_files(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The incoming files landed as snapshots of a flat table (what a reload replays)."""
    con.execute(SNAPSHOT_FILES_DDL)
    return {row[0] for row in con.execute(f"SELECT source_file FROM {SNAPSHOT_FILES}").fetchall()}


def append_snapshot(
    con: duckdb.DuckDBPyConnection, path: Path, source: FlatSource, source_file: str, today: date
) -> int:
    """Append the file at ``path`` to ``raw_customers`` as ``source_file`` and record its
    snapshot date (a replay reuses the recorded one). Runs inside the caller's transaction."""
    known, snapshot = recorded_date(con, source_file)
    if not known:
        snapshot, rule = snapshot_date_rule(source_file, source, today)
        sequence = con.execute(
            f"SELECT coalesce(max(sequence), 0) + 1 FROM {SNAPSHOT_FILES}"
        ).fetchone()[0]
    lineage = f"now() AS _loaded_at, {quote_literal(source_file)} AS _source_file"
    try:
        with plain_path(path) as readable:
            rows = con.execute(
                f"INSERT INTO raw_customers BY NAME SELECT *, {lineage} "
                f"FROM {read_expression(readable)}"
            ).fetchone()[0]
    except DATA_ERRORS as error:
        raise SourceFileError(
            f"{path.name}: cannot be appended to raw_customers ({error})"
        ) from error
    if not known:
        con.execute(
            f"INSERT INTO {SNAPSHOT_FILES} VALUES (?, ?, ?, ?, ?)",
            [source_file, snapshot, rule, sequence, rows],
        )
    return rows


def _dated() -> str:
    """``raw_customers`` with each row's file date and landing order (0: the config's file)."""
    return (
        f"SELECT r.*, f.snapshot_date AS {FILE_DATE_COLUMN}, "
        f"coalesce(f.sequence, 0) AS {FILE_SEQUENCE_COLUMN} "
        f"FROM raw_customers r LEFT JOIN {SNAPSHOT_FILES} f ON f.source_file = r._source_file"
    )


def latest_files_relation(when: str) -> str:
    """``raw_customers`` rows of the newest file for each snapshot date, with the file's date
    (:data:`FILE_DATE_COLUMN`) and order (:data:`FILE_SEQUENCE_COLUMN`); ``when`` is the row's
    date when its file has none (the time column's month, or the config's one date).

    A date staged from an older file is replaced as a whole by a newer file's rows for it: a
    customer absent from the newer snapshot is absent from that date. Rows without a date
    (a broken time value) stay, for staging to reject with the reason."""
    day = f"coalesce({FILE_DATE_COLUMN}, {when})"
    return (
        f"SELECT * FROM (SELECT *, max({FILE_SEQUENCE_COLUMN}) OVER "
        f"(PARTITION BY {day}) AS _churn_newest_file FROM ({_dated()}) AS dated) AS ranked "
        f"WHERE {FILE_SEQUENCE_COLUMN} = _churn_newest_file OR {day} IS NULL"
    )


def replaced_snapshots(con: duckdb.DuckDBPyConnection, when: str) -> list[dict[str, object]]:
    """For each snapshot date held by more than one file: the file that won and the ones it
    replaced (what the staging metadata says)."""
    if not table_exists(con, SNAPSHOT_FILES):
        return []
    day = f"coalesce({FILE_DATE_COLUMN}, {when})"
    rows = con.execute(
        "SELECT day, list(source_file ORDER BY sequence DESC) FROM (SELECT DISTINCT "
        f"{day} AS day, _source_file AS source_file, {FILE_SEQUENCE_COLUMN} AS sequence "
        f"FROM ({_dated()}) AS dated) AS files WHERE day IS NOT NULL GROUP BY day "
        "HAVING count(*) > 1 ORDER BY day"
    ).fetchall()
    return [
        {"snapshot_date": str(day), "kept": files[0], "replaced": files[1:]} for day, files in rows
    ]


def snapshot_dates(con: duckdb.DuckDBPyConnection) -> list[date]:
    """The snapshot dates staged (``stg_customers``), in order; none before staging."""
    if not table_exists(con, "stg_customers"):
        return []
    return [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT observation_date FROM stg_customers ORDER BY 1"
        ).fetchall()
    ]
