"""The model object the service loads: predictions and explanations from a float64 matrix.

``ChurnModel`` is deliberately thin (the fitted estimator plus the feature specs) so the same
pickle answers batch scoring in the pipeline and single requests in the service, and so no
per-request pandas conversion can sneak into the hot path. Explanations are additive in
log-odds space for both model kinds, one column per original feature: what a retention agent
reads as "the three reasons" is directly comparable across models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from churn.modeling.spec import FeatureSpec, decode_row, specs_to_dicts
from churn.modeling.treeshap import TreeExplainer, UnsupportedModel, build_explainer

if TYPE_CHECKING:
    import lightgbm
    from sklearn.pipeline import Pipeline

    from churn.modeling.calibration import Calibration
    from churn.modeling.survival import SurvivalModel

ModelKind = Literal["lightgbm", "logistic_regression"]

TABLE_SHAP_MIN_ROWS = 3
"""Below this many rows LightGBM's own ``pred_contrib`` is faster (83 us for one row, 151 for
two, against 154 and 161 for the tables); both give the same values."""


class ChurnModel:
    """Common interface; subclasses hold the fitted estimator."""

    kind: ModelKind
    survival: SurvivalModel | None = None
    """Time to churn and customer value (:mod:`churn.modeling.survival`), set on the winner of
    a time split so it is saved, loaded and served with the classifier as one object; None for
    a flat source and for models saved before it existed."""
    calibration: Calibration | None = None
    """The isotonic map of :mod:`churn.modeling.calibration` when it was kept: what
    :meth:`predict_proba` (and the scorer) apply on top of the raw probability. A class default,
    so a champion pickled before calibration existed loads with none."""

    def __init__(self, specs: Sequence[FeatureSpec], *, fit_seconds: float = 0.0) -> None:
        self.specs: list[FeatureSpec] = list(specs)
        self.feature_names: list[str] = [spec.name for spec in self.specs]
        self.fit_seconds = fit_seconds
        self.params: dict[str, Any] = {}

    @property
    def n_features(self) -> int:
        return len(self.specs)

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature additive effects on the log-odds; ``bias + row sum == log_odds``."""
        raise NotImplementedError

    @property
    def bias(self) -> float:
        """The log-odds before any feature speaks: the baseline the contributions move from."""
        raise NotImplementedError

    def raw_proba(self, X: np.ndarray) -> np.ndarray:
        """The model's own probability, before any calibration: sigmoid of :meth:`log_odds`."""
        return _sigmoid(self.log_odds(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of churn within the horizon, one per row (calibrated when the model
        carries a calibration)."""
        return self.calibrated(self.raw_proba(X))

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Raw probabilities through the calibration map (unchanged without one): the one place
        batch scoring and the service turn a raw probability into the one they show."""
        return raw if self.calibration is None else self.calibration.apply(raw)

    def warm_up(self) -> None:
        """Build whatever the model derives lazily, so the first request does not pay for it."""

    def top_reasons(
        self,
        X: np.ndarray,
        values: Sequence[Mapping[str, Any]] | None = None,
        k: int = 3,
    ) -> list[list[dict[str, Any]]]:
        """The ``k`` features that moved each row's risk the most, in either direction.

        ``values`` are the raw payloads shown next to each reason; without them the encoded
        row is decoded (category names come back from the specs).
        """
        X = self._check(X)
        contributions = self.contributions(X)
        order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
        reasons = []
        for i, row_order in enumerate(order):
            shown = values[i] if values is not None else decode_row(X[i], self.specs)
            reasons.append(
                [
                    {
                        "feature": self.feature_names[j],
                        "value": shown.get(self.feature_names[j]),
                        "contribution": float(contributions[i, j]),
                    }
                    for j in row_order
                ]
            )
        return reasons

    def global_importance(self, X: np.ndarray) -> dict[str, float]:
        """Mean |contribution| per feature: comparable across model kinds, unlike split gain."""
        mean_abs = np.abs(self.contributions(self._check(X))).mean(axis=0)
        return dict(zip(self.feature_names, (float(v) for v in mean_abs), strict=True))

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata for the model registry and the service's /metadata."""
        return {
            "kind": self.kind,
            "features": specs_to_dicts(self.specs),
            "params": self.params,
            "fit_seconds": self.fit_seconds,
        }

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} feature columns, got {X.shape[1]}")
        return X


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class LightGBMChurnModel(ChurnModel):
    """Gradient-boosted trees on the code matrix, categoricals split natively."""

    kind: ModelKind = "lightgbm"

    def __init__(
        self,
        booster: lightgbm.Booster,
        specs: Sequence[FeatureSpec],
        *,
        best_iteration: int,
        fit_seconds: float = 0.0,
        num_threads: int = 1,
    ) -> None:
        super().__init__(specs, fit_seconds=fit_seconds)
        self.booster = booster
        self.best_iteration = best_iteration
        self.num_threads = num_threads
        """Threads per predict call: one, because a request is one row and thread start-up
        would cost more than the trees; raise it for large batch scoring."""
        self._bias = float(self._raw_contributions(np.full((1, self.n_features), np.nan))[0, -1])

    @property
    def bias(self) -> float:
        return self._bias

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(self._check(X), raw_score=True, num_threads=self.num_threads)

    def raw_proba(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(self._check(X), num_threads=self.num_threads)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        X = self._check(X)
        explainer = self.explainer
        if explainer is None or len(X) < TABLE_SHAP_MIN_ROWS:
            return self._raw_contributions(X)[:, :-1]
        return explainer.contributions(X)

    @cached_property
    def explainer(self) -> TreeExplainer | None:
        """The precomputed TreeSHAP tables (:mod:`churn.modeling.treeshap`), built on first use
        and never pickled: they are derived from the booster in ~40 ms."""
        try:
            return build_explainer(self.booster, self.n_features)
        except UnsupportedModel:
            return None

    def warm_up(self) -> None:
        self.explainer  # noqa: B018 (builds the cached tables)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("explainer", None)
        return state

    def _raw_contributions(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=self.num_threads))

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"best_iteration": self.best_iteration}


class LogisticChurnModel(ChurnModel):
    """A scikit-learn pipeline at fit time, a handful of numpy arrays at predict time.

    The pipeline is kept for reference and auditing, but predictions are computed from its
    extracted parameters: a ColumnTransformer costs hundreds of microseconds per call, the
    arithmetic below a few.
    """

    kind: ModelKind = "logistic_regression"

    def __init__(
        self, pipeline: Pipeline, specs: Sequence[FeatureSpec], *, fit_seconds: float = 0.0
    ) -> None:
        super().__init__(specs, fit_seconds=fit_seconds)
        self.pipeline = pipeline
        self._extract(pipeline)

    def _extract(self, pipeline: Pipeline) -> None:
        """Pull medians, scaling and coefficients out of the fitted pipeline.

        The column transformer emits the one-hot block first (categorical features in spec
        order, ``len(categories)`` columns each), then the scaled numerics; the coefficient
        vector follows that layout.
        """
        transformer = pipeline.named_steps["columns"]
        classifier = pipeline.named_steps["classifier"]
        numeric = transformer.named_transformers_["numeric"]
        coef = classifier.coef_.ravel().astype(np.float64)
        self._intercept = float(classifier.intercept_[0])
        self._categorical_idx = [j for j, s in enumerate(self.specs) if s.kind == "categorical"]
        self._numeric_idx = [j for j, s in enumerate(self.specs) if s.kind == "numeric"]
        self._category_coefs: list[np.ndarray] = []
        offset = 0
        for j in self._categorical_idx:
            n_categories = len(self.specs[j].categories or ())
            # The extra trailing zero is where unknown or missing codes look up their effect.
            block = np.append(coef[offset : offset + n_categories], 0.0)
            self._category_coefs.append(block)
            offset += n_categories
        self._medians = numeric.named_steps["impute"].statistics_.astype(np.float64)
        scaler = numeric.named_steps["scale"]
        self._means = scaler.mean_.astype(np.float64)
        self._scales = scaler.scale_.astype(np.float64)
        self._numeric_coefs = coef[offset:]

    @property
    def bias(self) -> float:
        return self._intercept

    def standardized(self, X: np.ndarray) -> np.ndarray:
        """Numeric columns after median imputation and scaling, as the classifier saw them."""
        numeric = X[:, self._numeric_idx]
        numeric = np.where(np.isnan(numeric), self._medians, numeric)
        return (numeric - self._means) / self._scales

    def contributions(self, X: np.ndarray) -> np.ndarray:
        X = self._check(X)
        result = np.empty_like(X)
        result[:, self._numeric_idx] = self.standardized(X) * self._numeric_coefs
        for j, table in zip(self._categorical_idx, self._category_coefs, strict=True):
            result[:, j] = table[_code_index(X[:, j], len(table) - 1)]
        return result

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        return self._intercept + self.contributions(X).sum(axis=1)

    def coefficients(self) -> dict[str, float | dict[str, float]]:
        """Per-feature coefficients: one per scaled numeric, one per category."""
        result: dict[str, float | dict[str, float]] = {}
        for j, table in zip(self._categorical_idx, self._category_coefs, strict=True):
            categories = self.specs[j].categories or ()
            result[self.feature_names[j]] = {
                c: float(v) for c, v in zip(categories, table[:-1], strict=True)
            }
        for j, value in zip(self._numeric_idx, self._numeric_coefs, strict=True):
            result[self.feature_names[j]] = float(value)
        return result


def _code_index(codes: np.ndarray, unknown: int) -> np.ndarray:
    """Valid integer codes index their category; NaN, negatives, fractions and codes past the
    end all map to ``unknown`` (no effect), mirroring OneHotEncoder(handle_unknown="ignore")."""
    with np.errstate(invalid="ignore"):
        valid = (codes >= 0) & (codes < unknown) & (codes == np.floor(codes))
    return np.where(valid, np.nan_to_num(codes, nan=0.0), unknown).astype(np.intp)
