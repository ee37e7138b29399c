"""One place decides the source's shape; every step asks it instead of re-reading the YAML.

:func:`resolve_shape` reads, once per step, what the raw layer was loaded from and what staging
decided, and returns a :class:`SourceShape`:

* ``flat`` — one customer table observed once; features are its own inferred columns;
* ``events`` — anything with an event history: the synthetic source and the five-table
  subscription schema (hand-written family + generated extras) and any event log (generated
  family alone). Its :class:`~churn.features.events.EventFeatureSpec` — chosen vocabulary,
  measures, profile, churn definition — was fixed at staging (:func:`build_event_spec`) and is
  stored in the warehouse (``event_feature_spec``) and later in the model card.

The shape answers the questions the assets used to branch on: who is observed (snapshots), the
features and their SQL, the labels, how to split, and how to check for leakage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import duckdb

from churn.features import flat as flat_features
from churn.features.definition import Feature, SourceTables
from churn.features.events import (
    ChurnDefinition,
    EventFeatureSpec,
    feature_sql,
    features,
    write_vocabulary,
)
from churn.features.leakage import leakage_differences
from churn.features.snapshots import OBSERVATION_DATES_SQL, active_customers_sql
from churn.ingest.sources import active_source
from churn.sources.config import SourceConfig

SPEC_TABLE = "event_feature_spec"
VOCABULARY_TABLE = "event_vocabulary"
Kind = Literal["flat", "events"]


# --- the spec, decided at staging --------------------------------------------------------------


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


def build_event_spec(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig | None,
    *,
    last_observation_date: date,
    horizon_days: int,
    measures: tuple[str, ...] = (),
    profile: tuple[tuple[str, str, str], ...] = (),
) -> EventFeatureSpec:
    """The generated family of an events source, decided from ``stg_events``; for the synthetic
    and five-table sources it extends the hand-written subscription family."""
    subscription = source is None or not source.is_event_log
    churn_config = source.churn if source is not None else None
    cancellation_event = churn_config.cancellation_event if churn_config else None
    top = source.top_event_types if source is not None else 10
    event_types, other = choose_event_types(con, last_observation_date, top, cancellation_event)
    sessions = con.execute("SELECT count(session_id) > 0 FROM stg_events").fetchone()[0]
    churn = ChurnDefinition(
        cancellation=subscription or source.has_cancellations,
        inactive_days=churn_config.inactive_days if churn_config else None,
        cancellation_event=cancellation_event,
        horizon_days=horizon_days,
    )
    return EventFeatureSpec(
        event_types=event_types,
        other_types=other,
        measures=("duration_seconds",) if subscription else measures,
        has_sessions=bool(sessions),
        profile=() if subscription else profile,
        churn=churn,
        subscription_family=subscription,
    )


def save_spec(con: duckdb.DuckDBPyConnection, spec: EventFeatureSpec) -> None:
    """Store the spec (one JSON row) and its vocabulary table for the steps downstream."""
    con.execute(f"CREATE OR REPLACE TABLE {SPEC_TABLE} (spec JSON)")
    con.execute(f"INSERT INTO {SPEC_TABLE} VALUES (?)", [json.dumps(spec.to_dict())])
    write_vocabulary(con, spec, VOCABULARY_TABLE)


def load_spec(con: duckdb.DuckDBPyConnection) -> EventFeatureSpec | None:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [SPEC_TABLE]
    ).fetchone()[0]
    if not exists:
        return None
    row = con.execute(f"SELECT spec FROM {SPEC_TABLE}").fetchone()
    return EventFeatureSpec.from_dict(json.loads(row[0])) if row else None


# --- who is observed, and what happened next -----------------------------------------------------

_CANCELLED = """
cancelled AS (
    SELECT customer_id, min(cancel_date) AS cancel_date, min(churn_type) AS churn_type
    FROM (
        SELECT customer_id, cancel_date, churn_type FROM stg_cancellations{cancel_event}
    ) GROUP BY customer_id
)"""
_CANCEL_EVENT = """
        UNION ALL
        SELECT customer_id, CAST(min(event_time) AS DATE), 'cancellation_event'
        FROM stg_events WHERE event_type = $cancellation_event GROUP BY customer_id"""

_LOG_SNAPSHOTS = """
WITH dates AS ({dates}),
active_days AS (
    SELECT DISTINCT customer_id, CAST(event_time AS DATE) AS day FROM stg_events
),
first_seen AS (
    SELECT customer_id, min(day) AS first_day FROM active_days GROUP BY customer_id
),
people AS (
    -- Signup from the customers table when it says so, else the first event.
    SELECT coalesce(c.customer_id, f.customer_id) AS customer_id,
        coalesce(c.signup_date, f.first_day) AS signup_date
    FROM (SELECT customer_id, min(signup_date) AS signup_date FROM stg_customers
          GROUP BY customer_id) c
    FULL OUTER JOIN first_seen f ON f.customer_id = c.customer_id
),{cancelled}
{body}
"""
_CANCELLATION_BODY = """
SELECT p.customer_id, d.observation_date
FROM people p CROSS JOIN dates d
LEFT JOIN cancelled x ON x.customer_id = p.customer_id
WHERE p.signup_date < d.observation_date
  AND (x.cancel_date IS NULL OR x.cancel_date > d.observation_date)"""
_INACTIVITY_BODY = """
SELECT DISTINCT a.customer_id, d.observation_date
FROM active_days a
JOIN dates d ON a.day < d.observation_date AND a.day >= d.observation_date - {days}"""

_LOG_LABELS = """
WITH snap AS (
    SELECT customer_id, observation_date FROM customer_snapshots
    WHERE observation_date >= CAST($start AS DATE) AND observation_date < CAST($end AS DATE)
),{cancelled_cte}
after AS (
    -- Active days in the N days from the observation date on (inactivity rule).
    SELECT s.customer_id, s.observation_date, count(DISTINCT CAST(e.event_time AS DATE)) AS days
    FROM snap s JOIN stg_events e ON e.customer_id = s.customer_id
        AND e.event_time >= s.observation_date
        AND e.event_time < s.observation_date + {inactive_days}
    GROUP BY s.customer_id, s.observation_date
)
SELECT s.customer_id, s.observation_date,
    CASE WHEN s.observation_date + {label_days} <= CAST($data_end AS DATE)
        THEN {churned} END AS churned,
    CASE WHEN s.observation_date + {label_days} > CAST($data_end AS DATE) THEN NULL
         WHEN {cancelled_in_horizon} THEN {cancel_type}
         WHEN {inactive} THEN 'inactive' END AS churn_type,
    CAST(s.observation_date + {label_days} AS DATE) AS label_window_end
FROM snap s
LEFT JOIN after a ON a.customer_id = s.customer_id AND a.observation_date = s.observation_date
{cancel_join}
"""


@dataclass(frozen=True)
class SourceShape:
    """The resolved shape of the source the raw layer holds (see the module docstring)."""

    kind: Kind
    source: SourceConfig | None
    features: tuple[Feature, ...]
    spec: EventFeatureSpec | None = None
    flat_observation_date: date | None = None

    @property
    def is_flat(self) -> bool:
        return self.kind == "flat"

    @property
    def is_event_log(self) -> bool:
        return self.spec is not None and not self.spec.subscription_family

    @property
    def every_feature_has_values(self) -> bool:
        """A flat table's column with no value at all is a broken column; an event feature
        may be legitimately empty in a month (a mean over a window nobody was active in)."""
        return self.is_flat

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def description(self) -> str:
        if self.is_flat:
            return "inferred from the flat customer table (flat_columns)"
        if self.is_event_log:
            return "generated from the event log's own vocabulary (churn.features.events)"
        return "declared in churn.features plus generated from the event vocabulary"

    # who is observed

    def snapshots_query(self, start: str, end: str) -> tuple[str, Any]:
        """Who is observed at each observation date in ``[start, end)``: (SQL, parameters)."""
        if self.is_flat:
            return flat_features.snapshots_sql(), [start, end]
        if not self.is_event_log and not self.spec.churn.inactive_days:
            return active_customers_sql(), [start, end]  # the subscription rule, unchanged
        churn = self.spec.churn
        dates = OBSERVATION_DATES_SQL.replace("?", "CAST($start AS DATE)", 1).replace(
            "?", "CAST($end AS DATE)", 1
        )
        params: dict[str, Any] = {"start": start, "end": end}
        bodies = []
        if churn.cancellation:
            bodies.append(_CANCELLATION_BODY)
        if churn.inactive_days:
            bodies.append(_INACTIVITY_BODY.format(days=int(churn.inactive_days)))
        body = "\nINTERSECT\n".join(f"({b.strip()})" for b in bodies)
        if churn.cancellation_event:
            params["cancellation_event"] = churn.cancellation_event
        sql = _LOG_SNAPSHOTS.format(dates=dates, cancelled=self._cancelled_cte(), body=body)
        return f"SELECT customer_id, observation_date FROM ({sql})", params

    def _cancelled_cte(self) -> str:
        event = _CANCEL_EVENT if self.spec.churn.cancellation_event else ""
        return _CANCELLED.format(cancel_event=event)

    def labels_query(self, start: str, end: str, data_end: date | None) -> tuple[str, dict]:
        """Labels of the snapshot rows in ``[start, end)``; NULL while the horizon is open."""
        if self.is_flat:
            return flat_features.labels_sql(), {"start": start, "end": end}
        churn = self.spec.churn
        params: dict[str, Any] = {"start": start, "end": end, "data_end": data_end}
        if not self.is_event_log and not churn.inactive_days:
            from churn.features.labels import labels_sql

            return labels_sql(), params | {"horizon": churn.horizon_days}
        horizon = int(churn.horizon_days)
        in_horizon = f"x.cancel_date <= s.observation_date + {horizon}"
        inactive = "coalesce(a.days, 0) = 0" if churn.inactive_days else "false"
        rules = []
        if churn.cancellation:
            rules.append(f"coalesce({in_horizon}, false)")
        if churn.inactive_days:
            rules.append(inactive)
        if churn.cancellation_event:
            params["cancellation_event"] = churn.cancellation_event
        sql = _LOG_LABELS.format(
            cancelled_cte=(self._cancelled_cte() + ",") if churn.cancellation else "",
            inactive_days=int(churn.inactive_days or 0),
            label_days=int(churn.label_days),
            churned=" OR ".join(rules),
            cancelled_in_horizon=in_horizon if churn.cancellation else "false",
            cancel_type="coalesce(x.churn_type, 'cancellation')" if churn.cancellation else "NULL",
            inactive=inactive,
            cancel_join="LEFT JOIN cancelled x ON x.customer_id = s.customer_id"
            if churn.cancellation
            else "",
        )
        return sql, params

    @property
    def label_days(self) -> int:
        """Days after an observation date its label needs: what the time split embargoes."""
        return 0 if self.is_flat else self.spec.churn.label_days

    # the features

    def feature_sql(self, snapshots: str) -> str:
        if self.is_flat:
            return flat_features.features_sql(list(self.features), snapshots)
        return feature_sql(
            self.spec, SourceTables(snapshots=snapshots, vocabulary=VOCABULARY_TABLE)
        )

    def leakage_differences(
        self, con: duckdb.DuckDBPyConnection, observation_date: str, sample_size: int
    ) -> int:
        return leakage_differences(
            con,
            observation_date,
            sample_size=sample_size,
            sql_for=lambda sources: feature_sql(self.spec, sources),
            feature_names=self.feature_names,
            vocabulary=VOCABULARY_TABLE,
        )

    def stratified(self) -> tuple[float, float, int, int] | None:
        """(validation share, test share, seed, CV folds) for a flat table observed once."""
        flat = self.source.flat if self.is_flat else None
        if flat is None or flat.time_column:
            return None
        return flat.validation_share, flat.test_share, flat.seed, flat.cv_folds

    def card_fields(self) -> dict[str, Any]:
        """What the model card records about the source's shape and generated features."""
        from churn.features.events import CARD_KEY

        fields: dict[str, Any] = {"source_shape": self.kind}
        if self.spec is not None:
            fields[CARD_KEY] = self.spec.to_dict()
            fields["churn_definition"] = self.spec.churn.to_dict()
        return fields


def resolve_shape(con: duckdb.DuckDBPyConnection) -> SourceShape:
    """The shape of what the raw layer holds, with what staging decided about it."""
    source, observation_date = active_source(con)
    if source is not None and source.is_flat:
        return SourceShape(
            "flat",
            source,
            tuple(flat_features.flat_features(con)),
            flat_observation_date=observation_date,
        )
    spec = load_spec(con)
    if spec is None:
        raise RuntimeError(
            f"{SPEC_TABLE} is missing: materialize stg_events first (it decides the event "
            "vocabulary the features are generated from)"
        )
    return SourceShape("events", source, tuple(features(spec)), spec=spec)
