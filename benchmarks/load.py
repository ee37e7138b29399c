"""Closed-loop HTTP load: ``concurrency`` keep-alive connections, each sending the next POST as
soon as the previous answer arrives, for ``seconds``; latency percentiles and requests/s.

Two drivers with the same output:

* ``wrk`` (C, event loop, one thread) when it is on PATH: a few percent of one core at the rates
  measured here, so the server, not the client, is the bottleneck. The POST body and the JSON
  summary come from a small Lua script.
* a pure-Python fallback (raw sockets over asyncio, pre-built request bytes, one process per
  block of connections) for machines without wrk; it costs more CPU per request, which on a
  2-core machine shows up as a lower ceiling (docs/performance.md quotes the comparison).

Only 127.0.0.1 is ever targeted, and every run is bounded by ``seconds``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local handle = io.open(os.getenv("BENCH_BODY_FILE"), "rb")
wrk.body = handle:read("*a")
handle:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class LoadResult:
    driver: str
    concurrency: int
    seconds: float
    requests: int
    errors: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(
    port: int, path: str, body: bytes, concurrency: int, seconds: float, driver: str = "auto"
) -> LoadResult:
    """One closed-loop run against ``http://127.0.0.1:{port}{path}``."""
    if driver == "auto":
        driver = "wrk" if have_wrk() else "python"
    if driver == "wrk":
        return _run_wrk(port, path, body, concurrency, seconds)
    return _run_python(port, path, body, concurrency, seconds)


def _run_wrk(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="churn-wrk-") as folder:
        script, body_file = Path(folder) / "post.lua", Path(folder) / "body.json"
        script.write_text(WRK_SCRIPT)
        body_file.write_bytes(body)
        duration = max(1, round(seconds))
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s"]
        command += ["-s", str(script), f"http://127.0.0.1:{port}{path}"]
        completed = subprocess.run(
            command,
            env=os.environ | {"BENCH_BODY_FILE": str(body_file)},
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {completed.stdout[-2000:]} {completed.stderr[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    elapsed = data["duration_us"] / 1e6
    return LoadResult(
        driver="wrk",
        concurrency=concurrency,
        seconds=round(elapsed, 2),
        requests=data["requests"],
        errors=data["errors"] + data["non_2xx"],
        requests_per_second=round(data["requests"] / elapsed, 1),
        p50_ms=round(data["p50_us"] / 1000, 3),
        p99_ms=round(data["p99_us"] / 1000, 3),
        max_ms=round(data["max_us"] / 1000, 3),
    )


# ---- pure-Python fallback --------------------------------------------------------------------


async def _connection(port: int, request: bytes, stop: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    clock = time.perf_counter
    try:
        while clock() < stop:
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(clock() - started)
            errors += head[9:12] != b"200"
    finally:
        writer.close()
    return errors


def _process(port: int, request: bytes, connections: int, stop: float, out) -> None:
    async def main() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = await asyncio.gather(
            *(_connection(port, request, stop, latencies) for _ in range(connections))
        )
        return latencies, sum(errors)

    out.put(asyncio.run(main()))


def _run_python(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> LoadResult:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    processes = min(concurrency, 2)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    began = time.perf_counter()
    stop = began + seconds
    workers = [
        context.Process(target=_process, args=(port, request, n, stop, queue)) for n in shares
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    samples = sorted(x for latencies, _ in results for x in latencies)
    errors = sum(e for _, e in results)
    cuts = statistics.quantiles(samples, n=100) if len(samples) > 1 else samples * 99
    return LoadResult(
        driver="python",
        concurrency=concurrency,
        seconds=round(elapsed, 2),
        requests=len(samples),
        errors=errors,
        requests_per_second=round(len(samples) / elapsed, 1),
        p50_ms=round(cuts[49] * 1000, 3),
        p99_ms=round(cuts[98] * 1000, 3),
        max_ms=round(samples[-1] * 1000, 3),
    )


def merge(slices: list[LoadResult]) -> dict:
    """Slices of one (system, concurrency) cell, interleaved with the other systems: medians of
    throughput and percentiles, the worst max, total requests and errors."""
    return {
        "driver": slices[0].driver,
        "concurrency": slices[0].concurrency,
        "slices": len(slices),
        "seconds": round(sum(s.seconds for s in slices), 1),
        "requests": sum(s.requests for s in slices),
        "errors": sum(s.errors for s in slices),
        "requests_per_second": round(statistics.median(s.requests_per_second for s in slices), 1),
        "p50_ms": round(statistics.median(s.p50_ms for s in slices), 3),
        "p99_ms": round(statistics.median(s.p99_ms for s in slices), 3),
        "max_ms": max(s.max_ms for s in slices),
        "per_slice": [asdict(s) for s in slices],
    }
