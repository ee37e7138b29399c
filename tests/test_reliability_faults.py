"""Faults in the pipeline: a run killed mid-write, a warehouse held by another process, broken
incoming files, a failed training or gate, a model missing from the store.

The kill tests pause a real materialization (a subprocess) at a chosen statement *inside* the
write, with the statement executed and its transaction still open, then SIGKILL it: no timing
luck is involved. The randomized version (kills at arbitrary moments, repeatedly) is marked
``reliability``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from churn import registry
from churn.warehouse import LOCK_HINT, WarehouseLockedError, connect
from tests.graph import GraphRun, materialize_graph
from tests.serving_support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
RAW = "raw_customers,raw_events,raw_payments,raw_tickets,raw_cancellations"
STAGED = ("stg_customers", "stg_events", "stg_payments", "stg_tickets", "stg_cancellations")
STAGING = ",".join(f"{name},{name}_rejects" for name in STAGED)
FEATURES = "customer_snapshots,customer_features,churn_labels"
PARTITIONED = ("customer_snapshots", "customer_features", "churn_labels")

# Runs the graph in a subprocess with churn.warehouse.connect wrapped: once a statement that
# starts with PAUSE_AT has executed, it touches MARKER and sleeps, its transaction still open.
PAUSING_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import churn.warehouse as warehouse

    home, selection, pause_at, marker = sys.argv[1:5]
    real_connect = warehouse.connect

    class Pausing:
        def __init__(self, con):
            self._con = con
        def __getattr__(self, name):
            return getattr(self._con, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._con.__exit__(*exc)
        def execute(self, sql, *args, **kwargs):
            result = self._con.execute(sql, *args, **kwargs)
            if pause_at and " ".join(str(sql).split()).startswith(pause_at):
                Path(marker).touch()
                time.sleep(600)
            return result

    warehouse.connect = lambda *a, **k: Pausing(real_connect(*a, **k))
    from tests.graph import materialize_graph
    materialize_graph(Path(home), selection)
    Path(marker + ".done").touch()
    """
)


def copy_home(materialized: GraphRun, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(materialized.warehouse, target / "warehouse.duckdb")
    for name in ("raw", "truth"):
        shutil.copytree(materialized.home / name, target / name)
    return target


def start_run(home: Path, selection: str, pause_at: str = "") -> tuple[subprocess.Popen, Path]:
    marker = home / "paused"
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSING_RUN, str(home), selection, pause_at, str(marker)],
        cwd=REPO_ROOT,
        stdout=(home / "run.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, marker


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for(marker: Path, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not marker.exists():
        if process.poll() is not None:
            log = (marker.parent / "run.log").read_text()[-3000:]
            pytest.fail(f"run ended (rc {process.returncode}) before pausing:\n{log}")
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.1)


def state(home: Path) -> dict[str, object]:
    """What a half-written write would change: rows per partition of the partitioned tables,
    row counts and content hashes (load times aside) of raw and staging, raw load times."""
    found: dict[str, object] = {}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        for table in PARTITIONED:
            found[table] = dict(
                con.execute(
                    f"SELECT observation_date, count(*) FROM {table} GROUP BY ALL"
                ).fetchall()
            )
        found["training_set"] = con.execute("SELECT count(*) FROM training_set").fetchone()
        for table in [*RAW.split(","), *STAGING.split(",")]:
            columns = [
                name
                for (name,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                    "AND column_name <> '_loaded_at' ORDER BY ordinal_position",
                    [table],
                ).fetchall()
            ]
            row = ", ".join(f'"{c}"' for c in columns)
            found[table] = con.execute(
                f"SELECT count(*), sum(hash({row}) // 1024) FROM {table}"
            ).fetchone()
        for table in RAW.split(","):
            found[f"{table}._loaded_at"] = con.execute(
                f"SELECT max(_loaded_at) FROM {table}"
            ).fetchone()[0]
    return found


def without_load_times(found: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in found.items() if not k.endswith("._loaded_at")}


@pytest.mark.slow  # Dagster runs in subprocesses, killed and rerun
@pytest.mark.timeout(600)
def test_sigkill_mid_write_leaves_no_half_written_table_and_a_rerun_succeeds(
    materialized, tmp_path
):
    """Killed with the statement done and its transaction open: after raw_payments was
    replaced (two raw tables already replaced), after stg_events was rebuilt, and after the
    window's rows of customer_features were deleted but before the new ones were inserted."""
    cases = {
        "raw": (RAW, "CREATE OR REPLACE TABLE raw_payments"),
        "staging": (STAGING, 'CREATE OR REPLACE TABLE "stg_events"'),
        "features": (FEATURES, "DELETE FROM customer_features"),
    }
    homes = {name: copy_home(materialized, tmp_path / name) for name in cases}
    before = state(homes["raw"])
    runs = {
        name: start_run(homes[name], selection, pause_at)
        for name, (selection, pause_at) in cases.items()
    }
    try:
        for process, marker in runs.values():
            wait_for(marker, process)
    finally:
        for process, _ in runs.values():
            kill(process)
    for name, home in homes.items():
        assert state(home) == before, f"{name}: the killed run's writes are visible"
    for name, (selection, _) in cases.items():
        rerun = materialize_graph(homes[name], selection)
        assert rerun.result.success, name
        after = state(homes[name])
        assert without_load_times(after) == without_load_times(before), name
        if name == "raw":
            assert after["raw_customers._loaded_at"] > before["raw_customers._loaded_at"]


@pytest.mark.reliability
@pytest.mark.timeout(1800)
def test_random_sigkills_during_the_data_graph_never_leave_half_written_partitions(
    materialized, tmp_path, capsys
):
    """Raw -> staging -> features, killed at random moments, again and again."""
    home = copy_home(materialized, tmp_path / "home")
    before = state(home)
    selection = f"{RAW},{STAGING},{FEATURES},training_set"
    started = time.monotonic()
    process, marker = start_run(home, selection)
    while not Path(f"{marker}.done").exists():
        assert process.poll() is None or process.returncode == 0, (home / "run.log").read_text()
        time.sleep(0.2)
    full_run = time.monotonic() - started
    process.wait(timeout=60)
    rng = random.Random(8)
    delays = [rng.uniform(0.3, 1.0) * full_run for _ in range(6)]
    killed_while_running = 0
    for delay in delays:
        process, marker = start_run(home, selection)
        time.sleep(delay)
        if process.poll() is None:
            killed_while_running += 1
        kill(process)
        assert without_load_times(state(home)) == without_load_times(before), delay
    rerun = materialize_graph(home, selection)
    assert rerun.result.success
    assert without_load_times(state(home)) == without_load_times(before)
    assert killed_while_running >= 4
    with capsys.disabled():
        print(  # noqa: T201
            f"\nrandom kills: full run {full_run:.1f} s, {killed_while_running} SIGKILLs at "
            f"{', '.join(f'{d:.1f}' for d in delays)} s, all consistent, re-run succeeded"
        )


# ------------------------------------------------------------------------------------------
# A second process holding the warehouse
# ------------------------------------------------------------------------------------------

HOLD = (
    "import duckdb, os, sys, time\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "con.execute('CREATE TABLE IF NOT EXISTS _held (x INTEGER)')\n"
    "print('locked', flush=True)\n"
    "deadline = time.monotonic() + float(sys.argv[2])\n"
    "while time.monotonic() < deadline and not os.path.exists(sys.argv[1] + '.release'):\n"
    "    time.sleep(0.05)\n"
    "con.close()\n"
)


def hold(path: Path, seconds: float) -> subprocess.Popen:
    """A second process holding the warehouse's write lock for ``seconds`` (or until
    ``<path>.release`` exists)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_a_held_warehouse_is_waited_for_with_a_clear_message(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = hold(path, 3)
    messages: list[str] = []
    started = time.monotonic()
    con = connect(path, lock_timeout_seconds=60, on_wait=messages.append)
    waited = time.monotonic() - started
    con.execute("SELECT 1")
    con.close()
    holder.wait(timeout=30)
    assert 1.0 < waited < 30
    assert len(messages) == 1
    assert "Another process holds the DuckDB warehouse" in messages[0]
    assert str(path) in messages[0] and "Waiting up to 60 s" in messages[0]


def test_a_warehouse_held_too_long_fails_with_the_hint(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = hold(path, 8)
    try:
        for read_only in (False, True):
            started = time.monotonic()
            with pytest.raises(WarehouseLockedError) as raised:
                connect(path, read_only=read_only, lock_timeout_seconds=1.5, on_wait=lambda _: None)
            assert time.monotonic() - started < 6
            message = str(raised.value)
            assert LOCK_HINT.format(path=path) in message
            assert "Gave up after 2 s" in message and "Could not set lock" in message
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_an_asset_waits_for_a_held_warehouse_and_says_why(materialized, tmp_path):
    from churn_assets.definitions import defs
    from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource

    home = copy_home(materialized, tmp_path / "home")
    warehouse = home / "warehouse.duckdb"
    holder = hold(warehouse, 120)
    instance = dg.DagsterInstance.ephemeral()
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["result"] = dg.materialize(
            assets=list(defs.assets or []),
            selection=dg.AssetSelection.assets("training_set"),
            resources={
                "warehouse": WarehouseResource(path=str(warehouse)),
                "churn_home": ChurnHomeResource(home=str(home)),
                "engine": EngineResource(home=str(home)),
            },
            instance=instance,
        )

    def waiting_messages() -> list[str]:
        return [
            entry.user_message
            for record in instance.get_runs()
            for entry in instance.all_logs(record.run_id)
            if "Another process holds the DuckDB warehouse" in (entry.user_message or "")
        ]

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not waiting_messages() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert waiting_messages(), "the step did not say what it was waiting for"
        assert thread.is_alive()  # still waiting, not failed
    finally:
        Path(f"{warehouse}.release").touch()
        holder.wait(timeout=30)
        thread.join(timeout=120)
    assert outcome["result"].success
    assert "Waiting up to 300 s" in waiting_messages()[0]


# ------------------------------------------------------------------------------------------
# Broken incoming files (the CSV cases live in test_sensors.py)
# ------------------------------------------------------------------------------------------


def _parquet(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def _customers_frame(rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c_new_{i}" for i in range(rows)],
            "signup_date": ["2025-09-03"] * rows,
            "region": ["north"] * rows,
            "plan": ["basic"] * rows,
            "monthly_fee": [19.0] * rows,
            "contract": ["monthly"] * rows,
            "payment_method": ["card"] * rows,
            "age": [33] * rows,
            "acquisition_channel": ["organic"] * rows,
        }
    )


def _broken_files(incoming: Path) -> dict[str, str]:
    """File name -> the reason the quarantine must give; written into ``incoming``."""
    good = _parquet(incoming.parent / "good" / "customers.parquet", _customers_frame())
    data = good.read_bytes()
    (incoming / "customers_truncated.parquet").write_bytes(data[: len(data) // 2])
    (incoming / "customers_corrupt.parquet").write_bytes(os.urandom(4096))
    (incoming / "events_garbage.csv").write_bytes(b"\x00\xff\xfe" + os.urandom(2048))
    (incoming / "customers_empty.csv").write_bytes(b"")
    header = ",".join(_customers_frame().columns)
    (incoming / "customers_header_only.csv").write_text(header + "\n")
    _parquet(incoming / "customers_nocol.parquet", _customers_frame().drop(columns=["plan"]))
    _parquet(incoming / "customers_types.parquet", _customers_frame().assign(age="old"))
    _parquet(incoming / "customers_dupes.parquet", pd.concat([_customers_frame()] * 2))
    (incoming / "customers.json").write_text("{}")
    return {
        "customers_truncated.parquet": "cannot be read",
        "customers_corrupt.parquet": "cannot be read",
        "events_garbage.csv": "",
        "customers_empty.csv": "",
        "customers_header_only.csv": "no rows",
        "customers_nocol.parquet": "missing column(s) plan",
        "customers_types.parquet": "wrong types (age: 3 value(s) not INTEGER)",
        "customers_dupes.parquet": "duplicate key value(s) in (customer_id)",
        "customers.json": "unsupported file type",
    }


def test_corrupt_truncated_and_malformed_files_are_quarantined_with_a_reason(tmp_path, monkeypatch):
    from churn_assets.definitions import defs
    from churn_assets.defs.raw import sensors as raw_sensors

    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    expected = _broken_files(incoming)
    old = time.time() - raw_sensors.SETTLE_SECONDS - 5
    for path in incoming.iterdir():
        os.utime(path, (old, old))
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), definitions=defs)
    result = raw_sensors.incoming_files_sensor(context)
    assert isinstance(result, dg.SkipReason), result
    assert not list(incoming.iterdir())
    for name, reason in expected.items():
        quarantined = tmp_path / "quarantine" / name
        assert quarantined.exists(), name
        text = (tmp_path / "quarantine" / f"{name}.reason.txt").read_text()
        assert text.startswith(name) and reason in text, (name, text)
    assert not (tmp_path / "warehouse.duckdb").exists()  # validation never opens it


# ------------------------------------------------------------------------------------------
# A failed training or gate keeps the champion and the served Bento
# ------------------------------------------------------------------------------------------

MODEL_STAGE_AND_BENTO = dg.AssetSelection.assets(
    "candidate_models", "model_evaluation", "champion_model", "churn_bento"
)


def _bentos() -> list[tuple[str, object]]:
    import bentoml

    return sorted((str(b.tag), b.info.creation_time) for b in bentoml.bentos.list())


def _served_tag() -> str:
    import bentoml

    return str(bentoml.bentos.get("churn_service:latest").tag)


def _model_copy(materialized: GraphRun, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(materialized.warehouse, target / "warehouse.duckdb")
    shutil.copytree(materialized.home / "truth", target / "truth")
    return target


@pytest.mark.parametrize("failure", ["training_fails", "gate_fails"])
def test_a_failed_training_or_gate_keeps_the_champion_and_the_bento(
    materialized, tmp_path, failure
):
    champion, bentos, served = registry.latest_tag(), _bentos(), _served_tag()
    models = sorted(str(m.tag) for m in __import__("bentoml").models.list())
    home = _model_copy(materialized, tmp_path)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        if failure == "training_fails":
            con.execute("DELETE FROM training_set")
        else:  # a leaky feature: the gate refuses the (too good) winner
            con.execute("UPDATE training_set SET cancellation_requests_90d = churned")
    run = materialize_graph(home, MODEL_STAGE_AND_BENTO, raise_on_error=False)
    done = {e.asset_key.to_user_string() for e in run.result.get_asset_materialization_events()}
    assert "champion_model" not in done and "churn_bento" not in done, done
    if failure == "training_fails":
        assert not run.result.success
    else:
        assert not run.checks()["model_evaluation:quality_gate"].passed
    assert registry.latest_tag() == champion
    assert sorted(str(m.tag) for m in __import__("bentoml").models.list()) == models
    assert _bentos() == bentos and _served_tag() == served


# ------------------------------------------------------------------------------------------
# A model missing from the store stops the service at startup
# ------------------------------------------------------------------------------------------


@pytest.mark.slow  # starts `bentoml serve` (which must refuse to start)
def test_a_missing_model_stops_the_service_at_startup_naming_it(materialized, tmp_path):
    bin_dir = Path(sys.executable).parent
    cases = {
        "empty store": ({"BENTOML_HOME": str(tmp_path / "empty")}, "churn_model:latest"),
        "unknown tag": (
            {"CHURN_MODEL_TAG": "churn_model:nosuchversion"},
            "churn_model:nosuchversion",
        ),
    }
    processes = {}
    for name, (extra, _) in cases.items():
        env = os.environ | {
            "CHURN_HOME": str(tmp_path / "home"),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        }
        env.pop("CHURN_MODEL_TAG", None)
        log = tmp_path / f"{name.replace(' ', '_')}.log"
        processes[name] = (
            subprocess.Popen(
                [
                    f"{bin_dir}/bentoml",
                    "serve",
                    "serving.service:ChurnService",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(free_port()),
                ],
                cwd=REPO_ROOT,
                env=env | extra,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            log,
        )
    try:
        for name, (process, log) in processes.items():
            try:
                code = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name}: the service started without its model:\n{log.read_text()}")
            output = log.read_text()
            assert code != 0, (name, output[-2000:])
            assert "ModelNotFoundError" in output, (name, output[-2000:])
            assert f"No model '{cases[name][1]}' in the BentoML model store" in output, name
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
