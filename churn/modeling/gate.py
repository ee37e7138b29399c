"""The quality gate: whether the winning candidate may replace the champion.

A model is promoted only when it learned something the champion did not (a different training
window or different rows: a retrain on the champion's own data would only mint a new version of
the same model), its test AUC is believable (below the leakage ceiling), good enough (above the
floor) and not worse than the current champion on the very same test rows: not significantly
worse by the paired bootstrap we also use for challengers, and not below it on the point
estimate (unless a tolerance is configured, and then the reason says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.modeling.model import ChurnModel
from churn.modeling.spec import FeatureSpec, encode_frame
from churn.modeling.training import Part

LEAKAGE_CEILING = 0.98
"""No honest churn model on behavioural data reaches this test AUC; above it, suspect leakage."""

NOTHING_NEW = "nothing_new"
"""The rule of a candidate trained on the champion's own window and rows: not promoted, but not
a failure either (nothing is wrong with the data or the model; there was just nothing to learn)."""

WINDOW_BLOCKS = ("kind", "train_dates", "validation_dates", "test_dates")
"""The parts of a card's ``data_window`` that say which observation dates a model saw."""


def same_training_data(
    window: Mapping[str, Any], fingerprint: str, champion_card: Mapping[str, Any]
) -> bool:
    """Whether a candidate trained on ``window`` (``TrainingData.window()``) with rows hashing to
    ``fingerprint`` saw exactly what the champion saw, per the champion's card (``data_window``
    and ``lineage.data_fingerprint``). A card without them (an older card) is never "the same"."""
    recorded = champion_card.get("data_window")
    recorded_fingerprint = champion_card.get("lineage", {}).get("data_fingerprint")
    if not isinstance(recorded, Mapping) or recorded_fingerprint != fingerprint:
        return False
    return all(
        _as_list(recorded.get(block)) == _as_list(window.get(block)) for block in WINDOW_BLOCKS
    )


def _as_list(value: Any) -> Any:
    """Dates as the card stores them (ISO strings in a list)."""
    if isinstance(value, list | tuple):
        return [str(item)[:10] for item in value]
    return value


def window_span(window: Mapping[str, Any]) -> str:
    """``first..last`` observation date a model learned from or was tested on."""
    dates = sorted(
        str(day)[:10]
        for block in ("train_dates", "validation_dates", "test_dates")
        for day in window.get(block) or ()
    )
    return f"{dates[0]}..{dates[-1]}" if dates else "(no dates)"


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

    @property
    def blocks(self) -> bool:
        """A refusal that is an error (a worse, leaky or too weak model), as opposed to "nothing
        new to learn", which keeps the champion without failing anything."""
        return not self.promoted and self.rule != NOTHING_NEW


GATE_RULES = {
    NOTHING_NEW: "not promoted: trained on the champion's own window and rows, so it is the "
    "same model again (no new version, no new Bento)",
    "leakage_ceiling": "refused: test AUC above the leakage ceiling",
    "auc_floor": "refused: test AUC below the floor",
    "significantly_worse": "refused: the paired-bootstrap interval of (new - champion) AUC lies "
    "below 0",
    "below_champion": "refused: not significantly worse, but the point estimate is below the "
    "champion's (by more than the tolerance, when one is set)",
    "calibration_worse": "refused: test ECE (10 equal-count bins) above the champion's on the "
    "same test rows by more than ece_margin",
    "not_worse": "promoted: point estimate at or above the champion's, not significantly worse",
    "within_tolerance": "promoted: point estimate below the champion's by no more than the "
    "configured tolerance, and not significantly worse",
    "no_champion": "promoted: no champion yet",
    "incomparable_champion": "promoted: the champion uses other features, so it cannot score "
    "the new test rows",
}
"""Every rule the gate can decide by, in the order it tries them (also shown in the model card)."""


def floor_advice(floor_source: str, champion_tag: str | None, training_rows: int | None) -> str:
    """What follows "below the floor": where the floor was set, the two places to set it
    (``CHURN_AUC_FLOOR``, the source config's ``model: {auc_floor: ...}``), what to try, and
    what happens to the scores."""
    source = f" (set by {floor_source})" if floor_source else ""
    learned = f" ({training_rows:,} training rows)" if training_rows is not None else ""
    outcome = (
        f"the champion {champion_tag} stays"
        if champion_tag
        else "there is no champion yet, so no scores until a model passes"
    )
    return (
        f"{source}: too little signal to trust{learned}. Try more history (months) or more "
        "customers, or lower the floor with CHURN_AUC_FLOOR or model: {auc_floor: ...} in the "
        f"source config (0.5 is a coin toss); {outcome}"
    )


def decide(
    test_auc: float,
    *,
    auc_floor: float,
    tolerance: float = 0.0,
    champion_tag: str | None = None,
    versus: ChampionComparison | None = None,
    same_data_window: Mapping[str, Any] | None = None,
    floor_source: str = "",
    training_rows: int | None = None,
    test_ece: float | None = None,
    champion_ece: float | None = None,
    ece_margin: float | None = None,
) -> GateDecision:
    """The quality gate: nothing new to learn, leakage ceiling, absolute floor, then no
    regression against the champion on the same test rows.

    ``same_data_window`` is the candidate's window when :func:`same_training_data` found it
    identical to the champion's (window and rows): the candidate is then the champion again,
    and is not promoted whatever its AUC (rule ``nothing_new``; :attr:`GateDecision.blocks` is
    False, since nothing failed).

    Against a champion the new model must be (1) not significantly worse (the paired bootstrap
    interval of the AUC difference does not lie below 0) and (2) not below it on the point
    estimate. ``tolerance`` (default 0) relaxes only (2): a point estimate below the champion's
    by at most ``tolerance`` passes, and the reason says that this rule let it through.
    (3) Its test ECE (``test_ece``, :func:`churn.modeling.calibration.ece_equal_count`) must not
    exceed the champion's on the same rows by more than ``ece_margin`` (rule
    ``calibration_worse``; None turns the rule off).

    ``floor_source`` says where ``auc_floor`` came from (:func:`churn.settings.resolve_auc_floor`)
    and ``training_rows`` how much the model learned from: a refusal at the floor names both
    ways to set it and what to try (:func:`floor_advice`), since on small data it is the first
    failure a new user meets.
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
    if same_data_window is not None:
        return GateDecision(
            False,
            NOTHING_NEW,
            f"nothing new to learn: same training window {window_span(same_data_window)} and "
            f"rows as champion {champion_tag}; the champion stays (no new version)",
            **common,
        )
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
            f"test AUC {test_auc:.4f} is below the floor {auc_floor:.4f}"
            + floor_advice(floor_source, champion_tag, training_rows),
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
    if (
        ece_margin is not None
        and test_ece is not None
        and champion_ece is not None
        and test_ece - champion_ece > ece_margin
    ):
        return GateDecision(
            False,
            "calibration_worse",
            f"calibration worse than champion {champion_tag}: test ECE {test_ece:.4f} vs "
            f"{champion_ece:.4f} on the same {versus.rows:,} test rows, more than "
            f"ece_margin {ece_margin:.4f} above it",
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
