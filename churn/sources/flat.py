"""A flat customer table: one row per customer, an id and a label column, observed at one date
per snapshot.

What differs from every other kind: only the customers table exists (the event tables' assets
create nothing and say why), its other columns become the features after type inference
(:mod:`churn.ingest.flat`, recorded in ``flat_columns``), the label is given rather than derived
(no horizon to mature: the label column is the outcome known at its snapshot), there is no
history to cut for the leakage check, and without a time column the rows are split stratified
rather than by time. The table grows by snapshots: a file in ``incoming/customers/`` is the
table as of its date (:mod:`churn.ingest.flat_snapshots`), and the calendar runs from the
first snapshot to the newest.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import duckdb

from churn.features import flat as flat_features
from churn.ingest.flat import inferred_columns, replaced, stage_flat
from churn.ingest.flat_snapshots import (
    append_snapshot,
    check_flat_file,
    check_snapshot_date,
    landed_snapshot_files,
    snapshot_date_rule,
    snapshot_dates,
)
from churn.ingest.incoming import append_incoming, replay_landed, table_for
from churn.ingest.landing import SourceFileError, land_flat
from churn.ingest.schema import CUSTOMERS, Table
from churn.ingest.sources import flat_observation_date
from churn.sources.base import (
    CalendarError,
    CardShape,
    LeakageVerdict,
    Log,
    Source,
    Staged,
    config_name,
    month_start,
)
from churn.sources.config import FlatSource, SourceConfig

if TYPE_CHECKING:
    from churn.engine import Engine
    from churn.settings import Settings


class FlatTableSource(Source):
    """``shape: flat``."""

    kind: ClassVar[str] = "flat"
    card_shape: ClassVar[CardShape] = "flat"
    tables: ClassVar[tuple[Table, ...]] = (CUSTOMERS,)
    calendar_table: ClassVar[Table] = CUSTOMERS
    replays_incoming: ClassVar[bool] = True

    @classmethod
    def accepts(cls, config: SourceConfig | None) -> bool:
        return config is not None and config.shape == "flat"

    @classmethod
    def from_config(cls, config: SourceConfig | None, observation_date: date | None = None) -> Self:
        """Landing fixes the one observation date (``as_of``, else the load month); later steps
        pass the date the warehouse recorded."""
        assert config is not None
        return cls(config, observation_date or flat_observation_date(config))

    @property
    def table(self) -> FlatSource:
        assert self.config is not None and self.config.flat is not None
        return self.config.flat

    def calendar(
        self, con: duckdb.DuckDBPyConnection, settings: Settings, today: date
    ) -> tuple[date, date]:
        """Without a time column: the months of the snapshots, from the first to the newest
        (the table's own date, ``as_of`` else the month it landed in by ``today``, and the
        dates of the ``incoming/`` snapshots staged). With one: ``observation.start`` to
        ``observation.end``, by default to the month in progress. Never past today's month."""
        where = config_name(self.config)
        current = month_start(today)
        if not self.table.time_column:
            assert self.observation_date is not None, "landing fixes the observation date"
            month = month_start(self.observation_date)
            if month > current:
                raise CalendarError(
                    f"{where}: as_of {self.observation_date} is after the month in progress "
                    f"({current}, by CHURN_TODAY or the clock)"
                )
            months = {month, *map(month_start, snapshot_dates(con))}
            if max(months) > current:
                raise CalendarError(
                    f"{where}: a snapshot dated {max(months)} is after the month in progress "
                    f"({current}, by CHURN_TODAY or the clock)"
                )
            return min(months), max(months)
        assert self.config is not None and self.config.observation is not None
        start, end = self.config.observation.start, self.config.observation.end
        if end is not None and end > current:
            raise CalendarError(
                f"{where}: observation.end {end} is after the month in progress ({current}, "
                "by CHURN_TODAY or the clock); leave end out to follow the clock"
            )
        last = end or current
        if last < start:
            raise CalendarError(
                f"{where}: observation.start {start} is after the month in progress ({current})"
            )
        return start, last

    def land(
        self, con: duckdb.DuckDBPyConnection, table: Table, raw_dir: Path
    ) -> tuple[Path | None, int]:
        return self.table.path, land_flat(con, self.table.path)

    def validate_incoming(self, path: Path, *, contents: bool = True) -> Table:
        """A new snapshot of the table (``incoming/customers/`` or ``customers_*``): its own
        columns, and a snapshot date the calendar can hold (by today, and ``observation``)."""
        from churn.settings import today

        if table_for(path) is not CUSTOMERS:
            raise SourceFileError(
                f"{path.name}: the {self.name} flat table takes new snapshots of its customer "
                "table only; put them in incoming/customers/ (or name them customers_<date>.csv)"
            )
        check_flat_file(path, self.table, contents=contents)
        now = today()
        snapshot, _ = snapshot_date_rule(path.name, self.table, now)
        observation = self.config.observation if self.config is not None else None
        check_snapshot_date(path.name, snapshot, observation, now)
        return CUSTOMERS

    def _append(self, con: duckdb.DuckDBPyConnection, path: Path, table: Table, name: str) -> int:
        from churn.settings import today

        return append_snapshot(con, path, self.table, name, today())

    def append_incoming(
        self, con: duckdb.DuckDBPyConnection, path: Path, landed_dir: Path
    ) -> tuple[str, int] | None:
        """One snapshot file, exactly once (see :func:`append_incoming`)."""
        return append_incoming(
            con, path, landed_dir, validate=self.validate_incoming, land=self._append
        )

    def replay_incoming(self, con: duckdb.DuckDBPyConnection, log: Log, warn: Log) -> None:
        """After a full reload: every snapshot landed before, at the date it was given."""
        snapshots = landed_snapshot_files(con)
        replay_landed(con, log, warn, land=self._append, keep=snapshots.__contains__)

    def stage(
        self, con: duckdb.DuckDBPyConnection, table: Table, engine: Engine | None = None
    ) -> Staged:
        assert self.observation_date is not None, "landing fixes the observation date"
        result, inferred = stage_flat(con, self.table, self.observation_date, engine)
        dates = [str(day) for day in snapshot_dates(con)]
        notes: dict[str, Any] = {"snapshot_dates": dates}
        replacements = replaced(con, self.table, self.observation_date)
        if replacements:
            notes["replaced_snapshots"] = replacements
        return Staged(result, "customer_id, observation_date", inferred, metadata=notes)

    def resolved(self, con: duckdb.DuckDBPyConnection) -> Self:
        return type(self)(
            self.config, self.observation_date, None, tuple(flat_features.flat_features(con))
        )

    @property
    def description(self) -> str:
        return "inferred from the flat customer table (flat_columns)"

    @property
    def every_feature_has_values(self) -> bool:
        return True  # a column with no value at all is a broken column

    @property
    def expects_rows_in_every_window(self) -> bool:
        return True

    def snapshots_query(self, start: str, end: str) -> tuple[str, Any]:
        return flat_features.snapshots_sql(), [start, end]

    def feature_sql(self, snapshots: str) -> str:
        return flat_features.features_sql(list(self.features), snapshots)

    def leakage(
        self, con: duckdb.DuckDBPyConnection, dates: list[str], sample_size: int
    ) -> LeakageVerdict:
        """No history to cut: instead no id, label or time column may be a feature."""
        roles = {c.name: c.role for c in inferred_columns(con)}
        leaking = [f.name for f in self.features if roles.get(f.name) != "feature"]
        return LeakageVerdict(
            passed=not leaking,
            description="flat table: no event history to cut; checked instead that no id, "
            "label or time column is a feature" + (f" (found: {leaking})" if leaking else ""),
            metadata={"features_checked": len(self.features), "history_cut": False},
        )

    def data_end(self, con: duckdb.DuckDBPyConnection) -> date | None:
        return None  # the label column is known for every row

    def labels_query(self, start: str, end: str, data_end: date | None) -> tuple[str, Any]:
        return flat_features.labels_sql(), {"start": start, "end": end}

    @property
    def label_days(self) -> int:
        return 0

    def churn_definition(self) -> dict[str, Any]:
        return {"kind": "label column"}

    def stratified(self) -> tuple[float, float, int, int] | None:
        if self.table.time_column:
            return None
        flat = self.table
        return flat.validation_share, flat.test_share, flat.seed, flat.cv_folds
