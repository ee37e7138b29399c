"""Reacting to asset-check results from sensors: "has this check been evaluated since I last
looked, and how did it end?". Two sensors (drift retraining, challenger promotion) act on a
check's newest evaluation exactly once; the sensor cursor holds the last evaluation seen."""

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)


def new_check_evaluation(
    context: dg.SensorEvaluationContext, check: dg.AssetCheckKey
) -> AssetCheckExecutionRecord | dg.SkipReason:
    """The check's newest finished evaluation not seen before (and advance the cursor), or why
    there is nothing to do."""
    last_seen = int(context.cursor) if context.cursor else 0
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [check]
    ).get(check)
    if latest is None or latest.id <= last_seen:
        return dg.SkipReason(f"no new {check.name} evaluation")
    if latest.status == AssetCheckExecutionRecordStatus.PLANNED:
        return dg.SkipReason(f"{check.name} still running")
    context.update_cursor(str(latest.id))
    return latest


def failed(record: AssetCheckExecutionRecord) -> bool:
    return record.status == AssetCheckExecutionRecordStatus.FAILED


def evaluation_metadata(record: AssetCheckExecutionRecord) -> dict:
    evaluation = record.event.asset_check_evaluation if record.event else None
    return dict(evaluation.metadata) if evaluation else {}
