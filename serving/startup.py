"""Checking the packaged models at import, so a damaged one stops ``bentoml serve`` at once.

Why here: a truncated or empty ``model.pkl`` found only in the worker's ``__init__`` kills the
worker, BentoML restarts it, and the service crash-loops forever while the arbiter looks alive.
A corrupt ``card.json`` read unguarded raises a ``JSONDecodeError``, a ``ValueError``, which
BentoML's loader takes for "not a Bento tag" and reports as the unrelated ``No module named
'churn_service'``. Here both are checked when ``serving.service`` is imported
(by the ``bentoml serve`` process itself, before any worker starts) and any failure becomes a
:class:`ModelLoadError` naming the tag and the file: the command exits non-zero with that line.

The import-time check of ``model.pkl`` walks its pickle opcodes to the final STOP
(``pickletools.genops``: nothing is executed or imported), which catches an empty or truncated
file without unpickling it in the ``bentoml serve`` process too (which would import
scikit-learn and LightGBM in a process that never scores). The worker then unpickles it with
:func:`checked_model`, which names the file if the content is damaged in a way only loading
reveals.
"""

from __future__ import annotations

import pickletools
from pathlib import Path
from typing import Any

from churn import registry


class ModelLoadError(RuntimeError):
    """A packaged model or its card cannot be read. Deliberately not a ``ValueError`` (see the
    module docstring)."""


def checked_card(tag: str, path: Path) -> dict[str, Any]:
    card_file = path / registry.CARD_FILE
    try:
        card = registry.read_card(path)
    except registry.ModelNotFoundError:
        raise
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise ModelLoadError(
            f"model {tag}: {card_file} cannot be read ({type(error).__name__}: {error}); "
            "the model store copy is damaged: re-save the model or serve another tag"
        ) from None
    if not isinstance(card, dict) or not isinstance(card.get("feature_schema"), list):
        raise ModelLoadError(f"model {tag}: {card_file} is not a churn model card")
    return card


def check_model_file(tag: str, path: Path) -> None:
    """Raise :class:`ModelLoadError` unless ``model.pkl`` is a complete pickle stream."""
    model_file = path / registry.MODEL_FILE
    try:
        with model_file.open("rb") as handle:
            for _ in pickletools.genops(handle):
                pass
    except Exception as error:  # ValueError "pickle exhausted before seeing STOP", OSError...
        raise ModelLoadError(
            f"model {tag}: {model_file} is empty, truncated or not a pickle "
            f"({type(error).__name__}: {str(error)[:200]}); re-save the model or serve another tag"
        ) from None


def checked_model(tag: str, path: Path) -> registry.RegisteredModel:
    model_file = path / registry.MODEL_FILE
    try:
        loaded = registry.from_path(tag, path)
    except registry.ModelNotFoundError:
        raise
    except Exception as error:  # unpickling raises EOFError, UnpicklingError, ValueError...
        raise ModelLoadError(
            f"model {tag}: {model_file} cannot be loaded ({type(error).__name__}: "
            f"{str(error)[:200]}); the file is truncated or damaged: re-save the model "
            "or serve another tag"
        ) from None
    if not hasattr(loaded.model, "specs"):
        raise ModelLoadError(f"model {tag}: {model_file} holds no churn model")
    return loaded
