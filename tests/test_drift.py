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


# --- time-growing features and the two comparisons -------------------------------------------


def _month(features: pd.DataFrame, rank: int) -> pd.DataFrame:
    """The ``rank``-th newest observation date's rows (0 = newest)."""
    dates = sorted(features["observation_date"].unique())
    return features[features["observation_date"] == dates[-1 - rank]]


def test_ageing_alone_never_drifts_a_time_growing_feature(features: pd.DataFrame) -> None:
    """The same customers a month older: tenure moved by exactly the elapsed days. As a plain
    feature that is drift; declared time-growing it is not, against the previous month (aged by
    the known elapsed days) nor against a training sample (reported, not counted)."""
    previous = _month(features, 1)
    older = previous.copy()
    older["tenure_days"] += 92  # a quarter later: far more than the noise, nothing else changed
    plain = drift.column_scores(previous, older, KINDS)
    assert plain.drifted_columns == ["tenure_days"]

    month = drift.column_scores(
        previous, older, KINDS, time_growing=["tenure_days"], elapsed_days=92
    )
    tenure = next(c for c in month.columns if c.column == "tenure_days")
    assert tenure.time_growing and tenure.counted and not tenure.drifted
    assert tenure.score >= drift.NUMERIC_THRESHOLD and tenure.aged_score == 0.0
    assert month.drifted_columns == [] and month.time_growing_columns == ["tenure_days"]

    training = drift.column_scores(previous, older, KINDS, time_growing=["tenure_days"])
    tenure = next(c for c in training.columns if c.column == "tenure_days")
    assert tenure.drifted and not tenure.counted  # reported, not counted
    assert training.drifted_columns == [] and len(training.counted_columns) == len(KINDS) - 1
    assert "not counted (time-growing): tenure_days" in training.summary()


def test_a_time_growing_feature_that_moved_for_another_reason_still_drifts(
    features: pd.DataFrame,
) -> None:
    """Neither as it is nor aged: a wave of brand-new customers is a change, not ageing."""
    previous = _month(features, 1)
    current = previous.copy()
    young = current.sample(frac=0.5, random_state=0).index
    current.loc[young, "tenure_days"] = 3
    result = drift.column_scores(
        previous, current, KINDS, time_growing=["tenure_days"], elapsed_days=31
    )
    assert "tenure_days" in result.drifted_columns


def test_the_card_names_the_time_growing_features_and_old_cards_fall_back() -> None:
    card = {"time_growing_features": ["age_days"], "feature_order": ["age_days", "tenure_days"]}
    assert drift.time_growing_from_card(card) == ["age_days"]
    old = {"feature_order": ["plan", "tenure_days", "events_7d"]}
    assert drift.time_growing_from_card(old) == ["tenure_days"]


def _result(drifted: int, compared: int) -> drift.DriftResult:
    columns = [
        drift.ColumnDrift(f"f{i}", "numeric", drift.NUMERIC_METHOD, 0.1, 0.5, i < drifted)
        for i in range(compared)
    ]
    return drift.DriftResult(columns, 100, 100)


@pytest.mark.parametrize(
    ("training", "previous", "decide_on", "passed", "says"),
    [
        (5, 5, "both", False, "against the previous month 5/10"),
        (5, 1, "both", True, "within the limit against last month: no alarm"),
        (1, 5, "both", True, "within the limit against training: no alarm"),
        (1, 1, "both", True, "against the training sample 1/10"),
        (5, None, "both", False, "no previous month"),
        (5, 1, "training", False, "against the training sample 5/10"),
        (1, 5, "previous_month", False, "against the previous month 5/10"),
        (5, None, "previous_month", True, "no previous month"),
    ],
)
def test_drift_check_rule(training, previous, decide_on, passed, says) -> None:
    verdict = drift.decide(
        _result(training, 10),
        None if previous is None else _result(previous, 10),
        0.2,
        decide_on,
    )
    assert verdict.passed is passed
    assert says in verdict.reason


def test_an_unknown_rule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="decide_on must be one of both, training"):
        drift.decide(_result(0, 1), None, 0.2, "newest")
