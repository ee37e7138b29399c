"""What the drift report skips to be cheaper changes nothing it shows (issue 29 item 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from churn.monitoring import drift

KINDS = {"fee": "numeric", "calls": "numeric", "tenure_days": "numeric", "plan": "categorical"}
ID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9a-f]{32}")


def _frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "fee": rng.normal(50 + shift, 10, rows),
            "calls": rng.poisson(3, rows).astype(float),
            "tenure_days": rng.integers(0, 900, rows).astype(float),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def _html(snapshot, folder: Path, name: str) -> str:
    path = folder / f"{name}.html"
    snapshot.save_html(str(path))
    return ID.sub("<id>", path.read_text())


def test_skipping_the_unshown_figures_keeps_values_verdicts_json_and_html(tmp_path):
    reference, current = _frame(800, 1), _frame(600, 2, shift=8.0)
    fast, fast_snapshot = drift.run_report(reference, current, KINDS, time_growing=["tenure_days"])
    full, full_snapshot = drift.run_report(
        reference, current, KINDS, time_growing=["tenure_days"], render_unshown=True
    )
    assert fast.to_dict() == full.to_dict()
    assert "fee" in fast.drifted_columns
    as_json = [
        json.dumps(s.dict(), sort_keys=True, default=str) for s in (fast_snapshot, full_snapshot)
    ]
    assert as_json[0] == as_json[1]
    assert _html(fast_snapshot, tmp_path, "fast") == _html(full_snapshot, tmp_path, "full")


def test_the_evidently_class_is_restored_after_the_report():
    from evidently.metrics.column_statistics import ValueDriftCalculation

    before = ValueDriftCalculation._render
    drift.run_report(_frame(300, 3), _frame(300, 4), KINDS)
    assert ValueDriftCalculation._render is before


def test_large_frames_are_sampled_with_a_fixed_seed_and_their_size_recorded():
    big = _frame(900, 5)
    first, second = drift.sampled(big, 500), drift.sampled(big, 500)
    assert len(first) == 500 and first.index.equals(second.index)
    assert drift.sampled(big) is big  # under the default limit: the frame itself
    result, _ = drift.run_report(big, _frame(400, 7), KINDS, max_rows=500)
    assert result.reference_rows == len(big) and result.current_rows == 400
