"""``monthly_refresh``: on the 1st, the newest snapshot month, the training set and the reports."""

from __future__ import annotations

import dagster as dg

from churn_assets.partitions import calendar_range, partition_range_tags

MONTHLY_SELECTION = dg.AssetSelection.assets(
    "customer_snapshots", "customer_features", "churn_labels", "training_set"
) | dg.AssetSelection.groups("monitoring")


@dg.schedule(
    name="monthly_refresh",
    cron_schedule="0 6 1 * *",
    target=MONTHLY_SELECTION,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="On the 1st: the newest snapshot partition, the training set and the reports.",
)
def monthly_refresh(context: dg.ScheduleEvaluationContext):
    """The newest observation date the instance holds at this tick (the calendar grows as data
    lands, so it is read now, never when the code location loaded)."""
    found = calendar_range(context.instance)
    if found is None:
        return dg.SkipReason("no observation date yet: nothing has been landed and staged")
    last = found[1]
    return dg.RunRequest(
        run_key=f"monthly-{context.scheduled_execution_time:%Y-%m}",
        tags=partition_range_tags(last, last),
    )
