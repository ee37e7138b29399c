"""``/score_events``: one customer's raw history -> the model's features, by the training SQL.

Which SQL, over which tables, follows the model's card (:func:`plan_for_card`):

* a model of the five-table subscription schema (the synthetic source, or an events source
  mapped onto it): the request's profile, events, payments and tickets become Arrow tables typed
  exactly like the warehouse's ``stg_*`` tables and :func:`churn.features.feature_sql` runs over
  them;
* a model with generated event features (card key ``event_features``, an event log of any
  vocabulary): the profile and events become Arrow tables typed like the staged ``customers``
  and ``events`` relations the spec describes (its profile columns and measures), the card's
  vocabulary (event type -> integer code) is a fixed table, and
  :func:`churn.features.events.feature_sql` of that spec runs over them; a type outside the
  vocabulary gets code 0 (``other``), as in training;
* a flat model has no event history to compute from: no plan, the route refuses.

Either way a one-row snapshot table holds ``(customer_id, observation_date)`` and the SQL runs
unchanged in an in-memory DuckDB. There is no second implementation of any feature to drift from
the offline one; the parity tests check the result against ``customer_features`` value for value.

Observation date: ``as_of`` converted to UTC, truncated to its date. Like the offline snapshot
(observation date = a month start, data strictly before it), features see rows strictly before
the start of that day; rows on or after it are ignored by the SQL, so sending "everything up to
now" is safe. An ``as_of`` at midnight of a month start reproduces that month's offline snapshot.
Times with a UTC offset are converted to UTC (the warehouse's naive UTC); naive times are UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from churn.features import FEATURE_NAMES, SourceTables, feature_sql
from churn.features import events as event_features
from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS, TICKETS, Table
from churn.sql import quote_identifier

Row = BaseModel | Mapping[str, Any]
"""A history row: the request's validated model (read by attribute) or a plain mapping."""

_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),  # aware datetimes are converted to UTC, naive kept as UTC
    "DOUBLE": pa.float64(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
}
_SOURCES = SourceTables(
    snapshots="snapshot",
    customers="stg_customers",
    events="stg_events",
    payments="stg_payments",
    tickets="stg_tickets",
    vocabulary="vocabulary",
)
_TABLES = {
    "stg_customers": CUSTOMERS,
    "stg_events": EVENTS,
    "stg_payments": PAYMENTS,
    "stg_tickets": TICKETS,
}
_SNAPSHOT_SCHEMA = pa.schema([("customer_id", pa.string()), ("observation_date", pa.date32())])
_VOCABULARY_SCHEMA = pa.schema(
    [(name, _ARROW_TYPES[kind]) for name, kind in event_features.VOCABULARY_COLUMNS]
)
PlanKind = Literal["subscription", "event_log"]


@dataclass(frozen=True)
class FeaturePlan:
    """How ``/score_events`` computes one model's features.

    ``sql`` yields exactly the card's features, in its order; ``sources`` are the relations a
    request fills (Arrow schemas, by the name the SQL reads), ``fixed`` the ones every request
    shares (the vocabulary). The SQL names only our relations and the card's columns, quoted:
    event types, profile values and ids travel as Arrow data.
    """

    kind: PlanKind
    sql: str
    sources: Mapping[str, pa.Schema]
    fixed: Mapping[str, pa.Table] = field(default_factory=dict)

    @property
    def prepare_statement(self) -> str:
        return "PREPARE customer_features AS " + self.sql


class NoEventFeatures(ValueError):
    """The model was not trained on an event history (a flat customer table)."""


def _selected(sql: str, names: Sequence[str]) -> str:
    """Only the model's features, in its order, from a feature SELECT (keys dropped)."""
    columns = ", ".join(quote_identifier(name) for name in names)
    return f"SELECT {columns} FROM ({sql})"


def _arrow_type(sql_type: str, column: str) -> pa.DataType:
    try:
        return _ARROW_TYPES[sql_type.upper()]
    except KeyError:
        raise ValueError(
            f"profile column {column!r} has SQL type {sql_type}, not servable"
        ) from None


def _vocabulary_table(spec: event_features.EventFeatureSpec) -> pa.Table:
    rows = event_features.vocabulary_rows(spec)
    columns = list(zip(*rows, strict=True)) if rows else [[], [], []]
    return pa.Table.from_arrays(
        [
            pa.array(list(values), f.type)
            for values, f in zip(columns, _VOCABULARY_SCHEMA, strict=True)
        ],
        schema=_VOCABULARY_SCHEMA,
    )


def event_log_schemas(spec: event_features.EventFeatureSpec) -> dict[str, pa.Schema]:
    """The staged ``customers`` and ``events`` relations of an event log, as the spec says
    training saw them: profile columns with their SQL types, measures as DOUBLE."""
    customers = [("customer_id", pa.string()), ("signup_date", pa.date32())]
    customers += [(column, _arrow_type(sql_type, column)) for column, _, sql_type in spec.profile]
    events = [
        ("customer_id", pa.string()),
        ("event_time", pa.timestamp("us")),
        ("event_type", pa.string()),
        ("session_id", pa.string()),
    ]
    events += [(measure, pa.float64()) for measure in spec.measures]
    return {"customers": pa.schema(customers), "events": pa.schema(events)}


def _check_contract_columns(spec: event_features.EventFeatureSpec) -> None:
    """A subscription-family spec reads its measures and profile from the raw-table contract's
    columns (the request's five tables); anything else could not be sent, so say so at startup."""
    missing = [m for m in spec.measures if m not in EVENTS.column_names]
    missing += [c for c, _, _ in spec.profile if c not in CUSTOMERS.column_names]
    if missing:
        raise ValueError(f"columns outside the raw-table contract: {', '.join(missing)}")


def history_kind(card: Mapping[str, Any]) -> PlanKind | None:
    """Which history ``/score_events`` takes for the model ``card`` describes: the five raw
    tables, an event log's own columns, or none (a flat table's model: nothing to compute)."""
    spec_data = card.get(event_features.CARD_KEY)
    if spec_data is not None:
        return "subscription" if spec_data.get("subscription_family") else "event_log"
    if card.get("source_shape") == "flat" or not set(card["feature_order"]) <= set(FEATURE_NAMES):
        return None
    return "subscription"


def no_history_reason(card: Mapping[str, Any]) -> str:
    order = list(card["feature_order"])
    return (
        f"the model's features ({', '.join(order[:5])}, ...) are columns of a flat customer "
        "table, not computed from an event history: send them to /score instead"
    )


def plan_for_card(card: Mapping[str, Any]) -> FeaturePlan:
    """The feature plan of the model ``card`` describes; :class:`NoEventFeatures` for a model
    whose features are not computed from an event history (a flat table's columns)."""
    kind = history_kind(card)
    if kind is None:
        raise NoEventFeatures(no_history_reason(card))
    order = list(card["feature_order"])
    spec_data = card.get(event_features.CARD_KEY)
    if spec_data is None:  # a card from before the generated family: the declared features
        sources = {name: _arrow_schema(table) for name, table in _TABLES.items()}
        sql = _selected(feature_sql(_SOURCES), order)
        return FeaturePlan(kind, sql, {**sources, "snapshot": _SNAPSHOT_SCHEMA})
    spec = event_features.EventFeatureSpec.from_dict(spec_data)
    if kind == "subscription":  # the five staged tables, plus the vocabulary
        _check_contract_columns(spec)
        sources = {name: _arrow_schema(table) for name, table in _TABLES.items()}
        sql = event_features.feature_sql(spec, _SOURCES)
    else:
        sources = event_log_schemas(spec)
        sql = event_features.feature_sql(
            spec,
            SourceTables(
                snapshots="snapshot",
                customers="customers",
                events="events",
                vocabulary=_SOURCES.vocabulary,
            ),
        )
    vocabulary = {_SOURCES.vocabulary: _vocabulary_table(spec)}
    return FeaturePlan(
        kind, _selected(sql, order), {**sources, "snapshot": _SNAPSHOT_SCHEMA}, vocabulary
    )


def observation_date_of(as_of: datetime) -> date:
    """The snapshot date a request is scored at (naive times are taken as UTC)."""
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC)
    return as_of.date()


def _arrow_schema(table: Table) -> pa.Schema:
    """The contract's columns, in order, with the Arrow types of their warehouse SQL types."""
    return pa.schema([(c.name, _ARROW_TYPES[c.sql_type.upper()]) for c in table.columns])


def _column(rows: Sequence[Row], name: str) -> list[Any]:
    """One column's values, read straight off the validated models (rows are all models or all
    mappings): dumping 1,000 models to dicts first cost more than building the Arrow tables."""
    if rows and isinstance(rows[0], Mapping):
        return [row.get(name) for row in rows]  # type: ignore[union-attr]
    return [getattr(row, name) for row in rows]


def _arrow_table(schema: pa.Schema, rows: Sequence[Row], customer_id: str) -> pa.Table:
    """Rows of one source as a table of ``schema``; ``customer_id`` filled from the profile."""
    arrays = [
        pa.array(
            [customer_id] * len(rows) if field.name == "customer_id" else _column(rows, field.name),
            field.type,
        )
        for field in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


SUBSCRIPTION_PLAN = plan_for_card({"feature_order": FEATURE_NAMES})
"""The synthetic schema's plan: today's five tables and declared features."""


class _RequestRows:
    """One source of the prepared feature SQL: the current request's rows of one table.

    DuckDB keeps the object registered under the source's name inside the prepared plan and asks
    it for a fresh Arrow stream (``__arrow_c_stream__``) every time the plan runs, so assigning
    ``table`` changes what the next execution reads without re-planning.
    """

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.empty = schema.empty_table()
        self.table = self.empty

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


class OnlineFeatures:
    """One in-memory DuckDB per worker with the feature SQL prepared once over request-sized
    Arrow sources; a request only hands its rows to the sources and runs the statement.

    With its optimizer on, DuckDB 2.0.1 re-binds and re-optimizes a prepared statement at
    every ``EXECUTE`` when it reads any catalog entry (a table, a view, a registered object
    alike): for the 62-feature plan binding and the optimizer were two thirds of the ~55 ms of
    CPU per request. Over one customer's rows the optimizer does not pay for itself: with it off
    the statement is no longer re-bound and the same features cost ~30 ms (docs/performance.md,
    "Service"). The parity tests compare the result with ``customer_features`` value for value,
    so a plan that changed a value would fail them. A registered ``pyarrow.Table`` would be read
    as the first one forever by the reused plan, hence the holders that hand out whichever table
    is current; the plan's fixed tables (the vocabulary) never change, so they are registered as
    they are. A lock serializes requests: the worker runs one sync API call at a time anyway.
    """

    def __init__(self, plan: FeaturePlan = SUBSCRIPTION_PLAN) -> None:
        self.plan = plan
        self._con = duckdb.connect(":memory:", config={"threads": 1})
        # Every EXECUTE re-binds and re-optimizes (see the class docstring); for one customer's
        # rows the optimizer's passes cost more than they save.
        self._con.execute("SET enable_optimizer = false")
        self._sources = {name: _RequestRows(schema) for name, schema in plan.sources.items()}
        for name, source in self._sources.items():
            self._con.register(name, source)
        for name, table in plan.fixed.items():
            self._con.register(name, table)
        self._con.execute(plan.prepare_statement)
        self._lock = threading.Lock()

    def compute(
        self,
        customer: Row,
        events: Sequence[Row],
        payments: Sequence[Row],
        tickets: Sequence[Row],
        observation_date: date,
    ) -> dict[str, Any]:
        """The feature row of ``customer`` at ``observation_date``, from its raw history alone
        (``payments`` and ``tickets`` are read by the subscription plan only)."""
        customer_id = str(_column([customer], "customer_id")[0])
        if self.plan.kind == "subscription":
            histories = {
                "stg_customers": [customer],
                "stg_events": events,
                "stg_payments": payments,
                "stg_tickets": tickets,
            }
        else:
            histories = {"customers": [customer], "events": events}
        tables = {
            name: _arrow_table(self._sources[name].schema, rows, customer_id)
            for name, rows in histories.items()
        }
        tables["snapshot"] = pa.Table.from_arrays(
            [pa.array([customer_id], pa.string()), pa.array([observation_date], pa.date32())],
            schema=_SNAPSHOT_SCHEMA,
        )
        with self._lock:
            try:
                for name, table in tables.items():
                    self._sources[name].table = table
                cursor = self._con.execute("EXECUTE customer_features")
                rows = cursor.fetchall()
                names = [description[0] for description in cursor.description]
            finally:
                for source in self._sources.values():  # no request's rows outlive it
                    source.table = source.empty
        if len(rows) != 1:  # cannot happen: the snapshot row is the one row
            raise RuntimeError(f"feature SQL returned {len(rows)} rows for one customer")
        return dict(zip(names, rows[0], strict=True))

    def close(self) -> None:
        self._con.close()
