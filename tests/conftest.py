"""Test configuration: a small synthetic business and an isolated CHURN_HOME per session.

The size variables are set before anything imports ``churn_assets``, because the monthly
partitions are fixed when the code location loads.

Every pytest process has its own home (``mkdtemp``): under pytest-xdist each worker is a process,
so workers never share a warehouse, a Dagster instance or a BentoML store. How the parallel run
groups tests onto workers: ``docs/testing.md``.
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
from importlib.util import find_spec  # noqa: E402

import pytest  # noqa: E402

from tests.graph import GraphRun, materialize_graph  # noqa: E402

SPARK_EXTRA = all(find_spec(name) is not None for name in ("pyspark", "sqlglot"))
"""Whether the optional ``spark`` extra is installed. Without it the Spark modules cannot even be
imported, so they are not collected (and the header says so) instead of failing collection for
someone who installed only ``.[dev]``; ``make test`` installs the extra and runs them."""
collect_ignore_glob = [] if SPARK_EXTRA else ["test_spark_*.py"]


def pytest_report_header(config: pytest.Config) -> str | None:
    if SPARK_EXTRA:
        return None
    return "spark extra not installed: test_spark_*.py not collected (pip install 'churn[spark]')"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Everything a test run writes lives under SESSION_HOME; leave no state behind. A hook, not
    a session fixture, because the xdist controller imports this file (and makes a home) but
    runs no test."""
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline_home() -> Path:
    """A CHURN_HOME with the whole data graph materialized once on the small synthetic data."""
    return SESSION_HOME


@pytest.fixture(scope="session")
def materialized(pipeline_home: Path) -> GraphRun:
    return materialize_graph(pipeline_home)
