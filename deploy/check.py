"""``make deploy-check``: bring deploy/compose.yaml up with podman-compose and prove it works.

Builds the images that are missing, starts the stack under its own compose project with random
secrets and small synthetic data, then checks in order, printing one line per check:

1. the webserver answers ``/server_info`` and the service ``/readyz``;
2. the code location (the gRPC server) is loaded by the webserver, the instance stores runs in
   Postgres and the daemon's required loops report healthy;
3. a run of the raw and staging assets, launched through the webserver's GraphQL API, is queued,
   dequeued by the daemon and succeeds in the code container;
4. the daemon has ticked a sensor of the code location;
5. ``/score`` answers 401 without a key and a score with one;
6. that scored row reaches the ``prediction_logs`` asset (a second GraphQL run) through the shared
   CHURN_HOME volume: its materialization's ``dagster/row_count`` is at least 1.

The stack and its volumes are removed at the end, also on failure or Ctrl-C (``--keep`` leaves it
up to look around). Exits 1 on the first failed check. Not part of ``make test``: the first run
builds three images (about 15 minutes on two cores), later runs take a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
DEBIAN_IMAGE = "localhost/debian:bookworm-min"
SMALL_DATA = {"CHURN_CUSTOMERS": "800", "CHURN_MONTHS": "7"}
"""The small synthetic world the tests use for a full graph (tests/test_forward_simulation.py)."""
PUBLISH_SECONDS = 62
"""How long after a score its prediction-log file is published for ingestion (see below)."""
LOCATION = "churn"
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"


class CheckFailed(RuntimeError):
    """A check that did not pass; the message says what was expected and what came back."""


@dataclass(frozen=True)
class Stack:
    """Where the running stack answers and the secrets it was started with."""

    project: str
    dagster_url: str
    service_url: str
    api_key: str
    env: Mapping[str, str]


def say(text: str) -> None:
    """One line of the check's output, flushed at once (the output is often a log file)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def report(name: str, detail: str = "") -> None:
    """One passed check, in the output docs/deploy.md quotes."""
    say(f"ok    {name}" + (f"  ({detail})" if detail else ""))


def run(command: list[str], env: Mapping[str, str] | None = None, quiet: bool = True) -> None:
    """Run a build or compose command; its output is shown only when it fails."""
    result = subprocess.run(
        command, env=dict(env) if env else None, capture_output=quiet, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        if quiet:
            sys.stderr.write((result.stdout or "")[-4000:] + (result.stderr or "")[-4000:])
        raise CheckFailed(f"{' '.join(command[:4])} ... exited {result.returncode}")


def image_exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image]).returncode == 0


def free_port() -> int:
    """A port nothing listens on now: other checkouts on this machine may hold 3000/3001."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_images(env: Mapping[str, str], rebuild_service: bool = False) -> None:
    """Build the images the compose file names. The code image is built every time (podman's
    layer cache makes that cheap when nothing changed), so the stack runs this checkout's
    code; the others are built when podman does not have them, the service image also with
    ``rebuild_service`` (it takes a pipeline run and ``bentoml containerize``)."""
    if not image_exists(BASE_IMAGE) or not image_exists(DEBIAN_IMAGE):
        say("build base images (deploy/base-image.sh)")
        run(["bash", str(DEPLOY / "base-image.sh")], quiet=False)
    if not image_exists(env["CHURN_POSTGRES_IMAGE"]):
        say(f"build {env['CHURN_POSTGRES_IMAGE']}")
        run(["podman", "build", "--network", "host", "-t", env["CHURN_POSTGRES_IMAGE"],
             str(DEPLOY / "postgres")])  # fmt: skip
    say(f"build {env['CHURN_CODE_IMAGE']} (cached layers when nothing changed)")
    run(["podman", "build", "--network", "host", "-f", str(DEPLOY / "Containerfile"),
         "-t", env["CHURN_CODE_IMAGE"], str(ROOT)])  # fmt: skip
    if rebuild_service or not image_exists(env["CHURN_SERVICE_IMAGE"]):
        build_service_image(env["CHURN_SERVICE_IMAGE"])


def build_service_image(tag: str) -> None:
    """What ``make pipeline`` runs, on small data in a throwaway CHURN_HOME (its own
    BENTOML_HOME, so no other checkout's models are seen), then ``bentoml containerize`` of the
    Bento it built. Runs with this interpreter: ``make deploy-check`` has bootstrapped it."""
    say(f"build {tag} (the pipeline on small data, then bentoml containerize)")
    with tempfile.TemporaryDirectory(prefix="churn-deploy-") as home:
        env = (
            os.environ
            | SMALL_DATA
            | {
                "CHURN_HOME": home,
                "DAGSTER_HOME": f"{home}/dagster_home",
                "BENTOML_HOME": f"{home}/bentoml",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        Path(env["DAGSTER_HOME"]).mkdir()
        shutil.copy(ROOT / "config" / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
        run([sys.executable, "-m", "churn_assets.pipeline"], env=env)
        bentoml = str(Path(sys.executable).parent / "bentoml")
        run([bentoml, "containerize", "--backend", "podman", "churn_service:latest",
             "-t", tag, "--opt", "network=host"], env=env)  # fmt: skip


def compose(stack_env: Mapping[str, str], project: str, *args: str) -> list[str]:
    """A podman-compose command line for this check's own project name."""
    tool = shutil.which("podman-compose", path=stack_env.get("PATH"))
    if tool is None:
        raise CheckFailed("podman-compose not found: pip install podman-compose")
    return [tool, "-p", project, "-f", str(COMPOSE), *args]


def http(
    url: str,
    body: Any = None,
    key: str | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """(status, parsed JSON or text) of a GET, or a POST when ``body`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 3.0) -> Any:
    """Poll ``probe`` until it returns something truthy; the last error names what never came."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (OSError, urllib.error.URLError, CheckFailed, KeyError, TypeError) as error:
            last = str(error)
        time.sleep(every)
    raise CheckFailed(f"{what}: not within {timeout:.0f} s (last: {last})")


def graphql(stack: Stack, query: str, variables: Mapping[str, Any] | None = None) -> Any:
    """The ``data`` of a query to the webserver's GraphQL API; errors raise with their text."""
    status, answer = http(
        f"{stack.dagster_url}/graphql", {"query": query, "variables": dict(variables or {})}
    )
    if status != 200 or not isinstance(answer, dict) or answer.get("errors"):
        raise CheckFailed(f"GraphQL answered {status}: {str(answer)[:500]}")
    return answer["data"]


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on UnauthorizedError { message }
  }
}"""
RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
ASSETS = """
query { assetNodes { assetKey { path } groupName isPartitioned } }"""
SENSORS = """
query Sensors($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) {
    ... on Sensors { results { name sensorState { status ticks(limit: 1) { status timestamp } } } }
    ... on PythonError { message }
  }
}"""
ROW_COUNT = """
query Rows($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries {
      label ... on IntMetadataEntry { intValue } } } }
  }
}"""
INSTANCE = """
query { instance { info daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""
LOCATIONS = """
query { workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def launch(stack: Stack, asset_keys: list[list[str]], timeout: float) -> str:
    """Launch the asset job on ``asset_keys`` through GraphQL and wait for SUCCESS."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": ASSET_JOB,
            "assetSelection": [{"path": key} for key in asset_keys],
        },
        "runConfigData": {},
    }
    result = graphql(stack, LAUNCH, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise CheckFailed(f"launchRun: {result}")
    run_id = result["run"]["runId"]

    def finished() -> str | None:
        status = graphql(stack, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in {"FAILURE", "CANCELED"}:
            raise RuntimeError(f"run {run_id} ended {status}")
        return status if status == "SUCCESS" else None

    try:
        wait_for(f"run {run_id} to succeed", finished, timeout, every=5)
    except RuntimeError as error:
        raise CheckFailed(str(error)) from error
    return run_id


def example_features(card: Mapping[str, Any]) -> dict[str, Any]:
    """One valid feature row from the card's schema: the first category, the observed minimum."""
    row: dict[str, Any] = {}
    for spec in card["feature_schema"]:
        if spec["kind"] == "categorical":
            row[spec["name"]] = (spec.get("categories") or ["unknown"])[0]
            continue
        value = next((spec[k] for k in ("observed_min", "minimum") if spec.get(k) is not None), 0.0)
        row[spec["name"]] = int(value) if spec["dtype"] == "integer" else float(value)
    return row


def check_stack(stack: Stack, timeout: float) -> None:
    """Checks 1-6 of the module doc, in order; raises :class:`CheckFailed` on the first miss."""
    wait_for("webserver /server_info", lambda: http(f"{stack.dagster_url}/server_info")[0] == 200,
             timeout)  # fmt: skip
    report("webserver /server_info", stack.dagster_url)
    wait_for("service /readyz", lambda: http(f"{stack.service_url}/readyz")[0] == 200, timeout)
    report("service /readyz", stack.service_url)

    def location_loaded() -> str | None:
        entries = graphql(stack, LOCATIONS)["workspaceOrError"]["locationEntries"]
        loaded = [e for e in entries if e["name"] == LOCATION]
        state = loaded[0]["locationOrLoadError"] if loaded else None
        if state and state["__typename"] == "PythonError":
            raise CheckFailed(f"code location {LOCATION}: {state['message'][:500]}")
        return "loaded" if state and state["__typename"] == "RepositoryLocation" else None

    wait_for(f"code location {LOCATION!r} over gRPC", location_loaded, timeout)
    report("code location loaded over gRPC", f"location {LOCATION!r}, server code:4000")

    def instance_ready() -> str | None:
        instance = graphql(stack, INSTANCE)["instance"]
        if "PostgresRunStorage" not in (instance.get("info") or ""):
            raise CheckFailed(f"the instance does not store runs in Postgres: {instance}")
        statuses = instance["daemonHealth"]["allDaemonStatuses"]
        sick = [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]
        return None if sick else ", ".join(s["daemonType"] for s in statuses if s["required"])

    daemons = wait_for("instance on Postgres with healthy daemons", instance_ready, timeout)
    report("instance on Postgres, daemons healthy", daemons)

    nodes = graphql(stack, ASSETS)["assetNodes"]
    landing = [
        n["assetKey"]["path"]
        for n in nodes
        if n["groupName"] in {"raw", "staging"} and not n["isPartitioned"]
    ]
    if not landing:
        raise CheckFailed("no unpartitioned raw or staging assets in the code location")
    started = time.time()
    run_id = launch(stack, landing, timeout=max(timeout, 900))
    report(
        "GraphQL launchRun of raw + staging, dequeued by the daemon: SUCCESS",
        f"{len(landing)} assets, run {run_id[:8]}, {time.time() - started:.0f} s",
    )

    repo = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

    def ticked() -> str | None:
        sensors = graphql(stack, SENSORS, {"repo": repo})["sensorsOrError"]["results"]
        for sensor in sensors:
            ticks = sensor["sensorState"]["ticks"]
            if ticks:
                return f"{sensor['name']}: {ticks[0]['status']}"
        return None

    tick = wait_for("a daemon tick of any sensor", ticked, timeout=180, every=5)
    report("daemon ticked a sensor", tick)

    status, _ = http(f"{stack.service_url}/score", {"customer_id": "x", "features": {}})
    if status != 401:
        raise CheckFailed(f"/score without a key answered {status}, expected 401")
    report("/score without a key", "401")
    status, card = http(f"{stack.service_url}/model", {}, key=stack.api_key)
    if status != 200:
        raise CheckFailed(f"/model answered {status}: {str(card)[:300]}")
    body = {"customer_id": "deploy-check-1", "features": example_features(card)}
    status, score = http(f"{stack.service_url}/score", body, key=stack.api_key)
    if status != 200 or "churn_probability" not in score:
        raise CheckFailed(f"/score answered {status}: {str(score)[:300]}")
    report(
        "/score with a key",
        f"p={score['churn_probability']:.3f} tier={score['risk_tier']} "
        f"model {score['model_version']}",
    )

    # The service publishes its log file (renames ``.jsonl.open`` to ``.jsonl``) once it is
    # older than the writer's rotate_seconds (60 s, churn/monitoring/prediction_log.py); the
    # asset loads published files only.
    time.sleep(PUBLISH_SECONDS)

    def ingested() -> int | None:
        launch(stack, [["prediction_logs"]], timeout=300)
        asset = graphql(stack, ROW_COUNT, {"key": {"path": ["prediction_logs"]}})["assetOrError"]
        entries = asset["assetMaterializations"][0]["metadataEntries"]
        rows = next((e.get("intValue") for e in entries if e["label"] == "dagster/row_count"), 0)
        return rows or None

    rows = wait_for("the scored row in prediction_logs", ingested, timeout=300, every=10)
    report("prediction log ingested by the prediction_logs asset", f"dagster/row_count={rows}")


def stack_environment(args: argparse.Namespace) -> tuple[dict[str, str], Stack]:
    """Random secrets (unless the caller set them), free host ports and small data."""
    api_key = os.environ.get("CHURN_API_KEYS", "").split(",")[0] or secrets.token_urlsafe(24)
    env = (
        os.environ
        | SMALL_DATA
        | {
            "DAGSTER_PG_PASSWORD": os.environ.get("DAGSTER_PG_PASSWORD")
            or secrets.token_urlsafe(24),
            "CHURN_API_KEYS": os.environ.get("CHURN_API_KEYS") or api_key,
            "CHURN_DAGSTER_PORT": str(free_port()),
            "CHURN_BENTO_PORT": str(free_port()),
            "CHURN_POSTGRES_IMAGE": os.environ.get(
                "CHURN_POSTGRES_IMAGE", "localhost/churn-postgres:dev"
            ),
            "CHURN_CODE_IMAGE": os.environ.get("CHURN_CODE_IMAGE", "localhost/churn-code:dev"),
            "CHURN_SERVICE_IMAGE": os.environ.get(
                "CHURN_SERVICE_IMAGE", "localhost/churn-service:dev"
            ),
        }
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if args.instance_config:
        env["CHURN_DAGSTER_YAML"] = str(Path(args.instance_config).resolve())
    stack = Stack(
        project=args.project,
        dagster_url=f"http://127.0.0.1:{env['CHURN_DAGSTER_PORT']}",
        service_url=f"http://127.0.0.1:{env['CHURN_BENTO_PORT']}",
        api_key=api_key,
        env=env,
    )
    return env, stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="churn-deploy-check", help="compose project name")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per wait")
    parser.add_argument("--keep", action="store_true", help="leave the stack up at the end")
    parser.add_argument(
        "--rebuild-service",
        action="store_true",
        help="rebuild the service image even when podman has it (a new champion or serving code)",
    )
    parser.add_argument(
        "--instance-config",
        help="dagster.yaml to mount instead of deploy/dagster.yaml",
    )
    args = parser.parse_args(argv)
    env, stack = stack_environment(args)
    config = Path(env.get("CHURN_DAGSTER_YAML", DEPLOY / "dagster.yaml"))
    if not config.is_file():
        say(f"FAIL  instance config {config} is missing")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    try:
        ensure_images(env, rebuild_service=args.rebuild_service)
        report("images", ", ".join(env[k] for k in
               ("CHURN_POSTGRES_IMAGE", "CHURN_CODE_IMAGE", "CHURN_SERVICE_IMAGE")))  # fmt: skip
        run(compose(env, stack.project, "down", "-v"), env=env)  # a previous run's leftovers
        run(compose(env, stack.project, "up", "-d"), env=env)
        report("podman-compose up", f"project {stack.project}")
        check_stack(stack, args.timeout)
    except CheckFailed as error:
        say(f"FAIL  {error}")
        logs = subprocess.run(compose(env, stack.project, "logs", "--tail", "30"), env=env,
                              capture_output=True, text=True)  # fmt: skip
        say(logs.stdout[-6000:] + "\n" + logs.stderr[-2000:])
        return 1
    except KeyboardInterrupt:
        say("FAIL  interrupted")
        return 130
    finally:
        if not args.keep:
            subprocess.run(compose(env, stack.project, "down", "-v"), env=env,
                           capture_output=True)  # fmt: skip
            say("      stack and volumes removed")
    say(f"deploy-check passed in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
