"""The :class:`Source` protocol: every question the asset layer asks about the source it runs on.

Why one object per kind: otherwise the raw, staging, features and model steps each test the
config's shape (flat? event log?) wherever the kinds differ, and a new kind edits all of them. Now
each kind (``synthetic``, ``five_table``, ``event_log``, ``flat``) is one class in its own module
that answers for itself, built by :mod:`churn.sources.registry`; the asset layer asks and never
branches on the kind.

A source object is built in two stages. :func:`~churn.sources.registry.source_for` builds it from
the YAML config: enough to land and stage. :meth:`Source.resolved` adds what staging decided and
stored in the warehouse (the event feature spec, or a flat table's inferred columns): what
snapshots, features, labels, training and the model card need. The mechanisms themselves
(landing, staging, the feature SQL) stay in :mod:`churn.ingest` and :mod:`churn.features`; a kind
module only chooses among them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import duckdb

from churn.features.definition import Feature
from churn.features.event_spec import drop_spec
from churn.features.events import DEFAULT_TOP_EVENT_TYPES, EventFeatureSpec
from churn.ingest.flat import InferredColumn
from churn.ingest.incoming import append_incoming, replay_landed, validate_file
from churn.ingest.schema import EVENTS, RAW_TABLES, Table
from churn.ingest.staging import StagingResult, rejects_name, staged_name
from churn.sources.config import SourceConfig

if TYPE_CHECKING:
    from churn.engine import Engine
    from churn.settings import Settings

CardShape = Literal["flat", "events"]
"""What the model card records as ``source_shape``: the service reads it to know whether a
model's features can be computed from an event history."""
Log = Callable[[str], None]


class CalendarError(ValueError):
    """A source whose observation calendar cannot be built; the message names the config key
    (``observation.start``, ``observation.end``, ``as_of``) and the date at fault."""


def month_start(day: date) -> date:
    return day.replace(day=1)


def config_name(config: SourceConfig | None) -> str:
    """How an error names the source: its YAML file, or the embedded synthetic source."""
    return "synthetic source" if config is None else config.config_path.name


def newest_event(con: duckdb.DuckDBPyConnection) -> date | None:
    """The day of the newest staged event (None: no event staged)."""
    row = con.execute("SELECT CAST(max(event_time) AS DATE) FROM stg_events").fetchone()
    return row[0] if row else None


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after ``day``'s month."""
    month_index = day.month - 1 + months
    return date(day.year + month_index // 12, month_index % 12 + 1, 1)


@dataclass(frozen=True)
class Staged:
    """What staging one table did, and what it decided on the way."""

    result: StagingResult
    key: str
    """The staged table's key, as SQL (for the uniqueness check)."""
    inferred: list[InferredColumn] | None = None
    """Column decisions of a flat table or an event log's customers table."""
    time_formats: dict[str, str] = field(default_factory=dict)
    """column -> how its times were read (an event log's detected formats, with why)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """JSON-ready facts the kind reports about this staging (a flat table's replaced
    snapshots), shown in the staged table's metadata."""


@dataclass(frozen=True)
class LeakageVerdict:
    """The ``no_future_leakage`` check's outcome, in the source's own terms."""

    passed: bool
    description: str | None
    metadata: dict[str, Any]
    differing: dict[str, int] = field(default_factory=dict)
    """observation date -> sampled rows whose features changed with the future cut away."""


@dataclass(frozen=True)
class Source(ABC):
    """One source kind. Subclasses set the class attributes and implement the abstract methods;
    fields hold the config and, once :meth:`resolved`, what staging decided."""

    config: SourceConfig | None = None
    """The parsed YAML (None for the embedded synthetic source)."""
    observation_date: date | None = None
    """The one observation date of a source observed once (a flat table); else None."""
    spec: EventFeatureSpec | None = None
    """The generated feature family staging decided (sources with an event history)."""
    features: tuple[Feature, ...] = ()
    """The model's features, in column order (set by :meth:`resolved`)."""

    kind: ClassVar[str]
    """The registry's name for the kind; also the ``source_shape`` of raw and staging metadata."""
    card_shape: ClassVar[CardShape]
    tables: ClassVar[tuple[Table, ...]] = RAW_TABLES
    """The raw tables this kind lands and stages; the others' assets create no table."""
    calendar_table: ClassVar[Table] = EVENTS
    """The table whose staging fixes the calendar (the newest event, or a flat snapshot)."""
    replays_incoming: ClassVar[bool] = False
    """Whether archived ``incoming/`` files (five-table contract) are replayed on a reload."""

    # --- which kind ---------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def accepts(cls, config: SourceConfig | None) -> bool:
        """Whether ``config`` describes this kind (the registry asks in its order)."""

    @classmethod
    def from_config(cls, config: SourceConfig | None, observation_date: date | None = None) -> Self:
        """The unresolved source: enough to land and stage."""
        return cls(config, observation_date)

    @property
    def name(self) -> str:
        return "synthetic" if self.config is None else self.config.name

    @property
    def top_event_types(self) -> int:
        """How many event types get their own features (the rest count as ``other``)."""
        return self.config.top_event_types if self.config is not None else DEFAULT_TOP_EVENT_TYPES

    # --- calendar -----------------------------------------------------------------------------

    @abstractmethod
    def calendar(
        self, con: duckdb.DuckDBPyConnection, settings: Settings, today: date
    ) -> tuple[date, date]:
        """The first and last monthly observation dates (month starts) of what has landed.

        Asked after staging, on every landing: the calendar follows the data (the newest
        landed event) and ``today`` (:func:`churn.settings.today`), so a new month appears
        when its data lands, never because the code location was restarted. A date the
        calendar cannot hold raises :class:`CalendarError` naming the config key."""

    # --- raw ------------------------------------------------------------------------------------

    def has_table(self, table: Table) -> bool:
        return table in self.tables

    def absence_reason(self, table: Table) -> str:
        """Why a raw or staged table does not exist for this source (metadata and log)."""
        return f"a {self.kind} source has no {table.name} table"

    def prepare_files(
        self, settings: Settings, raw_dir: Path, truth_dir: Path, *, regenerate: bool, log: Log
    ) -> None:
        """Make the source files exist before landing (only a generated source writes any)."""
        return None

    @abstractmethod
    def land(
        self, con: duckdb.DuckDBPyConnection, table: Table, raw_dir: Path
    ) -> tuple[Path | None, int]:
        """Replace ``raw_<table>`` (one of :attr:`tables`): (file landed or None, rows)."""

    def incoming_refusal(self) -> str | None:
        """Why files from ``incoming/`` cannot be appended to this source, or None."""
        return None

    def incoming_renames(self) -> dict[str, dict[str, str]]:
        """table -> (contract column -> file column): the names ``incoming/`` files of this
        source use, which are its own files' names (none: the contract's)."""
        return {}

    def validate_incoming(self, path: Path, *, contents: bool = True) -> Table:
        """The table an ``incoming/`` file lands in, or :class:`SourceFileError` saying why it
        cannot (what the sensor and the landing run check, so both agree)."""
        return validate_file(path, contents=contents, renames=self.incoming_renames())

    def append_incoming(
        self, con: duckdb.DuckDBPyConnection, path: Path, landed_dir: Path
    ) -> tuple[str, int] | None:
        """Append one ``incoming/`` file exactly once (see :func:`append_incoming`)."""
        return append_incoming(con, path, landed_dir, self.incoming_renames())

    def replay_incoming(self, con: duckdb.DuckDBPyConnection, log: Log, warn: Log) -> None:
        """After a full reload: re-append every file accepted from ``incoming/`` before."""
        replay_landed(con, log, warn, self.incoming_renames())

    # --- staging ----------------------------------------------------------------------------

    @abstractmethod
    def stage(
        self, con: duckdb.DuckDBPyConnection, table: Table, engine: Engine | None = None
    ) -> Staged:
        """Rebuild ``stg_<table>`` and its rejects (one of :attr:`tables`), the staging SQL run
        by ``engine`` (DuckDB in the warehouse when None)."""

    def forget_staged(self, con: duckdb.DuckDBPyConnection, table: Table) -> None:
        """Drop a previous source's staged ``table`` (one this source lacks), and its feature
        decision with the events, so no later step can read stale rows."""
        con.execute(f"DROP TABLE IF EXISTS {staged_name(table)}")
        con.execute(f"DROP TABLE IF EXISTS {rejects_name(table)}")
        if table is EVENTS:
            drop_spec(con)

    def decide_features(
        self, con: duckdb.DuckDBPyConnection, *, last_observation_date: date, horizon_days: int
    ) -> EventFeatureSpec | None:
        """After ``stg_events`` is staged: fix and store the generated feature family, or None
        when the kind's features do not come from events."""
        return None

    @abstractmethod
    def resolved(self, con: duckdb.DuckDBPyConnection) -> Self:
        """This source with what staging decided (spec, features) read from the warehouse."""

    # --- features ---------------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the features come from, for the UI."""

    @property
    def every_feature_has_values(self) -> bool:
        """Whether a feature with no value at all in a window is broken (a table's column) or
        may be legitimately empty (a mean over a window nobody was active in)."""
        return False

    @property
    def expects_rows_in_every_window(self) -> bool:
        """Whether a feature window with nobody observed is an error (a flat table's window is
        its one date: no row means nothing was staged)."""
        return False

    @abstractmethod
    def snapshots_query(self, start: str, end: str) -> tuple[str, Any]:
        """Who is observed at each observation date in ``[start, end)``: (SQL, parameters)."""

    @abstractmethod
    def feature_sql(self, snapshots: str) -> str:
        """The features of every row of the relation ``snapshots``."""

    def feature_metadata(self) -> dict[str, Any]:
        """JSON-ready facts about the features for the UI (e.g. the chosen event types)."""
        return {}

    @abstractmethod
    def leakage(
        self, con: duckdb.DuckDBPyConnection, dates: list[str], sample_size: int
    ) -> LeakageVerdict:
        """Whether any feature could have seen the future, checked on ``dates``."""

    # --- labels -------------------------------------------------------------------------------

    @abstractmethod
    def data_end(self, con: duckdb.DuckDBPyConnection) -> date | None:
        """The first day the staged data knows nothing about (None: labels are given)."""

    @abstractmethod
    def labels_query(self, start: str, end: str, data_end: date | None) -> tuple[str, Any]:
        """Labels of the snapshot rows in ``[start, end)``; NULL while the horizon is open."""

    @property
    @abstractmethod
    def label_days(self) -> int:
        """Days after an observation date its label needs: what the time split embargoes."""

    @abstractmethod
    def churn_definition(self) -> dict[str, Any]:
        """What counts as churn, JSON-ready (metadata)."""

    # --- model --------------------------------------------------------------------------------

    def stratified(self) -> tuple[float, float, int, int] | None:
        """(validation share, test share, seed, CV folds) for a source observed once, split by
        rows; None for the time-based split."""
        return None

    def card_fields(self) -> dict[str, Any]:
        """What the model card records about the source's shape and generated features."""
        return {"source_shape": self.card_shape}
