"""The precomputed TreeSHAP tables give LightGBM's own ``pred_contrib`` values, not an estimate."""

import pickle

import numpy as np
import pytest

from churn.modeling.candidates import LightGBMConfig, train_lightgbm
from churn.modeling.model import TABLE_SHAP_MIN_ROWS, LightGBMChurnModel
from churn.modeling.spec import FeatureSpec
from churn.modeling.treeshap import UnsupportedModel, build_explainer

SPECS = [
    FeatureSpec("plan", "categorical", "string", "", categories=tuple("abcdefgh")),
    FeatureSpec("region", "categorical", "string", "", categories=("n", "s")),
    FeatureSpec("usage", "numeric", "number", ""),
    FeatureSpec("tenure", "numeric", "integer", ""),
    FeatureSpec("tickets", "numeric", "integer", ""),  # has gaps in training: NaN-aware splits
    FeatureSpec("noise", "numeric", "number", ""),
]


def synthetic(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Churn driven by every kind of split: a many-valued category, numbers, and missingness."""
    rng = np.random.default_rng(seed)
    plan = rng.integers(0, 8, rows).astype(float)
    region = rng.integers(0, 2, rows).astype(float)
    usage = rng.gamma(2.0, 3.0, rows)
    tenure = rng.integers(0, 1500, rows).astype(float)
    tickets = rng.poisson(1.0, rows).astype(float)
    tickets[rng.random(rows) < 0.2] = np.nan
    noise = rng.normal(size=rows)
    log_odds = (
        -2.0
        + 0.4 * np.isin(plan, [1, 4, 6])
        - 0.25 * usage
        - tenure / 1500
        + 0.5 * np.nan_to_num(tickets, nan=3.0)
        + 0.3 * region
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-log_odds))).astype(float)
    return np.column_stack([plan, region, usage, tenure, tickets, noise]), y


@pytest.fixture(scope="module")
def model() -> LightGBMChurnModel:
    X, y = synthetic(6000, seed=1)
    config = LightGBMConfig(min_child_samples=20, n_estimators=150, early_stopping_rounds=50)
    return train_lightgbm(X[:5000], y[:5000], X[5000:], y[5000:], SPECS, config)


def scoring_rows(seed: int) -> np.ndarray:
    """Fresh rows plus the awkward values: NaN anywhere, unseen and negative category codes,
    and values exactly on split thresholds."""
    X, _ = synthetic(2000, seed)
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:50, 0] = 11.0  # a plan code past the training categories
    X[50:100, 0] = -1.0
    return X


def test_tables_match_pred_contrib_exactly(model: LightGBMChurnModel):
    explainer = build_explainer(model.booster, model.n_features)
    X = scoring_rows(seed=2)
    expected = model.booster.predict(X, pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(explainer.contributions(X), expected, rtol=0, atol=1e-9)
    assert np.abs(expected).max() > 0.1  # the comparison is about real effects


def test_rows_on_thresholds_go_where_lightgbm_sends_them(model: LightGBMChurnModel):
    explainer = build_explainer(model.booster, model.n_features)
    X = scoring_rows(seed=3)[: len(explainer.bin_edges[2])]
    X[:, 2] = explainer.bin_edges[2][: len(X)]  # usage exactly at each of its thresholds
    expected = model.booster.predict(X, pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(explainer.contributions(X), expected, rtol=0, atol=1e-9)


def test_contributions_add_up_to_the_models_log_odds(model: LightGBMChurnModel):
    X = scoring_rows(seed=4)
    for rows in (X[:1], X[:TABLE_SHAP_MIN_ROWS], X):  # LightGBM's path and the tables' path
        log_odds = model.bias + model.contributions(rows).sum(axis=1)
        np.testing.assert_allclose(log_odds, model.log_odds(rows), rtol=0, atol=1e-9)


def test_tables_are_rebuilt_after_unpickling_not_stored(model: LightGBMChurnModel):
    X = scoring_rows(seed=5)
    before = model.contributions(X)
    assert model.explainer is not None
    restored = pickle.loads(pickle.dumps(model))
    assert "explainer" not in restored.__dict__
    np.testing.assert_array_equal(restored.contributions(X), before)


def test_trees_too_large_for_one_byte_of_decisions_keep_pred_contrib():
    X, y = synthetic(3000, seed=6)
    config = LightGBMConfig(
        num_leaves=31, min_child_samples=5, n_estimators=20, early_stopping_rounds=20
    )
    big = train_lightgbm(X[:2500], y[:2500], X[2500:], y[2500:], SPECS, config)
    with pytest.raises(UnsupportedModel, match="splits"):
        build_explainer(big.booster, big.n_features)
    assert big.explainer is None
    rows = scoring_rows(seed=7)
    expected = big.booster.predict(rows, pred_contrib=True)[:, :-1]
    np.testing.assert_array_equal(big.contributions(rows), expected)
