"""No silent gaps: the source's customers that got no score on a date, and why.

A retention team that imports ``customer_scores`` cannot see who is missing from it: a customer
whose row broke a staging rule simply has no score. This module lists, for one observation
date, every customer the source knows by then that is not in ``customer_scores`` on that date,
with the most specific reason found:

* ``rejected``: a row of the customer broke a staging rule (``stg_customers_rejects``, with its
  staging reason), so no feature row could be built;
* ``cancelled``: cancelled in the month before the date (``stg_cancellations``): they left
  since the previous list;
* ``not_observed``: known to the source (a staged profile that signed up before the date, or an
  event before it) but not observed on the date under the churn definition (lapsed past an
  inactivity window, or, for a flat table, a row of another month), when they were scored the
  previous month or never scored at all.

Each gap is reported when it opens: a customer who left months ago was listed in that month's
file, and listing every former customer again each month would bury the new gaps. Rejected
rows are listed every month, since they are never scored until the data is fixed.

It reads only what staging wrote, whatever the source kind, by asking the warehouse which tables
and columns exist; every value is bound, every identifier quoted.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import duckdb

from churn.sql import quote_identifier, quote_literal

if TYPE_CHECKING:
    import pyarrow as pa

KINDS = ("rejected", "cancelled", "not_observed")
COLUMNS = ("customer_id", "observation_date", "reason_kind", "reason")
NOT_OBSERVED = (
    "not observed on the date under the churn definition (already churned, inactive past its "
    "window, or not a customer on that date)"
)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The columns of ``table`` in the warehouse's ``main`` schema (none when it is absent).
    Results are fetched whole: DuckDB 2 refuses a relation while a result is unfinished."""
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
        "AND table_name = ?",
        [table],
    ).fetchall()
    return {row[0] for row in rows}


def _rejects_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The customer id column of ``stg_customers_rejects`` (which shows the row as it
    arrived): ``customer_id`` for the contract's tables, the file's id column for a flat one."""
    columns = _columns(con, "stg_customers_rejects")
    if "customer_id" in columns:
        return "customer_id"
    if _columns(con, "flat_columns"):
        found = con.execute("SELECT source_column FROM flat_columns WHERE role = 'id'").fetchall()
        if found and found[0][0] in columns:
            return found[0][0]
    return None


def _candidates(con: duckdb.DuckDBPyConnection) -> list[str]:
    """SELECTs of (customer_id, reason_kind, reason, priority, since) over the staged tables,
    each naming its columns (a UNION takes its names from whichever part comes first);
    each takes the observation date as the parameter ``$day``. ``since`` is when a cancelled
    customer left."""
    parts: list[str] = []
    rejects_id = _rejects_id(con)
    if rejects_id is not None:
        parts.append(
            f"SELECT CAST({quote_identifier(rejects_id)} AS VARCHAR) AS customer_id, "
            "'rejected' AS reason_kind, 'rejected at staging: ' || reject_reason AS reason, "
            "1 AS priority, CAST(NULL AS DATE) AS since FROM stg_customers_rejects"
        )
    if "cancel_date" in _columns(con, "stg_cancellations"):
        parts.append(
            "SELECT customer_id, 'cancelled' AS reason_kind, 'cancelled on ' || "
            "CAST(min(cancel_date) AS VARCHAR) || ', before the date: already churned' AS "
            "reason, 2 AS priority, CAST(min(cancel_date) AS DATE) AS since "
            "FROM stg_cancellations "
            "WHERE cancel_date < $day GROUP BY customer_id"
        )
    customers = _columns(con, "stg_customers")
    if "customer_id" in customers:
        if "signup_date" in customers:
            when = "signup_date IS NULL OR signup_date < $day"
        elif "observation_date" in customers:
            when = "observation_date <= $day"
        else:
            when = "TRUE"
        parts.append(
            f"SELECT customer_id, 'not_observed' AS reason_kind, "
            f"{quote_literal(NOT_OBSERVED)} AS reason, 3 AS priority, "
            f"CAST(NULL AS DATE) AS since FROM stg_customers WHERE {when}"
        )
    if {"customer_id", "event_time"} <= _columns(con, "stg_events"):
        parts.append(
            f"SELECT DISTINCT customer_id, 'not_observed' AS reason_kind, "
            f"{quote_literal(NOT_OBSERVED)} AS reason, 3 AS priority, "
            "CAST(NULL AS DATE) AS since FROM stg_events WHERE event_time < $day"
        )
    return parts


def unscored(
    con: duckdb.DuckDBPyConnection, day: date, scores_table: str = "customer_scores"
) -> pa.Table:
    """The customers of the source not in ``scores_table`` on ``day``, one row each with the
    most specific reason (rejected, then cancelled, then not observed); rejected rows without
    an id are listed one by one with a missing ``customer_id``."""
    import pyarrow as pa

    parts = _candidates(con)
    if not parts:
        return pa.table({name: pa.array([], pa.string()) for name in COLUMNS})
    scored = quote_identifier(scores_table)
    union = " UNION ALL ".join(parts)
    return con.sql(
        f"""
        WITH known AS ({union}),
        missing AS (
            SELECT * FROM known k WHERE k.customer_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM {scored} s
                WHERE s.customer_id = k.customer_id AND s.observation_date = $day
            )
        ),
        best AS (
            SELECT * FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY customer_id ORDER BY priority, reason) AS pick
                FROM missing WHERE customer_id IS NOT NULL
            ) WHERE pick = 1
        )
        SELECT customer_id, CAST($day AS DATE) AS observation_date, reason_kind, reason
        FROM best b
        WHERE reason_kind = 'rejected'
            OR (reason_kind = 'cancelled' AND since >= CAST($day - INTERVAL 1 MONTH AS DATE))
            OR (reason_kind = 'not_observed' AND (
                EXISTS (SELECT 1 FROM {scored} s WHERE s.customer_id = b.customer_id
                    AND s.observation_date = CAST($day - INTERVAL 1 MONTH AS DATE))
                OR NOT EXISTS (SELECT 1 FROM {scored} s WHERE s.customer_id = b.customer_id
                    AND s.observation_date < $day)))
        UNION ALL
        SELECT NULL, CAST($day AS DATE), reason_kind, reason FROM missing
        WHERE customer_id IS NULL
        ORDER BY 3, 1
        """,
        params={"day": day},
    ).to_arrow_table()


def counts(table: pa.Table) -> dict[str, int]:
    """Unscored customers per reason kind (every kind present, zero when none)."""
    kinds = table.column("reason_kind").to_pylist() if table.num_rows else []
    return {kind: kinds.count(kind) for kind in KINDS}
