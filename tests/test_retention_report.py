"""The retention team's page, rendered by a real browser (headless Chromium).

The session's graph (small synthetic data) writes one page per scored month; Chromium loads the
newest as a user would (``file://``, no network) and the test reads the DOM it built: the list's
rows against ``customer_scores``, the charts' shapes, the figures in the summary and the realized
table against ``stored_scores_realized``. The screenshot is kept beside the DOM for a human (the
README's image is made the same way). Chromium missing is a skip on a laptop and a failure in CI
(``CI`` set): ``.ci/run`` installs it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from churn.monitoring.performance import stored_scores_realized
from churn.reports import retention, retention_html
from churn_assets.defs.scoring.report import TITLE, report_path
from tests.graph import GraphRun
from tests.test_models import copy_home, materialization

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The browser's path; skipped without one, except in CI where it must be installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not on PATH in CI: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


def render_in_chromium(page: Path, work: Path, screenshot: Path | None = None) -> str:
    """The DOM Chromium builds from ``page`` (and, when asked, a full-page PNG of it)."""
    browser = chromium()
    base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}"]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    if screenshot is not None:
        subprocess.run(
            [*base, f"--screenshot={screenshot}", "--window-size=1280,2400", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return dom


class Dom(HTMLParser):
    """What the test reads from the rendered page: rows per table id (with their data-tier),
    the text of elements with an id, and the shapes inside each svg."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.texts: dict[str, str] = {}
        self.svgs: list[int] = []
        self.scripts = 0
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._text_id: str | None = None
        self._in_svg = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._table = attributes.get("id")
            self.tables.setdefault(self._table or "", [])
        elif tag == "tr" and self._table is not None:
            self._row = {"tier": attributes.get("data-tier"), "cells": [], "header": False}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            self._row["header"] |= tag == "th"
        elif tag == "svg":
            self._in_svg = True
            self.svgs.append(0)
        elif self._in_svg and tag in ("rect", "polyline", "circle", "line"):
            self.svgs[-1] += 1
        if tag in ("span", "p") and attributes.get("id"):
            self._text_id = attributes["id"]
            self.texts[self._text_id] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if not self._row["header"]:
                self.tables[self._table or ""].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "svg":
            self._in_svg = False
        elif tag in ("span", "p"):
            self._text_id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._text_id is not None:
            self.texts[self._text_id] += data


def parse(dom: str) -> Dom:
    parsed = Dom()
    parsed.feed(dom)
    return parsed


@pytest.fixture(scope="module")
def newest(materialized: GraphRun) -> dt.date:
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        return con.execute("SELECT max(observation_date) FROM customer_scores").fetchone()[0]


@pytest.fixture(scope="module")
def rendered(materialized: GraphRun, newest: dt.date, tmp_path_factory) -> tuple[Dom, Path]:
    work = tmp_path_factory.mktemp("chromium")
    page = report_path(materialized.home / "reports", newest)
    assert page.exists(), f"retention_report wrote no page for {newest}"
    png = work / "retention_report.png"
    return parse(render_in_chromium(page, work, screenshot=png)), png


def _query(materialized: GraphRun, sql: str, params: list) -> list[tuple]:
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def test_the_rendered_list_is_the_tables_high_tier_riskiest_first(
    materialized: GraphRun, newest: dt.date, rendered: tuple[Dom, Path]
):
    dom, _ = rendered
    expected = _query(
        materialized,
        "SELECT customer_id FROM customer_scores WHERE observation_date = ? "
        "AND risk_tier = 'high' ORDER BY churn_probability DESC, customer_id",
        [newest],
    )
    rows = dom.tables["the-list"]
    assert len(expected) > 0
    assert [row["tier"] for row in rows] == ["high"] * len(expected)
    customer = retention.LIST_COLUMNS.index("customer_id")
    assert [row["cells"][customer] for row in rows] == [c for (c,) in expected]
    assert all(row["cells"][retention.LIST_COLUMNS.index("reason_1_text")] for row in rows)
    assert dom.texts["high-count"] == f"{len(expected):,}"
    assert dom.texts["list-count"] == f"{len(expected):,}"
    assert "no-plan" not in dom.texts  # customer_scores carries the contact plan
    assert dom.scripts == 0


def test_tiers_and_movers_match_the_table(
    materialized: GraphRun, newest: dt.date, rendered: tuple[Dom, Path]
):
    dom, _ = rendered
    tiers = dict(
        _query(
            materialized,
            "SELECT risk_tier, count(*) FROM customer_scores WHERE observation_date = ? GROUP BY 1",
            [newest],
        )
    )
    shown = [(row["cells"][0], row["cells"][1]) for row in dom.tables["tier-counts"]]
    assert shown == [(tier, f"{tiers.get(tier, 0):,}") for tier in ("high", "medium", "low")]
    moved = dict(
        _query(
            materialized,
            "SELECT tier_change, count(*) FROM customer_scores WHERE observation_date = ? "
            "GROUP BY 1",
            [newest],
        )
    )
    movers = {row["cells"][0]: row["cells"][1] for row in dom.tables["movers"]}
    assert movers == {change: f"{moved.get(change, 0):,}" for change in movers}
    assert len(dom.tables.get("new-high", [])) == moved.get("new_high", 0)


def test_the_charts_economics_and_realized_months_are_drawn(
    materialized: GraphRun, rendered: tuple[Dom, Path]
):
    dom, png = rendered
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        realized = stored_scores_realized(con)
    assert len(realized) > 0  # the small graph has matured scored months
    assert len(dom.svgs) == 3  # tier counts, probability histogram, realized quality by month
    assert all(shapes > 3 for shapes in dom.svgs)
    assert [row["cells"][0] for row in dom.tables["realized"]] == [
        m.observation_date[:10] for m in realized
    ]
    economics = {row["cells"][0]: row["cells"][1] for row in dom.tables["economics"]}
    assert economics["cost of one contact"] == "10.00"
    assert "decision threshold (probability)" in economics
    assert png.stat().st_size > 20_000  # a real screenshot, not a blank page


def test_the_asset_links_its_page(materialized: GraphRun, newest: dt.date):
    metadata = materialization(materialized, "retention_report").metadata
    path = Path(metadata["report"].value)
    assert path == report_path(materialized.home / "reports", newest)
    assert metadata["report_url"].value == path.resolve().as_uri()
    assert metadata["high_customers"].value == len(
        _query(
            materialized,
            "SELECT 1 FROM customer_scores WHERE observation_date = ? AND risk_tier = 'high'",
            [newest],
        )
    )
    pages = sorted((materialized.home / "reports").glob("retention_*.html"))
    assert len(pages) == metadata["pages"].value > 1  # one page per scored month


def test_user_values_are_escaped_and_a_contact_plan_is_shown(
    materialized: GraphRun, newest: dt.date, tmp_path: Path
):
    """A customer id and a reason text holding markup render as text; once the scores have
    ``contact`` and ``holdout`` columns the list shows them (and who is held out)."""
    home = copy_home(materialized, tmp_path)
    hostile = "<script>alert(1)</script>&<b>x</b>"
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        top = con.execute(
            "SELECT customer_id FROM customer_scores WHERE observation_date = ? "
            "ORDER BY churn_probability DESC LIMIT 1",
            [newest],
        ).fetchone()[0]
        con.execute(
            "UPDATE customer_scores SET customer_id = ?, reason_1_text = ? "
            "WHERE observation_date = ? AND customer_id = ?",
            [hostile, hostile, newest, top],
        )
        con.execute("ALTER TABLE customer_scores DROP COLUMN contact")
        con.execute("ALTER TABLE customer_scores DROP COLUMN holdout")
        without_plan = retention.gather(con, "customer_scores", newest, None)
        con.execute("ALTER TABLE customer_scores ADD COLUMN contact BOOLEAN DEFAULT false")
        con.execute("ALTER TABLE customer_scores ADD COLUMN holdout BOOLEAN DEFAULT false")
        con.execute(
            "UPDATE customer_scores SET contact = (risk_rank % 10 <> 0), "
            "holdout = (risk_rank % 10 = 0) WHERE risk_tier = 'high'"
        )
        high = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE holdout) FROM customer_scores "
            "WHERE observation_date = ? AND risk_tier = 'high'",
            [newest],
        ).fetchone()
        page = retention.gather(con, "customer_scores", newest, None)
    assert not without_plan.has_plan and "contact" not in without_plan.list_columns
    assert page.has_plan and page.list_columns[-2:] == ["contact", "holdout"]
    text = retention_html.render(page, TITLE)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    path = tmp_path / "page.html"
    path.write_text(text, encoding="utf-8")
    dom = parse(render_in_chromium(path, tmp_path))
    rows = dom.tables["the-list"]
    assert dom.scripts == 0
    assert rows[0]["cells"][1] == hostile  # shown as the characters it holds
    holdout = page.list_columns.index("holdout")
    assert len(rows) == high[0]
    assert sum(row["cells"][holdout] == "yes" for row in rows) == high[1] > 0
    assert "no-plan" not in dom.texts


def test_realized_effect_columns_are_shown_when_reported():
    months = [
        {"observation_date": "2025-05-01", "roc_auc": 0.7, "effect": -0.03, "effect_low": -0.05},
        {"observation_date": "2025-06-01", "roc_auc": 0.72, "effect_high": -0.01},
    ]
    columns, rows = retention.realized_months(months)
    assert columns[: len(retention.REALIZED_COLUMNS)] == list(retention.REALIZED_COLUMNS)
    assert columns[len(retention.REALIZED_COLUMNS) :] == ["effect", "effect_low", "effect_high"]
    assert rows[1]["effect"] is None and rows[1]["effect_high"] == -0.01
    assert retention.realized_months([{"observation_date": "2025-05-01"}])[0] == list(
        retention.REALIZED_COLUMNS
    )
