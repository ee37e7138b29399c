"""Which class serves which source: the one list a new kind is added to.

:func:`source_for` builds the source of a config (landing and staging need no more);
:func:`landed` rebuilds it from what the raw layer recorded (``raw_source``), so a run-config
override on the raw asset carries through the graph; :func:`resolve` adds what staging decided.
"""

from __future__ import annotations

from datetime import date

import duckdb

from churn.ingest.sources import active_source
from churn.sources.base import Source
from churn.sources.config import SourceConfig
from churn.sources.event_log import EventLogSource
from churn.sources.five_table import FiveTableSource
from churn.sources.flat import FlatTableSource
from churn.sources.synthetic import SyntheticSource

KINDS: tuple[type[Source], ...] = (
    SyntheticSource,
    FlatTableSource,
    EventLogSource,
    FiveTableSource,
)
"""Every kind, asked in order whether it accepts a config: the first that does serves it."""


def source_for(config: SourceConfig | None, observation_date: date | None = None) -> Source:
    """The source object of ``config`` (None: the synthetic source)."""
    for kind in KINDS:
        if kind.accepts(config):
            return kind.from_config(config, observation_date)
    described = "synthetic" if config is None else f"{config.config_path.name} ({config.shape})"
    raise ValueError(f"no source kind accepts {described}; known: {[k.kind for k in KINDS]}")


def landed(con: duckdb.DuckDBPyConnection) -> Source:
    """The source the raw layer was last loaded from (synthetic before any load)."""
    config, observation_date = active_source(con)
    return source_for(config, observation_date)


def resolve(con: duckdb.DuckDBPyConnection) -> Source:
    """The landed source with what staging decided: what every step after staging asks."""
    return landed(con).resolved(con)
