"""Pipeline figures: ``make pipeline`` end to end (with its per-step times), generator rows/s,
and the customer_features SQL at two sizes, with and without its leakage check.

Every run uses its own temporary CHURN_HOME / DAGSTER_HOME / BENTOML_HOME, never ``./data``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.servers import REPO_ROOT

STEP_LINE = re.compile(r'Finished execution of step "([^"]+)" in ([0-9.]+)(ms|s|m)\b')
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0}
STAGED = ("customers", "events", "payments", "tickets", "cancellations")


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose every piece of state lives under ``home``."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "config" / "dagster.yaml", dagster_home / "dagster.yaml")
    bin_dir = str(Path(sys.executable).parent)
    env = os.environ | {
        "CHURN_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "BENTOML_HOME": str(home / "bentoml"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "CHURN_SOURCE": "synthetic",
    }
    for name in ("CHURN_CUSTOMERS", "CHURN_MONTHS", "CHURN_SEED", "CHURN_START_DATE"):
        env.pop(name, None)
    return env | extra


def step_seconds(log: str) -> dict[str, float]:
    return {m[1]: round(float(m[2]) * _UNIT[m[3]], 2) for m in STEP_LINE.finditer(log)}


def output_tail(text: str, lines: int = 20, chars: int = 2000) -> str:
    """The last ``lines`` non-empty lines of a command's output (at most ``chars``): where a
    traceback or Dagster's failure event ends, so a recorded failure always says why."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-chars:]


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _run(command: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[float, str]:
    """Run ``command`` into ``log``; on a non-zero exit or a timeout raise with the error lines
    and the output's tail (never a bare "failed")."""
    started = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        output = _text(expired.stdout) + _text(expired.stderr)
        log.write_text(output)
        raise RuntimeError(
            f"{command[0]} ... timed out after {timeout:.0f} s; last output:\n{output_tail(output)}"
        ) from None
    seconds = time.perf_counter() - started
    output = completed.stdout + completed.stderr
    log.write_text(output)
    if completed.returncode != 0:
        lines = output.splitlines()
        errors = [
            f"{x.strip()} {lines[i + 1].strip() if i + 1 < len(lines) else ''}"
            for i, x in enumerate(lines)
            if "Error" in x and "Warning" not in x and "raise " not in x
        ]
        raise RuntimeError(
            f"{command[0]} ... failed ({completed.returncode}): {' | '.join(errors[-2:])}\n"
            f"last output:\n{output_tail(output)}"
        )
    return seconds, output


def instance_steps(dagster_home: Path) -> tuple[dict[str, float], dict[str, str]]:
    """(seconds per step that succeeded, error per step that failed) over every run the
    instance at ``dagster_home`` holds, read from its event log: unlike the console log, the
    event log has them at any ``CHURN_LOG_LEVEL`` (``make pipeline`` logs at INFO, which
    leaves out Dagster's step-finished lines)."""
    import dagster as dg

    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    wanted = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for record in instance.get_run_records():
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if event is None or event.event_type not in wanted or event.step_key is None:
                    continue
                data = event.event_specific_data
                if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                    seconds[event.step_key] = round(data.duration_ms / 1000, 2)
                else:
                    error = getattr(data, "error", None)
                    errors[event.step_key] = (
                        error.to_string()[-2000:] if error is not None else event.message or ""
                    )
    return seconds, errors


def make_pipeline(home: Path) -> dict:
    """``make pipeline`` on the default synthetic data into ``home``: wall time (imports
    included), the CPU time of the whole process tree, and the Dagster step times."""
    env = home_env(home)
    if shutil.which("make"):
        command = ["make", "--no-print-directory", "pipeline"]
    else:
        command = [sys.executable, "-m", "churn_assets.pipeline"]
    cpu_before = _children_cpu()
    seconds, output = _run(command, env, home / "make_pipeline.log", timeout=1800)
    steps = step_seconds(output) | instance_steps(Path(env["DAGSTER_HOME"]))[0]
    return {
        "command": " ".join(command),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(_children_cpu() - cpu_before, 1),
        "steps": steps,
        "outside_steps_seconds": round(seconds - sum(steps.values()), 1),
    }


def _children_cpu() -> float:
    """User + system seconds of this process's waited-for children so far."""
    usage = os.times()
    return usage.children_user + usage.children_system


def generator(customers: int, months: int) -> dict:
    """Rows of the five raw tables written per second (simulation + Parquet), in process."""
    from churn.synthetic.generator import GeneratorConfig, generate

    with tempfile.TemporaryDirectory(prefix="churn-bench-gen-") as folder:
        config = GeneratorConfig(customers=customers, months=months)
        summary = generate(config, Path(folder) / "raw", Path(folder) / "truth")
    rows = sum(n for name, n in summary.rows.items() if name != "truth")
    return {
        "customers": customers,
        "months": months,
        "rows": rows,
        "rows_by_table": summary.rows,
        "seconds": round(summary.seconds, 2),
        "rows_per_second": round(rows / summary.seconds),
    }


def features(customers: int, months: int, workdir: Path) -> dict:
    """Materialize everything upstream of customer_features (and it) at this size, then time
    the feature SQL alone over every snapshot, and the leakage check alone, on that warehouse."""
    import duckdb

    from churn.sources.registry import resolve
    from churn_assets.pipeline import calendar_argument, land_command

    home = workdir / f"features-{customers}"
    env = home_env(home, CHURN_CUSTOMERS=str(customers), CHURN_MONTHS=str(months))
    # the calendar is written by staging: land first, then read its months from the instance
    _run(land_command(), env, home / "land.log", timeout=3600)
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "--select",
        # Staging is one multi-asset per table (stg_x + stg_x_rejects): select the rejects
        # tables too, so each table's staging reports both (and every raw table lands).
        ",".join(["*customer_features", *(f"*stg_{t}_rejects" for t in STAGED)]),
        "--partition-range",
        calendar_argument(Path(env["DAGSTER_HOME"])) or "",
        "-m",
        "churn_assets.definitions",
    ]
    materialize_error = None
    try:
        seconds, output = _run(command, env, home / "materialize.log", timeout=3600)
    except RuntimeError as error:
        # A failed blocking check still leaves the warehouse (staging, snapshots, features) in
        # place: time the SQL anyway and report the failure next to the figures.
        materialize_error, seconds = str(error), float("nan")
        output = (home / "materialize.log").read_text()
    steps, step_errors = instance_steps(Path(env["DAGSTER_HOME"]))
    steps = step_seconds(output) | steps
    step_error = None
    if "customer_features" not in steps:  # say why the asset step has no time
        step_error = step_errors.get("customer_features") or (
            f"the run did not reach customer_features: {materialize_error}"
            if materialize_error
            else "no step time for customer_features in the run's event log"
        )
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        snapshot_rows = con.execute("SELECT count(*) FROM customer_snapshots").fetchone()[0]
        dates = [
            d.isoformat() if isinstance(d, date) else str(d)
            for (d,) in con.execute(
                "SELECT DISTINCT observation_date FROM customer_features ORDER BY 1"
            ).fetchall()
        ]
        shape = resolve(con)
        started = time.perf_counter()
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _bench_features AS "
            + shape.feature_sql("customer_snapshots")
        )
        sql_seconds = time.perf_counter() - started
        started = time.perf_counter()
        leaking = sum(shape.leakage(con, dates, 300).differing.values())
        leakage_seconds = time.perf_counter() - started
    finally:
        con.close()
    shutil.rmtree(home, ignore_errors=True)
    return {
        "customers": customers,
        "months": months,
        "snapshot_rows": snapshot_rows,
        "feature_sql_seconds": round(sql_seconds, 2),
        "leakage_check_seconds": round(leakage_seconds, 2),
        "leakage_rows_differing": leaking,
        "asset_step_seconds": steps.get("customer_features"),
        "asset_step_error": step_error,
        "upstream_materialize_seconds": round(seconds, 1),
        "materialize_error": materialize_error,
        "steps": steps,
    }


BACKFILL_MUTATION = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status startTime endTime } }
  }
}
"""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(
        url,
        json.dumps({"query": query, "variables": variables or {}}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def ui_run(home: Path, timeout: float = 1800.0, **extra: str) -> dict:
    """A full materialization launched the way the UI's "Materialize all" button does it.

    ``dagster dev`` (webserver + daemon) on a free loopback port against ``home``; then the
    ``launchPartitionBackfill`` mutation for every asset over all partitions (the backfill
    dialog's request), polled until the backfill is done. ``seconds`` runs from the launch to
    the backfill's end, so it includes the daemon's hand-off and run queueing; ``run_seconds``
    is the runs' own start-to-end time, where the executor choice shows. ``extra`` are
    environment variables for the run (e.g. ``CHURN_CUSTOMERS`` for a smaller source).
    """
    from benchmarks.servers import free_port

    env = home_env(home, **extra)
    port = free_port()
    log = home / "dagster_dev.log"
    command = [str(Path(sys.executable).parent / "dagster"), "dev", "-m"]
    command += ["churn_assets.definitions", "-h", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}/graphql"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_webserver(url, server, log)
        keys = [
            node["assetKey"] for node in _graphql(url, "{assetNodes{assetKey{path}}}")["assetNodes"]
        ]
        started = time.perf_counter()
        launched = _graphql(
            url,
            BACKFILL_MUTATION,
            {"params": {"assetSelection": keys, "allPartitions": True}},
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {launched}")
        backfill = launched["backfillId"]
        deadline = time.monotonic() + timeout
        while True:
            answer = _graphql(url, BACKFILL_STATUS, {"id": backfill})
            status = answer["partitionBackfillOrError"].get("status")
            if status in BACKFILL_DONE:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"backfill {backfill} still {status} after {timeout:.0f} s")
            time.sleep(1.0)
        seconds = time.perf_counter() - started
        runs = answer["runsOrError"]["results"]
    finally:
        _stop_group(server)
    if status != "COMPLETED_SUCCESS":
        raise RuntimeError(f"backfill {backfill} ended {status}; see {log}")
    return {
        "command": "dagster " + " ".join(command[1:4]) + " + launchPartitionBackfill(all assets)",
        "executor": _default_executor(env),
        "seconds": round(seconds, 1),
        "runs": len(runs),
        "run_seconds": round(sum((r["endTime"] or 0) - (r["startTime"] or 0) for r in runs), 1),
    }


def _default_executor(env: dict[str, str]) -> str:
    code = (
        "from churn_assets.definitions import defs; "
        "print(defs.executor.name if defs.executor else 'multi_or_in_process_executor')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 else "unknown"


def _wait_for_webserver(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            _graphql(url, "{version}")
            return
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"dagster dev exited; see {log}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev not ready after 180 s; see {log}") from None
            time.sleep(1.0)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGINT first: ``dagster dev`` then stops its webserver, daemon and code server."""
    import signal

    if process.poll() is not None:
        return
    group = os.getpgid(process.pid)
    os.killpg(group, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        process.wait(timeout=10)


def _purchase_log(path: Path, customers: int, months: int, seed: int = 11) -> int:
    """A minimal purchase log (customer, day, quantity, amount) as Parquet: each customer
    buys at their own rate from signup until they quietly stop. ~5M rows at 100k x 12."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    days = 30 * (months + 6)  # history before the first observation date and after the last
    signup = rng.integers(0, days - 30, customers)
    life = np.minimum(rng.exponential(400, customers).astype(int) + 30, days - signup)
    rate = rng.lognormal(np.log(1 / 5), 0.6, customers)  # purchases per day
    counts = rng.poisson(rate * life)
    owner = np.repeat(np.arange(customers), counts)
    day = signup[owner] + (rng.random(owner.size) * life[owner]).astype(int)
    start = np.datetime64("2024-01-01")
    quantity = rng.integers(1, 5, owner.size)
    table = pa.table(
        {
            "cust": pc.binary_join_element_wise("C", pc.cast(pa.array(owner), pa.string()), ""),
            "bought_on": pa.array(start + day.astype("timedelta64[D]")),
            "quantity": pa.array(quantity),
            "amount": pa.array(np.round(quantity * rng.choice([4.5, 9.99, 25.0], owner.size), 2)),
        }
    )
    pq.write_table(table, path)
    return table.num_rows


def event_log_features(customers: int, months: int, workdir: Path) -> dict:
    """The generated event-feature SQL (churn.features.events) over a minimal purchase log:
    land and stage it with the real functions, observe by 90-day inactivity, then time the
    feature SQL alone over every snapshot, and the leakage check on three dates."""
    import duckdb

    from churn.ingest.schema import RAW_TABLES
    from churn.sources.config import parse_source
    from churn.sources.registry import source_for

    folder = workdir / f"purchases-{customers}"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = _purchase_log(folder / "purchases.parquet", customers, months)
    generate_seconds = time.perf_counter() - started
    first = date(2024, 4, 1)
    last = date(2024 + (3 + months - 1) // 12, (3 + months - 1) % 12 + 1, 1)
    config = parse_source(
        {
            "shape": "events",
            "name": "purchases",
            "observation": {"start": first.isoformat(), "end": last.isoformat()},
            "churn": {"inactive_days": 90},
            "tables": {
                "events": {
                    "path": "purchases.parquet",
                    "columns": {"customer_id": "cust", "event_time": "bought_on"},
                    "measures": ["quantity", "amount"],
                }
            },
        },
        folder / "source.yaml",
    )
    con = duckdb.connect(str(folder / "warehouse.duckdb"))
    con.execute("SET enable_progress_bar = false")
    try:
        started = time.perf_counter()
        source = source_for(config)  # the event-log kind
        for table in RAW_TABLES:
            source.land(con, table, folder)
        land_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for table in RAW_TABLES:  # the tables a purchase log does not have are staged empty
            source.stage(con, table)
        stage_seconds = time.perf_counter() - started
        source.decide_features(con, last_observation_date=last, horizon_days=30)
        shape = source.resolved(con)
        after_last = date(last.year + last.month // 12, last.month % 12 + 1, 1)
        sql, params = shape.snapshots_query(first.isoformat(), after_last.isoformat())
        started = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TABLE customer_snapshots AS {sql}", params)
        snapshot_seconds = time.perf_counter() - started
        snapshot_rows = con.execute("SELECT count(*) FROM customer_snapshots").fetchone()[0]
        started = time.perf_counter()
        con.execute(
            "CREATE OR REPLACE TABLE customer_features AS "
            + shape.feature_sql("customer_snapshots")
        )
        sql_seconds = time.perf_counter() - started
        columns = len(con.execute("DESCRIBE customer_features").fetchall()) - 2
        dates = [
            str(d)
            for (d,) in con.execute(
                "SELECT DISTINCT observation_date FROM customer_snapshots ORDER BY 1"
            ).fetchall()
        ]
        checked = [dates[0], dates[len(dates) // 2], dates[-1]]
        started = time.perf_counter()
        leaking = sum(shape.leakage(con, checked, 300).differing.values())
        leakage_seconds = time.perf_counter() - started
    finally:
        con.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "customers": customers,
        "months": months,
        "events": rows,
        "snapshot_rows": snapshot_rows,
        "features": columns,
        "generate_seconds": round(generate_seconds, 2),
        "land_seconds": round(land_seconds, 2),
        "stage_seconds": round(stage_seconds, 2),
        "snapshot_seconds": round(snapshot_seconds, 2),
        "feature_sql_seconds": round(sql_seconds, 2),
        "leakage_check_seconds_3_dates": round(leakage_seconds, 2),
        "leakage_rows_differing": leaking,
    }
