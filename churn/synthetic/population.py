"""The customer base: observable profile plus the latent traits that drive behaviour.

Everything a customer *is* (as opposed to what they *do* day by day) is drawn here once, so the
daily simulation only touches arrays and the hazard model can reuse precomputed static terms.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date

import numpy as np

from churn.ingest.schema import CHANNELS, CONTRACTS, PAYMENT_METHODS, PLANS, REGIONS

EPOCH = date(1970, 1, 1)

REGION_P = (0.26, 0.21, 0.19, 0.20, 0.14)
PLAN_P = (0.47, 0.35, 0.18)
PLAN_LIST_PRICE = np.array([9.99, 19.99, 34.99])
# Premium users are the power users; basic users log in less. Observable through events.
PLAN_ENGAGEMENT = np.array([-0.15, 0.0, 0.2])
ANNUAL_SHARE = 0.30
# Annual contracts are paid monthly but at a discount: that is the lock-in's price.
ANNUAL_DISCOUNT = 0.85
METHOD_P = (0.55, 0.20, 0.17, 0.08)
# First-attempt failure by method (before the customer's financial-stress multiplier).
# Set below the "textbook" 2-8% so involuntary churn stays ~20% of all churn; see README notes.
METHOD_FAIL = np.array([0.018, 0.010, 0.014, 0.035])
CHANNEL_P = (0.36, 0.24, 0.15, 0.15, 0.10)
PRE_EXISTING_SHARE = 0.70
MAX_TENURE_DAYS = 4 * 365
MEAN_SESSIONS_PER_DAY = 1.26


@dataclass(frozen=True)
class Population:
    """Column-oriented customer arrays; index i is customer ``ids[i]``.

    Day indices are relative to the generator's ``start_date`` (day 0), so pre-existing
    customers have negative ``signup``.
    """

    ids: np.ndarray
    signup: np.ndarray
    region: np.ndarray
    plan: np.ndarray
    contract: np.ndarray
    method: np.ndarray
    channel: np.ndarray
    age: np.ndarray
    fee: np.ndarray
    price_ratio: np.ndarray
    loglam0: np.ndarray
    p_fail1: np.ndarray
    p_fail2: np.ndarray
    decay_onset: np.ndarray
    decay_end: np.ndarray
    decay_rate: np.ndarray
    bill_dom: np.ndarray
    anniversaries: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def annual(self) -> np.ndarray:
        return self.contract == CONTRACTS.index("annual")


def customer_ids(n: int) -> np.ndarray:
    """Zero-padded ids sort lexically in signup-independent, stable order."""
    width = max(7, len(str(n)))
    return np.array([f"C{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def draw_signups(rng: np.random.Generator, n: int, window_days: int) -> np.ndarray:
    """Older cohorts are thinner (survivorship), hence tenure skewed towards recent signups."""
    pre = rng.random(n) < PRE_EXISTING_SHARE
    tenure = 1 + np.floor((MAX_TENURE_DAYS - 1) * rng.random(n) ** 1.6).astype(np.int32)
    new = rng.integers(0, window_days, n, dtype=np.int32)
    return np.where(pre, -tenure, new).astype(np.int32)


def draw_fees(rng: np.random.Generator, plan: np.ndarray, annual: np.ndarray) -> np.ndarray:
    """Promotions make some customers cheap and legacy prices make some expensive.

    The spread around list price is what lets price act as a churn driver.
    """
    base = PLAN_LIST_PRICE[plan] * np.where(annual, ANNUAL_DISCOUNT, 1.0)
    u = rng.random(len(plan))
    promo = 1.0 - rng.uniform(0.10, 0.30, len(plan))
    legacy = 1.0 + rng.uniform(0.05, 0.30, len(plan))
    factor = np.where(u < 0.25, promo, np.where(u > 0.86, legacy, 1.0))
    return np.round(base * factor, 2)


def draw_decay(
    rng: np.random.Generator, signup: np.ndarray, window_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A quarter of customers start disengaging at some point; that is the main churn story."""
    n = len(signup)
    decays = rng.random(n) < 0.25
    onset = np.maximum(rng.integers(-30, window_days, n), signup + 14)
    onset = np.where(decays, onset, np.iinfo(np.int32).max // 2).astype(np.int32)
    end = (onset + rng.integers(21, 90, n)).astype(np.int32)
    rate = rng.uniform(0.01, 0.03, n)
    return onset, end, rate


def _day_of_month(start: date, signup: np.ndarray) -> np.ndarray:
    """The calendar day of month of each signup (day indices from ``start``)."""
    return (
        np.datetime64(start, "D")
        + signup.astype("m8[D]")
        - (np.datetime64(start, "D") + signup.astype("m8[D]")).astype("M8[M]").astype("M8[D]")
    ).astype(np.int64) + 1


def renewal_anniversaries(
    start: date, signup: np.ndarray, horizon_days: int, window_days: int
) -> np.ndarray:
    """Day indices of the 12-month anniversaries that can matter inside the window+horizon."""
    start_abs = np.datetime64(start, "D")
    signup_abs = start_abs + signup.astype("m8[D]")
    month = signup_abs.astype("M8[M]")
    day0 = (signup_abs - month.astype("M8[D]")).astype(np.int64)
    first_k = np.maximum(1, (-signup) // 366)
    n_k = (window_days + horizon_days) // 365 + 3
    ks = first_k[:, None] + np.arange(n_k)[None, :]
    ann_month = month[:, None] + (12 * ks).astype("m8[M]")
    month_len = ((ann_month + 1).astype("M8[D]") - ann_month.astype("M8[D]")).astype(np.int64)
    ann = ann_month.astype("M8[D]") + np.minimum(day0[:, None], month_len - 1).astype("m8[D]")
    return (ann - start_abs).astype(np.int64).astype(np.int32)


def draw_population(
    rng: np.random.Generator, n: int, start: date, window_days: int, horizon_days: int
) -> Population:
    """Draw every static trait in one pass so a seed fixes the whole customer base."""
    signup = draw_signups(rng, n, window_days)
    region = rng.choice(len(REGIONS), n, p=REGION_P).astype(np.int8)
    plan = rng.choice(len(PLANS), n, p=PLAN_P).astype(np.int8)
    annual = rng.random(n) < ANNUAL_SHARE
    method = rng.choice(len(PAYMENT_METHODS), n, p=METHOD_P).astype(np.int8)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P).astype(np.int8)
    age = np.clip(np.round(rng.gamma(6.0, 6.5, n) + 12), 18, 85).astype(np.int32)
    fee = draw_fees(rng, plan, annual)
    list_price = PLAN_LIST_PRICE[plan] * np.where(annual, ANNUAL_DISCOUNT, 1.0)
    loglam0 = (
        np.log(MEAN_SESSIONS_PER_DAY)
        - 0.5 * 0.5**2
        + 0.5 * rng.standard_normal(n)
        + PLAN_ENGAGEMENT[plan]
        - 0.006 * (age - 40)
    )
    stress = rng.lognormal(-0.5 * 0.45**2, 0.45, n)
    onset, end, rate = draw_decay(rng, signup, window_days)
    signup_day_of_month = _day_of_month(start, signup)
    return Population(
        ids=customer_ids(n),
        signup=signup,
        region=region,
        plan=plan,
        contract=annual.astype(np.int8),
        method=method,
        channel=channel,
        age=age,
        fee=fee,
        price_ratio=fee / list_price,
        loglam0=loglam0,
        p_fail1=np.clip(METHOD_FAIL[method] * stress, 0.0005, 0.5),
        p_fail2=np.clip(0.20 + 0.18 * stress, 0.05, 0.95),
        decay_onset=onset,
        decay_end=end,
        decay_rate=rate,
        bill_dom=np.minimum(signup_day_of_month, 28).astype(np.int8),
        anniversaries=renewal_anniversaries(start, signup, horizon_days, window_days),
    )


NO_DECAY = np.iinfo(np.int32).max // 2
"""``decay_onset`` of a customer whose usage has not started to decay (yet)."""


def newcomers(
    rng: np.random.Generator,
    n: int,
    start: date,
    first_day: int,
    end_day: int,
    horizon_days: int,
    first_number: int,
) -> Population:
    """``n`` customers signing up uniformly in ``[first_day, end_day)``, drawn like everyone
    else (same plans, prices, engagement, payment risk); ids continue at ``first_number``.

    Their decay onset is left open: the month-by-month advance draws it like everyone's."""
    drawn = draw_population(rng, n, start, end_day, horizon_days)
    signup = rng.integers(first_day, end_day, n, dtype=np.int32)
    return replace(
        drawn,
        ids=np.array([f"C{i:07d}" for i in range(first_number, first_number + n)], dtype=object),
        signup=signup,
        decay_onset=np.full(n, NO_DECAY, dtype=np.int32),
        bill_dom=np.minimum(_day_of_month(start, signup), 28).astype(np.int8),
        anniversaries=renewal_anniversaries(start, signup, horizon_days, end_day),
    )


def combined(
    old: Population, new: Population, start: date, horizon_days: int, days: int
) -> Population:
    """``old`` then ``new`` in one population, renewal anniversaries recomputed so they cover
    ``days`` plus the horizon (a longer window needs later anniversaries)."""
    merged = {
        f.name: np.concatenate([getattr(old, f.name), getattr(new, f.name)])
        for f in fields(Population)
        if f.name != "anniversaries"
    }
    merged["anniversaries"] = renewal_anniversaries(start, merged["signup"], horizon_days, days)
    return Population(**merged)
