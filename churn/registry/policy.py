"""What a gated winner becomes: the champion at once, or a challenger that must earn it.

``CHURN_PROMOTION`` chooses the policy (parsed by :func:`churn.settings.load_settings` into
``Settings.promotion``); :func:`save_winner` applies it when ``champion_model``
saves a winner. The roles themselves live in :mod:`churn.registry.roles`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from churn.registry import store
from churn.registry.roles import (
    CHALLENGER,
    CHAMPION,
    RETIRED,
    ROLE_LABEL,
    champion_tag,
    role_of,
    set_role,
    stored_models,
)
from churn.settings import CHALLENGER_POLICY, IMMEDIATE, PROMOTION_POLICIES

if TYPE_CHECKING:
    import pandas as pd

    from churn.modeling.model import ChurnModel

__all__ = ["CHALLENGER_POLICY", "IMMEDIATE", "POLICIES", "SavedWinner", "save_winner"]

POLICIES = PROMOTION_POLICIES
"""``immediate``: a gated winner replaces the champion at once (the original behaviour).
``challenger``: a gated winner becomes the challenger; it is promoted only when realized results
show it better than the champion beyond the noise (see ``churn.monitoring.challenger``)."""


@dataclass(frozen=True)
class SavedWinner:
    tag: str
    role: str
    champion: str
    challenger: str | None
    reason: str


def save_winner(
    model: ChurnModel,
    card: dict[str, Any],
    reference: pd.DataFrame,
    *,
    labels: dict[str, str],
    policy: str = IMMEDIATE,
) -> SavedWinner:
    """Save a gated winner under ``policy``.

    ``immediate``: it becomes the champion. ``challenger``: it becomes the challenger when there
    is a champion whose feature names it can be fed from (every challenger feature is a champion
    feature, since requests are validated against the champion's schema); otherwise — no
    champion yet, or new features — it becomes the champion, with the reason recorded.
    """
    if policy not in POLICIES:
        raise ValueError(f"promotion policy {policy!r}: expected one of {', '.join(POLICIES)}")
    current = champion_tag()
    role, reason = CHAMPION, "promotion policy 'immediate'"
    if policy == CHALLENGER_POLICY:
        if current is None:
            reason = "no champion yet: the first gated winner is the champion"
        else:
            champion_features = set(store.read_card(store.locate(current)[1])["feature_order"])
            missing = [f for f in card["feature_order"] if f not in champion_features]
            if missing:
                reason = (
                    f"needs features the champion's requests lack ({', '.join(missing[:5])}): "
                    "it cannot shadow the champion, so it replaces it"
                )
            else:
                role, reason = CHALLENGER, f"challenger of {current} until realized results"
    saved = store.save_model(model, card, reference, labels=labels | {ROLE_LABEL: role})
    if role == CHALLENGER:
        for stored in stored_models():
            if role_of(stored) == CHALLENGER and str(stored.tag) != saved:
                set_role(str(stored.tag), RETIRED)  # superseded by the newer challenger
        return SavedWinner(saved, role, current or saved, saved, reason)
    return SavedWinner(saved, role, saved, None, reason)
