"""``monthly_refresh``: on the 1st, the newest snapshot month, the training set and the reports."""

from __future__ import annotations

import dagster as dg

from churn.settings import load_settings
from churn_assets.partitions import last_observation_date, partition_range_tags

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
    last = last_observation_date(load_settings())
    return dg.RunRequest(
        run_key=f"monthly-{context.scheduled_execution_time:%Y-%m}",
        tags=partition_range_tags(last, last),
    )
