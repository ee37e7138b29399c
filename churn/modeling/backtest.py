"""A rolling-origin backtest of the champion's recipe: what it would have scored each month.

The holdout says how one model did on the last two months. A retention team runs the recipe
every month, so the question it asks is different: had we retrained on what we knew at each
month's start, how good would that month's list have been? For each origin month ``m``, the
recipe (the winner's kind and parameters; for LightGBM its chosen number of trees, so nothing
is tuned on the month being scored) is refit on every observation date ``d`` whose label had
matured by then — ``d + horizon <= m``, the same embargo :func:`churn.modeling.split.time_split`
applies between its blocks — with feature specs fitted on those rows only, and scores ``m``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.modeling.candidates import (
    LightGBMConfig,
    LogisticConfig,
    lightgbm_params,
    train_logistic,
)
from churn.modeling.metrics import auc, top_share_stats
from churn.modeling.selection import Window
from churn.modeling.spec import FeatureSpec, build_feature_specs, encode_frame
from churn.modeling.split import _as_days

if TYPE_CHECKING:
    import pandas as pd

    from churn.features import Feature
    from churn.modeling.model import ChurnModel

LABEL = "churned"


@dataclass(frozen=True)
class Recipe:
    """How to train the champion again: its kind, its parameters, its tree count."""

    kind: str
    lightgbm: LightGBMConfig | None = None
    rounds: int | None = None
    logistic: LogisticConfig | None = None
    window: tuple[str, int] = ("all", 0)
    """The training window model selection chose (:class:`churn.modeling.selection.Window`'s
    kind and months), applied to each origin's own training dates."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rounds": self.rounds, "window": list(self.window)}


def recipe_of(model: ChurnModel) -> Recipe:
    """The recipe a trained candidate stands for (``model.params`` records its config and,
    since model selection, its training window)."""
    chosen = model.params.get("window") or {}
    window = (str(chosen.get("kind", "all")), int(chosen.get("months", 0)))
    if model.kind == "lightgbm":
        known = {f.name for f in fields(LightGBMConfig)}
        config = LightGBMConfig(**{k: v for k, v in model.params.items() if k in known})
        rounds = int(model.best_iteration)  # type: ignore[attr-defined]
        return Recipe("lightgbm", lightgbm=config, rounds=rounds, window=window)
    known = {f.name for f in fields(LogisticConfig)}
    config = LogisticConfig(**{k: v for k, v in model.params.items() if k in known})
    return Recipe("logistic_regression", logistic=config, window=window)


@dataclass(frozen=True)
class BacktestMonth:
    """One origin: what was trained on, and how the list for that month turned out."""

    observation_date: str
    train_from: str
    train_to: str
    train_months: int
    train_rows: int
    rows: int
    positives: int
    base_rate: float
    roc_auc: float | None
    top_decile_lift: float | None
    top_decile_capture: float | None
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def origins(
    dates: Sequence[date], *, horizon_days: int, months: int
) -> list[tuple[date, list[date]]]:
    """The last ``months`` dates that have at least one matured training date, each with the
    dates it may train on (``d + horizon <= origin``), oldest origin first."""
    distinct = sorted(set(dates))
    horizon = timedelta(days=horizon_days)
    usable = [(origin, [d for d in distinct if d + horizon <= origin]) for origin in distinct]
    usable = [(origin, train) for origin, train in usable if train]
    return usable[-months:] if months > 0 else []


def backtest(
    frame: pd.DataFrame,
    features: Sequence[Feature],
    recipe: Recipe,
    *,
    horizon_days: int,
    months: int = 4,
) -> list[BacktestMonth]:
    """Refit ``recipe`` at each origin of :func:`origins` on the matured rows of ``frame``
    (features + ``churned``, one row per customer and observation date) and score the origin."""
    days = _as_days(frame["observation_date"])
    dates = [date.fromisoformat(str(d)) for d in np.unique(days)]
    results = []
    for origin, train_dates in origins(dates, horizon_days=horizon_days, months=months):
        train_mask = np.isin(days, np.array(train_dates, dtype="datetime64[D]"))
        train = frame.loc[train_mask]
        scored = frame.loc[days == np.datetime64(origin, "D")]
        specs = build_feature_specs(train, features)
        started = time.perf_counter()
        weights = Window(*recipe.window).weights(train["observation_date"])  # type: ignore[arg-type]
        kept = weights > 0
        predict = _fit(
            recipe,
            encode_frame(train, specs)[kept],
            train[LABEL].to_numpy()[kept],
            specs,
            weights[kept],
        )
        fit_seconds = time.perf_counter() - started
        y = scored[LABEL].to_numpy(dtype=np.int8)
        scores = predict(encode_frame(scored, specs))
        both = 0 < y.sum() < y.size
        lift, capture = top_share_stats(y, scores, 0.1) if y.sum() else (math.nan, math.nan)
        results.append(
            BacktestMonth(
                observation_date=origin.isoformat(),
                train_from=train_dates[0].isoformat(),
                train_to=train_dates[-1].isoformat(),
                train_months=len(train_dates),
                train_rows=int(train_mask.sum()),
                rows=int(y.size),
                positives=int(y.sum()),
                base_rate=float(y.mean()) if y.size else 0.0,
                roc_auc=float(auc(y, scores)) if both else None,
                top_decile_lift=_finite(lift),
                top_decile_capture=_finite(capture),
                fit_seconds=round(fit_seconds, 3),
            )
        )
    return results


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fit(
    recipe: Recipe,
    X: np.ndarray,
    y: np.ndarray,
    specs: list[FeatureSpec],
    weights: np.ndarray | None = None,
):
    """A predict function for ``recipe`` fitted on ``(X, y)`` (rows weighted by ``weights``
    when they are not all 1)."""
    if weights is not None and np.all(weights == 1.0):
        weights = None
    if recipe.kind == "lightgbm":
        import lightgbm as lgb

        config = recipe.lightgbm or LightGBMConfig()
        categorical = [j for j, spec in enumerate(specs) if spec.kind == "categorical"]
        dataset = lgb.Dataset(
            X,
            label=np.asarray(y, dtype=np.float64),
            weight=weights,
            feature_name=[spec.name for spec in specs],
            categorical_feature=categorical,
        )
        booster = lgb.train(
            lightgbm_params(config), dataset, num_boost_round=max(int(recipe.rounds or 1), 1)
        )
        return lambda matrix: booster.predict(matrix, num_threads=config.num_threads)
    model = train_logistic(X, y, specs, recipe.logistic, sample_weight=weights)
    return model.predict_proba


def summary(months: Sequence[BacktestMonth]) -> dict[str, float | None]:
    """AUC, lift and capture averaged over months (each month's list is used once, so each
    month counts once), the figures a reader compares with the holdout's."""

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if known else None

    return {
        "months": len(months),
        "mean_roc_auc": mean([m.roc_auc for m in months]),
        "mean_top_decile_lift": mean([m.top_decile_lift for m in months]),
        "mean_top_decile_capture": mean([m.top_decile_capture for m in months]),
    }
