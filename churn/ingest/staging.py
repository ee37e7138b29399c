"""Raw → staging: type, validate and deduplicate one table in SQL, keeping every reject's reason.

The rules come from :mod:`churn.ingest.schema`. Each broken rule yields a reason such as
``"out_of_range: monthly_fee=-5 is below 0"``; the part before the colon is the rule name, which
the asset checks count. A row that breaks any rule goes to ``stg_<table>_rejects`` with all its
reasons and the raw values exactly as they arrived, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from churn.ingest.schema import CUSTOMERS, Column, Table
from churn.ingest.values import (
    EARLIEST_TIME,
    LATEST_TIME,
    MEASURE_BOUND,
    in_calendar,
    is_json,
    is_sane_number,
    json_text,
    typed_value,
)
from churn.sql import quote_identifier, quote_literal
from churn.warehouse import transaction

if TYPE_CHECKING:
    from churn.engine import Engine

RULES = ("missing_required", "invalid_type", "not_allowed", "out_of_range", "unknown_customer")
"""Rule names, in the order a data engineer would fix them."""

LINEAGE_COLUMNS = ("_loaded_at", "_source_file")
CUSTOMER_ID = "customer_id"
_TIME_TYPES = ("DATE", "TIMESTAMP")
_NUMBER_TYPES = ("DOUBLE", "FLOAT", "REAL", "INTEGER", "BIGINT", "DECIMAL")


def staged_name(table: Table) -> str:
    return f"stg_{table.name}"


def rejects_name(table: Table) -> str:
    return f"stg_{table.name}_rejects"


def raw_name(table: Table) -> str:
    return f"raw_{table.name}"


def text_column(name: str) -> str:
    """The normalized relation's column holding ``name``'s trimmed text (columns that are
    parsed): what a source's own rule (:func:`stage_table`'s ``extra``) reads as arrived."""
    return quote_identifier(f"{name}__text")


def _text_name(column: Column) -> str:
    return text_column(column.name)


def _arrives_typed(column: Column, raw_types: Mapping[str, str]) -> bool:
    """A column that already has its staged type (Parquet) needs no parsing."""
    return raw_types.get(column.name, "VARCHAR").upper() == column.sql_type


def _trimmed(column: Column, text: str) -> str:
    """``text`` trimmed when the column needs it: values that are parsed or matched against
    categories, and the customer id every table joins on (``"C1 "`` never joined ``C1``).
    Trimming costs more than all the rules together on tens of millions of rows, so free text
    and the other ids keep their spaces, and the id is trimmed only when it has an edge space
    (the ``LIKE`` tests cost less than half of ``trim`` on 10 million ids)."""
    if column.name == CUSTOMER_ID:
        return f"CASE WHEN {text} LIKE ' %' OR {text} LIKE '% ' THEN trim({text}) ELSE {text} END"
    if column.sql_type == "VARCHAR" and column.allowed is None and column.parse is None:
        return text
    return f"trim({text})"


def _text_expression(column: Column, raw_types: Mapping[str, str]) -> str | None:
    """The raw value as text, NULL when blank (blanks in CSVs mean missing); None when the
    column arrives typed. A JSON column (mixed types in a JSON file) is read as the text of
    each value, without JSON's quotes."""
    name = quote_identifier(column.name)
    arrived = raw_types.get(column.name, "VARCHAR")
    if _arrives_typed(column, raw_types) and column.allowed is None:
        if column.sql_type != "VARCHAR":
            return None
        return f"nullif({_trimmed(column, name)}, '')"
    raw = json_text(name) if is_json(arrived) else f"CAST({name} AS VARCHAR)"
    return f"nullif({_trimmed(column, raw)}, '')"


def _typed_expression(column: Column, raw_types: Mapping[str, str]) -> str:
    """The staged value, over the normalized text (categories matched case-insensitively)."""
    text = _text_expression(column, raw_types)
    if text is None:
        return quote_identifier(column.name)
    if column.allowed is not None:
        return f"lower({_text_name(column)})"
    if column.parse is not None:
        return column.parse.format(text=_text_name(column))
    if column.sql_type == "VARCHAR":
        return _text_name(column)
    return typed_value(_text_name(column), column.sql_type)


def _normalized_relation(table: Table, raw_types: Mapping[str, str]) -> str:
    """Raw rows with each column normalized exactly once: the text ``<col>__text`` (for columns
    that need parsing) and the typed ``<col>``, which every rule below reads."""
    lineage = ", ".join(LINEAGE_COLUMNS)
    text_columns = [c for c in table.columns if _text_expression(c, raw_types) is not None]
    inner = [f"{_text_expression(c, raw_types)} AS {_text_name(c)}" for c in text_columns]
    inner += [quote_identifier(c.name) for c in table.columns if c not in text_columns]
    outer = [
        f"{_typed_expression(c, raw_types)} AS {quote_identifier(c.name)}" for c in table.columns
    ]
    outer += [_text_name(c) for c in text_columns]
    return (
        f"SELECT {', '.join(outer)}, {lineage} "
        f"FROM (SELECT {', '.join(inner)}, {lineage} FROM {raw_name(table)})"
    )


def _as_text(column: Column, raw_types: Mapping[str, str]) -> str:
    """The value as it arrived, as text: what a rejects table shows."""
    if _text_expression(column, raw_types) is None:
        return f"CAST({quote_identifier(column.name)} AS VARCHAR)"
    return _text_name(column)


def _shown(column: Column, raw_types: Mapping[str, str]) -> str:
    return f"coalesce({_as_text(column, raw_types)}, 'NULL')"


def _violations(column: Column, raw_types: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(rule, SQL condition that is TRUE when broken, SQL text of the reason) for one column,
    over the normalized relation."""
    name = column.name
    typed = quote_identifier(name)
    shown = _shown(column, raw_types)
    text = _text_expression(column, raw_types)
    present = typed if text is None else _text_name(column)
    found: list[tuple[str, str, str]] = []
    if column.required:
        found.append(
            ("missing_required", f"{present} IS NULL", quote_literal(f"{name} is missing"))
        )
    if text is not None and (column.sql_type != "VARCHAR" or column.parse is not None):
        found.append(
            (
                "invalid_type",
                f"{present} IS NOT NULL AND {typed} IS NULL",
                f"{quote_literal(name + '=')} || {shown} || "
                f"{quote_literal(' is not a valid ' + column.sql_type)}",
            )
        )
    if column.allowed is not None:
        allowed = ", ".join(quote_literal(value) for value in column.allowed)
        found.append(
            (
                "not_allowed",
                f"{typed} IS NOT NULL AND {typed} NOT IN ({allowed})",
                f"{quote_literal(name + '=')} || {shown} || "
                f"{quote_literal(' is not one of ' + ', '.join(column.allowed))}",
            )
        )
    if column.sql_type.upper() in _TIME_TYPES:
        found.append(
            (
                "out_of_range",
                f"{typed} IS NOT NULL AND NOT {in_calendar(typed, column.sql_type)}",
                f"{quote_literal(name + '=')} || {shown} || "
                f"{quote_literal(f' is outside {EARLIEST_TIME}..{LATEST_TIME}')}",
            )
        )
    if column.sql_type.upper() in _NUMBER_TYPES:
        found.append(
            (
                "out_of_range",
                f"{typed} IS NOT NULL AND NOT {is_sane_number(typed)}",
                f"{quote_literal(name + '=')} || {shown} || "
                f"{quote_literal(f' is not a finite number within ±{MEASURE_BOUND:g}')}",
            )
        )
    if column.minimum is not None:
        found.append(
            (
                "out_of_range",
                f"{typed} < {column.minimum}",
                f"{quote_literal(name + '=')} || {shown} || "
                f"{quote_literal(f' is below {column.minimum:g}')}",
            )
        )
    if column.maximum is not None:
        found.append(
            (
                "out_of_range",
                f"{typed} > {column.maximum}",
                f"{quote_literal(name + '=')} || {shown} || "
                f"{quote_literal(f' is above {column.maximum:g}')}",
            )
        )
    return found


def _all_violations(table: Table, raw_types: Mapping[str, str]) -> list[Violation]:
    found = [
        Violation(*item) for column in table.columns for item in _violations(column, raw_types)
    ]
    if table.references_customers:
        found.append(
            Violation(
                "unknown_customer",
                f'"customer_id" IS NOT NULL AND {KNOWN_CUSTOMER} IS NULL',
                f"'customer_id=' || \"customer_id\" || ' is not in {staged_name(CUSTOMERS)}'",
            )
        )
    return found


KNOWN_CUSTOMER = "_known_customer_id"
"""A staged customer's id joined to each row: a join, not ``NOT IN (subquery)``, because the
rule is also read in the reason's projection, where Spark takes no subquery."""


@dataclass(frozen=True)
class Violation:
    """One rule a row can break: its name, the SQL condition TRUE when broken, and the SQL text
    of the reason (``'age=' || age || ' is below 16'``; the rule name is prefixed)."""

    rule: str
    condition: str
    reason: str


@dataclass(frozen=True)
class StagingResult:
    """What staging did to one table, for metadata and checks."""

    raw_rows: int
    staged_rows: int
    rejected_rows: int
    duplicates_dropped: int
    conflicting_keys: int
    rejects_by_rule: dict[str, int]

    @property
    def reject_share(self) -> float:
        return self.rejected_rows / self.raw_rows if self.raw_rows else 0.0


def stage_table(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    engine: Engine | None = None,
    extra: Sequence[Violation] = (),
) -> StagingResult:
    """Rebuild ``stg_<table>`` and its rejects from ``raw_<table>``; ``extra`` rules (over the
    normalized relation: typed ``<col>``, text ``<col>__text``, ``_loaded_at``) come on top of
    the schema's, for what only the source knows (an event log's epoch unit, its load time)."""
    raw = raw_name(table)
    raw_types = {name: str(kind) for name, kind, *_ in con.execute(f"DESCRIBE {raw}").fetchall()}
    relation = _normalized_relation(table, raw_types)
    if table.references_customers:
        relation = (
            f"SELECT * FROM ({relation}) AS normalized LEFT JOIN (SELECT DISTINCT customer_id "
            f"AS {KNOWN_CUSTOMER} FROM {staged_name(CUSTOMERS)}) AS known "
            f'ON known.{KNOWN_CUSTOMER} = normalized."customer_id"'
        )
    return split_rows(
        con,
        engine,
        table.name,
        raw=raw,
        relation=relation,
        violations=[*_all_violations(table, raw_types), *extra],
        shown=[
            f"{_as_text(column, raw_types)} AS {quote_identifier(column.name)}"
            for column in table.columns
        ],
        staged=[(quote_identifier(column), column) for column in table.column_names],
        key=list(table.key),
    )


def split_rows(
    con: duckdb.DuckDBPyConnection,
    engine: Engine | None,
    name: str,
    *,
    raw: str,
    relation: str,
    violations: Sequence[Violation],
    shown: Sequence[str],
    staged: Sequence[tuple[str, str]],
    key: Sequence[str],
    before_commit: Callable[[], None] | None = None,
) -> StagingResult:
    """Rebuild ``stg_<name>`` and ``stg_<name>_rejects`` from ``relation`` (SQL over the table
    ``raw``, one row per raw row, with every column the rules, ``shown`` and ``staged`` read),
    in one transaction.

    Every row lands in exactly one of the two: a row breaking any rule goes to the rejects with
    ``shown`` (the values as they arrived), all its reasons and rule names; the others are
    ``staged`` ((SQL expression, column name) pairs), one version per ``key`` (the newest load
    wins). The queries are portable SQL (no lambdas, no QUALIFY), so the
    :mod:`churn.engine` chosen by configuration runs them: DuckDB in the warehouse, or Spark
    over the lake. ``before_commit`` may still refuse the result (raise), keeping the old tables.
    """
    from churn.engine.duckdb import DuckDBEngine

    engine = engine or DuckDBEngine()
    staged_table, rejects_table = f"stg_{name}", f"stg_{name}_rejects"
    lineage = ", ".join(LINEAGE_COLUMNS)
    broken = [f"coalesce({v.condition}, false)" for v in violations]
    is_valid = " AND ".join(f"NOT {condition}" for condition in broken)
    reasons = ", ".join(
        f"CASE WHEN {condition} THEN {quote_literal(v.rule + ': ')} || {v.reason} END"
        for condition, v in zip(broken, violations, strict=True)
    )
    rules = ", ".join(
        f"CASE WHEN {condition} THEN {quote_literal(v.rule)} END"
        for condition, v in zip(broken, violations, strict=True)
    )
    rejects_sql = (
        f"SELECT {', '.join(shown)}, concat_ws('; ', {reasons}) AS reject_reason, "
        f"list_sort(list_distinct([{rules}])) AS reject_rules, {lineage} "
        f"FROM ({relation}) AS checked WHERE NOT ({is_valid})"
    )
    columns = ", ".join(
        f"{expression} AS {quote_identifier(column)}" for expression, column in staged
    )
    valid_sql = f"SELECT {columns}, {lineage} FROM ({relation}) AS checked WHERE {is_valid}"
    keys = ", ".join(quote_identifier(column) for column in key)
    names = ", ".join(quote_identifier(column) for _, column in staged)
    staged_sql = (
        f"SELECT {names}, {lineage} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} "
        "ORDER BY _loaded_at DESC, _source_file DESC) AS _version "
        f"FROM ({valid_sql}) AS valid) AS versions WHERE _version = 1"
    )
    with transaction(con):
        engine.compute(con, rejects_table, rejects_sql, table=rejects_table, persist=True)
        engine.compute(con, staged_table, staged_sql, table=staged_table, persist=True)
        if before_commit is not None:
            before_commit()
    raw_rows = con.execute(f"SELECT count(*) FROM {quote_identifier(raw)}").fetchone()[0]
    rejected_rows = con.execute(f"SELECT count(*) FROM {rejects_table}").fetchone()[0]
    staged_rows = con.execute(f"SELECT count(*) FROM {staged_table}").fetchone()[0]
    valid_rows = raw_rows - rejected_rows  # every row is rejected or valid, never both
    conflicting = 0
    if valid_rows > staged_rows:  # only then can two versions of a key disagree
        engine.compute(
            con,
            "_conflicting_keys",
            f"SELECT count(*) AS keys FROM (SELECT {keys} FROM (SELECT DISTINCT {names} "
            f"FROM ({valid_sql}) AS valid) AS versions GROUP BY {keys} HAVING count(*) > 1) "
            "AS conflicting",
            table=f"{staged_table}_conflicts",
        )
        conflicting = con.execute("SELECT keys FROM _conflicting_keys").fetchone()[0]
        con.execute("DROP TABLE _conflicting_keys")
    by_rule = dict(
        con.execute(
            "SELECT rule, count(*) FROM (SELECT unnest(reject_rules) AS rule "
            f"FROM {rejects_table}) GROUP BY rule"
        ).fetchall()
    )
    return StagingResult(
        raw_rows=raw_rows,
        staged_rows=staged_rows,
        rejected_rows=rejected_rows,
        duplicates_dropped=valid_rows - staged_rows,
        conflicting_keys=conflicting,
        rejects_by_rule={rule: by_rule.get(rule, 0) for rule in RULES},
    )
