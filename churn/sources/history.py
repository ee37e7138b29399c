"""What every source with an event history shares: features generated from the staged events.

The synthetic, five-table and event-log kinds all stage ``stg_events``, decide an
:class:`~churn.features.events.EventFeatureSpec` from it and read that spec back for snapshots,
features, labels, the leakage check and the card. They differ in landing, staging, the family
they generate and who is observed; those stay in their own modules.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Self

import duckdb

from churn.features import churn_rules
from churn.features.definition import SourceTables
from churn.features.event_spec import SPEC_TABLE, VOCABULARY_TABLE, load_spec
from churn.features.events import (
    CARD_KEY,
    EventFeatureSpec,
    feature_sql,
    features,
)
from churn.features.labels import data_end
from churn.features.leakage import leakage_differences
from churn.sources.base import (
    CalendarError,
    CardShape,
    LeakageVerdict,
    Source,
    config_name,
    month_start,
    newest_event,
)

if TYPE_CHECKING:
    from churn.settings import Settings


class HistorySource(Source):
    """A source whose features come from its event history (abstract: one subclass per kind)."""

    card_shape: ClassVar[CardShape] = "events"

    def calendar(
        self, con: duckdb.DuckDBPyConnection, settings: Settings, today: date
    ) -> tuple[date, date]:
        """``observation.start`` to ``observation.end``, or, without ``end``, to the month in
        which the newest landed event falls (never past today's month: a future-dated event
        does not open a month nobody lives in yet)."""
        assert self.config is not None and self.config.observation is not None
        where = config_name(self.config)
        start, end = self.config.observation.start, self.config.observation.end
        current = month_start(today)
        if end is not None:
            if end > current:
                raise CalendarError(
                    f"{where}: observation.end {end} is after the month in progress "
                    f"({current}, by CHURN_TODAY or the clock); leave end out to follow the data"
                )
            return start, end
        newest = newest_event(con)
        if newest is None:
            raise CalendarError(
                f"{where}: observation.end is not set and no event has landed: the calendar "
                "follows the newest event, so stage the events first or set observation.end"
            )
        last = min(month_start(newest), current)
        if last < start:
            raise CalendarError(
                f"{where}: observation.start {start} is after the month of the newest landed "
                f"event ({newest}): the calendar would be empty"
            )
        return start, last

    def resolved(self, con: duckdb.DuckDBPyConnection) -> Self:
        spec = load_spec(con)
        if spec is None:
            raise RuntimeError(
                f"{SPEC_TABLE} is missing: materialize stg_events first (it decides the event "
                "vocabulary the features are generated from)"
            )
        return type(self)(self.config, self.observation_date, spec, tuple(features(spec)))

    @property
    def decided(self) -> EventFeatureSpec:
        """The spec; a clear error when asked before :meth:`resolved`."""
        if self.spec is None:
            raise RuntimeError(f"the {self.kind} source is not resolved: call resolved(con)")
        return self.spec

    def feature_sql(self, snapshots: str) -> str:
        return feature_sql(
            self.decided, SourceTables(snapshots=snapshots, vocabulary=VOCABULARY_TABLE)
        )

    def feature_metadata(self) -> dict[str, Any]:
        return {
            "event_types": list(self.decided.event_types),
            "churn_definition": self.decided.churn.to_dict(),
        }

    def leakage(
        self, con: duckdb.DuckDBPyConnection, dates: list[str], sample_size: int
    ) -> LeakageVerdict:
        """Recompute a sample of each date with every later row removed; any change leaks."""
        spec = self.decided
        differing = {
            d: leakage_differences(
                con,
                d,
                sample_size=sample_size,
                sql_for=lambda sources: feature_sql(spec, sources),
                feature_names=self.feature_names,
                vocabulary=VOCABULARY_TABLE,
            )
            for d in dates
        }
        leaking = {d: n for d, n in differing.items() if n}
        return LeakageVerdict(
            passed=not leaking,
            description=None
            if not leaking
            else f"features changed when future rows were removed (rows per date): {leaking}",
            metadata={"dates_checked": ", ".join(differing), "rows_sampled_per_date": sample_size},
            differing=differing,
        )

    def data_end(self, con: duckdb.DuckDBPyConnection) -> date | None:
        return data_end(con)

    def definition_snapshots(self, start: str, end: str) -> tuple[str, Any]:
        """Who is observed under the churn definition (see :mod:`churn.features.churn_rules`)."""
        return churn_rules.snapshots_query(self.decided.churn, start, end)

    def definition_labels(self, start: str, end: str, end_of_data: date | None) -> tuple[str, Any]:
        return churn_rules.labels_query(self.decided.churn, start, end, end_of_data)

    @property
    def label_days(self) -> int:
        return self.decided.churn.label_days

    def churn_definition(self) -> dict[str, Any]:
        return self.decided.churn.to_dict()

    def card_fields(self) -> dict[str, Any]:
        return super().card_fields() | {
            CARD_KEY: self.decided.to_dict(),
            "churn_definition": self.decided.churn.to_dict(),
        }
