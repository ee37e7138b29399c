"""The observation calendar: one monthly partition per observation date (the month's first day).

Observation dates start after a burn-in (the 90-day feature windows need history) and end at the
data's end, whose snapshot is the unlabeled one the model scores.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from churn.ingest.sources import flat_observation_date
from churn.settings import Settings
from churn.sources.config import SourceConfig


def _add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    return date(day.year + month_index // 12, month_index % 12 + 1, 1)


def first_observation_date(settings: Settings) -> date:
    """The synthetic calendar's first date, or the source config's (``observation.start``; a
    flat table without a time column has one date, the month of ``as_of``)."""
    source = settings.source_config
    if source is not None:
        return _source_dates(source)[0]
    return _add_months(settings.synthetic.start_date, settings.synthetic.burn_in_months)


def last_observation_date(settings: Settings) -> date:
    source = settings.source_config
    if source is not None:
        return _source_dates(source)[1]
    return _add_months(settings.synthetic.start_date, settings.synthetic.months)


def _source_dates(source: SourceConfig) -> tuple[date, date]:
    if source.is_flat and not source.flat.time_column:
        month = flat_observation_date(source).replace(day=1)
        return month, month
    return source.observation.start, source.observation.end


def observation_partitions(settings: Settings) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(
        start_date=first_observation_date(settings).isoformat(),
        end_date=_add_months(last_observation_date(settings), 1).isoformat(),
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
