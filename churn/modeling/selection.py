"""Model selection by time-ordered cross-validation over the matured training months.

Why: one validation month is a noisy judge (a few hundred churners), and a grid tuned on it, or a
winner chosen on it, wins by luck as often as by merit. Here each candidate (a LightGBM setting,
a logistic regression on the same encoded features, a training window) is refitted on several
expanding windows of the matured train and validation months and scored on the month that
follows each window, so the choice rests on several months of evidence, and the test months are
never read: the folds are built from the pooled train and validation rows only.

Folds (:func:`time_folds`): the last ``folds`` observation dates of the pool each validate once;
each trains on the dates whose label window had closed by then (``d + horizon <= v``, the
embargo of :func:`churn.modeling.split.time_split`). A table without a time axis (a flat
customer table) gets customer-grouped, label-stratified K-fold instead (:func:`group_folds`).

LightGBM early-stops on the fold it is scored on (by log loss, not AUC). That flatters every
LightGBM setting a little and alike; the logistic regression has nothing to stop, so a
logistic winner has beaten that small head start.

The training window (all history, the recent months only, or time-decayed sample weights) is
tried for the leading setting, after the settings: a full grid would multiply the cost for a
choice that rarely interacts with tree size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from churn.modeling.candidates import (
    LightGBMConfig,
    LogisticConfig,
    train_lightgbm,
    train_logistic,
)
from churn.modeling.metrics import auc
from churn.modeling.spec import FeatureSpec
from churn.modeling.split import _as_days

LIGHTGBM = "lightgbm"
LOGISTIC = "logistic_regression"
CV_EARLY_STOPPING_ROUNDS = 100
"""Patience inside the folds: the ranking of settings settles long before the final model's 200
rounds, and each fold's extra rounds are pure cost."""


MIN_CV_GAIN = 0.002
"""A CV AUC gain below this is noise on a few thousand rows (the folds' sd is ~0.02): extra
features must clear it to count as an improvement."""


@dataclass(frozen=True)
class Window:
    """Which training rows count, and how much: ``all`` history, the ``recent`` ``months``
    observation dates only, or every date with weight halving every ``months`` (``decay``)."""

    kind: Literal["all", "recent", "decay"] = "all"
    months: int = 0

    def describe(self) -> str:
        if self.kind == "recent":
            return f"recent {self.months} months"
        if self.kind == "decay":
            return f"decay, half-life {self.months} months"
        return "all history"

    def weights(self, observation_dates: Any) -> np.ndarray:
        """One weight per row (0 drops it), relative to the newest date among these rows."""
        days = _as_days(observation_dates)
        if days.size == 0 or self.kind == "all":
            return np.ones(days.size)
        distinct = np.unique(days)
        if self.kind == "recent":
            return (days >= distinct[-min(self.months, distinct.size)]).astype(np.float64)
        age_months = (distinct[-1] - days).astype(np.float64) / 30.4375
        return np.power(0.5, age_months / max(self.months, 1))


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: a model family, its settings and its training window."""

    family: Literal["lightgbm", "logistic_regression"]
    lightgbm: LightGBMConfig | None = None
    logistic: LogisticConfig | None = None
    window: Window = field(default_factory=Window)

    @property
    def name(self) -> str:
        if self.family == LIGHTGBM:
            c = self.lightgbm or LightGBMConfig()
            settings = (
                f"leaves={c.num_leaves} min_leaf={c.min_child_samples} "
                f"lr={c.learning_rate:g} l2={c.reg_lambda:g}"
            )
        else:
            settings = f"C={(self.logistic or LogisticConfig()).C:g}"
        return f"{self.family} {settings}, {self.window.describe()}"


def default_grid(
    lightgbm: LightGBMConfig, logistic: LogisticConfig, dates: int = 0
) -> tuple[list[Candidate], list[Window]]:
    """The settings grid around the configured defaults, and the windows tried afterwards for
    a pool of ``dates`` observation dates: the recent half of them (at least 2), and weights
    halving every 3 months.

    Small on purpose (four tree settings, two logistic strengths): the model step must not more
    than double on the default data. The configured settings come first, so a tie keeps them."""
    trees = [
        lightgbm,
        replace(lightgbm, num_leaves=3, min_child_samples=200),
        replace(lightgbm, num_leaves=15, min_child_samples=50, learning_rate=0.1, reg_lambda=10.0),
        replace(lightgbm, min_child_samples=300, reg_lambda=30.0),
    ]
    linear = [logistic, replace(logistic, C=0.05)]
    grid = [Candidate(LIGHTGBM, lightgbm=c) for c in _distinct(trees)]
    grid += [Candidate(LOGISTIC, logistic=c) for c in _distinct(linear)]
    return grid, [Window("recent", max(2, dates // 2)), Window("decay", 3)]


def _distinct(configs: Sequence[Any]) -> list[Any]:
    """Configs in order, each once (a configured default may equal a grid point)."""
    seen: list[Any] = []
    return [c for c in configs if c not in seen and not seen.append(c)]


@dataclass(frozen=True)
class Fold:
    """Row indices (into the pooled train + validation rows) to fit on and to score."""

    fit: np.ndarray
    held: np.ndarray
    fit_dates: tuple[str, ...] = ()
    held_dates: tuple[str, ...] = ()


def time_folds(observation_dates: Any, *, horizon_days: int, folds: int = 3) -> list[Fold]:
    """Expanding-window folds: each of the last ``folds`` dates is held out once and fitted on
    every earlier date whose label had matured by then. Dates with nothing matured before them
    give no fold."""
    days = _as_days(observation_dates)
    distinct = np.unique(days)
    horizon = np.timedelta64(horizon_days, "D")
    result = []
    for held_day in distinct[-folds:]:
        fit_days = distinct[distinct + horizon <= held_day]
        if fit_days.size == 0:
            continue
        result.append(
            Fold(
                fit=np.flatnonzero(np.isin(days, fit_days)),
                held=np.flatnonzero(days == held_day),
                fit_dates=tuple(str(d) for d in fit_days),
                held_dates=(str(held_day),),
            )
        )
    return result


def fold_of_rows(y: np.ndarray, group_of: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0..folds-1): a group's rows share one fold, and the groups are dealt
    round-robin in a seeded random order within each class of "any row positive", so every
    fold gets its share of churners. ``group_of`` numbers the groups 0..n-1."""
    group_y = np.zeros(group_of.max() + 1 if group_of.size else 0, dtype=y.dtype)
    np.maximum.at(group_y, group_of, y)
    rng = np.random.default_rng(seed)
    fold_of_group = np.empty(group_y.size, dtype=int)
    for value in np.unique(group_y):
        members = rng.permutation(np.flatnonzero(group_y == value))
        fold_of_group[members] = np.arange(members.size) % folds
    return fold_of_group[group_of]


def group_folds(y: np.ndarray, groups: Any, *, folds: int, seed: int = 42) -> list[Fold]:
    """K-fold for rows without a time axis: a customer's rows share one fold, folds are
    stratified by whether any of the customer's rows is positive."""
    _, group_of = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    fold_of = fold_of_rows(np.asarray(y), group_of, folds=folds, seed=seed)
    return [
        Fold(fit=np.flatnonzero(fold_of != k), held=np.flatnonzero(fold_of == k))
        for k in range(folds)
    ]


@dataclass
class Trial:
    """One candidate's cross-validated AUCs (one per fold)."""

    candidate: Candidate
    aucs: list[float]
    seconds: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.aucs)) if self.aucs else math.nan

    @property
    def sd(self) -> float:
        return float(np.std(self.aucs)) if self.aucs else math.nan


@dataclass
class Selection:
    """What was tried, and the best candidate of each family (what the final fit uses)."""

    kind: str
    folds: list[Fold]
    trials: list[Trial]
    best: dict[str, Candidate]
    chosen: str
    """The family with the best mean CV AUC: the winner, unless the caller decides otherwise."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Experiments reported but not used by the champion (the BTYD features)."""

    def table(self) -> list[tuple[str, float, float, int, str]]:
        """(candidate, mean AUC, sd, folds, chosen) rows: what the metadata and card show."""
        chosen = {self.best[f].name for f in self.best}
        winner = self.best[self.chosen].name
        return [
            (
                t.candidate.name,
                t.mean,
                t.sd,
                len(t.aucs),
                "winner"
                if t.candidate.name == winner
                else "best of family"
                if t.candidate.name in chosen
                else "",
            )
            for t in self.trials
        ]

    def to_dict(self) -> dict[str, Any]:
        """The card's ``selection`` block: the folds, every trial and the choice."""
        return {
            "kind": self.kind,
            "folds": [
                {
                    "fit_rows": int(f.fit.size),
                    "held_rows": int(f.held.size),
                    "fit_dates": [f.fit_dates[0], f.fit_dates[-1]] if f.fit_dates else [],
                    "held_dates": list(f.held_dates),
                }
                for f in self.folds
            ],
            "trials": [
                {"candidate": name, "cv_auc_mean": m, "cv_auc_sd": s, "folds": n, "chosen": c}
                for name, m, s, n, c in self.table()
            ],
            "chosen": {family: c.name for family, c in self.best.items()},
            "winner_family": self.chosen,
            "window": {
                f: {"kind": c.window.kind, "months": c.window.months} for f, c in self.best.items()
            },
        } | ({"experiments": self.extra} if self.extra else {})


def fit_candidate(
    candidate: Candidate,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    X_stop: np.ndarray,
    y_stop: np.ndarray,
    specs: Sequence[FeatureSpec],
    *,
    early_stopping_rounds: int | None = None,
):
    """Fit ``candidate`` on the rows of positive weight; LightGBM early-stops on
    ``(X_stop, y_stop)``. Returns the fitted :class:`~churn.modeling.model.ChurnModel`."""
    keep = weights > 0
    X, y, w = X[keep], y[keep], weights[keep]
    sample_weight = None if np.all(w == 1.0) else w
    if candidate.family == LOGISTIC:
        return train_logistic(X, y, specs, candidate.logistic, sample_weight=sample_weight)
    config = candidate.lightgbm or LightGBMConfig()
    if early_stopping_rounds is not None:
        config = replace(config, early_stopping_rounds=early_stopping_rounds)
    return train_lightgbm(X, y, X_stop, y_stop, specs, config, sample_weight=sample_weight)


def _cross_validate(
    candidate: Candidate,
    X: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray | None,
    folds: Sequence[Fold],
    specs: Sequence[FeatureSpec],
) -> Trial:
    started = time.perf_counter()
    aucs = []
    for fold in folds:
        weights = (
            candidate.window.weights(dates[fold.fit])
            if dates is not None
            else np.ones(fold.fit.size)
        )
        model = fit_candidate(
            candidate,
            X[fold.fit],
            y[fold.fit],
            weights,
            X[fold.held],
            y[fold.held],
            specs,
            early_stopping_rounds=CV_EARLY_STOPPING_ROUNDS,
        )
        aucs.append(auc(y[fold.held], model.raw_proba(X[fold.held])))
    return Trial(candidate, aucs, time.perf_counter() - started)


def usable_folds(folds: Sequence[Fold], y: np.ndarray) -> list[Fold]:
    """The folds whose fit and held rows both hold both outcomes (AUC needs them)."""
    return [
        f for f in folds if len(set(y[f.fit].tolist())) == 2 and len(set(y[f.held].tolist())) == 2
    ]


def select(
    X: np.ndarray,
    y: np.ndarray,
    specs: Sequence[FeatureSpec],
    folds: Sequence[Fold],
    grid: Sequence[Candidate],
    windows: Sequence[Window] = (),
    *,
    dates: Any = None,
    log=None,
) -> Selection | None:
    """Cross-validate ``grid`` on ``folds`` of the pooled rows ``(X, y)``, then each window in
    ``windows`` for the leading candidate (only with ``dates``: a time axis; the other family
    keeps all history, which saves a fifth of the cost on the default data).
    None when no fold can be scored (too few months or one outcome only)."""
    y = np.asarray(y)
    folds = usable_folds(folds, y)
    if not folds:
        return None
    days = _as_days(dates) if dates is not None else None
    trials = []
    for candidate in grid:
        trials.append(_cross_validate(candidate, X, y, days, folds, specs))
        if log is not None:
            log(f"cv {trials[-1].candidate.name}: {trials[-1].mean:.4f} +- {trials[-1].sd:.4f}")
    best = _best_per_family(trials)
    if days is not None and np.unique(days).size > 2:
        leader = max(best.values(), key=lambda candidate: _mean_of(trials, candidate))
        for candidate in [leader]:
            for window in windows:
                trials.append(
                    _cross_validate(replace(candidate, window=window), X, y, days, folds, specs)
                )
                if log is not None:
                    log(f"cv {trials[-1].candidate.name}: {trials[-1].mean:.4f}")
        best = _best_per_family(trials)
    chosen = max(best, key=lambda family: _mean_of(trials, best[family]))
    kind = "time" if days is not None else "grouped"
    return Selection(kind=kind, folds=list(folds), trials=trials, best=best, chosen=chosen)


def _mean_of(trials: Sequence[Trial], candidate: Candidate) -> float:
    return next(t.mean for t in trials if t.candidate == candidate)


def _best_per_family(trials: Sequence[Trial]) -> dict[str, Candidate]:
    """The best mean AUC of each family; on a tie the earlier trial (the configured one)."""
    best: dict[str, Trial] = {}
    for trial in trials:
        family = trial.candidate.family
        if family not in best or trial.mean > best[family].mean:
            best[family] = trial
    return {family: trial.candidate for family, trial in best.items()}


def compare_extra_columns(
    selection: Selection,
    X: np.ndarray,
    y: np.ndarray,
    extra: np.ndarray,
    names: Sequence[str],
    specs: Sequence[FeatureSpec],
    dates: Any = None,
) -> dict[str, Any]:
    """The best LightGBM candidate's CV AUC with ``extra`` numeric columns appended, next to
    its AUC without them, on the same folds: whether generated features earn their place."""
    from churn.modeling.spec import FeatureSpec as Spec

    candidate = selection.best.get(LIGHTGBM)
    if candidate is None:
        return {}
    extended = [
        *specs,
        *(Spec(name=n, kind="numeric", dtype="number", description=n) for n in names),
    ]
    days = _as_days(dates) if dates is not None else None
    with_extra = _cross_validate(
        candidate, np.column_stack([X, extra]), y, days, selection.folds, extended
    )
    without = _mean_of(selection.trials, candidate)
    return {
        "features": list(names),
        "candidate": candidate.name,
        "cv_auc_without": without,
        "cv_auc_with": with_extra.mean,
        "cv_auc_with_sd": with_extra.sd,
        "gain": with_extra.mean - without,
        "improves": bool(with_extra.mean - without > MIN_CV_GAIN),
    }
