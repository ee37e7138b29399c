"""A minimal events source (an event log, no payments or tickets), run through the whole graph.

The log is the embedded generator's activity, renamed and re-typed as another product would log
it: free-text event types (with spaces, quotes and a semicolon), a ``seconds`` measure, session
ids, and a users table whose profile columns have the product's own names. Churn is inactivity
(``inactive_days``), the definition a log without cancellations has. It runs once per test
session as ``make pipeline`` does (``tests/byod_support.py``), into its own temp homes.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from tests.byod_support import REPO, ExampleRun, example_env
from tests.conftest import SESSION_HOME

EVENT_TYPES = {
    "login": "Log In",
    "page_view": "page view",
    "feature_use": 'used "the feature"; twice',
    "export": "Export",
    "share": "share",
}
PROFILE = {"plan": "Plan Tier", "region": "region", "age": "age", "monthly_fee": "price"}
SOURCE_YAML = """\
shape: events
name: product-log
observation: {start: 2024-03-01, end: 2024-09-01}
churn: {inactive_days: 30}
tables:
  events:
    path: activity.csv
    columns: {customer_id: user, event_time: ts, event_type: action, session_id: visit}
    measures: [seconds]
  customers:
    path: users.csv
    columns: {customer_id: user, signup_date: joined}
"""


def write_log(folder: Path, customers: int = 700, seed: int = 21) -> Path:
    """The log's files and its ``source.yaml``; returns the YAML's path."""
    from churn.synthetic import GeneratorConfig, generate

    config = GeneratorConfig(customers=customers, months=9, seed=seed, start_date=date(2024, 1, 1))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        raw, truth = Path(scratch) / "raw", Path(scratch) / "truth"
        generate(config, raw, truth)
        events = pd.read_parquet(raw / "events.parquet")
        users = pd.read_parquet(raw / "customers.parquet")
    events = pd.DataFrame(
        {
            "user": events["customer_id"],
            "ts": events["event_time"],
            "action": events["event_type"].map(EVENT_TYPES).fillna(events["event_type"]),
            "visit": events["session_id"],
            "seconds": events["duration_seconds"],
        }
    )
    events.to_csv(folder / "activity.csv", index=False)
    users = users.rename(columns={"customer_id": "user", "signup_date": "joined", **PROFILE})
    users[["user", "joined", *PROFILE.values()]].to_csv(folder / "users.csv", index=False)
    path = folder / "source.yaml"
    path.write_text(SOURCE_YAML)
    return path


@functools.cache
def run_event_log() -> ExampleRun:
    """``CHURN_SOURCE=<log>/source.yaml make pipeline``, minus the install step."""
    root = Path(tempfile.mkdtemp(prefix="churn-event-log-", dir=SESSION_HOME))
    source = write_log(root / "source")
    home = root / "home"
    dagster_home, bentoml_home = home / "dagster_home", home / "bentoml"
    dagster_home.mkdir(parents=True)
    shutil.copy2(REPO / "config" / "dagster.yaml", dagster_home / "dagster.yaml")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "churn_assets.pipeline"],
        cwd=REPO,
        env=example_env(home, dagster_home, bentoml_home, source),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    return ExampleRun(
        "event_log", home, dagster_home, bentoml_home, source, time.perf_counter() - started, output
    )


def champion_card(run: ExampleRun) -> dict[str, Any]:
    """The newest model card of the run's store (one pipeline run trains one champion)."""
    return run.cards()[-1]


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def event_log_body(
    con: duckdb.DuckDBPyConnection, card: dict[str, Any], customer_id: str, observation_date: date
) -> dict[str, Any]:
    """A ``/score_events`` body for a warehouse customer: the staged profile (its non-null
    columns) and every staged event before the observation date, as a client would send them."""
    from churn.features.events import CARD_KEY
    from churn.sql import quote_identifier

    spec = card[CARD_KEY]
    profile = ["signup_date", *(column for column, _, _ in spec["profile"])]
    found = con.execute(
        f"SELECT {', '.join(quote_identifier(c) for c in profile)} FROM stg_customers "
        "WHERE customer_id = ?",
        [customer_id],
    ).fetchall()
    customer: dict[str, Any] = {"customer_id": customer_id}
    if found:
        customer |= {
            k: _jsonable(v) for k, v in zip(profile, found[0], strict=True) if v is not None
        }
    columns = ["event_time", "event_type", "session_id", *spec["measures"]]
    rows = con.execute(
        f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM stg_events "
        "WHERE customer_id = ? AND event_time < ? ORDER BY ALL",
        [customer_id, observation_date],
    ).fetchall()
    events = [
        {k: _jsonable(v) for k, v in zip(columns, row, strict=True) if v is not None}
        for row in rows
    ]
    return {
        "customer": customer,
        "events": events,
        "as_of": f"{observation_date.isoformat()}T00:00:00Z",
    }


def probe(run: ExampleRun, requests: list[dict], workdir: Path) -> list[dict]:
    """POST ``requests`` to the run's champion through ``ChurnService.to_asgi()`` in a fresh
    process with the run's homes (``tests/asgi_probe.py``); prediction logs go to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    asked, answered = workdir / "requests.json", workdir / "answers.json"
    asked.write_text(json.dumps(requests))
    env = run.env() | {"CHURN_HOME": str(workdir)}
    env.pop("CHURN_API_KEYS", None)
    env.pop("CHURN_MODEL_TAG", None)
    completed = subprocess.run(
        [sys.executable, "-m", "tests.asgi_probe", str(asked), str(answered)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]
    return json.loads(answered.read_text())
