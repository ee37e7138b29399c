"""What the monitoring group sets in motion: retraining on drift, and its own refresh.

* ``drift_retrain_sensor``: a failed ``drift_check`` requests candidate_models ->
  model_evaluation (blocking quality_gate) -> champion_model (-> churn_bento). The run key is the
  drifted snapshot date, so one drift episode retrains once even though the refreshed report (new
  champion, same unlabeled month) may fail again.
* ``monitoring_automation``: declarative ``eager & all_deps_blocking_checks_passed`` for the
  monitoring assets (see :data:`churn_assets.defs.monitoring.assets.REFRESH`).

Both run by default (``DefaultSensorStatus.RUNNING``).
"""

from __future__ import annotations

import dagster as dg

from churn_assets.check_events import evaluation_metadata, failed, new_check_evaluation

MONITORING = dg.AssetSelection.groups("monitoring")
RETRAIN_SELECTION = (
    dg.AssetSelection.assets("candidate_models").downstream()
    - MONITORING
    - dg.AssetSelection.groups("scoring")
)
"""candidate_models, model_evaluation, champion_model and whatever packages it (churn_bento).
Not the monthly-partitioned customer_scores: scoring_automation re-scores its newest month once
the new champion has landed."""
DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("drift_report"), "drift_check")


@dg.sensor(
    name="drift_retrain_sensor",
    target=RETRAIN_SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="A failed drift_check retrains: candidates -> gated evaluation -> champion -> "
    "Bento. Once per drifted snapshot date.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    latest = new_check_evaluation(context, DRIFT_CHECK)
    if isinstance(latest, dg.SkipReason):
        return latest
    if not failed(latest):
        return dg.SkipReason("drift_check passed")
    metadata = evaluation_metadata(latest)
    snapshot = metadata.get("current_observation_date")
    episode = snapshot.value if snapshot is not None else str(latest.id)
    return dg.RunRequest(
        run_key=f"retrain-{episode}",
        tags={"churn/trigger": "drift", "churn/drift_run": latest.run_id},
    )


monitoring_automation = dg.AutomationConditionSensorDefinition(
    "monitoring_automation",
    target=MONITORING,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the monitoring assets when their inputs change (eager, but never "
    "past a failed blocking check).",
)
