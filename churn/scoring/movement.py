"""Month over month: each score beside the same customer's score of the previous month.

The first question a retention team asks of a new list is "who became high risk this month?".
Each row gets ``previous_probability`` and ``previous_tier`` (the customer's row one month
earlier in ``customer_scores``, NULL when they were not scored then) and ``tier_change``:

* ``new``: not scored last month (a new customer, or the first scored month);
* ``new_high``: ``high`` now, not ``high`` last month (the ones to act on first);
* ``up`` / ``down``: a riskier / safer tier than last month (other than ``new_high``);
* ``same``: the same tier.

Done in SQL over the warehouse, so a whole backfill window is one statement: the previous
month is looked up among the rows being written (a multi-month run) and the months already in
the table outside the window. A month re-scored later does not refresh the next month's
``previous_*`` until that month is scored again, as with any derived partition.
"""

from __future__ import annotations

import duckdb

from churn.sql import quote_identifier

TIER_CHANGES = ("new_high", "up", "down", "same", "new")

COLUMN_DESCRIPTIONS = {
    "previous_probability": "The customer's churn_probability one month earlier (NULL when "
    "not scored then).",
    "previous_tier": "The customer's risk_tier one month earlier (NULL when not scored then).",
    "tier_change": "new_high (high now, not last month), up, down, same, or new (not scored "
    "last month).",
}

_RANK = "CASE {tier} WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END"


def add_previous_month(
    con: duckdb.DuckDBPyConnection, new_rows: str, table: str, window: str, table_exists: bool
) -> None:
    """Replace the temp table ``new_rows`` by itself plus the three month-over-month columns.

    ``table`` is the scores table whose rows outside ``window`` (SQL over ``observation_date``,
    built from dates by the caller) may hold the previous months; it is read only when
    ``table_exists``. Only its key, probability and tier are read, which every shape of the
    table has had."""
    new, old = quote_identifier(new_rows), quote_identifier(table)
    earlier = (
        f" UNION ALL SELECT customer_id, observation_date, churn_probability, risk_tier "
        f"FROM {old} WHERE NOT ({window})"
        if table_exists
        else ""
    )
    now, before = _RANK.format(tier="n.risk_tier"), _RANK.format(tier="p.risk_tier")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _with_previous AS
        WITH prior AS (
            SELECT customer_id, observation_date, churn_probability, risk_tier FROM {new}
            {earlier}
        )
        SELECT n.* EXCLUDE (risk_rank, scored_at),
            p.churn_probability AS previous_probability,
            p.risk_tier AS previous_tier,
            CASE
                WHEN p.risk_tier IS NULL THEN 'new'
                WHEN n.risk_tier = 'high' AND p.risk_tier <> 'high' THEN 'new_high'
                WHEN {now} > {before} THEN 'up'
                WHEN {now} < {before} THEN 'down'
                ELSE 'same'
            END AS tier_change,
            n.risk_rank, n.scored_at
        FROM {new} n
        LEFT JOIN prior p ON p.customer_id = n.customer_id
            AND p.observation_date = CAST(n.observation_date - INTERVAL 1 MONTH AS DATE)
        """
    )
    con.execute(f"DROP TABLE {new}")
    con.execute(f"ALTER TABLE _with_previous RENAME TO {new}")


def tier_changes(con: duckdb.DuckDBPyConnection, table: str, day: object) -> list[tuple]:
    """(tier_change, customers, of them now high) on ``day``, in :data:`TIER_CHANGES` order:
    how many moved, for the asset's metadata."""
    rows = con.execute(
        f"SELECT tier_change, count(*), count(*) FILTER (WHERE risk_tier = 'high') "
        f"FROM {quote_identifier(table)} WHERE observation_date = ? GROUP BY ALL",
        [day],
    ).fetchall()
    found = {change: (customers, high) for change, customers, high in rows}
    return [(change, *found.get(change, (0, 0))) for change in TIER_CHANGES]
