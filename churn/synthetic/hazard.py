"""The latent churn model: one daily hazard shared by the simulation and the truth oracle.

Keeping both in one place guarantees that ``true_churn_probability`` is computed from exactly
the hazard that generated the cancellations, which is what makes it a meaningful oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churn.ingest.schema import CHANNELS

BASE_DAILY_HAZARD = 0.0027
COEF_REL_ENGAGEMENT = -1.2  # per unit of log(lambda / own starting lambda)
COEF_POP_ENGAGEMENT = -1.0  # per unit of log(lambda / population median)
COEF_FAILED_60D = 0.55
COEF_TICKETS_30D = 0.30
MAX_TICKETS_COUNTED = 3
COEF_LOG_TENURE = -0.50  # per unit of log1p(tenure in months)
COEF_PRICE = 4.0  # per unit of log(fee / list price)
ANNUAL_OFF_RENEWAL = -2.2
ANNUAL_IN_RENEWAL = 1.6
RENEWAL_WINDOW_DAYS = 30
CHANNEL_EFFECT = dict(organic=0.0, paid_search=0.15, social=0.25, referral=-0.2, partner=0.05)
COEF_AGE = -0.008  # per year over 40: younger customers switch more easily
MAX_DAILY_HAZARD = 0.5
POP_LOGLAM = np.log(0.96)


@dataclass(frozen=True)
class StaticTerms:
    """Per-customer hazard terms that never change, precomputed once."""

    static_lp: np.ndarray
    price_lp: np.ndarray


def static_terms(price_ratio: np.ndarray, channel: np.ndarray, age: np.ndarray) -> StaticTerms:
    """Fold the constant effects into one array so the daily loop does one addition."""
    channel_lp = np.array([CHANNEL_EFFECT[name] for name in CHANNELS])[channel]
    price_lp = COEF_PRICE * np.log(price_ratio)
    return StaticTerms(price_lp + channel_lp + COEF_AGE * (age - 40), price_lp)


def engagement_lp(loglam: np.ndarray, loglam0: np.ndarray) -> np.ndarray:
    """Low usage relative to one's own past and to everyone else both signal churn."""
    relative = np.clip(loglam - loglam0, -4.0, 1.0)
    return COEF_REL_ENGAGEMENT * relative + COEF_POP_ENGAGEMENT * (loglam - POP_LOGLAM)


def service_lp(failed_60d: np.ndarray, tickets_30d: np.ndarray) -> np.ndarray:
    """Friction (failed charges, support contacts) pushes customers out."""
    return COEF_FAILED_60D * failed_60d + COEF_TICKETS_30D * np.minimum(
        tickets_30d, MAX_TICKETS_COUNTED
    )


def time_lp(
    day: int, signup: np.ndarray, annual: np.ndarray, anniversaries: np.ndarray
) -> np.ndarray:
    """Terms that move deterministically with the calendar: tenure and renewal windows.

    ``day`` is the decision day; cancelling on it makes ``day + 1`` the cancel date, which is
    inside a renewal window when it falls within the 30 days up to the anniversary.
    """
    tenure_months = np.maximum(day - signup, 0) / 30.4
    lead = anniversaries - (day + 1)
    in_window = ((lead >= 0) & (lead < RENEWAL_WINDOW_DAYS)).any(axis=1)
    contract = np.where(annual, np.where(in_window, ANNUAL_IN_RENEWAL, ANNUAL_OFF_RENEWAL), 0.0)
    return COEF_LOG_TENURE * np.log1p(tenure_months) + contract


def daily_hazard(linear_predictor: np.ndarray) -> np.ndarray:
    """The cap only matters for absurd combinations; it keeps probabilities valid."""
    return np.minimum(BASE_DAILY_HAZARD * np.exp(linear_predictor), MAX_DAILY_HAZARD)
