"""What the retention team's monthly page says, read from the warehouse (no HTML here).

The team that acts on the list never opens the Dagster UI, so one page per month carries what
they need: the list (who, how likely, why, what a contact is worth, and whether to contact or
hold out when the scores carry a contact plan), who moved since last month, the economics the
decision was made with, and how earlier lists did once their labels matured.

Columns that a newer ``customer_scores`` may carry (``contact``, ``holdout``) and realized
figures that a newer ``model_performance`` may report (``effect``, ``effect_low``,
``effect_high``) are read when present and left out when absent: the page never fails on an
older table. Rendering is :mod:`churn.reports.retention_html`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from churn.scoring.movement import TIER_CHANGES
from churn.sql import quote_identifier

TIERS = ("high", "medium", "low")
"""Riskiest first: the order a reader scans the tiers in."""

LIST_COLUMNS = (
    "risk_rank",
    "customer_id",
    "risk_tier",
    "churn_probability",
    "tier_change",
    "reason_1_text",
    "reason_2_text",
    "reason_3_text",
    "expected_value",
)
"""The list's columns, in the page's order (a column the table lacks is left out)."""

PLAN_COLUMNS = ("contact", "holdout")
"""The contact plan: both booleans, present once scoring chooses whom to contact."""

REALIZED_COLUMNS = (
    "observation_date",
    "model_version",
    "window",
    "scored_rows",
    "share_labelled",
    "positives",
    "roc_auc",
    "precision_at_threshold",
    "recall_at_threshold",
    "top_decile_lift",
)
"""Realized quality of a scored month, as
:func:`churn.monitoring.performance.stored_scores_realized` reports it."""

EFFECT_PREFIXES = ("effect", "holdout", "contacted_")
"""Realized campaign figures (``effect``, ``effect_low``, ``effect_high``, churn among the
contacted and the held out): shown for whatever keys a month's result has."""


@dataclass(frozen=True)
class RetentionPage:
    """One month's page, as plain values (dates, numbers, strings) ready to render."""

    observation_date: dt.date
    model_versions: list[str]
    scored: int
    threshold: float | None
    tier_cuts: tuple[float, float] | None
    tier_counts: dict[str, int]
    """Customers per tier, ordered high, medium, low."""
    list_columns: list[str]
    list_rows: list[tuple]
    list_total: int
    """Rows of the whole list (``list_rows`` may stop earlier, at ``max_list_rows``)."""
    has_plan: bool
    tier_changes: list[tuple[str, int, int]]
    """(tier_change, customers, of them high now), in :data:`TIER_CHANGES` order."""
    new_high: list[tuple]
    previous_date: dt.date | None
    probabilities: np.ndarray = field(repr=False)
    economics: dict[str, Any] = field(default_factory=dict)
    realized_columns: list[str] = field(default_factory=list)
    realized: list[dict[str, Any]] = field(default_factory=list)

    @property
    def high(self) -> int:
        return self.tier_counts.get("high", 0)


PAGE_PREFIX = "retention_"


def page_path(folder: Path, day: dt.date) -> Path:
    """Where the page of ``day`` lives: ``<folder>/retention_<date>.html``."""
    return folder / f"{PAGE_PREFIX}{day.isoformat()}.html"


def newest_page(folder: Path) -> Path | None:
    """The page of the newest month in ``folder`` (ISO dates sort as text), if any: what the
    demo banner points the team at."""
    pages = sorted(folder.glob(f"{PAGE_PREFIX}????-??-??.html"))
    return pages[-1] if pages else None


NEW_HIGH_COLUMNS = [
    "customer_id",
    "churn_probability",
    "previous_tier",
    "previous_probability",
    "reason_1_text",
]


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {quote_identifier(table)}").fetchall()]


def scored_dates(
    con: duckdb.DuckDBPyConnection, table: str, start: dt.date, end: dt.date
) -> list[dt.date]:
    """The observation dates in [start, end) that ``table`` holds scores for."""
    rows = con.execute(
        f"SELECT DISTINCT observation_date FROM {quote_identifier(table)} "
        "WHERE observation_date >= ? AND observation_date < ? ORDER BY 1",
        [start, end],
    ).fetchall()
    return [_as_date(day) for (day,) in rows]


def realized_months(months: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict]]:
    """The realized table's columns and rows: the base quality columns plus any realized
    campaign figure (:data:`EFFECT_PREFIXES`) that at least one month reports."""
    columns = list(REALIZED_COLUMNS)
    for month in months:
        for key in month:
            if key not in columns and key.startswith(EFFECT_PREFIXES):
                columns.append(key)
    rows = [{c: month.get(c) for c in columns} for month in months]
    return columns, rows


def gather(
    con: duckdb.DuckDBPyConnection,
    table: str,
    day: dt.date,
    card: Mapping[str, Any] | None,
    realized: Sequence[Mapping[str, Any]] = (),
    *,
    max_list_rows: int = 2_000,
) -> RetentionPage:
    """Everything the page for ``day`` shows, from the scores ``table`` and the model ``card``
    (``None``: the scoring model left the store; the page then shows no economics).

    The list is every ``high`` customer (``churn_label = 1``, the one decision) and, when the
    table has a contact plan, everyone chosen for contact or the holdout; riskiest first.
    """
    quoted = quote_identifier(table)
    present = set(table_columns(con, table))
    has_plan = all(c in present for c in PLAN_COLUMNS)
    columns = [c for c in LIST_COLUMNS if c in present]
    columns += [c for c in PLAN_COLUMNS if has_plan]
    chosen = "risk_tier = 'high'" + (" OR contact OR holdout" if has_plan else "")
    select = ", ".join(_list_expression(c) for c in columns)
    where = f"observation_date = ? AND ({chosen})"
    list_total = con.execute(f"SELECT count(*) FROM {quoted} WHERE {where}", [day]).fetchone()[0]
    list_rows = con.execute(
        f"SELECT {select} FROM {quoted} WHERE {where} ORDER BY churn_probability DESC, "
        "customer_id LIMIT ?",
        [day, int(max_list_rows)],
    ).fetchall()
    counts = dict(
        con.execute(
            f"SELECT risk_tier, count(*) FROM {quoted} WHERE observation_date = ? GROUP BY 1",
            [day],
        ).fetchall()
    )
    versions = [
        v
        for (v,) in con.execute(
            f"SELECT DISTINCT model_version FROM {quoted} WHERE observation_date = ? ORDER BY 1",
            [day],
        ).fetchall()
    ]
    probabilities = con.execute(
        f"SELECT churn_probability FROM {quoted} WHERE observation_date = ?", [day]
    ).fetchnumpy()["churn_probability"]
    changes, new_high, previous = _movement(con, quoted, present, day)
    realized_columns, realized_rows = realized_months(realized)
    threshold, cuts, economics = _card_figures(card)
    return RetentionPage(
        observation_date=day,
        model_versions=versions,
        scored=int(sum(counts.values())),
        threshold=threshold,
        tier_cuts=cuts,
        tier_counts={tier: int(counts.get(tier, 0)) for tier in TIERS},
        list_columns=columns,
        list_rows=list_rows,
        list_total=int(list_total),
        has_plan=has_plan,
        tier_changes=changes,
        new_high=new_high,
        previous_date=previous,
        probabilities=np.asarray(probabilities, dtype=np.float64),
        economics=economics,
        realized_columns=realized_columns,
        realized=realized_rows,
    )


def _list_expression(column: str) -> str:
    """Numbers rounded as a reader wants them (probabilities to 3 places, money to 2)."""
    quoted = quote_identifier(column)
    if column == "churn_probability":
        return f"round({quoted}, 3)"
    if column == "expected_value":
        return f"round({quoted}, 2)"
    return quoted


def _movement(
    con: duckdb.DuckDBPyConnection, quoted: str, present: set[str], day: dt.date
) -> tuple[list[tuple[str, int, int]], list[tuple], dt.date | None]:
    """Tier-change counts, the ``new_high`` customers and last month's date (when scored)."""
    previous = con.execute(
        f"SELECT max(observation_date) FROM {quoted} WHERE observation_date < ?", [day]
    ).fetchone()[0]
    if "tier_change" not in present:
        return [], [], _as_date(previous) if previous else None
    found = {
        change: (customers, high)
        for change, customers, high in con.execute(
            f"SELECT tier_change, count(*), count(*) FILTER (WHERE risk_tier = 'high') "
            f"FROM {quoted} WHERE observation_date = ? GROUP BY ALL",
            [day],
        ).fetchall()
    }
    changes = [(change, *found.get(change, (0, 0))) for change in TIER_CHANGES]
    new_high = con.execute(
        "SELECT customer_id, round(churn_probability, 3), previous_tier, "
        f"round(previous_probability, 3), reason_1_text FROM {quoted} "
        "WHERE observation_date = ? AND tier_change = 'new_high' "
        "ORDER BY churn_probability DESC, customer_id",
        [day],
    ).fetchall()
    return changes, new_high, _as_date(previous) if previous else None


def _card_figures(
    card: Mapping[str, Any] | None,
) -> tuple[float | None, tuple[float, float] | None, dict[str, Any]]:
    """The decision threshold, the tier cuts and the economics block of the scoring model."""
    if card is None:
        return None, None, {}
    from churn.modeling.card import card_tier_cuts, decision_threshold

    threshold = decision_threshold(dict(card))
    return threshold, card_tier_cuts(card, threshold), dict(card.get("economics") or {})


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
