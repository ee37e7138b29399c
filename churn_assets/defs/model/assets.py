"""[model] Candidates on a time split, their evaluation, the quality gate and the champion.

``model_evaluation`` carries the gate as a blocking check: when it fails, ``champion_model`` does
not run, so the model store — and the Bento built from it — keep the previous champion, and an
alert goes to ``CHURN_ALERT_WEBHOOK``. Every candidate and the gate's decision land in the
``model_registry`` table either way.

A candidate trained on the champion's own window and rows (the card's ``data_window`` and
``lineage.data_fingerprint``) has nothing new to learn: the gate says so (rule ``nothing_new``)
with WARN severity, which Dagster does not treat as blocking, so the run and ``make pipeline``
succeed; ``champion_model`` then saves nothing (no new model version) and records that the
champion stays, and ``churn_bento`` keeps the Bento it already built for that champion, so the
demo's service does not switch. Scoring still runs below it: a new month with no newly matured
labels must still be scored by the same champion. Why not an ERROR: a failed blocking ERROR
check raises in its step (``DagsterAssetCheckFailedError``) and fails the run, which is right for
a worse model and wrong for unchanged data.

Figures go to the UI as tables where they are tabular (metrics, confusion matrix, calibration
bins, feature importance): Dagster renders tables inline. The plots are PNG files under
``reports/model_evaluation/<run id>/`` and also sit in the metadata as markdown images, which the
UI shows one click away ("[Show Markdown]"): it has no inline image type.
"""

import base64
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np

from churn.modeling.candidates import LightGBMConfig, LogisticConfig
from churn.modeling.card import json_safe, time_growing_fields
from churn.settings import load_settings, resolve_auc_floor
from churn.sources.registry import resolve
from churn.warehouse import transaction
from churn_assets.alerting import alert_unless
from churn_assets.metadata import markdown_table, table_value
from churn_assets.partitions import SINGLE_RUN
from churn_assets.resources import WAREHOUSE_POOL, ChurnHomeResource, WarehouseResource

REFERENCE_ROWS = 5_000
MODEL_KINDS = {"lightgbm": "lightgbm", "logistic_regression": "scikit-learn"}


_LOGISTIC = LogisticConfig()


class LogisticParams(dg.Config):
    C: float = _LOGISTIC.C
    max_iter: int = _LOGISTIC.max_iter


_LIGHTGBM = LightGBMConfig()


class LightGBMParams(dg.Config):
    """The launchpad's view of :class:`~churn.modeling.candidates.LightGBMConfig`: its defaults,
    and why they are what they are, live there."""

    num_leaves: int = _LIGHTGBM.num_leaves
    learning_rate: float = _LIGHTGBM.learning_rate
    n_estimators: int = _LIGHTGBM.n_estimators
    min_child_samples: int = _LIGHTGBM.min_child_samples
    colsample_bytree: float = _LIGHTGBM.colsample_bytree
    reg_lambda: float = _LIGHTGBM.reg_lambda
    early_stopping_rounds: int = _LIGHTGBM.early_stopping_rounds
    num_threads: int = _LIGHTGBM.num_threads


class CandidateConfig(dg.Config):
    validation_months: int = 1
    test_months: int = 2
    select: bool = True
    """Time-ordered CV model selection (:mod:`churn.modeling.selection`) over the train and
    validation months: settings, model family and training window. False: the configured
    settings, winner on validation AUC."""
    logistic: LogisticParams = LogisticParams()
    lightgbm: LightGBMParams = LightGBMParams()


class EvaluationConfig(dg.Config):
    auc_floor: float | None = None
    """The gate refuses a winner whose test AUC is below this. Unset: ``CHURN_AUC_FLOOR``, else
    the source config's ``model: {auc_floor: ...}``, else 0.65
    (:func:`churn.settings.resolve_auc_floor`)."""
    champion_tolerance: float = 0.0
    """Against a champion, the winner must not be significantly worse (paired bootstrap on the
    same test rows) and its AUC point estimate must not be below the champion's by more than
    this. 0: not below at all. A positive value lets a slightly lower model through, and the
    gate's reason then says so (rule ``within_tolerance``)."""
    bootstrap_samples: int = 1000
    """Paired bootstrap resamples for the champion comparison."""
    confidence: float = 0.95
    """Confidence level of the interval of (winner AUC - champion AUC)."""
    intervention_cost: float | None = None
    retained_value: float | None = None
    success_rate: float | None = None
    """Run-time overrides of the source config's economics (its ``economics:`` block; the
    defaults 10, 240, 0.3 without one), which choose the decision threshold."""
    ece_margin: float = 0.02
    """The gate refuses a winner whose test ECE (10 equal-count bins) is above the champion's
    on the same test rows by more than this (rule ``calibration_worse``)."""
    backtest_months: int = 4
    """Origin months of the rolling backtest of the winner's recipe (0 turns it off)."""


def _economics(economics, config: EvaluationConfig):
    """The source's economics with the run config's overrides (the keys it sets)."""
    from dataclasses import replace

    overrides = {
        key: float(value)
        for key in ("intervention_cost", "retained_value", "success_rate")
        if (value := getattr(config, key)) is not None
    }
    return replace(economics, **overrides)


def _model_spec_kwargs() -> dict:
    return {
        "group_name": "model",
        "owners": ["team:data-science"],
        "backfill_policy": SINGLE_RUN,
    }


@dg.asset(
    ins={"training_set": dg.AssetIn(dagster_type=dg.Nothing)},
    description="Logistic regression and LightGBM trained on the earliest matured months; "
    "validation and test months held out by date (a flat customer table without a time column: "
    "a stratified row split, optionally k-fold CV; metadata split_kind says which).",
    kinds={"lightgbm", "scikit-learn"},
    pool=WAREHOUSE_POOL,
    **_model_spec_kwargs(),
)
def candidate_models(
    context: dg.AssetExecutionContext, config: CandidateConfig, warehouse: WarehouseResource
):
    from churn.modeling.training import (
        StratifiedOptions,
        cross_validate,
        prepare,
        train_candidates,
    )

    with warehouse.connect(context, read_only=True) as con:
        frame = con.sql("SELECT * FROM training_set ORDER BY observation_date, customer_id").df()
        source = resolve(con)
    row_split = source.stratified()
    stratified = StratifiedOptions(*row_split) if row_split is not None else None
    data = prepare(
        frame,
        source.feature_names,
        validation_months=config.validation_months,
        test_months=config.test_months,
        horizon_days=source.label_days,
        features=list(source.features),
        stratified=stratified,
    )
    split_kind = data.window()["kind"]
    context.log.info(f"{split_kind} split: {data.window()}")
    logistic = LogisticConfig(C=config.logistic.C, max_iter=config.logistic.max_iter)
    lightgbm = LightGBMConfig(**config.lightgbm.model_dump())
    context.log.info(
        f"training 2 candidates on {data.train.rows:,} rows, {len(data.specs)} features"
    )
    selection = _select(context, warehouse, config, data, logistic, lightgbm, source, stratified)
    models = train_candidates(data, logistic, lightgbm, selection)
    for name, model in models.items():
        context.log.info(f"trained {name} in {model.fit_seconds:.2f} s")
    calibration = _calibrate(context, models, data)
    rows = [(name, round(model.fit_seconds, 2)) for name, model in models.items()]
    metadata = {
        "split": dg.MetadataValue.json(data.window()),
        "split_kind": split_kind,
        "training_seconds": table_value(["model", "seconds"], rows),
        "features": len(data.specs),
        "feature_names": dg.MetadataValue.json([spec.name for spec in data.specs]),
        "training_rows": data.train.rows,
        "calibration": dg.MetadataValue.json(json_safe(calibration)),
    }
    metadata |= _selection_metadata(selection)
    if stratified is not None and stratified.cv_folds:
        context.log.info(f"{stratified.cv_folds}-fold cross-validation ...")
        cv = cross_validate(data, logistic, lightgbm, stratified.cv_folds, seed=stratified.seed)
        metadata["cv_roc_auc"] = dg.MetadataValue.md(
            markdown_table(
                ["model", "mean", "std", "folds"],
                [(n, float(np.mean(a)), float(np.std(a)), len(a)) for n, a in cv.items()],
            )
        )
        metadata["cv_folds"] = stratified.cv_folds
    return dg.Output(
        {
            "data": data,
            "models": models,
            "card_fields": source.card_fields() | time_growing_fields(source.features),
            "label_days": source.label_days,
            "calibration": calibration,
            "selection": json_safe(selection.to_dict()) if selection is not None else None,
        },
        metadata=metadata,
    )


def _select(context, warehouse, config, data, logistic, lightgbm, source, stratified):
    """Model selection by time-ordered CV, and the BTYD-features experiment for event logs;
    None when turned off or when no fold can be scored."""
    from churn.modeling.training import btyd_experiment, select_candidates

    if not config.select:
        return None
    selection = select_candidates(
        data,
        logistic,
        lightgbm,
        horizon_days=source.label_days,
        folds=stratified.cv_folds if stratified is not None else 0,
        seed=stratified.seed if stratified is not None else 42,
        log=context.log.info,
    )
    if selection is None:
        context.log.warning("model selection: no fold holds both outcomes; configured settings")
        return None
    if source.kind != "flat":
        try:
            with warehouse.connect(context, read_only=True) as con:
                selection.extra["btyd_features"] = btyd_experiment(
                    con, data, selection, horizon_days=source.label_days
                )
        except (ValueError, RuntimeError) as error:  # no events table, a fit that fails
            selection.extra["btyd_features"] = {"skipped": str(error)}
        context.log.info(f"BTYD features: {selection.extra['btyd_features']}")
    return selection


def _selection_metadata(selection) -> dict:
    """What model selection tried (candidate, CV AUC mean and sd, chosen) as a table."""
    if selection is None:
        return {"model_selection": "off"}
    return {
        "model_selection": table_value(
            ["candidate", "cv_auc_mean", "cv_auc_sd", "folds", "chosen"], selection.table()
        ),
        "selection_winner": selection.best[selection.chosen].name,
        "selection_folds": dg.MetadataValue.json(json_safe(selection.to_dict()["folds"])),
        **(
            {"btyd_features": dg.MetadataValue.json(json_safe(selection.extra["btyd_features"]))}
            if "btyd_features" in selection.extra
            else {}
        ),
    }


def _calibrate(context, models, data) -> dict:
    """Isotonic calibration of each candidate on the validation rows, kept where it is no worse
    there (:func:`churn.modeling.calibration.calibrate_models`)."""
    from churn.modeling.calibration import calibrate_models

    reports = calibrate_models(models, data.validation.X, data.validation.y)
    for name, report in reports.items():
        context.log.info(f"{name}: isotonic calibration {'kept' if report['kept'] else 'not kept'}")
    return reports


def _image(png: bytes, title: str) -> str:
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _save_plots(evaluation, data, models, folder: Path) -> dict[str, bytes]:
    from churn.modeling import plots

    winner = evaluation.winning
    test_scores = {name: r.test_scores for name, r in evaluation.results.items()}
    importance = models[evaluation.winner].global_importance(data.test.X)
    ranked = sorted(importance.items(), key=lambda item: -abs(item[1]))
    images = {
        "roc": plots.roc_curve(data.test.y, test_scores),
        "precision_recall": plots.pr_curve(data.test.y, test_scores),
        "calibration": plots.calibration_plot(data.test.y, test_scores),
        "feature_importance": plots.feature_importance(
            [name for name, _ in ranked], [value for _, value in ranked]
        ),
        "confusion_matrix": plots.confusion_matrix(
            data.test.y, winner.test_scores, evaluation.thresholds["decision"]
        ),
    }
    if evaluation.backtest:
        images["backtest"] = plots.backtest_plot(evaluation.backtest)
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in images.items():
        (folder / f"{name}.png").write_bytes(png)
    return images


def _metrics_table(evaluation) -> dg.MetadataValue:
    names = list(evaluation.results)
    keys = list(evaluation.winning.test)
    rows = [
        (key, *[evaluation.results[name].test[key] for name in names])
        for key in keys
        if isinstance(evaluation.winning.test[key], float | int)
    ]
    rows.insert(
        0, ("validation roc_auc", *[evaluation.results[n].validation["roc_auc"] for n in names])
    )
    return table_value(["metric (test unless noted)", *names], rows)


def _figure_tables(evaluation, data, models) -> dict[str, dg.MetadataValue]:
    """What the plots show, as tables the UI renders inline: the winner's confusion matrix at
    its decision threshold, its calibration by quantile bin, and its top features."""
    from churn.modeling.metrics import calibration_table

    winner = evaluation.winning
    y = data.test.y == 1
    predicted = winner.test_scores >= evaluation.thresholds["decision"]
    confusion = [
        ("actually stays", int((~y & ~predicted).sum()), int((~y & predicted).sum())),
        ("actually churns", int((y & ~predicted).sum()), int((y & predicted).sum())),
    ]
    bins = calibration_table(data.test.y, winner.test_scores, bins=10, strategy="quantile")
    importance = models[evaluation.winner].global_importance(data.test.X)
    ranked = sorted(importance.items(), key=lambda item: -abs(item[1]))[:15]
    return {
        "confusion_matrix": table_value(["", "predicted stays", "predicted churns"], confusion),
        "calibration": table_value(
            ["mean_predicted", "observed_rate", "rows"],
            [(b["mean_predicted"], b["observed_rate"], b["rows"]) for b in bins],
        ),
        "feature_importance": table_value(["feature", "mean_abs_contribution"], ranked),
    }


def _registry_rows(context, evaluation, decision, data, models) -> list[tuple]:
    from churn.registry import history

    trained_at = datetime.now(UTC)
    rows = []
    for name, result in evaluation.results.items():
        is_winner = name == evaluation.winner
        rows.append(
            (
                context.run_id,
                trained_at,
                name,
                is_winner,
                result.validation["roc_auc"],
                result.test["roc_auc"],
                json.dumps(result.test),
                evaluation.oracle_auc,
                # "promoted" only once champion_model saved it (history.record_saved): a run
                # that fails in between leaves no promoted row without a model tag
                (history.PASSED_GATE if decision.promoted else "rejected")
                if is_winner
                else "not_selected",
                decision.reason
                if is_winner
                else f"{evaluation.winner} won on {_won_on(evaluation)}",
                json.dumps(data.window()),
                data.fingerprint,
                round(models[name].fit_seconds, 3),
            )
        )
    return rows


def _won_on(evaluation) -> str:
    return "time-ordered CV AUC" if evaluation.selection else "validation AUC"


@dg.asset(
    description="Holdout metrics, plots, oracle comparison, thresholds and the quality gate "
    "(blocking) for the candidates; writes every candidate to model_registry.",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "quality_gate",
            asset="model_evaluation",
            blocking=True,
            description="The winner is promoted only above the AUC floor, below the leakage "
            "ceiling, and not worse than the champion on the same test rows: neither "
            "significantly (paired bootstrap interval of the AUC difference below 0) nor on the "
            "point estimate (beyond champion_tolerance, default 0), nor calibrated worse "
            "(test ECE above the champion's by more than ece_margin, default 0.02).",
        )
    ],
    **_model_spec_kwargs(),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    candidate_models: dict,
    warehouse: WarehouseResource,
    churn_home: ChurnHomeResource,
):
    import pandas as pd

    from churn import registry
    from churn.modeling.gate import (
        champion_scores_on,
        compare_with_champion,
        decide,
        same_training_data,
    )
    from churn.modeling.training import evaluate_candidates
    from churn.registry import history
    from churn.scoring.contact import source_economics

    data, models = candidate_models["data"], candidate_models["models"]
    truth_file = churn_home.root / "truth" / "churn_truth.parquet"
    truth = pd.read_parquet(truth_file) if truth_file.exists() else None
    evaluation = evaluate_candidates(
        data,
        models,
        truth,
        _economics(source_economics(load_settings()), config),
        winner=(candidate_models.get("selection") or {}).get("winner_family"),
    )
    evaluation.selection = candidate_models.get("selection")
    # Time to churn and customer value: fitted here, set on the winner (saved with it).
    survival_card = _survival(
        context, data, models, evaluation.winner, candidate_models, evaluation.economics
    )
    try:  # a champion of another source is never the yardstick (one home, one world)
        champion = registry.champion_for_source(load_settings().source)
    except registry.SourceMismatchError as error:
        raise dg.Failure(description=str(error)) from error
    champion_tag = champion.tag if champion is not None else None
    versus = None
    if champion is not None:
        champion_scores = champion_scores_on(data.test, champion.model, data.specs)
        if champion_scores is not None:
            versus = compare_with_champion(
                data.test.y,
                champion_scores,
                evaluation.winning.test_scores,
                champion_tag,
                n_boot=config.bootstrap_samples,
                confidence=config.confidence,
            )
    calibration = _test_calibration(evaluation, data, models, candidate_models)
    champion_ece = None
    if versus is not None:
        from churn.modeling.calibration import ece_equal_count

        champion_ece = ece_equal_count(data.test.y, champion_scores)
        calibration["champion_test_ece"] = champion_ece
    same_data = champion is not None and same_training_data(
        data.window(), data.fingerprint, champion.card
    )
    auc_floor, floor_source = resolve_auc_floor(load_settings(), config.auc_floor)
    decision = decide(
        evaluation.winning.test["roc_auc"],
        auc_floor=auc_floor,
        floor_source=floor_source,
        training_rows=data.train.rows,
        tolerance=config.champion_tolerance,
        champion_tag=champion_tag,
        versus=versus,
        same_data_window=data.window() if same_data else None,
        test_ece=calibration["test_ece"],
        champion_ece=champion_ece,
        ece_margin=config.ece_margin,
    )
    (context.log.error if decision.blocks else context.log.info)(f"quality gate: {decision.reason}")
    alert_unless(
        not decision.blocks,
        context,
        f"the quality gate refused {evaluation.winner}: {decision.reason}",
    )
    if data.window()["kind"] == "time" and config.backtest_months > 0:
        evaluation.backtest = _backtest(context, warehouse, evaluation, models, config)
    folder = churn_home.folder("reports") / "model_evaluation" / context.run_id
    images = _save_plots(evaluation, data, models, folder)
    with warehouse.connect(context) as con, transaction(con):
        history.record_candidates(con, _registry_rows(context, evaluation, decision, data, models))
    metadata = {
        "split_kind": data.window()["kind"],
        "winner": evaluation.winner,
        "test_roc_auc": evaluation.winning.test["roc_auc"],
        "oracle_auc": evaluation.oracle_auc if evaluation.oracle_auc is not None else "n/a",
        "auc_to_oracle": evaluation.auc_to_oracle if evaluation.auc_to_oracle else "n/a",
        "metrics": _metrics_table(evaluation),
        "thresholds": dg.MetadataValue.json(json_safe(evaluation.thresholds)),
        "economics": dg.MetadataValue.json(asdict(evaluation.economics)),
        "decision_threshold": evaluation.thresholds["decision"],
        "at_decision_threshold": _decision_table(evaluation),
        "risk_tier_cuts": dg.MetadataValue.json(json_safe(evaluation.risk_tier_cuts)),
        "gate": decision.reason,
        "gate_rule": decision.rule,
        "gate_comparison": _gate_table(decision),
        "reports": dg.MetadataValue.path(str(folder)),
        "test_ece": calibration["test_ece"],
        "calibration_before_after": _calibration_table(calibration),
    }
    if "recency_auc" in evaluation.baselines:
        recency_auc = evaluation.baselines["recency_auc"]
        metadata["baseline_recency_auc"] = recency_auc
        metadata["auc_over_recency"] = evaluation.winning.test["roc_auc"] - recency_auc
    metadata |= _classic_baselines(context, warehouse, data, evaluation, config, folder)
    metadata |= _figure_tables(evaluation, data, models)
    metadata |= _survival_metadata(survival_card)
    metadata |= {
        f"plot_{name}": dg.MetadataValue.md(_image(png, name)) for name, png in images.items()
    }
    if evaluation.backtest:
        metadata["backtest"] = _backtest_table(evaluation.backtest)
    yield dg.Output(
        {
            "data": data,
            "models": models,
            "evaluation": evaluation,
            "decision": decision,
            "gate_settings": {
                "auc_floor": auc_floor,
                "champion_tolerance": config.champion_tolerance,
                "bootstrap_samples": config.bootstrap_samples,
                "confidence": config.confidence,
                "ece_margin": config.ece_margin,
            },
            "card_fields": candidate_models.get("card_fields", {}) | {"survival": survival_card},
        },
        metadata=metadata,
    )
    yield dg.AssetCheckResult(
        check_name="quality_gate",
        passed=decision.promoted,
        # WARN for "nothing new": not blocking, so the run succeeds (see the module docstring)
        severity=dg.AssetCheckSeverity.ERROR if decision.blocks else dg.AssetCheckSeverity.WARN,
        description=decision.reason,
        metadata={k: v for k, v in asdict(decision).items() if v is not None},
    )


def _survival(context, data, models, winner: str, candidate_models: dict, economics) -> dict:
    """Fit the survival model (:mod:`churn.modeling.survival`) on a time split and set it on
    the winner; its card section either way (a flat source: why there is none)."""
    from churn.modeling.survival import FLAT_REASON, fit_survival, value_rule

    if data.window()["kind"] != "time":
        context.log.info(f"survival: {FLAT_REASON}")
        return {"skipped": FLAT_REASON}
    settings = load_settings()
    label_days = candidate_models.get("label_days", settings.horizon_days)
    try:
        value = value_rule(economics, settings.source_config, data.specs)
    except ValueError as error:  # customer_scores fails on it by its key; no clv until fixed
        context.log.warning(f"survival: no clv, {error}")
        value = None
    survival = fit_survival(data, models["lightgbm"], label_days, value)
    models[winner].survival = survival
    context.log.info(f"survival: {survival.metrics}")
    return survival.card()


def _survival_metadata(card: dict) -> dict[str, dg.MetadataValue | float | str]:
    """The survival metrics beside the Cox baseline, as model_evaluation shows them."""
    if "skipped" in card:
        return {"survival": card["skipped"]}
    metrics = card["metrics"]
    if "survival_c_index" not in metrics:
        return {"survival": metrics.get("not_evaluated", "not evaluated")}
    cox = metrics["cox_baseline"]
    rows = [
        ("hazard model", metrics["survival_c_index"], metrics["integrated_brier"]),
        ("lifelines CoxPH (baseline)", cox.get("c_index"), cox.get("integrated_brier")),
    ]
    return {
        "survival_c_index": metrics["survival_c_index"],
        "survival_integrated_brier": metrics["integrated_brier"],
        "survival_vs_cox": table_value(["model", "c_index", "integrated_brier"], rows),
        "survival_baseline_note": cox.get("error", "fitted"),
        "survival_horizons": dg.MetadataValue.json(
            {"kept": card["horizons"], "left_out": card["left_out"]}
        ),
    }


def _classic_baselines(context, warehouse, data, evaluation, config, folder: Path) -> dict:
    """BG/NBD, window-count and raw-column logistic regressions and recency on the winner's
    test rows (:mod:`churn.modeling.baselines`): a table, a ROC plot next to it, and the
    winner's margin over the best with its paired-bootstrap interval; the card keeps the
    numbers (``metrics.baselines``)."""
    from churn.modeling import plots
    from churn.modeling.baselines import classic_baselines, compare_baselines

    with warehouse.connect(context, read_only=True) as con:
        source = resolve(con)
        scores, fitted = classic_baselines(
            data, con, horizon_days=source.label_days, flat=source.kind == "flat"
        )
    if not scores:
        return {}
    comparison = compare_baselines(
        data.test.y,
        evaluation.winner,
        evaluation.winning.test_scores,
        scores,
        n_boot=config.bootstrap_samples,
        confidence=config.confidence,
    )
    evaluation.baselines |= comparison.as_floats()
    png = plots.roc_curve(data.test.y, {evaluation.winner: evaluation.winning.test_scores} | scores)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "baselines.png").write_bytes(png)
    metadata = {f"baseline_{name}_auc": comparison.auc[name] for name in scores}
    return metadata | {
        "baselines": table_value(
            ["model", "test_roc_auc", "test_pr_auc", "margin_vs_champion"], comparison.table()
        ),
        "baseline_rows": comparison.rows,
        "best_baseline": comparison.best_baseline or "none",
        "margin_over_best_baseline": dg.MetadataValue.json(
            json_safe(
                {
                    "margin": comparison.margin,
                    "ci_low": comparison.ci_low,
                    "ci_high": comparison.ci_high,
                    "confidence": comparison.confidence,
                }
            )
        ),
        "baseline_fits": dg.MetadataValue.json(json_safe(fitted)),
        "plot_baselines": dg.MetadataValue.md(_image(png, "baselines (ROC, same test rows)")),
    }


def _test_calibration(evaluation, data, models, candidate_models) -> dict:
    """The winner's calibration on the test months, before (raw model) and after (what it
    serves), next to the validation report that decided whether to keep it; the card keeps it
    (``metrics.calibration``)."""
    from churn.modeling.calibration import before_after, ece_equal_count

    model = models[evaluation.winner]
    test = before_after(data.test.y, model.raw_proba(data.test.X), evaluation.winning.test_scores)
    evaluation.calibration = {
        "kept": model.calibration is not None,
        "test_ece": ece_equal_count(data.test.y, evaluation.winning.test_scores),
        "test": test,
        "validation": candidate_models.get("calibration", {}).get(evaluation.winner),
    }
    return evaluation.calibration


def _calibration_table(calibration: dict) -> dg.MetadataValue:
    rows = [
        (label, values["ece"], values["brier"], values["log_loss"])
        for label, values in calibration["test"].items()
    ]
    return table_value(["test probabilities", "ece", "brier", "log_loss"], rows)


def _gate_table(decision) -> dg.MetadataValue:
    """Winner and champion AUC on the same test rows, the difference and its interval."""
    if decision.champion_auc is None:
        return table_value(["winner_auc", "champion"], [(decision.test_auc, "none comparable")])
    return table_value(
        ["winner_auc", "champion", "champion_auc", "delta", "ci_low", "ci_high", "confidence"],
        [
            (
                decision.test_auc,
                decision.champion_tag,
                decision.champion_auc,
                decision.auc_delta,
                decision.ci_low,
                decision.ci_high,
                decision.confidence,
            )
        ],
    )


def _decision_table(evaluation) -> dg.MetadataValue:
    """Precision and recall where the model draws the line, on validation (where the line was
    chosen) and on test (untouched by the choice)."""
    keys = ["threshold", "contacted", "contacted_share", "precision", "recall"]
    keys.append("expected_value_per_customer")
    blocks = evaluation.decision_metrics
    return table_value(
        ["block", *keys], [(block, *[blocks[block].get(key) for key in keys]) for block in blocks]
    )


def _backtest(context, warehouse, evaluation, models, config) -> list[dict]:
    """Refit the winner's recipe at each of the last matured months on what was known then."""
    from churn.modeling.backtest import backtest, recipe_of

    with warehouse.connect(context, read_only=True) as con:
        frame = con.sql("SELECT * FROM training_set ORDER BY observation_date, customer_id").df()
        source = resolve(con)
    recipe = recipe_of(models[evaluation.winner])
    context.log.info(f"backtest of {recipe.describe()} over {config.backtest_months} months")
    months = backtest(
        frame,
        list(source.features),
        recipe,
        horizon_days=source.label_days,
        months=config.backtest_months,
    )
    return [month.to_dict() for month in months]


def _backtest_table(months: list[dict]) -> dg.MetadataValue:
    keys = ["observation_date", "train_months", "train_rows", "rows", "positives"]
    keys += ["roc_auc", "top_decile_lift", "top_decile_capture"]
    return table_value(keys, [[month[key] for key in keys] for month in months])


class ChampionConfig(dg.Config):
    promotion: str = ""
    """``immediate`` (the gated winner becomes the champion) or ``challenger`` (it is saved as the
    challenger, served in shadow/canary, and promoted only on realized results). Empty:
    ``CHURN_PROMOTION``, default ``immediate``. See :mod:`churn.registry.policy`."""


@dg.asset(
    description="The gated winner saved to the BentoML model store as a new version of "
    "`churn_model`, with its model card and a reference sample of training features for drift. "
    "When the winner had nothing new to learn (the champion's own window and rows) nothing is "
    "saved and the champion stays.",
    kinds={"bentoml"},
    pool=WAREHOUSE_POOL,
    **_model_spec_kwargs(),
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    model_evaluation: dict,
    warehouse: WarehouseResource,
):
    from churn.modeling.card import build_card
    from churn.modeling.gate import NOTHING_NEW
    from churn.registry import history, policy
    from churn.scoring.contact import economics_rows

    data, evaluation = model_evaluation["data"], model_evaluation["evaluation"]
    decision = model_evaluation["decision"]
    if decision.rule == NOTHING_NEW:
        context.log.info(f"not saved, {decision.reason}")
        return dg.MaterializeResult(
            metadata={
                "model_tag": decision.champion_tag,  # what churn_bento packages, as before
                "unchanged": True,
                "promotion": decision.reason,
            }
        )
    model = model_evaluation["models"][evaluation.winner]
    settings = load_settings()
    card = build_card(
        data,
        evaluation,
        decision,
        run_id=context.run_id,
        source=settings.source,
        horizon_days=settings.horizon_days,
        gate_settings=model_evaluation["gate_settings"],
        shape_fields=model_evaluation.get("card_fields"),
    )
    reference = data.train.frame[list(card["feature_order"])].sample(
        n=min(REFERENCE_ROWS, data.train.rows), random_state=0
    )
    saved = policy.save_winner(
        model,
        card,
        reference,
        labels={"kind": MODEL_KINDS[evaluation.winner]},
        policy=config.promotion.strip().lower() or settings.promotion,
    )
    context.log.info(f"saved {saved.tag} as {saved.role}: {saved.reason}")
    with warehouse.connect(context) as con, transaction(con):  # tag, role and retirements
        history.record_saved(con, context.run_id, saved)
    return dg.MaterializeResult(
        metadata={
            "model_tag": saved.champion,  # what churn_bento packages as the champion
            "saved_tag": saved.tag,
            "role": saved.role,
            "challenger_tag": saved.challenger or "none",
            "promotion": saved.reason,
            "model_kind": evaluation.winner,
            "test_roc_auc": evaluation.winning.test["roc_auc"],
            "model_card": dg.MetadataValue.json(card),
            "economics": dg.MetadataValue.md(
                markdown_table(["key", "value", "meaning"], economics_rows(evaluation.economics))
            ),
        }
    )
