"""Reasons a person can read: "3 logins in the last 30 days (fewer than 80% of customers)".

Two halves. At training, :func:`feature_descriptions` turns every feature's description into a
short phrase that reads after a number, and :func:`reference_distribution` stores, per feature,
101 percentiles (numeric) or category shares (categorical) of the training rows; both go into
the model card. At scoring, :class:`ReasonWriter` is built ONCE per model from the card (phrases
and percentile arrays as numpy) and writes the text of a whole batch of reasons with one
vectorized pass per feature that appears, so the service does no per-request work that depends
only on the card.

Why percentiles against the training rows: a raw value ("0.0786") means nothing to a retention
team, but "lower than 90% of customers" does, and the training rows are the population the
model's contributions were learned on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from churn.modeling.spec import FeatureSpec

PERCENTILES = np.linspace(0.0, 1.0, 101)
"""The stored quantile levels: 0%, 1%, ..., 100% (the lookup's resolution is one point)."""

_COLUMN = re.compile(r"^(?:Profile column|Column) '(?P<column>[^']+)'")
_PHRASES: dict[str, str] = {
    "age": "years of age",
    "monthly_fee": "monthly fee",
    "plan": "plan",
    "contract": "contract",
    "payment_method": "payment method",
    "region": "region",
    "acquisition_channel": "acquisition channel",
    "amount_paid_90d": "amount paid in the last 90 days",
    "days_since_last_event": "days since the last event",
}
"""Hand-made features whose description does not read after a number ("45 age of the account
holder"): their phrase is written here; every other phrase comes from the description."""


def readable(column: str) -> str:
    """A column name as words: ``monthly_charges`` -> ``monthly charges``."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-.]+", " ", column)).strip().lower() or column


def phrase(spec: FeatureSpec) -> str:
    """The short phrase of a feature, to follow a number ("logins in the last 30 days").

    From the description: its first clause (before a parenthesis, or a colon followed by a
    lowercase explanation), without the full stop, with a lowercase first word. Columns of a
    flat table or a customers profile are described by their origin; their name, made
    readable, is what a person recognizes."""
    if spec.name in _PHRASES:
        return _PHRASES[spec.name]
    description = (spec.description or "").strip()
    column = _COLUMN.match(description)
    if column or not description:
        return readable(column["column"] if column else spec.name)
    if spec.name.startswith("type_"):  # "<event type> events in the last 30 days"
        return description.rstrip(". ")
    text = (
        description.replace(" in the ", " in the last ", 1).replace(
            " days before the observation date", " days"
        )
        if description.startswith("Events in the ")
        else description
    )
    text = re.split(r" \(|: (?=[a-z])|\. ", text, maxsplit=1)[0].rstrip(". ")
    if len(text) > 1 and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


def feature_descriptions(specs: Sequence[FeatureSpec]) -> dict[str, str]:
    """The card's ``feature_descriptions``: name -> phrase, for every feature of the model."""
    return {spec.name: phrase(spec) for spec in specs}


def reference_distribution(specs: Sequence[FeatureSpec], X: np.ndarray) -> dict[str, Any]:
    """The card's ``reference``: per numeric feature the 101 percentiles of its non-missing
    training values, per categorical feature each category's share; ``rows`` is the sample."""
    X = np.asarray(X, dtype=np.float64)
    quantiles: dict[str, list[float]] = {}
    shares: dict[str, dict[str, float]] = {}
    for j, spec in enumerate(specs):
        column = X[:, j]
        known = column[~np.isnan(column)]
        if spec.kind == "numeric":
            if known.size:
                quantiles[spec.name] = [float(f"{q:.6g}") for q in np.quantile(known, PERCENTILES)]
        elif spec.categories:
            codes, counts = np.unique(known.astype(np.intp), return_counts=True)
            total = max(int(column.size), 1)
            shares[spec.name] = {
                spec.categories[code]: round(count / total, 4)
                for code, count in zip(codes.tolist(), counts.tolist(), strict=True)
                if 0 <= code < len(spec.categories)
            }
    return {"rows": int(X.shape[0]), "quantiles": quantiles, "category_shares": shares}


def format_number(value: float, integer: bool) -> str:
    """Rounded for a person: whole numbers for counts and large values, one decimal from 1 to
    10, two significant digits below 1 (``0.0786`` -> ``0.079``)."""
    if integer or abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    if value == 0:
        return "0"
    return f"{value:.2g}"


def _percent(share: float) -> int:
    return int(min(max(round(100 * share), 1), 99))


class ReasonWriter:
    """The text of reasons for one model: everything derived from the card is built here once."""

    def __init__(self, specs: Sequence[FeatureSpec], card: Mapping[str, Any]) -> None:
        described = card.get("feature_descriptions") or {}
        reference = card.get("reference") or {}
        quantiles = reference.get("quantiles") or {}
        shares = reference.get("category_shares") or {}
        self.specs = list(specs)
        self.phrases = [described.get(spec.name) or phrase(spec) for spec in specs]
        self.quantiles: list[np.ndarray | None] = [
            np.asarray(quantiles[spec.name], dtype=np.float64) if spec.name in quantiles else None
            for spec in specs
        ]
        self.category_shares: list[Mapping[str, float]] = [
            shares.get(spec.name, {}) for spec in specs
        ]

    def texts(
        self, feature_index: np.ndarray, values: np.ndarray, contributions: np.ndarray
    ) -> np.ndarray:
        """One text per reason: ``feature_index[i]``'s encoded value ``values[i]`` (NaN when
        missing or an unseen category) and its contribution; a negative feature index (no
        reason in that slot) gives None. One pass per distinct feature, not one per row."""
        feature_index = np.asarray(feature_index, dtype=np.intp).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        contributions = np.asarray(contributions, dtype=np.float64).ravel()
        out = np.full(feature_index.size, None, dtype=object)
        for j in np.unique(feature_index[feature_index >= 0]).tolist():
            rows = np.flatnonzero(feature_index == j)
            out[rows] = self._feature_texts(j, values[rows], contributions[rows])
        return out

    def _feature_texts(self, j: int, values: np.ndarray, pushes: np.ndarray) -> list[str]:
        numeric = self.specs[j].kind == "numeric"
        texts = self._numeric(j, values) if numeric else self._categorical(j, values)
        lowers = pushes < 0
        return [
            f"{text}; lowers the risk" if lower else text
            for text, lower in zip(texts, lowers.tolist(), strict=True)
        ]

    def _numeric(self, j: int, values: np.ndarray) -> list[str]:
        spec, words, reference = self.specs[j], self.phrases[j], self.quantiles[j]
        integer = spec.dtype == "integer"
        count_like = integer and not words[:1].isupper()
        comparisons: list[str | None] = [None] * values.size
        if reference is not None and reference.size:
            n = reference.size
            below = np.searchsorted(reference, values, side="left") / n
            above = 1.0 - np.searchsorted(reference, values, side="right") / n
            more, less = ("more", "fewer") if count_like else ("higher", "lower")
            comparisons = [
                None if math.isnan(value) else _comparison(down, up, more, less)
                for value, down, up in zip(
                    values.tolist(), below.tolist(), above.tolist(), strict=True
                )
            ]
        texts = []
        for value, comparison in zip(values.tolist(), comparisons, strict=True):
            if math.isnan(value):
                text = f"{words}: unknown"
            elif count_like:
                text = f"{format_number(value, True)} {_singular(words) if value == 1 else words}"
            else:
                text = f"{_capital(words)}: {format_number(value, integer)}"
            texts.append(f"{text} ({comparison})" if comparison else text)
        return texts

    def _categorical(self, j: int, values: np.ndarray) -> list[str]:
        spec, words, shares = self.specs[j], _capital(self.phrases[j]), self.category_shares[j]
        categories = spec.categories or ()
        texts = []
        for value in values.tolist():
            code = -1 if math.isnan(value) else int(value)
            if not 0 <= code < len(categories):
                texts.append(f"{words}: unknown or not seen in training")
                continue
            category = categories[code]
            share = shares.get(category)
            texts.append(
                f"{words}: {category} (like {_percent(share)}% of customers)"
                if share is not None
                else f"{words}: {category}"
            )
        return texts


def _comparison(below: float, above: float, more: str, less: str) -> str:
    """Where a value stands among the reference customers, in the larger of three groups."""
    if above >= 0.5:
        return f"{less} than {_percent(above)}% of customers"
    if below >= 0.5:
        return f"{more} than {_percent(below)}% of customers"
    same = 1.0 - below - above
    if same >= 0.5:
        return f"the same as {_percent(same)}% of customers"
    return "about the median"


def _singular(words: str) -> str:
    """ "1 events in ..." -> "1 event in ...": only a plain plural first word is changed."""
    first, _, rest = words.partition(" ")
    if first.endswith("s") and not first.endswith("ss") and first.isalpha() and first.islower():
        first = first[:-1]
    return f"{first} {rest}" if rest else first


def _capital(words: str) -> str:
    return words[:1].upper() + words[1:]
