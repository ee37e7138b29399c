"""Online features (``/score_events``'s computation) equal the offline ``customer_features``
exactly, for real warehouse customers at several observation dates.

The history goes through the same path a client's does: serialized to JSON, validated by the
service's request model, loaded into the in-memory DuckDB, then the training SQL.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from churn.features import FEATURE_NAMES
from tests.serving_support import feature_rows, histories

SAMPLE = 40


def compute_online(online, payload: dict) -> dict:
    """What /score_events does before scoring, from a JSON body."""
    from serving.events import observation_date_of
    from serving.service import ScoreEventsRequest

    request = ScoreEventsRequest.model_validate_json(json.dumps(payload))
    return online.compute(
        request.customer.model_dump(),
        [row.model_dump() for row in request.events],
        [row.model_dump() for row in request.payments],
        [row.model_dump() for row in request.tickets],
        observation_date_of(request.as_of),
    )


@pytest.fixture(scope="module")
def offline_and_online(materialized):
    from serving.events import OnlineFeatures

    rows = feature_rows(materialized.warehouse, SAMPLE)
    online = OnlineFeatures()
    try:
        computed = [compute_online(online, p) for p in histories(materialized.warehouse, rows)]
    finally:
        online.close()
    return rows, computed


def test_sample_spans_several_observation_dates(offline_and_online):
    rows, _ = offline_and_online
    dates = Counter(row["observation_date"] for row in rows)
    assert len(dates) >= 3, dates


def test_online_features_equal_offline_exactly(offline_and_online):
    rows, computed = offline_and_online
    mismatches = [
        (row["customer_id"], row["observation_date"], name, row[name], online[name])
        for row, online in zip(rows, computed, strict=True)
        for name in FEATURE_NAMES
        if online[name] != row[name] or type(online[name]) is not type(row[name])
    ]
    assert mismatches == []


def test_rows_on_or_after_the_observation_date_are_ignored(materialized):
    """Sending "everything up to now" gives the same features: the SQL cuts at the date."""
    from datetime import timedelta

    import duckdb

    from serving.events import OnlineFeatures
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
    online = OnlineFeatures()
    try:
        with_future = compute_online(online, everything | {"as_of": cut["as_of"]})
        without = compute_online(online, cut)
    finally:
        online.close()
    assert len(everything["events"]) > len(cut["events"])
    assert with_future == without
    assert without == {name: row[name] for name in FEATURE_NAMES}
