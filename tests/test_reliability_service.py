"""Reliability and access over real HTTP: the built Bento under ``bentoml serve``, fuzzed and
attacked. Two servers (keys off, keys on); at the end both are stopped and their prediction logs
must hold exactly one row per customer scored with a 200 and none for anything refused.

The long fuzz run (>= 1,000 requests) is ``test_reliability_fuzz.py`` (``make reliability``).
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from churn.features import FEATURE_NAMES
from tests.reliability_support import fuzz, logged_records, refusal_problems, scored_ids
from tests.serving_support import (
    Server,
    bento_tag,
    feature_rows,
    histories,
    request_features,
    serving,
    start,
)

pytestmark = pytest.mark.slow

KEY = "reliability-key-7f3a"
WRONG_KEY = "reliability-wrong-key-91c2"
FUZZ_EXAMPLES = 25
"""Per operation and generation mode: 4 scoring routes x 2 modes x 25 = 200 requests."""
JSON = {"content-type": "application/json"}

# What each server must have logged when it stops: customer ids answered with a 200 (as many
# times as answered) and ids of refused requests (never).
SCORED: dict[str, collections.Counter] = {
    "open": collections.Counter(),
    "secured": collections.Counter(),
}
REFUSED: dict[str, set[str]] = {"open": set(), "secured": set()}


@pytest.fixture(scope="module")
def servers(materialized, tmp_path_factory) -> Iterator[dict[str, Server]]:
    tag = bento_tag(materialized)
    root = tmp_path_factory.mktemp("reliability-http")
    started = {
        "open": start(tag, root / "open", None),
        "secured": start(tag, root / "secured", KEY),
    }
    with serving(started):
        yield started
        _logs_hold_every_scored_row_once_and_no_refused_one(started)


@pytest.fixture(scope="module")
def rows(materialized) -> list[dict[str, Any]]:
    return feature_rows(materialized.warehouse, 3)


@pytest.fixture(scope="module")
def history(materialized, rows) -> dict[str, Any]:
    return histories(materialized.warehouse, rows[:1])[0]


def post(server: Server, route: str, name: str, *, content: bytes | None = None, **kwargs):
    """POST and book the outcome: 200 ids must be logged, refused ``name``s never."""
    response = httpx.post(f"{server.url}{route}", content=content, timeout=30, **kwargs)
    assert response.status_code < 500, response.text
    key = server.home.name  # "open" or "secured"
    if response.status_code == 200:
        SCORED[key].update(scored_ids(response.json()))
    else:
        REFUSED[key].add(name)
    return response


def as_customer(history: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """A copy of ``history`` for another customer id (history rows then name no customer)."""
    body = json.loads(json.dumps(history))
    body["customer"]["customer_id"] = customer_id
    for table in ("events", "payments", "tickets"):
        for row in body[table]:
            row.pop("customer_id", None)
    return body


def test_fuzz_every_route_with_schemathesis(servers, capsys):
    report = fuzz(servers["open"].url, FUZZ_EXAMPLES)
    SCORED["open"].update(report.scored)
    with capsys.disabled():
        print(  # noqa: T201
            f"\nfuzz: {report.requests} requests in {report.seconds:.0f} s, "
            f"statuses {sorted(collections.Counter(s for *_, s in report.statuses.elements()).items())}"
        )
    assert not report.failures, "\n\n".join(report.failures[:10])
    assert report.requests >= 8 * FUZZ_EXAMPLES * 0.9
    assert not [key for key in report.statuses if key[2] >= 500]
    routes = {label for label, _, _ in report.statuses}
    assert {"POST /score", "POST /score_batch", "POST /score_events", "POST /model"} <= routes


HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", str(10**40), str(-(10**40))]
HOSTILE_VALUES: list[Any] = [
    "١٢",  # Arabic-Indic digits
    "💥",
    "\u0000",
    "ｂａｓｉｃ",  # fullwidth
    "1' OR '1'='1",
    True,
    None,
    [1],
    {"$gt": 0},
    [[[[[[[[[[{"a": [1, {"b": None}]}]]]]]]]]]],
    "",
]


def _score_body(row: dict[str, Any], customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "features": request_features(row)}


def test_hostile_feature_values_are_refused_naming_the_feature(servers, rows):
    server = servers["open"]
    baseline = post(server, "/score", "ok-baseline", json=_score_body(rows[0], "ok-baseline"))
    assert baseline.status_code == 200
    sent = 0
    for name in FEATURE_NAMES:
        for i, raw in enumerate(HOSTILE_NUMBERS + [json.dumps(v) for v in HOSTILE_VALUES]):
            customer_id = f"refused-{name}-{i}"
            body = json.dumps(_score_body(rows[0], customer_id))
            prefix = f'"{name}": '
            start_at = body.index(prefix) + len(prefix)
            end_at = min(p for p in (body.find(",", start_at), body.find("}", start_at)) if p > 0)
            tampered = body[:start_at] + raw + body[end_at:]
            response = post(server, "/score", customer_id, content=tampered.encode(), headers=JSON)
            sent += 1
            assert response.status_code == 400, (name, raw, response.text)
            assert ["features", name] in [d["loc"] for d in response.json()["detail"]], (
                name,
                raw,
                response.text,
            )
    assert sent == len(FEATURE_NAMES) * (len(HOSTILE_NUMBERS) + len(HOSTILE_VALUES))


def test_one_bad_row_refuses_the_whole_batch_before_scoring(servers, rows):
    server = servers["open"]
    customers = [_score_body(row, f"refused-batch-{i}") for i, row in enumerate(rows)]
    customers[1]["features"]["age"] = 10**12
    response = post(server, "/score_batch", "refused-batch", json={"customers": customers})
    assert response.status_code == 400
    assert ["customers", 1, "features", "age"] in [d["loc"] for d in response.json()["detail"]]
    REFUSED["open"].update(c["customer_id"] for c in customers)


def test_oversized_bodies_and_batches_are_refused_before_any_work(servers, rows):
    server = servers["open"]
    padding = "x" * (33 * 1024 * 1024)
    big = json.dumps({"customer_id": "refused-big", "features": {"plan": padding}}).encode()
    declared = post(server, "/score", "refused-big", content=big, headers=JSON)
    assert declared.status_code == 413 and declared.json()["detail"][0]["loc"] == ["body"]

    def chunks() -> Iterator[bytes]:
        yield b'{"customer_id": "refused-chunked", "features": {"plan": "'
        for _ in range(34):
            yield b"y" * (1024 * 1024)
        yield b'"}}'

    chunked = post(server, "/score_events", "refused-chunked", content=chunks(), headers=JSON)
    assert chunked.status_code == 413
    too_many = [_score_body(rows[0], f"refused-many-{i}") for i in range(1001)]
    batch = post(server, "/score_batch", "refused-many", json={"customers": too_many})
    assert batch.status_code == 400 and batch.json()["detail"][0]["loc"] == ["customers"]
    REFUSED["open"].update(c["customer_id"] for c in too_many)
    empty = post(server, "/score_batch", "refused-empty", json={"customers": []})
    assert empty.status_code == 400 and empty.json()["detail"][0]["loc"] == ["customers"]


def test_hostile_history_values_never_reach_the_model(servers, history):
    """Every column of every history table, and the profile, gets junk: refused naming it."""
    server = servers["open"]
    for table in ("customer", "events", "payments", "tickets"):
        row = history[table] if table == "customer" else (history[table] or [None])[0]
        if row is None:
            continue
        for column in [c for c in row if c != "customer_id"]:
            for i, value in enumerate([math.inf, 1e300, "💥\u0000", {"a": [1]}, [], True]):
                customer_id = f"refused-history-{table}-{column}-{i}"
                body = as_customer(history, customer_id)
                target = body[table] if table == "customer" else body[table][0]
                target[column] = value
                text = json.dumps(body, allow_nan=True).encode()
                response = post(server, "/score_events", customer_id, content=text, headers=JSON)
                if response.status_code == 200:
                    # Free-text ids the feature SQL never reads may hold any string.
                    assert column.endswith("_id") and isinstance(value, str), response.text
                    continue
                assert response.status_code == 400, response.text
                locs = [d["loc"] for d in response.json()["detail"]]
                path = [table, column] if table == "customer" else [table, 0, column]
                assert any(loc[: len(path)] == path for loc in locs), (path, response.text)


INJECTIONS = [
    "'; DROP TABLE stg_events; --",
    "x' OR '1'='1",
    '"); DELETE FROM stg_customers; --',
    "1; ATTACH '/tmp/evil.duckdb' AS evil; --",
    "$$ SELECT 1 $$",
]


def test_sql_injection_strings_in_every_string_field(servers, history):
    """Each free string field of /score_events carries SQL: the answer is a normal score (the
    value is data) or a 400 (a field with allowed values), and later scores do not change."""
    server = servers["open"]
    before = post(
        server, "/score_events", "ok-injection", json=as_customer(history, "ok-injection")
    )
    assert before.status_code == 200
    expected = before.json()["churn_probability"]
    outcomes: collections.Counter = collections.Counter()
    scores: dict[tuple[str, str], set[float]] = {}
    for table in ("customer", "events", "payments", "tickets"):
        row = history[table] if table == "customer" else (history[table] or [{}])[0]
        for column, value in row.items():
            if not isinstance(value, str) or _is_temporal(value):
                continue
            if column == "customer_id" and table != "customer":
                continue  # history rows may only name the profile's customer
            for n, injection in enumerate(INJECTIONS):
                name = injection if column == "customer_id" else f"inj-{table}-{column}-{n}"
                body = as_customer(history, name)
                target = body[table] if table == "customer" else body[table][0]
                target[column] = injection
                response = post(server, "/score_events", name, json=body)
                outcomes[response.status_code] += 1
                assert response.status_code in (200, 400), response.text
                if response.status_code == 200:
                    probability = response.json()["churn_probability"]
                    scores.setdefault((table, column), set()).add(probability)
                    if column.endswith("_id") and column != "session_id":
                        assert probability == expected, (table, column)  # never read by the SQL
                else:
                    locs = [d["loc"] for d in response.json()["detail"]]
                    path = [table, column] if table == "customer" else [table, 0, column]
                    assert path in locs, (path, response.text)
    after = post(server, "/score_events", "ok-after", json=as_customer(history, "ok-after"))
    assert after.json()["churn_probability"] == expected
    assert outcomes[200] and outcomes[400]
    # Whatever the injected text, a field scores the same: it is a value, never code.
    assert all(len(probabilities) == 1 for probabilities in scores.values()), scores


def _is_temporal(value: str) -> bool:
    return len(value) >= 10 and value[4] == "-" and value[7] == "-" and value[:4].isdigit()


def test_every_scoring_route_refuses_missing_or_wrong_keys(servers, rows, history):
    server = servers["secured"]
    document = httpx.get(f"{server.url}/docs.json", timeout=10)
    assert document.status_code == 200  # the OpenAPI document stays open
    paths = document.json()["paths"]
    scoring = sorted(p for p, ops in paths.items() if "post" in ops)
    assert set(scoring) == {"/model", "/score", "/score_batch", "/score_events"}
    bodies = {
        "/model": {},
        "/score": _score_body(rows[0], "refused-auth"),
        "/score_batch": {"customers": [_score_body(rows[0], "refused-auth")]},
        "/score_events": as_customer(history, "refused-auth"),
    }
    headers = [
        {},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
        {"Authorization": "Bearer"},
    ]
    for route in scoring:
        for header in headers:
            response = post(server, route, "refused-auth", json=bodies[route], headers=header)
            assert response.status_code == 401, (route, header, response.text)
            assert response.json()["detail"][0]["loc"] == ["header", "Authorization"]
            assert KEY not in response.text and WRONG_KEY not in response.text
    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    metrics = httpx.get(f"{server.url}/metrics", timeout=10)
    assert metrics.status_code in (200, 404), metrics.text  # open (404 if metrics are off)
    ok = post(
        server,
        "/score",
        "ok-auth",
        json=_score_body(rows[0], "ok-auth"),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert ok.status_code == 200


def test_refusal_bodies_name_a_field():
    assert refusal_problems(400, '{"detail": [{"loc": ["features", "age"], "type": "x"}]}') is None
    assert refusal_problems(400, '{"detail": [{"loc": [], "type": "int_type"}]}')
    assert refusal_problems(400, "not json")


def _logs_hold_every_scored_row_once_and_no_refused_one(servers: dict[str, Server]) -> None:
    """When the module's servers shut down (the fixture's finalizer, after every test here):
    each exits cleanly, its log holds every answered row once and no refused one, and no key
    appears anywhere it wrote."""
    for name, server in servers.items():
        assert server.stop() == 0, (name, server.log.read_text()[-2000:])  # graceful SIGTERM
        records = logged_records(server.home)
        assert not list((server.home / "prediction_logs").glob("*/*.open"))
        logged = collections.Counter(r["customer_id"] for r in records)
        assert logged == SCORED[name], name
        assert not (set(logged) & REFUSED[name]), name
        text = server.log.read_text() + "".join(
            p.read_text() for p in Path(server.home, "prediction_logs").glob("*/*")
        )
        assert KEY not in text and WRONG_KEY not in text, name
