"""A run killed with SIGKILL no longer holds the warehouse pool forever (issue 17, item 5).

Real parts: a persistent Dagster instance with the project's ``dagster.yaml`` (pool limit 1), a
``dagster asset materialize`` subprocess whose asset claims the ``duckdb_warehouse`` pool and is
SIGKILLed mid-step, then :func:`release_stale_runs` and a second materialization in the same
pool, which must run (before the fix it waited forever: "Step blocked by limit for pool").
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from churn_assets.resources import WAREHOUSE_POOL
from churn_assets.stale_runs import release_stale_runs

REPO = Path(__file__).resolve().parents[1]

ASSETS = textwrap.dedent(
    """
    import time
    from pathlib import Path

    import dagster as dg

    @dg.asset(pool={pool!r})
    def slow_write() -> None:
        Path({marker!r}).touch()
        time.sleep(600)

    @dg.asset(pool={pool!r})
    def next_write() -> None:
        Path({done!r}).touch()

    defs = dg.Definitions(assets=[slow_write, next_write])
    """
)


def _materialize(defs_file: Path, asset: str, dagster_home: Path) -> subprocess.Popen:
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.Popen(
        [str(dagster), "asset", "materialize", "-f", str(defs_file), "--select", asset],
        cwd=defs_file.parent,
        env=os.environ | {"DAGSTER_HOME": str(dagster_home)},
        stdout=(defs_file.parent / f"{asset}.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            log = (path.parent / "slow_write.log").read_text()[-3000:]
            pytest.fail(f"materialize ended (rc {process.returncode}) early:\n{log}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow  # Dagster runs in subprocesses, one killed
@pytest.mark.timeout(300)
def test_a_killed_run_is_marked_failed_and_frees_the_pool(tmp_path: Path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy2(REPO / "config" / "dagster.yaml", dagster_home / "dagster.yaml")
    marker, done = tmp_path / "writing", tmp_path / "next_done"
    defs_file = tmp_path / "killed_defs.py"
    defs_file.write_text(ASSETS.format(pool=WAREHOUSE_POOL, marker=str(marker), done=str(done)))

    process = _materialize(defs_file, "slow_write", dagster_home)
    try:
        _wait_for(marker, process)
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            (run,) = instance.get_runs()
            assert release_stale_runs(instance) == []  # alive: left alone
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        pool = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert pool.active_run_ids == {run.run_id}  # the dead run holds the only slot
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        (stale,) = release_stale_runs(instance)
        assert (stale.run_id, stale.action) == (run.run_id, "failed")
        assert "marked it failed and freed its warehouse pool slot" in stale.describe()
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        pool = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert pool.active_run_ids == set()
        assert release_stale_runs(instance) == []  # nothing left to release

    following = _materialize(defs_file, "next_write", dagster_home)
    assert following.wait(timeout=180) == 0, (tmp_path / "next_write.log").read_text()[-3000:]
    assert done.exists()
