"""[scoring] ``retention_report``: the retention team's page, one HTML file per scored month.

The people who act on the list never open the Dagster UI, so each month of ``customer_scores``
gets a self-contained page in ``$CHURN_HOME/reports/retention_<date>.html``
(:mod:`churn.reports.retention_html`): the list, who moved, the economics, and how earlier
lists did once their labels matured. Partitioned like ``customer_scores`` (a month's page is
rewritten when that month is re-scored) and downstream of ``model_performance`` as well, so a
refreshed realized-quality table reaches the newest page. It only reads the warehouse.
"""

import datetime as dt
from pathlib import Path

import dagster as dg

from churn_assets.defs.features.assets import PARTITIONS, _window
from churn_assets.defs.scoring.assets import SCORING_REFRESH, TABLE
from churn_assets.partitions import SINGLE_RUN
from churn_assets.resources import WAREHOUSE_POOL, ChurnHomeResource, WarehouseResource

REPORTS_FOLDER = "reports"
TITLE = "Retention list"


class RetentionReportConfig(dg.Config):
    max_list_rows: int = 2_000
    """Rows of the list written into a page (the export holds them all); bounds the file."""


def report_path(folder: Path, day: dt.date) -> Path:
    """Where the page of ``day`` lives (the demo banner finds the newest the same way)."""
    from churn.reports.retention import page_path

    return page_path(folder, day)


def _write_atomically(path: Path, text: str) -> None:
    """A browser tab or a mail merge never reads half a page."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


@dg.asset(
    deps=[TABLE, "model_performance"],
    description="The retention team's page, one self-contained HTML file per scored month in "
    "$CHURN_HOME/reports/retention_YYYY-MM-DD.html: the list (tier, probability, plain "
    "reasons, expected value, contact or holdout when the scores have a contact plan), who "
    "moved since last month, the economics from the model card, and the realized quality "
    "(and contact effect, when measured) of earlier months, with charts.",
    partitions_def=PARTITIONS,
    backfill_policy=SINGLE_RUN,
    pool=WAREHOUSE_POOL,
    group_name="scoring",
    kinds={"duckdb", "html"},
    owners=["team:data-science"],
    automation_condition=SCORING_REFRESH,
)
def retention_report(
    context: dg.AssetExecutionContext,
    config: RetentionReportConfig,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
) -> dg.MaterializeResult:
    from churn.monitoring.performance import (
        realized_effect,
        stored_scores_realized,
        window_of,
    )
    from churn.reports import retention, retention_html
    from churn.warehouse import table_exists

    start, end = (dt.date.fromisoformat(key) for key in _window(context))
    folder = churn_home.folder(REPORTS_FOLDER)
    written: dict[dt.date, Path] = {}
    pages = []
    with warehouse.connect(context, read_only=True) as con:
        if not table_exists(con, TABLE):
            return dg.MaterializeResult(metadata={"pages": 0, "note": "no scores yet"})
        cards = _Cards()
        realized = [
            month.to_dict()
            | {"window": window_of(month.observation_date, cards.card(month.model_version))}
            for month in stored_scores_realized(con)
        ]
        effects = {e.observation_date: _effect_columns(e) for e in realized_effect(con)}
        realized = [m | effects.get(str(m["observation_date"]), {}) for m in realized]
        for day in retention.scored_dates(con, TABLE, start, end):
            page = retention.gather(
                con,
                TABLE,
                day,
                cards.for_day(con, day),
                realized,
                max_list_rows=config.max_list_rows,
            )
            pages.append(page)
    for page in pages:
        path = report_path(folder, page.observation_date)
        _write_atomically(path, retention_html.render(page, TITLE))
        written[page.observation_date] = path
        context.log.info(f"retention page for {page.observation_date}: {path}")
    if not pages:
        return dg.MaterializeResult(metadata={"pages": 0, "note": "no scored month in the run"})
    newest = pages[-1]
    return dg.MaterializeResult(metadata=_metadata(newest, written))


def _effect_columns(effect) -> dict:
    """A month's realized contact effect under the page's column names (contacted minus
    held-out churn rate, with its interval)."""
    return {
        "contacted_customers": effect.contacted,
        "contacted_churn_rate": effect.contacted_churn_rate,
        "holdout_customers": effect.held_out,
        "holdout_churn_rate": effect.held_out_churn_rate,
        "effect": effect.difference,
        "effect_low": effect.ci_low,
        "effect_high": effect.ci_high,
    }


def _metadata(newest, written: dict[dt.date, Path]) -> dict:
    from churn_assets.metadata import markdown_table

    path = written[newest.observation_date]
    return {
        "report": dg.MetadataValue.path(str(path)),
        "report_url": dg.MetadataValue.url(path.resolve().as_uri()),
        "pages": len(written),
        "newest_observation_date": newest.observation_date.isoformat(),
        "list_customers": newest.list_total,
        "high_customers": newest.high,
        "contact_plan": newest.has_plan,
        "pages_written": dg.MetadataValue.md(
            markdown_table(["observation_date", "page"], [[d, p.name] for d, p in written.items()])
        ),
    }


class _Cards:
    """Model cards by version, loaded once per run: each month's economics and threshold come
    from the model that scored it (``None`` when that model left the store)."""

    def __init__(self) -> None:
        self._cards: dict[str, dict | None] = {}

    def for_day(self, con, day: dt.date) -> dict | None:
        row = con.execute(
            f"SELECT model_version FROM {TABLE} WHERE observation_date = ? "
            "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            [day],
        ).fetchone()
        return None if row is None else self.card(row[0])

    def card(self, version: str) -> dict | None:
        if version not in self._cards:
            from churn import registry

            try:
                _, path = registry.locate(f"{registry.MODEL_NAME}:{version}")
                self._cards[version] = registry.read_card(path)  # the card only, no unpickling
            except registry.ModelNotFoundError:
                self._cards[version] = None
        return self._cards[version]
