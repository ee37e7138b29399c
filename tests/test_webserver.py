"""The Dagster UI a data engineer opens: a real ``dagster-webserver`` on a materialized instance.

The instance is the flat example's (``tests.byod_support``): its pipeline ran through the
``dagster asset materialize`` CLI into a temp ``DAGSTER_HOME``, so the run history is there.
Everything is asserted through the webserver's GraphQL API, which is what the UI itself reads.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from churn_assets.definitions import defs
from tests.byod_support import REPO, run_example

pytestmark = pytest.mark.slow

QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
  assetNodes {
    assetKey { path }
    groupName
    description
    kinds
    owners { __typename ... on TeamAssetOwner { team } }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
    assetMaterializations(limit: 1) { runId }
  }
}
"""
KINDS = {"duckdb", "lightgbm", "scikit-learn", "bentoml", "evidently", "html"}
GROUPS = {"raw", "staging", "features", "model", "scoring", "monitoring"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url, json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def graphql():
    run = run_example("flat")
    port = _free_port()
    dagster_webserver = Path(sys.executable).parent / "dagster-webserver"
    server = subprocess.Popen(
        [
            str(dagster_webserver),
            "-m",
            "churn_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=run.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, "dagster-webserver exited"
                assert time.monotonic() < deadline, "dagster-webserver did not start in 120 s"
                time.sleep(1)
        yield lambda query: _post(f"{url}/graphql", query)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def answer(graphql) -> dict:
    result = graphql(QUERY)
    assert "errors" not in result, result.get("errors")
    return result["data"]


def test_the_code_location_loads_without_errors(answer):
    (entry,) = answer["workspaceOrError"]["locationEntries"]
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry


def test_every_asset_and_check_of_the_definitions_is_listed(answer):
    graph = defs.resolve_asset_graph()
    expected_assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    expected_checks = {
        f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys
    }
    nodes = {"/".join(node["assetKey"]["path"]): node for node in answer["assetNodes"]}
    checks = {
        f"{name}:{check['name']}"
        for name, node in nodes.items()
        for check in node["assetChecksOrError"].get("checks", [])
    }
    assert set(nodes) == expected_assets
    assert checks == expected_checks
    assert len(checks) >= 40


def test_every_asset_is_described_grouped_owned_and_kinded(answer):
    for node in answer["assetNodes"]:
        name = "/".join(node["assetKey"]["path"])
        assert node["description"], name
        assert node["groupName"] in GROUPS, name
        assert [o["team"] for o in node["owners"] if o["__typename"] == "TeamAssetOwner"], name
        assert node["kinds"] and set(node["kinds"]) <= KINDS, (name, node["kinds"])
    kinds = {kind for node in answer["assetNodes"] for kind in node["kinds"]}
    assert kinds == KINDS


def test_the_materialized_run_history_is_visible(answer):
    unmaterialized = [
        "/".join(node["assetKey"]["path"])
        for node in answer["assetNodes"]
        if not node["assetMaterializations"]
    ]
    assert unmaterialized == []


METADATA_QUERY = """
{
  assetNodes(assetKeys: [{path: ["model_evaluation"]}, {path: ["champion_model"]}]) {
    assetKey { path }
    description
    assetMaterializations(limit: 1) {
      metadataEntries {
        label
        __typename
        ... on JsonMetadataEntry { jsonString }
        ... on TableMetadataEntry { table { records } }
      }
    }
  }
}
"""


def _strict_json(text: str):
    """What a browser's JSON.parse accepts: no NaN, no Infinity."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_ui_gets_inline_tables_and_a_strict_json_model_card(graphql):
    result = graphql(METADATA_QUERY)
    assert "errors" not in result, result.get("errors")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in result["data"]["assetNodes"]}
    evaluation = {
        e["label"]: e
        for e in nodes["model_evaluation"]["assetMaterializations"][0]["metadataEntries"]
    }
    for label in ("metrics", "gate_comparison", "confusion_matrix", "calibration"):
        assert evaluation[label]["__typename"] == "TableMetadataEntry", label
        for record in evaluation[label]["table"]["records"]:
            _strict_json(record)
    champion = nodes["champion_model"]
    assert "<" not in champion["description"]  # the UI reads <...> as an HTML tag
    entries = {e["label"]: e for e in champion["assetMaterializations"][0]["metadataEntries"]}
    card = _strict_json(entries["model_card"]["jsonString"])
    assert card["quality_gate"]["rule"] == "no_champion"  # the example's first model
