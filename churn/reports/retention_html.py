"""The retention team's monthly page: one self-contained HTML file per month.

Self-contained like the EDA report (:mod:`churn.reports.eda_html`): inline CSS, charts as
inline SVG, no script, no external request, so the file can be mailed or archived alone. Every
value that comes from data (customer ids, reason texts, model versions) is escaped.

Stable ids (``the-list``, ``tier-counts``, ``movers``, ``economics``, ``realized``) and the
``data-tier`` of each list row let a reader's tooling (and the headless-browser test) find the
figures without parsing prose.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from churn.reports import retention_svg
from churn.reports.retention import NEW_HIGH_COLUMNS, RetentionPage

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr[data-tier=high] td:first-child { border-left: 4px solid #c0392b; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.chart { background: #fff; border: 1px solid #eee; }
p.note { color: #555; }
.big { font-size: 1.3em; font-weight: bold; }
summary { cursor: pointer; margin: 0.5em 0; font-weight: bold; }
nav { margin: 0.5em 0 1em; }
"""

HEADERS = {
    "risk_rank": "rank",
    "customer_id": "customer",
    "risk_tier": "tier",
    "churn_probability": "probability",
    "tier_change": "change",
    "reason_1_text": "reason 1",
    "reason_2_text": "reason 2",
    "reason_3_text": "reason 3",
    "expected_value": "expected value",
    "previous_tier": "tier last month",
    "previous_probability": "probability last month",
    "share_labelled": "share labelled",
    "scored_rows": "scored",
    "roc_auc": "AUC",
    "precision_at_threshold": "precision",
    "recall_at_threshold": "recall",
    "top_decile_lift": "top-decile lift",
    "window": "in the model's data",
    "effect": "effect of contact",
    "effect_low": "effect, low",
    "effect_high": "effect, high",
}

ECONOMICS_LABELS = {
    "intervention_cost": "cost of one contact",
    "retained_value": "value of a kept customer",
    "success_rate": "share of contacted churners kept",
    "capacity": "contacts per month (capacity)",
    "holdout_share": "share held out as control",
}


def _text(value: Any) -> str:
    """A cell's text: rounded numbers, yes/no for booleans, blank for missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    table_id: str,
    tier_column: int | None = None,
) -> str:
    head = "".join(f"<th>{html.escape(HEADERS.get(c, c))}</th>" for c in columns)
    body = []
    for row in rows:
        tier = "" if tier_column is None else f' data-tier="{html.escape(str(row[tier_column]))}"'
        cells = []
        for value in row:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            klass = ' class="num"' if number else ""
            cells.append(f"<td{klass}>{html.escape(_text(value))}</td>")
        body.append(f"<tr{tier}>{''.join(cells)}</tr>")
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _summary(page: RetentionPage) -> str:
    versions = ", ".join(page.model_versions) or "unknown"
    threshold = "" if page.threshold is None else f" (decision threshold {page.threshold:.3f})"
    return (
        f"<p><span class='big' id='scored'>{page.scored:,}</span> customers scored by model "
        f"{html.escape(versions)}; <span class='big' id='high-count'>{page.high:,}</span> "
        f"are <b>high</b> risk ({_share(page.high, page.scored)}){html.escape(threshold)}: "
        "high risk is the decision to act, the same as churn_label = 1.</p>"
    )


def _tiers(page: RetentionPage) -> str:
    rows = [[tier, count, _share(count, page.scored)] for tier, count in page.tier_counts.items()]
    charts = retention_svg.bar_chart(
        list(page.tier_counts), list(page.tier_counts.values()), "Customers per risk tier"
    ) + retention_svg.histogram(
        page.probabilities, page.threshold, page.tier_cuts, "Churn probability of the month"
    )
    return _table(["tier", "customers", "share"], rows, table_id="tier-counts") + (
        f'<div class="charts">{charts}</div>'
    )


def _movers(page: RetentionPage) -> str:
    if not page.tier_changes:
        return '<p class="note">These scores carry no month-over-month columns.</p>'
    since = page.previous_date.isoformat() if page.previous_date else "last month"
    counts = _table(
        ["change", "customers", "of them high now"], page.tier_changes, table_id="movers"
    )
    meaning = (
        '<p class="note">new_high: high now, not last month (call these first); up / down: a '
        "riskier / safer tier; same; new: not scored last month.</p>"
    )
    if not page.new_high:
        listing = f"<p>No customer became high risk since {html.escape(since)}.</p>"
    else:
        listing = (
            f"<details><summary>Became high risk since {html.escape(since)}: "
            f"{len(page.new_high):,} customers</summary>"
            + _table(NEW_HIGH_COLUMNS, page.new_high, table_id="new-high")
            + "</details>"
        )
    return counts + meaning + listing


def _economics(page: RetentionPage) -> str:
    rows = [[ECONOMICS_LABELS.get(k, k), v] for k, v in page.economics.items()]
    if page.threshold is not None:
        rows.append(["decision threshold (probability)", page.threshold])
    if page.tier_cuts is not None:
        rows.append(["low | medium cut (probability)", page.tier_cuts[0]])
    if not rows:
        return '<p class="note">The scoring model left the store: its economics are unknown.</p>'
    note = (
        '<p class="note">The threshold is the cut that earned the most on the validation '
        "month at these economics; expected value = probability x success rate x value of a "
        "kept customer - cost of a contact.</p>"
    )
    return _table(["setting", "value"], rows, table_id="economics") + note


def _the_list(page: RetentionPage) -> str:
    if page.has_plan:
        note = (
            '<p class="note">contact = yes: call them; holdout = yes: chosen at random and '
            "not contacted, the control group that measures whether contacting works.</p>"
        )
    else:
        note = (
            '<p class="note" id="no-plan">This list has no contact plan: every high-risk '
            "customer is on it, with no contact or holdout choice (the scores carry no "
            "contact and holdout columns).</p>"
        )
    shown = len(page.list_rows)
    more = (
        f'<p class="note">The first {shown:,} of {page.list_total:,} rows; the export has all.</p>'
        if shown < page.list_total
        else ""
    )
    tier = page.list_columns.index("risk_tier") if "risk_tier" in page.list_columns else None
    table = _table(page.list_columns, page.list_rows, table_id="the-list", tier_column=tier)
    return (
        f"<p><span class='big' id='list-count'>{page.list_total:,}</span> customers.</p>"
        + note
        + more
        + table
    )


def _realized(page: RetentionPage) -> str:
    if not page.realized:
        return '<p class="note" id="realized">No scored month has matured labels yet.</p>'
    rows = [[month[c] for c in page.realized_columns] for month in page.realized]
    labels = [str(m["observation_date"])[:10] for m in page.realized]
    chart = retention_svg.line_chart(
        labels,
        {
            "AUC": [m.get("roc_auc") for m in page.realized],
            "precision": [m.get("precision_at_threshold") for m in page.realized],
            "recall": [m.get("recall_at_threshold") for m in page.realized],
        },
        "Realized quality by scored month",
    )
    effect = (
        ""
        if "effect" in page.realized_columns
        else (
            '<p class="note">No realized contact effect yet: it needs a list with a holdout group '
            "whose labels have matured.</p>"
        )
    )
    note = (
        '<p class="note">Each scored month against its labels once they matured: AUC, and '
        "precision and recall of the high tier. Only <b>unseen</b> months are out of sample: "
        "months the model trained or was validated or tested on flatter it.</p>"
    )
    return note + _table(page.realized_columns, rows, table_id="realized") + effect + chart


def render(page: RetentionPage, title: str) -> str:
    """The whole page as one HTML document."""
    heading = f"{title}: {page.observation_date.isoformat()}"
    sections = [
        ("tiers", "Risk tiers", _tiers(page)),
        ("moved", "Who moved since last month", _movers(page)),
        ("money", "Economics", _economics(page)),
        ("earlier", "How earlier lists did", _realized(page)),
        ("list", "The list", _the_list(page)),
    ]
    contents = " · ".join(
        f'<a href="#{anchor}">{html.escape(name)}</a>' for anchor, name, _ in sections
    )
    body = f"<nav>{contents}</nav>" + "".join(
        f'<h2 id="{anchor}">{html.escape(name)}</h2>{content}' for anchor, name, content in sections
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(heading)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(heading)}</h1>{_summary(page)}{body}</body></html>"
    )
