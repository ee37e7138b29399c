"""Online features (``/score_events``'s computation) equal the offline ``customer_features``
exactly, for real warehouse customers at several observation dates.

The history goes through the same path a client's does: serialized to JSON, validated by the
service's request model, handed to the in-memory DuckDB as the validated rows, then the training
SQL. One ``OnlineFeatures`` serves every customer in turn, as a worker does: its plan is prepared
once and must read each request's rows, never a previous request's. The plan is the champion's,
from its card (``serving.events.plan_for_card``), as the service builds it: every feature the
model was trained on is compared, the declared ones and any generated from the event vocabulary.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest

from tests.serving_support import feature_rows, histories

SAMPLE = 40


@pytest.fixture(scope="module")
def card(materialized) -> dict[str, Any]:
    from churn.registry import load_model

    return load_model().card


def online_features(card: dict[str, Any]):
    """The service's computation for the champion: its card's plan, prepared once."""
    from serving.events import OnlineFeatures, plan_for_card

    return OnlineFeatures(plan_for_card(card))


def validated(payload: dict):
    """The service's request model validated from the JSON body, as the route receives it."""
    from serving.service import ScoreEventsRequest

    return ScoreEventsRequest.model_validate_json(json.dumps(payload))


def compute_online(online, payload: dict) -> dict:
    """What /score_events does before scoring, from a JSON body."""
    from serving.events import observation_date_of

    request = validated(payload)
    return online.compute(
        request.customer,
        request.events,
        request.payments,
        request.tickets,
        observation_date_of(request.as_of),
    )


def compute_online_from_dicts(online, payload: dict) -> dict:
    """The same with every row dumped to a dict first (callers that hold plain mappings)."""
    from serving.events import observation_date_of

    request = validated(payload)
    return online.compute(
        request.customer.model_dump(),
        [row.model_dump() for row in request.events],
        [row.model_dump() for row in request.payments],
        [row.model_dump() for row in request.tickets],
        observation_date_of(request.as_of),
    )


class Sample(NamedTuple):
    names: list[str]  # the champion's features
    rows: list[dict[str, Any]]  # offline customer_features rows
    payloads: list[dict[str, Any]]  # their histories as /score_events bodies
    online: list[dict[str, Any]]  # computed online, from the validated request rows
    from_dicts: list[dict[str, Any]]  # the same, from rows dumped to dicts
    first_again: dict[str, Any]  # the first history once more, after all the others


@pytest.fixture(scope="module")
def offline_and_online(materialized, card) -> Sample:
    rows = feature_rows(materialized.warehouse, SAMPLE)
    payloads = histories(materialized.warehouse, rows)
    online = online_features(card)
    try:
        computed = [compute_online(online, p) for p in payloads]
        from_dicts = [compute_online_from_dicts(online, p) for p in payloads]
        first_again = compute_online(online, payloads[0])
    finally:
        online.close()
    return Sample(list(card["feature_order"]), rows, payloads, computed, from_dicts, first_again)


def test_sample_spans_several_observation_dates(offline_and_online):
    dates = Counter(row["observation_date"] for row in offline_and_online.rows)
    assert len(dates) >= 3, dates


def test_online_features_equal_offline_exactly(offline_and_online):
    sample = offline_and_online
    mismatches = [
        (row["customer_id"], row["observation_date"], name, row[name], online[name])
        for row, online in zip(sample.rows, sample.online, strict=True)
        for name in sample.names
        if online[name] != row[name] or type(online[name]) is not type(row[name])
    ]
    assert mismatches == []
    assert all(list(online) == sample.names for online in sample.online)


def test_rows_as_dicts_give_the_same_features(offline_and_online):
    assert offline_and_online.from_dicts == offline_and_online.online


def test_a_reused_instance_reads_each_requests_rows(offline_and_online):
    """The prepared plan is shared by every request of a worker: after 79 other histories, the
    first customer's features are still its own (a stale source would repeat another's)."""
    computed = offline_and_online.online
    assert len({json.dumps(c, default=str, sort_keys=True) for c in computed}) > 1
    assert offline_and_online.first_again == computed[0]


def _with_offset(value: str, hours: int) -> str:
    """The same instant as a naive-UTC ISO time, written with a UTC offset."""
    zone = timezone(timedelta(hours=hours))
    return datetime.fromisoformat(value).replace(tzinfo=UTC).astimezone(zone).isoformat()


def test_times_with_utc_offsets_are_converted_to_utc(offline_and_online, card):
    """Event and ticket times sent with an offset mean the same instants as the warehouse's
    naive UTC: features are unchanged, even where the local date differs from the UTC one."""
    sample = offline_and_online
    index = max(range(len(sample.payloads)), key=lambda i: len(sample.payloads[i]["events"]))
    payload = sample.payloads[index]
    shifted = payload | {
        "events": [e | {"event_time": _with_offset(e["event_time"], 9)} for e in payload["events"]],
        "tickets": [
            t | {"created_at": _with_offset(t["created_at"], -7)} for t in payload["tickets"]
        ],
    }
    assert shifted["events"][0]["event_time"].endswith("+09:00")
    assert any(
        a["event_time"][:10] != b["event_time"][:10]
        for a, b in zip(payload["events"], shifted["events"], strict=True)
    )
    online = online_features(card)
    try:
        assert compute_online(online, shifted) == sample.online[index]
    finally:
        online.close()
    assert sample.online[index] == {name: sample.rows[index][name] for name in sample.names}


def test_rows_on_or_after_the_observation_date_are_ignored(materialized, card):
    """Sending "everything up to now" gives the same features: the SQL cuts at the date."""
    import duckdb

    from tests.serving_support import history_payload

    con = duckdb.connect(str(materialized.warehouse), read_only=True)
    try:
        for row in feature_rows(materialized.warehouse, 20):
            cut = history_payload(con, row["customer_id"], row["observation_date"])
            everything = history_payload(
                con, row["customer_id"], row["observation_date"] + timedelta(days=400)
            )
            if len(everything["events"]) > len(cut["events"]):
                break
    finally:
        con.close()
    online = online_features(card)
    try:
        with_future = compute_online(online, everything | {"as_of": cut["as_of"]})
        without = compute_online(online, cut)
    finally:
        online.close()
    assert len(everything["events"]) > len(cut["events"])
    assert with_future == without
    assert without == {name: row[name] for name in card["feature_order"]}
