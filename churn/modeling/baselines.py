"""The classic churn models, scored on exactly the champion's test rows.

Why: a model's AUC means little until it is set against what the field would build in an
afternoon. Three classics sit next to the recency rule (:func:`churn.modeling.training.
recency_baseline_auc`):

- **BG/NBD** (Fader, Hardie & Lee 2005) for any event log, refitted at each test observation
  date on the events strictly before it; the score is the probability of no event in the churn
  horizon. Fitted here by maximum likelihood with scipy: ``lifetimes`` is unmaintained and
  pymc-marketing pulls PyMC/PyTensor (it compiles at import), too heavy for a baseline.
- **Logistic regression on per-event-type window counts (30 and 90 days) and tenure** for any
  event log, taken from the feature table's own columns: same rows, same point in time.
- **Logistic regression on the raw columns** for a flat customer table.

Every baseline returns one score per test row, in test-row order, so the comparison (and its
paired bootstrap) is on the same rows as the champion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.modeling.metrics import auc, average_precision

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from churn.modeling.training import TrainingData

DAYS_PER_UNIT = 7.0
"""BG/NBD is fitted in weeks: the scale parameter then sits near 1 and the optimizer behaves."""

TENURE_FEATURE = "tenure_days"
WINDOW_COUNT = re.compile(r"^(?!.*(?:trend|ewm|mean|sum|avg|minutes|ratio|amount))\w+_(?:30|90)d$")
"""A count over the last 30 or 90 days (``type_login_30d``, ``events_90d``, ``logins_30d``):
not a trend, a smoothed rate, an amount, a measure's sum or mean."""


@dataclass(frozen=True)
class BGNBDParams:
    """Gamma(r, alpha) purchase rates, Beta(a, b) dropout probabilities; time in weeks."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def _arrays(x: Any, t_x: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, T = (np.asarray(v, dtype=np.float64).ravel() for v in (x, t_x, T))
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError(f"x, t_x and T differ in length: {x.size}, {t_x.size}, {T.size}")
    return x, t_x, T


def bgnbd_log_likelihood(params: BGNBDParams, x: Any, t_x: Any, T: Any) -> np.ndarray:
    """Per-customer log-likelihood (Fader, Hardie & Lee 2005, eq. 6): ``x`` repeat events,
    the last at ``t_x``, observed for ``T`` since the first."""
    from scipy.special import betaln, gammaln

    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + betaln(a, b + x) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.full_like(x, -np.inf)
    dropped[repeat] = (
        math.log(a) - np.log(b + x[repeat] - 1) - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    )
    return common + np.logaddexp(alive, dropped)


def fit_bgnbd(x: Any, t_x: Any, T: Any) -> BGNBDParams:
    """Maximum-likelihood BG/NBD on (x, t_x, T) in weeks, over log-parameters.

    Identical (x, t_x, T) triples are fitted once with their count as weight: a few thousand
    distinct triples stand for any number of customers."""
    from scipy.optimize import minimize

    x, t_x, T = _arrays(x, t_x, T)
    if x.size == 0:
        raise ValueError("fit_bgnbd needs at least one customer")
    triples, weights = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    ux, ut, uT = triples.T

    def negative(log_params: np.ndarray) -> float:
        params = BGNBDParams(*np.exp(np.clip(log_params, -15.0, 15.0)))
        value = -float(np.dot(weights, bgnbd_log_likelihood(params, ux, ut, uT)))
        return value if math.isfinite(value) else 1e300

    start = np.log([1.0, max(float(np.mean(T)), 1e-3), 1.0, 1.0])
    result = minimize(negative, start, method="Nelder-Mead", options={"maxiter": 4000})
    result = minimize(negative, result.x, method="L-BFGS-B")
    return BGNBDParams(*(float(v) for v in np.exp(np.clip(result.x, -15.0, 15.0))))


def p_alive(params: BGNBDParams, x: Any, t_x: Any, T: Any) -> np.ndarray:
    """Probability the customer has not dropped out by ``T`` (1 without a repeat event)."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    odds = np.zeros_like(x)
    repeat = x > 0
    odds[repeat] = (
        a
        / (b + x[repeat] - 1)
        * np.exp((r + x[repeat]) * np.log((alpha + T[repeat]) / (alpha + t_x[repeat])))
    )
    return 1.0 / (1.0 + odds)


def p_no_event(params: BGNBDParams, x: Any, t_x: Any, T: Any, horizon: float) -> np.ndarray:
    """Probability of no event in the next ``horizon`` (weeks): dropped out, or alive with a
    posterior Gamma(r + x, alpha + T) rate that happens to stay quiet (dropout follows an event,
    so a quiet spell has no dropout in it)."""
    x, t_x, T = _arrays(x, t_x, T)
    alive = p_alive(params, x, t_x, T)
    quiet = np.exp((params.r + x) * np.log((params.alpha + T) / (params.alpha + T + horizon)))
    return (1.0 - alive) + alive * quiet


def simulate_bgnbd(
    params: BGNBDParams, customers: int, T: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of ``customers`` drawn from the BG/NBD process, each observed for ``T``
    weeks after a first event at 0: what the tests fit to recover known parameters."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(params.r, 1.0 / params.alpha, customers)
    dropouts = rng.beta(params.a, params.b, customers)
    x = np.zeros(customers)
    t_x = np.zeros(customers)
    for i in range(customers):
        t = 0.0
        while True:
            t += rng.exponential(1.0 / rates[i])
            if t > T:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < dropouts[i]:
                break
    return x, t_x, np.full(customers, float(T))


_RFM_SQL = """
WITH days AS (
    SELECT CAST(customer_id AS VARCHAR) AS customer_id, CAST(event_time AS DATE) AS day
    FROM {events}
    WHERE event_time < CAST($as_of AS DATE) AND customer_id IS NOT NULL
    GROUP BY ALL
)
SELECT customer_id,
       count(*) - 1 AS x,
       date_diff('day', min(day), max(day)) AS t_x,
       date_diff('day', min(day), CAST($as_of AS DATE)) AS T
FROM days GROUP BY customer_id
"""


def rfm_before(
    con: duckdb.DuckDBPyConnection, as_of: date, events: str = "stg_events"
) -> pd.DataFrame:
    """Per customer with an event before ``as_of``: repeat active days ``x``, days from the
    first to the last active day ``t_x`` and from the first to ``as_of`` ``T``. Active days,
    not raw events: BG/NBD counts purchase occasions, and a burst of clicks is one visit."""
    from churn.sql import quote_identifier

    return con.execute(_RFM_SQL.format(events=quote_identifier(events)), {"as_of": as_of}).df()


@dataclass(frozen=True)
class DateFit:
    """BG/NBD fitted at one observation date on the events before it, and the rows of that date
    with their history in the model's units (:data:`DAYS_PER_UNIT` days)."""

    as_of: date
    params: BGNBDParams
    customers: int
    rows: np.ndarray
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray


def fits_by_date(
    con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, events: str = "stg_events"
) -> Iterator[DateFit]:
    """One :class:`DateFit` per observation date of ``frame`` (dates without any earlier event
    are skipped). A customer with no event before the date is a new customer (x = 0, t_x = 0)
    observed for its tenure when the frame has one, else for no time at all."""
    import pandas as pd

    dates = pd.to_datetime(frame["observation_date"]).dt.date.to_numpy()
    ids = frame["customer_id"].astype(str).to_numpy()
    tenure = (
        frame[TENURE_FEATURE].astype("float64").fillna(0.0).to_numpy()
        if TENURE_FEATURE in frame.columns
        else np.zeros(len(frame))
    )
    for as_of in sorted(set(dates)):
        rfm = rfm_before(con, as_of, events)
        if rfm.empty:
            continue
        params = fit_bgnbd(
            rfm["x"].to_numpy(), rfm["t_x"] / DAYS_PER_UNIT, rfm["T"] / DAYS_PER_UNIT
        )
        rows = np.flatnonzero(dates == as_of)
        known = rfm.set_index("customer_id").reindex(ids[rows])
        x = known["x"].fillna(0.0).to_numpy(dtype=np.float64)
        t_x = known["t_x"].fillna(0.0).to_numpy(dtype=np.float64)
        T = known["T"].to_numpy(dtype=np.float64)
        T = np.where(np.isnan(T), np.maximum(tenure[rows], 0.0), T)
        yield DateFit(as_of, params, len(rfm), rows, x, t_x / DAYS_PER_UNIT, T / DAYS_PER_UNIT)


def bgnbd_scores(
    con: duckdb.DuckDBPyConnection,
    test: pd.DataFrame,
    horizon_days: int,
    events: str = "stg_events",
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """P(no event in the horizon) per test row, the model refitted at each observation date on
    the events before it (:func:`fits_by_date`); and the fitted parameters per date."""
    scores = np.full(len(test), np.nan)
    fitted: dict[str, dict[str, float]] = {}
    for fit in fits_by_date(con, test, events):
        fitted[fit.as_of.isoformat()] = fit.params.as_dict() | {"customers": float(fit.customers)}
        scores[fit.rows] = p_no_event(
            fit.params, fit.x, fit.t_x, fit.T, horizon_days / DAYS_PER_UNIT
        )
    return scores, fitted


def window_count_columns(names: Sequence[str]) -> list[str]:
    """The simple window counts among the feature names, and tenure when present."""
    chosen = [name for name in names if WINDOW_COUNT.match(name)]
    return [*chosen, TENURE_FEATURE] if chosen and TENURE_FEATURE in names else chosen


def _logistic_on(data: TrainingData, columns: Sequence[str]) -> np.ndarray:
    """Test probabilities of a default logistic regression (the candidates' own pipeline:
    median imputation, scaling, one-hot) trained on the training rows' ``columns``."""
    from churn.modeling.candidates import LogisticConfig, train_logistic

    index = [j for j, spec in enumerate(data.specs) if spec.name in set(columns)]
    specs = [data.specs[j] for j in index]
    model = train_logistic(data.train.X[:, index], data.train.y, specs, LogisticConfig())
    return model.predict_proba(data.test.X[:, index])


def counts_logistic_scores(data: TrainingData) -> np.ndarray | None:
    """The handbook model: per-event-type counts in the last 30 and 90 days plus tenure, or
    None when the feature table has no window counts (a flat table)."""
    columns = window_count_columns([spec.name for spec in data.specs])
    return _logistic_on(data, columns) if columns else None


def flat_logistic_scores(data: TrainingData) -> np.ndarray:
    """A default logistic regression on every raw column of a flat table."""
    return _logistic_on(data, [spec.name for spec in data.specs])


@dataclass(frozen=True)
class BaselineComparison:
    """Every model's test AUC and PR AUC on the same rows, and the champion's margin over the
    best baseline with its paired-bootstrap interval."""

    rows: int
    auc: dict[str, float]
    pr_auc: dict[str, float]
    champion: str
    best_baseline: str | None
    margin: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float

    def table(self) -> list[tuple[str, float, float, float | None]]:
        """(model, test AUC, PR AUC, champion AUC - this AUC), champion first."""
        top = self.auc[self.champion]
        return [
            (name, self.auc[name], self.pr_auc[name], None if name == self.champion else top - a)
            for name, a in self.auc.items()
        ]

    def as_floats(self) -> dict[str, float]:
        """The flat ``{key: number}`` form the card's ``metrics.baselines`` keeps."""
        values: dict[str, float] = {}
        for name in self.auc:
            if name != self.champion:
                values[f"{name}_auc"] = self.auc[name]
                values[f"{name}_pr_auc"] = self.pr_auc[name]
        if self.margin is not None:
            values["margin_over_best_baseline"] = self.margin
        if self.ci_low is not None and self.ci_high is not None:
            values["margin_ci_low"] = self.ci_low
            values["margin_ci_high"] = self.ci_high
        return values


def compare_baselines(
    y: Any,
    champion: str,
    champion_scores: Any,
    baselines: Mapping[str, Any],
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BaselineComparison:
    """AUC and PR AUC of the champion and each baseline on ``y``'s rows; the paired bootstrap
    (the gate's own, :func:`churn.monitoring.challenger.paired_bootstrap`) of the champion's AUC
    minus the best baseline's."""
    from churn.monitoring.challenger import paired_bootstrap

    y = np.asarray(y, dtype=np.float64)
    scored = {champion: np.asarray(champion_scores, dtype=np.float64)}
    for name, scores in baselines.items():
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != y.shape:
            raise ValueError(f"baseline {name!r} scored {scores.size} rows, the test has {y.size}")
        scored[name] = np.nan_to_num(scores, nan=float(np.nanmean(scores)) if scores.size else 0)
    aucs = {name: auc(y, s) for name, s in scored.items()}
    prs = {name: average_precision(y, s) for name, s in scored.items()}
    ranked = [name for name in baselines if math.isfinite(aucs[name])]
    best = max(ranked, key=lambda name: aucs[name]) if ranked else None
    margin = low = high = None
    if best is not None:
        margin, low, high, _ = paired_bootstrap(
            y, scored[best], scored[champion], n_boot=n_boot, confidence=confidence, seed=seed
        )
        low, high = (low, high) if math.isfinite(low) and math.isfinite(high) else (None, None)
    return BaselineComparison(
        rows=int(y.size),
        auc=aucs,
        pr_auc=prs,
        champion=champion,
        best_baseline=best,
        margin=margin,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
    )


RECENCY = "recency"
BGNBD = "bgnbd"
COUNTS_LOGISTIC = "counts_logistic"
FLAT_LOGISTIC = "flat_logistic"


def _has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name AND schema_name = 'main'",
        {"name": table},
    ).fetchone()
    if not exists or not exists[0]:
        return False
    from churn.sql import quote_identifier

    return con.execute(f"SELECT 1 FROM {quote_identifier(table)} LIMIT 1").fetchone() is not None


def classic_baselines(
    data: TrainingData,
    con: duckdb.DuckDBPyConnection | None,
    *,
    horizon_days: int,
    flat: bool,
    events: str = "stg_events",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Test-row scores of every baseline that applies to this source, and what was fitted.

    Recency and the window-count logistic regression need those feature columns; BG/NBD needs
    the staged event log (``con`` with ``events``) and observation dates; the raw-column
    logistic regression is for flat tables (``flat``)."""
    from churn.modeling.training import RECENCY_FEATURE

    scores: dict[str, np.ndarray] = {}
    fitted: dict[str, Any] = {}
    test = data.test.frame
    if data.test.rows == 0:
        return scores, fitted
    if RECENCY_FEATURE in {spec.name for spec in data.specs}:
        scores[RECENCY] = test[RECENCY_FEATURE].astype("float64").fillna(0.0).to_numpy()
    if (
        con is not None
        and not flat
        and {"customer_id", "observation_date"} <= set(test.columns)
        and _has_rows(con, events)
    ):
        scores[BGNBD], fitted[BGNBD] = bgnbd_scores(con, test, horizon_days, events)
    if (counts := counts_logistic_scores(data)) is not None:
        scores[COUNTS_LOGISTIC] = counts
        fitted[COUNTS_LOGISTIC] = window_count_columns([spec.name for spec in data.specs])
    if flat:
        scores[FLAT_LOGISTIC] = flat_logistic_scores(data)
    return scores, fitted
