"""Which source the raw layer holds: the runtime side of a source config.

The config itself (the YAML, its validation and the objects the pipeline reads) is
:mod:`churn.sources.config`. This module records which source was landed (``raw_source``), so
downstream assets follow the *landed* source rather than the environment, and fixes the one
observation date of a flat table without a time column.
"""

from __future__ import annotations

from datetime import date

from churn.sources.config import SourceConfig, load_source
from churn.warehouse import table_exists


def flat_observation_date(source: SourceConfig, today: date | None = None) -> date:
    """The one observation date of a flat table without a time column: ``as_of``, else the
    first day of the current month by :func:`churn.settings.today` (``CHURN_TODAY`` or the
    clock), read when the table lands: the landing records it, so later steps agree."""
    from churn.settings import today as settings_today

    assert source.flat is not None
    if source.flat.as_of is not None:
        return source.flat.as_of
    return (today or settings_today()).replace(day=1)


SOURCE_TABLE = "raw_source"
"""One row: which source the raw layer was last loaded from. Downstream assets read the source
from here, not from the environment, so a run-config override on the raw asset carries through
the whole graph."""


def record_source(
    con, source: str, config: SourceConfig | None, observation_date: date | None
) -> None:
    con.execute(
        f"CREATE OR REPLACE TABLE {SOURCE_TABLE} (source VARCHAR, shape VARCHAR, "
        "observation_date DATE, loaded_at TIMESTAMPTZ)"
    )
    shape = "synthetic" if config is None else config.shape
    con.execute(
        f"INSERT INTO {SOURCE_TABLE} VALUES (?, ?, ?, now())", [source, shape, observation_date]
    )


def active_source(con) -> tuple[SourceConfig | None, date | None]:
    """The source config (None for synthetic) and flat observation date the raw layer holds."""
    if not table_exists(con, SOURCE_TABLE):
        return None, None
    source, _, observation_date = con.execute(
        f"SELECT source, shape, observation_date FROM {SOURCE_TABLE}"
    ).fetchone()
    if source == "synthetic":
        return None, None
    return load_source(source), observation_date
