"""The two event-log examples' configs, and the recency baseline their evaluation reports.

Fast: the configs are written by the examples' own generators at a small size and parsed the way
the code location parses ``CHURN_SOURCE``; the baseline is computed on a small split made by
:func:`churn.modeling.training.prepare`. The end-to-end runs of logs configured exactly like
these examples are in ``tests/test_event_log_pipeline.py``.
"""

from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.features.events import EventFeatureSpec, features
from churn.modeling.metrics import auc
from churn.modeling.training import RECENCY_FEATURE, prepare, recency_baseline_auc
from churn.sources.config import load_source

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load_event_logs():
    """The examples folder is scripts, not a package: load the module from its file."""
    spec = importlib.util.spec_from_file_location("event_logs", EXAMPLES / "event_logs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


event_logs = _load_event_logs()


def test_purchases_config_is_the_minimal_event_log(tmp_path):
    folder = event_logs.make_purchases(tmp_path / "purchases", customers=50, seed=3)
    source = load_source(folder / "source.yaml")
    assert source.is_event_log and not source.has_cancellations
    assert source.churn.inactive_days == 90 and source.churn.cancellation_event is None
    assert set(source.tables) == {"events"}
    events = source.tables["events"]
    assert events.file_column("customer_id") == "cust"
    assert events.file_column("event_time") == "bought_on"
    assert (source.observation.start, source.observation.end) == (
        date(2024, 4, 1),
        date(2025, 3, 1),
    )


def test_streaming_config_is_hybrid_json_lines_with_a_users_table(tmp_path):
    folder = event_logs.make_streaming(tmp_path / "streaming", users=20, seed=3)
    source = load_source(folder / "source.yaml")
    assert source.is_event_log and source.has_cancellations
    assert source.churn.inactive_days == 30
    assert source.churn.cancellation_event == "Cancellation Confirmation"
    assert set(source.tables) == {"events", "customers"}
    events = source.tables["events"]
    assert events.file_column("event_type") == "page"
    assert events.file_column("session_id") == "sessionId"
    assert source.tables["customers"].file_column("signup_date") == "registration"


def _frame(rows_per_month: int = 200, months: int = 8, seed: int = 0) -> pd.DataFrame:
    """Monthly snapshots whose churn follows recency (and a little noise feature)."""
    rng = np.random.default_rng(seed)
    parts = []
    for month in range(months):
        recency = rng.integers(0, 60, rows_per_month)
        churned = rng.random(rows_per_month) < 0.05 + 0.6 * recency / 60
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i}" for i in range(rows_per_month)],
                    "observation_date": date(2024, 1 + month, 1),
                    RECENCY_FEATURE: recency,
                    "events_30d": rng.integers(0, 20, rows_per_month),
                    "churned": churned.astype(int),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("with_recency", [True, False])
def test_recency_baseline_is_the_auc_of_recency_on_the_test_rows(with_recency):
    frame = _frame()
    names = [RECENCY_FEATURE, "events_30d"] if with_recency else ["events_30d"]
    data = prepare(
        frame,
        names,
        validation_months=1,
        test_months=1,
        horizon_days=1,
        features=features(EventFeatureSpec()),
    )
    baseline = recency_baseline_auc(data)
    if not with_recency:
        assert baseline is None  # a flat source: nothing to compare with, nothing reported
        return
    expected = auc(data.test.y, data.test.frame[RECENCY_FEATURE].to_numpy(dtype=float))
    assert baseline == pytest.approx(expected)
    assert baseline > 0.7  # churn here follows recency, so ranking by it alone is strong
    assert set(data.test.frame["observation_date"]) == {max(frame["observation_date"])}
