"""The two candidate models: a transparent baseline and the gradient-boosted challenger.

Both train on the encoded matrix from :mod:`churn.modeling.spec`, never on a DataFrame, so the
matrix a model is fitted on is exactly the kind of matrix the service will hand it. Neither
oversamples: churn is rare (a few percent a month) and the probabilities feed an expected-value
threshold, so they must stay calibrated to the real base rate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from churn.modeling.model import LightGBMChurnModel, LogisticChurnModel
from churn.modeling.spec import FeatureSpec


@dataclass
class LogisticConfig:
    """Mild L2 regularization: the features are few and the rows many, so C barely matters."""

    C: float = 1.0
    max_iter: int = 1000
    class_weight: str | None = None


@dataclass
class LightGBMConfig:
    """Defaults tuned for a few tens of thousands of rows with a ~4% positive rate.

    Small trees with a large minimum leaf size: the churn signal is smooth (a hazard that moves
    with engagement, friction and the renewal calendar), so deep trees only memorize noise in the
    few hundred positives. Early stopping picks the length. The learning rate is 0.05, not
    slower: at 0.02 the default data needed ~600 trees for the same test AUC (0.734 vs 0.738
    at 0.05 with ~200 trees), and every tree costs serving time, above all in the per-row
    TreeSHAP reasons (``pred_contrib``: 230 vs 73 ms per 1,000 rows; the precomputed tables of
    :mod:`churn.modeling.treeshap` that serving uses now: ~6 ms at 194 trees).
    One training thread: on ~20k rows thread synchronization costs more than it saves (2
    threads were 2-4x slower on a shared 2-core machine); raise it for much larger data.
    """

    num_leaves: int = 7
    learning_rate: float = 0.05
    n_estimators: int = 3000
    min_child_samples: int = 100
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.7
    reg_lambda: float = 5.0
    min_split_gain: float = 0.0
    cat_smooth: float = 20.0
    early_stopping_rounds: int = 200
    num_threads: int = 1
    predict_threads: int = 1
    seed: int = 42


def _categorical_indices(specs: Sequence[FeatureSpec]) -> list[int]:
    return [j for j, spec in enumerate(specs) if spec.kind == "categorical"]


def _numeric_indices(specs: Sequence[FeatureSpec]) -> list[int]:
    return [j for j, spec in enumerate(specs) if spec.kind == "numeric"]


def train_logistic(
    train_X: np.ndarray,
    train_y: np.ndarray,
    specs: Sequence[FeatureSpec],
    config: LogisticConfig | None = None,
    *,
    sample_weight: np.ndarray | None = None,
) -> LogisticChurnModel:
    """One-hot categoricals with every spec category declared up front, so a category absent
    from this training slice still gets a (zero) column and the coefficient layout is fixed.
    ``sample_weight`` (one per row) carries a time-decayed training window
    (:class:`churn.modeling.selection.Window`)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    config = config or LogisticConfig()
    categorical = _categorical_indices(specs)
    categories = [np.arange(len(specs[j].categories or ()), dtype=np.float64) for j in categorical]
    columns = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                _numeric_indices(specs),
            ),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
    classifier = LogisticRegression(
        C=config.C, max_iter=config.max_iter, class_weight=config.class_weight
    )
    pipeline = Pipeline([("columns", columns), ("classifier", classifier)])
    started = time.perf_counter()
    fit_params = {} if sample_weight is None else {"classifier__sample_weight": sample_weight}
    pipeline.fit(np.asarray(train_X, dtype=np.float64), np.asarray(train_y), **fit_params)
    model = LogisticChurnModel(pipeline, specs, fit_seconds=time.perf_counter() - started)
    model.params = asdict(config)
    return model


def lightgbm_params(config: LightGBMConfig) -> dict[str, Any]:
    """The native LightGBM parameters a config stands for (also recorded with the model)."""
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_child_samples,
        "bagging_fraction": config.subsample,
        "bagging_freq": config.subsample_freq,
        "feature_fraction": config.colsample_bytree,
        "lambda_l2": config.reg_lambda,
        "min_gain_to_split": config.min_split_gain,
        "cat_smooth": config.cat_smooth,
        "num_threads": config.num_threads,
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def train_lightgbm(
    train_X: np.ndarray,
    train_y: np.ndarray,
    valid_X: np.ndarray,
    valid_y: np.ndarray,
    specs: Sequence[FeatureSpec],
    config: LightGBMConfig | None = None,
    *,
    sample_weight: np.ndarray | None = None,
) -> LightGBMChurnModel:
    """Early-stop on the validation slice (log loss, because the probabilities themselves are
    used downstream), then keep only the best trees so the shipped model is as small and fast
    as it can be and no caller can accidentally predict with the overfitted tail."""
    import lightgbm as lgb

    config = config or LightGBMConfig()
    params = lightgbm_params(config)
    categorical = _categorical_indices(specs)
    names = [spec.name for spec in specs]
    train = lgb.Dataset(
        np.asarray(train_X, dtype=np.float64),
        label=np.asarray(train_y, dtype=np.float64),
        weight=None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64),
        feature_name=names,
        categorical_feature=categorical,
        free_raw_data=True,
    )
    valid = lgb.Dataset(
        np.asarray(valid_X, dtype=np.float64),
        label=np.asarray(valid_y, dtype=np.float64),
        reference=train,
    )
    started = time.perf_counter()
    booster = lgb.train(
        params,
        train,
        num_boost_round=config.n_estimators,
        valid_sets=[valid],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    fit_seconds = time.perf_counter() - started
    best_iteration = booster.best_iteration or booster.current_iteration()
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))
    model = LightGBMChurnModel(
        trimmed,
        specs,
        best_iteration=best_iteration,
        fit_seconds=fit_seconds,
        num_threads=config.predict_threads,
    )
    model.params = asdict(config) | {"lightgbm": params}
    return model
