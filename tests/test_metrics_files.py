"""Prometheus' multiprocess files on a full disk (issue 28, item 1; ``serving.metrics_files``).

A real 1 MiB tmpfs as ``PROMETHEUS_MULTIPROC_DIR``, filled; a subprocess then records metrics
as a BentoML worker does (a new file, then enough label sets to grow it). Upstream that is a
SIGBUS (exit -7, the reported exit 135 under a shell); with the pre-allocation installed the
process lives, and its metrics move to memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.full_disk_support import fill, free, small_disk

REPO_ROOT = Path(__file__).resolve().parents[1]

RECORD = textwrap.dedent(
    """
    import sys
    if sys.argv[1] == "install":
        from serving.metrics_files import install
        install()
    from prometheus_client import Counter, Histogram
    requests = Counter("requests", "requests", ["route"])
    latency = Histogram("latency", "latency", ["route"])
    for i in range(int(sys.argv[2])):  # enough keys to double the 64 KiB file a few times
        requests.labels(route=f"/route/{i}").inc()
        latency.labels(route=f"/route/{i % 10}").observe(0.01)
    print("alive", flush=True)
    """
)


def _record(directory: Path, install: bool, keys: int) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", RECORD, "install" if install else "upstream", str(keys)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_upstream_dies_with_sigbus_on_a_full_disk(tmp_path):
    """The behaviour guarded against, so the test below proves something."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        (disk / "metrics").mkdir()
        fill(disk)
        done = _record(disk / "metrics", install=False, keys=2000)
    assert done.returncode == -signal.SIGBUS, (done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("filled_first", [True, False], ids=["full before", "full while growing"])
def test_preallocated_metric_files_survive_a_full_disk(tmp_path, filled_first):
    with small_disk(tmp_path / "disk", "1m") as disk:
        metrics = disk / "metrics"
        metrics.mkdir()
        if filled_first:
            fill(disk)
        else:  # room for the first files, not for their growth
            (disk / ".filler").write_bytes(b"\0" * (1024 * 1024 - 4 * 65536))
        done = _record(metrics, install=True, keys=8000)
        assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
        assert "alive" in done.stdout
        assert "metrics stay in memory" in done.stderr
        free(disk)
        again = _record(metrics, install=True, keys=50)  # room again: files as usual
        assert again.returncode == 0 and "in memory" not in again.stderr, again.stderr[-2000:]
        assert any(p.stat().st_size > 0 for p in metrics.glob("*.db"))
