"""Turning probabilities into decisions: whom to contact, and which risk tier to show.

One decision: ``risk_tier = 'high'`` exactly when ``churn_label = 1``, i.e. when the probability
is at or above the decision threshold; ``medium`` and ``low`` split the customers below it.

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
    validation_scores: Any, decision_threshold: float, quantile: float = 0.5
) -> tuple[float, float]:
    """Tier cut points for one decision: ``high`` is exactly ``churn_label = 1`` (probability
    at or above ``decision_threshold``), and ``medium`` / ``low`` split the rest at the
    ``quantile`` of the validation scores below the threshold (half and half by default).

    Why the high cut is the threshold rather than a score quantile: a retention team reads the
    tier and the label as the same instruction, so they must never disagree; the quantile cut
    of the rest still gives a stable "watch" group when churn is rare."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must satisfy 0 < quantile < 1, got {quantile}")
    scores = np.asarray(validation_scores, dtype=np.float64).ravel()
    below = scores[scores < decision_threshold]
    low_medium = float(np.quantile(below, quantile)) if below.size else float(decision_threshold)
    return tier_cuts(low_medium, decision_threshold)


def tier_cuts(low_medium: float, decision_threshold: float) -> tuple[float, float]:
    """The cut points in force at ``decision_threshold``: the high cut IS the threshold, and the
    medium cut never lies above it. Used for a card's own threshold, a request's threshold, and
    older cards whose stored high cut was a score quantile unrelated to the threshold."""
    threshold = float(decision_threshold)
    return min(float(low_medium), threshold), threshold


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
