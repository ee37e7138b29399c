"""Sensors, schedules and jobs that make the graph run itself.

* ``incoming_files_sensor``: validates files dropped into ``incoming/`` (reading only the files,
  never the warehouse: DuckDB allows one writer and the pipeline may hold it), quarantines bad
  ones with a reason, and requests one run that appends the good ones to ``raw_*`` and refreshes
  everything downstream except the model group. Run keys are content hashes.
* ``drift_retrain_sensor``: a failed ``drift_check`` requests candidate_models ->
  model_evaluation (blocking quality_gate) -> champion_model (-> churn_bento when present). The
  run key is the drifted snapshot date, so one drift episode retrains once even though the
  refreshed report (new champion, same unlabeled month) may fail again.
* ``monitoring_automation``: declarative ``eager & all_deps_blocking_checks_passed`` for the
  monitoring assets (see ``churn_assets.assets.monitoring.REFRESH``).
* ``monthly_refresh``: the newest snapshot partition, training set and reports, monthly.
* ``challenger_promotion_sensor`` -> ``promote_challenger_job``: a challenger that beats the
  champion on realized results beyond the noise is promoted (``churn_assets.promotion``).

All run by default (``DefaultSensorStatus.RUNNING``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from churn.incoming import candidate_files, content_hash, quarantine, validate_file
from churn.landing import SourceFileError
from churn.settings import load_settings
from churn_assets.check_events import evaluation_metadata, failed, new_check_evaluation
from churn_assets.partitions import first_observation_date, last_observation_date
from churn_assets.promotion import challenger_promotion_sensor, promote_challenger_job

RUNNING = dg.DefaultSensorStatus.RUNNING
SETTLE_SECONDS = 5.0
"""A file younger than this may still be being copied; it is looked at on a later tick."""

MONITORING = dg.AssetSelection.groups("monitoring")
INCOMING_SELECTION = (
    dg.AssetSelection.groups("raw").downstream() - dg.AssetSelection.groups("model").downstream()
) | MONITORING
"""Raw -> staging -> features -> reports; retraining is left to the drift check."""
RETRAIN_SELECTION = dg.AssetSelection.assets("candidate_models").downstream() - MONITORING
"""candidate_models, model_evaluation, champion_model and whatever packages it (churn_bento)."""
MONTHLY_SELECTION = (
    dg.AssetSelection.assets("customer_snapshots", "customer_features", "churn_labels")
    | dg.AssetSelection.assets("training_set")
    | MONITORING
)
DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("drift_report"), "drift_check")


def _full_range_tags() -> dict[str, str]:
    settings = load_settings()
    return {
        ASSET_PARTITION_RANGE_START_TAG: first_observation_date(settings).isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last_observation_date(settings).isoformat(),
    }


def _settled(path: Path, now: float) -> bool:
    return now - path.stat().st_mtime >= SETTLE_SECONDS


def _already_landed(path: Path, digest: str, landed_dir: Path) -> Path | None:
    candidate = landed_dir / f"{digest[:12]}_{path.name}"
    if candidate.exists():
        return candidate
    matches = list(landed_dir.glob(f"{digest[:12]}_*")) if landed_dir.exists() else []
    return matches[0] if matches else None


@dg.sensor(
    name="incoming_files_sensor",
    target=INCOMING_SELECTION,
    default_status=RUNNING,
    minimum_interval_seconds=15,
    description="New files in $CHURN_HOME/incoming/ -> validate -> append to raw_* and refresh "
    "downstream; bad files go to quarantine/ with a reason.",
)
def incoming_files_sensor(context: dg.SensorEvaluationContext):
    settings = load_settings()
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    accepted: list[tuple[Path, str]] = []
    for path in candidate_files(settings.incoming_dir):
        if not _settled(path, now):
            continue
        digest = content_hash(path)
        landed = _already_landed(path, digest, settings.home / "landed")
        if landed is not None:
            quarantine(
                path,
                f"{path.name}: already ingested (same content as {landed.name}); not loaded again",
                settings.quarantine_dir,
            )
            context.log.info(f"{path.name}: duplicate of {landed.name}, quarantined")
            continue
        if digest in requested:
            continue  # its run is queued or running; the asset moves it once landed
        try:
            validate_file(path)
        except SourceFileError as error:
            target = quarantine(path, str(error), settings.quarantine_dir)
            context.log.warning(f"quarantined {target}: {error}")
            continue
        accepted.append((path, digest))
    if not accepted:
        return dg.SkipReason("no new valid files in incoming/")
    batch = hashlib.sha256("".join(sorted(d for _, d in accepted)).encode()).hexdigest()[:16]
    run_key = f"incoming-{batch}"
    for _, digest in accepted:
        requested[digest] = run_key
    context.update_cursor(json.dumps(requested))
    return dg.RunRequest(
        run_key=run_key,
        run_config={
            "ops": {"raw_tables": {"config": {"incoming_files": [str(p) for p, _ in accepted]}}}
        },
        tags=_full_range_tags() | {"churn/trigger": "incoming", "churn/files": str(len(accepted))},
    )


@dg.sensor(
    name="drift_retrain_sensor",
    target=RETRAIN_SELECTION,
    default_status=RUNNING,
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
    default_status=RUNNING,
    description="Refreshes the monitoring assets when their inputs change (eager, but never "
    "past a failed blocking check).",
)


@dg.schedule(
    name="monthly_refresh",
    cron_schedule="0 6 1 * *",
    target=MONTHLY_SELECTION,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="On the 1st: the newest snapshot partition, the training set and the reports.",
)
def monthly_refresh(context: dg.ScheduleEvaluationContext):
    last = last_observation_date(load_settings()).isoformat()
    return dg.RunRequest(
        run_key=f"monthly-{context.scheduled_execution_time:%Y-%m}",
        tags={ASSET_PARTITION_RANGE_START_TAG: last, ASSET_PARTITION_RANGE_END_TAG: last},
    )


SENSORS: list[dg.SensorDefinition] = [
    incoming_files_sensor,
    drift_retrain_sensor,
    monitoring_automation,
    challenger_promotion_sensor,
]
SCHEDULES: list[dg.ScheduleDefinition] = [monthly_refresh]
JOBS: list = [promote_challenger_job]
