"""The served Bento on a bad day: a failing log disk, a killed worker, a damaged model, a
client rotating ``X-Forwarded-For``, and (``make reliability``) a flood of maximal bodies.
Real ``bentoml serve`` processes on loopback, spoken to over HTTP."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from churn.monitoring.prediction_log import OPEN_SUFFIX
from tests.reliability_support import logged_records, process_tree, scored_ids, tree_rss_bytes
from tests.serving_support import (
    bento_tag,
    feature_rows,
    free_port,
    histories,
    request_features,
    serving,
    start,
)

pytestmark = pytest.mark.slow


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _score_body(row: dict[str, Any], customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "features": request_features(row)}


def test_every_answer_reaches_the_log_through_a_failing_disk_and_a_killed_worker(
    materialized, tmp_path
):
    """Item 4: the log's day folder cannot be created (a file is in the way): answers go on,
    ``/readyz`` turns 503 until the disk is back, then every row lands. A SIGKILLed worker's
    open file is sealed by its replacement. After shutdown: logged ids == answered ids."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "prediction_logs").write_text("in the way")
    row = feature_rows(materialized.warehouse, 1)[0]
    answered: collections.Counter = collections.Counter()
    with serving({"s": start(bento_tag(materialized), home, None)}) as servers:
        server = servers["s"]

        def score(customer_id: str) -> None:
            response = httpx.post(
                f"{server.url}/score", json=_score_body(row, customer_id), timeout=30
            )
            assert response.status_code == 200, response.text
            answered.update(scored_ids(response.json()))

        for i in range(3):
            score(f"during-outage-{i}")
        _wait_for(lambda: _status(f"{server.url}/readyz") == 503, 15, "/readyz 503")
        assert _status(f"{server.url}/livez") == 200
        (home / "prediction_logs").unlink()
        _wait_for(lambda: _status(f"{server.url}/readyz") == 200, 90, "/readyz 200 again")
        for i in range(3):
            score(f"before-kill-{i}")
        _wait_for(lambda: len(logged_records(home, include_open=True)) == 6, 10, "rows on disk")
        assert list((home / "prediction_logs").glob(f"*/*{OPEN_SUFFIX}"))
        workers = [pid for pid in process_tree(server.process.pid) if pid != server.process.pid]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: _status(f"{server.url}/readyz") == 200, 120, "a new worker")
        score("after-kill")
    assert server.process.returncode is not None
    assert not list((home / "prediction_logs").glob(f"*/*{OPEN_SUFFIX}"))
    logged = collections.Counter(r["customer_id"] for r in logged_records(home))
    assert logged == answered and sum(answered.values()) == 7


def test_a_rotating_forwarded_for_does_not_escape_the_rate_limit(materialized, tmp_path):
    """Item 11: without keys the caller is the client address; uvicorn used to believe any
    loopback peer's ``X-Forwarded-For``, so each forged address got a fresh bucket."""
    extra = {"CHURN_RATE_LIMIT": "3/m", "CHURN_RATE_BURST": "3"}
    with serving({"s": start(bento_tag(materialized), tmp_path / "h", None, extra)}) as servers:
        url = servers["s"].url
        statuses = [
            httpx.post(
                f"{url}/model", json={}, headers={"X-Forwarded-For": f"203.0.113.{i}"}, timeout=30
            ).status_code
            for i in range(8)
        ]
    assert statuses.count(200) == 3 and statuses.count(429) == 5, statuses


def test_dates_and_media_types_are_refused_not_500(materialized, tmp_path):
    """Item 6 over HTTP: non-JSON bodies are 415 before BentoML parses them; dates near the
    calendar's ends are 400 naming the field."""
    history = histories(materialized.warehouse, feature_rows(materialized.warehouse, 1))[0]
    with serving({"s": start(bento_tag(materialized), tmp_path / "h", None)}) as servers:
        url = servers["s"].url
        bodies = {
            "multipart/form-data; boundary=zz": b"--zz\r\nContent-Disposition: form-data; "
            b'name="customer_id"\r\n\r\n\xed\xa0\x80\r\n--zz--\r\n',
            "multipart/form-data; boundary=": b"--\r\n",
            "application/x-www-form-urlencoded": b"&".join(b"f%d=1" for i in range(5000)),
        }
        for route in ("/score", "/score_batch", "/score_events", "/model"):
            for media_type, body in bodies.items():
                response = httpx.post(
                    f"{url}{route}", content=body, headers={"content-type": media_type}, timeout=30
                )
                assert response.status_code == 415, (route, media_type, response.text)
        cases = [
            (("as_of",), {"as_of": "9999-12-31T23:00:00-05:00"}),
            (("as_of",), {"as_of": "0001-01-01T00:30:00+01:00"}),
            (
                ("customer", "signup_date"),
                {"customer": history["customer"] | {"signup_date": "0001-01-01"}},
            ),
        ]
        for loc, change in cases:
            response = httpx.post(f"{url}/score_events", json=history | change, timeout=30)
            assert response.status_code == 400, response.text
            assert list(loc) in [d["loc"] for d in response.json()["detail"]]
        if history["events"]:
            events = [dict(history["events"][0], event_time="9999-12-31T23:59:59+14:00")]
            response = httpx.post(
                f"{url}/score_events", json=history | {"events": events}, timeout=30
            )
            assert response.status_code == 400
            assert ["events", 0, "event_time"] in [d["loc"] for d in response.json()["detail"]]
        big_key = {"k" * 900_000: 1}
        response = httpx.post(f"{url}/model", json=big_key, timeout=30)
        assert response.status_code == 400 and len(response.content) < 2000
        log = servers["s"].log
    text = log.read_text()
    assert "k" * 1000 not in text and "Traceback" not in text


def _serve_store_copy(store: Path, tag: str, log: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "BENTOML_HOME": str(store),
        "CHURN_HOME": str(store.parent / "home"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    env.pop("CHURN_MODEL_TAG", None)
    return subprocess.Popen(
        [f"{bin_dir}/bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    ("damaged", "content"),
    [("model.pkl", b""), ("model.pkl", None), ("card.json", b'{"feature_schema": [')],
    ids=["empty model.pkl", "truncated model.pkl", "corrupt card.json"],
)
def test_a_damaged_model_stops_the_bento_at_once_naming_tag_and_file(
    materialized, tmp_path, damaged, content
):
    """Item 10: used to crash-loop every 10 s forever (model.pkl) or say only ``No module named
    'churn_service'`` (card.json)."""
    tag = bento_tag(materialized)
    store = tmp_path / "bentoml"
    shutil.copytree(Path(os.environ["BENTOML_HOME"]), store, symlinks=True)
    version = tag.split(":")[1]
    target = store / "models" / "churn_model" / version / damaged
    original = target.read_bytes()
    target.write_bytes(original[: len(original) // 2] if content is None else content)
    log = tmp_path / "serve.log"
    process = _serve_store_copy(store, tag, log)
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running after 120 s:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    assert code != 0
    assert "ModelLoadError" in output and f"churn_model:{version}" in output, output[-3000:]
    assert damaged in output and "No module named" not in output


@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_a_flood_of_maximal_bodies_is_bounded_in_memory(materialized, tmp_path, capsys):
    """Item 8: 24 concurrent 31 MiB ``/score_events`` bodies (under the 32 MiB cap). Without a
    bound on bytes in flight the worker parsed all of them at once (333 MiB -> 5.1 GB, 22 of
    24 answered 504). Now the excess gets 503 + Retry-After at once and peak RSS stays near one
    or two bodies' worth of parsing."""
    history = histories(materialized.warehouse, feature_rows(materialized.warehouse, 1))[0]
    base = history["events"] or [{"event_type": "login", "event_time": history["as_of"][:19]}]
    history["events"] = [dict(base[i % len(base)], event_id=f"E{i:011d}") for i in range(100_000)]
    body = json.dumps(history).encode()
    pays = history["payments"] or [
        {
            "payment_date": history["as_of"][:10],
            "amount": 1.0,
            "status": "succeeded",
            "payment_method": "card",
            "attempt": 1,
        }
    ]
    per_row = len(json.dumps(pays[0])) + 2
    rows = min(100_000, (31 * 1024 * 1024 - len(body)) // per_row)
    history["payments"] = [dict(pays[i % len(pays)], payment_id=f"P{i:011d}") for i in range(rows)]
    body = json.dumps(history).encode()
    assert 30 * 2**20 < len(body) < 32 * 2**20
    with serving({"s": start(bento_tag(materialized), tmp_path / "h", None)}) as servers:
        server = servers["s"]
        time.sleep(2)
        before = tree_rss_bytes(server.process.pid)
        samples = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(tree_rss_bytes(server.process.pid))
                time.sleep(0.1)

        answers: list[tuple[int, str | None]] = []

        def send() -> None:
            response = httpx.post(
                f"{server.url}/score_events",
                content=body,
                headers={"content-type": "application/json"},
                timeout=120,
            )
            answers.append((response.status_code, response.headers.get("retry-after")))

        sampler = threading.Thread(target=sample)
        sampler.start()
        clients = [threading.Thread(target=send) for _ in range(24)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        done.set()
        sampler.join()
    statuses = collections.Counter(status for status, _ in answers)
    with capsys.disabled():
        print(  # noqa: T201
            f"\nflood: statuses {dict(statuses)}; tree RSS before {before >> 20} MiB, "
            f"peak {max(samples) >> 20} MiB"
        )
    assert len(answers) == 24 and set(statuses) <= {200, 400, 503}, statuses
    assert all(retry == "1" for status, retry in answers if status == 503)
    assert statuses[503] >= 20  # at most two 31 MiB bodies fit in the 64 MiB budget
    assert max(samples) - before < 1024 * 2**20
