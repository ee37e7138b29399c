"""Run the example sources end to end, once per test session, in fresh processes.

The code location reads ``CHURN_SOURCE`` when it loads (the observation partitions follow the
source), so each example runs as ``make pipeline`` does: ``python -m churn_assets.pipeline`` in a
subprocess with its own ``CHURN_HOME``, ``DAGSTER_HOME`` (so the run history is in that
instance) and ``BENTOML_HOME``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import SESSION_HOME

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ExampleRun:
    shape: str
    home: Path
    dagster_home: Path
    bentoml_home: Path
    source: Path
    seconds: float
    output: str

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def env(self) -> dict[str, str]:
        return example_env(self.home, self.dagster_home, self.bentoml_home, self.source)

    def cards(self) -> list[dict]:
        """Model cards in this run's model store, oldest first."""
        folder = self.bentoml_home / "models" / "churn_model"
        cards = [json.loads(p.read_text()) for p in folder.glob("*/card.json")]
        return sorted(cards, key=lambda card: card["trained_at"])


@functools.cache
def examples_root() -> Path:
    """The examples written by the repo's own script into a temp dir."""
    root = Path(tempfile.mkdtemp(prefix="churn-examples-", dir=SESSION_HOME))
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "make_examples.py"), "--out", str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    return root


def example_env(home: Path, dagster_home: Path, bentoml_home: Path, source: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    bin_dir = str(Path(sys.executable).parent)
    return env | {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "CHURN_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "BENTOML_HOME": str(bentoml_home),
        "CHURN_SOURCE": str(source),
    }


@functools.cache
def run_example(shape: str) -> ExampleRun:
    """``CHURN_SOURCE=<example>/source.yaml make pipeline``, minus the install step."""
    home = Path(tempfile.mkdtemp(prefix=f"churn-{shape}-", dir=SESSION_HOME))
    dagster_home, bentoml_home = home / "dagster_home", home / "bentoml"
    dagster_home.mkdir()
    shutil.copy2(REPO / "config" / "dagster.yaml", dagster_home / "dagster.yaml")
    source = examples_root() / shape / "source.yaml"
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "churn_assets.pipeline"],
        cwd=REPO,
        env=example_env(home, dagster_home, bentoml_home, source),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    return ExampleRun(
        shape, home, dagster_home, bentoml_home, source, time.perf_counter() - started, output
    )
