"""The bench's report never says "failed" without the error, and shows the load average beside
every figure (issue 29 item 7). No timings are asserted: only what is recorded and printed."""

from __future__ import annotations

import subprocess
import sys

from benchmarks import __main__ as bench
from benchmarks import pipeline


def _results(**figures) -> dict:
    return {
        "machine": {"load_average_at_start": [0.5, 0.4, 0.3]},
        "load_average_at_end": [0.7, 0.5, 0.4],
        "seconds": 12.0,
        **figures,
    }


def test_a_failed_subprocess_is_recorded_with_its_stderr_tail_and_the_load():
    results: dict = {}
    command = [sys.executable, "-c", "import sys; print('step one'); sys.exit('boom: disk full')"]
    got = bench._guarded(
        results,
        "batch_scoring",
        lambda: subprocess.run(command, capture_output=True, text=True, check=True),
    )
    assert got is None
    error = results["errors"]["batch_scoring"]
    assert "CalledProcessError" in error and "boom: disk full" in error
    start, end = results["error_load_average"]["batch_scoring"]
    assert start >= 0 and end >= 0
    table = bench.render(_results(**results))
    assert "FAILED batch_scoring  [load " in table and "boom: disk full" in table


def test_every_measured_figure_carries_the_load_at_its_start_and_end():
    results: dict = {}
    figures = bench._guarded(results, "generator", lambda: {"rows_per_second": 1})
    assert len(figures["load_average"]) == 2
    assert "errors" not in results


def test_a_missing_asset_step_time_prints_the_reason_not_failed():
    figures = {
        "feature_sql_seconds": 20.0,
        "leakage_check_seconds": 5.0,
        "asset_step_seconds": None,
        "asset_step_error": "DagsterAssetCheckFailedError: rows_match_active_customers",
        "snapshot_rows": 10,
        "load_average": [1.0, 2.0],
    }
    table = bench.render(_results(features={"100000": figures}))
    assert "rows_match_active_customers" in table
    assert "[load 1.0 -> 2.0]" in table
    step_lines = [line for line in table.splitlines() if "asset step" in line]
    assert step_lines and all("FAILED" in line for line in step_lines)


def test_a_failing_command_raises_with_its_output_tail(tmp_path):
    script = "import sys; print('\\n'.join(f'line {i}' for i in range(50))); sys.exit(3)"
    try:
        pipeline._run([sys.executable, "-c", script], {}, tmp_path / "log.txt", timeout=60)
    except RuntimeError as error:
        text = str(error)
    else:
        raise AssertionError("expected a failure")
    assert "failed (3)" in text and "line 49" in text and "line 10" not in text


def test_a_timed_out_command_says_so_with_what_it_printed(tmp_path):
    script = "import time; print('started', flush=True); time.sleep(30)"
    try:
        pipeline._run([sys.executable, "-c", script], {}, tmp_path / "log.txt", timeout=2)
    except RuntimeError as error:
        text = str(error)
    else:
        raise AssertionError("expected a timeout")
    assert "timed out after 2 s" in text and "started" in text


def test_step_times_and_step_errors_come_from_the_instance_at_any_log_level(tmp_path):
    import dagster as dg

    @dg.asset
    def fine() -> int:
        return 1

    @dg.asset
    def broken() -> int:
        raise ValueError("the reason it broke")

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([fine], instance=instance).success
        assert not dg.materialize([broken], instance=instance, raise_on_error=False).success
    seconds, errors = pipeline.instance_steps(home)
    assert set(seconds) == {"fine"} and seconds["fine"] >= 0
    assert "the reason it broke" in errors["broken"]
