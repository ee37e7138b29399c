"""Raw → staging: type, validate and deduplicate one table in SQL, keeping every reject's reason.

The rules come from :mod:`churn.ingest.schema`. Each broken rule yields a reason such as
``"out_of_range: monthly_fee=-5 is below 0"``; the part before the colon is the rule name, which
the asset checks count. A row that breaks any rule goes to ``stg_<table>_rejects`` with all its
reasons and the raw values exactly as they arrived, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb

from churn.ingest.schema import CUSTOMERS, Column, Table
from churn.ingest.values import typed_value
from churn.sql import quote_identifier, quote_literal
from churn.warehouse import transaction

RULES = ("missing_required", "invalid_type", "not_allowed", "out_of_range", "unknown_customer")
"""Rule names, in the order a data engineer would fix them."""

LINEAGE_COLUMNS = ("_loaded_at", "_source_file")


def staged_name(table: Table) -> str:
    return f"stg_{table.name}"


def rejects_name(table: Table) -> str:
    return f"stg_{table.name}_rejects"


def raw_name(table: Table) -> str:
    return f"raw_{table.name}"


def _text_name(column: Column) -> str:
    return quote_identifier(f"{column.name}__text")


def _arrives_typed(column: Column, raw_types: Mapping[str, str]) -> bool:
    """A column that already has its staged type (Parquet) needs no parsing."""
    return raw_types.get(column.name, "VARCHAR").upper() == column.sql_type


def _text_expression(column: Column, raw_types: Mapping[str, str]) -> str | None:
    """The raw value as text, NULL when blank (blanks in CSVs mean missing); None when the
    column arrives typed. Trimming costs more than all the rules together on tens of millions
    of rows, so only values that are parsed or matched against categories are trimmed."""
    if _arrives_typed(column, raw_types) and column.allowed is None:
        if column.sql_type != "VARCHAR":
            return None
        return f"nullif({quote_identifier(column.name)}, '')"
    raw = f"CAST({quote_identifier(column.name)} AS VARCHAR)"
    if column.sql_type == "VARCHAR" and column.allowed is None and column.parse is None:
        return f"nullif({raw}, '')"
    return f"nullif(trim({raw}), '')"


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


def _all_violations(table: Table, raw_types: Mapping[str, str]) -> list[tuple[str, str, str]]:
    found = [item for column in table.columns for item in _violations(column, raw_types)]
    if table.references_customers:
        found.append(
            (
                "unknown_customer",
                '"customer_id" IS NOT NULL AND "customer_id" NOT IN '
                f"(SELECT customer_id FROM {staged_name(CUSTOMERS)})",
                f"'customer_id=' || \"customer_id\" || ' is not in {staged_name(CUSTOMERS)}'",
            )
        )
    return found


def _reasons_expression(table: Table, raw_types: Mapping[str, str]) -> str:
    items = [
        f"CASE WHEN coalesce({condition}, false) THEN '{rule}: ' || {reason} END"
        for rule, condition, reason in _all_violations(table, raw_types)
    ]
    return "list_filter([" + ",\n    ".join(items) + "], lambda reason: reason IS NOT NULL)"


def _is_valid_expression(table: Table, raw_types: Mapping[str, str]) -> str:
    return " AND ".join(
        f"NOT coalesce({condition}, false)" for _, condition, _ in _all_violations(table, raw_types)
    )


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


def stage_table(con: duckdb.DuckDBPyConnection, table: Table) -> StagingResult:
    """Rebuild ``stg_<table>`` and its rejects from ``raw_<table>`` in one transaction."""
    raw, staged, rejects = raw_name(table), staged_name(table), rejects_name(table)
    raw_types = {name: str(kind) for name, kind, *_ in con.execute(f"DESCRIBE {raw}").fetchall()}
    key = ", ".join(quote_identifier(column) for column in table.key)
    columns = ", ".join(quote_identifier(column) for column in table.column_names)
    as_arrived = ", ".join(
        f"{_as_text(column, raw_types)} AS {quote_identifier(column.name)}"
        for column in table.columns
    )
    lineage = ", ".join(LINEAGE_COLUMNS)
    is_valid = _is_valid_expression(table, raw_types)
    with transaction(con):
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW _normalized AS {_normalized_relation(table, raw_types)}"
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE {rejects} AS
            SELECT {as_arrived},
                array_to_string(reasons, '; ') AS reject_reason,
                list_distinct(list_transform(reasons, lambda r: split_part(r, ':', 1)))
                    AS reject_rules,
                {lineage}
            FROM (
                SELECT *, {_reasons_expression(table, raw_types)} AS reasons
                FROM _normalized WHERE NOT ({is_valid})
            )
            """
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _valid AS "
            f"SELECT {columns}, {lineage} FROM _normalized WHERE {is_valid}"
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE {staged} AS
            SELECT * FROM _valid
            QUALIFY row_number() OVER (
                PARTITION BY {key} ORDER BY _loaded_at DESC, _source_file DESC
            ) = 1
            """
        )
        valid_rows = con.execute("SELECT count(*) FROM _valid").fetchone()[0]
        staged_rows = con.execute(f"SELECT count(*) FROM {staged}").fetchone()[0]
        conflicting = 0
        if valid_rows > staged_rows:  # only then can two versions of a key disagree
            conflicting = con.execute(
                f"SELECT count(*) FROM (SELECT {key} FROM _valid GROUP BY {key} "
                f"HAVING count(DISTINCT ({columns})) > 1)"
            ).fetchone()[0]
        con.execute("DROP TABLE _valid")
        con.execute("DROP VIEW _normalized")
    raw_rows = con.execute(f"SELECT count(*) FROM {raw}").fetchone()[0]
    rejected_rows = con.execute(f"SELECT count(*) FROM {rejects}").fetchone()[0]
    by_rule = dict(
        con.execute(
            f"SELECT rule, count(*) FROM (SELECT unnest(reject_rules) AS rule FROM {rejects}) "
            "GROUP BY rule"
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
