"""From validated feature records to score objects: encode, one model call, tiers and reasons.

It lives in the library, not in ``serving/``, because the pipeline's ``customer_scores`` asset
scores every customer with this same class (:mod:`churn.scoring.batch`): offline and online
answers are the same numbers by construction, not by a parity promise.

Kept free of BentoML and pandas so the hot path is easy to read and to time. A request of n rows
costs one ``encode_records`` pass and ONE model call: the per-feature contributions (LightGBM's
TreeSHAP values, from precomputed tables for three rows or more, see
:mod:`churn.modeling.treeshap`; coefficient x standardized value for the linear model) are
additive in log-odds, so ``bias + row sum`` *is* the model's log-odds and the probability
follows without a second predict. Tiers and labels are vectorized; the only per-row Python is
building the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.modeling.card import card_tier_cuts, decision_threshold
from churn.modeling.model import ChurnModel
from churn.modeling.spec import encode_records
from churn.modeling.thresholds import assign_tiers, tier_cuts
from churn.scoring.reasons import ReasonWriter

TOP_REASONS = 3


@dataclass(frozen=True)
class ScoredRows:
    """A batch's results as arrays (for logging) plus the score objects (for the response)."""

    probabilities: np.ndarray
    labels: np.ndarray
    tiers: list[str]
    scores: list[dict[str, Any]]


@dataclass(frozen=True)
class Explained:
    """Everything a score says, as arrays: what the service turns into JSON and the batch
    path into table columns."""

    probabilities: np.ndarray
    labels: np.ndarray
    tiers: np.ndarray
    top_features: np.ndarray
    """(rows, TOP_REASONS) feature indices, strongest contribution first; -1 where a slot has
    no reason (a ``high`` row lists only the features that raise its risk)."""
    top_contributions: np.ndarray
    top_texts: np.ndarray
    """(rows, TOP_REASONS) plain-language texts (None where the slot is empty)."""
    threshold: float


class Scorer:
    """Everything a request needs from the champion, prepared once at startup."""

    def __init__(
        self,
        model: ChurnModel,
        card: Mapping[str, Any],
        model_version: str,
    ) -> None:
        self.model = model
        self.specs = model.specs
        self.feature_order = [spec.name for spec in self.specs]
        self._names_array = np.array(self.feature_order, dtype=object)
        if list(card.get("feature_order", self.feature_order)) != self.feature_order:
            raise ValueError("model card feature_order disagrees with the pickled model's specs")
        self.default_threshold = decision_threshold(card)
        self.tier_cuts = card_tier_cuts(card, self.default_threshold)
        self.reasons = ReasonWriter(self.specs, card)
        self.model_version = model_version
        model.warm_up()

    def probabilities_and_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model call for the whole batch; see the module docstring for why it suffices."""
        contributions = self.model.contributions(X)
        log_odds = self.model.bias + contributions.sum(axis=1)
        return self.model.calibrated(1.0 / (1.0 + np.exp(-log_odds))), contributions

    def explain(self, X: np.ndarray, threshold: float | None = None) -> Explained:
        """Probabilities, labels, tiers and top reasons of an encoded matrix. Without a
        ``threshold`` the labels use the model's own decision threshold (the card's, see
        :func:`~churn.modeling.card.decision_threshold`), never a fixed 0.5.

        One decision: the ``high`` cut is the threshold in force (a request's own threshold
        moves it with the label), so ``risk_tier == 'high'`` exactly when ``churn_label == 1``.
        A ``high`` row's reasons are only the features that raise its risk; other rows show
        the strongest pushes either way."""
        if threshold is None:
            threshold, cuts = self.default_threshold, self.tier_cuts
        else:
            threshold = float(threshold)
            cuts = tier_cuts(self.tier_cuts[0], threshold)
        probabilities, contributions = self.probabilities_and_contributions(X)
        labels = (probabilities >= threshold).astype(np.int64)
        top, pushes = top_reasons(contributions, labels.astype(bool))
        rows = np.arange(X.shape[0])[:, None]
        values = X[rows, np.maximum(top, 0)]
        texts = self.reasons.texts(top, values, pushes).reshape(top.shape)
        return Explained(
            probabilities=probabilities,
            labels=labels,
            tiers=assign_tiers(probabilities, cuts),
            top_features=top,
            top_contributions=pushes,
            top_texts=texts,
            threshold=threshold,
        )

    def score(
        self,
        customer_ids: Sequence[str],
        records: Sequence[Mapping[str, Any]],
        threshold: float | None = None,
    ) -> ScoredRows:
        """Score validated feature records (one dict per customer, feature name -> value)."""
        X = encode_records(records, self.specs)
        explained = self.explain(X, threshold)
        threshold = explained.threshold
        probabilities, labels = explained.probabilities, explained.labels
        tiers = explained.tiers.tolist()
        names = self.feature_order
        # Python scalars once per batch (indexing numpy element by element costs ~10x more),
        # and one comprehension over zipped columns, a third cheaper than an indexed loop.
        top_contributions = explained.top_contributions.tolist()
        top_texts = explained.top_texts.tolist()
        top_names = self._names_array[np.maximum(explained.top_features, 0)].tolist()
        present = (explained.top_features >= 0).tolist()
        model_version = self.model_version
        scores = [
            {
                "customer_id": customer_id,
                "churn_probability": probability,
                "churn_label": label,
                "threshold": threshold,
                "risk_tier": tier,
                "reasons": [
                    {
                        "feature": name,
                        "value": record.get(name),
                        "contribution": contribution,
                        "text": text,
                    }
                    for name, contribution, text, kept in zip(
                        reasons, pushes, texts, keep, strict=True
                    )
                    if kept
                ],
                "model_version": model_version,
                "feature_order": names,
            }
            for customer_id, probability, label, tier, record, reasons, pushes, texts, keep in zip(
                customer_ids,
                probabilities.tolist(),
                labels.tolist(),
                tiers,
                records,
                top_names,
                top_contributions,
                top_texts,
                present,
                strict=True,
            )
        ]
        survival = self.model.survival
        if survival is not None:
            known = probabilities if survival.hazard is self.model else None
            _add_survival(scores, survival.predict(X, known))
        return ScoredRows(probabilities, labels, tiers, scores)


def _add_survival(scores: list[dict[str, Any]], columns: Mapping[str, np.ndarray]) -> None:
    """Time to churn and value (:mod:`churn.modeling.survival`) into each score object: the
    horizons the model reports, ``expected_lifetime_months`` and ``clv``, as in
    ``customer_scores``."""
    lists = {name: column.tolist() for name, column in columns.items()}
    for i, score in enumerate(scores):
        for name, values in lists.items():
            score[name] = values[i]


def top_reasons(contributions: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``TOP_REASONS`` strongest features per row and their contributions.

    Rows not ``high``: by absolute contribution (what moves the score either way). ``high``
    rows: only risk-raising features, strongest first; a slot without a positive contribution
    is empty (index -1, contribution NaN), except the first, which always names the strongest
    push so every row has a reason."""
    k = min(TOP_REASONS, contributions.shape[1])
    key = np.where(high[:, None], -contributions, -np.abs(contributions))
    top = np.argsort(key, axis=1, kind="stable")[:, :k]
    pushes = np.take_along_axis(contributions, top, axis=1)
    if k < TOP_REASONS:  # a model of fewer features than reason slots
        pad = TOP_REASONS - k
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-1)
        pushes = np.pad(pushes, ((0, 0), (0, pad)), constant_values=np.nan)
    empty = high[:, None] & ~(pushes > 0)
    empty[:, 0] = False
    top = np.where(empty, -1, top)
    return top, np.where(empty, np.nan, pushes)
