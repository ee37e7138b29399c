"""The EDA report as markdown tables (Dagster metadata) and as one self-contained HTML page.

Both are rendered from the same :class:`~churn.reports.eda.EdaResult`, so the UI and the file never
disagree. The HTML embeds its images as data URIs: one file that can be mailed or archived
without the folder it came from.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from churn.reports.eda import QUANTILES, EdaResult

TOP_CORRELATIONS = 15


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def markdown_image(png: bytes, title: str) -> str:
    return f"**{title}**\n\n![{title}]({data_uri(png)})"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join([header, rule, *body])


# --- the report's tables, as (columns, rows) ---------------------------------------------------

Table = tuple[list[str], list[list[Any]]]


def feature_table(result: EdaResult, descriptions: Mapping[str, str]) -> Table:
    columns = ["feature", "type", "kind", "missing", "distinct", "mean"]
    columns += [f"p{round(q * 100)}" for q in QUANTILES] + ["most frequent", "description"]
    rows = []
    for f in result.features:
        quantiles = list(f.quantiles) or [None] * len(QUANTILES)
        top = "" if f.top_value is None else f"{f.top_value} ({_pct(f.top_share)})"
        rows.append(
            [
                f.name,
                f.sql_type,
                f.kind,
                _pct(f.missing_share),
                f.distinct,
                f.mean,
                *quantiles,
                top,
                descriptions.get(f.name, ""),
            ]
        )
    return columns, rows


def segment_table(result: EdaResult) -> Table:
    base = result.churn_rate or 0.0
    rows = [
        [
            s.segment,
            s.value,
            s.rows,
            s.churned,
            _pct(s.churn_rate),
            f"{s.churn_rate / base:.2f}x" if base else "",
        ]
        for s in result.segments
    ]
    return ["segment", "value", "rows", "churned", "churn rate", "lift vs overall"], rows


def label_correlation_table(result: EdaResult) -> Table:
    rows = [
        [c.left, f"{c.r:+.3f}", "more churn" if c.r > 0 else "less churn"]
        for c in result.label_correlations[:TOP_CORRELATIONS]
    ]
    return ["feature", "r with churned", "higher value means"], rows


def pair_table(result: EdaResult) -> Table:
    rows = [[c.left, c.right, f"{c.r:+.3f}"] for c in result.feature_pairs[:TOP_CORRELATIONS]]
    return ["feature", "feature", "Pearson r"], rows


def month_table(result: EdaResult) -> Table:
    rows = [
        [
            m.observation_date.isoformat(),
            m.rows,
            m.labeled,
            _pct(m.churn_rate) if m.matured else "excluded: labels not matured",
        ]
        for m in result.months
    ]
    return ["observation_date", "rows", "labeled", "churn rate"], rows


def overview(result: EdaResult) -> str:
    excluded = ", ".join(m.observation_date.isoformat() for m in result.excluded_months)
    lines = [
        f"{result.rows:,} feature rows, {len(result.features)} features, "
        f"{result.labeled_rows:,} rows with a matured label, "
        f"overall churn rate {_pct(result.churn_rate) or 'n/a'}.",
    ]
    if excluded:
        lines.append(
            f"Churn statistics use matured labels only: {excluded} is excluded because its "
            "label horizon runs past the end of the data (it is the snapshot the model scores)."
        )
    return " ".join(lines)


# --- HTML ----------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; margin: 0.5em 0; }
p.note { color: #555; }
"""


def _html_table(table: Table) -> str:
    columns, rows = table
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            klass = ' class="num"' if number else ""
            cells.append(f"<td{klass}>{html.escape(_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_image(images: Mapping[str, bytes], name: str, alt: str) -> str:
    png = images.get(name)
    return "" if png is None else f'<img alt="{html.escape(alt)}" src="{data_uri(png)}">'


def render_html(result: EdaResult, descriptions: Mapping[str, str], title: str) -> str:
    """The whole report as one HTML document with every image embedded."""
    images = result.images
    sections = [
        (
            "Churn rate per month",
            _html_image(images, "churn_by_month", "churn per month")
            + _html_table(month_table(result)),
        ),
        (
            "Churn rate by segment",
            _html_image(images, "churn_by_segment", "churn by segment")
            + _html_table(segment_table(result)),
        ),
        (
            "Correlation with churn",
            '<p class="note">Point-biserial correlation: Pearson r between each numeric feature '
            "and the 0/1 label, on matured rows.</p>"
            + _html_image(images, "label_correlations", "correlation with churn")
            + _html_table(label_correlation_table(result)),
        ),
        (
            "Distributions by label",
            _html_image(images, "distributions_by_label", "distributions by label"),
        ),
        (
            "Most correlated feature pairs",
            '<p class="note">Near-duplicate features: a model splits credit between them.</p>'
            + _html_table(pair_table(result)),
        ),
        ("Feature summary", _html_table(feature_table(result, descriptions))),
    ]
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(overview(result))}</p>{body}"
        "</body></html>"
    )
