"""The deployment files agree with each other and with the project, without starting anything.

``make deploy-check`` (deploy/check.py) proves the stack end to end but is too slow for
``make test``; these are the cheap invariants a later edit could break silently: every container
shares the one CHURN_HOME volume, no secret is written into the files, the workspace points at
the code container's gRPC port, and the Kubernetes probes hit routes the service has.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHURN_HOME = "/var/lib/churn"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_stack_has_its_five_containers_on_one_churn_home():
    services = _compose()["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon", "service"}
    for name in ("code", "webserver", "daemon", "service"):
        assert f"churn_home:{CHURN_HOME}" in services[name]["volumes"], name
    assert services["service"]["environment"]["CHURN_HOME"] == CHURN_HOME


def test_secrets_come_from_the_environment_only():
    text = (DEPLOY / "compose.yaml").read_text()
    for variable in ("DAGSTER_PG_PASSWORD", "CHURN_API_KEYS"):
        values = re.findall(rf"{variable}: (.+)", text)
        assert values, variable
        assert all(v.startswith(f"${{{variable}:?") for v in values), (variable, values)


def test_the_workspace_points_at_the_code_containers_grpc_server():
    location = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]
    server = location["grpc_server"]
    command = _compose()["services"][server["host"]]["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("--location-name") + 1] == location["grpc_server"]["location_name"]
    assert "churn_assets.definitions" in command


def test_kubernetes_probes_use_the_services_health_routes():
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "churn-service.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CHURN_API_KEYS"]["valueFrom"]
    assert env["CHURN_HOME"]["value"] == CHURN_HOME


def test_the_code_image_runs_as_the_uid_the_volume_is_created_for():
    containerfile = (DEPLOY / "Containerfile").read_text()
    uid = re.search(r"useradd [^\n]*--uid (\d+)", containerfile).group(1)
    for volume in ("churn_home", "dagster_storage"):
        options = _compose()["volumes"][volume]["driver_opts"]["o"]
        assert f"uid={uid}" in options, volume
