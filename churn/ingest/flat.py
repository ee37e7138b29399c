"""A flat customer table (one row per customer, a label column) as the pipeline's source.

There is no event history, so the features are the table's own columns. Staging decides what
each column is, once, and records it in ``flat_columns`` — the single source of truth for the
flat shape's features: ``customer_features``, training and the model card's feature schema all
follow it. The rules, in order:

1. the id, label and time columns are roles, not features; ``columns.ignore`` drops a column;
2. a column with at most one distinct value is dropped (``constant``);
3. ``columns.numeric`` / ``columns.categorical`` force a kind;
4. otherwise a typed numeric column (Parquet) is numeric, and a text column is numeric when at
   least 90% of its non-blank values parse as numbers ("text numbers": blanks become NULL, and a
   row whose value does not parse is *rejected* with its reason, like staging's other rules);
5. a text column with mostly distinct values (over half the rows) looks like an identifier and
   is dropped, as is an integer column unique on every row (a row number).

Everything runs in DuckDB SQL over ``raw_customers``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import duckdb

from churn.ingest.flat_snapshots import (
    FILE_DATE_COLUMN,
    SNAPSHOT_FILES_DDL,
    latest_files_relation,
    replaced_snapshots,
)
from churn.ingest.staging import LINEAGE_COLUMNS, StagingResult, Violation, split_rows
from churn.ingest.values import typed_value
from churn.sources.config import FlatSource, SourceConfigError
from churn.sql import quote_identifier, quote_literal

if TYPE_CHECKING:
    from churn.engine import Engine

NUMERIC_SHARE = 0.9
"""A text column is numeric when at least this share of its non-blank values parse."""
IDENTIFIER_SHARE = 0.5
"""A text column with more distinct values than this share of rows is taken for an id."""
MIN_ROWS_FOR_IDENTIFIER = 20

COLUMNS_TABLE = "flat_columns"
RESERVED = {"customer_id", "observation_date", "churned"} | set(LINEAGE_COLUMNS)
QUOTE = "'"
"""A single quote inside a reason text (the f-strings cannot hold a backslash escape)."""
_NUMERIC_RAW = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE")


@dataclass(frozen=True)
class InferredColumn:
    """What staging decided about one column of the flat table."""

    source: str
    """The column's name in the user's file."""
    name: str
    """Its feature name (snake_case), when it is a feature."""
    role: str
    """feature, id, label, time, ignored, constant or identifier."""
    kind: str | None
    sql_type: str | None
    text_numbers: bool
    reason: str


def feature_name(column: str) -> str:
    """``MonthlyCharges`` -> ``monthly_charges``: names safe for SQL, JSON and pydantic."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column.strip())
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", snake).strip("_").lower() or "column"
    return f"f_{snake}" if snake[0].isdigit() else snake


def _text(column: str) -> str:
    return f"nullif(trim(CAST({quote_identifier(column)} AS VARCHAR)), '')"


def infer_columns(con: duckdb.DuckDBPyConnection, source: FlatSource) -> list[InferredColumn]:
    """Decide every column's role and type from ``raw_customers``."""
    present = {name for name, _ in _described(con, "raw_customers")}
    for role, column in (("id_column", source.id_column), ("label.column", source.label_column)):
        if column not in present:
            raise ValueError(f"{role} {column!r} is not a column of {source.path.name}")
    roles = {source.id_column: "id", source.label_column: "label"}
    if source.time_column:
        roles[source.time_column] = "time"
    return infer_profile(
        con, "raw_customers", roles, source.ignore, source.categorical, source.numeric
    )


def _described(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [
        (name, str(kind).upper())
        for name, kind, *_ in con.execute(f"DESCRIBE {relation}").fetchall()
        if name not in LINEAGE_COLUMNS
    ]


def infer_profile(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    roles: dict[str, str],
    ignore: tuple[str, ...] = (),
    categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (),
    reserved: frozenset[str] = frozenset(),
) -> list[InferredColumn]:
    """The rules above over any landed table (``relation`` is ours, never the user's): a flat
    table's columns, or the profile columns of an event log's customers table. ``roles`` maps
    the id/label/time columns to their role; ``reserved`` names features may not take."""
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    inferred: list[InferredColumn] = []
    used: set[str] = set(RESERVED) | set(reserved)
    for column, raw_type in _described(con, relation):
        if column in roles:
            inferred.append(
                InferredColumn(column, column, roles[column], None, None, False, "role")
            )
            continue
        if column in ignore:
            inferred.append(
                InferredColumn(column, column, "ignored", None, None, False, "columns.ignore")
            )
            continue
        inferred.append(_infer(con, relation, column, raw_type, rows, (categorical, numeric), used))
    return inferred


def _infer(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    column: str,
    raw_type: str,
    rows: int,
    overrides: tuple[tuple[str, ...], tuple[str, ...]],
    used: set[str],
) -> InferredColumn:
    categorical, numeric = overrides
    text = _text(column)
    distinct, present, parsed, integral, unique_ints = con.execute(
        f"""
        SELECT count(DISTINCT {text}), count({text}), count(TRY_CAST({text} AS DOUBLE)),
            count(*) FILTER (WHERE TRY_CAST({text} AS DOUBLE) IS NOT NULL
                AND TRY_CAST({text} AS DOUBLE) = round(TRY_CAST({text} AS DOUBLE))
                AND abs(TRY_CAST({text} AS DOUBLE)) < 2e9),
            count(DISTINCT TRY_CAST({text} AS DOUBLE))
        FROM {relation}
        """
    ).fetchone()

    def drop(role: str, reason: str) -> InferredColumn:
        return InferredColumn(column, column, role, None, None, False, reason)

    if distinct <= 1:
        return drop("constant", f"{distinct} distinct value(s)")
    typed_numeric = raw_type.split("(")[0] in _NUMERIC_RAW or raw_type.startswith("DECIMAL")
    if column in categorical:
        kind, reason = "categorical", "columns.categorical"
    elif column in numeric:
        kind, reason = "numeric", "columns.numeric"
    elif typed_numeric:
        kind, reason = "numeric", f"typed {raw_type}"
    elif present and parsed / present >= NUMERIC_SHARE:
        kind, reason = "numeric", f"{parsed / present:.1%} of non-blank values parse as numbers"
    else:
        kind, reason = "categorical", "text"
    if (
        kind == "categorical"
        and rows >= MIN_ROWS_FOR_IDENTIFIER
        and distinct > IDENTIFIER_SHARE * rows
    ):
        return drop("identifier", f"{distinct} distinct values in {rows} rows")
    is_integer = kind == "numeric" and parsed > 0 and integral == parsed
    if is_integer and unique_ints == rows and rows >= MIN_ROWS_FOR_IDENTIFIER:
        return drop("identifier", f"an integer unique on each of {rows} rows")
    name = feature_name(column)
    while name in used:
        name += "_"
    used.add(name)
    sql_type = "VARCHAR" if kind == "categorical" else ("INTEGER" if is_integer else "DOUBLE")
    text_numbers = kind == "numeric" and not typed_numeric
    return InferredColumn(column, name, "feature", kind, sql_type, text_numbers, reason)


def _typed(column: InferredColumn) -> str:
    text = _text(column.source)
    if column.kind == "categorical":
        return text
    return f"CAST(TRY_CAST({text} AS DOUBLE) AS {column.sql_type})"


def _instant(text: str) -> str:
    """A date or timestamp text as a UTC instant: an offset moves it (possibly across a month),
    by the rule landing and staging apply to every timestamp."""
    return typed_value(text, "TIMESTAMP")


def not_a_number(column: str) -> Violation:
    """A numeric column's value that is present but not a number: ``x='n/a' is not a number``."""
    text = _text(column)
    return Violation(
        "invalid_type",
        f"{text} IS NOT NULL AND TRY_CAST({text} AS DOUBLE) IS NULL",
        f"{quote_literal(f'{column}={QUOTE}')} || {text} || ''' is not a number'",
    )


def as_arrived(columns: list[InferredColumn]) -> list[str]:
    """Every column of ``raw_customers`` as the text that arrived: what a rejects table shows."""
    return [
        f"CAST({quote_identifier(c.source)} AS VARCHAR) AS {quote_identifier(c.source)}"
        for c in columns
    ]


def _violations(columns: list[InferredColumn], source: FlatSource) -> list[Violation]:
    """The rules of a flat table, over raw_customers."""
    found = [
        Violation(
            "missing_required",
            f"{_text(source.id_column)} IS NULL",
            quote_literal(f"{source.id_column} is missing"),
        ),
        Violation(
            "missing_required",
            f"{_text(source.label_column)} IS NULL",
            quote_literal(f"{source.label_column} (the label) is missing"),
        ),
    ]
    if source.time_column:
        # only where the row's date comes from it (an incoming file may date itself by name)
        text = _text(source.time_column)
        undated = f"{FILE_DATE_COLUMN} IS NULL"
        found.append(
            Violation(
                "invalid_type",
                f"{undated} AND {text} IS NOT NULL AND {_instant(text)} IS NULL",
                f"{quote_literal(f'{source.time_column}=')} || {text} || ' is not a valid DATE'",
            )
        )
        found.append(
            Violation(
                "missing_required",
                f"{undated} AND {text} IS NULL",
                quote_literal(f"{source.time_column} is missing"),
            )
        )
    found += [
        not_a_number(c.source) for c in columns if c.role == "feature" and c.kind == "numeric"
    ]
    return found


def stage_flat(
    con: duckdb.DuckDBPyConnection,
    source: FlatSource,
    observation_date: date,
    engine: Engine | None = None,
) -> tuple[StagingResult, list[InferredColumn]]:
    """Rebuild ``stg_customers``, its rejects and ``flat_columns`` from ``raw_customers``.

    ``stg_customers`` holds ``customer_id``, the typed features (by feature name), ``churned``
    and ``observation_date``: the snapshot date of the row's incoming file
    (:mod:`churn.ingest.flat_snapshots`), else the time column truncated to its month, else
    ``observation_date``. Each date keeps the rows of the newest file that has it.
    """
    columns = infer_columns(con, source)
    features = [c for c in columns if c.role == "feature"]
    positives = ", ".join(quote_literal(value.lower()) for value in source.positive)
    own = row_date(source, observation_date)
    when = f"coalesce({FILE_DATE_COLUMN}, {own})"
    con.execute(SNAPSHOT_FILES_DDL)

    def before_commit() -> None:
        _check_label_classes(con, source)
        _write_columns(con, columns)

    result = split_rows(
        con,
        engine,
        "customers",
        raw="raw_customers",
        relation=latest_files_relation(own),
        violations=_violations(columns, source),
        shown=as_arrived(columns),
        staged=[
            (_text(source.id_column), "customer_id"),
            (when, "observation_date"),
            *((_typed(c), c.name) for c in features),
            (f"lower({_text(source.label_column)}) IN ({positives})", "churned"),
        ],
        key=["customer_id", "observation_date"],
        before_commit=before_commit,
    )
    return result, columns


def row_date(source: FlatSource, observation_date: date) -> str:
    """SQL for a raw row's own snapshot date, when its file gives none: the time column's
    month, else the config's one observation date."""
    if source.time_column:
        instant = _instant(_text(source.time_column))
        return f"CAST(date_trunc('month', CAST({instant} AS DATE)) AS DATE)"
    return f"DATE {quote_literal(observation_date.isoformat())}"


def replaced(
    con: duckdb.DuckDBPyConnection, source: FlatSource, observation_date: date
) -> list[dict[str, object]]:
    """The snapshot dates a newer file replaced, for the staging metadata."""
    return replaced_snapshots(con, row_date(source, observation_date))


def _write_columns(con: duckdb.DuckDBPyConnection, columns: list[InferredColumn]) -> None:
    """``flat_columns``: what inference decided, which training, the card and the UI read."""
    con.execute(
        f"CREATE OR REPLACE TABLE {COLUMNS_TABLE} (source_column VARCHAR, name VARCHAR, "
        "role VARCHAR, kind VARCHAR, sql_type VARCHAR, text_numbers BOOLEAN, reason VARCHAR, "
        "position INTEGER)"
    )
    con.executemany(
        f"INSERT INTO {COLUMNS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [c.source, c.name, c.role, c.kind, c.sql_type, c.text_numbers, c.reason, i]
            for i, c in enumerate(columns)
        ],
    )


def _check_label_classes(con: duckdb.DuckDBPyConnection, source: FlatSource) -> None:
    """A label with one class cannot be learned: say so here, naming ``label.positive``, rather
    than deep in training. Raised inside staging's transaction, so nothing is replaced."""
    positives, negatives = con.execute(
        "SELECT count(*) FILTER (churned), count(*) FILTER (NOT churned) FROM stg_customers"
    ).fetchone()
    if (positives and negatives) or not (positives or negatives):
        return  # both classes, or no staged row at all (the rejects say why)
    seen = [
        value
        for (value,) in con.execute(
            f"SELECT DISTINCT {_text(source.label_column)} AS v FROM raw_customers "
            "WHERE v IS NOT NULL ORDER BY v LIMIT 10"
        ).fetchall()
    ]
    wanted = ", ".join(repr(value) for value in source.positive)
    if not positives:
        problem = f"none of its values is label.positive ({wanted})"
        hint = "set label.positive to the value that marks a customer who churned"
    else:
        problem = f"every row is label.positive ({wanted}): there is no customer who stayed"
        hint = "check label.column and label.positive"
    raise SourceConfigError(
        f"label.column {source.label_column!r} has one class: {problem}; values seen: "
        f"{', '.join(repr(v) for v in seen) or 'none'}. {hint[0].upper()}{hint[1:]}."
    )


def describe(column: InferredColumn) -> str:
    kind = f"{column.kind} ({column.sql_type})"
    coerced = "; stored as text, blanks read as missing" if column.text_numbers else ""
    return (
        f"Column {column.source!r} of the customer table: {kind}, "
        f"inferred: {column.reason}{coerced}."
    )


def inferred_columns(con: duckdb.DuckDBPyConnection) -> list[InferredColumn]:
    rows = con.execute(
        f"SELECT source_column, name, role, kind, sql_type, text_numbers, reason "
        f"FROM {COLUMNS_TABLE} ORDER BY position"
    ).fetchall()
    return [InferredColumn(*row) for row in rows]
