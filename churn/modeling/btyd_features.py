"""BG/NBD quantities as candidate features for event logs, point in time: an experiment.

Why: the BTYD model (Fader, Hardie & Lee 2005) summarizes a customer's purchase rhythm into
P(alive) and the expected number of events in the next horizon. A tree model sees recency,
tenure and counts already, so these may add nothing; model selection measures it on its own
folds (:func:`churn.modeling.selection.compare_extra_columns`) and reports the answer.

They stay out of the champion: serving (``/score_events``) computes features with the
generated feature SQL (:mod:`churn.features.events`), and a per-date BG/NBD fit is not part of
that definition yet, so a champion using them could not be served from the same code. The
report says whether they would have earned a place.

Each row is computed from the events strictly before its observation date, with the BG/NBD
parameters refitted on all customers' events before that date (:func:`churn.modeling.baselines.
rfm_before`), exactly as the BG/NBD baseline scores its test rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from churn.modeling.baselines import (
    DAYS_PER_UNIT,
    BGNBDParams,
    fits_by_date,
    p_alive,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

NAMES = ("btyd_p_alive", "btyd_expected_events")


def expected_events(params: BGNBDParams, x: Any, t_x: Any, T: Any, horizon: float) -> np.ndarray:
    """Expected events in the next ``horizon`` (weeks) given the history (FHL 2005, eq. 10).

    The closed form holds for any ``a != 1`` (the series' analytic continuation); where it is
    not finite (``a`` at 1, extreme inputs) the value falls back to the alive customer's
    posterior rate times the horizon, P(alive) (r + x) / (alpha + T) t, which ignores dropout
    within the horizon."""
    x, t_x, T = (np.asarray(v, dtype=np.float64).ravel() for v in (x, t_x, T))
    with np.errstate(all="ignore"):
        return _expected(params, x, t_x, T, horizon)


def _expected(
    params: BGNBDParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float
) -> np.ndarray:
    from scipy.special import hyp2f1

    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + T + horizon)
    series = hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    decay = np.exp((r + x) * np.log((alpha + T) / (alpha + T + horizon)))
    numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - decay * series)
    odds = np.where(
        x > 0,
        a / np.maximum(b + x - 1.0, 1e-12) * np.exp((r + x) * np.log((alpha + T) / (alpha + t_x))),
        0.0,
    )
    value = numerator / (1.0 + odds)
    fallback = p_alive(params, x, t_x, T) * (r + x) / (alpha + T) * horizon
    return np.where(np.isfinite(value) & (value >= 0), value, fallback)


def btyd_columns(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    horizon_days: int,
    events: str = "stg_events",
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """(rows x 2) P(alive) and expected events in the horizon for ``frame``'s (customer_id,
    observation_date) rows, refitted at each date on the events before it; and the fits.

    A customer with no event before the date is a new customer (x = 0, t_x = 0) observed for
    its tenure when the frame has one."""
    out = np.full((len(frame), 2), np.nan)
    fitted: dict[str, dict[str, float]] = {}
    horizon = horizon_days / DAYS_PER_UNIT
    for fit in fits_by_date(con, frame, events):
        fitted[fit.as_of.isoformat()] = fit.params.as_dict()
        out[fit.rows, 0] = p_alive(fit.params, fit.x, fit.t_x, fit.T)
        out[fit.rows, 1] = expected_events(fit.params, fit.x, fit.t_x, fit.T, horizon)
    return out, fitted
