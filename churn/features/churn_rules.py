"""Who is observed and who churned, by a :class:`~churn.features.events.ChurnDefinition`.

The subscription schema's classic rule (signed up, not cancelled; churn = a cancellation within
the horizon) lives in :mod:`churn.features.snapshots` and :mod:`churn.features.labels`. Any
other definition (an inactivity rule, a cancellation event in the log, or both) is built here
from the staged ``stg_events`` (and ``stg_cancellations`` / ``stg_customers`` when present), so
an event log and a five-table source with ``inactive_days`` share one SQL.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from churn.features.events import ChurnDefinition
from churn.features.snapshots import OBSERVATION_DATES_SQL

_CANCELLED = """
cancelled AS (
    SELECT customer_id, min(cancel_date) AS cancel_date, min(churn_type) AS churn_type
    FROM (
        SELECT customer_id, cancel_date, churn_type FROM stg_cancellations{cancel_event}
    ) GROUP BY customer_id
)"""
_CANCEL_EVENT = """
        UNION ALL
        SELECT customer_id, CAST(min(event_time) AS DATE), 'cancellation_event'
        FROM stg_events WHERE event_type = $cancellation_event GROUP BY customer_id"""

_SNAPSHOTS = """
WITH dates AS ({dates}),
active_days AS (
    SELECT DISTINCT customer_id, CAST(event_time AS DATE) AS day FROM stg_events
),
first_seen AS (
    SELECT customer_id, min(day) AS first_day FROM active_days GROUP BY customer_id
),
people AS (
    -- Signup from the customers table when it says so, else the first event.
    SELECT coalesce(c.customer_id, f.customer_id) AS customer_id,
        coalesce(c.signup_date, f.first_day) AS signup_date
    FROM (SELECT customer_id, min(signup_date) AS signup_date FROM stg_customers
          GROUP BY customer_id) c
    FULL OUTER JOIN first_seen f ON f.customer_id = c.customer_id
),{cancelled}
{body}
"""
_CANCELLATION_BODY = """
SELECT p.customer_id, d.observation_date
FROM people p CROSS JOIN dates d
LEFT JOIN cancelled x ON x.customer_id = p.customer_id
WHERE p.signup_date < d.observation_date
  AND (x.cancel_date IS NULL OR x.cancel_date > d.observation_date)"""
_INACTIVITY_BODY = """
SELECT DISTINCT a.customer_id, d.observation_date
FROM active_days a
JOIN dates d ON a.day < d.observation_date AND a.day >= d.observation_date - {days}"""

_LABELS = """
WITH snap AS (
    SELECT customer_id, observation_date FROM customer_snapshots
    WHERE observation_date >= CAST($start AS DATE) AND observation_date < CAST($end AS DATE)
),{cancelled_cte}
after AS (
    -- Active days in the N days from the observation date on (inactivity rule).
    SELECT s.customer_id, s.observation_date, count(DISTINCT CAST(e.event_time AS DATE)) AS days
    FROM snap s JOIN stg_events e ON e.customer_id = s.customer_id
        AND e.event_time >= s.observation_date
        AND e.event_time < s.observation_date + {inactive_days}
    GROUP BY s.customer_id, s.observation_date
)
SELECT s.customer_id, s.observation_date,
    CASE WHEN s.observation_date + {label_days} <= CAST($data_end AS DATE)
        THEN {churned} END AS churned,
    CASE WHEN s.observation_date + {label_days} > CAST($data_end AS DATE) THEN NULL
         WHEN {cancelled_in_horizon} THEN {cancel_type}
         WHEN {inactive} THEN 'inactive' END AS churn_type,
    CAST(s.observation_date + {label_days} AS DATE) AS label_window_end
FROM snap s
LEFT JOIN after a ON a.customer_id = s.customer_id AND a.observation_date = s.observation_date
{cancel_join}
"""


def _cancelled_cte(churn: ChurnDefinition) -> str:
    event = _CANCEL_EVENT if churn.cancellation_event else ""
    return _CANCELLED.format(cancel_event=event)


def snapshots_query(churn: ChurnDefinition, start: str, end: str) -> tuple[str, dict[str, Any]]:
    """Who is observed at each observation date in ``[start, end)`` under ``churn``: not yet
    cancelled and/or not already lapsed. (SQL, named parameters)."""
    dates = OBSERVATION_DATES_SQL.replace("?", "CAST($start AS DATE)", 1).replace(
        "?", "CAST($end AS DATE)", 1
    )
    params: dict[str, Any] = {"start": start, "end": end}
    bodies = []
    if churn.cancellation:
        bodies.append(_CANCELLATION_BODY)
    if churn.inactive_days:
        bodies.append(_INACTIVITY_BODY.format(days=int(churn.inactive_days)))
    body = "\nINTERSECT\n".join(f"({b.strip()})" for b in bodies)
    if churn.cancellation_event:
        params["cancellation_event"] = churn.cancellation_event
    sql = _SNAPSHOTS.format(dates=dates, cancelled=_cancelled_cte(churn), body=body)
    return f"SELECT customer_id, observation_date FROM ({sql})", params


def labels_query(
    churn: ChurnDefinition, start: str, end: str, data_end: date | None
) -> tuple[str, dict[str, Any]]:
    """Labels of the snapshot rows in ``[start, end)`` under ``churn``; NULL while the longest
    window of the definition is still open at ``data_end``."""
    params: dict[str, Any] = {"start": start, "end": end, "data_end": data_end}
    horizon = int(churn.horizon_days)
    in_horizon = f"x.cancel_date <= s.observation_date + {horizon}"
    inactive = "coalesce(a.days, 0) = 0" if churn.inactive_days else "false"
    rules = []
    if churn.cancellation:
        rules.append(f"coalesce({in_horizon}, false)")
    if churn.inactive_days:
        rules.append(inactive)
    if churn.cancellation_event:
        params["cancellation_event"] = churn.cancellation_event
    sql = _LABELS.format(
        cancelled_cte=(_cancelled_cte(churn) + ",") if churn.cancellation else "",
        inactive_days=int(churn.inactive_days or 0),
        label_days=int(churn.label_days),
        churned=" OR ".join(rules),
        cancelled_in_horizon=in_horizon if churn.cancellation else "false",
        cancel_type="coalesce(x.churn_type, 'cancellation')" if churn.cancellation else "NULL",
        inactive=inactive,
        cancel_join="LEFT JOIN cancelled x ON x.customer_id = s.customer_id"
        if churn.cancellation
        else "",
    )
    return sql, params
