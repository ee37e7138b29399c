"""The five subscription tables (customers, events, payments, tickets, cancellations) from the
user's own files, columns renamed onto the raw-table contract (:mod:`churn.ingest.schema`).

What differs from an event log: every table is staged by the contract's schema, the features are
the hand-written subscription family plus the generated extras it lacks, and churn is a
cancellation within the horizon (plus inactivity when the config asks for it), so the classic
"signed up, not cancelled" rule decides who is observed unless ``inactive_days`` is set.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb

from churn.features.event_spec import decide_event_spec, save_spec
from churn.features.events import ChurnDefinition, EventFeatureSpec
from churn.features.labels import labels_sql
from churn.features.snapshots import active_customers_sql
from churn.ingest.landing import land_file
from churn.ingest.schema import Table
from churn.ingest.staging import stage_table
from churn.sources.base import Staged
from churn.sources.config import SourceConfig
from churn.sources.history import HistorySource

if TYPE_CHECKING:
    from churn.engine import Engine


class FiveTableSource(HistorySource):
    """An events source with the subscription schema (it maps payments or tickets)."""

    kind: ClassVar[str] = "five_table"
    replays_incoming: ClassVar[bool] = True

    @classmethod
    def accepts(cls, config: SourceConfig | None) -> bool:
        return config is not None and config.shape == "events" and not config.is_event_log

    def land(
        self, con: duckdb.DuckDBPyConnection, table: Table, raw_dir: Path
    ) -> tuple[Path | None, int]:
        assert self.config is not None
        mapped = self.config.tables[table.name]
        return mapped.path, land_file(con, mapped.path, table, replace=True, renames=mapped.columns)

    def incoming_renames(self) -> dict[str, dict[str, str]]:
        """The YAML's mapping: a new file of a table has the columns of that table's file."""
        if self.config is None:
            return {}
        return {name: dict(mapped.columns) for name, mapped in self.config.tables.items()}

    def stage(
        self, con: duckdb.DuckDBPyConnection, table: Table, engine: Engine | None = None
    ) -> Staged:
        return Staged(stage_table(con, table, engine), ", ".join(table.key))

    def decide_features(
        self, con: duckdb.DuckDBPyConnection, *, last_observation_date: date, horizon_days: int
    ) -> EventFeatureSpec:
        """The subscription family: its measure is the session duration, its profile the
        contract's customers columns (hand-written), and a cancellation always counts."""
        churn = self.config.churn if self.config is not None else None
        spec = decide_event_spec(
            con,
            ChurnDefinition(
                cancellation=True,
                inactive_days=churn.inactive_days if churn else None,
                cancellation_event=churn.cancellation_event if churn else None,
                horizon_days=horizon_days,
            ),
            last_observation_date=last_observation_date,
            top_event_types=self.top_event_types,
            measures=("duration_seconds",),
            profile=(),
            subscription_family=True,
        )
        save_spec(con, spec)
        return spec

    @property
    def description(self) -> str:
        return "declared in churn.features plus generated from the event vocabulary"

    def snapshots_query(self, start: str, end: str) -> tuple[str, Any]:
        if self.decided.churn.inactive_days:
            return self.definition_snapshots(start, end)
        return active_customers_sql(), [start, end]  # signed up, not cancelled

    def labels_query(self, start: str, end: str, data_end: date | None) -> tuple[str, Any]:
        churn = self.decided.churn
        if churn.inactive_days:
            return self.definition_labels(start, end, data_end)
        params = {"start": start, "end": end, "data_end": data_end}
        return labels_sql(), params | {"horizon": churn.horizon_days}
