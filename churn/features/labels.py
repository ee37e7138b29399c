"""What happened next: the churn label of each snapshot row.

The label asks whether the customer left within the horizon after the observation date T; it
exists only once the whole horizon lies inside the data, so the newest snapshot stays unlabeled:
it is the one the model scores.
"""

from __future__ import annotations

from datetime import date

import duckdb

DATA_END_SQL = """
SELECT CAST(greatest(
    (SELECT max(event_time) FROM stg_events),
    (SELECT max(payment_date) FROM stg_payments),
    (SELECT max(created_at) FROM stg_tickets),
    (SELECT max(cancel_date) - 1 FROM stg_cancellations)
) AS DATE) + 1
"""

LABELS_SQL = """
SELECT s.customer_id, s.observation_date,
    CASE WHEN s.observation_date + $horizon <= $data_end
        THEN x.cancel_date IS NOT NULL AND x.cancel_date <= s.observation_date + $horizon
    END AS churned,
    CASE WHEN x.cancel_date <= s.observation_date + $horizon THEN x.churn_type END AS churn_type,
    CAST(s.observation_date + $horizon AS DATE) AS label_window_end
FROM customer_snapshots s
LEFT JOIN stg_cancellations x USING (customer_id)
WHERE s.observation_date >= $start AND s.observation_date < $end
"""


def data_end(con: duckdb.DuckDBPyConnection) -> date | None:
    """The first day the sources know nothing about; labels must end before it."""
    return con.execute(DATA_END_SQL).fetchone()[0]


def labels_sql() -> str:
    """Labels for the snapshot rows in ``[$start, $end)``; NULL while the horizon is open."""
    return LABELS_SQL
