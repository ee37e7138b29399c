"""Serving figures: the built Bento against a bare Starlette app and a typical FastAPI service.

All three run one worker with one OpenMP thread and serve the same stored model; load comes from
another process (``benchmarks.load``). Each (system, concurrency) cell is cut into slices that
alternate between the systems, so machine noise hits all of them alike; cells report medians.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import load
from benchmarks.servers import Server, bentoml_command, free_port, python_module

SYSTEMS = ("bento", "bare", "fastapi")
LABELS = {
    "bento": "(a) built Bento, bentoml serve",
    "bare": "(b) bare Starlette/uvicorn",
    "fastapi": "(c) FastAPI + pandas per request",
}
EVENTS_PER_HISTORY = 1000


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def request_bodies(warehouse: Path) -> dict[str, bytes]:
    """Real rows from the materialized warehouse: one /score body, a 1000-row /score_batch body
    and a /score_events body for a customer with exactly 1000 events."""
    import duckdb

    from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS, TICKETS

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        # Every feature column the warehouse holds: the declared family and the generated one.
        cursor = con.execute(
            "SELECT * EXCLUDE (observation_date) FROM customer_features "
            "ORDER BY hash(customer_id, observation_date) LIMIT 1000"
        )
        names = [c[0] for c in cursor.description]
        features = [n for n in names if n != "customer_id"]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        customers = [
            {"customer_id": r["customer_id"], "features": {n: r[n] for n in features}} for r in rows
        ]
        customer_id, as_of = con.execute(
            "SELECT customer_id, max(event_time) FROM stg_events GROUP BY 1 "
            "ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
        as_of = (as_of + timedelta(days=1)).date()

        def table(name: str, contract: Any, time_column: str | None, limit: str = "") -> list:
            cols = ", ".join(contract.column_names)
            where = "customer_id = ?" + (f" AND {time_column} < ?" if time_column else "")
            params: list[Any] = [customer_id] + ([as_of] if time_column else [])
            order = f"ORDER BY {time_column} DESC" if time_column else ""
            cur = con.execute(f"SELECT {cols} FROM {name} WHERE {where} {order} {limit}", params)
            cnames = [c[0] for c in cur.description]
            return [
                {k: _jsonable(v) for k, v in zip(cnames, row, strict=True)}
                for row in cur.fetchall()
            ]

        events = table("stg_events", EVENTS, "event_time", f"LIMIT {EVENTS_PER_HISTORY}")
        # A customer with fewer events still yields 1000: earlier copies with their own ids.
        base, copy = list(events), 1
        while len(events) < EVENTS_PER_HISTORY and base:
            for event in base[: EVENTS_PER_HISTORY - len(events)]:
                shifted = datetime.fromisoformat(event["event_time"]) - timedelta(days=copy)
                events.append(
                    event | {"event_id": f"{event['event_id']}-{copy}", "event_time": shifted}
                )
            events = [{k: _jsonable(v) for k, v in e.items()} for e in events]
            copy += 1
        history = {
            "customer": table("stg_customers", CUSTOMERS, None)[0],
            "events": events,
            "payments": table("stg_payments", PAYMENTS, "payment_date"),
            "tickets": table("stg_tickets", TICKETS, "created_at"),
            "as_of": f"{as_of.isoformat()}T00:00:00Z",
        }
    finally:
        con.close()
    return {
        "score": json.dumps(customers[0]).encode(),
        "score_batch": json.dumps({"customers": customers}).encode(),
        "score_events": json.dumps(history).encode(),
    }


def server_command(name: str, port: int) -> list[str]:
    if name == "bento":
        return bentoml_command("serve", "churn_service:latest", "--port", str(port))
    return python_module(f"benchmarks.{name}_app", "--port", str(port))


def start_servers(
    env: dict[str, str], model_tag: str, logs: Path, bodies: dict, names=SYSTEMS
) -> dict[str, Server]:
    server_env = env | {"OMP_NUM_THREADS": "1", "CHURN_MODEL_TAG": model_tag}
    servers = {}
    try:
        for name in names:
            port = free_port()
            command = server_command(name, port)
            servers[name] = Server(name, command, server_env, port, logs / f"server-{name}.log")
            servers[name].start("/score", bodies["score"])
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def alternate(
    servers: dict[str, Server],
    names: list[str],
    path: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    slices: int,
    driver: str,
) -> dict[str, dict]:
    """``seconds`` of load per system, in ``slices`` interleaved slices (rotating the order)."""
    per: dict[str, list[load.LoadResult]] = {name: [] for name in names}
    rss: dict[str, float] = {}
    load_at_start = round(os.getloadavg()[0], 2)  # written beside the cell's figures
    for k in range(slices):
        order = names[k % len(names) :] + names[: k % len(names)]
        for name in order:
            per[name].append(
                load.run(servers[name].port, path, body, concurrency, seconds / slices, driver)
            )
            rss[name] = max(rss.get(name, 0.0), servers[name].rss_mib())
    loads = [load_at_start, round(os.getloadavg()[0], 2)]
    return {
        name: load.merge(per[name]) | {"rss_mib": rss[name], "load_average": loads}
        for name in names
    }


def run(env: dict[str, str], model_tag: str, warehouse: Path, logs: Path, settings: dict) -> dict:
    seconds, slices, driver = settings["seconds"], settings["slices"], settings["driver"]
    bodies = request_bodies(warehouse)
    servers = start_servers(env, model_tag, logs, bodies)
    results: dict[str, Any] = {
        "driver": driver if driver != "auto" else ("wrk" if load.have_wrk() else "python"),
        "seconds_per_cell": seconds,
        "slices": slices,
        "score": {},
    }
    try:
        for name in SYSTEMS:  # warm-up: imports, first-call paths, connection pools
            load.run(servers[name].port, "/score", bodies["score"], 8, 2, driver)
            results.setdefault("rss_idle_mib", {})[name] = servers[name].rss_mib()
        for concurrency in settings["concurrency"]:
            _progress(f"/score at concurrency {concurrency}")
            results["score"][str(concurrency)] = alternate(
                servers,
                list(SYSTEMS),
                "/score",
                bodies["score"],
                concurrency,
                seconds,
                slices,
                driver,
            )
        _progress("/score_batch (1000 rows)")
        results["score_batch"] = alternate(
            servers,
            ["bento", "bare"],
            "/score_batch",
            bodies["score_batch"],
            1,
            seconds,
            slices,
            driver,
        )
        for cell in results["score_batch"].values():
            cell["rows_per_second"] = round(cell["requests_per_second"] * 1000)
        _progress("/score_events (1000 events)")
        results["score_events"] = alternate(
            servers,
            ["bento"],
            "/score_events",
            bodies["score_events"],
            1,
            seconds,
            slices,
            driver,
        )["bento"]
        results["rss_mib"] = {name: s.rss_mib() for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    return results


def _progress(message: str) -> None:
    print(f"  serving: {message}", file=sys.stderr, flush=True)


os.environ.setdefault("OMP_NUM_THREADS", "1")
