"""``make dagster`` stops within seconds on Ctrl-C, leaving no process of its tree behind
(issue 28, item 18): the target's command, a real ``dagster dev`` on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serving_support import free_port

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
STOP_SECONDS = 15.0


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _alive(processes: list[psutil.Process]) -> list[str]:
    left = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
    return left


def test_ctrl_c_stops_the_ui_and_its_whole_tree_within_seconds(tmp_path):
    home = tmp_path / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "config" / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "CHURN_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "BENTOML_HOME": str(home / "bentoml"),
        "CHURN_DAGSTER_PORT": str(port),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    log = tmp_path / "ui.log"
    # As from a terminal: the target's command leads its own foreground group.
    target = subprocess.Popen(
        [sys.executable, "-m", "churn_assets.demo", "--ui-only"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert target.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the UI never answered:\n" + log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        time.sleep(2)  # let the daemon and code servers settle
        tree = _tree(target.pid)
        assert len(tree) >= 3, [p.cmdline() for p in tree]  # ours, dagster dev, its servers
        os.killpg(target.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole group
        started = time.monotonic()
        while _alive(tree) and time.monotonic() - started < STOP_SECONDS:
            time.sleep(0.1)
        left = _alive(tree)
        assert not left, f"still running {time.monotonic() - started:.1f} s after Ctrl-C: {left}"
        assert target.wait(timeout=1) == 0
    finally:
        for process in _tree(target.pid):
            with contextlib.suppress(psutil.Error):
                process.kill()
