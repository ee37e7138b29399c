"""The one definition of the model's features: point-in-time SQL over the staged tables.

Training (the ``customer_features`` asset) and serving (``/score_events``) run this exact SQL,
the first over the warehouse, the second over an in-memory DuckDB holding one customer's
history. Everything a feature may see happened strictly before ``observation_date``: events,
payments and tickets are cut with ``< observation_date``, and the profile is the one captured at
signup. That rule is what the leakage check in :func:`leakage_differences` verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Feature:
    """A model input: its SQL type, how models should treat it, and what it means."""

    name: str
    sql_type: str
    kind: FeatureKind
    description: str
    nullable: bool = False
    time_growing: bool = False
    """The value grows with the observation date by construction (tenure, days since signup):
    the same customers a month later have it one month higher, so drift monitoring must not
    read ageing as a change in the data (:mod:`churn.monitoring.drift`, which ages it by the
    elapsed days: a flagged numeric feature counts days)."""


def _count(name: str, description: str) -> Feature:
    return Feature(name, "INTEGER", "numeric", description)


def _ratio(name: str, description: str) -> Feature:
    return Feature(name, "DOUBLE", "numeric", description)


FEATURES: tuple[Feature, ...] = (
    # Profile, as captured at signup.
    Feature("plan", "VARCHAR", "categorical", "Subscribed plan tier."),
    Feature("contract", "VARCHAR", "categorical", "monthly or annual commitment."),
    Feature("payment_method", "VARCHAR", "categorical", "How the customer pays."),
    Feature("region", "VARCHAR", "categorical", "Sales region."),
    Feature("acquisition_channel", "VARCHAR", "categorical", "Channel the customer came through."),
    _ratio("monthly_fee", "Monthly price."),
    _count("age", "Age of the account holder in years."),
    Feature("tenure_days", "INTEGER", "numeric", "Days since signup.", time_growing=True),
    _count(
        "days_to_renewal",
        "Days until the next commitment ends: the signup anniversary for annual contracts, the "
        "next billing day for monthly ones.",
    ),
    # Usage.
    _count("events_7d", "Events in the 7 days before the observation date."),
    _count("events_14d", "Events in the 14 days before the observation date."),
    _count("events_30d", "Events in the 30 days before the observation date."),
    _count("events_90d", "Events in the 90 days before the observation date."),
    _count("logins_30d", "Logins in the last 30 days."),
    _count("page_views_30d", "Page views in the last 30 days."),
    _count("feature_uses_30d", "Feature uses in the last 30 days."),
    _count("exports_30d", "Exports in the last 30 days."),
    _count("shares_30d", "Shares in the last 30 days."),
    _count("feature_uses_90d", "Feature uses in the last 90 days."),
    _count("active_days_7d", "Days with at least one event among the last 7."),
    _count("active_days_14d", "Days with at least one event among the last 14."),
    _count("active_days_30d", "Days with at least one event among the last 30."),
    _count("active_days_90d", "Days with at least one event among the last 90."),
    _count("sessions_30d", "Sessions in the last 30 days (a session counted once per day)."),
    _count("sessions_90d", "Sessions in the last 90 days (a session counted once per day)."),
    _ratio("avg_session_minutes_30d", "Mean session length in minutes over the last 30 days."),
    _count(
        "days_since_last_event",
        "Days since the last event, or since signup for a customer with no event yet.",
    ),
    _ratio(
        "events_trend_7d_30d",
        "Smoothed ratio of the 7-day event rate to the 30-day rate (1 = steady, <1 = decaying).",
    ),
    _ratio(
        "events_ewm_7d",
        "Exponentially weighted events per day, half-life 7 days: the current usage habit.",
    ),
    _ratio(
        "events_ewm_30d",
        "Exponentially weighted events per day, half-life 30 days: the slower usage habit.",
    ),
    _ratio(
        "sessions_ewm_7d",
        "Exponentially weighted sessions per day, half-life 7 days: the current session habit.",
    ),
    _ratio(
        "sessions_ewm_30d",
        "Exponentially weighted sessions per day, half-life 30 days: the slower session habit.",
    ),
    _ratio(
        "lifetime_sessions_per_day",
        "Sessions per day since the customer's first recorded event: their own usual habit.",
    ),
    _ratio(
        "lifetime_events_per_day",
        "Events per day since the customer's first recorded event: their own usual level.",
    ),
    _ratio(
        "events_trend_14d_lifetime",
        "Smoothed ratio of the 14-day event rate to the customer's lifetime rate.",
    ),
    _ratio(
        "events_trend_30d_90d",
        "Smoothed ratio of the 30-day event rate to the 90-day rate (1 = steady, <1 = decaying).",
    ),
    # Billing.
    _count("failed_payments_30d", "Failed payment attempts in the last 30 days."),
    _count("failed_payments_60d", "Failed payment attempts in the last 60 days."),
    _count("failed_payments_90d", "Failed payment attempts in the last 90 days."),
    _ratio("amount_paid_90d", "Amount successfully charged in the last 90 days."),
    # Support.
    _count("tickets_30d", "Support tickets opened in the last 30 days."),
    _count("tickets_90d", "Support tickets opened in the last 90 days."),
    _count("billing_tickets_90d", "Billing tickets in the last 90 days."),
    _count("technical_tickets_90d", "Technical tickets in the last 90 days."),
    _count("high_priority_tickets_90d", "High-priority tickets in the last 90 days."),
    _count("cancellation_requests_90d", "Tickets asking how to cancel in the last 90 days."),
)

FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "categorical")
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "numeric")
KEY_COLUMNS = ("customer_id", "observation_date")
LOOKBACK_DAYS = 90
"""The longest window: rows older than this before an observation date cannot change features
other than ``days_since_last_event``."""

_FEATURE_SQL = """
WITH snap AS (
    SELECT DISTINCT customer_id, CAST(observation_date AS DATE) AS observation_date
    FROM {snapshots}
),
sessions AS (
    -- One row per customer, day and session, then one per customer and day (below): a session
    -- counts once per day by being a group, which costs one hash aggregate less than
    -- count(DISTINCT session_id) (DuckDB computes that apart and joins it back).
    SELECT customer_id,
        CAST(event_time AS DATE) AS day,
        session_id,
        count(*) AS n_events,
        count(*) FILTER (WHERE event_type = 'login') AS n_logins,
        count(*) FILTER (WHERE event_type = 'page_view') AS n_page_views,
        count(*) FILTER (WHERE event_type = 'feature_use') AS n_feature_uses,
        count(*) FILTER (WHERE event_type = 'export') AS n_exports,
        count(*) FILTER (WHERE event_type = 'share') AS n_shares,
        -- Integer milliseconds: float sums depend on the order DuckDB's threads add them in,
        -- and online/offline parity must be exact.
        sum(CAST(round(duration_seconds * 1000) AS BIGINT)) AS milliseconds
    FROM {events}
    WHERE customer_id IN (SELECT customer_id FROM snap)
      AND event_time < (SELECT max(observation_date) FROM snap)
    GROUP BY ALL
),
daily AS (
    -- One row per customer and active day: the windows below sum days, not raw events.
    SELECT customer_id, day,
        CAST(sum(n_events) AS BIGINT) AS n_events,
        CAST(sum(n_logins) AS BIGINT) AS n_logins,
        CAST(sum(n_page_views) AS BIGINT) AS n_page_views,
        CAST(sum(n_feature_uses) AS BIGINT) AS n_feature_uses,
        CAST(sum(n_exports) AS BIGINT) AS n_exports,
        CAST(sum(n_shares) AS BIGINT) AS n_shares,
        count(session_id) AS n_sessions,
        CAST(sum(milliseconds) AS BIGINT) AS milliseconds
    FROM sessions
    GROUP BY customer_id, day
),
usage AS (
    SELECT s.customer_id, s.observation_date,
        sum(d.n_events) FILTER (WHERE d.day >= s.observation_date - 7) AS events_7d,
        sum(d.n_events) FILTER (WHERE d.day >= s.observation_date - 14) AS events_14d,
        sum(d.n_events) FILTER (WHERE d.day >= s.observation_date - 30) AS events_30d,
        sum(d.n_events) AS events_90d,
        sum(d.n_logins) FILTER (WHERE d.day >= s.observation_date - 30) AS logins_30d,
        sum(d.n_page_views) FILTER (WHERE d.day >= s.observation_date - 30) AS page_views_30d,
        sum(d.n_feature_uses) FILTER (WHERE d.day >= s.observation_date - 30) AS feature_uses_30d,
        sum(d.n_exports) FILTER (WHERE d.day >= s.observation_date - 30) AS exports_30d,
        sum(d.n_shares) FILTER (WHERE d.day >= s.observation_date - 30) AS shares_30d,
        sum(d.n_feature_uses) AS feature_uses_90d,
        count(*) FILTER (WHERE d.day >= s.observation_date - 7) AS active_days_7d,
        count(*) FILTER (WHERE d.day >= s.observation_date - 14) AS active_days_14d,
        count(*) FILTER (WHERE d.day >= s.observation_date - 30) AS active_days_30d,
        count(*) AS active_days_90d,
        sum(d.n_sessions) FILTER (WHERE d.day >= s.observation_date - 30) AS sessions_30d,
        sum(d.n_sessions) AS sessions_90d,
        -- Integer weights (per mille) keep the weighted sums exact, hence order-independent.
        sum(d.n_events * CAST(round(1000 * pow(0.5,
            date_diff('day', d.day, s.observation_date) / 7.0)) AS BIGINT)) AS weighted_events_7d,
        sum(d.n_events * CAST(round(1000 * pow(0.5,
            date_diff('day', d.day, s.observation_date) / 30.0)) AS BIGINT)) AS weighted_events_30d,
        sum(d.n_sessions * CAST(round(1000 * pow(0.5,
            date_diff('day', d.day, s.observation_date) / 7.0)) AS BIGINT)) AS weighted_sessions_7d,
        sum(d.n_sessions * CAST(round(1000 * pow(0.5,
            date_diff('day', d.day, s.observation_date) / 30.0)) AS BIGINT))
            AS weighted_sessions_30d,
        sum(d.milliseconds) FILTER (WHERE d.day >= s.observation_date - 30) AS milliseconds_30d
    FROM snap s
    JOIN daily d ON d.customer_id = s.customer_id
        AND d.day < s.observation_date
        AND d.day >= s.observation_date - 90
    GROUP BY ALL
),
timeline AS (
    -- Snapshot rows and active days of a customer in one sequence, a snapshot before an active
    -- day of the same date: running totals read at a snapshot row cover exactly the days
    -- strictly before it. An as-of join in plain window SQL, so every engine runs it.
    SELECT customer_id, observation_date AS day, 0 AS is_day, observation_date,
        0 AS n_events, 0 AS n_sessions
    FROM snap
    UNION ALL
    SELECT customer_id, day, 1 AS is_day, NULL AS observation_date, n_events, n_sessions
    FROM daily
),
history AS (
    SELECT customer_id, observation_date, is_day,
        max(CASE WHEN is_day = 1 THEN day END) OVER running AS last_event_day,
        sum(n_events) OVER running AS cumulative_events,
        sum(n_sessions) OVER running AS cumulative_sessions,
        -- Over the same running frame (one sort for all four): read where a day precedes the
        -- row, it is the customer's first day, as a whole-partition min would be.
        min(CASE WHEN is_day = 1 THEN day END) OVER running AS first_day
    FROM timeline
    WINDOW running AS (PARTITION BY customer_id ORDER BY day, is_day
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
last_activity AS (
    SELECT customer_id, observation_date, last_event_day,
        CASE WHEN last_event_day IS NOT NULL THEN cumulative_events
            / greatest(date_diff('day', first_day, observation_date), 1) END AS lifetime_rate,
        CASE WHEN last_event_day IS NOT NULL THEN cumulative_sessions
            / greatest(date_diff('day', first_day, observation_date), 1) END
            AS lifetime_session_rate
    FROM history
    WHERE is_day = 0
),
billing AS (
    SELECT s.customer_id, s.observation_date,
        count(*) FILTER (WHERE p.status = 'failed' AND p.payment_date >= s.observation_date - 30)
            AS failed_payments_30d,
        count(*) FILTER (WHERE p.status = 'failed' AND p.payment_date >= s.observation_date - 60)
            AS failed_payments_60d,
        count(*) FILTER (WHERE p.status = 'failed') AS failed_payments_90d,
        coalesce(sum(CAST(round(p.amount * 100) AS BIGINT))
            FILTER (WHERE p.status = 'succeeded'), 0) AS cents_paid_90d
    FROM snap s
    JOIN {payments} p ON p.customer_id = s.customer_id
        AND p.payment_date < s.observation_date
        AND p.payment_date >= s.observation_date - 90
    GROUP BY ALL
),
support AS (
    SELECT s.customer_id, s.observation_date,
        count(*) FILTER (WHERE t.created_at >= s.observation_date - 30) AS tickets_30d,
        count(*) AS tickets_90d,
        count(*) FILTER (WHERE t.category = 'billing') AS billing_tickets_90d,
        count(*) FILTER (WHERE t.category = 'technical') AS technical_tickets_90d,
        count(*) FILTER (WHERE t.priority = 'high') AS high_priority_tickets_90d,
        count(*) FILTER (WHERE t.category = 'cancellation_request') AS cancellation_requests_90d
    FROM snap s
    JOIN {tickets} t ON t.customer_id = s.customer_id
        AND t.created_at < s.observation_date
        AND t.created_at >= s.observation_date - 90
    GROUP BY ALL
),
renewal AS (
    -- Exact calendar arithmetic (not days / 365.25) so online and offline agree to the day.
    SELECT s.customer_id, s.observation_date, c.contract,
        c.signup_date + to_years(date_diff('year', c.signup_date, s.observation_date))
            AS anniversary,
        c.signup_date + to_years(date_diff('year', c.signup_date, s.observation_date) + 1)
            AS next_anniversary,
        c.signup_date + to_months(date_diff('month', c.signup_date, s.observation_date))
            AS billing_day,
        c.signup_date + to_months(date_diff('month', c.signup_date, s.observation_date) + 1)
            AS next_billing_day
    FROM snap s JOIN {customers} c USING (customer_id)
),
renewal_days AS (
    SELECT customer_id, observation_date,
        CASE WHEN contract = 'annual'
            THEN date_diff('day', observation_date, CASE WHEN anniversary >= observation_date
                THEN anniversary ELSE next_anniversary END)
            ELSE date_diff('day', observation_date, CASE WHEN billing_day >= observation_date
                THEN billing_day ELSE next_billing_day END)
        END AS raw_days_to_renewal
    FROM renewal
)
SELECT
    s.customer_id,
    s.observation_date,
    c.plan,
    c.contract,
    c.payment_method,
    c.region,
    c.acquisition_channel,
    CAST(c.monthly_fee AS DOUBLE) AS monthly_fee,
    CAST(c.age AS INTEGER) AS age,
    CAST(date_diff('day', c.signup_date, s.observation_date) AS INTEGER) AS tenure_days,
    CAST(greatest(r.raw_days_to_renewal, 0) AS INTEGER) AS days_to_renewal,
    CAST(coalesce(u.events_7d, 0) AS INTEGER) AS events_7d,
    CAST(coalesce(u.events_14d, 0) AS INTEGER) AS events_14d,
    CAST(coalesce(u.events_30d, 0) AS INTEGER) AS events_30d,
    CAST(coalesce(u.events_90d, 0) AS INTEGER) AS events_90d,
    CAST(coalesce(u.logins_30d, 0) AS INTEGER) AS logins_30d,
    CAST(coalesce(u.page_views_30d, 0) AS INTEGER) AS page_views_30d,
    CAST(coalesce(u.feature_uses_30d, 0) AS INTEGER) AS feature_uses_30d,
    CAST(coalesce(u.exports_30d, 0) AS INTEGER) AS exports_30d,
    CAST(coalesce(u.shares_30d, 0) AS INTEGER) AS shares_30d,
    CAST(coalesce(u.feature_uses_90d, 0) AS INTEGER) AS feature_uses_90d,
    CAST(coalesce(u.active_days_7d, 0) AS INTEGER) AS active_days_7d,
    CAST(coalesce(u.active_days_14d, 0) AS INTEGER) AS active_days_14d,
    CAST(coalesce(u.active_days_30d, 0) AS INTEGER) AS active_days_30d,
    CAST(coalesce(u.active_days_90d, 0) AS INTEGER) AS active_days_90d,
    CAST(coalesce(u.sessions_30d, 0) AS INTEGER) AS sessions_30d,
    CAST(coalesce(u.sessions_90d, 0) AS INTEGER) AS sessions_90d,
    CAST(coalesce(u.milliseconds_30d / 60000.0 / nullif(u.sessions_30d, 0), 0) AS DOUBLE)
        AS avg_session_minutes_30d,
    CAST(date_diff('day', coalesce(l.last_event_day, c.signup_date), s.observation_date)
        AS INTEGER) AS days_since_last_event,
    CAST((coalesce(u.events_7d, 0) * 30.0 / 7 + 1) / (coalesce(u.events_30d, 0) + 1) AS DOUBLE)
        AS events_trend_7d_30d,
    -- Divided by the sum of the weights over days 1..90 (10.1 and 43.3): events per day.
    CAST(coalesce(u.weighted_events_7d, 0) / 1000.0 / 10.1 AS DOUBLE) AS events_ewm_7d,
    CAST(coalesce(u.weighted_events_30d, 0) / 1000.0 / 43.3 AS DOUBLE) AS events_ewm_30d,
    CAST(coalesce(u.weighted_sessions_7d, 0) / 1000.0 / 10.1 AS DOUBLE) AS sessions_ewm_7d,
    CAST(coalesce(u.weighted_sessions_30d, 0) / 1000.0 / 43.3 AS DOUBLE) AS sessions_ewm_30d,
    CAST(coalesce(l.lifetime_session_rate, 0) AS DOUBLE) AS lifetime_sessions_per_day,
    CAST(coalesce(l.lifetime_rate, 0) AS DOUBLE) AS lifetime_events_per_day,
    CAST((coalesce(u.events_14d, 0) / 14.0 + 0.1) / (coalesce(l.lifetime_rate, 0) + 0.1)
        AS DOUBLE) AS events_trend_14d_lifetime,
    CAST((coalesce(u.events_30d, 0) * 3.0 + 1) / (coalesce(u.events_90d, 0) + 1) AS DOUBLE)
        AS events_trend_30d_90d,
    CAST(coalesce(b.failed_payments_30d, 0) AS INTEGER) AS failed_payments_30d,
    CAST(coalesce(b.failed_payments_60d, 0) AS INTEGER) AS failed_payments_60d,
    CAST(coalesce(b.failed_payments_90d, 0) AS INTEGER) AS failed_payments_90d,
    CAST(coalesce(b.cents_paid_90d, 0) / 100.0 AS DOUBLE) AS amount_paid_90d,
    CAST(coalesce(t.tickets_30d, 0) AS INTEGER) AS tickets_30d,
    CAST(coalesce(t.tickets_90d, 0) AS INTEGER) AS tickets_90d,
    CAST(coalesce(t.billing_tickets_90d, 0) AS INTEGER) AS billing_tickets_90d,
    CAST(coalesce(t.technical_tickets_90d, 0) AS INTEGER) AS technical_tickets_90d,
    CAST(coalesce(t.high_priority_tickets_90d, 0) AS INTEGER) AS high_priority_tickets_90d,
    CAST(coalesce(t.cancellation_requests_90d, 0) AS INTEGER) AS cancellation_requests_90d
FROM snap s
JOIN {customers} c USING (customer_id)
LEFT JOIN renewal_days r USING (customer_id, observation_date)
LEFT JOIN usage u USING (customer_id, observation_date)
LEFT JOIN last_activity l USING (customer_id, observation_date)
LEFT JOIN billing b USING (customer_id, observation_date)
LEFT JOIN support t USING (customer_id, observation_date)
"""


@dataclass(frozen=True)
class SourceTables:
    """Names of the relations the feature SQL reads; the warehouse and the service differ."""

    snapshots: str = "customer_snapshots"
    customers: str = "stg_customers"
    events: str = "stg_events"
    payments: str = "stg_payments"
    tickets: str = "stg_tickets"
    vocabulary: str = "event_vocabulary"
    """Event type -> integer code (:mod:`churn.features.events`); only the generated family
    reads it."""


def feature_sql(sources: SourceTables = SourceTables()) -> str:
    """The SELECT that yields ``KEY_COLUMNS + FEATURE_NAMES`` for every snapshot row."""
    return _FEATURE_SQL.format(
        snapshots=sources.snapshots,
        customers=sources.customers,
        events=sources.events,
        payments=sources.payments,
        tickets=sources.tickets,
    )
