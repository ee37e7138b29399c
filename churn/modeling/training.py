"""Train the candidates, evaluate them honestly, choose a winner and decide whether to promote.

Honesty rules, in code: the split is by observation date (train on the past, validate and test on
later matured months), feature specs and thresholds are fitted on training and validation rows
only, the winner is chosen on validation AUC, and the test months are touched once, to report
and to gate. A test AUC above the leakage ceiling is treated as a bug, not a triumph.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.modeling.candidates import (
    LightGBMConfig,
    LogisticConfig,
    train_lightgbm,
    train_logistic,
)
from churn.modeling.metrics import auc, evaluate
from churn.modeling.model import ChurnModel
from churn.modeling.selection import Selection, fold_of_rows
from churn.modeling.spec import FeatureSpec, build_feature_specs, encode_frame
from churn.modeling.split import StratifiedSplit, TimeSplit, stratified_split, time_split
from churn.modeling.thresholds import expected_value_threshold, risk_tiers

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from churn.features import Feature

LABEL = "churned"
RECENCY_FEATURE = "days_since_last_event"
"""The generated (and subscription) families' recency: days since a customer's last event."""


@dataclass
class Part:
    """One block of the split, already encoded for the models."""

    frame: pd.DataFrame
    X: np.ndarray
    y: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.y)


@dataclass
class TrainingData:
    specs: list[FeatureSpec]
    split: TimeSplit | StratifiedSplit
    train: Part
    validation: Part
    test: Part
    fingerprint: str

    def window(self) -> dict[str, Any]:
        return self.split.to_dict() | {
            "rows": {
                "train": self.train.rows,
                "validation": self.validation.rows,
                "test": self.test.rows,
            }
        }


KEY_COLUMNS = ("customer_id", "observation_date")


class LabelError(ValueError):
    """The matured labels cannot train or judge a model: one class only, overall or in a block
    of the split. Says which definition of churn to check instead of scikit-learn's "only one
    class" (or LightGBM's) deep in the fit."""


_CHECK_CHURN = (
    "Check what churn means for this source: the churn: block of the source config "
    "(inactive_days: N counts a customer with no event in the N days after a date; "
    "cancellation_event: <type> or a cancellations table must match the data's own values), "
    "or for a flat table its label: {column, positive}"
)


def check_label_classes(
    labels: np.ndarray, parts: dict[str, np.ndarray], dates: Sequence[Any] = ()
) -> None:
    """Raise :class:`LabelError` unless the labels hold both classes, overall and in every
    block (``parts``: block name -> row mask)."""
    values = np.asarray(labels)
    span = f" from {min(dates)} to {max(dates)}" if len(dates) else ""
    if values.size == 0:
        raise LabelError(f"no matured labelled rows{span} to train on. {_CHECK_CHURN}.")
    churned = int(values.sum())
    if churned in (0, values.size):
        who = "nobody churns" if churned == 0 else "everybody churns"
        raise LabelError(
            f"{who}: all {values.size:,} matured rows{span} have {LABEL} = "
            f"{int(churned > 0)}, and a model needs both outcomes. {_CHECK_CHURN}."
        )
    for name, mask in parts.items():
        block = values[mask]
        if block.size and int(block.sum()) in (0, block.size):
            raise LabelError(
                f"the {name} block ({block.size:,} rows) has only {LABEL} = "
                f"{int(block[0])}, though {churned:,} of {values.size:,} matured rows churn: "
                "use more months or more customers, so every block sees both outcomes. "
                f"{_CHECK_CHURN}."
            )


def fingerprint(frame: pd.DataFrame, features: Sequence[str] = ()) -> str:
    """Content hash of the rows a model learns from and is tested on: their keys, the model's
    feature columns and the label, in key order.

    Two trainings with the same fingerprint (and window) saw the same data, so the gate knows a
    retrain has nothing new to learn (:func:`churn.modeling.gate.same_training_data`). Columns the
    model never sees are left out, so a bookkeeping column cannot make identical data look new;
    doubles are hashed as float32, so a last-bit difference of a parallel SQL sum between two
    runs is not new data either. Without ``features`` every column is hashed.
    """
    import pandas as pd

    keys = [column for column in KEY_COLUMNS if column in frame.columns]
    columns = [*keys, *features, LABEL] if features else list(frame.columns)
    rows = frame[[column for column in dict.fromkeys(columns) if column in frame.columns]]
    if keys:
        rows = rows.sort_values(keys, kind="stable")
    doubles = rows.select_dtypes("float64").columns
    rows = rows.astype(dict.fromkeys(doubles, "float32"))
    hashed = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class StratifiedOptions:
    """How a table without a time axis is split (and optionally cross-validated)."""

    validation_share: float = 0.15
    test_share: float = 0.15
    seed: int = 42
    cv_folds: int = 0


def prepare(
    frame: pd.DataFrame,
    feature_names: list[str],
    *,
    validation_months: int,
    test_months: int,
    horizon_days: int,
    features: Sequence[Feature] | None = None,
    stratified: StratifiedOptions | None = None,
) -> TrainingData:
    """Split and encode; specs see only the training block.

    By observation date (the default), or, for a flat table observed once (``stratified``), a
    stratified row split. ``features`` are the declared model inputs; by default the event
    schema's :data:`churn.features.FEATURES`, for a flat source the ones inferred from its table.
    """
    labels = frame[LABEL].to_numpy()
    dates = sorted({_as_date(d) for d in frame["observation_date"]})
    check_label_classes(labels, {}, dates)  # before the split, whose own error would hide it
    split: TimeSplit | StratifiedSplit
    if stratified is None:
        split = time_split(
            frame["observation_date"],
            validation_months=validation_months,
            test_months=test_months,
            horizon_days=horizon_days,
        )
        train_mask, validation_mask, test_mask = split.masks(frame["observation_date"])
    else:
        dates = sorted({_as_date(d) for d in frame["observation_date"]})
        split = StratifiedSplit(
            stratified_split(
                frame[LABEL].to_numpy(),
                validation_share=stratified.validation_share,
                test_share=stratified.test_share,
                seed=stratified.seed,
                # several snapshots hold a customer more than once: keep them in one block
                groups=frame["customer_id"].to_numpy() if len(dates) > 1 else None,
            ),
            tuple(dates),
            stratified.validation_share,
            stratified.test_share,
            stratified.seed,
            stratified.cv_folds,
        )
        train_mask, validation_mask, test_mask = split.masks(len(frame))
    check_label_classes(
        labels,
        {"training": train_mask, "validation": validation_mask, "test": test_mask},
        dates,
    )
    if features is None:
        from churn.features import FEATURES

        features = FEATURES
    features = [f for f in features if f.name in feature_names]
    specs = build_feature_specs(frame.loc[train_mask], features)

    def part(mask: np.ndarray) -> Part:
        block = frame.loc[mask].reset_index(drop=True)
        return Part(block, encode_frame(block, specs), block[LABEL].to_numpy(dtype=np.int8))

    return TrainingData(
        specs=specs,
        split=split,
        train=part(train_mask),
        validation=part(validation_mask),
        test=part(test_mask),
        fingerprint=fingerprint(
            frame.loc[train_mask | validation_mask | test_mask], [f.name for f in features]
        ),
    )


def _as_date(value: Any):
    from datetime import date

    return value if type(value) is date else date.fromisoformat(str(value)[:10])


def cross_validate(
    data: TrainingData,
    logistic: LogisticConfig,
    lightgbm: LightGBMConfig,
    folds: int,
    *,
    seed: int = 42,
) -> dict[str, list[float]]:
    """Stratified k-fold ROC AUC of both candidates over the training and validation rows (the
    test rows stay untouched). LightGBM early-stops on a stratified slice of each training
    fold, never on the fold it is scored on."""
    from churn.modeling.split import stratified_split

    X = np.vstack([data.train.X, data.validation.X])
    y = np.concatenate([data.train.y, data.validation.y])
    customers = np.concatenate(
        [
            data.train.frame["customer_id"].astype(str),
            data.validation.frame["customer_id"].astype(str),
        ]
    )
    # A customer's snapshots share one fold (stratified by whether any of them churned), so no
    # fold scores a customer it also trained on.
    _, group_of = np.unique(customers, return_inverse=True)
    repeated = group_of.max(initial=-1) + 1 < len(customers)
    if not repeated:  # one row per customer: each row its own group, in row order
        group_of = np.arange(len(customers))
    fold_of = fold_of_rows(y, group_of, folds=folds, seed=seed)
    scores: dict[str, list[float]] = {"logistic_regression": [], "lightgbm": []}
    for fold in range(folds):
        held, kept = fold_of == fold, np.flatnonzero(fold_of != fold)
        inner = stratified_split(
            y[kept],
            validation_share=0.15,
            test_share=0.01,
            seed=seed,
            groups=customers[kept] if repeated else None,
        )
        fit, stop = kept[np.concatenate([inner.train, inner.test])], kept[inner.validation]
        model = train_logistic(X[kept], y[kept], data.specs, logistic)
        scores["logistic_regression"].append(auc(y[held], model.predict_proba(X[held])))
        booster = train_lightgbm(X[fit], y[fit], X[stop], y[stop], data.specs, lightgbm)
        scores["lightgbm"].append(auc(y[held], booster.predict_proba(X[held])))
    return scores


SELECTION_TIME_FOLDS = 3
"""Expanding-window folds of the time-ordered model selection: three months of evidence."""


def pooled(data: TrainingData) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The train and validation rows as one block (X, y, frame): what model selection
    cross-validates on. The test rows are never part of it."""
    import pandas as pd

    frame = pd.concat([data.train.frame, data.validation.frame], ignore_index=True)
    return (
        np.vstack([data.train.X, data.validation.X]),
        np.concatenate([data.train.y, data.validation.y]),
        frame,
    )


def select_candidates(
    data: TrainingData,
    logistic: LogisticConfig,
    lightgbm: LightGBMConfig,
    *,
    horizon_days: int,
    folds: int = 0,
    seed: int = 42,
    log=None,
) -> Selection | None:
    """Time-ordered CV (:mod:`churn.modeling.selection`) over the pooled train and validation
    rows: expanding windows by observation date on a time split, customer-grouped K-fold
    (``folds``, default 3) on a stratified one. None when no fold can be scored."""
    from churn.modeling.selection import default_grid, group_folds, select, time_folds

    X, y, frame = pooled(data)
    dates = frame["observation_date"]
    grid, windows = default_grid(lightgbm, logistic, dates=int(dates.nunique()))
    if isinstance(data.split, TimeSplit):
        fold_list = time_folds(dates, horizon_days=horizon_days, folds=SELECTION_TIME_FOLDS)
        return select(X, y, data.specs, fold_list, grid, windows, dates=dates, log=log)
    fold_list = group_folds(y, frame["customer_id"], folds=folds or 3, seed=seed)
    return select(X, y, data.specs, fold_list, grid, log=log)


def train_candidates(
    data: TrainingData,
    logistic: LogisticConfig,
    lightgbm: LightGBMConfig,
    selection: Selection | None = None,
) -> dict[str, ChurnModel]:
    """Both families on the training block, LightGBM early-stopped on the validation block;
    with a ``selection``, each with its family's chosen settings and training window (the
    window's weights recorded in ``model.params["window"]``)."""
    from churn.modeling.selection import LIGHTGBM, LOGISTIC, Candidate, fit_candidate

    chosen = dict(selection.best) if selection is not None else {}
    candidates = {
        LOGISTIC: chosen.get(LOGISTIC, Candidate(LOGISTIC, logistic=logistic)),
        LIGHTGBM: chosen.get(LIGHTGBM, Candidate(LIGHTGBM, lightgbm=lightgbm)),
    }
    models: dict[str, ChurnModel] = {}
    for name, candidate in candidates.items():
        weights = candidate.window.weights(data.train.frame["observation_date"])
        model = fit_candidate(
            candidate,
            data.train.X,
            data.train.y,
            weights,
            data.validation.X,
            data.validation.y,
            data.specs,
        )
        model.params["window"] = {
            "kind": candidate.window.kind,
            "months": candidate.window.months,
            "rows": int((weights > 0).sum()),
        }
        models[name] = model
    return models


@dataclass(frozen=True)
class Economics:
    """What a retention contact costs and what keeping a customer is worth, and whom to
    contact: the source config's ``economics:`` block (:class:`churn.sources.config.
    EconomicsConfig`, same field names), kept in the model card. The threshold is chosen with
    ``retained_value`` (the fallback when the value comes from a measure); the rest decides
    ``contact`` and ``holdout`` in ``customer_scores`` (:mod:`churn.scoring.contact`)."""

    intervention_cost: float = 10.0
    retained_value: float = 240.0
    success_rate: float = 0.3
    retained_value_measure: str | None = None
    retained_value_months: float | None = None
    capacity_count: int | None = None
    capacity_share: float | None = None
    holdout_share: float = 0.1


@dataclass
class CandidateResult:
    name: str
    validation: dict[str, float]
    test: dict[str, float]
    validation_scores: np.ndarray = field(repr=False)
    test_scores: np.ndarray = field(repr=False)


@dataclass
class Evaluation:
    results: dict[str, CandidateResult]
    winner: str
    oracle_auc: float | None
    thresholds: dict[str, float]
    risk_tier_cuts: tuple[float, float]
    economics: Economics = field(default_factory=Economics)
    decision_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """The winner at its decision threshold, per block (validation, test): see
    :func:`at_threshold`."""
    baselines: dict[str, float] = field(default_factory=dict)
    """Test AUC of one-feature scores on the winner's test rows (``recency_auc``): the bar a model
    must clear to be worth more than "who has been quiet longest"."""
    calibration: dict[str, Any] | None = None
    """The winner's calibration (:mod:`churn.modeling.calibration`): kept or not, validation
    and test ECE, Brier and log loss before and after; set by ``model_evaluation``."""
    selection: dict[str, Any] | None = None
    """What model selection tried and chose (:meth:`churn.modeling.selection.Selection.
    to_dict`), set by the caller that ran it; the card keeps it."""
    backtest: list[dict[str, Any]] | None = None
    """Rolling-origin results of the winner's recipe (:mod:`churn.modeling.backtest`), set by
    the caller that has the whole matured history."""

    @property
    def winning(self) -> CandidateResult:
        return self.results[self.winner]

    @property
    def auc_to_oracle(self) -> float | None:
        if self.oracle_auc is None:
            return None
        return self.winning.test["roc_auc"] / self.oracle_auc


def oracle_auc(test: Part, truth: pd.DataFrame | None) -> float | None:
    """AUC of the generator's true probabilities on exactly the test rows: the best possible."""
    if truth is None or truth.empty:
        return None
    keys = test.frame[["customer_id", "observation_date"]].copy()
    keys["observation_date"] = keys["observation_date"].astype("datetime64[ns]")
    truth = truth.assign(observation_date=truth["observation_date"].astype("datetime64[ns]"))
    joined = keys.merge(truth, on=["customer_id", "observation_date"], how="left")
    known = joined["true_churn_probability"].notna().to_numpy()
    if known.sum() < 0.99 * len(keys):
        return None
    return auc(test.y[known], joined["true_churn_probability"].to_numpy()[known])


def recency_baseline_auc(data: TrainingData) -> float | None:
    """Test AUC of ranking by days since the last event alone, or None without that feature.

    Why: on an event log, recency is the obvious rule of thumb; a model's AUC means little
    until it is compared with that rule on the same test rows. Flat sources have no recency.
    """
    names = {spec.name for spec in data.specs}
    if RECENCY_FEATURE not in names or data.test.rows == 0 or len(set(data.test.y)) < 2:
        return None
    recency = data.test.frame[RECENCY_FEATURE].astype("float64").fillna(0.0).to_numpy()
    return auc(data.test.y, recency)


def evaluate_candidates(
    data: TrainingData,
    models: dict[str, ChurnModel],
    truth: pd.DataFrame | None,
    economics: Economics,
    *,
    default_threshold: float = 0.5,
    winner: str | None = None,
) -> Evaluation:
    """Each candidate at its own decision threshold on validation and test; the winner is
    ``winner`` when given (model selection's choice on cross-validated AUC, which saw more
    months than the validation block alone), else the best validation AUC."""
    results: dict[str, CandidateResult] = {}
    ev_thresholds: dict[str, tuple[float, float]] = {}
    for name, model in models.items():
        validation_scores = model.predict_proba(data.validation.X)
        test_scores = model.predict_proba(data.test.X)
        # Each candidate at the threshold it would decide with (chosen on validation by money),
        # not at 0.5: at a ~4% base rate LightGBM labels nobody at 0.5, and the precision and
        # recall the metrics table shows must be those of the list the model would produce.
        ev_thresholds[name] = expected_value_threshold(
            data.validation.y,
            validation_scores,
            intervention_cost=economics.intervention_cost,
            retained_value=economics.retained_value,
            success_rate=economics.success_rate,
        )[:2]
        threshold = ev_thresholds[name][0]
        results[name] = CandidateResult(
            name=name,
            validation=evaluate(data.validation.y, validation_scores, threshold),
            test=evaluate(data.test.y, test_scores, threshold),
            validation_scores=validation_scores,
            test_scores=test_scores,
        )
    if winner is None or winner not in results:
        winner = max(results, key=lambda name: results[name].validation["roc_auc"])
    chosen = results[winner]
    ev_threshold, ev_per_customer = ev_thresholds[winner]
    return Evaluation(
        results=results,
        winner=winner,
        oracle_auc=oracle_auc(data.test, truth),
        baselines=(
            {"recency_auc": recency} if (recency := recency_baseline_auc(data)) is not None else {}
        ),
        thresholds={
            "default": default_threshold,
            "expected_value": ev_threshold,
            "expected_value_per_customer": ev_per_customer,
            # The threshold labels, the service and customer_scores use: chosen on validation by
            # money, because at 0.5 a model of a ~4% base rate labels almost no one.
            "decision": ev_threshold,
        },
        risk_tier_cuts=risk_tiers(chosen.validation_scores, ev_threshold),
        economics=economics,
        decision_metrics={
            "validation": at_threshold(
                data.validation.y, chosen.validation_scores, ev_threshold, economics
            ),
            "test": at_threshold(data.test.y, chosen.test_scores, ev_threshold, economics),
        },
    )


def at_threshold(
    y: np.ndarray, scores: np.ndarray, threshold: float, economics: Economics
) -> dict[str, float]:
    """What contacting everyone at or above ``threshold`` does: how many, how many of them
    churn (precision), how many churners it reaches (recall), and the money per customer."""
    y = np.asarray(y, dtype=np.float64)
    contacted = np.asarray(scores) >= threshold
    hits = float(y[contacted].sum())
    positives = float(y.sum())
    gain = economics.success_rate * economics.retained_value * hits
    cost = economics.intervention_cost * float(contacted.sum())
    return {
        "threshold": float(threshold),
        "rows": int(y.size),
        "contacted": int(contacted.sum()),
        "contacted_share": float(contacted.mean()) if y.size else 0.0,
        "precision": hits / float(contacted.sum()) if contacted.any() else None,
        "recall": hits / positives if positives else None,
        "expected_value_per_customer": (gain - cost) / y.size if y.size else 0.0,
    }


def btyd_experiment(
    con: Any, data: TrainingData, selection: Selection, *, horizon_days: int
) -> dict[str, Any]:
    """Would BG/NBD's P(alive) and expected events, as features, improve the cross-validated
    AUC of the chosen LightGBM setting? Measured on the selection's own folds; reported, never
    used by the champion (:mod:`churn.modeling.btyd_features` says why)."""
    from churn.modeling.btyd_features import NAMES, btyd_columns
    from churn.modeling.selection import compare_extra_columns

    X, y, frame = pooled(data)
    columns, _ = btyd_columns(con, frame, horizon_days)
    dates = frame["observation_date"] if selection.kind == "time" else None
    report = compare_extra_columns(selection, X, y, columns, NAMES, data.specs, dates=dates)
    return report | {"in_champion": False, "why": "training-only: not in the serving definition"}
