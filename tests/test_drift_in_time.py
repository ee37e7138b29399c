"""drift_check over time on the synthetic world: quiet on its own months and on a stationary new
month, loud on the shift tool's ``usage_drop``.

The new month is landed as ``docs/drift-walkthrough.md`` does it (incoming files; the calendar
grows as they land, the same settings), in a fresh process (``tests/shift_probe.py``) on a copy
of the session's home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from churn.monitoring.drift import DEFAULT_DRIFT_SHARE
from tests.byod_support import REPO
from tests.graph import GraphRun
from tests.test_models import materialization

pytestmark = pytest.mark.slow


def _land_shifted_month(materialized: GraphRun, home: Path, kind: str, pct: float) -> dict:
    for name in ("raw", "truth", "bentoml"):
        shutil.copytree(materialized.home / name, home / name)
    shutil.copy2(materialized.warehouse, home / "warehouse.duckdb")
    (home / "dagster_home").mkdir()
    env = os.environ | {
        "CHURN_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "BENTOML_HOME": str(home / "bentoml"),
    }
    out = home / "drift_check.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tests.shift_probe", kind, str(pct), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]
    return json.loads(out.read_text())


def test_the_first_run_compares_with_the_previous_month_and_passes(materialized: GraphRun):
    check = materialized.checks()["drift_report:drift_check"]
    assert check.passed, check.description
    metadata = materialization(materialized, "drift_report").metadata
    assert metadata["time_growing_features"].value == ["tenure_days"]
    assert metadata["previous_observation_date"].value < metadata["current_observation_date"].value
    assert metadata["previous_month_drift_share"].value <= DEFAULT_DRIFT_SHARE
    assert Path(metadata["previous_month_report_html"].value).exists()
    by_feature = {r.data["feature"]: r.data for r in metadata["previous_month_by_feature"].records}
    assert by_feature["tenure_days"]["time_growing"] and by_feature["tenure_days"]["counted"]
    assert by_feature["tenure_days"]["aged_score"] is not None
    training = {r.data["feature"]: r.data for r in metadata["drift_by_feature"].records}
    assert not training["tenure_days"]["counted"]  # a sample of mixed dates: reported only


def test_a_stationary_new_month_passes(materialized: GraphRun, tmp_path: Path):
    check = _land_shifted_month(materialized, tmp_path, "usage_drop", 0.0)
    assert check["passed"], check["description"]


def test_the_shift_tools_usage_drop_fails(materialized: GraphRun, tmp_path: Path):
    check = _land_shifted_month(materialized, tmp_path, "usage_drop", 90.0)
    assert not check["passed"], check["description"]
    metadata = check["metadata"]
    assert metadata["drift_share"] > DEFAULT_DRIFT_SHARE
    assert metadata["previous_month_drift_share"] > DEFAULT_DRIFT_SHARE
    assert "events_30d" in metadata["previous_month_drifted_columns"]
