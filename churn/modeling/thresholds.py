"""Turning probabilities into decisions: whom to contact, and which risk tier to show.

The contact threshold is chosen by money, not by F1: contacting a customer costs
``intervention_cost`` whatever happens, and only a real churner who is then persuaded to stay
(``success_rate``) brings ``retained_value`` back. That makes the threshold a business
parameter the validation slice can optimize directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TIERS = ("low", "medium", "high")


def expected_value_threshold(
    y_true: Any,
    y_score: Any,
    *,
    intervention_cost: float,
    retained_value: float,
    success_rate: float,
) -> tuple[float, float, dict[str, np.ndarray]]:
    """The threshold maximizing the total expected value of contacting every customer with
    ``score >= threshold``, over every distinct score as a candidate (exact, O(n log n)).

    Returns ``(threshold, expected value per customer, curve)``; the curve holds, per candidate
    threshold in descending order, the share of customers contacted and the EV per customer.
    When no threshold pays (every candidate loses money), nobody should be contacted: the
    threshold is then just above the highest score and the EV is 0.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.size == 0:
        raise ValueError("expected_value_threshold needs at least one scored row")
    gain = success_rate * retained_value * y - intervention_cost
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    total = np.cumsum(gain[order])[ends]
    curve = {
        "threshold": s_sorted[ends],
        "contacted_share": (ends + 1) / s.size,
        "expected_value_per_customer": total / s.size,
    }
    best = int(np.argmax(total))
    if total[best] <= 0:
        return float(np.nextafter(s_sorted[0], np.inf)), 0.0, curve
    return float(s_sorted[ends[best]]), float(total[best] / s.size), curve


def risk_tiers(
    validation_scores: Any, quantiles: tuple[float, float] = (0.5, 0.8)
) -> tuple[float, float]:
    """Cut points at score quantiles of the validation slice: tiers then hold stable shares of
    the base (half low, 30% medium, 20% high by default) even though raw probabilities are all
    small when churn is rare."""
    low, high = quantiles
    if not 0 < low < high < 1:
        raise ValueError(f"quantiles must satisfy 0 < low < high < 1, got {quantiles}")
    scores = np.asarray(validation_scores, dtype=np.float64).ravel()
    cuts = np.quantile(scores, [low, high])
    return float(cuts[0]), float(max(cuts[1], cuts[0]))


def assign_tier(p: float, cuts: tuple[float, float]) -> str:
    """Scores at a cut belong to the riskier tier (cuts are inclusive lower bounds)."""
    if p >= cuts[1]:
        return "high"
    if p >= cuts[0]:
        return "medium"
    return "low"


def assign_tiers(scores: Any, cuts: tuple[float, float]) -> np.ndarray:
    """Vectorized :func:`assign_tier` for batch scoring."""
    s = np.asarray(scores, dtype=np.float64)
    index = (s >= cuts[0]).astype(np.intp) + (s >= cuts[1]).astype(np.intp)
    return np.asarray(TIERS, dtype=object)[index]
