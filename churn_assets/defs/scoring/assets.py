"""[scoring] ``customer_scores``: every observed customer scored by the champion, per month.

The scorer is the service's own (:class:`churn.scoring.scorer.Scorer`), so a row here and the
``/score_batch`` answer for the same features are the same numbers. A partition is scored into
a temp table and swapped in atomically (``_replace_window``, as the feature assets do), so a
re-run replaces the month and a killed run leaves the previous one. The newest month is also
exported for the CRM (:mod:`churn.scoring.export`), and it is the one the automation keeps
fresh: ``eager`` targets only the latest time partition, when the champion or that month's
features change.
"""

import base64
import time

import dagster as dg

from churn_assets.defs.features.assets import PARTITIONS, _in_window, _replace_window, _window
from churn_assets.metadata import (
    column_schema,
    markdown_table,
    moved_count,
    thresholds_table,
    tier_table,
    tiers_per_month_table,
)
from churn_assets.partitions import SINGLE_RUN, eager_newest
from churn_assets.resources import WAREHOUSE_POOL, ChurnHomeResource, WarehouseResource

TABLE = "customer_scores"
EXPORT_FOLDER = "exports"

SCORING_REFRESH = eager_newest() & dg.AutomationCondition.all_deps_blocking_checks_passed()
"""The newest month (the calendar's newest observation date), re-scored when a new champion
lands or its features are rebuilt; never over a failed blocking check upstream."""


class ScoringConfig(dg.Config):
    chunk_rows: int = 2_000
    """Rows per model call: bounds the TreeSHAP gather's memory (~20 MB at 2,000 rows)."""
    preview_rows: int = 20


@dg.asset(
    deps=["customer_features", "champion_model"],
    description="Every customer observed on the date, scored by the champion with the "
    "service's own scorer: probability, label at the model's decision threshold, risk tier, "
    "top three reasons (with plain-language text), the customer's value and the expected "
    "value of a contact, contact and holdout (the high tier with a positive expected value, "
    "ranked by it, cut at capacity, a seeded control group held out; from the source "
    "config's economics), model version, and the move since last month (previous "
    "probability and tier, tier_change). One decision: risk_tier high exactly when "
    "churn_label = 1; capacity and the holdout never change it. The newest month is "
    "exported as Parquet and CSV under $CHURN_HOME/exports/, with the customers that got no "
    "score and why in customer_scores_unscored_YYYY-MM-DD.csv.",
    partitions_def=PARTITIONS,
    backfill_policy=SINGLE_RUN,
    pool=WAREHOUSE_POOL,
    group_name="scoring",
    kinds={"duckdb", "bentoml"},
    owners=["team:data-science"],
    automation_condition=SCORING_REFRESH,
)
def customer_scores(
    context: dg.AssetExecutionContext,
    config: ScoringConfig,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
):
    from churn import registry
    from churn.scoring.batch import COLUMN_DESCRIPTIONS, score_frame
    from churn.scoring.contact import source_economics
    from churn.scoring.export import export_then_replace
    from churn.scoring.movement import COLUMN_DESCRIPTIONS as MOVEMENT_COLUMNS
    from churn.scoring.movement import add_previous_month, tier_changes
    from churn.scoring.scorer import Scorer
    from churn.scoring.unscored import counts as unscored_counts
    from churn.settings import load_settings
    from churn.warehouse import table_exists

    champion = registry.load_model()
    scorer = Scorer(champion.model, champion.card, champion.version)
    settings = load_settings()
    economics = source_economics(settings)
    start, end = _window(context)
    with warehouse.connect(context) as con:
        features = con.execute(
            "SELECT * FROM customer_features WHERE observation_date >= ? "
            "AND observation_date < ? ORDER BY observation_date, customer_id",
            [start, end],
        ).df()
        started = time.perf_counter()
        try:
            scored = score_frame(
                scorer,
                features,
                economics,
                source=settings.source_config,
                chunk_rows=config.chunk_rows,
            )
        except ValueError as error:  # a value measure the features do not have, by its key
            raise dg.Failure(description=str(error)) from error
        seconds = time.perf_counter() - started
        context.log.info(
            f"scored {len(scored):,} rows with {champion.tag} in {seconds:.2f} s "
            f"(threshold {scorer.default_threshold:.4f})"
        )
        con.register("_scored_frame", scored)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _new_scores AS SELECT "
            "* REPLACE (CAST(observation_date AS DATE) AS observation_date), "
            "CAST(row_number() OVER (PARTITION BY observation_date "
            "ORDER BY churn_probability DESC, customer_id) AS INTEGER) AS risk_rank, "
            "CAST(now() AS TIMESTAMP) AS scored_at FROM _scored_frame"
        )
        con.unregister("_scored_frame")
        where = _in_window(start, end)
        add_previous_month(con, "_new_scores", TABLE, where, table_exists(con, TABLE))

        def replace() -> None:
            _drop_if_reshaped(con)
            _replace_window(con, TABLE, "_new_scores", start, end)

        # the export set is written before the table changes, renamed into place after it
        exported = export_then_replace(
            con, churn_home.folder(EXPORT_FOLDER), TABLE, "_new_scores", where, replace
        )
        tiers = con.execute(
            f"SELECT CAST(observation_date AS VARCHAR), risk_tier, count(*), "
            f"sum(churn_label), avg(churn_probability) FROM {TABLE} WHERE {where} "
            "GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        if exported is None:  # nothing observed in the window nor before: nothing to export
            return dg.MaterializeResult(metadata={"dagster/row_count": 0})
        newest, missing = exported.observation_date, exported.unscored
        contacts = con.execute(
            f"SELECT count_if(churn_label = 1 AND expected_value > 0), count_if(contact), "
            f"count_if(holdout) FROM {TABLE} WHERE observation_date = ?",
            [newest],
        ).fetchone()
        top = con.execute(
            "SELECT risk_rank, customer_id, round(churn_probability, 4), churn_label, risk_tier, "
            "tier_change, reason_1_text, round(expected_value, 2), contact, holdout "
            f"FROM {TABLE} WHERE observation_date = ? ORDER BY risk_rank LIMIT ?",
            [newest, config.preview_rows],
        ).fetchall()
        newest_probabilities = con.execute(
            f"SELECT churn_probability FROM {TABLE} WHERE observation_date = ?", [newest]
        ).fetchnumpy()["churn_probability"]
        moved = tier_changes(con, TABLE, newest)
        schema = column_schema(con, TABLE, COLUMN_DESCRIPTIONS | MOVEMENT_COLUMNS)
    context.log.info(f"exported {exported.rows:,} rows of {newest} to {exported.files}")
    from churn.modeling.plots import score_histogram
    from churn.scoring.contact import economics_rows

    histogram = score_histogram(newest_probabilities, scorer.default_threshold, scorer.tier_cuts)
    counts = {tier: 0 for tier in ("high", "medium", "low")}
    newest_counts = dict(counts)
    for day, tier, rows, _, _ in tiers:
        counts[tier] = counts.get(tier, 0) + rows
        if day == str(newest):
            newest_counts[tier] = rows
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(scored),
            "dagster/column_schema": schema,
            "dagster/table_name": f"warehouse.main.{TABLE}",
            "model_tag": champion.tag,
            "decision_threshold": round(scorer.default_threshold, 4),
            "thresholds": thresholds_table(scorer.default_threshold, scorer.tier_cuts),
            "contacts_recommended": int(scored["churn_label"].sum()),
            "candidates_newest_month": int(contacts[0]),
            "contacted_newest_month": int(contacts[1]),
            "held_out_newest_month": int(contacts[2]),
            "economics": dg.MetadataValue.md(
                markdown_table(["key", "value", "meaning"], economics_rows(economics))
            ),
            "tier_counts": tier_table(counts),
            "tier_counts_newest_month": tier_table(newest_counts),
            "tiers_per_month": tiers_per_month_table(tiers),
            "tier_changes_newest_month": dg.MetadataValue.md(
                markdown_table(["tier_change", "customers", "of them high now"], moved)
            ),
            "new_high_newest_month": next(n for change, n, _ in moved if change == "new_high"),
            "customers_moved_newest_month": moved_count(moved),
            "scoring_seconds": round(seconds, 3),
            "rows_per_second": round(len(scored) / seconds) if seconds else 0,
            "newest_observation_date": str(newest),
            "top_of_the_list": dg.MetadataValue.md(
                markdown_table(
                    [
                        *("rank", "customer_id", "p", "label", "tier", "change", "reason"),
                        *("EV", "contact", "holdout"),
                    ],
                    top,
                )
            ),
            "plot_probability_histogram": dg.MetadataValue.md(
                "**churn probability, newest month**\n\n![histogram](data:image/png;base64,"
                f"{base64.b64encode(histogram).decode()})"
            ),
            "export_rows": exported.rows,
            "unscored_customers": exported.unscored_rows,
            "unscored_by_reason": dg.MetadataValue.md(
                markdown_table(["reason", "customers"], list(unscored_counts(missing).items()))
            ),
            **{
                f"export_{name}": dg.MetadataValue.path(str(path))
                for name, path in exported.files.items()
            },
        }
    )


def _drop_if_reshaped(con) -> None:
    """A new scorer version may add columns; months scored before then are rescored anyway
    (the table is derived), so a table of another shape is dropped rather than migrated."""
    from churn.warehouse import table_exists

    if not table_exists(con, TABLE):
        return
    old = [row[0] for row in con.execute(f"DESCRIBE {TABLE}").fetchall()]
    new = [row[0] for row in con.execute("DESCRIBE _new_scores").fetchall()]
    if old != new:
        con.execute(f"DROP TABLE {TABLE}")
