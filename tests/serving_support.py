"""Shared by the serving tests: real rows from the materialized warehouse, request bodies built
from them the way a client would (JSON), and a temporary-environment helper."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS, TICKETS


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def feature_rows(warehouse: Path, limit: int = 20) -> list[dict[str, Any]]:
    """Offline feature rows (customer_id, observation_date and every feature column: the
    declared ones and those generated from the event vocabulary), varied dates."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return _rows(
            con,
            "SELECT * FROM customer_features ORDER BY hash(customer_id, observation_date) LIMIT ?",
            [limit],
        )
    finally:
        con.close()


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def history_payload(
    con: duckdb.DuckDBPyConnection, customer_id: str, observation_date: date
) -> dict[str, Any]:
    """A ``/score_events`` body for a warehouse customer: the staged profile and every staged
    row strictly before the observation date, as JSON-ready dicts."""

    def table(name: str, contract: Any, time_column: str | None) -> list[dict[str, Any]]:
        columns = ", ".join(contract.column_names)
        where = "customer_id = ?" + (f" AND {time_column} < ?" if time_column else "")
        params: list[Any] = [customer_id] + ([observation_date] if time_column else [])
        rows = _rows(con, f"SELECT {columns} FROM {name} WHERE {where} ORDER BY ALL", params)
        return [{k: _jsonable(v) for k, v in row.items()} for row in rows]

    return {
        "customer": table("stg_customers", CUSTOMERS, None)[0],
        "events": table("stg_events", EVENTS, "event_time"),
        "payments": table("stg_payments", PAYMENTS, "payment_date"),
        "tickets": table("stg_tickets", TICKETS, "created_at"),
        "as_of": f"{observation_date.isoformat()}T00:00:00Z",
    }


def histories(warehouse: Path, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [history_payload(con, r["customer_id"], r["observation_date"]) for r in rows]
    finally:
        con.close()


def request_features(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``features`` object of a /score body for an offline row (JSON round-tripped): every
    feature column of ``customer_features``, which is what the champion was trained on."""
    features = {k: v for k, v in row.items() if k not in ("customer_id", "observation_date")}
    return json.loads(json.dumps(features))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KEY = "http-test-key"
STARTUP_SECONDS = 120


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def bento_tag(materialized) -> str:
    events = materialized.result.asset_materializations_for_node("churn_bento")
    assert events, "churn_bento did not materialize"
    return str(events[-1].metadata["bento_tag"].value)


def start(
    tag: str, home: Path, keys: str | None, extra_env: Mapping[str, str] | None = None
) -> Server:
    """``bentoml serve <tag>`` on a free loopback port, ``home`` as CHURN_HOME, ``extra_env``
    on top (e.g. rate limits)."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"CHURN_HOME": str(home)}
    env.pop("CHURN_API_KEYS", None)
    env.pop("CHURN_MODEL_TAG", None)
    if keys:
        env["CHURN_API_KEYS"] = keys
    env.update(extra_env or {})
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    log = home / "serve.log"
    process = subprocess.Popen(
        [f"{bin_dir}/bentoml", "serve", tag, "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(f"http://127.0.0.1:{port}", home, process, log)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"bentoml serve exited early:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"not ready in {STARTUP_SECONDS} s:\n{server.log.read_text()[-3000:]}")


@contextmanager
def serving(servers: dict[str, Server]) -> Iterator[dict[str, Server]]:
    """Wait until every server answers /readyz, hand them over, and stop them all afterwards."""
    try:
        for server in servers.values():
            wait_ready(server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
