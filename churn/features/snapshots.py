"""Who is observed when: snapshot membership in SQL.

A customer is *active* at an observation date T when they signed up before T and had not left
by T. Each active customer gets one snapshot row per monthly observation date; the features and
the label (:mod:`churn.features.labels`) are computed for exactly these rows.
"""

from __future__ import annotations

OBSERVATION_DATES_SQL = """
SELECT CAST(month_start AS DATE) AS observation_date
FROM (
    -- The first day of each month in [start, end): generate_series and unnest rather than
    -- DuckDB's range table function, so that Spark runs it too (as sequence and explode).
    SELECT unnest(generate_series(CAST(? AS DATE), CAST(? AS DATE) - 1, INTERVAL 1 MONTH))
        AS month_start
)
"""

ACTIVE_CUSTOMERS_SQL = """
SELECT c.customer_id, d.observation_date
FROM stg_customers c
CROSS JOIN ({dates}) d
LEFT JOIN stg_cancellations x USING (customer_id)
WHERE c.signup_date < d.observation_date
  AND (x.cancel_date IS NULL OR x.cancel_date > d.observation_date)
"""


def active_customers_sql() -> str:
    """Active customers for the observation dates in ``[?, ?)`` (two date parameters)."""
    return ACTIVE_CUSTOMERS_SQL.format(dates=OBSERVATION_DATES_SQL)
