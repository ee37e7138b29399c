"""An event log as it comes: landing and staging when only an events table is certain.

A real product's log has a customer id and a time, and maybe an event type (its own page
names, any number of them), a session, an event id and numeric measures; a customers table
and a cancellations table may exist or not. Landing renames the mapped columns onto our names
(``customer_id``, ``event_time``, ...; measures under their slug) and keeps the values as they
arrived. Staging rejects only what is structurally broken — a missing id or time, a time that
does not parse, a measure that is not a number — each row with its reason. An event type is
never rejected for its value: the vocabulary is the data's own.

The time format is detected once per column and stated in the staging metadata: a timestamp,
a date, or epoch seconds or milliseconds (numbers; milliseconds when the typical magnitude is
at least 1e11, which in seconds would be the year 5138).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from churn.ingest import flat
from churn.ingest.landing import (
    SourceFileError,
    create_empty_raw,
    file_columns,
    land_flat,
    plain_path,
    read_expression,
)
from churn.ingest.schema import CANCELLATIONS, CUSTOMERS, Column, Table
from churn.ingest.staging import (
    LINEAGE_COLUMNS,
    RULES,
    StagingResult,
    Violation,
    split_rows,
    stage_table,
)
from churn.sources.config import SourceConfig
from churn.sql import quote_identifier, quote_literal

if TYPE_CHECKING:
    from churn.engine import Engine

EVENT_COLUMNS = ("event_id", "customer_id", "session_id", "event_time", "event_type")
PROFILE_COLUMNS_TABLE = "profile_columns"
"""What staging decided about each column of an event log's customers table (like
``flat_columns`` for a flat table)."""


# --- time formats -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeFormat:
    """How one time column is read: ``timestamp``, ``date``, ``epoch_seconds`` or
    ``epoch_milliseconds``, and why that was decided."""

    kind: str
    reason: str

    def parse(self, *, as_date: bool = False) -> str:
        """SQL over the trimmed text ``{text}``: the TIMESTAMP (or DATE), NULL if unparseable."""
        number = "TRY_CAST({text} AS DOUBLE)"
        if self.kind == "epoch_seconds":
            micros = f"CASE WHEN abs({number}) < 1e11 THEN {number} * 1000000 END"
        elif self.kind == "epoch_milliseconds":
            micros = f"CASE WHEN abs({number}) < 1e14 THEN {number} * 1000 END"
        else:
            micros = None
        if micros is not None:
            value = f"make_timestamp(TRY_CAST({micros} AS BIGINT))"
        elif self.kind == "date":
            value = "CAST(TRY_CAST({text} AS DATE) AS TIMESTAMP)"
        else:
            value = "TRY_CAST({text} AS TIMESTAMP)"
        return f"CAST({value} AS DATE)" if as_date else value


def detect_time_format(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> TimeFormat:
    """Decide how ``column`` of ``relation`` (our landed table) encodes time, from its values."""
    described = {
        name: str(kind).upper() for name, kind, *_ in con.execute(f"DESCRIBE {relation}").fetchall()
    }
    raw_type = described[column]
    if raw_type.startswith("TIMESTAMP"):
        return TimeFormat("timestamp", f"typed {raw_type}")
    if raw_type == "DATE":
        return TimeFormat("date", "typed DATE")
    text = f"nullif(trim(CAST({quote_identifier(column)} AS VARCHAR)), '')"
    present, numbers, dates, magnitude = con.execute(
        f"""
        SELECT count({text}),
            count(*) FILTER (WHERE regexp_full_match({text}, '-?[0-9]+([.][0-9]+)?')),
            count(*) FILTER (WHERE regexp_full_match({text}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')),
            median(abs(TRY_CAST({text} AS DOUBLE)))
        FROM {relation}
        """
    ).fetchone()
    if present and numbers / present >= 0.5:
        kind = "epoch_milliseconds" if (magnitude or 0) >= 1e11 else "epoch_seconds"
        return TimeFormat(
            kind, f"{numbers / present:.0%} of values are numbers, median magnitude {magnitude:.3g}"
        )
    if present and dates / present >= 0.5:
        return TimeFormat("date", f"{dates / present:.0%} of values are dates YYYY-MM-DD")
    return TimeFormat("timestamp", "text timestamps")


# --- landing ------------------------------------------------------------------------------------


def staged_measures(measures: Sequence[str]) -> list[str]:
    """Our column name for each measure: its slug, unique and clear of our own columns."""
    used = set(EVENT_COLUMNS) | set(LINEAGE_COLUMNS)
    names = []
    for measure in measures:
        base = flat.feature_name(measure)
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names.append(name)
    return names


def _mapped_select(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    table: str,
    required: Sequence[str],
    optional: Sequence[str],
    path: Path | None = None,
) -> tuple[Path, list[str]]:
    """The file (``path``, else the table's own) and the SELECT list renaming its mapped
    columns onto ours (NULL when an optional column is absent; an explicitly mapped column
    must exist)."""
    mapped = source.tables[table]
    path = path or mapped.path
    present = set(file_columns(con, path))
    selected = []
    for role in (*required, *optional):
        column = mapped.file_column(role)
        if column in present:
            selected.append(f"{quote_identifier(column)} AS {role}")
        elif role in required or role in mapped.columns:
            raise SourceFileError(
                f"{path.name}: no column {column!r} (tables.{table}.columns.{role}); "
                f"the file has: {', '.join(sorted(present))}"
            )
        else:
            selected.append(f"CAST(NULL AS VARCHAR) AS {role}")
    return path, selected


def _land(con: duckdb.DuckDBPyConnection, target: str, path: Path, selected: list[str]) -> int:
    lineage = f"now() AS _loaded_at, {quote_literal(path.name)} AS _source_file"
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {', '.join(selected)}, {lineage} "
            f"FROM {read_expression(path)}"
        )
    except duckdb.Error as error:
        raise SourceFileError(f"{path.name}: cannot be loaded into {target} ({error})") from error
    return con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]


def land_event_log_table(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, table: Table
) -> tuple[Path | None, int]:
    """One raw table of an event log: (file or None, rows). A table the source does not have
    is created empty, so the graph stays whole."""
    if table.name == "events":
        return _land_events(con, source)
    mapped = source.tables.get(table.name)
    if mapped is None or table.name not in ("customers", "cancellations"):
        create_empty_raw(con, table)
        return None, 0
    if table.name == "customers":
        return mapped.path, land_flat(con, mapped.path)
    path, selected = _mapped_select(
        con, source, "cancellations", ("customer_id", "cancel_date"), ("churn_type", "reason")
    )
    return path, _land(con, "raw_cancellations", path, selected)


def _land_events(con: duckdb.DuckDBPyConnection, source: SourceConfig) -> tuple[Path, int]:
    path, selected = _events_select(con, source, source.tables["events"].path)
    return path, _land(con, "raw_events", path, selected)


def _events_select(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, path: Path
) -> tuple[Path, list[str]]:
    """The SELECT list of an events file (the log's own or an ``incoming/`` one): its mapped
    columns under our names, ``event_id`` and the measures."""
    events = source.tables["events"]
    path, selected = _mapped_select(
        con, source, "events", ("customer_id", "event_time"), ("event_type", "session_id"), path
    )
    if "CAST(NULL AS VARCHAR) AS event_type" in selected and source.churn.cancellation_event:
        raise SourceFileError(
            f"{path.name}: churn.cancellation_event needs an event type column "
            "(tables.events.columns.event_type)"
        )
    present = set(file_columns(con, path))
    event_id = events.file_column("event_id")
    for measure in events.measures:
        if measure not in present:
            raise SourceFileError(f"{path.name}: no column {measure!r} (tables.events.measures)")
    if event_id in present:
        selected.append(f"{quote_identifier(event_id)} AS event_id")
    elif "event_id" in events.columns:
        raise SourceFileError(f"{path.name}: no column {event_id!r} (tables.events.columns)")
    else:
        # No id: the whole row is the event's identity, numbered by its occurrence in the
        # file: a row an incoming file repeats from the log is one event (staging keeps it
        # once), while identical rows within one file stay distinct events (two purchases of
        # the same amount on the same day).
        used = [
            events.file_column(role)
            for role in ("customer_id", "event_time", "event_type", "session_id")
            if events.file_column(role) in present
        ] + list(events.measures)
        parts = " || chr(31) || ".join(
            f"coalesce(CAST({quote_identifier(column)} AS VARCHAR), '')" for column in used
        )
        row = f"md5({parts})"
        selected.append(
            f"{row} || '-' || CAST(row_number() OVER (PARTITION BY {row}) AS VARCHAR) AS event_id"
        )
    for measure, name in zip(events.measures, staged_measures(events.measures), strict=True):
        selected.append(f"{quote_identifier(measure)} AS {name}")
    return path, selected


def check_incoming_events(path: Path, source: SourceConfig, *, contents: bool = True) -> None:
    """Whether an ``incoming/`` events file of this log can land: the log's own mapped columns
    and measures, readable, not empty. Values are the staging rules' (rejects with reasons)."""
    con = duckdb.connect()
    try:
        with plain_path(path) as readable:
            _events_select(con, source, readable)
            if not contents:
                return
            try:
                rows = con.execute(f"SELECT count(*) FROM {read_expression(readable)}").fetchone()
            except duckdb.Error as error:
                raise SourceFileError(f"{path.name}: cannot be read ({error})") from error
            if rows[0] == 0:
                raise SourceFileError(f"{path.name}: no rows")
    finally:
        con.close()


def append_events(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, path: Path, source_name: str
) -> int:
    """Append an ``incoming/`` events file to ``raw_events`` under the log's mapping."""
    with plain_path(path) as readable:
        _, selected = _events_select(con, source, readable)
        lineage = f"now() AS _loaded_at, {quote_literal(source_name)} AS _source_file"
        try:
            return con.execute(
                f"INSERT INTO raw_events BY NAME SELECT {', '.join(selected)}, {lineage} "
                f"FROM {read_expression(readable)}"
            ).fetchone()[0]
        except duckdb.Error as error:
            raise SourceFileError(
                f"{path.name}: cannot be appended to raw_events ({error})"
            ) from error


def events_table(time: TimeFormat, measures: Sequence[str]) -> Table:
    """The staging rules of an event log's events: only structure, never a value list."""
    return Table(
        name="events",
        key=("event_id",),
        time_column="event_time",
        references_customers=False,
        description="Events of the log, any vocabulary.",
        columns=(
            Column(
                "event_id", "VARCHAR", "Event identifier (the row number when the log has none)."
            ),
            Column("customer_id", "VARCHAR", "Customer who produced the event."),
            Column("session_id", "VARCHAR", "Session, when the log has them.", required=False),
            Column(
                "event_time",
                "TIMESTAMP",
                f"When the event happened, read as {time.kind}.",
                parse=time.parse(),
            ),
            Column("event_type", "VARCHAR", "The log's own event type.", required=False),
            *(Column(m, "DOUBLE", f"Measure {m}.", required=False) for m in measures),
        ),
    )


def cancellations_table(time: TimeFormat) -> Table:
    return Table(
        name="cancellations",
        key=("customer_id",),
        time_column="cancel_date",
        references_customers=False,
        description="Subscription ends: the customer is gone from cancel_date on.",
        columns=(
            Column("customer_id", "VARCHAR", "Customer who left."),
            Column(
                "cancel_date",
                "DATE",
                "First day without a subscription.",
                parse=time.parse(as_date=True),
            ),
            Column("churn_type", "VARCHAR", "Kind of ending, free text.", required=False),
            Column("reason", "VARCHAR", "Stated reason, free text.", required=False),
        ),
    )


def stage_events(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, engine: Engine | None = None
) -> tuple[StagingResult, TimeFormat]:
    """``stg_events`` and its rejects from ``raw_events``, with the time format decided."""
    time = detect_time_format(con, "raw_events", "event_time")
    measures = staged_measures(source.tables["events"].measures)
    return stage_table(con, events_table(time, measures), engine), time


def stage_cancellations(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, engine: Engine | None = None
) -> tuple[StagingResult, TimeFormat | None]:
    if "cancellations" not in source.tables:
        _empty_staged(con, CANCELLATIONS)
        return _nothing(), None
    time = detect_time_format(con, "raw_cancellations", "cancel_date")
    return stage_table(con, cancellations_table(time), engine), time


def _nothing() -> StagingResult:
    return StagingResult(0, 0, 0, 0, 0, dict.fromkeys(RULES, 0))


def _empty_staged(con: duckdb.DuckDBPyConnection, table: Table, columns: str | None = None) -> None:
    columns = columns or ", ".join(f'"{c.name}" {c.sql_type}' for c in table.columns)
    lineage = "_loaded_at TIMESTAMPTZ, _source_file VARCHAR"
    con.execute(f"CREATE OR REPLACE TABLE stg_{table.name} ({columns}, {lineage})")
    con.execute(
        f"CREATE OR REPLACE TABLE stg_{table.name}_rejects ({columns}, reject_reason VARCHAR, "
        f"reject_rules VARCHAR[], {lineage})"
    )


def stage_customers(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, engine: Engine | None = None
) -> tuple[StagingResult, list[flat.InferredColumn], TimeFormat | None]:
    """``stg_customers`` (customer_id, signup_date, typed profile columns by feature name) and
    ``profile_columns``; an empty ``stg_customers`` when the log has no customers table."""
    mapped = source.tables.get("customers")
    _write_profile_columns(con, [])
    if mapped is None:
        _empty_staged(con, CUSTOMERS, "customer_id VARCHAR, signup_date DATE")
        return _nothing(), [], None
    present = {row[0] for row in con.execute("DESCRIBE raw_customers").fetchall()}
    id_column = mapped.file_column("customer_id")
    signup = mapped.file_column("signup_date")
    if id_column not in present:
        raise SourceFileError(f"{mapped.path.name}: no column {id_column!r} (customer id)")
    if signup not in present:
        if "signup_date" in mapped.columns:
            raise SourceFileError(f"{mapped.path.name}: no column {signup!r} (signup_date)")
        signup = None
    roles = {id_column: "id"} | ({signup: "time"} if signup else {})
    inferred = flat.infer_profile(
        con,
        "raw_customers",
        roles,
        mapped.ignore,
        mapped.categorical,
        mapped.numeric,
        reserved=frozenset({"signup_date"}),
    )
    profile = [c for c in inferred if c.role == "feature"]
    text = flat._text
    violations = [
        Violation(
            "missing_required",
            f"{text(id_column)} IS NULL",
            f"{quote_literal(id_column)} || ' is missing'",
        )
    ]
    time = None
    signup_value = "CAST(NULL AS DATE)"
    if signup:
        time = detect_time_format(con, "raw_customers", signup)
        signup_value = time.parse(as_date=True).format(text=text(signup))
        violations.append(
            Violation(
                "invalid_type",
                f"{text(signup)} IS NOT NULL AND {signup_value} IS NULL",
                f"{quote_literal(f'{signup}=')} || {text(signup)} || "
                f"{quote_literal(f' is not a valid {time.kind}')}",
            )
        )
    violations += [flat.not_a_number(c.source) for c in profile if c.kind == "numeric"]
    result = split_rows(
        con,
        engine,
        "customers",
        raw="raw_customers",
        relation="SELECT * FROM raw_customers",
        violations=violations,
        shown=flat.as_arrived(inferred),
        staged=[
            (text(id_column), "customer_id"),
            (signup_value, "signup_date"),
            *((flat._typed(c), c.name) for c in profile),
        ],
        key=["customer_id"],
        before_commit=lambda: _write_profile_columns(con, inferred),
    )
    return result, inferred, time


def _write_profile_columns(
    con: duckdb.DuckDBPyConnection, columns: list[flat.InferredColumn]
) -> None:
    con.execute(
        f"CREATE OR REPLACE TABLE {PROFILE_COLUMNS_TABLE} (source_column VARCHAR, name VARCHAR, "
        "role VARCHAR, kind VARCHAR, sql_type VARCHAR, text_numbers BOOLEAN, reason VARCHAR, "
        "position INTEGER)"
    )
    if columns:
        con.executemany(
            f"INSERT INTO {PROFILE_COLUMNS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [c.source, c.name, c.role, c.kind, c.sql_type, c.text_numbers, c.reason, i]
                for i, c in enumerate(columns)
            ],
        )


def profile_features(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(stg_customers column, kind, SQL type) of the kept profile columns, in file order."""
    return [
        tuple(row)
        for row in con.execute(
            f"SELECT name, kind, sql_type FROM {PROFILE_COLUMNS_TABLE} WHERE role = 'feature' "
            "ORDER BY position"
        ).fetchall()
    ]
