"""One settings object per side, read once: ``churn.settings`` for the pipeline, ``serving.config``
for the service. No other shipped module touches the environment, the serving modules import
each other without a cycle, and importing the service changes nothing in the process that a
test would have to undo."""

from __future__ import annotations

import ast
import graphlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from churn.settings import (
    IMMEDIATE,
    child_environment,
    churn_home,
    engine_config,
    load_settings,
    prepend_path,
)
from serving.config import (
    OFF,
    SHADOW,
    ServingConfigError,
    ServingSettings,
    SettingError,
    load_serving_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("churn", "churn_assets", "serving")
SETTINGS_MODULES = {Path("churn/settings.py"), Path("serving/config.py")}
ENVIRONMENT = re.compile(
    r"\bos\.(environ|getenv|putenv|unsetenv)\b|\bfrom\s+os\s+import\b[^\n]*\b(environ|getenv)\b"
)


def test_only_the_two_settings_modules_touch_the_environment():
    offenders = []
    for package in SHIPPED:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if relative in SETTINGS_MODULES:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if ENVIRONMENT.search(line):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "read settings from churn.settings / serving.config:\n" + "\n".join(
        offenders
    )


def _serving_imports() -> dict[str, set[str]]:
    """Module -> the serving modules it imports (at any depth of its code)."""
    modules = {path.stem: path for path in (REPO_ROOT / "serving").glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] == "serving":
                    imported |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {
                    a.name.split(".")[1] for a in node.names if a.name.startswith("serving.")
                }
        graph[name] = imported & set(modules) - {name}
    return graph


def test_the_serving_modules_import_each_other_without_a_cycle():
    graph = _serving_imports()
    assert graph["config"] == set(), "serving.config must stay a leaf"
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


# --- the pipeline's settings -------------------------------------------------------------------


def test_pipeline_settings_hold_engine_promotion_ports_and_dagster_home(tmp_path):
    settings = load_settings(
        {
            "CHURN_HOME": str(tmp_path),
            "CHURN_ENGINE": "Spark",
            "CHURN_SPARK_REMOTE": "sc://spark:15002",
            "CHURN_SPARK_DRIVER_MEMORY": "6g",
            "CHURN_PROMOTION": " Challenger ",
            "CHURN_DAGSTER_PORT": "4000",
            "CHURN_BENTO_PORT": "4001",
            "DAGSTER_HOME": str(tmp_path / "dagster"),
        }
    )
    assert settings.engine.name == "spark" and settings.engine.spark_remote == "sc://spark:15002"
    assert settings.engine.spark_driver_memory == "6g"
    assert settings.promotion == "challenger"
    assert (settings.dagster_port, settings.bento_port) == (4000, 4001)
    assert settings.dagster_home == tmp_path / "dagster"
    defaults = load_settings({"CHURN_HOME": str(tmp_path)})
    assert defaults.engine == engine_config({})
    assert (defaults.engine.name, defaults.engine.spark_driver_memory) == ("duckdb", "2g")
    assert defaults.promotion == IMMEDIATE
    assert (defaults.dagster_port, defaults.bento_port, defaults.dagster_home) == (3000, 3001, None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHURN_ENGINE", "polars"),
        ("CHURN_PROMOTION", "sometimes"),
        ("CHURN_DAGSTER_PORT", "http"),
        ("CHURN_BENTO_PORT", "70000"),
        ("CHURN_BENTO_PORT", "0"),
    ],
)
def test_a_bad_pipeline_setting_is_named(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        load_settings({"CHURN_HOME": str(tmp_path), name: value})


def test_child_environment_applies_and_removes_changes():
    base = {"PATH": "/bin", "CHURN_SERVING_MODE": "shadow", "KEEP": "1"}
    child = child_environment(base, CHURN_MODEL_TAG="m:1", CHURN_SERVING_MODE=None)
    assert child == {"PATH": "/bin", "KEEP": "1", "CHURN_MODEL_TAG": "m:1"}
    assert base["CHURN_SERVING_MODE"] == "shadow"  # the parent's mapping is left alone
    assert prepend_path("/venv/bin", {"PATH": "/bin"}) == f"/venv/bin{os.pathsep}/bin"
    assert prepend_path("/venv/bin", {}) == "/venv/bin"


# --- the service's settings --------------------------------------------------------------------


def test_serving_settings_are_one_object_from_one_mapping(tmp_path):
    settings = load_serving_settings(
        {
            "CHURN_HOME": str(tmp_path),
            "CHURN_API_KEYS": " alpha, ,beta ",
            "CHURN_RATE_LIMIT": "10/s",
            "CHURN_MAX_BODY_BYTES": "1000",
            "CHURN_MODEL_TAG": "churn_model:abc",
            "CHURN_CHALLENGER_TAG": "auto",
            "CHURN_SERVING_MODE": "canary",
            "CHURN_CANARY_FRACTION": "0.25",
        }
    )
    assert settings.api_keys == (b"alpha", b"beta")
    assert "alpha" not in repr(settings)  # a logged settings object shows no key
    assert settings.rate_limits.enabled and settings.rate_limits.default.rate == 10
    assert settings.max_body_bytes == 1000 and settings.max_inflight_bytes >= 1000
    assert (settings.model_tag, settings.challenger_tag) == ("churn_model:abc", "auto")
    assert settings.prediction_logs_dir == churn_home({"CHURN_HOME": str(tmp_path)}) / (
        "prediction_logs"
    )
    mode = settings.serving_mode(has_challenger=True)
    assert (mode.mode, mode.canary_fraction) == ("canary", 0.25)
    with pytest.raises(ServingConfigError, match="CHURN_SERVING_MODE"):
        settings.serving_mode(has_challenger=False)


@pytest.mark.parametrize("value", [",", " ", " , ,"])
def test_an_api_key_list_with_no_real_key_refuses_to_start(value):
    with pytest.raises(SettingError, match=r"CHURN_API_KEYS=.*holds no key"):
        load_serving_settings({"CHURN_API_KEYS": value})
    assert load_serving_settings({"CHURN_API_KEYS": ""}).api_keys == ()  # empty = unset: open


def test_serving_mode_defaults_follow_the_challenger():
    settings = load_serving_settings({})
    assert settings.serving_mode(has_challenger=True).mode == SHADOW
    assert settings.serving_mode(has_challenger=False).mode == OFF
    assert settings.api_keys == () and not settings.rate_limits.enabled
    assert settings == ServingSettings(prediction_logs_dir=settings.prediction_logs_dir)
    with pytest.raises(SettingError, match="CHURN_SERVING_MODE"):
        load_serving_settings({"CHURN_SERVING_MODE": "shadow"}, has_challenger=False)


# --- importing the service ---------------------------------------------------------------------

_PROBE = """
import gc, json, logging, os, sys
import uvicorn.config

REQUEST_LOGGER = "bentoml._internal.server.http_app"  # serving.errors.BENTOML_REQUEST_LOGGER

def state():
    return {
        "gc_frozen": gc.get_freeze_count(),
        "gc_threshold": list(gc.get_threshold()),
        "gc_enabled": gc.isenabled(),
        "switch_interval": sys.getswitchinterval(),
        "protocols": dict(uvicorn.config.HTTP_PROTOCOLS),
        "request_log_filters": len(logging.getLogger(REQUEST_LOGGER).filters),
        "environment": {k: os.environ.get(k) for k in ("FORWARDED_ALLOW_IPS", "OMP_NUM_THREADS")},
    }

before = state()
import serving.service
assert serving.service.SETTINGS is not None
print(json.dumps({"before": before, "after": state()}))
"""


def test_importing_the_service_changes_nothing_a_test_must_undo(materialized):
    """GC state, the switch interval, uvicorn's protocol table, log filters and the environment
    are the same after ``import serving.service`` (a fresh process: the import is once per
    process). The card is read and the schemas built, which needs a model in the store."""
    from serving.errors import BENTOML_REQUEST_LOGGER

    assert f'"{BENTOML_REQUEST_LOGGER}"' in _PROBE
    env = child_environment(
        PYTHONPATH=str(REPO_ROOT), FORWARDED_ALLOW_IPS=None, OMP_NUM_THREADS=None
    )
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    states = json.loads(completed.stdout.strip().splitlines()[-1])
    assert states["after"] == states["before"]


@pytest.mark.slow
def test_a_served_bento_still_caps_the_request_head(materialized, tmp_path):
    """The head cap is installed by the ``bentoml serve`` worker when it imports the service,
    not by any other import: a real server must still answer an oversized head with 431."""
    from serving.http_limits import MAX_HEAD_BYTES
    from tests.serving_support import bento_tag, serving, start
    from tests.test_reliability_limits import raw_request

    with serving({"s": start(bento_tag(materialized), tmp_path / "h", None)}) as servers:
        address = servers["s"].url.removeprefix("http://")
        big = b"a" * (4 * MAX_HEAD_BYTES)
        answer = raw_request(
            address, b"POST /score HTTP/1.1\r\nHost: x\r\nX-Junk: " + big + b"\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
