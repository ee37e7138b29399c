"""When a customer leaves and what they are worth: a discrete-time hazard model and its survival
curve, evaluated against lifelines' Cox model on the test months.

The monthly snapshots already are person-period data: one row per customer and observation date
at which the customer is still active (at risk), labelled ``churned`` when they leave within the
label horizon. With a one-month horizon (the default 30 days) that label *is* the discrete-time
hazard h = P(churn in the next month | active now). The hazard model is therefore the LightGBM
candidate itself: it is fitted on exactly those train rows of the time split, with that target and
the same encoding (:func:`churn.modeling.spec.encode_frame`); fitting a second booster on the same
rows and target would give the same trees at twice the cost. A longer horizon of ``p`` months is
turned into a monthly hazard by ``1 - (1 - P)^(1/p)``.

Extrapolation: the features describe the customer at the observation date and there is no
month-ahead index among them, so each customer's hazard is held **constant** over the months
ahead: ``S(t) = (1 - h)^t``. From it:

- ``p_churn_30d``, ``p_churn_90d``, ``p_churn_180d`` = ``1 - S(1)``, ``1 - S(3)``, ``1 - S(6)``:
  non-decreasing in the horizon by construction. A horizon longer than the matured history
  (first matured observation date to the last label window's end) is left out, and the card says
  so;
- ``expected_lifetime_months`` = ``sum_{t=1..60} S(t)``: capped at :data:`LIFETIME_CAP_MONTHS`;
- ``clv`` = ``sum_{t=1..60} S(t) * value_per_month * discount^t`` with ``discount`` the monthly
  factor of :data:`ANNUAL_DISCOUNT_RATE` (the formula the README's scores section documents).

A flat source (one observation, no time axis) has no person-period rows: it gets no survival
model, and the card says why.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.modeling.metrics import auc

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from churn.modeling.model import ChurnModel
    from churn.modeling.spec import FeatureSpec
    from churn.modeling.training import Part, TrainingData

DAYS_PER_PERIOD = 30
"""A label horizon of this many days is one monthly period (the snapshots are monthly)."""
HORIZONS: dict[str, int] = {"p_churn_30d": 1, "p_churn_90d": 3, "p_churn_180d": 6}
"""Score column -> months of the survival curve it reads."""
LIFETIME_CAP_MONTHS = 60
"""``expected_lifetime_months`` and ``clv`` sum the curve over at most five years: beyond that a
constant-hazard extrapolation says more about the assumption than about the customer."""
ANNUAL_DISCOUNT_RATE = 0.10
"""The discount rate of future months' value in ``clv`` (10% a year, applied monthly)."""
COX_PENALIZER = 0.1
COX_MAX_ROWS = 20_000
"""The Cox baseline fits on at most this many train rows (a seeded sample): its Newton steps
cost rows x columns^2, and 20k rows fix its few dozen coefficients well."""
FLAT_REASON = (
    "no survival model: the source is a flat table observed once (no time axis), so there are "
    "no monthly person-period rows to learn a hazard from"
)

SURVIVAL_COLUMNS = [*HORIZONS, "expected_lifetime_months", "clv"]


@dataclass
class SurvivalModel:
    """The hazard model and what the card needs to know about its curve. Pickled inside the
    champion (``ChurnModel.survival``), so batch scoring and the service use the same one."""

    hazard: ChurnModel
    period_months: float = 1.0
    """Months per label horizon: the hazard model's probability covers this many months."""
    horizons: dict[str, int] = field(default_factory=lambda: dict(HORIZONS))
    """The horizons the matured history can check (column -> months)."""
    left_out: dict[str, str] = field(default_factory=dict)
    """Horizon columns not reported, with the reason."""
    metrics: dict[str, Any] = field(default_factory=dict)
    value: ValueRule | None = None
    """Each customer's value per month for ``clv``; None: no ``clv``."""

    def monthly_hazard(self, X: np.ndarray, hazard_proba: np.ndarray | None = None) -> np.ndarray:
        """h per row: the hazard model's probability, brought to one month. ``hazard_proba``
        is that probability when the caller already has it (see :meth:`predict`)."""
        p = self.hazard.predict_proba(X) if hazard_proba is None else hazard_proba
        p = np.clip(p, 0.0, 1.0)
        if self.period_months == 1.0:
            return p
        return 1.0 - (1.0 - p) ** (1.0 / self.period_months)

    def predict(
        self, X: np.ndarray, hazard_proba: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The survival columns of the encoded rows ``X``: the kept horizons, expected lifetime
        and, with a value rule, ``clv``. When the hazard model is the champion classifier itself
        (a LightGBM winner), the scorer passes the probabilities it has just computed as
        ``hazard_proba``, so the rows go through the booster once, not twice."""
        X = self.hazard._check(X)
        monthly = self.value.monthly(X) if self.value is not None else None
        return survival_columns(self.monthly_hazard(X, hazard_proba), self.horizons, monthly)

    def card(self) -> dict[str, Any]:
        return {
            "hazard_model": f"{self.hazard.kind} on the person-period snapshot rows (the "
            "classifier's train rows and encoding), hazard held constant per customer",
            "period_months": self.period_months,
            "horizons": self.horizons,
            "left_out": self.left_out,
            "lifetime_cap_months": LIFETIME_CAP_MONTHS,
            "annual_discount_rate": ANNUAL_DISCOUNT_RATE,
            "clv_formula": CLV_FORMULA,
            "value_per_month": self.value.describe() if self.value is not None else None,
            "metrics": self.metrics,
        }


CLV_FORMULA = (
    "clv = sum_{t=1..60} S(t) * value_per_month * (1 + 0.10)^(-t/12), S(t) = (1 - h)^t, "
    "h = the customer's monthly hazard"
)


def monthly_discount() -> float:
    return (1.0 + ANNUAL_DISCOUNT_RATE) ** (-1.0 / 12.0)


def _geometric_sum(q: np.ndarray, terms: int) -> np.ndarray:
    """``sum_{t=1..terms} q^t`` per element, exact also at q = 1."""
    q = np.asarray(q, dtype=np.float64)
    near_one = np.abs(1.0 - q) < 1e-12
    safe = np.where(near_one, 0.5, q)
    closed = safe * (1.0 - safe**terms) / (1.0 - safe)
    return np.where(near_one, float(terms), closed)


def survival_columns(
    hazard: np.ndarray,
    horizons: dict[str, int] | None = None,
    value_per_month: np.ndarray | float | None = None,
) -> dict[str, np.ndarray]:
    """Horizon probabilities, expected lifetime and clv from monthly hazards (constant per
    row): the one place the formulas live."""
    keep = 1.0 - np.clip(np.asarray(hazard, dtype=np.float64), 0.0, 1.0)
    columns = {name: 1.0 - keep**months for name, months in (horizons or HORIZONS).items()}
    columns["expected_lifetime_months"] = _geometric_sum(keep, LIFETIME_CAP_MONTHS)
    if value_per_month is not None:
        discounted = _geometric_sum(keep * monthly_discount(), LIFETIME_CAP_MONTHS)
        columns["clv"] = discounted * np.asarray(value_per_month, dtype=np.float64)
    return columns


def curve(hazard: np.ndarray, months: int) -> np.ndarray:
    """``S(1..months)`` per row, shape (rows, months)."""
    keep = 1.0 - np.clip(np.asarray(hazard, dtype=np.float64), 0.0, 1.0)
    return keep[:, None] ** np.arange(1, months + 1)[None, :]


# --- evaluation -------------------------------------------------------------------------------


def follow_up(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Months to churn of the rows at a block's first date, read from the same customers' rows
    at the block's later (consecutive, monthly) dates.

    Returns ``(cohort mask, durations, events)``: a cohort row churned in month k has duration
    k and event 1; one still active at its last row in the block (or missing from the next
    date) is censored at the months it was followed."""
    import pandas as pd

    dates = np.sort(pd.to_datetime(frame["observation_date"]).unique())
    day = pd.to_datetime(frame["observation_date"]).to_numpy()
    cohort = day == dates[0]
    churned = frame.pivot_table(
        index="customer_id", columns=pd.to_datetime(frame["observation_date"]), values="churned"
    ).reindex(columns=dates)
    ids = frame.loc[cohort, "customer_id"].to_numpy()
    grid = churned.reindex(ids).to_numpy(dtype=np.float64)
    durations = np.zeros(len(ids))
    events = np.zeros(len(ids), dtype=np.int8)
    alive = np.ones(len(ids), dtype=bool)
    for k in range(grid.shape[1]):
        seen = alive & ~np.isnan(grid[:, k])
        durations[seen] = k + 1
        churn_now = seen & (grid[:, k] == 1)
        events[churn_now] = 1
        alive = seen & ~churn_now
    return cohort, durations, events


def _censoring_survival(durations: np.ndarray, events: np.ndarray):
    """G(t): Kaplan-Meier estimate of staying uncensored, for the IPCW Brier score."""
    from lifelines import KaplanMeierFitter

    fitter = KaplanMeierFitter().fit(durations, 1 - events)

    def at(times: np.ndarray) -> np.ndarray:
        values = fitter.survival_function_at_times(np.asarray(times, dtype=np.float64))
        return np.maximum(values.to_numpy(dtype=np.float64), 1e-6)

    return at


def integrated_brier(
    durations: np.ndarray, events: np.ndarray, survival: np.ndarray
) -> tuple[float, list[float]]:
    """IPCW Brier score (Graf et al. 1999) at months 1..K and its mean over them (the discrete
    integral, K = the columns of ``survival``, the predicted S(1..K) per row)."""
    G = _censoring_survival(durations, events)
    g_before = G(durations - 0.5)
    scores = []
    for t in range(1, survival.shape[1] + 1):
        s = survival[:, t - 1]
        died = (durations <= t) & (events == 1)
        lived = durations > t
        weight_lived = G(np.array([t + 0.0]))[0]
        terms = np.where(died, s**2 / g_before, 0.0) + np.where(
            lived, (1.0 - s) ** 2 / weight_lived, 0.0
        )
        scores.append(float(terms.mean()))
    return float(np.mean(scores)), scores


def _cox_design(part: Part, specs, medians: np.ndarray, scale: np.ndarray) -> pd.DataFrame:
    """Numeric features median-imputed and standardized, categoricals one-hot (first dropped,
    missing -> no column): the matrix a Cox model can take."""
    import pandas as pd

    columns: dict[str, np.ndarray] = {}
    for j, spec in enumerate(specs):
        values = part.X[:, j]
        if spec.kind == "categorical":
            for code in range(1, len(spec.categories or ())):
                columns[f"{spec.name}={code}"] = (values == code).astype(np.float64)
        else:
            filled = np.where(np.isnan(values), medians[j], values)
            columns[spec.name] = (filled - medians[j]) / scale[j]
    return pd.DataFrame(columns)


def cox_baseline(
    data: TrainingData,
    test_cohort: np.ndarray,
    durations: np.ndarray,
    events: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """lifelines' penalized Cox model fitted on the train block's own follow-up (the customers
    at risk at the first train date, followed through the train months) and scored on the
    same test cohort: the maintained-library baseline. Never raises: a fit that fails
    (no convergence, singular matrix) is reported with its reason."""
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    try:
        mask, train_durations, train_events = follow_up(data.train.frame)
        X = data.train.X
        numeric = np.nan_to_num(np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0))
        spread = np.nanstd(X, axis=0)
        scale = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        train = _cox_design(data.train, data.specs, numeric, scale)[mask].reset_index(drop=True)
        rng = np.random.default_rng(seed)
        rows = np.arange(len(train))
        if rows.size > COX_MAX_ROWS:
            rows = np.sort(rng.choice(rows, COX_MAX_ROWS, replace=False))
        train = train.iloc[rows]
        kept = [c for c in train.columns if train[c].std() > 0]
        train = train[kept].assign(duration=train_durations[rows], event=train_events[rows])
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter = CoxPHFitter(penalizer=COX_PENALIZER).fit(train, "duration", "event")
        seconds = time.perf_counter() - started
        test = _cox_design(data.test, data.specs, numeric, scale)[test_cohort][kept]
        risk = fitter.predict_partial_hazard(test).to_numpy(dtype=np.float64)
        months = int(durations.max())
        surv = fitter.predict_survival_function(test, times=np.arange(1, months + 1))
        ibs, _ = integrated_brier(durations, events, surv.to_numpy(dtype=np.float64).T)
        return {
            "c_index": float(concordance_index(durations, -risk, events)),
            "integrated_brier": ibs,
            "train_rows": len(train),
            "penalizer": COX_PENALIZER,
            "fit_seconds": round(seconds, 3),
        }
    except Exception as error:  # a failed baseline is reported, never fails the evaluation
        return {"error": f"{type(error).__name__}: {error}"}


def maturable_horizons(data: TrainingData, period_months: float) -> tuple[dict, dict]:
    """The horizons the matured history spans (first matured date to the last label window's
    end), and the left-out ones with the reason."""
    dates = [*data.split.train_dates, *data.split.validation_dates, *data.split.test_dates]
    first, last = min(dates), max(dates)
    span = (last.year - first.year) * 12 + (last.month - first.month) + period_months
    kept = {name: months for name, months in HORIZONS.items() if months <= span}
    left_out = {
        name: f"the matured history spans {span:g} months, fewer than the {months} this "
        "horizon needs"
        for name, months in HORIZONS.items()
        if months > span
    }
    return kept, left_out


def fit_survival(
    data: TrainingData, hazard: ChurnModel, label_days: int, value: ValueRule | None = None
) -> SurvivalModel:
    """The survival model of a time split, evaluated on the test block's first month.

    Evaluation: the customers at risk at the first test date are followed through the test
    months (their later rows' labels). ``survival_c_index`` ranks them by expected lifetime;
    ``integrated_brier`` is the IPCW Brier score averaged over those months; ``cox_*`` are
    lifelines' penalized Cox model on the same rows. A label horizon longer than a month (the
    snapshot spacing) makes consecutive rows overlap, so there is no follow-up to check and the
    metrics say so."""
    from lifelines.utils import concordance_index

    period = max(label_days / DAYS_PER_PERIOD, 1.0)
    horizons, left_out = maturable_horizons(data, period)
    model = SurvivalModel(hazard, period, horizons, left_out, value=value)
    if label_days > 31:
        model.metrics = {
            "not_evaluated": f"a {label_days}-day label horizon overlaps the next monthly "
            "snapshot, so the test months give no month-by-month follow-up"
        }
        return model
    started = time.perf_counter()
    cohort, durations, events = follow_up(data.test.frame)
    if not 0 < events.sum() < events.size:
        model.metrics = {
            "not_evaluated": f"the {int(cohort.sum())} customers at risk on the first test date "
            f"have {int(events.sum())} churns in the test months: no pairs to compare"
        }
        return model
    X = data.test.X[cohort]
    hazards = model.monthly_hazard(X)
    lifetime = survival_columns(hazards, horizons)["expected_lifetime_months"]
    months = int(durations.max())
    ibs, per_month = integrated_brier(durations, events, curve(hazards, months))
    model.metrics = {
        "survival_c_index": float(concordance_index(durations, lifetime, events)),
        "integrated_brier": ibs,
        "brier_by_month": per_month,
        "first_month_auc": auc(events * (durations == 1), hazards)
        if 0 < (events * (durations == 1)).sum() < len(events)
        else None,
        "cohort_rows": int(cohort.sum()),
        "cohort_events": int(events.sum()),
        "follow_up_months": months,
        "evaluated_on": "customers at risk at the first test date, followed through the test "
        "months",
    }
    model.metrics["cox_baseline"] = cox_baseline(data, cohort, durations, events)
    model.metrics["seconds"] = round(time.perf_counter() - started, 3)
    return model


@dataclass(frozen=True)
class ValueRule:
    """Each customer's value per month for ``clv``, fixed with the model so batch scoring and
    the service compute the same number from the same encoded row: ``retained_value`` over the
    months it stands for (:func:`churn.scoring.contact.customer_values`), i.e. the measure's
    monthly average when the economics take the value from a measure, else the configured
    ``retained_value`` over a year."""

    feature_index: int | None = None
    """Column of the encoded row holding the measure; None: everyone is worth ``fallback``."""
    factor: float = 1.0
    """Turns the feature into a monthly average (a 90-day sum: 30.44 / 90)."""
    fallback: float = 240.0 / 12
    """Monthly value of a customer without one of their own (missing or not positive)."""
    feature: str | None = None

    def monthly(self, X: np.ndarray) -> np.ndarray:
        if self.feature_index is None:
            return np.full(X.shape[0], self.fallback)
        values = X[:, self.feature_index] * self.factor
        return np.where(np.isfinite(values) & (values > 0), values, self.fallback)

    def describe(self) -> str:
        if self.feature is None:
            return f"the configured retained_value over 12 months: {self.fallback:g} a month"
        return (
            f"{self.feature} x {self.factor:.4g} (its monthly average); {self.fallback:g} a month "
            "where a customer has none"
        )


def value_rule(economics: Any, config: Any, specs: Sequence[FeatureSpec]) -> ValueRule:
    """The :class:`ValueRule` of the source's economics (:class:`churn.modeling.training.
    Economics`) over the model's features. A measure the features lack raises ``ValueError``
    naming the key, as scoring does."""
    from churn.scoring.contact import MEASURE_KEY, value_feature

    names = [spec.name for spec in specs]
    found = value_feature(economics, config, names)
    if found is None:
        return ValueRule(fallback=float(economics.retained_value) / 12.0)
    column, factor = found
    if column not in names:
        raise ValueError(
            f"{MEASURE_KEY}: {economics.retained_value_measure!r} has no feature {column!r} "
            "(a numeric column of the source is needed)"
        )
    months = float(economics.retained_value_months or 1.0)
    return ValueRule(names.index(column), factor, float(economics.retained_value) / months, column)


def score_columns(
    model: ChurnModel, X: np.ndarray, probabilities: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The survival columns of the encoded rows ``X`` for the scores: NaN (NULL) throughout
    when ``model`` has no survival model (a flat source, a champion saved before it existed),
    and in a horizon the matured history could not check. ``probabilities``: the model's own,
    already computed for ``X`` (reused when the model is its own hazard model)."""
    n = X.shape[0]
    survival = getattr(model, "survival", None)
    if survival is None:
        return {name: np.full(n, np.nan) for name in SURVIVAL_COLUMNS}
    found = survival.predict(X, probabilities if survival.hazard is model else None)
    return {name: found.get(name, np.full(n, np.nan)) for name in SURVIVAL_COLUMNS}
