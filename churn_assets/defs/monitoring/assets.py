"""[monitoring] Prediction logs, drift and realized model performance.

The logic lives in :mod:`churn.monitoring` (Dagster-free); these assets open the warehouse, call
it and turn the results into metadata and checks. ``drift_check`` is deliberately *not*
blocking: drift is a reason to look (a failed check posts an alert, :mod:`churn_assets.alerting`),
not a reason to stop refreshing the monitoring assets downstream; retraining follows newly
matured labels (``new_labels_retrain_sensor``), never drift alone.

The drift report is reachable from the UI three ways: the per-feature verdicts as an inline
table (``drift_by_feature``), the HTML's ``file://`` URL (``report_url``: opens when the browser
runs on the machine that wrote it; most browsers refuse to follow a ``file://`` link from an
``http://`` page, so paste it into the address bar), and its path with a copy button
(``report_html``).
"""

import base64
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from churn.modeling.card import json_safe
from churn.monitoring.drift import DEFAULT_DRIFT_SHARE
from churn.settings import load_settings
from churn_assets.alerting import alert_unless
from churn_assets.defs.monitoring.promotion import PROMOTION_CHECK_SPEC, challenger_evaluation
from churn_assets.metadata import table_value
from churn_assets.partitions import SINGLE_RUN
from churn_assets.resources import WAREHOUSE_POOL, ChurnHomeResource, WarehouseResource

REFRESH = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
"""Refresh when an upstream updates, but never on top of data a blocking check refused
(``eager()`` alone ignores failed blocking checks upstream)."""


def _kwargs() -> dict:
    return {
        "group_name": "monitoring",
        "owners": ["team:data-science"],
        "backfill_policy": SINGLE_RUN,
        "pool": WAREHOUSE_POOL,  # even readers: DuckDB refuses readers while a writer holds it
    }


@dg.asset(
    description="The scoring service's closed JSON Lines logs, ingested exactly once per file "
    "(file name + content hash recorded in prediction_log_files in the same transaction).",
    kinds={"duckdb"},
    **_kwargs(),
)
def prediction_logs(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, churn_home: ChurnHomeResource
):
    from churn.monitoring.logs import VERSION_COLUMNS, ingest_logs, volume_by_version

    with warehouse.connect(context) as con:
        summary = ingest_logs(con, churn_home.folder("prediction_logs"))
        per_version = volume_by_version(con)
        total = con.execute("SELECT count(*) FROM prediction_logs").fetchone()[0]
    for name, error in summary.failed.items():
        context.log.warning(f"{name}: not ingested ({error}); will retry next time")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "files_loaded": len(summary.files_loaded),
            "rows_loaded": summary.rows_loaded,
            "duplicate_files_skipped": len(summary.skipped_duplicates),
            "files_failed": dg.MetadataValue.json(summary.failed),
            "per_model_version": (
                table_value(VERSION_COLUMNS, per_version) if per_version else "no traffic yet"
            ),
        }
    )


class DriftConfig(dg.Config):
    max_drift_share: float = DEFAULT_DRIFT_SHARE
    """drift_check fails when more than this share of features drifted (Evidently's report
    header shows the same limit)."""
    traffic_days: int = 30
    """Logged requests of the last N days form the traffic sample, when there are enough."""
    min_rows: int = 200
    """Fewer rows than this (newest snapshot, previous month or traffic) are not compared."""
    decide_on: str = "both"
    """What drift_check decides on: ``both`` (fails only when the newest snapshot drifted against
    the previous month *and* against the training sample), ``training`` or ``previous_month``
    (see churn.monitoring.drift)."""


@dg.asset(
    deps=["customer_features", "champion_model"],
    description="Evidently drift report: the newest snapshot's features vs the champion's "
    "training reference sample and vs the previous month's snapshot (and recent logged "
    "traffic vs the reference). HTML + JSON under reports/drift/.",
    kinds={"evidently", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "drift_check",
            asset="drift_report",
            blocking=False,
            description="Fails when the share of drifted features exceeds max_drift_share both "
            "against the previous month and against the training reference (decide_on); "
            "features that grow with time are compared so that ageing is no alarm.",
        )
    ],
    automation_condition=REFRESH,
    **_kwargs(),
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
):
    import pandas as pd

    from churn import registry
    from churn.monitoring import drift

    started = time.perf_counter()
    try:  # new data is only compared with a champion trained on the same source
        champion = registry.champion_for_source(load_settings().source)
    except registry.SourceMismatchError as error:
        raise dg.Failure(description=str(error)) from error
    if champion is None:
        raise registry.ModelNotFoundError("No champion in the model store: run champion_model.")
    if config.decide_on not in drift.DECIDE_ON:
        raise dg.Failure(
            f"drift_report config decide_on={config.decide_on!r}: expected one of "
            f"{', '.join(drift.DECIDE_ON)}"
        )
    kinds = drift.kinds_from_card(champion.card)  # the model's own features, whatever the source
    growing = drift.time_growing_from_card(champion.card)
    reference = pd.read_parquet(champion.reference_path)
    with warehouse.connect(context, read_only=True) as con:
        newest, current = _snapshot_before(con, None)
        previous_date, previous = _snapshot_before(con, newest)
        traffic = _recent_traffic(con, config.traffic_days, list(kinds))
    stem = f"{datetime.now(UTC):%Y%m%dT%H%M%S}_{context.run_id[:8]}"
    folder = churn_home.folder("reports") / "drift"
    result, snapshot = drift.run_report(
        reference, current, kinds, drift_share=config.max_drift_share, time_growing=growing
    )
    html, payload = drift.save_report(snapshot, result, folder, stem)
    (folder / "latest.html").write_bytes(html.read_bytes())
    month = None
    if previous_date is not None and len(previous) >= config.min_rows:
        month, month_snapshot = drift.run_report(
            previous,
            current,
            kinds,
            drift_share=config.max_drift_share,
            time_growing=growing,
            elapsed_days=(newest - previous_date).days,
        )
        month_html, _ = drift.save_report(month_snapshot, month, folder, f"{stem}_previous_month")
    verdict = drift.decide(result, month, config.max_drift_share, config.decide_on)
    metadata = {
        "drift_summary": f"{result.summary()} against the training sample; drift_check limit "
        f"{config.max_drift_share:.0%}",
        "drift_rule": verdict.reason,
        "time_growing_features": dg.MetadataValue.json(growing),
        "drift_share": result.share,
        "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
        "compared_columns": len(result.columns),
        "not_compared_columns": dg.MetadataValue.json(result.not_compared),
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        "current_observation_date": str(newest),
        "champion": champion.tag,
        "report_html": dg.MetadataValue.path(str(html)),
        "report_url": dg.MetadataValue.url(html.resolve().as_uri()),
        "report_json": dg.MetadataValue.path(str(payload)),
        "drift_by_feature": _drift_table(result),
        "previous_observation_date": str(previous_date) if previous_date else "none",
        "previous_month_rows": len(previous),
    }
    if month is not None:
        metadata |= {
            "previous_month_summary": month.summary(),
            "previous_month_drift_share": month.share,
            "previous_month_drifted_columns": dg.MetadataValue.json(month.drifted_columns),
            "previous_month_report_html": dg.MetadataValue.path(str(month_html)),
            "previous_month_by_feature": _drift_table(month),
        }
    if len(traffic) >= config.min_rows:
        traffic_result, traffic_snapshot = drift.run_report(
            reference, traffic, kinds, drift_share=config.max_drift_share, time_growing=growing
        )
        traffic_html, _ = drift.save_report(
            traffic_snapshot, traffic_result, folder, f"{stem}_traffic"
        )
        metadata |= {
            "traffic_rows": len(traffic),
            "traffic_drift_share": traffic_result.share,
            "traffic_drifted_columns": dg.MetadataValue.json(traffic_result.drifted_columns),
            "traffic_report_html": dg.MetadataValue.path(str(traffic_html)),
        }
    else:
        metadata["traffic_rows"] = len(traffic)
    metadata["report_seconds"] = round(time.perf_counter() - started, 2)
    yield dg.MaterializeResult(metadata=metadata)
    too_small = len(current) < config.min_rows
    passed = too_small or verdict.passed
    alert_unless(
        passed,
        context,
        f"drift_check failed on the {newest} snapshot: {verdict.reason} (limit "
        f"{config.max_drift_share:.0%}) against {champion.tag}; drifted against training: "
        f"{', '.join(result.drifted_columns) or 'none'}",
    )
    yield dg.AssetCheckResult(
        check_name="drift_check",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"only {len(current)} rows in the newest snapshot: not compared"
            if too_small
            else f"{verdict.reason} (limit {config.max_drift_share:.0%}, decide_on "
            f"{config.decide_on}); drifted against training: "
            f"{', '.join(result.drifted_columns) or 'none'}"
        ),
        metadata={
            "drift_share": result.share,
            "previous_month_drift_share": month.share if month is not None else None,
            "max_drift_share": config.max_drift_share,
            "decide_on": config.decide_on,
            "current_observation_date": str(newest),
            "previous_observation_date": str(previous_date) if previous_date else None,
            "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
            "previous_month_drifted_columns": dg.MetadataValue.json(
                month.drifted_columns if month is not None else []
            ),
            "champion": champion.tag,
        },
    )


def _snapshot_before(con, before):
    """(observation date, its rows of customer_features): the newest date, or the newest one
    before ``before``; (None, empty frame) when there is none."""
    if before is None:
        day = con.execute("SELECT max(observation_date) FROM customer_features").fetchone()[0]
    else:
        day = con.execute(
            "SELECT max(observation_date) FROM customer_features WHERE observation_date < ?",
            [before],
        ).fetchone()[0]
    rows = con.execute("SELECT * FROM customer_features WHERE observation_date = ?", [day]).df()
    return day, rows


def _recent_traffic(con, days: int, names: list[str]):
    """The champion's features (``names``) of requests logged in the last ``days`` days, JSON
    expanded to columns."""
    import json

    import pandas as pd

    from churn.warehouse import table_exists

    if not table_exists(con, "prediction_logs"):
        return pd.DataFrame(columns=names)
    rows = con.execute(
        "SELECT CAST(features AS VARCHAR) FROM prediction_logs "
        f"WHERE features IS NOT NULL AND logged_at >= now() - INTERVAL {int(days)} DAY"
    ).fetchall()
    frame = pd.DataFrame([json.loads(row[0]) for row in rows])
    return frame[[c for c in names if c in frame.columns]] if len(frame) else frame


def _drift_table(result) -> dg.MetadataValue:
    """Every feature's verdict, most drifted first: the report's summary, inline in the UI."""
    counted = set(result.drifted_columns)
    ranked = sorted(result.columns, key=lambda c: (c.column not in counted, -c.score))
    columns = ["feature", "kind", "method", "score", "threshold", "drifted", "time_growing"]
    columns += ["aged_score", "counted"]
    return table_value(columns, [_verdict_cells(c, c.column in counted) for c in ranked])


def _verdict_cells(c, drifted: bool) -> list:
    """One feature's row: ``drifted`` is the counted verdict (what the share and check use)."""
    cells = [c.column, c.kind, c.method, c.score, c.threshold, drifted]
    cells += [c.time_growing, c.aged_score, c.counted]
    return cells


class PerformanceConfig(dg.Config):
    auc_tolerance: float = 0.05
    """model_performance_check warns when realized AUC is below the card's by more than this."""
    min_rows: int = 100
    promotion_min_gain: float = 0.0
    """challenger_promotion recommends promotion only when the paired-bootstrap interval of
    (challenger AUC - champion AUC) lies entirely above this."""
    bootstrap_samples: int = 1000


@dg.asset(
    deps=["prediction_logs", "churn_labels", "training_set", "champion_model", "customer_scores"],
    description="Realized ROC AUC, PR AUC and calibration per model version once labels "
    "mature: logged /score_events rows joined to churn_labels, and the champion re-scoring "
    "matured snapshots after its test window; compared with the model card. Also, per scored "
    "month with matured labels, how the list customer_scores wrote did: AUC, precision and "
    "recall at the scoring model's decision threshold, the share labelled, the model version, "
    "the contacted and held-out shares (table, plot, "
    "reports/model_performance/realized_by_month.png); and the realized effect of the "
    "contact: churn among the contacted vs the held-out control group per matured month, "
    "the difference with its 95% Newcombe (Wilson score) interval.",
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "model_performance_check",
            asset="model_performance",
            description="Warns when realized AUC falls below the expected (card) AUC by more "
            "than auc_tolerance.",
        ),
        PROMOTION_CHECK_SPEC,
    ],
    automation_condition=REFRESH,
    **_kwargs(),
)
def model_performance(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
):
    from churn import registry
    from churn.modeling.spec import encode_frame
    from churn.monitoring import performance as perf

    champion = registry.load_model()
    card_of = functools.cache(lambda version: _card_for(version, champion))
    results = []
    with warehouse.connect(context, read_only=True) as con:
        for version, (y, scores) in perf.logged_rows(con).items():
            card = _card_for(version, champion)
            results.append(perf.realized("logged", version, y, scores, card))
        unseen = perf.unseen_matured(con, perf.last_seen_date(champion.card))
        stored = perf.stored_scores_realized(con, lambda v: _threshold(card_of(v)))
        effects = perf.realized_effect(con)
        comparisons, promotion_check = challenger_evaluation(
            con,
            champion,
            min_rows=config.min_rows,
            min_gain=config.promotion_min_gain,
            n_boot=config.bootstrap_samples,
        )
    if len(unseen):
        scores = champion.model.predict_proba(encode_frame(unseen, champion.model.specs))
        results.append(
            perf.realized(
                "rescored", champion.version, unseen["churned"].to_numpy(), scores, champion.card
            )
        )
    judged = [r for r in results if r.rows >= config.min_rows and r.auc_drop is not None]
    degraded = [r for r in judged if r.auc_drop > config.auc_tolerance]
    columns = ["source", "model_version", "rows", "positives", "roc_auc", "expected_roc_auc"]
    columns += ["pr_auc", "expected_pr_auc", "brier", "mean_score", "observed_rate"]
    table = table_value(columns, [[r.to_dict()[c] for c in columns] for r in results])
    stored_metadata = _stored_scores_metadata(
        stored, card_of, churn_home.folder("reports") / "model_performance"
    )
    yield dg.MaterializeResult(
        metadata=stored_metadata
        | _effect_metadata(effects)
        | {
            "champion": champion.tag,
            "evaluations": table if results else "no matured scored rows yet",
            "results": dg.MetadataValue.json(json_safe([r.to_dict() for r in results])),
            "challenger_comparisons": dg.MetadataValue.json(
                json_safe([c.to_dict() for c in comparisons])
            ),
        }
    )
    alert_unless(
        not degraded,
        context,
        "realized quality dropped below model_performance_check: "
        + "; ".join(
            f"{r.source} {r.model_version}: AUC {r.roc_auc:.3f} vs expected "
            f"{r.expected_roc_auc:.3f} (tolerance {config.auc_tolerance:.3f})"
            for r in degraded
        ),
    )
    yield dg.AssetCheckResult(
        check_name="model_performance_check",
        passed=not degraded,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "no evaluation with enough matured rows yet"
            if not judged
            else "; ".join(
                f"{r.source} {r.model_version}: AUC {r.roc_auc:.3f} vs expected "
                f"{r.expected_roc_auc:.3f}"
                for r in (degraded or judged)
            )
        ),
        metadata={"evaluations": len(judged), "degraded": len(degraded)},
    )
    yield promotion_check


def _stored_scores_metadata(months, card_of: Callable[[str], dict | None], folder: Path) -> dict:
    """The realized quality of every scored month whose labels matured, as a table and a plot
    (also written to ``folder/realized_by_month.png``): AUC, precision and recall at the scoring
    model's decision threshold, the share of the month labelled, the model version, and the
    block of that model's data window the month fell in (only ``unseen`` is out of sample)."""
    from churn.modeling.plots import realized_by_month_plot
    from churn.monitoring.performance import window_of

    if not months:
        return {"customer_scores_realized": "no matured month of customer_scores yet"}
    rows = [
        month.to_dict()
        | {"window": window_of(month.observation_date, card_of(month.model_version))}
        for month in months
    ]
    columns = ["observation_date", "model_version", "window", "scored_rows", "rows"]
    columns += ["share_labelled", "positives", "roc_auc", "threshold", "precision_at_threshold"]
    columns += ["recall_at_threshold", "contacted", "top_decile_lift", "top_decile_capture"]
    columns += ["contact_share", "holdout_share", "ece"]
    table = table_value(columns, [[row[c] for c in columns] for row in rows])
    png = realized_by_month_plot(rows)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "realized_by_month.png").write_bytes(png)
    image = base64.b64encode(png).decode()
    return {
        "customer_scores_realized": table,
        "customer_scores_realized_results": dg.MetadataValue.json(json_safe(rows)),
        "plot_customer_scores_realized": dg.MetadataValue.md(
            f"**realized quality by month**\n\n![realized](data:image/png;base64,{image})"
        ),
        "realized_by_month_png": dg.MetadataValue.path(str(folder / "realized_by_month.png")),
    }


def _effect_metadata(effects) -> dict:
    """The realized effect of the contact per matured month (and pooled): churn among the
    contacted and the held out, the difference and its interval, as a table and as JSON."""
    if not effects:
        return {"realized_effect": "no matured month with contacted customers yet"}
    columns = ["observation_date", "contacted", "contacted_churn_rate", "held_out"]
    columns += ["held_out_churn_rate", "difference", "ci_low", "ci_high"]
    rows = [effect.to_dict() for effect in effects]
    return {
        "realized_effect": table_value(columns, [[row[c] for c in columns] for row in rows]),
        "realized_effect_results": dg.MetadataValue.json(json_safe(rows)),
        "realized_effect_method": f"difference = contacted churn rate - held-out churn rate "
        f"(negative: the contact kept customers); {effects[0].confidence:.0%} interval: "
        f"{effects[0].method}",
    }


def _threshold(card: dict | None) -> float | None:
    """A model's decision threshold from its card (``None``: the model left the store)."""
    from churn.modeling.card import decision_threshold

    return decision_threshold(card) if card is not None else None


def _card_for(version: str, champion) -> dict | None:
    """The model card of ``version`` (the champion's, or an older model's from the store)."""
    if version == champion.version:
        return champion.card
    from churn import registry

    try:
        return registry.load_model(f"{registry.MODEL_NAME}:{version}").card
    except registry.ModelNotFoundError:
        return None
