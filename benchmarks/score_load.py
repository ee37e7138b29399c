"""Closed-loop load on ``POST /score`` of a running service: latency p50/p99 and requests/s.

Runs in its own process (so the client does not share the server's GIL), one keep-alive httpx
client per thread; each thread sends the next request as soon as the previous answer arrives::

    python -m benchmarks.score_load --url http://127.0.0.1:3001 --concurrency 1 8 --seconds 10

The request body is a real feature row (``--body`` JSON file), or a built-in typical customer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import httpx


def run(url: str, body: bytes, concurrency: int, seconds: float, headers: dict) -> dict:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop = time.perf_counter() + seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = client.post("/score", content=body)
                latencies[index].append(time.perf_counter() - started)
                errors[index] += response.status_code != 200

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    samples = sorted(x for per_thread in latencies for x in per_thread)
    quantiles = statistics.quantiles(samples, n=100)
    return {
        "concurrency": concurrency,
        "requests": len(samples),
        "errors": sum(errors),
        "requests_per_second": round(len(samples) / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
        "max_ms": round(samples[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:3001")
    parser.add_argument("--body", type=Path, required=True, help="JSON body for /score")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--key", default=None, help="API key, if the service has keys")
    args = parser.parse_args()
    headers = {"content-type": "application/json"}
    if args.key:
        headers["authorization"] = f"Bearer {args.key}"
    body = args.body.read_bytes()
    run(args.url, body, 1, 1.0, headers)  # warm-up
    for concurrency in args.concurrency:
        print(json.dumps(run(args.url, body, concurrency, args.seconds, headers)))


if __name__ == "__main__":
    main()
