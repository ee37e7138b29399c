"""The generated feature family's decision, stored where every later step reads it.

Staging ``stg_events`` fixes an :class:`~churn.features.events.EventFeatureSpec` (vocabulary,
measures, profile, churn definition); it is written to the warehouse (``event_feature_spec`` and
its ``event_vocabulary``) so snapshots, features, labels, training and the model card all read
one decision instead of re-deriving it. Which measures and profile a spec takes is the source
kind's business (:mod:`churn.sources`); choosing the vocabulary and storing it is shared here.
"""

from __future__ import annotations

import json
from datetime import date

import duckdb

from churn.features.events import ChurnDefinition, EventFeatureSpec, write_vocabulary

SPEC_TABLE = "event_feature_spec"
VOCABULARY_TABLE = "event_vocabulary"


def choose_event_types(
    con: duckdb.DuckDBPyConnection,
    before: date,
    top: int,
    exclude: str | None = None,
    events: str = "stg_events",
) -> tuple[tuple[str, ...], bool]:
    """The ``top`` most frequent event types among events before ``before`` (the last
    observation date), and whether any other type exists.

    Unsupervised and label-free: a frequency count, so choosing the columns cannot leak the
    outcome. The cancellation event (``exclude``) is never a feature: it defines the label.
    """
    rows = con.execute(
        f"""
        SELECT event_type, count(*) AS n FROM {events}
        WHERE event_time < CAST($before AS DATE) AND event_type IS NOT NULL
          AND event_type IS DISTINCT FROM $exclude
        GROUP BY event_type ORDER BY n DESC, event_type
        """,
        {"before": before, "exclude": exclude},
    ).fetchall()
    chosen = tuple(event_type for event_type, _ in rows[:top])
    return chosen, len(rows) > len(chosen)


def decide_event_spec(
    con: duckdb.DuckDBPyConnection,
    churn: ChurnDefinition,
    *,
    last_observation_date: date,
    top_event_types: int,
    measures: tuple[str, ...],
    profile: tuple[tuple[str, str, str], ...],
    subscription_family: bool,
) -> EventFeatureSpec:
    """The spec of the staged ``stg_events``: its most frequent event types (the cancellation
    event excluded), whether it has sessions, and what the source kind passes in."""
    event_types, other = choose_event_types(
        con, last_observation_date, top_event_types, churn.cancellation_event
    )
    sessions = con.execute("SELECT count(session_id) > 0 FROM stg_events").fetchone()[0]
    return EventFeatureSpec(
        event_types=event_types,
        other_types=other,
        measures=measures,
        has_sessions=bool(sessions),
        profile=profile,
        churn=churn,
        subscription_family=subscription_family,
    )


def save_spec(con: duckdb.DuckDBPyConnection, spec: EventFeatureSpec) -> None:
    """Store the spec (one JSON row) and its vocabulary table for the steps downstream."""
    con.execute(f"CREATE OR REPLACE TABLE {SPEC_TABLE} (spec JSON)")
    con.execute(f"INSERT INTO {SPEC_TABLE} VALUES (?)", [json.dumps(spec.to_dict())])
    write_vocabulary(con, spec, VOCABULARY_TABLE)


def load_spec(con: duckdb.DuckDBPyConnection) -> EventFeatureSpec | None:
    """The stored spec, or None when no events table was staged yet."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [SPEC_TABLE]
    ).fetchone()[0]
    if not exists:
        return None
    row = con.execute(f"SELECT spec FROM {SPEC_TABLE}").fetchone()
    return EventFeatureSpec.from_dict(json.loads(row[0])) if row else None


def drop_spec(con: duckdb.DuckDBPyConnection) -> None:
    """Forget a previous source's decision (a source without events has none)."""
    con.execute(f"DROP TABLE IF EXISTS {SPEC_TABLE}")
    con.execute(f"DROP TABLE IF EXISTS {VOCABULARY_TABLE}")
