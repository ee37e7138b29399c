"""[registry] Models after training: the store, their roles, and the history of who served.

* :mod:`~churn.registry.store` — BentoML's model store as the hand-off between training and
  serving: save a model with its card and drift reference, load it back;
* :mod:`~churn.registry.roles` — champion / challenger / retired labels in the store;
* :mod:`~churn.registry.policy` — what a gated winner becomes (``CHURN_PROMOTION``);
* :mod:`~churn.registry.history` — the ``model_registry`` table: every candidate and every
  change of role, the one owner of that table.

The store's API is re-exported here: ``registry.load_model()`` is what most callers need.
"""

from churn.registry.roles import MODEL_NAME
from churn.registry.store import (
    CARD_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    ModelNotFoundError,
    RegisteredModel,
    SourceMismatchError,
    champion_for_source,
    from_path,
    latest_tag,
    load_model,
    locate,
    read_card,
    save_model,
)

__all__ = [
    "CARD_FILE",
    "MODEL_FILE",
    "MODEL_NAME",
    "REFERENCE_FILE",
    "ModelNotFoundError",
    "RegisteredModel",
    "SourceMismatchError",
    "champion_for_source",
    "from_path",
    "latest_tag",
    "load_model",
    "locate",
    "read_card",
    "save_model",
]
