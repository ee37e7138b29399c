"""``make demo``: after ``make pipeline``, serve the Dagster UI (:3000) and the Bento (:3001).

Both run until Ctrl-C. A sample request is written from the champion's own reference sample (not
from the warehouse, which the servers must never hold open), so the printed ``curl`` works
against whatever model was just trained.

The Bento follows the champion: :class:`BentoSupervisor` (in this process, not in the web
server) polls the store every few seconds for a newer ``churn_service`` Bento, which
``churn_bento`` builds whenever a champion is promoted (a drift retrain from the UI, say). It
starts the new Bento on a spare port first and waits for ``/readyz``, so a Bento that cannot
start never replaces a working one; then it stops the old server and starts the new one on the
service's port. The remaining downtime is one server start (measured: README). In
production the same switch is a new image and a rolling update (README).

``--no-ui`` serves only the Bento (what the tests start); ``--poll`` sets the interval.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from churn.settings import load_settings
from churn_assets.pipeline import cli_environment

BENTO_NAME = "churn_service"
POLL_SECONDS = 5.0
READY_SECONDS = 180.0
STOP_SECONDS = 30.0


def sample_request(path: Path) -> Path:
    """A /score body for a real training customer of the champion."""
    import pandas as pd

    from churn import registry

    champion = registry.load_model()
    row = pd.read_parquet(champion.reference_path).iloc[0].to_dict()
    features = {
        name: (value.item() if hasattr(value, "item") else value) for name, value in row.items()
    }
    path.write_text(json.dumps({"customer_id": "C-demo", "features": features}, indent=2))
    return path


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def wait_for(url: str, seconds: float, process: subprocess.Popen | None = None) -> bool:
    """True once ``url`` answers below 500; False on timeout or when ``process`` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str]) -> subprocess.Popen:
    """A server in its own process group: the terminal's Ctrl-C reaches only this supervisor,
    which then stops each server once, in order (a second SIGINT makes ``dagster dev`` kill its
    code server abruptly)."""
    return subprocess.Popen(command, env=cli_environment(), start_new_session=True)


def stop(process: subprocess.Popen, seconds: float = STOP_SECONDS) -> None:
    """SIGINT (both servers' graceful shutdown), then the whole group if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    created: float
    """Creation time: rebuilding a champion's Bento (a code change) keeps its tag."""


def newest_bento() -> BuiltBento | None:
    """The newest ``churn_service`` Bento in the store (what ``churn_service:latest`` means)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentos = bentoml.bentos.list(BENTO_NAME)
    except NotFound:
        return None
    if not bentos:
        return None
    newest = max(bentos, key=lambda b: b.info.creation_time)
    return BuiltBento(str(newest.tag), newest.info.creation_time.timestamp())


class BentoSupervisor:
    """Keeps ``bentoml serve`` of the newest Bento running on one port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.serving: BuiltBento | None = None
        self.refused: BuiltBento | None = None
        self.process: subprocess.Popen | None = None

    def _serve(self, bento: BuiltBento, port: int) -> subprocess.Popen:
        return start(["bentoml", "serve", bento.tag, "--port", str(port)])

    def start(self) -> bool:
        """Serve the newest Bento; False when the store has none or it does not start."""
        bento = newest_bento()
        if bento is None:
            log(f"no {BENTO_NAME} Bento in the store yet; waiting for one")
            return False
        self.process = self._serve(bento, self.port)
        self.serving = bento
        ready = wait_for(self.url("/readyz"), READY_SECONDS, self.process)
        log(f"serving {bento.tag} on :{self.port}" if ready else f"{bento.tag} did not start")
        return ready

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://localhost:{port or self.port}{path}"

    def follow(self) -> bool:
        """One poll: switch to a newer Bento when there is one. True when it switched."""
        bento = newest_bento()
        if bento is None or bento == self.serving or bento == self.refused:
            return False
        if self.process is None or self.serving is None:
            return self.start()
        log(f"new Bento {bento.tag}: starting it on a spare port before switching")
        spare = free_port()
        candidate = self._serve(bento, spare)
        try:
            ready = wait_for(self.url("/readyz", spare), READY_SECONDS, candidate)
        finally:
            stop(candidate)
        if not ready:
            self.refused = bento
            log(f"{bento.tag} did not become ready; still serving {self.serving.tag}")
            return False
        started = time.monotonic()
        stop(self.process)
        self.process = self._serve(bento, self.port)
        previous, self.serving = self.serving, bento
        ready = wait_for(self.url("/readyz"), READY_SECONDS, self.process)
        log(
            f"switched :{self.port} from {previous.tag} to {bento.tag} "
            f"({time.monotonic() - started:.1f} s without a server)"
            if ready
            else f"{bento.tag} did not restart on :{self.port}; see its log above"
        )
        return True

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def banner(dagster_port: int | None, bento_port: int, body: Path, ready: bool) -> None:
    ui = f"  Dagster UI:      http://localhost:{dagster_port}\n" if dagster_port else ""
    print(
        "\n"
        f"{ui}"
        f"  Scoring service: http://localhost:{bento_port}  (OpenAPI: /docs.json)"
        f"{'' if ready else '  [not ready yet, see its log above]'}\n"
        f"  Try it:          curl -s -X POST http://localhost:{bento_port}/score "
        f"-H 'Content-Type: application/json' -d @{body}\n"
        "  A newly promoted champion's Bento is served here automatically.\n"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_assets.demo", description=__doc__)
    parser.add_argument("--no-ui", action="store_true", help="serve only the Bento")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between polls")
    args = parser.parse_args(argv)
    dagster_port = int(os.environ.get("CHURN_DAGSTER_PORT", "3000"))
    bento_port = int(os.environ.get("CHURN_BENTO_PORT", "3001"))
    settings = load_settings()
    body = sample_request(settings.home / "sample_request.json")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` stops as cleanly as Ctrl-C
    ui: subprocess.Popen | None = None
    supervisor = BentoSupervisor(bento_port)
    try:
        if not args.no_ui:
            command = ["dagster", "dev", "-w", "workspace.yaml", "-p", str(dagster_port)]
            # The daemon's INFO lines (a sensor check every 15 s) would bury the banner; runs and
            # sensor ticks stay visible in the UI.
            ui = start([*command, "--log-level", "warning"])
        ready = supervisor.start()
        if ui is not None:
            wait_for(f"http://localhost:{dagster_port}/server_info", READY_SECONDS, ui)
        banner(None if args.no_ui else dagster_port, bento_port, body, ready)
        while supervisor.alive() and (ui is None or ui.poll() is None):
            time.sleep(args.poll)
            if supervisor.follow():
                body = sample_request(settings.home / "sample_request.json")  # new features?
                banner(None if args.no_ui else dagster_port, bento_port, body, True)
        log("a server exited on its own; stopping")
        return 1
    except KeyboardInterrupt:
        log("stopping the servers")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut shutdown
        supervisor.stop()
        if ui is not None:
            stop(ui)


if __name__ == "__main__":
    sys.exit(main())
