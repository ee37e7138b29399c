"""``/score_events`` for a minimal events source, end to end: pipeline-trained model, real service.

The event log of ``tests/event_log_support.py`` runs through the whole graph; its champion is
served by ``ChurnService`` in-process (``to_asgi``, in a fresh process with that run's homes),
fed with histories read back from the staged tables. The features the service computed (its
prediction log) must equal the ``customer_features`` rows value for value, and its score the
one ``/score`` gives for those offline features. One real ``bentoml serve`` of the run's Bento
answers the same. A flat model's service keeps refusing ``/score_events``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from churn.features.events import CARD_KEY
from churn.monitoring.prediction_log import CLOSED_SUFFIX
from tests.byod_support import ExampleRun, run_example
from tests.event_log_support import (
    EVENT_TYPES,
    champion_card,
    event_log_body,
    probe,
    run_event_log,
)
from tests.serving_support import Server, free_port, wait_ready

pytestmark = pytest.mark.slow

SAMPLE = 36


@pytest.fixture(scope="module")
def log_run() -> ExampleRun:
    return run_event_log()


@pytest.fixture(scope="module")
def card(log_run) -> dict:
    return champion_card(log_run)


@pytest.fixture(scope="module")
def offline(log_run, card) -> list[dict]:
    """A sample of customer_features rows spread over the observation dates, with bodies."""
    with duckdb.connect(str(log_run.warehouse), read_only=True) as con:
        cursor = con.execute(
            "SELECT * FROM customer_features ORDER BY hash(customer_id, observation_date) LIMIT ?",
            [SAMPLE],
        )
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["_body"] = event_log_body(con, card, row["customer_id"], row["observation_date"])
    return rows


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _features(row: dict, card: dict) -> dict:
    """The /score features of an offline row: a missing value (NaN in pandas) is null."""
    return {n: None if _missing(row[n]) else row[n] for n in card["feature_order"]}


@pytest.fixture(scope="module")
def answers(log_run, card, offline, tmp_path_factory) -> tuple[list, list, list, Path]:
    """/score_events for every sampled row, /score for the same rows' offline features, then
    the refusals; answered by the service in one fresh process."""
    workdir = tmp_path_factory.mktemp("event-log-service")
    events = [{"path": "/score_events", "body": row["_body"]} for row in offline]
    scores = [
        {
            "path": "/score",
            "body": {"customer_id": f"offline-{i}", "features": _features(row, card)},
        }
        for i, row in enumerate(offline)
    ]
    body = offline[0]["_body"]
    refusals = [
        {"path": "/score_events", "body": body | {"payments": []}},
        {"path": "/score_events", "body": body | {"customer": body["customer"] | {"tier": "x"}}},
        {
            "path": "/score_events",
            "body": body | {"events": [{"event_time": "2024-01-01T00:00:00", "customer_id": "x"}]},
        },
        {"path": "/score_events", "body": body | {"events": [{"event_type": "Log In"}]}},
        {
            "path": "/score_events",
            "body": body
            | {
                "customer": {"customer_id": "unseen-type"},  # logged apart from the sample
                "events": [{"event_time": "2024-01-01T00:00:00", "event_type": "never seen"}],
            },
        },
        {
            "path": "/score_events",  # above the measure bound: overflowed the SQL (a 500)
            "body": body | {"events": [{"event_time": "2024-01-01T00:00:00", "seconds": 9.3e15}]},
        },
        {"path": "/model", "body": {}},
    ]
    answered = probe(log_run, events + scores + refusals, workdir)
    n = len(offline)
    return answered[:n], answered[n : 2 * n], answered[2 * n :], workdir


def test_the_card_carries_the_log_s_own_feature_family(card):
    spec = card[CARD_KEY]
    assert card["source_shape"] == "events" and spec["subscription_family"] is False
    assert spec["measures"] == ["seconds"] and spec["has_sessions"] is True
    assert set(spec["event_types"]) == set(EVENT_TYPES.values())
    profile = {column for column, _, _ in spec["profile"]}
    assert len(profile) == 4 and "region" in profile
    assert card["churn_definition"]["inactive_days"] == 30


def test_score_events_features_equal_customer_features(answers, offline, card):
    events, _, _, workdir = answers
    assert [a["status"] for a in events] == [200] * len(offline), events[:2]
    files = list((workdir / "prediction_logs").glob(f"*/*{CLOSED_SUFFIX}"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    logged = {
        (r["customer_id"], r["observation_date"]): r["features"]
        for r in records
        if r["route"] == "/score_events"
    }
    mismatches = []
    for row in offline:
        online = logged[(row["customer_id"], row["observation_date"].isoformat())]
        assert list(online) == card["feature_order"]
        for name in card["feature_order"]:
            want, got = row[name], online[name]
            if _missing(want):
                same = got is None
            else:
                same = got == want and (type(got) is type(want) or isinstance(want, float))
            if not same:
                mismatches.append((row["customer_id"], row["observation_date"], name, want, got))
    assert mismatches == []
    assert len({row["observation_date"] for row in offline}) >= 3


def test_score_events_scores_like_score_on_the_offline_features(answers):
    events, scores, _, _ = answers
    assert [a["status"] for a in scores] == [200] * len(scores)
    for online, direct in zip(events, scores, strict=True):
        assert online["json"]["churn_probability"] == direct["json"]["churn_probability"]
        assert online["json"]["feature_order"] == direct["json"]["feature_order"]


def _locations(answer: dict) -> list[tuple]:
    return [tuple(item["loc"]) for item in answer["json"]["detail"]]


def test_a_bad_event_log_body_is_a_400_naming_the_field(answers):
    *_, refusals, _ = answers
    payments, profile, other_customer, no_time, unseen_type, huge, model = refusals
    for answer in (payments, profile, other_customer, no_time, huge):
        assert answer["status"] == 400, answer
    assert ("payments",) in _locations(payments)
    assert ("customer", "tier") in _locations(profile)
    assert ("events", 0, "customer_id") in _locations(other_customer)
    assert ("events", 0, "event_time") in _locations(no_time)
    assert ("events", 0, "seconds") in _locations(huge)
    assert unseen_type["status"] == 200, "a type outside the vocabulary counts as other"
    assert model["json"]["event_features"]["measures"] == ["seconds"]


def test_a_flat_model_refuses_score_events_with_a_reason(tmp_path):
    flat = run_example("flat")
    body = {"customer": {"customer_id": "TEL-1"}, "events": [], "as_of": "2025-06-01T00:00:00Z"}
    (answer,) = probe(flat, [{"path": "/score_events", "body": body}], tmp_path)
    assert answer["status"] == 400
    assert "flat customer table" in json.dumps(answer["json"])


def test_bentoml_serve_answers_the_same(log_run, offline, answers, tmp_path):
    """The run's Bento under a real ``bentoml serve``: one history over HTTP, same answer."""
    instance = dg.DagsterInstance.from_config(str(log_run.dagster_home))
    event = instance.get_latest_materialization_event(dg.AssetKey("churn_bento"))
    tag = str(event.asset_materialization.metadata["bento_tag"].value)
    port = free_port()
    env = log_run.env() | {"CHURN_HOME": str(tmp_path)}
    log = tmp_path / "serve.log"
    bentoml = str(Path(sys.executable).parent / "bentoml")
    process = subprocess.Popen(
        [bentoml, "serve", tag, "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", tmp_path, process, log)
    try:
        wait_ready(server)
        response = httpx.post(f"{server.url}/score_events", json=offline[0]["_body"], timeout=30)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert response.json() == answers[0][0]["json"]
