"""``make demo``: after ``make pipeline``, serve the Dagster UI (:3000) and the Bento (:3001).

Both run until Ctrl-C. A sample request is written from the champion's own reference sample (not
from the warehouse, which the servers must never hold open), so the printed ``curl`` works
against whatever model was just trained.

The Bento follows the champion: :class:`BentoSupervisor` (in this process, not in the web
server) polls the store every few seconds for a newer ``churn_service`` Bento, which
``churn_bento`` builds whenever a champion is promoted (a retrain on newly matured labels, say). It
starts the new Bento on a private port and waits for ``/readyz``, so a Bento that cannot start
never replaces a working one; then the relay that owns the service's port
(``churn_assets.relay``) sends new connections to it and the old server is stopped gracefully:
no gap. In production the same switch is a new image and a rolling update (README).

``--no-ui`` serves only the Bento (what the tests start); ``--ui-only`` serves only the Dagster
UI in the foreground (``make dagster``); ``--poll`` sets the interval.

Quiet by default (``CHURN_LOG_LEVEL``, :mod:`churn.settings`): the demo's ``dagster dev`` writes
its log, including the event logs of runs the sensors launch, to ``$CHURN_HOME/logs/dagster.log``
instead of the terminal; ``CHURN_LOG_LEVEL=debug`` keeps it in the terminal, at INFO.

Stopping: every server runs in its own process group and is stopped by
:func:`churn_assets.processes.stop_group`, which escalates to SIGTERM and SIGKILL on the whole
group, so Ctrl-C returns within seconds even when ``dagster dev``'s children hang on shutdown.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from churn.settings import load_settings
from churn_assets.pipeline import cli_environment
from churn_assets.processes import start_group, stop_group
from churn_assets.relay import LOOPBACK, TcpRelay

BENTO_NAME = "churn_service"
POLL_SECONDS = 5.0
READY_SECONDS = 180.0
STOP_SECONDS = 30.0
"""A Bento's graceful shutdown (requests in flight finish, the prediction log is published)."""
UI_STOP_SECONDS = 5.0
"""``dagster dev``'s graceful shutdown before its group is terminated (see ``processes``)."""


def sample_request(path: Path) -> Path:
    """A /score body for a real training customer of the champion."""
    import pandas as pd

    from churn import registry
    from churn.modeling.card import json_safe

    champion = registry.load_model()
    row = pd.read_parquet(champion.reference_path).iloc[0].to_dict()
    # A feature that is empty by design (a mean over an empty window) is NaN in the frame; JSON
    # has no NaN, and the service takes ``null`` for it.
    features = json_safe(row)
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


def start(command: list[str], **popen: object) -> subprocess.Popen:
    """A server in its own process group: the terminal's Ctrl-C reaches only this supervisor,
    which then stops each server once, in order (a second SIGINT makes ``dagster dev`` kill its
    code server abruptly)."""
    return start_group(command, env=cli_environment(), **popen)


def stop(*processes: subprocess.Popen | None, seconds: float = STOP_SECONDS) -> None:
    """SIGINT to each (the servers' graceful shutdown) at once, then, after ``seconds`` in all,
    SIGTERM and SIGKILL to the group of any that lingers: stopping two servers takes no longer
    than one."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + seconds
    for process in running:
        stop_group(process, None, grace_seconds=max(deadline - time.monotonic(), 0.1))


def dagster_dev_command(port: int, log_level: str) -> list[str]:
    """``dagster dev`` on ``port``; its own log at INFO only with ``CHURN_LOG_LEVEL=debug``
    (otherwise a sensor check every 15 s would bury everything else)."""
    level = "info" if log_level == "debug" else "warning"
    return ["dagster", "dev", "-w", "workspace.yaml", "-p", str(port), "--log-level", level]


def dagster_log(home: Path) -> Path:
    """Where the demo's ``dagster dev`` writes (runs launched by sensors included)."""
    folder = home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "dagster.log"


def serve_ui_only(port: int, log_level: str) -> int:
    """``make dagster``: the UI in the foreground until Ctrl-C or SIGTERM, then its whole
    process group stopped within seconds."""
    ui = start(dagster_dev_command(port, log_level))
    log(f"Dagster UI on http://localhost:{port} (Ctrl-C stops it)")
    try:
        while ui.poll() is None and not STOP_REQUESTED.is_set():
            time.sleep(0.5)
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
        log(f"dagster dev exited ({ui.returncode})")
        return ui.returncode or 1
    except KeyboardInterrupt:
        log("stopping the Dagster UI")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut shutdown
        stop(ui, seconds=UI_STOP_SECONDS)


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
    """Keeps the newest Bento answering on one port: a relay (``churn_assets.relay``) owns the
    port, each Bento runs on a private one, and a switch re-points the relay."""

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self.port = port
        self.relay = TcpRelay(port, host)
        self.serving: BuiltBento | None = None
        self.refused: BuiltBento | None = None
        self.process: subprocess.Popen | None = None
        self.retiring: subprocess.Popen | None = None
        """The replaced server while it shuts down."""

    def _serve(self, bento: BuiltBento) -> tuple[subprocess.Popen, int, bool]:
        """Start ``bento`` on a private port; (process, port, ready)."""
        port = free_port()
        command = ["bentoml", "serve", bento.tag, "--host", "127.0.0.1", "--port", str(port)]
        process = start(command)
        try:
            ready = wait_for(f"http://127.0.0.1:{port}/readyz", READY_SECONDS, process)
        except BaseException:  # Ctrl-C while it starts: leave nothing running
            stop(process)
            raise
        return process, port, ready

    def start(self) -> bool:
        """Bind the port and serve the newest Bento; False when there is none or it fails."""
        self.relay.start()
        return self.follow()

    def follow(self) -> bool:
        """One poll: switch to a newer Bento when there is one. True when it switched.

        The new Bento must answer ``/readyz`` before it gets traffic, so one that cannot start
        never replaces a working one; the old server is stopped only after the switch."""
        bento = newest_bento()
        if bento is None or bento == self.serving or bento == self.refused:
            if bento is None and self.serving is None:
                log(f"no {BENTO_NAME} Bento in the store yet; waiting for one")
            return False
        log(f"starting {bento.tag}")
        process, port, ready = self._serve(bento)
        if not ready:
            stop(process)
            self.refused = bento
            still = f"; still serving {self.serving.tag}" if self.serving else ""
            log(f"{bento.tag} did not become ready (see its log above){still}")
            return False
        previous, old_process = self.serving, self.process
        self.relay.target = port  # new connections reach the new server from here on
        self.process, self.serving = process, bento
        if old_process is not None and previous is not None:
            log(f"switched :{self.port} from {previous.tag} to {bento.tag} without a gap")
            self.retiring = old_process  # a Ctrl-C during its shutdown must still end it
            stop(old_process)  # graceful: requests in flight on it finish first
            self.retiring = None
        else:
            log(f"serving {bento.tag} on :{self.port}")
        return True

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self) -> None:
        self.relay.target = None
        stop(self.process, self.retiring)
        self.relay.stop()


def banner(dagster_port: int | None, bento_port: int, body: Path, ready: bool) -> None:
    from churn.reports.retention import newest_page

    ui = f"  Dagster UI:      http://localhost:{dagster_port}\n" if dagster_port else ""
    page = newest_page(load_settings().reports_dir)
    report = f"  Retention page:  {page.resolve().as_uri()}\n" if page else ""
    print(
        "\n"
        f"{ui}"
        f"  Scoring service: http://localhost:{bento_port}  (OpenAPI: /docs.json)"
        f"{'' if ready else '  [not ready yet, see its log above]'}\n"
        f"  Try it:          curl -s -X POST http://localhost:{bento_port}/score "
        f"-H 'Content-Type: application/json' -d @{body}\n"
        f"{report}"
        "  A newly promoted champion's Bento is served here automatically.\n"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )


STOP_REQUESTED = threading.Event()
"""Set by Ctrl-C or SIGTERM. The KeyboardInterrupt raised with it can land inside library code
that swallows it (a Bento store scan runs every poll); the main loop also checks the flag."""


def _interrupt(signum: int, frame: object) -> None:
    STOP_REQUESTED.set()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_assets.demo", description=__doc__)
    parser.add_argument("--no-ui", action="store_true", help="serve only the Bento")
    parser.add_argument("--ui-only", action="store_true", help="serve only the Dagster UI")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between polls")
    args = parser.parse_args(argv)
    settings = load_settings()
    dagster_port, bento_port = settings.dagster_port, settings.bento_port
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` stops as cleanly as Ctrl-C
    if args.ui_only:
        return serve_ui_only(dagster_port, settings.log_level)
    body = sample_request(settings.home / "sample_request.json")
    ui: subprocess.Popen | None = None
    supervisor = BentoSupervisor(bento_port, settings.bento_host)
    try:
        if not args.no_ui:
            command = dagster_dev_command(dagster_port, settings.log_level)
            if settings.log_level == "debug":
                ui = start(command)
            else:  # sensor runs print their whole event log: keep it out of the terminal
                ui_log = dagster_log(settings.home)
                log(f"Dagster's log (runs launched by sensors included): {ui_log}")
                ui = start(command, stdout=ui_log.open("a"), stderr=subprocess.STDOUT)
        try:
            ready = supervisor.start()
        except OSError as error:  # the port is taken: say which, as the README's FAQ does
            log(f"cannot serve on :{bento_port} ({error}); set CHURN_BENTO_PORT to a free port")
            return 1
        if ui is not None:
            wait_for(f"http://localhost:{dagster_port}/server_info", READY_SECONDS, ui)
        banner(None if args.no_ui else dagster_port, bento_port, body, ready)
        while supervisor.alive() and (ui is None or ui.poll() is None):
            time.sleep(args.poll)
            if not STOP_REQUESTED.is_set() and supervisor.follow():
                body = sample_request(settings.home / "sample_request.json")  # new features?
                banner(None if args.no_ui else dagster_port, bento_port, body, True)
            if STOP_REQUESTED.is_set():
                raise KeyboardInterrupt
        log("a server exited on its own; stopping")
        return 1
    except KeyboardInterrupt:
        log("stopping the servers")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut shutdown
        supervisor.stop()
        if ui is not None:
            stop(ui, seconds=UI_STOP_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
