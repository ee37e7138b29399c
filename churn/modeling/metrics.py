"""Evaluation metrics in plain numpy.

Implemented here rather than imported from scikit-learn so the monitoring path (which scores
prediction logs against matured labels) does not need scikit-learn, and so that edge cases a
dashboard hits in practice (a month with no churner) give NaN instead of an exception. The
tests pin every metric to scikit-learn's value.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

_EPS = float(np.finfo(np.float64).eps)


def _arrays(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} rows but y_score has {s.size}")
    return y, s


def auc(y_true: Any, y_score: Any) -> float:
    """ROC AUC as the Mann-Whitney statistic: O(n log n), ties count one half."""
    y, s = _arrays(y_true, y_score)
    positives = float(y.sum())
    negatives = float(y.size - positives)
    if positives == 0 or negatives == 0:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    mean_rank = upper - (counts - 1) / 2.0
    rank_sum = float(mean_rank[inverse][y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _descending_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    true_positives = np.cumsum(y_sorted)[last_of_group]
    false_positives = (last_of_group + 1) - true_positives
    return s_sorted[last_of_group], true_positives, false_positives


def roc_points(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1), for plotting."""
    y, s = _arrays(y_true, y_score)
    _, tp, fp = _descending_counts(y, s)
    positives, negatives = max(tp[-1], 1.0), max(fp[-1], 1.0)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def pr_points(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) from the highest threshold down, for plotting."""
    y, s = _arrays(y_true, y_score)
    _, tp, fp = _descending_counts(y, s)
    precision = tp / (tp + fp)
    recall = tp / max(tp[-1], 1.0)
    return np.r_[0.0, recall], np.r_[1.0, precision]


def average_precision(y_true: Any, y_score: Any) -> float:
    """PR AUC as scikit-learn defines it: precision weighted by each step's recall gain (no
    interpolation, which would be optimistic)."""
    y, s = _arrays(y_true, y_score)
    if y.sum() == 0:
        return math.nan
    recall, precision = pr_points(y, s)
    return float(np.sum(np.diff(recall) * precision[1:]))


def brier(y_true: Any, y_score: Any) -> float:
    y, s = _arrays(y_true, y_score)
    return float(np.mean((s - y) ** 2))


def log_loss(y_true: Any, y_score: Any) -> float:
    y, s = _arrays(y_true, y_score)
    p = np.clip(s, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def top_share_stats(y_true: Any, y_score: Any, share: float = 0.1) -> tuple[float, float]:
    """(lift, capture) of the riskiest ``share`` of rows: how much richer in churners the
    list a retention team would actually call is, and what fraction of all churners it holds."""
    y, s = _arrays(y_true, y_score)
    positives = float(y.sum())
    if y.size == 0 or positives == 0:
        return math.nan, math.nan
    n_top = max(1, math.ceil(share * y.size))
    top = np.argsort(-s, kind="mergesort")[:n_top]
    caught = float(y[top].sum())
    return (caught / n_top) / (positives / y.size), caught / positives


def calibration_table(
    y_true: Any,
    y_score: Any,
    bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> list[dict[str, float]]:
    """Predicted vs observed churn per score bin (empty bins omitted).

    ``uniform`` bins split [0, 1] evenly (what ECE uses); ``quantile`` bins hold equal row
    counts, which is more readable when most scores sit near the low base rate.
    """
    y, s = _arrays(y_true, y_score)
    if strategy == "quantile":
        edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, edges.size - 2)
    table = []
    for b in range(edges.size - 1):
        in_bin = index == b
        if in_bin.any():
            table.append(
                {
                    "bin_lower": float(edges[b]),
                    "bin_upper": float(edges[b + 1]),
                    "rows": int(in_bin.sum()),
                    "mean_predicted": float(s[in_bin].mean()),
                    "observed_rate": float(y[in_bin].mean()),
                }
            )
    return table


def expected_calibration_error(y_true: Any, y_score: Any, bins: int = 10) -> float:
    """Row-weighted mean |observed - predicted| over uniform bins."""
    y, _ = _arrays(y_true, y_score)
    if y.size == 0:
        return math.nan
    table = calibration_table(y_true, y_score, bins=bins, strategy="uniform")
    return float(
        sum(row["rows"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table)
        / y.size
    )


def evaluate(y_true: Any, y_score: Any, threshold: float = 0.5) -> dict[str, float]:
    """Every number the model report and the monitoring dashboards show, in one flat dict."""
    y, s = _arrays(y_true, y_score)
    predicted = s >= threshold
    true_positives = float((predicted & (y == 1)).sum())
    precision = float(true_positives / predicted.sum()) if predicted.any() else math.nan
    positives = float(y.sum())
    recall = true_positives / positives if positives else math.nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision + recall > 0  # NaN compares False, so undefined stays undefined
        else (0.0 if precision == 0 and recall == 0 else math.nan)
    )
    lift, capture = top_share_stats(y, s, 0.1)
    return {
        "rows": int(y.size),
        "positives": int(positives),
        "base_rate": positives / y.size if y.size else math.nan,
        "roc_auc": auc(y, s),
        "pr_auc": average_precision(y, s),
        "brier": brier(y, s) if y.size else math.nan,
        "log_loss": log_loss(y, s) if y.size else math.nan,
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "top_decile_lift": lift,
        "top_decile_capture": capture,
        "expected_calibration_error": expected_calibration_error(y, s),
    }
