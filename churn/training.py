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
from churn.modeling.spec import FeatureSpec, build_feature_specs, encode_frame
from churn.modeling.split import StratifiedSplit, TimeSplit, stratified_split, time_split
from churn.modeling.thresholds import expected_value_threshold, risk_tiers

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from churn.features import Feature

LEAKAGE_CEILING = 0.98
"""No honest churn model on behavioural data reaches this test AUC; above it, suspect leakage."""

LABEL = "churned"


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


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of the training rows, so a model can be traced to the exact data."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
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
            ),
            tuple(dates),
            stratified.validation_share,
            stratified.test_share,
            stratified.seed,
            stratified.cv_folds,
        )
        train_mask, validation_mask, test_mask = split.masks(len(frame))
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
        fingerprint=fingerprint(frame),
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
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=int)
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        fold_of[rows] = np.arange(rows.size) % folds
    scores: dict[str, list[float]] = {"logistic_regression": [], "lightgbm": []}
    for fold in range(folds):
        held, kept = fold_of == fold, np.flatnonzero(fold_of != fold)
        inner = stratified_split(y[kept], validation_share=0.15, test_share=0.01, seed=seed)
        fit, stop = kept[np.concatenate([inner.train, inner.test])], kept[inner.validation]
        model = train_logistic(X[kept], y[kept], data.specs, logistic)
        scores["logistic_regression"].append(auc(y[held], model.predict_proba(X[held])))
        booster = train_lightgbm(X[fit], y[fit], X[stop], y[stop], data.specs, lightgbm)
        scores["lightgbm"].append(auc(y[held], booster.predict_proba(X[held])))
    return scores


def train_candidates(
    data: TrainingData, logistic: LogisticConfig, lightgbm: LightGBMConfig
) -> dict[str, ChurnModel]:
    return {
        "logistic_regression": train_logistic(data.train.X, data.train.y, data.specs, logistic),
        "lightgbm": train_lightgbm(
            data.train.X,
            data.train.y,
            data.validation.X,
            data.validation.y,
            data.specs,
            lightgbm,
        ),
    }


@dataclass(frozen=True)
class Economics:
    """What a retention contact costs and what keeping a customer is worth."""

    intervention_cost: float = 10.0
    retained_value: float = 240.0
    success_rate: float = 0.3


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


def evaluate_candidates(
    data: TrainingData,
    models: dict[str, ChurnModel],
    truth: pd.DataFrame | None,
    economics: Economics,
    *,
    default_threshold: float = 0.5,
) -> Evaluation:
    results: dict[str, CandidateResult] = {}
    for name, model in models.items():
        validation_scores = model.predict_proba(data.validation.X)
        test_scores = model.predict_proba(data.test.X)
        results[name] = CandidateResult(
            name=name,
            validation=evaluate(data.validation.y, validation_scores, default_threshold),
            test=evaluate(data.test.y, test_scores, default_threshold),
            validation_scores=validation_scores,
            test_scores=test_scores,
        )
    winner = max(results, key=lambda name: results[name].validation["roc_auc"])
    chosen = results[winner]
    ev_threshold, ev_per_customer, _ = expected_value_threshold(
        data.validation.y,
        chosen.validation_scores,
        intervention_cost=economics.intervention_cost,
        retained_value=economics.retained_value,
        success_rate=economics.success_rate,
    )
    return Evaluation(
        results=results,
        winner=winner,
        oracle_auc=oracle_auc(data.test, truth),
        thresholds={
            "default": default_threshold,
            "expected_value": ev_threshold,
            "expected_value_per_customer": ev_per_customer,
        },
        risk_tier_cuts=risk_tiers(chosen.validation_scores),
    )


@dataclass(frozen=True)
class ChampionComparison:
    """The new winner against the current champion on the same test rows.

    ``auc_delta`` is new minus champion; the interval is the paired bootstrap's
    (:func:`churn.monitoring.challenger.paired_bootstrap`): both models are scored on the same
    resampled rows, so the interval of the difference is not blurred by the rows' own noise.
    """

    champion_tag: str
    rows: int
    champion_auc: float
    new_auc: float
    auc_delta: float
    ci_low: float | None
    ci_high: float | None
    confidence: float

    @property
    def interval(self) -> str:
        if self.ci_low is None or self.ci_high is None:
            return "no interval (a single class in every resample)"
        return f"{self.confidence:.0%} CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"

    @property
    def significantly_worse(self) -> bool:
        """The whole interval lies below zero: worse beyond the noise of these test rows."""
        return self.ci_high is not None and self.ci_high < 0


def compare_with_champion(
    y: np.ndarray,
    champion_scores: np.ndarray,
    new_scores: np.ndarray,
    champion_tag: str,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ChampionComparison:
    """Paired bootstrap of (new AUC - champion AUC) on the same rows, the test used for
    challengers too, so the gate and the champion/challenger comparison speak one language."""
    from churn.monitoring.challenger import paired_bootstrap, rank_auc

    delta, low, high, _ = paired_bootstrap(
        y, champion_scores, new_scores, n_boot=n_boot, confidence=confidence, seed=seed
    )
    finite = bool(np.isfinite(low) and np.isfinite(high))
    return ChampionComparison(
        champion_tag=champion_tag,
        rows=len(y),
        champion_auc=rank_auc(y, champion_scores),
        new_auc=rank_auc(y, new_scores),
        auc_delta=float(delta),
        ci_low=float(low) if finite else None,
        ci_high=float(high) if finite else None,
        confidence=confidence,
    )


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict; ``rule`` names the rule that decided it, ``reason`` says it in words.

    The comparison fields are None when there was no comparable champion.
    """

    promoted: bool
    rule: str
    reason: str
    test_auc: float
    champion_tag: str | None = None
    champion_auc: float | None = None
    auc_delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    tolerance: float = 0.0


GATE_RULES = {
    "leakage_ceiling": "refused: test AUC above the leakage ceiling",
    "auc_floor": "refused: test AUC below the floor",
    "significantly_worse": "refused: the paired-bootstrap interval of (new - champion) AUC lies "
    "below 0",
    "below_champion": "refused: not significantly worse, but the point estimate is below the "
    "champion's (by more than the tolerance, when one is set)",
    "not_worse": "promoted: point estimate at or above the champion's, not significantly worse",
    "within_tolerance": "promoted: point estimate below the champion's by no more than the "
    "configured tolerance, and not significantly worse",
    "no_champion": "promoted: no champion yet",
    "incomparable_champion": "promoted: the champion uses other features, so it cannot score "
    "the new test rows",
}
"""Every rule the gate can decide by, in the order it tries them (also shown in the model card)."""


def decide(
    test_auc: float,
    *,
    auc_floor: float,
    tolerance: float = 0.0,
    champion_tag: str | None = None,
    versus: ChampionComparison | None = None,
) -> GateDecision:
    """The quality gate: leakage ceiling, absolute floor, then no regression against the
    champion on the same test rows.

    Against a champion the new model must be (1) not significantly worse (the paired bootstrap
    interval of the AUC difference does not lie below 0) and (2) not below it on the point
    estimate. ``tolerance`` (default 0) relaxes only (2): a point estimate below the champion's
    by at most ``tolerance`` passes, and the reason says that this rule let it through.
    """
    common: dict[str, Any] = {"test_auc": test_auc, "tolerance": tolerance}
    if versus is not None:
        champion_tag = versus.champion_tag
        common |= {
            "champion_auc": versus.champion_auc,
            "auc_delta": versus.auc_delta,
            "ci_low": versus.ci_low,
            "ci_high": versus.ci_high,
            "confidence": versus.confidence,
        }
    common["champion_tag"] = champion_tag
    if test_auc > LEAKAGE_CEILING:
        return GateDecision(
            False,
            "leakage_ceiling",
            f"suspected leakage: test AUC {test_auc:.4f} is above {LEAKAGE_CEILING}; no honest "
            "churn model gets there. Look for a feature that sees the label window.",
            **common,
        )
    if test_auc < auc_floor:
        return GateDecision(
            False,
            "auc_floor",
            f"test AUC {test_auc:.4f} is below the floor {auc_floor:.4f}",
            **common,
        )
    if versus is None:
        if champion_tag is None:
            return GateDecision(
                True,
                "no_champion",
                f"test AUC {test_auc:.4f} passes the floor {auc_floor:.4f}; no champion yet",
                **common,
            )
        return GateDecision(
            True,
            "incomparable_champion",
            f"test AUC {test_auc:.4f} passes the floor {auc_floor:.4f}; champion {champion_tag} "
            "uses other features and cannot score the new test rows, so it was not compared",
            **common,
        )
    figures = (
        f"AUC {versus.new_auc:.4f} vs champion {champion_tag} {versus.champion_auc:.4f} on the "
        f"same {versus.rows:,} test rows (delta {versus.auc_delta:+.4f}, {versus.interval})"
    )
    if versus.significantly_worse:
        return GateDecision(
            False,
            "significantly_worse",
            f"worse than champion {champion_tag} beyond the noise: {figures}",
            **common,
        )
    if versus.auc_delta < -tolerance:
        allowed = f" by more than the tolerance {tolerance:.4f}" if tolerance else ""
        return GateDecision(
            False,
            "below_champion",
            f"worse than champion {champion_tag} on the point estimate{allowed} "
            f"(not significantly): {figures}",
            **common,
        )
    if versus.auc_delta < 0:
        return GateDecision(
            True,
            "within_tolerance",
            f"promoted by the tolerance rule: below champion {champion_tag} by "
            f"{-versus.auc_delta:.4f} <= tolerance {tolerance:.4f}, not significantly: {figures}",
            **common,
        )
    return GateDecision(
        True, "not_worse", f"not worse than champion {champion_tag}: {figures}", **common
    )


def champion_scores_on(
    test: Part, model: ChurnModel, specs: list[FeatureSpec]
) -> np.ndarray | None:
    """The current champion's probabilities for the new test rows (encoded with its own specs,
    as it would be served), when it speaks the same features as the new candidates."""
    if [s.name for s in model.specs] != [s.name for s in specs]:
        return None
    return model.predict_proba(encode_frame(test.frame, model.specs))
