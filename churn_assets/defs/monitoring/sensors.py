"""What the monitoring group sets in motion: retraining on newly matured labels, and a refresh.

* ``new_labels_retrain_sensor``: when labels have matured for an observation date after the
  champion's training window (:mod:`churn.modeling.retrain`), requests training_set ->
  candidate_models -> model_evaluation (blocking quality_gate) -> champion_model (->
  churn_bento). The run key is the newest matured date, so each new month of labels retrains
  once, even when the gate refuses the result. Drift alone never retrains: a retrain on the
  rows the champion already learned from is the same model again. A failed ``drift_check``
  posts an alert (``drift_report``), and while nothing new has matured the sensor's skip reason
  says that the drift was not a reason to retrain.
* ``monitoring_automation``: declarative ``eager & all_deps_blocking_checks_passed`` for the
  monitoring assets (see :data:`churn_assets.defs.monitoring.assets.REFRESH`).

Both run by default (``DefaultSensorStatus.RUNNING``).
"""

from __future__ import annotations

import dagster as dg

from churn.modeling.retrain import decide_retrain, newest_matured_date
from churn.settings import load_settings
from churn.warehouse import WarehouseLockedError, connect
from churn_assets.check_events import failed

MONITORING = dg.AssetSelection.groups("monitoring")
RETRAIN_SELECTION = dg.AssetSelection.assets("training_set") | (
    dg.AssetSelection.assets("candidate_models").downstream()
    - MONITORING
    - dg.AssetSelection.groups("scoring")
)
"""training_set (so the new labels are in it), candidate_models, model_evaluation,
champion_model and whatever packages it (churn_bento). Not the monthly-partitioned
customer_scores: scoring_automation re-scores its newest month once a new champion has landed."""
DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("drift_report"), "drift_check")
LOCK_WAIT_SECONDS = 5.0
"""How long a tick waits for the warehouse a run is writing; the next tick tries again."""


@dg.sensor(
    name="new_labels_retrain_sensor",
    target=RETRAIN_SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Retrains (training set -> candidates -> gated evaluation -> champion -> Bento) "
    "when labels have matured for an observation date after the champion's training window. "
    "Once per newest matured date; drift alone never retrains.",
)
def new_labels_retrain_sensor(context: dg.SensorEvaluationContext):
    from churn import registry

    settings = load_settings()
    location = settings.warehouse_location
    if not location.startswith("md:") and not settings.warehouse_path.exists():
        return dg.SkipReason(f"no warehouse yet at {location}: nothing has been materialized")
    try:  # read-only, opened and closed within the tick: one writer per DuckDB file
        con = connect(
            settings.warehouse_path, read_only=True, lock_timeout_seconds=LOCK_WAIT_SECONDS
        )
    except WarehouseLockedError:
        return dg.SkipReason("the warehouse is being written by a run; next tick")
    try:
        newest = newest_matured_date(con)
    finally:
        con.close()
    try:
        tag, path = registry.locate()
        card = registry.read_card(path)
    except registry.ModelNotFoundError:
        tag, card = None, None
    decision = decide_retrain(newest, tag, card)
    if not decision.due:
        return dg.SkipReason(_with_drift(context, decision.reason))
    return dg.RunRequest(
        run_key=decision.run_key,
        tags={"churn/trigger": "new_labels", "churn/newest_matured": str(decision.newest)},
    )


def _with_drift(context: dg.SensorEvaluationContext, reason: str) -> str:
    """The skip reason, saying so when drift_check's newest evaluation failed: drift alone is
    an alert (posted by drift_report), not a retrain."""
    latest = context.instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK)
    if latest is None or not failed(latest):
        return reason
    evaluation = latest.event.asset_check_evaluation if latest.event else None
    what = evaluation.description if evaluation is not None and evaluation.description else ""
    return (
        f"drift_check failed{f' ({what})' if what else ''}, but {reason}; drift without new "
        "labels is an alert, not a retrain"
    )


monitoring_automation = dg.AutomationConditionSensorDefinition(
    "monitoring_automation",
    target=MONITORING,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the monitoring assets when their inputs change (eager, but never "
    "past a failed blocking check).",
)
