"""The quality gate: whether the winning candidate may replace the champion.

A model is promoted only when its test AUC is believable (below the leakage ceiling), good
enough (above the floor) and not worse than the current champion on the very same test rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from churn.modeling.metrics import auc
from churn.modeling.model import ChurnModel
from churn.modeling.spec import FeatureSpec, encode_frame
from churn.modeling.training import Part

LEAKAGE_CEILING = 0.98
"""No honest churn model on behavioural data reaches this test AUC; above it, suspect leakage."""


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reason: str
    test_auc: float
    champion_tag: str | None = None
    champion_auc: float | None = None


def decide(
    test_auc: float,
    *,
    auc_floor: float,
    tolerance: float,
    champion_tag: str | None = None,
    champion_auc: float | None = None,
) -> GateDecision:
    """The quality gate: leakage ceiling, absolute floor, then no regression against the
    champion on the same test rows (beyond ``tolerance``)."""
    common = {"test_auc": test_auc, "champion_tag": champion_tag, "champion_auc": champion_auc}
    if test_auc > LEAKAGE_CEILING:
        return GateDecision(
            False,
            f"suspected leakage: test AUC {test_auc:.4f} is above {LEAKAGE_CEILING}; no honest "
            "churn model gets there. Look for a feature that sees the label window.",
            **common,
        )
    if test_auc < auc_floor:
        return GateDecision(
            False, f"test AUC {test_auc:.4f} is below the floor {auc_floor:.4f}", **common
        )
    if champion_auc is not None and test_auc < champion_auc - tolerance:
        return GateDecision(
            False,
            f"test AUC {test_auc:.4f} is worse than champion {champion_tag} "
            f"({champion_auc:.4f}) on the same test rows by more than {tolerance:.4f}",
            **common,
        )
    versus = (
        f"champion {champion_tag} scores {champion_auc:.4f} on the same rows"
        if champion_auc is not None
        else "no comparable champion yet"
    )
    return GateDecision(True, f"test AUC {test_auc:.4f} passes the gate; {versus}", **common)


def champion_auc_on(test: Part, model: ChurnModel, specs: list[FeatureSpec]) -> float | None:
    """The current champion's AUC on the new test rows, when it speaks the same features."""
    if [s.name for s in model.specs] != [s.name for s in specs]:
        return None
    return auc(test.y, model.predict_proba(encode_frame(test.frame, model.specs)))
