"""Champion and challenger in BentoML's model store, told apart by a ``role`` label.

Every gated winner is saved as a ``churn_model``; its ``role`` label says what it is for:

* ``champion`` (or no label: models saved before roles existed) — the model that answers. The
  champion is the *newest* model with that role, so ``churn_model:latest`` in churn's own code
  (:func:`churn.registry.store.locate`, :func:`churn.registry.store.latest_tag`) means the
  champion, not
  simply the newest model.
* ``challenger`` — a gated winner saved under the ``challenger`` promotion policy: it passed the
  quality gate but waits for realized results before it answers. Only the newest challenger
  saved *after* the current champion counts; an older one is stale.
* ``retired`` — a former champion, or a challenger superseded by a newer one.

Promotion relabels in place (``model.yaml`` of the stored model): versions never change, so the
prediction logs, the model registry table and the Bento tags keep pointing at the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODEL_NAME = "churn_model"
ROLE_LABEL = "role"
CHAMPION, CHALLENGER, RETIRED = "champion", "challenger", "retired"
ROLES = (CHAMPION, CHALLENGER, RETIRED)


def role_of(stored: Any) -> str:
    """The role label of a stored model; unlabeled models are (past) champions."""
    return stored.info.labels.get(ROLE_LABEL, CHAMPION)


def stored_models() -> list[Any]:
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
    champion = _newest(CHAMPION, stored_models())
    return str(champion.tag) if champion is not None else None


def challenger_tag() -> str | None:
    """The newest challenger saved after the champion, or None."""
    models = stored_models()
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
    models = stored_models()
    previous = _newest(CHAMPION, models)
    for stored in models:
        name = str(stored.tag)
        if name != target and role_of(stored) in (CHAMPION, CHALLENGER):
            set_role(name, RETIRED)
    set_role(target, CHAMPION)
    previous_tag = str(previous.tag) if previous is not None else None
    return Promotion(target, previous_tag if previous_tag != target else None)
