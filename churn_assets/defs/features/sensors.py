"""``new_month_sensor``: a month that just appeared in the calendar is snapshotted and scored.

The calendar grows when a landing stages data of a new month (``incoming/`` files, a reload),
inside a run whose partition range was fixed before the month existed. This sensor closes the
gap: the observation dates after the newest materialized ``customer_snapshots`` partition are
run at the next tick (then the scoring automation scores them). It reads only the instance,
never the warehouse (DuckDB allows one writer, and a run may hold it).
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from churn_assets.defs.features.schedules import MONTHLY_SELECTION
from churn_assets.partitions import calendar_keys, partition_range_tags

SNAPSHOTS = dg.AssetKey("customer_snapshots")


def new_months(instance: dg.DagsterInstance) -> list[str]:
    """The calendar's months after the newest one with a materialized snapshot (all of them
    when none has one yet: a fresh calendar is the landing run's to fill)."""
    keys = calendar_keys(instance)
    done = instance.get_materialized_partitions(SNAPSHOTS)
    if not done:
        return []
    newest = max(done)
    return [k for k in keys if k > newest]


@dg.sensor(
    name="new_month_sensor",
    target=MONTHLY_SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="A new observation month in the calendar (new data landed) -> its snapshots, "
    "features, labels, the training set and the reports.",
)
def new_month_sensor(context: dg.SensorEvaluationContext):
    months = new_months(context.instance)
    if not months:
        return dg.SkipReason("no new observation month")
    first, last = months[0], months[-1]
    return dg.RunRequest(
        run_key=f"new-month-{first}-{last}",
        tags=partition_range_tags(date.fromisoformat(first), date.fromisoformat(last))
        | {"churn/trigger": "new_month"},
    )
