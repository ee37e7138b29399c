"""``/score_events`` for an event log of any vocabulary: the request model and the online
features follow the card's generated event family, and equal the offline SQL value for value.

The offline side is :func:`churn.features.events.feature_sql` over a DuckDB holding a whole
event log (every customer at several observation dates in one statement, as ``customer_features``
runs); the online side is what the route does: the JSON body validated by the model built from
the card, then ``OnlineFeatures`` over one customer's Arrow tables. The log is made here with
awkward data: event types with quotes and semicolons, types outside the vocabulary, missing
types, sessions and measures, customers without a profile row or a signup date, rows after the
observation date. The end-to-end version, through the real service and a pipeline-trained
model, is in ``tests/test_event_log_service.py``.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pydantic
import pytest

from churn.features import SourceTables
from churn.features.events import (
    CARD_KEY,
    ChurnDefinition,
    EventFeatureSpec,
    feature_sql,
    features,
    write_vocabulary,
)
from churn.modeling.spec import build_feature_specs
from serving.events import NoEventFeatures, OnlineFeatures, observation_date_of, plan_for_card
from serving.schemas import build_schemas, events_request

ODD = 'it\'s "odd"; DROP TABLE events; --'
TYPES = ("Next Song", ODD, "Add to Playlist", "thumbs-up", "Logout")
UNSEEN = ("Upgrade", "Help")  # in the log, outside the vocabulary: "other"
DATES = (date(2024, 3, 1), date(2024, 5, 1), date(2024, 7, 1))
SOURCES = SourceTables(
    snapshots="snaps", customers="customers", events="events", vocabulary="vocabulary"
)
SPEC = EventFeatureSpec(
    event_types=TYPES,
    other_types=True,
    measures=("length", "Item Price"),
    has_sessions=True,
    profile=(
        ("plan", "categorical", "VARCHAR"),
        ("age", "numeric", "INTEGER"),
        ("credit score", "numeric", "DOUBLE"),
    ),
    churn=ChurnDefinition(cancellation=False, inactive_days=30),
)


def _make_log(con: duckdb.DuckDBPyConnection, customers: int = 40, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    con.execute(
        "CREATE TABLE customers (customer_id VARCHAR, signup_date DATE, plan VARCHAR, "
        'age INTEGER, "credit score" DOUBLE)'
    )
    con.execute(
        "CREATE TABLE events (customer_id VARCHAR, event_time TIMESTAMP, event_type VARCHAR, "
        'session_id VARCHAR, length DOUBLE, "Item Price" DOUBLE)'
    )
    profiles, events = [], []
    start = datetime(2023, 10, 1)
    for i in range(customers):
        customer = f"u{i:03d}"
        signup = start + timedelta(days=int(rng.integers(0, 200)))
        if i % 7 != 3:  # some customers have no profile row at all
            profiles.append(
                (
                    customer,
                    None if i % 5 == 0 else signup.date(),
                    None if i % 6 == 0 else str(rng.choice(["free", "paid", "family"])),
                    None if i % 4 == 0 else int(rng.integers(18, 80)),
                    float(np.round(rng.normal(600, 80), 1)),
                )
            )
        for _ in range(int(rng.integers(0, 120))):
            when = signup + timedelta(minutes=int(rng.integers(0, 60 * 24 * 300)))
            kind = rng.choice([*TYPES, *UNSEEN, "none"])
            events.append(
                (
                    customer,
                    when,
                    None if kind == "none" else str(kind),
                    None if rng.random() < 0.1 else f"s{i}-{when:%Y%m%d}-{rng.integers(0, 2)}",
                    None if rng.random() < 0.2 else float(np.round(rng.gamma(2, 90), 3)),
                    float(rng.choice([0.99, 1.29, 0.0])),
                )
            )
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", profiles)
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", events)
    con.execute(
        "CREATE TABLE snaps AS SELECT c.customer_id, d.observation_date FROM "
        "(SELECT DISTINCT customer_id FROM events UNION SELECT customer_id FROM customers) c, "
        "(SELECT unnest(?::DATE[]) AS observation_date) d",
        [list(DATES)],
    )
    write_vocabulary(con, SPEC, SOURCES.vocabulary)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


class Log:
    """The event log, its offline features and the card a model trained on them would carry."""

    def __init__(self, tmp_path) -> None:
        self.con = duckdb.connect(str(tmp_path / "log.duckdb"))
        _make_log(self.con)
        frame = self.con.execute(feature_sql(SPEC, SOURCES)).df()
        feature_list = features(SPEC)
        self.names = [f.name for f in feature_list]
        specs = build_feature_specs(frame, feature_list)
        self.card = {
            "feature_order": self.names,
            "feature_schema": [s.to_dict() for s in specs],
            CARD_KEY: SPEC.to_dict(),
        }
        self.specs = specs
        cursor = self.con.execute(
            f"SELECT * FROM ({feature_sql(SPEC, SOURCES)}) ORDER BY customer_id, observation_date"
        )
        columns = [d[0] for d in cursor.description]
        self.offline = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def body(self, customer_id: str, observation_date: date, days_after: int = 0) -> dict:
        """The customer's profile and every event before ``observation_date`` (+ days), as the
        JSON a client sends: only the keys the log has, no ``null`` profile keys."""
        profile = self.con.execute(
            'SELECT signup_date, plan, age, "credit score" FROM customers WHERE customer_id = ?',
            [customer_id],
        ).fetchall()
        customer: dict[str, Any] = {"customer_id": customer_id}
        if profile:
            keys = ("signup_date", "plan", "age", "credit score")
            for key, value in zip(keys, profile[0], strict=True):
                if value is not None:
                    customer[key] = _jsonable(value)
        cut = datetime.combine(observation_date, datetime.min.time()) + timedelta(days=days_after)
        rows = self.con.execute(
            'SELECT event_time, event_type, session_id, length, "Item Price" FROM events '
            "WHERE customer_id = ? AND event_time < ? ORDER BY ALL",
            [customer_id, cut],
        ).fetchall()
        events = []
        for time, kind, session, length, price in rows:
            event = {"event_time": _jsonable(time), "length": length, "Item Price": price}
            if kind is not None:
                event["event_type"] = kind
            if session is not None:
                event["session_id"] = session
            events.append(event)
        return {
            "customer": customer,
            "events": events,
            "as_of": f"{observation_date.isoformat()}T00:00:00Z",
        }


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Log:
    log = Log(tmp_path_factory.mktemp("event-log"))
    yield log
    log.con.close()


@pytest.fixture(scope="module")
def request_model(log):
    return events_request(log.card, log.specs)


def _online(online: OnlineFeatures, request_model, body: dict) -> dict:
    request = request_model.model_validate_json(json.dumps(body))
    return online.compute(
        request.customer, request.events, (), (), observation_date_of(request.as_of)
    )


def test_online_features_equal_the_offline_sql_value_for_value(log, request_model):
    online = OnlineFeatures(plan_for_card(log.card))
    features = build_schemas(log.card, log.specs).features_adapter
    mismatches, compared = [], 0
    try:
        for row in log.offline:
            computed = _online(
                online, request_model, log.body(row["customer_id"], row["observation_date"])
            )
            assert list(computed) == log.names
            features.validate_python(computed)  # what the route checks before scoring
            for name in log.names:
                a, b = row[name], computed[name]
                same = (a == b or (a != a and b != b)) and type(a) is type(b)
                compared += 1
                if not same:
                    mismatches.append((row["customer_id"], row["observation_date"], name, a, b))
    finally:
        online.close()
    assert mismatches == []
    assert compared == len(log.offline) * len(log.names) and len(log.offline) >= 100
    by_name = {name: [row[name] for row in log.offline] for name in log.names}
    assert max(by_name["type_other_90d"]) > 0, "types outside the vocabulary are counted"
    assert max(by_name["type_it_s_odd_drop_table_events_30d"]) > 0
    assert {None, "free", "paid", "family"} == set(by_name["plan"])
    assert None in by_name["length_mean_7d"], "a window without events has no mean: null"


def test_rows_after_the_observation_date_change_nothing(log, request_model):
    online = OnlineFeatures(plan_for_card(log.card))
    try:
        row = max(log.offline[:30], key=lambda r: r["events_90d"])
        day = row["observation_date"]
        later = log.body(row["customer_id"], day, days_after=60)
        assert len(later["events"]) > len(log.body(row["customer_id"], day)["events"])
        computed = _online(online, request_model, later)
    finally:
        online.close()
    assert json.dumps(computed, default=str) == json.dumps(
        {n: row[n] for n in log.names}, default=str
    )


def test_the_request_model_follows_the_card(log, request_model):
    schema = request_model.model_json_schema()
    customer = schema["$defs"]["EventLogCustomer"]
    event = schema["$defs"]["LogEvent"]
    assert customer["required"] == ["customer_id"]
    assert set(customer["properties"]) == {
        "customer_id",
        "signup_date",
        "plan",
        "age",
        "credit score",
    }
    assert set(event["properties"]) >= {"event_time", "event_type", "session_id", "Item Price"}
    assert event["required"] == ["event_time"]
    assert set(schema["properties"]) == {"customer", "events", "as_of", "threshold"}
    ok = {"customer": {"customer_id": "x"}, "events": [], "as_of": "2024-03-01T00:00:00Z"}
    request_model.model_validate(ok)
    unseen_type = ok | {"events": [{"event_time": "2024-02-01T10:00:00", "event_type": "New!"}]}
    request_model.model_validate(unseen_type)  # free text: counted as other


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"customer": {"customer_id": "x", "plan": "platinum"}}, ("customer", "plan")),
        ({"customer": {"customer_id": "x", "age": "33"}}, ("customer", "age")),
        ({"customer": {"customer_id": "x", "region": "north"}}, ("customer", "region")),
        ({"events": [{"event_type": "Next Song"}]}, ("events", 0, "event_time")),
        ({"events": [{"event_time": "2024-01-01", "length": "long"}]}, ("events", 0, "length")),
        ({"events": [{"event_time": "2024-01-01", "amount": 1.0}]}, ("events", 0, "amount")),
        ({"events": [{"event_time": "2024-01-01", "length": 9.3e15}]}, ("events", 0, "length")),
        ({"events": [{"event_time": "2024-01-01", "length": -1e300}]}, ("events", 0, "length")),
        ({"events": [{"event_time": "2205-01-01"}]}, ("events", 0, "event_time")),
        ({"payments": []}, ("payments",)),
    ],
)
def test_bad_values_are_refused_with_the_field_named(request_model, change, location):
    body = {"customer": {"customer_id": "x"}, "events": [], "as_of": "2024-03-01T00:00:00Z"}
    with pytest.raises(pydantic.ValidationError) as error:
        request_model.model_validate_json(json.dumps(body | change))
    assert any(tuple(e["loc"][: len(location)]) == location for e in error.value.errors())


def test_measures_up_to_the_staging_bound_compute_without_overflow(log, request_model):
    """1e15 (staging's bound, per value) over 100,000 events still fits the feature SQL's
    integer sums; 9.3e15 used to overflow them (a 500) and is now refused by the request."""
    online = OnlineFeatures(plan_for_card(log.card))
    try:
        row = max(log.offline, key=lambda r: r["events_90d"])
        body = log.body(row["customer_id"], row["observation_date"])
        body["events"] = [e | {"length": 1e15} for e in body["events"]]
        body["events"] = (body["events"] * 100_000)[:100_000]
        computed = _online(online, request_model, body)
    finally:
        online.close()
    assert computed["length_mean_7d"] in (None, 1e15)


def test_five_table_and_flat_models_keep_their_paths(log):
    from churn.features import FEATURE_NAMES

    declared = plan_for_card({"feature_order": list(FEATURE_NAMES)})
    assert declared.kind == "subscription" and "stg_payments" in declared.sources
    family = EventFeatureSpec(
        event_types=("login", "export"),
        measures=("duration_seconds",),
        has_sessions=True,
        subscription_family=True,
    )
    synthetic = plan_for_card(
        {"feature_order": [f.name for f in features(family)], CARD_KEY: family.to_dict()}
    )
    assert synthetic.kind == "subscription" and set(synthetic.fixed) == {"vocabulary"}
    assert {"stg_customers", "stg_events", "stg_payments", "stg_tickets"} <= set(synthetic.sources)
    flat = {"feature_order": ["gender", "contract"], "source_shape": "flat"}
    with pytest.raises(NoEventFeatures, match="flat customer table"):
        plan_for_card(flat)
    anything = events_request(flat, []).model_validate({"customer": {}, "x": 1})
    assert anything.model_extra == {"customer": {}, "x": 1}  # the route answers 400, with why
    assert plan_for_card(log.card).kind == "event_log"
