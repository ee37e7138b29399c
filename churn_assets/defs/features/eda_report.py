"""[features] Exploratory report on the features and labels (``eda_report``).

Unpartitioned on purpose: stability over time and segment rates only mean something across all
observation months, so the report reads every partition of ``customer_features`` and
``churn_labels``. It only reads, hence a read-only connection; it still sits in the warehouse
pool so it never opens the file while a writer holds the lock.

Which columns are features, their kinds and descriptions come from the source's declared
features (:func:`~churn_assets.defs.features.assets.model_features`: the synthetic schema's, a
flat table's inferred ones, or an event source's generated ones), the same list
``customer_features`` was built from, so the report covers what the model will be trained on.
"""

from pathlib import Path

import dagster as dg

from churn_assets.defs.features.assets import KEY_DESCRIPTIONS, model_features
from churn_assets.partitions import SINGLE_RUN
from churn_assets.resources import WAREHOUSE_POOL, ChurnHomeResource, WarehouseResource

REPORT_FILE = "eda_report.html"
REPORT_TITLE = "Churn: exploratory data report"


def _write_atomically(path: Path, text: str) -> None:
    """Readers (a browser tab, the UI link) never see a half-written report."""
    partial = path.with_suffix(".html.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


@dg.asset(
    deps=["customer_features", "churn_labels"],
    description="Exploratory report over all snapshots: per-feature summary statistics, churn "
    "rate by segment and per month, distributions by label, and the strongest correlations "
    "with churn and between features. Markdown here, one self-contained HTML file in "
    "reports/eda/.",
    group_name="features",
    pool=WAREHOUSE_POOL,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb"},
    owners=["team:data-engineering"],
)
def eda_report(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
) -> dg.MaterializeResult:
    from churn.reports import eda_html
    from churn.reports.eda import analyze

    with warehouse.connect(context, read_only=True) as con:
        features = model_features(con)
        result = analyze(con, kinds={f.name: f.kind for f in features})
    descriptions = KEY_DESCRIPTIONS | {f.name: f.description for f in features}
    path = churn_home.folder("reports") / "eda" / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, eda_html.render_html(result, descriptions, REPORT_TITLE))
    context.log.info(f"EDA report: {path}")
    return dg.MaterializeResult(metadata=_metadata(result, path, descriptions))


def _md_table(table: tuple[list[str], list[list]]) -> dg.MetadataValue:
    from churn.reports.eda_html import markdown_table

    return dg.MetadataValue.md(markdown_table(*table))


def _metadata(result, path: Path, descriptions: dict[str, str]) -> dict:
    from churn.reports import eda_html

    excluded = [m.observation_date.isoformat() for m in result.excluded_months]
    return {
        "report": dg.MetadataValue.path(str(path)),
        "overview": dg.MetadataValue.md(eda_html.overview(result)),
        "rows": result.rows,
        "labeled_rows": result.labeled_rows,
        "churn_rate": result.churn_rate if result.churn_rate is not None else "n/a",
        "feature_count": len(result.features),
        "months_excluded_unmatured": dg.MetadataValue.json(excluded),
        "feature_summary": _md_table(eda_html.feature_table(result, descriptions)),
        "churn_by_segment": _md_table(eda_html.segment_table(result)),
        "churn_by_month": _md_table(eda_html.month_table(result)),
        "label_correlations": _md_table(eda_html.label_correlation_table(result)),
        "feature_pairs": _md_table(eda_html.pair_table(result)),
    } | {
        f"plot_{name}": dg.MetadataValue.md(eda_html.markdown_image(png, name.replace("_", " ")))
        for name, png in result.images.items()
    }
