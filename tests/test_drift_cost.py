"""Large frames are sampled before the drift report, deterministically (issue 29 item 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.monitoring import drift

KINDS = {"fee": "numeric", "calls": "numeric", "tenure_days": "numeric", "plan": "categorical"}


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


def test_large_frames_are_sampled_with_a_fixed_seed_and_their_size_recorded():
    big = _frame(900, 5)
    first, second = drift.sampled(big, 500), drift.sampled(big, 500)
    assert len(first) == 500 and first.index.equals(second.index)
    assert drift.sampled(big) is big  # under the default limit: the frame itself
    result, _ = drift.run_report(big, _frame(400, 7), KINDS, max_rows=500)
    assert result.reference_rows == len(big) and result.current_rows == 400
