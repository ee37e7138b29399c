"""An event log: only an events table is certain (customer id and event time), with optional
customers (any profile columns) and cancellations tables (:mod:`churn.ingest.eventlog`).

What differs from the subscription kinds: each table is landed with its own columns and staged
with its detected time formats, the features are the generated family alone (the log's own
vocabulary, measures and profile), and the churn definition of the config decides who is
observed and who churned. ``incoming/`` takes new events files under the log's own column
names; an event without an ``event_id`` is identified by its whole row (and its occurrence in
its file), so a row a new file repeats from the log is kept once. An event a new file
re-delivers (the same ``event_id``, or the same whole row) is set aside at landing: the first
delivery wins, and the staging metadata counts the ones dropped.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb

from churn.features.event_spec import decide_event_spec, save_spec
from churn.features.events import ChurnDefinition, EventFeatureSpec
from churn.ingest import eventlog
from churn.ingest.incoming import (
    append_incoming,
    redelivered_name,
    replay_landed,
    set_aside_redelivered,
    table_for,
)
from churn.ingest.landing import SourceFileError
from churn.ingest.schema import CANCELLATIONS, CUSTOMERS, EVENTS, Table
from churn.ingest.staging import raw_name, stage_table
from churn.sources.base import Log, Staged
from churn.sources.config import SourceConfig
from churn.sources.history import HistorySource
from churn.sql import quote_identifier
from churn.warehouse import table_exists

if TYPE_CHECKING:
    from churn.engine import Engine


class EventLogSource(HistorySource):
    """An events source without payments or tickets: features from its own vocabulary."""

    kind: ClassVar[str] = "event_log"
    replays_incoming: ClassVar[bool] = True

    @classmethod
    def accepts(cls, config: SourceConfig | None) -> bool:
        return config is not None and config.shape == "events" and config.is_event_log

    @property
    def log_config(self) -> SourceConfig:
        assert self.config is not None, "an event log always has a config"
        return self.config

    def land(
        self, con: duckdb.DuckDBPyConnection, table: Table, raw_dir: Path
    ) -> tuple[Path | None, int]:
        if table is EVENTS:  # a full reload: the replayed files set their repeats aside again
            con.execute(
                f"DROP TABLE IF EXISTS {quote_identifier(redelivered_name(raw_name(EVENTS)))}"
            )
        return eventlog.land_event_log_table(con, self.log_config, table)

    def validate_incoming(self, path: Path, *, contents: bool = True) -> Table:
        """New events only (``incoming/events/`` or ``events_*``), under the log's own column
        names; its customers and cancellations are whole files, replaced by a reload."""
        table = table_for(path)
        if table is not EVENTS:
            known = "not a known table" if table is None else f"a {table.name} file"
            raise SourceFileError(
                f"{path.name}: {known}; the {self.name} event log takes new files for its "
                "events only (incoming/events/); add other rows to the source's own file and "
                "re-materialize raw_tables"
            )
        eventlog.check_incoming_events(path, self.log_config, contents=contents)
        return EVENTS

    def _append(self, con: duckdb.DuckDBPyConnection, path: Path, table: Table, name: str) -> int:
        rows = eventlog.append_events(con, self.log_config, path, name)
        return rows - set_aside_redelivered(con, raw_name(EVENTS), "event_id", name)

    def append_incoming(
        self, con: duckdb.DuckDBPyConnection, path: Path, landed_dir: Path
    ) -> tuple[str, int] | None:
        return append_incoming(
            con, path, landed_dir, validate=self.validate_incoming, land=self._append
        )

    def replay_incoming(self, con: duckdb.DuckDBPyConnection, log: Log, warn: Log) -> None:
        replay_landed(con, log, warn, land=self._append)

    def stage(
        self, con: duckdb.DuckDBPyConnection, table: Table, engine: Engine | None = None
    ) -> Staged:
        """Customers, events and cancellations with the log's detected time formats; payments
        and tickets (which a log has not) by the contract's schema, on zero rows."""
        key = ", ".join(table.key)
        if table is CUSTOMERS:
            result, inferred, time = eventlog.stage_customers(con, self.log_config, engine)
            formats = {"signup_date": f"{time.kind} ({time.reason})"} if time else {}
            return Staged(result, "customer_id", inferred, formats)
        if table is EVENTS:
            result, time = eventlog.stage_events(con, self.log_config, engine)
            aside = redelivered_name(raw_name(EVENTS))
            dropped = (
                con.execute(f"SELECT count(*) FROM {quote_identifier(aside)}").fetchone()[0]
                if table_exists(con, aside)
                else 0
            )
            return Staged(
                result,
                key,
                None,
                {"event_time": f"{time.kind} ({time.reason})"},
                metadata={"redelivered_events_dropped": dropped},
            )
        if table is CANCELLATIONS:
            result, time = eventlog.stage_cancellations(con, self.log_config, engine)
            formats = {"cancel_date": f"{time.kind} ({time.reason})"} if time else {}
            return Staged(result, key, None, formats)
        return Staged(stage_table(con, table, engine), key)

    def decide_features(
        self, con: duckdb.DuckDBPyConnection, *, last_observation_date: date, horizon_days: int
    ) -> EventFeatureSpec:
        """The generated family alone: the log's measures and its customers' profile columns;
        a cancellation counts only when the log has a way to say one happened."""
        config = self.log_config
        spec = decide_event_spec(
            con,
            ChurnDefinition(
                cancellation=config.has_cancellations,
                inactive_days=config.churn.inactive_days,
                cancellation_event=config.churn.cancellation_event,
                horizon_days=horizon_days,
            ),
            last_observation_date=last_observation_date,
            top_event_types=self.top_event_types,
            measures=tuple(eventlog.staged_measures(config.tables["events"].measures)),
            profile=tuple(eventlog.profile_features(con)),
            subscription_family=False,
        )
        save_spec(con, spec)
        return spec

    @property
    def description(self) -> str:
        return "generated from the event log's own vocabulary (churn.features.events)"

    def snapshots_query(self, start: str, end: str) -> tuple[str, Any]:
        return self.definition_snapshots(start, end)

    def labels_query(self, start: str, end: str, data_end: date | None) -> tuple[str, Any]:
        return self.definition_labels(start, end, data_end)
