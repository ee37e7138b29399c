"""Soak: the built Bento under ``bentoml serve`` (one worker) at concurrency 32 for five minutes.

Zero errors; the server's resident memory (its whole process tree, from /proc) grows less than
10% after a one-minute warm-up; and after shutdown the published prediction logs hold exactly one
row per customer answered with a 200 (every request uses fresh customer ids).
``CHURN_SOAK_SECONDS`` shortens or lengthens the run (default 300).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import random
import threading
import time
from typing import Any

import httpx
import pytest

from tests.reliability_support import logged_records, tree_rss_bytes
from tests.serving_support import (
    bento_tag,
    feature_rows,
    histories,
    request_features,
    start,
    wait_ready,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SOAK_SECONDS = float(os.environ.get("CHURN_SOAK_SECONDS", "300"))
WARM_UP_SECONDS = min(60.0, SOAK_SECONDS / 5)
CONCURRENCY = 32
MAX_GROWTH = 0.10


async def _drive(url: str, bodies: dict[str, Any], deadline: float) -> dict[str, Any]:
    ids = itertools.count()
    answered: collections.Counter = collections.Counter()
    errors: list[str] = []
    requests: collections.Counter = collections.Counter()
    latencies: list[float] = []
    rng = random.Random(3)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            n = next(ids)
            pick = rng.random()
            if pick < 0.8:
                route, body = "/score", dict(bodies["score"][n % len(bodies["score"])])
                body["customer_id"] = f"soak-{n}"
            elif pick < 0.9:
                route = "/score_batch"
                body = {
                    "customers": [
                        {"customer_id": f"soak-{n}-{k}", "features": row["features"]}
                        for k, row in enumerate(bodies["score"][:8])
                    ]
                }
            else:
                route, body = "/score_events", dict(bodies["events"][n % len(bodies["events"])])
                body["customer"] = dict(body["customer"], customer_id=f"soak-{n}")
            started = time.perf_counter()
            try:
                response = await client.post(route, json=body)
            except httpx.HTTPError as error:
                errors.append(f"{route}: {type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - started)
            requests[route] += 1
            if response.status_code != 200:
                errors.append(f"{route}: {response.status_code} {response.text[:300]}")
                continue
            payload = response.json()
            scores = payload.get("scores", [payload])
            answered.update(score["customer_id"] for score in scores)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    latencies.sort()
    return {
        "answered": answered,
        "errors": errors,
        "requests": requests,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
    }


def _history_body(history: dict[str, Any]) -> dict[str, Any]:
    for table in ("events", "payments", "tickets"):
        history[table] = [
            {k: v for k, v in r.items() if k != "customer_id"} for r in history[table]
        ]
    return history


@pytest.mark.timeout(int(SOAK_SECONDS) + 600)
def test_soak_at_concurrency_32(materialized, tmp_path, capsys):
    rows = feature_rows(materialized.warehouse, 50)
    bodies = {
        "score": [{"customer_id": "x", "features": request_features(r)} for r in rows],
        "events": [_history_body(h) for h in histories(materialized.warehouse, rows[:5])],
    }
    server = start(bento_tag(materialized), tmp_path / "soak", None)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    try:
        wait_ready(server)
        began = time.monotonic()

        def sample() -> None:
            while not stop.wait(2.0):
                samples.append((time.monotonic() - began, tree_rss_bytes(server.process.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        outcome = asyncio.run(_drive(server.url, bodies, began + SOAK_SECONDS))
        elapsed = time.monotonic() - began
        stop.set()
        sampler.join(timeout=10)
    finally:
        stop.set()
        code = server.stop()

    warm = [rss for t, rss in samples if t <= WARM_UP_SECONDS]
    after = [rss for t, rss in samples if t > WARM_UP_SECONDS]
    baseline, final, peak = warm[-1], after[-1], max(after)
    growth, peak_growth = final / baseline - 1, peak / baseline - 1
    records = logged_records(server.home)
    logged = collections.Counter(r["customer_id"] for r in records)
    total = sum(outcome["requests"].values())
    with capsys.disabled():
        print(  # noqa: T201
            f"\nsoak: {elapsed:.0f} s at concurrency {CONCURRENCY}, {total} requests "
            f"({total / elapsed:.0f}/s; {dict(outcome['requests'])}), "
            f"{len(outcome['errors'])} errors, p50 {outcome['p50_ms']:.1f} ms, "
            f"p99 {outcome['p99_ms']:.1f} ms; RSS after warm-up {baseline / 2**20:.0f} MiB, "
            f"end {final / 2**20:.0f} MiB ({growth:+.1%}), peak {peak / 2**20:.0f} MiB "
            f"({peak_growth:+.1%}); {len(records)} log rows for "
            f"{sum(outcome['answered'].values())} scored rows"
        )
    assert code == 0, server.log.read_text()[-2000:]  # a graceful SIGTERM: logs published
    assert not outcome["errors"], outcome["errors"][:10]
    assert elapsed >= SOAK_SECONDS * 0.98
    assert growth < MAX_GROWTH and peak_growth < MAX_GROWTH, (baseline, final, peak)
    assert not list((server.home / "prediction_logs").glob("*/*.open"))
    assert logged == outcome["answered"]
    assert max(logged.values()) == 1
