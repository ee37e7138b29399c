"""Small charts as inline SVG for the retention page.

Hand-written SVG rather than matplotlib PNGs: a few dozen shapes per chart, text a browser can
search and a screen reader can read, sharp at any zoom, and no plotting backend in the loop of a
monthly page. Every label passes through :func:`html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 44
TIER_COLOURS = {"high": "#c0392b", "medium": "#e67e22", "low": "#27ae60"}


def _frame(title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" class="chart"><title>{html.escape(title)}</title>'
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{html.escape(title)}</text>{body}</svg>'
    )


def _axes(y_max: float, y_label: str, fmt: str = "{:,.0f}") -> str:
    """The y axis with three gridlines from 0 to ``y_max``, and the x axis line."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(4):
        value = y_max * i / 3
        y = HEIGHT - BOTTOM - plot_h * i / 3
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{html.escape(fmt.format(value))}</text>"
        )
    parts.append(
        f'<text x="12" y="{TOP + plot_h / 2:.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{html.escape(y_label)}</text>'
    )
    return "".join(parts)


def bar_chart(
    labels: Sequence[str], values: Sequence[float], title: str, y_label: str = "customers"
) -> str:
    """One bar per label, its value written above it (tier counts: coloured by tier)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max([float(v) for v in values] + [1.0])
    slot = plot_w / max(len(labels), 1)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * float(value) / top
        x = LEFT + slot * i + slot * 0.15
        y = HEIGHT - BOTTOM - h
        colour = TIER_COLOURS.get(label, "#2c7fb8")
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{html.escape(f"{label}: {value:,}")}</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
            f'font-size="11">{html.escape(f"{value:,}")}</text>'
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11">{html.escape(label)}</text>'
        )
    return _frame(title, _axes(top, y_label) + "".join(bars))


def histogram(
    probabilities: np.ndarray,
    threshold: float | None,
    cuts: tuple[float, float] | None,
    title: str,
    bins: int = 40,
) -> str:
    """How the month's customers spread over churn probability, the decision threshold (where
    the list starts) drawn in red and the low/medium cut dashed."""
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[np.isfinite(p)]
    high_end = max(float(p.max()) if p.size else 1.0, threshold or 0.0) * 1.05 or 1.0
    counts, edges = np.histogram(p, bins=bins, range=(0.0, min(high_end, 1.0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(int(counts.max()) if counts.size else 0, 1)
    span = edges[-1] - edges[0] or 1.0

    def x_of(value: float) -> float:
        return LEFT + plot_w * (value - edges[0]) / span

    parts = [_axes(top, "customers")]
    for count, left, right in zip(counts, edges[:-1], edges[1:], strict=True):
        h = plot_h * count / top
        parts.append(
            f'<rect x="{x_of(left):.1f}" y="{HEIGHT - BOTTOM - h:.1f}" '
            f'width="{max(x_of(right) - x_of(left) - 1, 0.5):.1f}" height="{h:.1f}" '
            f'fill="#2c7fb8"><title>{left:.3f}-{right:.3f}: {int(count):,}</title></rect>'
        )
    for i in range(5):
        value = edges[0] + span * i / 4
        parts.append(
            f'<text x="{x_of(value):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'font-size="10">{value:.2f}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" '
        'font-size="10">churn probability</text>'
    )
    marks = []
    if cuts is not None:
        marks.append((cuts[0], "#777", "4 3", f"low|medium {cuts[0]:.3f}"))
    if threshold is not None:
        marks.append((threshold, "#c0392b", "", f"decision {threshold:.3f}"))
    for k, (value, colour, dash, label) in enumerate(marks):
        x = x_of(min(value, edges[-1]))
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
            f'stroke="{colour}" stroke-width="1.5"{dashes}/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{TOP + 12 + 13 * k}" font-size="10" '
            f'text-anchor="end" fill="{colour}">{html.escape(f"{label} (line)")}</text>'
        )
    return _frame(title, "".join(parts))


def line_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    title: str,
    y_max: float = 1.0,
) -> str:
    """Lines over the months (realized AUC, precision, recall), a gap where a value is None."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(labels), 1)
    step = plot_w / n

    def point(i: int, value: float) -> tuple[float, float]:
        return LEFT + step * (i + 0.5), HEIGHT - BOTTOM - plot_h * min(value, y_max) / y_max

    colours = ["#2c7fb8", "#27ae60", "#c0392b", "#8e44ad"]
    parts = [_axes(y_max, "", "{:.2f}")]
    for i, label in enumerate(labels):
        x, _ = point(i, 0.0)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'font-size="9">{html.escape(label)}</text>'
        )
    for k, (name, values) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        points = [point(i, float(v)) for i, v in enumerate(values) if v is not None]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            + "".join(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points
            )
            + f'<text x="{LEFT + 6 + 150 * k}" y="{HEIGHT - 8}" font-size="10" '
            f'fill="{colour}">{html.escape(name)}</text>'
        )
    return _frame(title, "".join(parts))
