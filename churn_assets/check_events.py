"""Reacting to asset-check results from sensors: "has this check been evaluated since I last
looked, and how did it end?". The challenger promotion sensor acts on a check's newest
evaluation exactly once (the sensor cursor holds the last evaluation seen); the retrain sensor
reads drift_check's newest evaluation only to say why drift did not retrain.

Only public instance APIs: ``DagsterInstance.get_latest_asset_check_evaluation_record``. Its
record type is not exported by Dagster, so it is read by attribute (``id``, ``run_id``,
``status``, ``event``) and its status by name.
"""

from typing import Any

import dagster as dg

PLANNED, FAILED = "PLANNED", "FAILED"


def new_check_evaluation(context: dg.SensorEvaluationContext, check: dg.AssetCheckKey) -> Any:
    """The check's newest finished evaluation record not seen before (and advance the cursor),
    or a ``SkipReason`` saying why there is nothing to do."""
    last_seen = int(context.cursor) if context.cursor else 0
    latest = context.instance.get_latest_asset_check_evaluation_record(check)
    if latest is None or latest.id <= last_seen:
        return dg.SkipReason(f"no new {check.name} evaluation")
    if _status(latest) == PLANNED:
        return dg.SkipReason(f"{check.name} still running")
    context.update_cursor(str(latest.id))
    return latest


def _status(record: Any) -> str:
    return getattr(record.status, "value", str(record.status))


def failed(record: Any) -> bool:
    return _status(record) == FAILED


def evaluation_metadata(record: Any) -> dict:
    evaluation = record.event.asset_check_evaluation if record.event else None
    return dict(evaluation.metadata) if evaluation else {}
