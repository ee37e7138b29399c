"""A full disk under a served Bento (issue 28, item 1): a real ``bentoml serve`` whose
``CHURN_HOME`` (prediction logs) and ``BENTOML_HOME`` (model store and Prometheus' multiprocess
files) live on one small tmpfs, which the test fills while requests arrive and then frees.

Guarantees: the worker stays alive (same pid, no restart); ``/livez`` 200 and ``/readyz`` 503
while the log cannot be written, 200 again once space returns; every request answered 200 is
in the published logs after shutdown, exactly once (the rows wait in memory, bounded, and are
flushed when the disk has room: ``serving.prediction_logging``). Runs in ``make test`` (root
only: CI runs as root) and is reported by ``make reliability``."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.full_disk_support import fill, free, small_disk
from tests.reliability_support import logged_records, process_tree, scored_ids
from tests.serving_support import bento_tag, feature_rows, free_port, request_features

pytestmark = pytest.mark.slow

REQUESTS_DURING_OUTAGE = 40


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _wait_for(check, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.2)


def test_a_full_disk_keeps_the_worker_and_logs_every_answer(materialized, tmp_path):
    tag = bento_tag(materialized)
    row = feature_rows(materialized.warehouse, 1)[0]
    with small_disk(tmp_path / "disk", "24m") as disk:
        store, home = disk / "bentoml", disk / "home"
        shutil.copytree(Path(os.environ["BENTOML_HOME"]), store, symlinks=True)
        shutil.rmtree(store / "prometheus_multiproc_dir", ignore_errors=True)
        home.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        bin_dir = Path(sys.executable).parent
        env = os.environ | {
            "BENTOML_HOME": str(store),
            "CHURN_HOME": str(home),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        }
        for name in ("CHURN_MODEL_TAG", "CHURN_API_KEYS"):
            env.pop(name, None)
        log = tmp_path / "serve.log"  # off the small disk, so the server's log always lands
        server = subprocess.Popen(
            [f"{bin_dir}/bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        answered: collections.Counter[str] = collections.Counter()
        statuses: collections.Counter[int] = collections.Counter()
        try:
            _wait_for(lambda: _status(f"{url}/readyz") == 200, 300, "/readyz 200", log)

            def score(customer_id: str) -> int:
                body = {"customer_id": customer_id, "features": request_features(row)}
                response = httpx.post(f"{url}/score", json=body, timeout=30)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200:
                    answered.update(scored_ids(response.json()))
                return response.status_code

            for i in range(3):
                assert score(f"before-{i}") == 200
            workers = set(process_tree(server.pid)) - {server.pid}
            assert workers
            fill(disk)
            for i in range(REQUESTS_DURING_OUTAGE):  # ~2 KB each: more than the page left
                statuses[score(f"during-{i}")] += 1
            # a flush failed: not ready while the rows cannot be written
            _wait_for(lambda: _status(f"{url}/readyz") == 503, 30, "/readyz 503", log)
            assert _status(f"{url}/livez") == 200
            assert server.poll() is None
            assert set(process_tree(server.pid)) - {server.pid} == workers, "worker restarted"
            free(disk)
            _wait_for(lambda: _status(f"{url}/readyz") == 200, 90, "/readyz 200 again", log)
            assert score("after") == 200
            assert set(process_tree(server.pid)) - {server.pid} == workers, "worker restarted"
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        output = log.read_text()
        assert "SIGBUS" not in output and "exit code 135" not in output
        logged = collections.Counter(r["customer_id"] for r in logged_records(home))
        assert statuses[200] > 0, statuses
        assert logged == answered, (statuses, len(logged), len(answered))
        assert sum(answered.values()) == 4 + statuses[200]
