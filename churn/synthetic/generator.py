"""Seeded, vectorized simulation of a subscription business with a latent churn hazard.

The simulation steps through calendar days; every step works on arrays of all customers, so the
cost grows with days x customers in numpy, never with Python-level loops over rows. The hazard
that decides cancellations (``hazard.py``) is also what the truth oracle integrates, so the
written ``true_churn_probability`` is the best score any model could hope to approach.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from churn.ingest.schema import (
    CANCEL_REASONS,
    CHANNELS,
    CHURN_TYPES,
    CONTRACTS,
    EVENT_TYPES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    PLANS,
    REGIONS,
    TICKET_CATEGORIES,
    TICKET_PRIORITIES,
    TRUTH_FILE,
)
from churn.synthetic import activity, hazard, population
from churn.synthetic.activity import EventRows, TicketRows
from churn.synthetic.output import ChunkedParquet, coded, dates, fixed_width_ids, timestamps
from churn.synthetic.output import write_table as write_parquet
from churn.synthetic.population import EPOCH, Population, draw_population

Progress = Callable[[str, float], None]

FAIL_WINDOW = 60
TICKET_WINDOW = 30
RETRY_AFTER_DAYS = 3
NOISE_PERSISTENCE = 0.97
NOISE_SD = 0.12  # stationary sd of the day-to-day wobble in log usage
SHOCK_RECOVERY = 0.985
# Customers judge their usage habit, not one day: the hazard sees a ~2-week moving average.
HABIT_SMOOTHING = 0.07
TICKET_SHOCK = -0.2
CANCELLATION_REQUEST_SHARE = 0.3
NEVER = np.iinfo(np.int32).max
# Base ticket rates per active customer-day, in TICKET_CATEGORIES order.
BASE_TICKET_RATES = np.array([0.0006, 0.0012, 0.0006, 0.0, 0.0006])
BILLING_TICKETS_PER_RECENT_FAILURE = 0.10
TECHNICAL_ENGAGEMENT_SLOPE = -0.6
# A retention contact (``advance --contacts``) multiplies the voluntary hazard by this for
# CONTACT_DAYS from the first day of the month the list was made for. Involuntary churn (two
# failed charges) is untouched: a call does not fix a card. Chosen so a contacted customer's
# 30-day churn probability falls by a few points on average (see docs/synthetic-data.md).
CONTACT_HAZARD_RATIO = 0.6
CONTACT_DAYS = 90


@dataclass(frozen=True)
class GeneratorConfig:
    """What to simulate; equal configs give byte-identical tables."""

    customers: int = 5_000
    months: int = 12
    seed: int = 42
    start_date: date = date(2025, 1, 1)
    horizon_days: int = 30
    burn_in_months: int = 3  # first observation date = start_date + burn_in_months


@dataclass(frozen=True)
class GenerationSummary:
    """What was written, for logs, the CLI and Dagster metadata."""

    rows: dict[str, int]
    seconds: float
    data_start: date
    data_end: date  # exclusive: the data covers [data_start, data_end)
    observation_dates: list[date] = field(default_factory=list)


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic, clamping the day (Jan 31 + 1 month = Feb 28/29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def data_end(config: GeneratorConfig) -> date:
    return add_months(config.start_date, config.months)


def observation_dates(config: GeneratorConfig) -> list[date]:
    """Month starts from start+burn_in through start+months inclusive.

    The burn-in gives features a history to look back on; the last date's outcome lies beyond
    the data, which is exactly the situation of scoring in production.
    """
    first = min(config.burn_in_months, config.months)
    return [add_months(config.start_date, k) for k in range(first, config.months + 1)]


def _day_index(config: GeneratorConfig, day: date) -> int:
    return (day - config.start_date).days


def day_of_month(config: GeneratorConfig, days: int) -> np.ndarray:
    """The calendar day of month of each day index in ``[0, days)`` (billing cycles)."""
    return np.array([(config.start_date + timedelta(days=d)).day for d in range(days)])


def month_starts(config: GeneratorConfig, months: int) -> np.ndarray:
    """Day indices of the 1st of each month around a window of ``months`` (billing look-ahead)."""
    first = date(config.start_date.year, config.start_date.month, 1)
    count = months + config.horizon_days // 28 + 4
    return np.array([_day_index(config, add_months(first, k)) for k in range(-1, count)])


# --------------------------------------------------------------------------------------------
# Arrow schemas and table builders (also used for empty files)
# --------------------------------------------------------------------------------------------

_DICT = pa.dictionary(pa.int32(), pa.string())

EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", _DICT),
        ("session_id", pa.string()),
        ("event_time", pa.timestamp("us")),
        ("event_type", _DICT),
        ("duration_seconds", pa.float64()),
    ]
)
PAYMENTS_SCHEMA = pa.schema(
    [
        ("payment_id", pa.string()),
        ("customer_id", _DICT),
        ("payment_date", pa.date32()),
        ("amount", pa.float64()),
        ("status", _DICT),
        ("payment_method", _DICT),
        ("attempt", pa.int32()),
    ]
)
TICKETS_SCHEMA = pa.schema(
    [
        ("ticket_id", pa.string()),
        ("customer_id", _DICT),
        ("created_at", pa.timestamp("us")),
        ("category", _DICT),
        ("priority", _DICT),
    ]
)


@dataclass
class PaymentRows:
    customer: np.ndarray
    day: np.ndarray
    failed: np.ndarray
    attempt: np.ndarray


def _concat(rows: list, kind: type) -> object:
    """Stack a month of per-day row batches into one batch of the same type."""
    names = kind.__dataclass_fields__
    if not rows:
        return kind(**{name: np.empty(0, dtype=np.int64) for name in names})
    return kind(**{name: np.concatenate([getattr(r, name) for r in rows]) for name in names})


# --------------------------------------------------------------------------------------------
# Simulation state
# --------------------------------------------------------------------------------------------


class Simulation:
    """Mutable latent state of every customer, advanced one calendar day at a time."""

    def __init__(self, config: GeneratorConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.days = _day_index(config, data_end(config))
        self.pop: Population = draw_population(
            rng, config.customers, config.start_date, self.days, config.horizon_days
        )
        n = self.pop.size
        static = hazard.static_terms(self.pop.price_ratio, self.pop.channel, self.pop.age)
        self.static_lp = static.static_lp
        self.price_lp = static.price_lp
        self.annual = self.pop.annual
        self.decay = np.zeros(n)
        self.noise = NOISE_SD * rng.standard_normal(n)
        self.shock = np.zeros(n)
        self.loglam = self.pop.loglam0 + self.noise
        self.habit = self.loglam.copy()
        self.cancel_day = np.full(n, NEVER, dtype=np.int32)
        self.churn_type = np.full(n, -1, dtype=np.int8)
        self.reason = np.full(n, -1, dtype=np.int8)
        self.retry_day = np.full(n, -1, dtype=np.int32)
        self.fail_ring = np.zeros((FAIL_WINDOW, n), dtype=np.int8)
        self.fail_60d = np.zeros(n, dtype=np.int16)
        self.ticket_ring = np.zeros((TICKET_WINDOW, n), dtype=np.int8)
        self.tickets_30d = np.zeros(n, dtype=np.int16)
        self.treated_until = np.full(n, -1, dtype=np.int32)
        self.epoch_day = (config.start_date - EPOCH).days
        self.epoch_us = self.epoch_day * activity.US_PER_DAY
        self.day_of_month = day_of_month(config, self.days)
        self.month_starts = month_starts(config, config.months)
        self.next_session = 0

    # ---- a longer window (the month-by-month advance) ------------------------------------------

    def extend(self, days: int, months: int, newcomers: Population) -> None:
        """Run to day index ``days`` (``months`` calendar months after the start) with
        ``newcomers`` joining: their latent state starts as a fresh draw's does."""
        n = newcomers.size
        static = hazard.static_terms(newcomers.price_ratio, newcomers.channel, newcomers.age)
        noise = NOISE_SD * self.rng.standard_normal(n)
        loglam = newcomers.loglam0 + noise
        fresh = {
            "static_lp": static.static_lp,
            "price_lp": static.price_lp,
            "annual": newcomers.annual,
            "decay": np.zeros(n),
            "noise": noise,
            "shock": np.zeros(n),
            "loglam": loglam,
            "habit": loglam.copy(),
            "cancel_day": np.full(n, NEVER, dtype=np.int32),
            "churn_type": np.full(n, -1, dtype=np.int8),
            "reason": np.full(n, -1, dtype=np.int8),
            "retry_day": np.full(n, -1, dtype=np.int32),
            "fail_60d": np.zeros(n, dtype=np.int16),
            "tickets_30d": np.zeros(n, dtype=np.int16),
            "treated_until": np.full(n, -1, dtype=np.int32),
        }
        for name, values in fresh.items():
            setattr(self, name, np.concatenate([getattr(self, name), values]))
        self.fail_ring = np.hstack([self.fail_ring, np.zeros((FAIL_WINDOW, n), np.int8)])
        self.ticket_ring = np.hstack([self.ticket_ring, np.zeros((TICKET_WINDOW, n), np.int8)])
        self.pop = population.combined(
            self.pop, newcomers, self.config.start_date, self.config.horizon_days, days
        )
        self.days = days
        self.day_of_month = day_of_month(self.config, days)
        self.month_starts = month_starts(self.config, months)

    def refresh_static(self) -> None:
        """Recompute the constant hazard terms after a profile changed (a price rise)."""
        static = hazard.static_terms(self.pop.price_ratio, self.pop.channel, self.pop.age)
        self.static_lp, self.price_lp = static.static_lp, static.price_lp

    # ---- latent dynamics ---------------------------------------------------------------------

    def advance_latent(self, day: int) -> None:
        """Decay regimes drift usage down; noise and ticket shocks make it wobble and dip."""
        pop = self.pop
        decaying = (day >= pop.decay_onset) & (day < pop.decay_end)
        self.decay -= np.where(decaying, pop.decay_rate, 0.0)
        innovation = NOISE_SD * np.sqrt(1 - NOISE_PERSISTENCE**2)
        self.noise = NOISE_PERSISTENCE * self.noise + innovation * self.rng.standard_normal(
            pop.size
        )
        self.shock *= SHOCK_RECOVERY
        self.loglam = pop.loglam0 + self.decay + self.noise + self.shock
        self.habit += HABIT_SMOOTHING * (self.loglam - self.habit)

    def roll_windows(self, day: int) -> None:
        """Forget failures/tickets that left the 60/30-day windows the hazard looks at."""
        slot = day % FAIL_WINDOW
        self.fail_60d -= self.fail_ring[slot]
        self.fail_ring[slot] = 0
        slot = day % TICKET_WINDOW
        self.tickets_30d -= self.ticket_ring[slot]
        self.ticket_ring[slot] = 0

    def state_lp(self, idx: np.ndarray) -> np.ndarray:
        """Everything in the hazard except the calendar-driven terms."""
        return (
            self.static_lp[idx]
            + hazard.engagement_lp(self.habit[idx], self.pop.loglam0[idx])
            + hazard.service_lp(self.fail_60d[idx], self.tickets_30d[idx])
        )

    def time_lp(self, day: int, idx: np.ndarray) -> np.ndarray:
        pop = self.pop
        return hazard.time_lp(day, pop.signup[idx], self.annual[idx], pop.anniversaries[idx])

    def treatment_lp(self, day: int, idx: np.ndarray) -> np.ndarray:
        """The contact effect on the voluntary hazard while a contact lasts (0 for everyone in
        a plain ``generate``: adding 0.0 leaves every hazard, hence every draw, unchanged)."""
        active = day < self.treated_until[idx]
        return np.where(active, np.log(CONTACT_HAZARD_RATIO), 0.0)

    # ---- one day -----------------------------------------------------------------------------

    def alive(self, day: int) -> np.ndarray:
        return np.flatnonzero((self.pop.signup <= day) & (self.cancel_day > day))

    def bill(self, day: int, alive: np.ndarray) -> PaymentRows:
        """First attempts on the billing day, retries 3 days after a failure.

        Two failures in a row end the subscription the day after the retry (involuntary churn).
        """
        pop, rng = self.pop, self.rng
        on_cycle = pop.bill_dom[alive] == self.day_of_month[day]
        first = alive[on_cycle | (pop.signup[alive] == day)]
        first_failed = rng.random(len(first)) < pop.p_fail1[first]
        retry = alive[self.retry_day[alive] == day]
        retry_failed = rng.random(len(retry)) < pop.p_fail2[retry]
        self.retry_day[retry] = -1
        self.retry_day[first[first_failed]] = day + RETRY_AFTER_DAYS
        failed = np.concatenate([first[first_failed], retry[retry_failed]])
        self.fail_ring[day % FAIL_WINDOW, failed] += 1
        self.fail_60d[failed] += 1
        if day + 1 < self.days:
            lost = retry[retry_failed]
            self.cancel_day[lost] = day + 1
            self.churn_type[lost] = CHURN_TYPES.index("involuntary")
            self.reason[lost] = CANCEL_REASONS.index("payment_failed")
        customers = np.concatenate([first, retry])
        return PaymentRows(
            customer=customers,
            day=np.full(len(customers), day, dtype=np.int32),
            failed=np.concatenate([first_failed, retry_failed]),
            attempt=np.repeat(np.array([1, 2], dtype=np.int32), [len(first), len(retry)]),
        )

    def use_product(self, day: int, alive: np.ndarray) -> EventRows:
        engagement = np.clip(self.loglam[alive] - hazard.POP_LOGLAM, -2.0, 2.0)
        rows = activity.day_events(
            self.rng, day, self.epoch_us, alive, self.loglam[alive], engagement, self.next_session
        )
        if len(rows.session):
            self.next_session = int(rows.session[-1]) + 1
        return rows

    def open_tickets(self, day: int, alive: np.ndarray) -> TicketRows:
        """Failed charges trigger billing tickets; disengagement shows up as technical ones."""
        recent_failures = sum(
            self.fail_ring[(day - k) % FAIL_WINDOW, alive] for k in range(RETRY_AFTER_DAYS)
        )
        relative = np.clip(self.loglam[alive] - self.pop.loglam0[alive], -3.0, 0.5)
        rates = np.tile(BASE_TICKET_RATES, (len(alive), 1))
        rates[:, activity.BILLING] += BILLING_TICKETS_PER_RECENT_FAILURE * recent_failures
        rates[:, activity.TECHNICAL] *= np.exp(TECHNICAL_ENGAGEMENT_SLOPE * relative)
        rows = activity.day_tickets(self.rng, day, self.epoch_us, alive, rates)
        np.add.at(self.ticket_ring[day % TICKET_WINDOW], rows.customer, 1)
        np.add.at(self.tickets_30d, rows.customer, 1)
        hurt = rows.customer[rows.kind != activity.CANCELLATION_REQUEST]
        np.add.at(self.shock, hurt, TICKET_SHOCK)
        return rows

    def decide_voluntary(self, day: int, alive: np.ndarray) -> TicketRows | None:
        """Draw today's voluntary cancellations (effective tomorrow) from the daily hazard."""
        if day + 1 >= self.days:
            return None
        staying = alive[self.cancel_day[alive] > day + 1]
        lp = self.state_lp(staying) + self.time_lp(day, staying) + self.treatment_lp(day, staying)
        leaving = staying[self.rng.random(len(staying)) < hazard.daily_hazard(lp)]
        self.cancel_day[leaving] = day + 1
        self.churn_type[leaving] = CHURN_TYPES.index("voluntary")
        self.reason[leaving] = self._voluntary_reasons(leaving)
        announce = leaving[self.rng.random(len(leaving)) < CANCELLATION_REQUEST_SHARE]
        earliest = np.maximum(self.pop.signup[announce], 0)
        return activity.cancellation_requests(self.rng, announce, day, earliest, self.epoch_us)

    def _voluntary_reasons(self, idx: np.ndarray) -> np.ndarray:
        """The stated reason follows the customer's dominant driver, with noise."""
        eng = hazard.engagement_lp(self.habit[idx], self.pop.loglam0[idx])
        svc = hazard.service_lp(self.fail_60d[idx], self.tickets_30d[idx])
        weights = np.column_stack(
            [
                0.15 + 6.0 * np.maximum(self.price_lp[idx], 0.0),  # price
                np.full(len(idx), 0.45),  # competitor
                0.15 + 1.5 * np.maximum(eng, 0.0),  # not_using
                0.10 + 2.0 * svc,  # service_issues
                np.full(len(idx), 0.15),  # moved
                np.full(len(idx), 0.25),  # other
            ]
        )
        codes = np.array(
            [CANCEL_REASONS.index(r) for r in ("price", "competitor", "not_using")]
            + [CANCEL_REASONS.index(r) for r in ("service_issues", "moved", "other")]
        )
        cdf = np.cumsum(weights, axis=1)
        draw = self.rng.random(len(idx)) * cdf[:, -1]
        return codes[(draw[:, None] > cdf[:, :-1]).sum(axis=1)]

    # ---- oracle ------------------------------------------------------------------------------

    def observed(self, day: int) -> np.ndarray:
        """Customers active at observation date ``day`` (signed up before it, not yet gone)."""
        return np.flatnonzero((self.pop.signup < day) & (self.cancel_day > day))

    def truth(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """P(cancel_date in (T, T+horizon]) for customers active at T, state frozen at T."""
        idx = self.observed(day)
        return idx, self.churn_probability(day, idx)

    def churn_probability(self, day: int, idx: np.ndarray) -> np.ndarray:
        """The oracle for ``idx`` at ``day``: the horizon's hazards integrated, state frozen."""
        lp = self.state_lp(idx)
        cumulative = np.zeros(len(idx))
        for decision_day in range(day, day + self.config.horizon_days):
            cumulative += hazard.daily_hazard(
                lp + self.time_lp(decision_day, idx) + self.treatment_lp(decision_day, idx)
            )
        p_voluntary = 1.0 - np.exp(-cumulative)
        p_involuntary = self._involuntary_risk(day, idx)
        return 1.0 - (1.0 - p_voluntary) * (1.0 - p_involuntary)

    def _involuntary_risk(self, day: int, idx: np.ndarray) -> np.ndarray:
        """A pending retry, or a billing date early enough for its retry to fail in time."""
        pop = self.pop
        pending = self.retry_day[idx] >= day
        survive = np.where(pending, 1.0 - pop.p_fail2[idx], 1.0)
        last_billing = day + self.config.horizon_days - RETRY_AFTER_DAYS - 1
        both_fail = pop.p_fail1[idx] * pop.p_fail2[idx]
        for start in self.month_starts:
            billing = start + pop.bill_dom[idx].astype(np.int64) - 1
            due = (billing >= day) & (billing <= last_billing)
            survive *= np.where(due, 1.0 - both_fail, 1.0)
        return 1.0 - survive


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def events_table(rows: EventRows, customer_dict: pa.Array, first: int) -> pa.Table:
    """Event rows as the raw events schema; ids numbered from ``first`` (globally unique)."""
    ids = np.arange(first, first + len(rows.customer))
    return pa.table(
        [
            fixed_width_ids("E", ids),
            coded(rows.customer, customer_dict),
            fixed_width_ids("S", rows.session),
            timestamps(rows.time_us),
            coded(rows.event_type, EVENT_TYPES),
            pa.array(rows.duration, pa.float64()),
        ],
        schema=EVENTS_SCHEMA,
    )


def payments_table(
    rows: PaymentRows, sim: Simulation, customer_dict: pa.Array, first: int
) -> pa.Table:
    """Payment rows at each customer's current fee and method."""
    pop = sim.pop
    ids = np.arange(first, first + len(rows.customer))
    return pa.table(
        [
            fixed_width_ids("P", ids),
            coded(rows.customer, customer_dict),
            dates(sim.epoch_day + rows.day),
            pa.array(pop.fee[rows.customer], pa.float64()),
            coded(rows.failed.astype(np.int8), PAYMENT_STATUSES),
            coded(pop.method[rows.customer], PAYMENT_METHODS),
            pa.array(rows.attempt, pa.int32()),
        ],
        schema=PAYMENTS_SCHEMA,
    )


def tickets_table(rows: TicketRows, customer_dict: pa.Array, first: int) -> pa.Table:
    ids = np.arange(first, first + len(rows.customer))
    return pa.table(
        [
            fixed_width_ids("T", ids),
            coded(rows.customer, customer_dict),
            timestamps(rows.time_us),
            coded(rows.kind, TICKET_CATEGORIES),
            coded(rows.priority, TICKET_PRIORITIES),
        ],
        schema=TICKETS_SCHEMA,
    )


class Outputs:
    """Row-group writers for the big tables plus id counters that make ids globally unique."""

    def __init__(self, raw_dir: Path, sim: Simulation, executor: ThreadPoolExecutor) -> None:
        self.sim = sim
        self.customer_dict = pa.array(sim.pop.ids, pa.string())
        self.events = ChunkedParquet(raw_dir / "events.parquet", executor, EVENTS_SCHEMA)
        self.payments = ChunkedParquet(raw_dir / "payments.parquet", executor, PAYMENTS_SCHEMA)
        self.tickets = ChunkedParquet(raw_dir / "tickets.parquet", executor, TICKETS_SCHEMA)
        self.next_event = self.next_payment = self.next_ticket = 0

    def write_events(self, rows: EventRows) -> None:
        first, self.next_event = self.next_event, self.next_event + len(rows.customer)
        self.events.append(
            lambda: events_table(rows, self.customer_dict, first), len(rows.customer)
        )

    def write_payments(self, rows: PaymentRows) -> None:
        first, self.next_payment = self.next_payment, self.next_payment + len(rows.customer)
        self.payments.append(
            lambda: payments_table(rows, self.sim, self.customer_dict, first), len(rows.customer)
        )

    def write_tickets(self, rows: TicketRows) -> None:
        first, self.next_ticket = self.next_ticket, self.next_ticket + len(rows.customer)
        self.tickets.append(
            lambda: tickets_table(rows, self.customer_dict, first), len(rows.customer)
        )

    def counters(self) -> dict[str, int]:
        """The next free event, payment and ticket numbers: a later month continues them."""
        return {"event": self.next_event, "payment": self.next_payment, "ticket": self.next_ticket}

    def close(self) -> dict[str, int]:
        for writer in (self.events, self.payments, self.tickets):
            writer.close()
        return {
            "events": self.events.rows,
            "payments": self.payments.rows,
            "tickets": self.tickets.rows,
        }


def customers_table(sim: Simulation, idx: np.ndarray | None = None) -> pa.Table:
    """Profiles of ``idx`` (default: everyone), as they are now (a fee may have risen)."""
    pop = sim.pop
    idx = np.arange(pop.size) if idx is None else idx
    return pa.table(
        {
            "customer_id": pa.array(pop.ids[idx], pa.string()),
            "signup_date": dates(sim.epoch_day + pop.signup[idx]),
            "region": coded(pop.region[idx], REGIONS),
            "plan": coded(pop.plan[idx], PLANS),
            "monthly_fee": pa.array(pop.fee[idx], pa.float64()),
            "contract": coded(pop.contract[idx], CONTRACTS),
            "payment_method": coded(pop.method[idx], PAYMENT_METHODS),
            "age": pa.array(pop.age[idx], pa.int32()),
            "acquisition_channel": coded(pop.channel[idx], CHANNELS),
        }
    )


def cancellations_table(
    sim: Simulation, first_day: int = 0, end_day: int | None = None
) -> pa.Table:
    """Cancellations effective in ``[first_day, end_day)`` (default: to the window's end)."""
    end_day = sim.days if end_day is None else end_day
    idx = np.flatnonzero((sim.cancel_day >= first_day) & (sim.cancel_day < end_day))
    return pa.table(
        {
            "customer_id": pa.array(sim.pop.ids[idx], pa.string()),
            "cancel_date": dates(sim.epoch_day + sim.cancel_day[idx]),
            "churn_type": coded(sim.churn_type[idx], CHURN_TYPES),
            "reason": coded(sim.reason[idx], CANCEL_REASONS),
        }
    )


def truth_table(sim: Simulation, parts: list[tuple[int, np.ndarray, np.ndarray]]) -> pa.Table:
    customers = np.concatenate([idx for _, idx, _ in parts]) if parts else np.empty(0, np.int64)
    days = np.concatenate([np.full(len(idx), d) for d, idx, _ in parts]) if parts else customers
    probs = np.concatenate([p for _, _, p in parts]) if parts else np.empty(0)
    return pa.table(
        {
            "customer_id": coded(customers, pa.array(sim.pop.ids, pa.string())),
            "observation_date": dates(sim.epoch_day + days),
            "true_churn_probability": pa.array(probs, pa.float64()),
        }
    )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _month_ends(config: GeneratorConfig) -> set[int]:
    """Last day index of each simulated month: where chunks are flushed and progress reported."""
    return {
        _day_index(config, add_months(config.start_date, k)) - 1
        for k in range(1, config.months + 1)
    }


def generate(
    config: GeneratorConfig,
    raw_dir: Path,
    truth_dir: Path,
    progress: Progress | None = None,
) -> GenerationSummary:
    """Simulate ``config`` and write the five raw tables plus the truth table.

    ``progress(stage, fraction)`` is called at least once per simulated month so a UI (the CLI,
    a Dagster asset) can show how far along a long run is.
    """
    began = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    sim = Simulation(config, rng)
    obs = observation_dates(config)
    obs_days = {_day_index(config, d) for d in obs}
    truth_parts: list[tuple[int, np.ndarray, np.ndarray]] = []
    month_ends = _month_ends(config)
    with ThreadPoolExecutor(max_workers=1) as executor:
        out = Outputs(raw_dir, sim, executor)
        events: list[EventRows] = []
        payments: list[PaymentRows] = []
        tickets: list[TicketRows] = []
        report("simulate", 0.0)
        for day in range(sim.days):
            if day in obs_days:
                truth_parts.append((day, *sim.truth(day)))
            _simulate_day(sim, day, events, payments, tickets)
            if day in month_ends:
                out.write_events(_concat(events, EventRows))
                out.write_payments(_concat(payments, PaymentRows))
                out.write_tickets(_concat(tickets, TicketRows))
                events, payments, tickets = [], [], []
                report("simulate", (day + 1) / sim.days)
        if sim.days in obs_days:
            truth_parts.append((sim.days, *sim.truth(sim.days)))
        report("write", 0.0)
        rows = out.close()
    from churn.synthetic import state

    state.save(sim, out.counters(), truth_dir, months=config.months)
    customers = customers_table(sim)
    cancellations = cancellations_table(sim)
    truth = truth_table(sim, truth_parts)
    write_parquet(customers, raw_dir / "customers.parquet")
    write_parquet(cancellations, raw_dir / "cancellations.parquet")
    write_parquet(truth, truth_dir / TRUTH_FILE)
    rows = {
        "customers": customers.num_rows,
        **rows,
        "cancellations": cancellations.num_rows,
        "truth": truth.num_rows,
    }
    report("write", 1.0)
    return GenerationSummary(
        rows=rows,
        seconds=time.perf_counter() - began,
        data_start=config.start_date,
        data_end=data_end(config),
        observation_dates=obs,
    )


def _simulate_day(
    sim: Simulation,
    day: int,
    events: list[EventRows],
    payments: list[PaymentRows],
    tickets: list[TicketRows],
) -> None:
    """Order matters: usage and billing happen before today's decision to leave tomorrow."""
    sim.roll_windows(day)
    sim.advance_latent(day)
    alive = sim.alive(day)
    payments.append(sim.bill(day, alive))
    events.append(sim.use_product(day, alive))
    tickets.append(sim.open_tickets(day, alive))
    requests = sim.decide_voluntary(day, alive)
    if requests is not None:
        tickets.append(requests)
