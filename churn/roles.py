"""Champion and challenger in BentoML's model store, told apart by a ``role`` label.

Every gated winner is saved as a ``churn_model``; its ``role`` label says what it is for:

* ``champion`` (or no label: models saved before roles existed) — the model that answers. The
  champion is the *newest* model with that role, so ``churn_model:latest`` in churn's own code
  (:func:`churn.registry.locate`, :func:`churn.registry.latest_tag`) means the champion, not
  simply the newest model.
* ``challenger`` — a gated winner saved under the ``challenger`` promotion policy: it passed the
  quality gate but waits for realized results before it answers. Only the newest challenger
  saved *after* the current champion counts; an older one is stale.
* ``retired`` — a former champion, or a challenger superseded by a newer one.

Promotion relabels in place (``model.yaml`` of the stored model): versions never change, so the
prediction logs, the model registry table and the Bento tags keep pointing at the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from churn.modeling.model import ChurnModel

MODEL_NAME = "churn_model"
ROLE_LABEL = "role"
CHAMPION, CHALLENGER, RETIRED = "champion", "challenger", "retired"
ROLES = (CHAMPION, CHALLENGER, RETIRED)

PROMOTION_ENV = "CHURN_PROMOTION"
IMMEDIATE = "immediate"
"""Promotion policy: a gated winner replaces the champion at once (the original behaviour)."""
CHALLENGER_POLICY = "challenger"
"""Promotion policy: a gated winner becomes the challenger; it is promoted only when realized
results show it better than the champion beyond the noise (see ``churn.monitoring.challenger``)."""
POLICIES = (IMMEDIATE, CHALLENGER_POLICY)


def default_policy() -> str:
    """``CHURN_PROMOTION`` (``immediate`` | ``challenger``), default ``immediate``."""
    value = (os.environ.get(PROMOTION_ENV) or IMMEDIATE).strip().lower()
    if value not in POLICIES:
        raise ValueError(f"{PROMOTION_ENV}={value!r}: expected one of {', '.join(POLICIES)}")
    return value


def role_of(stored: Any) -> str:
    """The role label of a stored model; unlabeled models are (past) champions."""
    return stored.info.labels.get(ROLE_LABEL, CHAMPION)


def _stored_models() -> list[Any]:
    """Every ``churn_model`` in the store, oldest first."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(MODEL_NAME)
    except NotFound:
        return []
    return sorted(models, key=lambda m: (m.info.creation_time, str(m.tag)))


def _newest(role: str, models: list[Any]) -> Any | None:
    matching = [m for m in models if role_of(m) == role]
    return matching[-1] if matching else None


def champion_tag() -> str | None:
    """The champion's exact tag, or None while the store holds no champion."""
    champion = _newest(CHAMPION, _stored_models())
    return str(champion.tag) if champion is not None else None


def challenger_tag() -> str | None:
    """The newest challenger saved after the champion, or None."""
    models = _stored_models()
    champion = _newest(CHAMPION, models)
    challenger = _newest(CHALLENGER, models)
    if challenger is None:
        return None
    if champion is not None and challenger.info.creation_time < champion.info.creation_time:
        return None
    return str(challenger.tag)


def set_role(tag: str, role: str) -> None:
    """Relabel one stored model (rewrites its ``model.yaml``; files and version unchanged)."""
    import bentoml

    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    stored = bentoml.models.get(tag)
    stored.info.labels[ROLE_LABEL] = role
    stored.flush()


@dataclass(frozen=True)
class Promotion:
    champion: str
    previous_champion: str | None


def promote(tag: str) -> Promotion:
    """Make ``tag`` the champion; the previous champion and every other challenger retire."""
    import bentoml

    target = str(bentoml.models.get(tag).tag)  # resolves "latest" and checks it exists
    models = _stored_models()
    previous = _newest(CHAMPION, models)
    for stored in models:
        name = str(stored.tag)
        if name != target and role_of(stored) in (CHAMPION, CHALLENGER):
            set_role(name, RETIRED)
    set_role(target, CHAMPION)
    previous_tag = str(previous.tag) if previous is not None else None
    return Promotion(target, previous_tag if previous_tag != target else None)


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
    from churn import registry

    if policy not in POLICIES:
        raise ValueError(f"promotion policy {policy!r}: expected one of {', '.join(POLICIES)}")
    current = champion_tag()
    role, reason = CHAMPION, "promotion policy 'immediate'"
    if policy == CHALLENGER_POLICY:
        if current is None:
            reason = "no champion yet: the first gated winner is the champion"
        else:
            champion_features = set(
                registry.read_card(registry.locate(current)[1])["feature_order"]
            )
            missing = [f for f in card["feature_order"] if f not in champion_features]
            if missing:
                reason = (
                    f"needs features the champion's requests lack ({', '.join(missing[:5])}): "
                    "it cannot shadow the champion, so it replaces it"
                )
            else:
                role, reason = CHALLENGER, f"challenger of {current} until realized results"
    saved = registry.save_model(model, card, reference, labels=labels | {ROLE_LABEL: role})
    if role == CHALLENGER:
        for stored in _stored_models():
            if role_of(stored) == CHALLENGER and str(stored.tag) != saved:
                set_role(str(stored.tag), RETIRED)  # superseded by the newer challenger
        return SavedWinner(saved, role, current or saved, saved, reason)
    return SavedWinner(saved, role, saved, None, reason)
