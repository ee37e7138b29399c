"""The observation calendar: one monthly partition per observation date (the month's first day).

Observation dates start after a burn-in (the 90-day feature windows need history) and end at the
data's end, whose snapshot is the unlabeled one the model scores.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from churn.settings import Settings
from churn.sources.base import add_months
from churn.sources.registry import source_for


def first_observation_date(settings: Settings) -> date:
    """The calendar's first date: the synthetic generator's after its burn-in, a config's
    ``observation.start``, or a flat table's one month (of ``as_of``)."""
    return source_for(settings.source_config).observation_range(settings)[0]


def last_observation_date(settings: Settings) -> date:
    return source_for(settings.source_config).observation_range(settings)[1]


def observation_partitions(settings: Settings) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(
        start_date=first_observation_date(settings).isoformat(),
        end_date=add_months(last_observation_date(settings), 1).isoformat(),
    )


def partition_range_argument(settings: Settings) -> str:
    """The ``--partition-range`` value that covers every observation date."""
    return f"{first_observation_date(settings)}...{last_observation_date(settings)}"


SINGLE_RUN = dg.BackfillPolicy.single_run()
"""Every asset carries it, partitioned or not: the CLI's ``--partition-range`` runs the whole
graph as one run only when all selected assets have this policy."""


PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
"""The run tags a partition-range run carries (what ``dagster asset materialize
--partition-range`` and the UI's single-run backfills set): the documented tag names, spelled out
here because Dagster exports no public constant for them."""


def partition_range_tags(first: date, last: date) -> dict[str, str]:
    """Run tags that make one run cover the observation dates ``first`` to ``last``."""
    return {
        PARTITION_RANGE_START_TAG: first.isoformat(),
        PARTITION_RANGE_END_TAG: last.isoformat(),
    }


def full_range_tags(settings: Settings) -> dict[str, str]:
    """Run tags covering every observation date: what a sensor-launched refresh needs."""
    return partition_range_tags(first_observation_date(settings), last_observation_date(settings))
