"""The embedded synthetic subscription business: the five-table kind fed by the generator.

It differs from :mod:`churn.sources.five_table` only before landing: the generator writes the
five files into ``$CHURN_HOME/raw`` when they are absent (or on request), and the calendar
follows the generator's size from the settings rather than a config's ``observation`` block.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import duckdb

from churn.ingest.landing import SourceFileError, find_source_file, land_file
from churn.ingest.schema import Table
from churn.sources.base import CalendarError, Log, add_months, newest_event
from churn.sources.config import SourceConfig
from churn.sources.five_table import FiveTableSource

if TYPE_CHECKING:
    from churn.settings import Settings


class SyntheticSource(FiveTableSource):
    """``CHURN_SOURCE=synthetic`` (no config)."""

    kind: ClassVar[str] = "synthetic"

    @classmethod
    def accepts(cls, config: SourceConfig | None) -> bool:
        return config is None

    def calendar(
        self, con: duckdb.DuckDBPyConnection, settings: Settings, today: date
    ) -> tuple[date, date]:
        """After the burn-in (the 90-day windows need history) to the generator's last
        observation date: the month after the newest generated month, as the generator's own
        calendar has it. A month the shift tool adds (through ``incoming/``) extends it."""
        size = settings.synthetic
        first = add_months(size.start_date, size.burn_in_months)
        newest = newest_event(con)
        last = add_months(size.start_date, size.months) if newest is None else add_months(newest, 1)
        if last < first:
            raise CalendarError(
                f"synthetic source: its newest event ({newest}) falls in the burn-in before "
                f"{first} (CHURN_START_DATE plus {size.burn_in_months} months)"
            )
        return first, last

    def prepare_files(
        self, settings: Settings, raw_dir: Path, truth_dir: Path, *, regenerate: bool, log: Log
    ) -> None:
        """Generate the source when asked or when a file is missing, logging progress each
        tenth so a long generation shows it is alive."""
        absent = [t.name for t in self.tables if find_source_file(raw_dir, t) is None]
        if not (regenerate or absent):
            return
        from churn.synthetic import generate

        last_logged = [-1.0]

        def progress(stage: str, fraction: float) -> None:
            if fraction - last_logged[0] >= 0.1 or fraction >= 1.0:
                log(f"synthetic source: {stage} {fraction:.0%}")
                last_logged[0] = fraction

        summary = generate(
            settings.synthetic.generator_config(), raw_dir, truth_dir, progress=progress
        )
        log(f"synthetic source: {summary.rows} in {summary.seconds:.1f} s -> {raw_dir}")

    def land(
        self, con: duckdb.DuckDBPyConnection, table: Table, raw_dir: Path
    ) -> tuple[Path | None, int]:
        path = find_source_file(raw_dir, table)
        if path is None:
            raise SourceFileError(
                f"No source file for '{table.name}' in {raw_dir}: "
                f"expected {table.name}.parquet or {table.name}.csv."
            )
        return path, land_file(con, path, table, replace=True)
