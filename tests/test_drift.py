"""The drift tests raise at most 5% false alarms per column at any sample size, and catch shifts.

Samples come from the warehouse's own features (discrete counts, zero-heavy columns, a handful
of categories), which is where Evidently's defaults misbehave, not from tidy normal draws.
"""

import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn.features import FEATURES
from churn.monitoring import drift

KINDS = {feature.name: feature.kind for feature in FEATURES}
"""The synthetic warehouse's features: what a champion trained on it has in its card."""

SIZES = (200, 1000, 5000)
REPEATS = 8
MAX_FALSE_ALARM_RATE = 0.05


@pytest.fixture(scope="module")
def features(materialized) -> pd.DataFrame:
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        return con.sql("SELECT * FROM customer_features").df()


@pytest.mark.parametrize("size", SIZES)
def test_same_distribution_rarely_alarms(features: pd.DataFrame, size: int) -> None:
    assert len(features) >= 2 * size
    rng = np.random.default_rng(size)
    alarms = trials = 0
    for _ in range(REPEATS):
        order = rng.permutation(len(features))
        reference = features.iloc[order[:size]]
        current = features.iloc[order[size : 2 * size]]
        result = drift.column_scores(reference, current, KINDS)
        alarms += len(result.drifted_columns)
        trials += len(result.columns)
    rate = alarms / trials
    print(f"false-alarm rate at {size} vs {size} rows: {rate:.4f} ({alarms}/{trials})")  # noqa: T201
    assert trials == REPEATS * len(FEATURES)
    assert rate <= MAX_FALSE_ALARM_RATE


def test_evidently_defaults_would_fail_this_bar(features: pd.DataFrame) -> None:
    """Why the choice matters: a plain normed Wasserstein at 0.1 alarms far more at 200 rows."""
    from evidently.legacy.calculations.stattests import wasserstein_stat_test
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(0)
    order = rng.permutation(len(features))
    a, b = features.iloc[order[:200]], features.iloc[order[200:400]]
    numeric = [c for c, kind in KINDS.items() if kind == "numeric"]
    naive = sum(
        wasserstein_stat_test(
            a[c].astype(float), b[c].astype(float), ColumnType.Numerical, 0.1
        ).drifted
        for c in numeric
    )
    assert naive / len(numeric) > MAX_FALSE_ALARM_RATE


def _newest(features: pd.DataFrame) -> pd.DataFrame:
    return features[features["observation_date"] == features["observation_date"].max()]


def test_real_shifts_are_detected(features: pd.DataFrame) -> None:
    reference = features.sample(n=3000, random_state=1)
    current = _newest(features).copy()
    north = current["region"] == "north"
    price = current.copy()
    price.loc[north, "monthly_fee"] *= 1.6
    assert "monthly_fee" in drift.column_scores(reference, price, KINDS).drifted_columns

    outage = current.copy()
    usage = [c for c in current.columns if c.startswith(("events_", "active_days", "sessions"))]
    for column in usage:
        outage[column] = (outage[column] * 0.3).round()
    result = drift.column_scores(reference, outage, KINDS)
    assert set(usage) & set(result.drifted_columns)
    assert result.share > 0.2


def test_report_agrees_with_fast_path_and_writes_html(
    features: pd.DataFrame, tmp_path: Path
) -> None:
    reference = features.sample(n=3000, random_state=2)
    current = _newest(features).copy()
    current.loc[current["region"] == "north", "monthly_fee"] *= 1.6
    started = time.perf_counter()
    result, snapshot = drift.run_report(reference, current, KINDS)
    html, payload = drift.save_report(snapshot, result, tmp_path, "report")
    print(  # noqa: T201
        f"one drift report ({len(reference)} vs {len(current)} rows, 43 features): "
        f"{time.perf_counter() - started:.2f} s"
    )
    fast = drift.column_scores(reference, current, KINDS)
    assert result.drifted_columns == fast.drifted_columns
    assert "monthly_fee" in result.drifted_columns
    assert html.stat().st_size > 10_000 and "monthly_fee" in payload.read_text()
