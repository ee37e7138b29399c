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
    file_types,
    land_flat,
    landed_value,
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
    text_column,
)
from churn.ingest.values import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_TEXT_LENGTH,
    OFFSET_PATTERN,
    in_calendar,
    is_json,
    is_zoned,
    json_text,
    text_value,
    typed_value,
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

AMBIGUOUS_MILLISECONDS = 1e10
"""In a milliseconds column, a magnitude below this (before 1970-04-27 as milliseconds) is a
seconds value (any time up to 2286) that slipped in: rejected, not read as 1970-01-21."""


_TEXT_MARK = "\x00text\x00"


def _template(sql: str) -> str:
    """``sql`` (built over :data:`_TEXT_MARK`) as a ``str.format`` template over ``{text}``:
    the offset pattern's ``{2}`` must survive the formatting."""
    return sql.replace("{", "{{").replace("}", "}}").replace(_TEXT_MARK, "{text}")


@dataclass(frozen=True)
class TimeFormat:
    """How one time column is read: ``timestamp``, ``date``, ``epoch_seconds`` or
    ``epoch_milliseconds``, and why that was decided (with how many values named their own UTC
    offset and were converted to UTC: the staging metadata states both)."""

    kind: str
    reason: str

    def parse(self, *, as_date: bool = False) -> str:
        """SQL over the trimmed text ``{text}``: the TIMESTAMP (or DATE) in UTC, NULL if it does
        not parse. A text with an offset is converted to UTC whatever the session's time zone;
        an epoch number is read up to the year 5138 (the calendar rule of staging then rejects
        what lies outside 1900..2199, naming the value)."""
        number = "TRY_CAST({text} AS DOUBLE)"
        if self.kind == "epoch_seconds":
            micros = f"CASE WHEN abs({number}) < 1e11 THEN {number} * 1000000 END"
        elif self.kind == "epoch_milliseconds":
            micros = f"CASE WHEN abs({number}) < 1e14 THEN {number} * 1000 END"
        else:
            micros = None
        if micros is not None:
            value = f"make_timestamp(TRY_CAST({micros} AS BIGINT))"
        else:  # a date is midnight; an offset moves the time to UTC (possibly to another day)
            value = _template(typed_value(_TEXT_MARK, "TIMESTAMP"))
        return f"CAST({value} AS DATE)" if as_date else value

    def misread(self, text: str) -> str | None:
        """SQL TRUE for a value over the text ``text`` that parses but cannot be meant: a
        seconds value in a milliseconds column; None when the format has no such value."""
        if self.kind != "epoch_milliseconds":
            return None
        return f"abs(TRY_CAST({text} AS DOUBLE)) < {AMBIGUOUS_MILLISECONDS:.0f}"


def detect_time_format(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> TimeFormat:
    """Decide how ``column`` of ``relation`` (our landed table) encodes time, from its values.

    Numbers are epoch seconds or milliseconds by their typical (median) magnitude; the values
    that do not fit the calendar under that unit are counted here and rejected by staging, each
    with a reason naming the column."""
    described = {
        name: str(kind).upper() for name, kind, *_ in con.execute(f"DESCRIBE {relation}").fetchall()
    }
    raw_type = described[column]
    name = quote_identifier(column)
    if is_zoned(raw_type):
        present = con.execute(f"SELECT count({name}) FROM {relation}").fetchone()[0]
        return TimeFormat("timestamp", f"typed {raw_type}{_converted(present)}")
    if raw_type.startswith("TIMESTAMP"):
        return TimeFormat("timestamp", f"typed {raw_type}")
    if raw_type == "DATE":
        return TimeFormat("date", "typed DATE")
    text = text_value(json_text(name) if is_json(raw_type) else name)
    present, numbers, dates, offsets, magnitude = con.execute(
        f"""
        SELECT count({text}),
            count(*) FILTER (WHERE regexp_full_match({text}, '-?[0-9]+([.][0-9]+)?')),
            count(*) FILTER (WHERE regexp_full_match({text}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')),
            count(*) FILTER (WHERE regexp_matches({text}, '{OFFSET_PATTERN}')),
            median(abs(TRY_CAST({text} AS DOUBLE)))
              FILTER (WHERE regexp_full_match({text}, '-?[0-9]+([.][0-9]+)?'))
        FROM {relation}
        """
    ).fetchone()
    if present and numbers / present >= 0.5:
        kind = "epoch_milliseconds" if (magnitude or 0) >= 1e11 else "epoch_seconds"
        reason = f"{numbers / present:.0%} of values are numbers, median magnitude {magnitude:.3g}"
        found = TimeFormat(kind, reason)
        parsed = found.parse().format(text=text)
        misread = found.misread(text) or "false"
        rejected = con.execute(
            f"SELECT count(*) FROM {relation} WHERE {text} IS NOT NULL AND "
            f"({parsed} IS NULL OR NOT {in_calendar(parsed, 'TIMESTAMP')} OR {misread})"
        ).fetchone()[0]
        if rejected:
            reason += f"; {rejected:,} not times in {EARLIEST_TIME}..{LATEST_TIME} as that unit"
        return TimeFormat(kind, reason)
    if present and dates / present >= 0.5:
        share = f"{dates / present:.0%} of values are dates YYYY-MM-DD"
        return TimeFormat("date", share + _converted(offsets))
    return TimeFormat("timestamp", "text timestamps" + _converted(offsets))


def _converted(offsets: int) -> str:
    """The metadata's note on times that named their UTC offset (none: nothing to say)."""
    return f"; times with offsets converted to UTC: {offsets:,}" if offsets else ""


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
    present = file_types(con, path)
    selected = []
    for role in (*required, *optional):
        column = mapped.file_column(role)
        if column in present:
            selected.append(f"{landed_value(column, present[column])} AS {role}")
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
    present = file_types(con, path)
    event_id = events.file_column("event_id")
    for measure in events.measures:
        if measure not in present:
            raise SourceFileError(f"{path.name}: no column {measure!r} (tables.events.measures)")
    if event_id in present:
        selected.append(f"{landed_value(event_id, present[event_id])} AS event_id")
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
        selected.append(f"{landed_value(measure, present[measure])} AS {name}")
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


def _misread(column: str, time: TimeFormat) -> list[Violation]:
    """A seconds value in a milliseconds column, rejected naming the column."""
    text = text_column(column)
    condition = time.misread(text)
    if condition is None:
        return []
    return [
        Violation(
            "out_of_range",
            f"{text} IS NOT NULL AND {condition}",
            f"{quote_literal(column + '=')} || {text} || "
            "' looks like epoch seconds in a column of epoch milliseconds'",
        )
    ]


def _after(column: str, sql_type: str, limit: str, what: str) -> Violation:
    """A time later than ``limit`` (SQL of a naive-UTC time or date): the future cannot have
    happened, and one such row would move the data's end and label unmatured months."""
    typed = quote_identifier(column)
    return Violation(
        "out_of_range",
        f"{typed} > CAST({limit} AS {sql_type})",
        f"{quote_literal(column + '=')} || CAST({typed} AS VARCHAR) || "
        f"{quote_literal(' (UTC) is after ' + what + ' ')} || CAST(CAST({limit} AS {sql_type}) "
        "AS VARCHAR)",
    )


def event_rules(time: TimeFormat) -> list[Violation]:
    """What only an event log's events can break, on top of the schema: a time after the row
    was loaded, a seconds value among milliseconds, an event type longer than the service
    accepts (it would become a feature no request could send)."""
    event_type = quote_identifier("event_type")
    return [
        *_misread("event_time", time),
        _after("event_time", "TIMESTAMP", "timezone('UTC', _loaded_at)", "its load time"),
        Violation(
            "out_of_range",
            f"length({event_type}) > {MAX_TEXT_LENGTH}",
            f"'event_type is ' || CAST(length({event_type}) AS VARCHAR) || "
            f"' characters, over the {MAX_TEXT_LENGTH} the service accepts'",
        ),
    ]


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


def cancellation_rules(time: TimeFormat) -> list[Violation]:
    """A cancellation effective after today (UTC) is held back until its day comes: staged now
    it would move the data's end into the future. Rejected with the reason, staged again by the
    first staging on or after that day."""
    return [
        *_misread("cancel_date", time),
        _after("cancel_date", "DATE", "timezone('UTC', now())", "today"),
    ]


def stage_events(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, engine: Engine | None = None
) -> tuple[StagingResult, TimeFormat]:
    """``stg_events`` and its rejects from ``raw_events``, with the time format decided."""
    time = detect_time_format(con, "raw_events", "event_time")
    measures = staged_measures(source.tables["events"].measures)
    return stage_table(con, events_table(time, measures), engine, event_rules(time)), time


def stage_cancellations(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, engine: Engine | None = None
) -> tuple[StagingResult, TimeFormat | None]:
    if "cancellations" not in source.tables:
        _empty_staged(con, CANCELLATIONS)
        return _nothing(), None
    time = detect_time_format(con, "raw_cancellations", "cancel_date")
    table = cancellations_table(time)
    return stage_table(con, table, engine, cancellation_rules(time)), time


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
        violations.append(
            Violation(
                "out_of_range",
                f"{signup_value} IS NOT NULL AND NOT {in_calendar(signup_value, 'DATE')}",
                f"{quote_literal(f'{signup}=')} || {text(signup)} || "
                f"{quote_literal(f' is outside {EARLIEST_TIME}..{LATEST_TIME}')}",
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
