"""Feature specs and the one numeric encoding that training and serving share.

A model never sees a DataFrame at predict time: the service encodes a request's records straight
into a float64 matrix with :func:`encode_records`, and training encodes the warehouse frame with
:func:`encode_frame`. Both map a categorical value to its index in ``FeatureSpec.categories``
(anything else, including ``None``, becomes NaN), so the two paths agree bit for bit and a
category the model never saw degrades to "missing" instead of an error.

The specs also carry validation bounds. They are deliberately generous: a real customer must
never be refused because they are a little outside the training range, but a payload with a
negative day count or a thousand-fold unit mistake must be.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from churn.features import FEATURES, Feature
from churn.ingest.schema import CUSTOMERS

if TYPE_CHECKING:
    import pandas as pd

SpecKind = Literal["numeric", "categorical"]
SpecDtype = Literal["integer", "number", "string"]

_DTYPES: dict[str, SpecDtype] = {"INTEGER": "integer", "DOUBLE": "number", "VARCHAR": "string"}

HEADROOM = 9.0
"""Numeric bounds reach ``HEADROOM`` times the observed scale beyond the observed range (an
observed max of 40 allows up to 400): wide enough for growth and drift, narrow enough to catch
unit mistakes."""

_DOMAIN_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    column.name: (column.minimum, column.maximum)
    for column in CUSTOMERS.columns
    if column.minimum is not None or column.maximum is not None
}
"""Profile features copied from a raw column keep that column's contract (age 16-110), which is
tighter and better founded than a multiple of what one training window happened to contain."""


@dataclass(frozen=True)
class FeatureSpec:
    """What a model input is, how it is encoded, and which values a request may carry."""

    name: str
    kind: SpecKind
    dtype: SpecDtype
    description: str
    categories: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    observed_min: float | None = None
    observed_max: float | None = None

    @cached_property
    def code_of(self) -> dict[str, int]:
        """Category -> code, built once per spec because serving looks it up on every row."""
        return {category: code for code, category in enumerate(self.categories or ())}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories) if self.categories is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        categories = data.get("categories")
        return cls(
            name=data["name"],
            kind=data["kind"],
            dtype=data["dtype"],
            description=data.get("description", ""),
            categories=tuple(categories) if categories is not None else None,
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            observed_min=data.get("observed_min"),
            observed_max=data.get("observed_max"),
        )


def specs_to_dicts(specs: Sequence[FeatureSpec]) -> list[dict[str, Any]]:
    return [spec.to_dict() for spec in specs]


def specs_from_dicts(data: Iterable[Mapping[str, Any]]) -> list[FeatureSpec]:
    return [FeatureSpec.from_dict(item) for item in data]


def build_feature_specs(
    frame: pd.DataFrame, features: Sequence[Feature] = FEATURES
) -> list[FeatureSpec]:
    """Specs fitted on the training frame: categories are frozen here, so the code a category
    gets never depends on which rows a later request happens to contain."""
    return [_build_spec(frame[feature.name], feature) for feature in features]


def _build_spec(column: pd.Series, feature: Feature) -> FeatureSpec:
    dtype = _DTYPES.get(feature.sql_type.upper(), "number")
    if feature.kind == "categorical":
        categories = tuple(sorted({str(value) for value in column.dropna().unique()}))
        return FeatureSpec(feature.name, "categorical", "string", feature.description, categories)
    values = np.asarray(column.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return FeatureSpec(feature.name, "numeric", dtype, feature.description)
    observed_min, observed_max = float(values.min()), float(values.max())
    minimum, maximum = _bounds(feature.name, observed_min, observed_max, dtype)
    return FeatureSpec(
        feature.name,
        "numeric",
        dtype,
        feature.description,
        None,
        minimum,
        maximum,
        observed_min,
        observed_max,
    )


def _bounds(
    name: str, observed_min: float, observed_max: float, dtype: SpecDtype
) -> tuple[float, float]:
    """Non-negative features stay non-negative (counts, days, money); everything else gets
    ``HEADROOM`` times its scale on either side."""
    if name in _DOMAIN_BOUNDS:
        low, high = _DOMAIN_BOUNDS[name]
        if low is not None and high is not None:
            return float(low), float(high)
    scale = max(abs(observed_min), abs(observed_max), 1.0)
    minimum = 0.0 if observed_min >= 0 else observed_min - HEADROOM * scale
    maximum = observed_max + HEADROOM * scale
    if dtype == "integer":
        minimum, maximum = float(math.floor(minimum)), float(math.ceil(maximum))
    return minimum, maximum


def encode_frame(frame: pd.DataFrame, specs: Sequence[FeatureSpec]) -> np.ndarray:
    """Vectorized encoding of a (training or batch-scoring) frame; same codes as
    :func:`encode_records`."""
    import pandas as pd

    matrix = np.empty((len(frame), len(specs)), dtype=np.float64)
    for j, spec in enumerate(specs):
        column = frame[spec.name]
        if spec.kind == "categorical":
            as_text = column.astype("string")
            codes = pd.Categorical(as_text, categories=list(spec.categories or ())).codes
            matrix[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            matrix[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
    return matrix


def encode_records(
    records: Sequence[Mapping[str, Any]], specs: Sequence[FeatureSpec]
) -> np.ndarray:
    """Encode request payloads without pandas, column by column.

    Serving pays this on every request, so the common case (every record has every feature,
    numbers are numbers, categories are strings) is one C-level pass per row to pull the values
    out and one numpy conversion per column, less than half the time of filling the matrix
    element by element. Anything else (missing keys, text numbers, ``None``) takes the
    per-value path, which gives the same codes.
    """
    matrix = np.empty((len(records), len(specs)), dtype=np.float64)
    if not records:
        return matrix
    names = [spec.name for spec in specs]
    values_of = itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)
    try:
        rows = list(map(values_of, records))
    except KeyError:
        rows = [tuple(record.get(name) for name in names) for record in records]
    for j, (spec, column) in enumerate(zip(specs, zip(*rows, strict=True), strict=True)):
        matrix[:, j] = _encode_column(column, spec)
    return matrix


def _encode_column(values: Sequence[Any], spec: FeatureSpec) -> np.ndarray:
    kinds = set(map(type, values))
    if spec.kind == "categorical":
        code_of = spec.code_of
        if kinds == {str}:
            return np.array([code_of.get(value, math.nan) for value in values], dtype=np.float64)
        return np.array([_category_code(value, code_of) for value in values], dtype=np.float64)
    if kinds <= {int, float}:
        return np.array(values, dtype=np.float64)
    return np.array([_to_float(value) for value in values], dtype=np.float64)


def _category_code(value: Any, code_of: Mapping[str, int]) -> float:
    if value is None:
        return math.nan
    code = code_of.get(value if isinstance(value, str) else str(value))
    return math.nan if code is None else code


def _to_float(value: Any) -> float:
    if value is None or isinstance(value, str):
        try:
            return float(value) if value is not None else math.nan
        except ValueError:
            return math.nan
    return float(value)


def decode_row(row: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, Any]:
    """Human-readable values of one encoded row, for explanations when the raw payload is gone."""
    decoded: dict[str, Any] = {}
    for value, spec in zip(row, specs, strict=True):
        if spec.kind == "categorical":
            valid = not math.isnan(value) and 0 <= value < len(spec.categories or ())
            decoded[spec.name] = spec.categories[int(value)] if valid else None
        else:
            decoded[spec.name] = None if math.isnan(value) else float(value)
    return decoded


def validation_errors(record: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> list[str]:
    """Why a request record should be refused; empty when it is acceptable.

    Unknown categories are *not* errors: the model treats them as missing, which is the
    graceful answer to a new plan name appearing before the next retrain.
    """
    errors: list[str] = []
    for spec in specs:
        if spec.name not in record or record[spec.name] is None:
            errors.append(f"{spec.name}: missing")
        elif spec.kind == "numeric":
            errors.extend(_numeric_errors(spec, record[spec.name]))
    return errors


def _numeric_errors(spec: FeatureSpec, raw: Any) -> list[str]:
    if isinstance(raw, bool):
        return [f"{spec.name}: expected a number, got a boolean"]
    value = _to_float(raw)
    if not math.isfinite(value):
        return [f"{spec.name}: expected a finite number, got {raw!r}"]
    if spec.minimum is not None and value < spec.minimum:
        return [f"{spec.name}: {value:g} is below the minimum {spec.minimum:g}"]
    if spec.maximum is not None and value > spec.maximum:
        return [f"{spec.name}: {value:g} is above the maximum {spec.maximum:g}"]
    return []
