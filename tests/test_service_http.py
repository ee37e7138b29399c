"""End to end: the Bento built by ``churn_bento``, served by a real ``bentoml serve`` on a free
port, spoken to over HTTP. Two servers start side by side (keys on, keys off); each is stopped
with SIGTERM, after which its prediction log files must be published."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from churn.monitoring.prediction_log import CLOSED_SUFFIX
from tests.serving_support import (
    KEY,
    Server,
    bento_tag,
    feature_rows,
    histories,
    request_features,
    serving,
    start,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(materialized, tmp_path_factory) -> Iterator[dict[str, Server]]:
    tag = bento_tag(materialized)
    root = tmp_path_factory.mktemp("http")
    started = {
        "open": start(tag, root / "open", None),
        "secured": start(tag, root / "secured", f"{KEY},second-key"),
    }
    with serving(started):
        yield started
        _shutdown_publishes_prediction_logs_and_keeps_keys_out(
            started, feature_rows(materialized.warehouse, 1)[0]
        )


@pytest.fixture(scope="module")
def rows(materialized) -> list[dict]:
    return feature_rows(materialized.warehouse, 5)


@pytest.fixture(scope="module")
def http(servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers["open"].url, timeout=30) as client:
        yield client


def body(row: dict) -> dict:
    return {"customer_id": row["customer_id"], "features": request_features(row)}


def test_served_bento_is_the_champion(http, materialized):
    card = http.post("/model", json={}).json()
    assert bento_tag(materialized).split(":")[1] == card["model_version"]
    assert card["feature_order"] and card["thresholds"]["default"] is not None


def test_score_and_batch(http, rows):
    single = http.post("/score", json=body(rows[0]))
    assert single.status_code == 200, single.text
    batch = http.post("/score_batch", json={"customers": [body(r) for r in rows]})
    assert batch.status_code == 200, batch.text
    scores = batch.json()["scores"]
    assert [s["customer_id"] for s in scores] == [r["customer_id"] for r in rows]
    assert scores[0]["churn_probability"] == single.json()["churn_probability"]
    assert len(scores[0]["reasons"]) == 3


def test_score_events_parity_over_http(http, materialized, rows):
    for row, history in zip(rows[:2], histories(materialized.warehouse, rows[:2]), strict=True):
        online = http.post("/score_events", json=history)
        assert online.status_code == 200, online.text
        offline = http.post("/score", json=body(row)).json()
        assert online.json()["churn_probability"] == offline["churn_probability"]
        assert online.json()["reasons"] == offline["reasons"]


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        (lambda b: b["features"].pop("age"), ["features", "age"]),
        (lambda b: b["features"].update(unknown_feature=1), ["features", "unknown_feature"]),
        (lambda b: b["features"].update(age="old"), ["features", "age"]),
        (lambda b: b["features"].update(tenure_days=-3), ["features", "tenure_days"]),
        (lambda b: b["features"].update(plan="gold"), ["features", "plan"]),
        (lambda b: b.update(threshold=2), ["threshold"]),
    ],
)
def test_bad_input_is_400_naming_the_field(http, rows, mutate, location):
    payload = body(rows[0])
    mutate(payload)
    response = http.post("/score", json=payload)
    assert response.status_code == 400
    assert location in [item["loc"] for item in response.json()["detail"]]


def test_malformed_and_oversized_requests_are_4xx(http, rows):
    assert http.post("/score", content=b"{oops", headers=_json()).status_code == 400
    empty = http.post("/score_batch", json={"customers": []})
    assert empty.status_code == 400 and empty.json()["detail"][0]["loc"] == ["customers"]
    too_many = http.post("/score_batch", json={"customers": [body(rows[0])] * 1001})
    assert too_many.status_code == 400 and too_many.json()["detail"][0]["loc"] == ["customers"]
    nan = json.dumps(body(rows[0])).replace('"age": ', '"age": NaN, "x": ', 1)
    assert http.post("/score", content=nan, headers=_json()).status_code == 400


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


def test_auth_over_http(servers, rows):
    url = servers["secured"].url
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200
    assert httpx.post(f"{url}/score", json=body(rows[0])).status_code == 401
    wrong = httpx.post(f"{url}/model", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    for key in (KEY, "second-key"):
        ok = httpx.post(
            f"{url}/score", json=body(rows[0]), headers={"Authorization": f"Bearer {key}"}
        )
        assert ok.status_code == 200, ok.text


def _shutdown_publishes_prediction_logs_and_keeps_keys_out(
    servers: dict[str, Server], row: dict
) -> None:
    """At the module's end (the servers fixture's finalizer): after a scored request, a graceful
    stop publishes each server's log, leaves no open file, and no key is in its output."""
    for name, server in servers.items():
        headers = {"Authorization": f"Bearer {KEY}"} if name == "secured" else {}
        scored = httpx.post(f"{server.url}/score", json=body(row), headers=headers, timeout=30)
        assert scored.status_code == 200, scored.text
        assert server.stop() == 0, (name, server.log.read_text()[-2000:])
        files = list((server.home / "prediction_logs").glob(f"*/*{CLOSED_SUFFIX}"))
        assert files, (name, server.log.read_text()[-2000:])
        assert not list((server.home / "prediction_logs").glob("*/*.open"))
        records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        assert records and all(r["model_version"] for r in records)
        assert KEY not in server.log.read_text()
