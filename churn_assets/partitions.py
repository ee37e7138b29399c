"""The observation calendar: one partition per observation date (a month's first day, ISO).

Why dynamic partitions rather than a ``MonthlyPartitionsDefinition``: the calendar follows the
landed data and the clock, not the code location's start. A time-window definition is fixed when
the code location loads (its end) or follows Dagster's own clock (``end_offset``), which would
list empty months after a historic log and ignore ``CHURN_TODAY``. Here the staging step, after
each landing, asks the source for its calendar (:meth:`churn.sources.base.Source.calendar`) and
writes the months into the instance (:func:`sync_calendar`): a new month appears when its data
lands, with no restart, and the calendar ends at the newest landed data (events, synthetic) or at
today's month (flat). The keys are ISO dates in calendar order; a partition's window is its
month, ``[key, next month's key)``.

Because the keys live in the Dagster instance, the first run on a fresh instance lands and
stages before any month exists; ``make pipeline`` (:mod:`churn_assets.pipeline`) does exactly
that, then runs the rest over the calendar it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from churn.sources.base import add_months

CALENDAR_NAME = "observation_dates"
"""The dynamic partitions' name in the instance (stable: runs and backfills refer to it)."""
OBSERVATION_DATES = dg.DynamicPartitionsDefinition(name=CALENDAR_NAME)
"""The partitions of every monthly asset."""


def month_keys(first: date, last: date) -> list[str]:
    """The observation dates ``first`` .. ``last`` (month starts, both included) as keys."""
    keys, month = [], first.replace(day=1)
    while month <= last:
        keys.append(month.isoformat())
        month = add_months(month, 1)
    return keys


def calendar_keys(instance: dg.DagsterInstance) -> list[str]:
    """The observation dates the instance holds, in calendar order."""
    return sorted(instance.get_dynamic_partitions(CALENDAR_NAME))


def calendar_range(instance: dg.DagsterInstance) -> tuple[date, date] | None:
    """The first and last observation dates, or None before anything was staged."""
    keys = calendar_keys(instance)
    if not keys:
        return None
    return date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])


@dataclass(frozen=True)
class CalendarChange:
    added: list[str]
    removed: list[str]

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        return "; ".join(parts) or "unchanged"


def sync_calendar(instance: dg.DagsterInstance, first: date, last: date) -> CalendarChange:
    """Make the instance's observation dates exactly ``first`` .. ``last``.

    A calendar that grew only gains the new months at its end (the usual case: a new month of
    data). Any other change (another source, an earlier start) rewrites the keys, so they stay
    in calendar order: Dagster orders dynamic keys as they were added, and a partition range
    (``first...last``) means the keys between its ends in that order."""
    wanted = month_keys(first, last)
    held = list(instance.get_dynamic_partitions(CALENDAR_NAME))
    if held == wanted[: len(held)]:
        added = wanted[len(held) :]
        if added:
            instance.add_dynamic_partitions(CALENDAR_NAME, added)
        return CalendarChange(added, [])
    for key in held:
        instance.delete_dynamic_partition(CALENDAR_NAME, key)
    instance.add_dynamic_partitions(CALENDAR_NAME, wanted)
    return CalendarChange(
        [k for k in wanted if k not in held], [k for k in held if k not in wanted]
    )


def partition_window(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The run's observation dates as a half-open window ``[first, month after last)``."""
    keys = context.partition_key_range
    return date.fromisoformat(keys.start), add_months(date.fromisoformat(keys.end), 1)


def partition_range_argument(instance: dg.DagsterInstance) -> str | None:
    """The ``--partition-range`` value that covers every observation date (None: none yet)."""
    found = calendar_range(instance)
    return None if found is None else f"{found[0]}...{found[1]}"


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


def full_range_tags(instance: dg.DagsterInstance) -> dict[str, str]:
    """Run tags covering every observation date the instance holds: what a sensor-launched
    refresh needs (none before the first landing: the run then covers no month)."""
    found = calendar_range(instance)
    return {} if found is None else partition_range_tags(*found)


class InNewestObservationDate(dg.AutomationCondition):
    """True for the calendar's newest observation date only: what ``in_latest_time_window``
    is for time-window partitions (for any other partitions Dagster's own operand is true for
    every partition, which would re-score every month on each new champion)."""

    @property
    def name(self) -> str:
        return "in_newest_observation_date"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        view = context.asset_graph_view
        keys = calendar_keys(view.instance)
        if not keys or context.partitions_def is None:
            newest = view.get_empty_subset(key=context.key)
        else:
            newest = view.get_subset_from_partition_keys(
                context.key, context.partitions_def, {keys[-1]}
            )
        return dg.AutomationResult(
            context, true_subset=context.candidate_subset.compute_intersection(newest)
        )


def eager_newest() -> dg.AutomationCondition:
    """``eager()`` over the newest observation date (see :class:`InNewestObservationDate`)."""
    return dg.AutomationCondition.eager().replace(
        "in_latest_time_window", InNewestObservationDate()
    )
