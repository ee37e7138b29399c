"""Turn one simulated day of latent state into event and ticket rows, without Python loops.

Rows are built as parallel numpy arrays (customer index, timestamps, codes); strings are only
materialised when a month is written, which is what keeps 30M events affordable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churn.ingest.schema import EVENT_TYPES, TICKET_CATEGORIES, TICKET_PRIORITIES

US_PER_DAY = 86_400_000_000
US_PER_SECOND = 1_000_000
# Share of sessions starting in each UTC hour: quiet nights, a working-day plateau, an evening bump.
HOURLY_WEIGHTS = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.2,
        2.5,
        4,
        5,
        5.5,
        5.5,
        5,
        5.5,
        5.5,
        5,
        4.5,
        4.5,
        5,
        5.5,
        5,
        4,
        3,
        2,
    ]
)
HOUR_CDF = np.cumsum(HOURLY_WEIGHTS) / HOURLY_WEIGHTS.sum()
MAX_EVENTS_PER_SESSION = 8
MEAN_EXTRA_EVENTS = 0.3
# After the login: page_view, feature_use, export, share. Engaged users lean to the deep features.
NON_LOGIN_WEIGHTS = np.array([0.50, 0.30, 0.12, 0.08])
NON_LOGIN_ENGAGEMENT_SLOPE = np.array([0.0, 0.35, 0.5, 0.5])
# Lognormal duration parameters (log-seconds mean, sd) per event type in EVENT_TYPES order.
DURATION_LOG_MEAN = np.log(np.array([8.0, 35.0, 110.0, 20.0, 15.0]))
DURATION_LOG_SD = np.array([0.5, 0.8, 0.9, 0.6, 0.6])
LOGIN = EVENT_TYPES.index("login")
BILLING = TICKET_CATEGORIES.index("billing")
TECHNICAL = TICKET_CATEGORIES.index("technical")
CANCELLATION_REQUEST = TICKET_CATEGORIES.index("cancellation_request")
# Priority distribution (low, medium, high) per ticket category.
PRIORITY_P = np.array(
    [
        [0.25, 0.45, 0.30],
        [0.30, 0.45, 0.25],
        [0.50, 0.40, 0.10],
        [0.10, 0.50, 0.40],
        [0.65, 0.30, 0.05],
    ]
)
assert PRIORITY_P.shape == (len(TICKET_CATEGORIES), len(TICKET_PRIORITIES))


@dataclass
class EventRows:
    """One day's (or month's) events as parallel arrays."""

    customer: np.ndarray
    session: np.ndarray
    time_us: np.ndarray
    event_type: np.ndarray
    duration: np.ndarray


@dataclass
class TicketRows:
    """Ticket rows as parallel arrays; ``kind`` indexes TICKET_CATEGORIES."""

    customer: np.ndarray
    time_us: np.ndarray
    kind: np.ndarray
    priority: np.ndarray


def _within_group_position(counts: np.ndarray) -> np.ndarray:
    """0,1,2.. inside each repeated group: the standard cumsum trick for ragged rows."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def _event_types(
    rng: np.random.Generator, position: np.ndarray, engagement: np.ndarray
) -> np.ndarray:
    """Login opens each session; deeper actions become likelier as engagement rises."""
    weights = NON_LOGIN_WEIGHTS * np.exp(np.outer(engagement, NON_LOGIN_ENGAGEMENT_SLOPE))
    cdf = np.cumsum(weights, axis=1)
    draw = rng.random(len(position)) * cdf[:, -1]
    kind = 1 + (draw[:, None] > cdf[:, :-1]).sum(axis=1)
    return np.where(position == 0, LOGIN, kind).astype(np.int8)


def day_events(
    rng: np.random.Generator,
    day: int,
    day_offset_us: int,
    customers: np.ndarray,
    loglam: np.ndarray,
    engagement: np.ndarray,
    first_session_id: int,
) -> EventRows:
    """Sessions ~ Poisson(lambda) per active customer, each a short burst of 1-8 events.

    ``loglam``/``engagement`` are aligned with ``customers``; ``engagement`` (log usage vs the
    population) shifts both session depth and the mix of event types.
    """
    n_sessions = rng.poisson(np.exp(loglam))
    session_customer = np.repeat(customers, n_sessions)
    session_engagement = np.repeat(engagement, n_sessions)
    n = len(session_customer)
    extra = rng.poisson(MEAN_EXTRA_EVENTS * np.exp(0.15 * session_engagement))
    per_session = 1 + np.minimum(extra, MAX_EVENTS_PER_SESSION - 1)
    position = _within_group_position(per_session)
    event_engagement = np.repeat(session_engagement, per_session)
    kind = _event_types(rng, position, event_engagement)
    duration = np.exp(
        DURATION_LOG_MEAN[kind] + DURATION_LOG_SD[kind] * rng.standard_normal(len(kind))
    )
    duration = np.round(np.clip(duration, 0.5, 3_600.0), 3)
    gap_us = np.where(position == 0, 0, (duration * US_PER_SECOND).astype(np.int64))
    gap_us += np.where(position == 0, 0, rng.integers(1, 30 * US_PER_SECOND, len(kind)))
    offset_us = np.cumsum(gap_us)
    session_first = np.cumsum(per_session) - per_session
    offset_us -= np.repeat(offset_us[session_first], per_session)
    span_us = offset_us[np.cumsum(per_session) - 1]
    hour = np.searchsorted(HOUR_CDF, rng.random(n), side="right")
    start_us = hour * 3_600 * US_PER_SECOND + rng.integers(0, 3_600 * US_PER_SECOND, n)
    start_us = np.minimum(start_us, US_PER_DAY - 1 - span_us)
    time_us = day_offset_us + day * US_PER_DAY + np.repeat(start_us, per_session) + offset_us
    sessions = first_session_id + np.arange(n, dtype=np.int64)
    return EventRows(
        customer=np.repeat(session_customer, per_session),
        session=np.repeat(sessions, per_session),
        time_us=time_us,
        event_type=kind,
        duration=duration,
    )


def _random_time_in_day(
    rng: np.random.Generator, days: np.ndarray, day_offset_us: int
) -> np.ndarray:
    """Support desks see traffic around the clock; uniform within the day is good enough."""
    return (
        day_offset_us + days.astype(np.int64) * US_PER_DAY + rng.integers(0, US_PER_DAY, len(days))
    )


def day_tickets(
    rng: np.random.Generator,
    day: int,
    day_offset_us: int,
    customers: np.ndarray,
    rates: np.ndarray,
) -> TicketRows:
    """Poisson tickets per customer and category; ``rates`` is (customers x categories)."""
    counts = rng.poisson(rates)
    row, kind = np.nonzero(counts)
    reps = counts[row, kind]
    row, kind = np.repeat(row, reps), np.repeat(kind, reps).astype(np.int8)
    return TicketRows(
        customer=customers[row],
        time_us=_random_time_in_day(rng, np.full(len(row), day), day_offset_us),
        kind=kind,
        priority=draw_priority(rng, kind),
    )


def draw_priority(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Support triage depends on the topic: billing and cancellations get escalated more."""
    cdf = np.cumsum(PRIORITY_P[kind], axis=1)
    return (rng.random(len(kind))[:, None] > cdf[:, :-1]).sum(axis=1).astype(np.int8)


def cancellation_requests(
    rng: np.random.Generator,
    customers: np.ndarray,
    decision_day: int,
    earliest_day: np.ndarray,
    day_offset_us: int,
) -> TicketRows:
    """A minority of leavers announce it a few days ahead: real, learnable, but not dominant."""
    days = np.maximum(decision_day - rng.integers(0, 6, len(customers)), earliest_day)
    kind = np.full(len(customers), CANCELLATION_REQUEST, dtype=np.int8)
    return TicketRows(
        customer=customers,
        time_us=_random_time_in_day(rng, days, day_offset_us),
        kind=kind,
        priority=draw_priority(rng, kind),
    )
