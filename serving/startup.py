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

The card's serving part (what the schemas, the scorer and the reasons read: ``feature_order``,
``feature_schema``, ``thresholds``, ``risk_tiers``, ``feature_descriptions``, ``reference``) is
validated by :class:`ServingCard` at the same moment: a damaged value (``risk_tiers: {}``,
``thresholds: "x"``, ``feature_schema: [1]``, a categorical feature with ``categories: null``, no
``feature_order``) used to pass import and fail in every worker's ``__init__``, so BentoML
restarted the worker forever. Now it is one :class:`ModelLoadError` line naming the tag and the
key, and ``bentoml serve`` exits non-zero.
"""

from __future__ import annotations

import pickletools
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from churn import registry


class ModelLoadError(RuntimeError):
    """A packaged model or its card cannot be read. Deliberately not a ``ValueError`` (see the
    module docstring)."""


Share = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
"""A probability cut: thresholds and tier cuts compare with probabilities in [0, 1]."""
Bound = Annotated[float, Field(allow_inf_nan=False)] | None


class _Part(BaseModel):
    """Strict about what serving reads, tolerant of what it does not (``extra="allow"``: newer
    cards may carry more keys)."""

    model_config = ConfigDict(extra="allow", strict=True)


class FeatureEntry(_Part):
    """One entry of ``feature_schema`` (:meth:`churn.modeling.spec.FeatureSpec.from_dict`)."""

    name: Annotated[str, Field(min_length=1)]
    kind: Literal["numeric", "categorical"]
    dtype: Literal["integer", "number", "string"]
    description: str = ""
    categories: list[str] | None = None
    minimum: Bound = None
    maximum: Bound = None
    observed_min: Bound = None
    observed_max: Bound = None

    @model_validator(mode="after")
    def _categories_for_categorical(self) -> Self:
        if self.kind == "categorical" and self.categories is None:
            raise ValueError(f"categorical feature {self.name!r} needs a categories list")
        return self


class Thresholds(_Part):
    """``decision`` (or the old cards' ``default``) is where a score becomes label 1."""

    decision: Share | None = None
    default: Share | None = None

    @model_validator(mode="after")
    def _one_threshold(self) -> Self:
        if self.decision is None and self.default is None:
            raise ValueError("needs a 'decision' (or 'default') threshold")
        return self


class RiskTiers(_Part):
    low_medium: Share
    medium_high: Share


class ServingCard(_Part):
    """The part of a model card the service reads; any other key is left alone."""

    feature_order: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    feature_schema: Annotated[list[FeatureEntry], Field(min_length=1)]
    thresholds: Thresholds
    risk_tiers: RiskTiers | None = None
    """Old cards have none (the cuts are derived from the threshold); present, it must be whole."""
    feature_descriptions: dict[str, str | None] | None = None
    reference: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _order_matches_schema(self) -> Self:
        names = [entry.name for entry in self.feature_schema]
        if names != self.feature_order:
            raise ValueError(
                "feature_order and the names in feature_schema differ "
                f"({len(self.feature_order)} vs {len(names)} features)"
            )
        return self


def _first_problem(error: ValidationError) -> str:
    """``key.path: message`` of the first problem (one clear line), and how many more."""
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "card"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"key {where}: {first['msg']}{more}"


def validate_serving_card(tag: str, card_file: Path, card: Any) -> None:
    """Raise :class:`ModelLoadError` naming ``tag`` and the first bad key of ``card``."""
    if not isinstance(card, dict):
        raise ModelLoadError(f"model {tag}: {card_file} is not a churn model card (not an object)")
    try:
        ServingCard.model_validate(card)
    except ValidationError as error:
        raise ModelLoadError(
            f"model {tag}: {card_file} is damaged, {_first_problem(error)}; "
            "re-save the model or serve another tag"
        ) from None


def checked_card(tag: str, path: Path) -> dict[str, Any]:
    """The card of the model at ``path``, read and validated (see the module docstring)."""
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
    validate_serving_card(tag, card_file, card)
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
