"""``make pipeline`` and ``make demo`` are quiet by default (issue 28, item 17): INFO and progress,
not Dagster's DEBUG event log; ``CHURN_LOG_LEVEL=debug`` brings it back; the summary names the
exports and the data files. The first step of ``make pipeline`` (its own command, on a small
synthetic business in a fresh home) and the summary function the target prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from churn.settings import load_settings
from churn_assets.demo import dagster_dev_command
from churn_assets.pipeline import cli_environment, land_command, summary

REPO_ROOT = Path(__file__).resolve().parents[1]
DEBUG_LINE = " - DEBUG - "


def _land(tmp_path: Path, level: str) -> list[str]:
    home = tmp_path / level
    (home / "dagster_home").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "config" / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    settings = load_settings({"CHURN_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")})
    env = cli_environment(settings) | {
        "CHURN_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "CHURN_CUSTOMERS": "300",
        "CHURN_MONTHS": "7",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        land_command(level),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 0, "\n".join(output[-40:])
    return output


@pytest.mark.slow
def test_the_pipeline_prints_info_and_progress_not_the_debug_log(tmp_path):
    """Before: every DEBUG event (step start, inputs loaded, outputs handled, engine events)."""
    quiet = _land(tmp_path, "info")
    assert not [line for line in quiet if DEBUG_LINE in line]
    assert any("synthetic source: simulate" in line for line in quiet)  # progress
    assert any("stg_events:" in line for line in quiet)  # what each asset did
    assert len(quiet) <= 40, "\n".join(quiet)
    loud = _land(tmp_path, "debug")
    assert len([line for line in loud if DEBUG_LINE in line]) > 20


def test_the_log_level_is_a_documented_setting_naming_itself():
    assert load_settings({}).log_level == "info"
    assert load_settings({"CHURN_LOG_LEVEL": "DEBUG"}).log_level == "debug"
    with pytest.raises(ValueError, match="CHURN_LOG_LEVEL"):
        load_settings({"CHURN_LOG_LEVEL": "loud"})
    assert dagster_dev_command(3000, "info")[-2:] == ["--log-level", "warning"]
    assert dagster_dev_command(3000, "debug")[-2:] == ["--log-level", "info"]
    assert "CHURN_LOG_LEVEL" in (REPO_ROOT / "README.md").read_text()


def test_the_summary_lists_exports_and_data_files_not_the_config(materialized):
    settings = load_settings()
    text = summary(settings, since=time.time() - 24 * 3600)
    assert "customer_scores_latest.parquet" in text and "customer_scores_latest.csv" in text
    assert str(settings.raw_dir / "events.parquet") in text
    assert "source:" not in text
