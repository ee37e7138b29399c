"""Test configuration: a small synthetic business and an isolated CHURN_HOME per session.

The size variables are set before anything imports ``churn_assets``, because the monthly
partitions are fixed when the code location loads.
"""

import os
import tempfile
from pathlib import Path

SESSION_HOME = Path(tempfile.mkdtemp(prefix="churn-test-home-"))
os.environ.update(
    {
        "CHURN_HOME": str(SESSION_HOME),
        "CHURN_SOURCE": "synthetic",
        "CHURN_CUSTOMERS": "2500",
        "CHURN_MONTHS": "8",
        "CHURN_SEED": "7",
        "CHURN_START_DATE": "2025-01-01",
        "DAGSTER_HOME": str(SESSION_HOME / "dagster_home"),
        "BENTOML_HOME": str(SESSION_HOME / "bentoml"),
    }
)
(SESSION_HOME / "dagster_home").mkdir(parents=True, exist_ok=True)

import shutil  # noqa: E402

import pytest  # noqa: E402

from tests.graph import GraphRun, materialize_graph  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _remove_session_home():
    """Everything a test run writes lives under SESSION_HOME; leave no state behind."""
    yield
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline_home() -> Path:
    """A CHURN_HOME with the whole data graph materialized once on the small synthetic data."""
    return SESSION_HOME


@pytest.fixture(scope="session")
def materialized(pipeline_home: Path) -> GraphRun:
    return materialize_graph(pipeline_home)
