"""The champion in BentoML's model store: saving it with its card, loading it back.

The store is the hand-off between training and serving: the scoring service needs nothing but a
``churn_model`` tag. A model is saved only when it passes the quality gate; its ``role`` label
(:mod:`churn.registry.roles`) says whether it is the champion, a challenger or retired, and
``churn_model:latest`` here means the newest *champion*.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.registry.roles import MODEL_NAME, champion_tag

if TYPE_CHECKING:
    import pandas as pd

    from churn.modeling.model import ChurnModel

MODEL_FILE = "model.pkl"
CARD_FILE = "card.json"
"""The model card as JSON: the source of truth (BentoML metadata cannot hold nulls)."""
REFERENCE_FILE = "reference_features.parquet"
"""A sample of the training features, the reference the drift report compares new data with."""


class ModelNotFoundError(LookupError):
    """No usable churn model in the store; the message says how to make one."""


@dataclass(frozen=True)
class RegisteredModel:
    tag: str
    model: ChurnModel
    card: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]

    @property
    def reference_path(self) -> Path:
        return self.path / REFERENCE_FILE


def save_model(
    model: ChurnModel,
    card: dict[str, Any],
    reference: pd.DataFrame,
    *,
    labels: dict[str, str] | None = None,
) -> str:
    """Store the model, its card (as the store's metadata) and the drift reference; return tag."""
    import bentoml

    metadata = _without_nulls(card)
    with bentoml.models.create(MODEL_NAME, labels=labels or {}, metadata=metadata) as stored:
        root = Path(stored.path)
        (root / CARD_FILE).write_text(json.dumps(card, indent=2, default=str))
        with (root / MODEL_FILE).open("wb") as handle:
            pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
        reference.to_parquet(root / REFERENCE_FILE, index=False)
        return str(stored.tag)


def load_model(tag: str = f"{MODEL_NAME}:latest") -> RegisteredModel:
    """Load a stored model. Only files written by :func:`save_model` are unpickled."""
    return from_path(*locate(tag))


def locate(tag: str = f"{MODEL_NAME}:latest") -> tuple[str, Path]:
    """The exact tag and directory of a stored model, without unpickling it: the scoring
    service reads only the card at import time to build its request schemas."""
    import bentoml
    from bentoml.exceptions import NotFound

    if tag == f"{MODEL_NAME}:latest":  # the champion, not merely the newest (see roles)
        tag = champion_tag() or tag
    try:
        stored = bentoml.models.get(tag)
    except NotFound as error:
        raise ModelNotFoundError(
            f"No model '{tag}' in the BentoML model store (BENTOML_HOME; {error}). Train one "
            "with `make pipeline`, or list what is there with `bentoml models list`. churn's "
            "store is $CHURN_HOME/bentoml unless BENTOML_HOME is set; the plain `bentoml` CLI "
            "reads BENTOML_HOME itself, so export it there."
        ) from error
    return str(stored.tag), Path(stored.path)


def read_card(path: Path) -> dict[str, Any]:
    """The model card stored next to the model in ``path``."""
    card_file = path / CARD_FILE
    if not card_file.exists():
        raise ModelNotFoundError(f"{path} lacks {CARD_FILE}: not a churn model.")
    return json.loads(card_file.read_text())


def from_path(tag: str, path: Path) -> RegisteredModel:
    """Load from a model directory (the store's, or the one packaged inside a Bento)."""
    model_file, card_file = path / MODEL_FILE, path / CARD_FILE
    if not model_file.exists() or not card_file.exists():
        raise ModelNotFoundError(
            f"Model '{tag}' in {path} lacks {MODEL_FILE} or {CARD_FILE}: not a churn model."
        )
    with model_file.open("rb") as handle:
        model = pickle.load(handle)
    card = json.loads(card_file.read_text())
    return RegisteredModel(tag=tag, model=model, card=card, path=path)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def latest_tag() -> str | None:
    """The champion's tag, or None while the store holds no champion: the newest model not
    labeled challenger or retired (:mod:`churn.registry.roles`)."""
    return champion_tag()


class SourceMismatchError(RuntimeError):
    """The champion was trained on another source than the one this process reads."""


def champion_for_source(source: str) -> RegisteredModel | None:
    """The champion when it was trained on ``source`` (its card's ``lineage.source``), None when
    the store has no champion; raises :class:`SourceMismatchError` when it has one of another
    source.

    A ``CHURN_HOME`` switched to another source keeps the old source's champion in its store.
    Comparing a new model with it (the gate), or new data with its training sample (drift),
    would silently mix two businesses, so callers that compare refuse with this message.
    """
    try:
        champion = load_model()
    except ModelNotFoundError:
        return None
    trained_on = champion.card.get("lineage", {}).get("source")
    if not _same_source(trained_on, source):
        raise SourceMismatchError(
            f"The champion {champion.tag} was trained on source {trained_on!r}, not on "
            f"{source!r} (CHURN_SOURCE): refusing to compare across sources. Use one "
            "CHURN_HOME per source (its store is $CHURN_HOME/bentoml), or set BENTOML_HOME to a "
            "fresh store for this source."
        )
    return champion


def _same_source(recorded: str | None, current: str) -> bool:
    """``synthetic``, or the same YAML file however its path was spelled (a relative path in a
    card resolves against this process's working directory: best effort)."""
    if recorded is None or recorded == current:
        return recorded == current
    if "synthetic" in (recorded, current):
        return False
    return Path(recorded).resolve() == Path(current).resolve()
