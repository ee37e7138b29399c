"""Report figures as PNG bytes, ready to attach to asset metadata or a model card.

Figures are built with the object-oriented API on an Agg canvas, never through ``pyplot``:
pyplot keeps global state that is neither thread-safe nor freed without an explicit close,
and the pipeline renders these from worker processes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.modeling.metrics import (
    auc,
    average_precision,
    calibration_table,
    pr_points,
    roc_points,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SIZE = (6.0, 4.0)
DPI = 100


def _render(draw: Callable[[Axes], None], size: tuple[float, float] = SIZE) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    draw(axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def roc_curve(y_true: Any, scores_by_model: Mapping[str, Any]) -> bytes:
    def draw(ax: Axes) -> None:
        for name, scores in scores_by_model.items():
            fpr, tpr = roc_points(y_true, scores)
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(y_true, scores):.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
        ax.set(title="ROC curve", xlabel="False positive rate", ylabel="True positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right")

    return _render(draw)


def pr_curve(y_true: Any, scores_by_model: Mapping[str, Any]) -> bytes:
    base_rate = float(np.mean(np.asarray(y_true, dtype=np.float64)))

    def draw(ax: Axes) -> None:
        for name, scores in scores_by_model.items():
            recall, precision = pr_points(y_true, scores)
            label = f"{name} (AP {average_precision(y_true, scores):.3f})"
            ax.step(recall, precision, where="post", label=label)
        ax.axhline(base_rate, linestyle="--", color="grey", label=f"base rate {base_rate:.1%}")
        ax.set(title="Precision-recall curve", xlabel="Recall", ylabel="Precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper right")

    return _render(draw)


def calibration_plot(y_true: Any, scores_by_model: Mapping[str, Any], bins: int = 10) -> bytes:
    """Quantile bins: with a low base rate, uniform bins would put nearly every row in the
    first one and say nothing about the range where decisions are made."""

    def draw(ax: Axes) -> None:
        top = 0.0
        for name, scores in scores_by_model.items():
            table = calibration_table(y_true, scores, bins=bins, strategy="quantile")
            predicted = [row["mean_predicted"] for row in table]
            observed = [row["observed_rate"] for row in table]
            ax.plot(predicted, observed, marker="o", label=name)
            top = max(top, *predicted, *observed)
        top = min(1.0, top * 1.05) or 1.0
        ax.plot([0, top], [0, top], linestyle="--", color="grey", label="perfect calibration")
        ax.set(
            title="Calibration (quantile bins)",
            xlabel="Mean predicted churn probability",
            ylabel="Observed churn rate",
        )
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.legend(loc="upper left")

    return _render(draw)


def feature_importance(names: Sequence[str], values: Sequence[float], top: int = 20) -> bytes:
    order = np.argsort(-np.abs(np.asarray(values, dtype=np.float64)), kind="stable")[:top]
    shown_names = [names[i] for i in order][::-1]
    shown_values = [float(values[i]) for i in order][::-1]
    height = max(SIZE[1], 0.25 * len(shown_names) + 1.0)

    def draw(ax: Axes) -> None:
        ax.barh(shown_names, shown_values, color="tab:blue")
        ax.set(
            title=f"Feature importance (top {len(shown_names)})",
            xlabel="Mean |contribution| (log-odds)",
            ylabel="Feature",
        )
        ax.tick_params(axis="y", labelsize=8)

    return _render(draw, size=(SIZE[0], height))


def confusion_matrix(y_true: Any, y_score: Any, threshold: float) -> bytes:
    y = np.asarray(y_true, dtype=np.float64).ravel() == 1
    predicted = np.asarray(y_score, dtype=np.float64).ravel() >= threshold
    counts = np.array(
        [
            [np.sum(~y & ~predicted), np.sum(~y & predicted)],
            [np.sum(y & ~predicted), np.sum(y & predicted)],
        ]
    )

    def draw(ax: Axes) -> None:
        image = ax.imshow(counts, cmap="Blues")
        ax.figure.colorbar(image, ax=ax, label="Customers")
        labels = ["stays", "churns"]
        ax.set_xticks([0, 1], labels=[f"predicted {label}" for label in labels])
        ax.set_yticks([0, 1], labels=[f"actually {label}" for label in labels])
        ax.set_title(f"Confusion matrix at threshold {threshold:.3f}")
        ax.set_xlabel("Prediction")
        ax.set_ylabel("Outcome")
        middle = counts.max() / 2
        for (i, j), value in np.ndenumerate(counts):
            color = "white" if value > middle else "black"
            ax.text(j, i, f"{value:,}", ha="center", va="center", color=color)

    return _render(draw)


def backtest_plot(
    months: Sequence[Mapping[str, Any]],
    title: str = "Backtest: retrained each month on what was known, scored that month",
) -> bytes:
    """Per month: ROC AUC (left axis) and top-decile lift (right) of that month's scores."""

    def draw(ax: Axes) -> None:
        labels = [str(m["observation_date"]) for m in months]
        x = np.arange(len(labels))
        aucs = [np.nan if m["roc_auc"] is None else m["roc_auc"] for m in months]
        lifts = [np.nan if m["top_decile_lift"] is None else m["top_decile_lift"] for m in months]
        ax.plot(x, aucs, marker="o", color="tab:blue", label="ROC AUC")
        ax.set(title=title, ylabel="ROC AUC")
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylim(0.5, 1.0)
        lift_axis = ax.twinx()
        lift_axis.bar(x, lifts, alpha=0.3, color="tab:orange", label="top-decile lift")
        lift_axis.set_ylabel("top-decile lift")
        lift_axis.set_ylim(0, max([4.0, *[v for v in lifts if np.isfinite(v)]]) * 1.1)
        handles = ax.get_legend_handles_labels()
        more = lift_axis.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left")

    return _render(draw)


def realized_by_month_plot(months: Sequence[Mapping[str, Any]]) -> bytes:
    """Realized quality of each scored month once its labels matured: ROC AUC, precision and
    recall at the decision threshold (lines, left axis), the share of the month labelled (bars,
    right axis), each month's x label naming the model version that scored it."""

    def draw(ax: Axes) -> None:
        labels = [f"{m['observation_date']}\n{m['model_version']}" for m in months]
        x = np.arange(len(labels))

        def series(key: str) -> list[float]:
            return [np.nan if m[key] is None else m[key] for m in months]

        ax.plot(x, series("roc_auc"), marker="o", color="tab:blue", label="ROC AUC")
        ax.plot(x, series("precision_at_threshold"), marker="s", color="tab:green",
                label="precision at threshold")  # fmt: skip
        ax.plot(x, series("recall_at_threshold"), marker="^", color="tab:red",
                label="recall at threshold")  # fmt: skip
        ax.set(title="Realized quality by scored month", ylabel="metric")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        share_axis = ax.twinx()
        share_axis.bar(x, series("share_labelled"), alpha=0.2, color="grey", label="share labelled")
        share_axis.set_ylabel("share of the month labelled")
        share_axis.set_ylim(0, 1.05)
        handles = ax.get_legend_handles_labels()
        more = share_axis.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", fontsize=7)

    return _render(draw)


def score_histogram(probabilities: Any, threshold: float, cuts: tuple[float, float]) -> bytes:
    """How the scored customers spread over churn probability, with the decision threshold and
    the tier cut points marked: where the contact list ends and the tiers begin."""

    def draw(ax: Axes) -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        ax.hist(p, bins=50, color="tab:blue", alpha=0.8)
        ax.axvline(threshold, color="tab:red", linestyle="-", label=f"decision {threshold:.3f}")
        for cut, name in zip(cuts, ("low|medium", "medium|high"), strict=True):
            ax.axvline(cut, color="grey", linestyle="--", label=f"{name} {cut:.3f}")
        ax.set_yscale("log")
        ax.set(title=f"Churn probability of {p.size:,} customers", xlabel="churn probability")
        ax.set_ylabel("customers (log scale)")
        ax.legend(loc="upper right")

    return _render(draw)
