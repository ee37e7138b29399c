"""Operability: one home is one world, and ``make demo``'s service follows the champion.

Each check runs real processes the way a user does: fresh interpreters with only ``CHURN_HOME``
set (``BENTOML_HOME`` unset, so churn's own default is what is tested), and the demo supervisor
serving a real Bento over HTTP while a new champion's Bento is built next to it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serving_support import free_port

PROMOTE = textwrap.dedent(
    """
    import sys
    import churn_assets  # the code location's import: BENTOML_HOME defaults to the home's store
    import pandas as pd
    from churn import registry

    source = registry.from_path(sys.argv[1], __import__("pathlib").Path(sys.argv[2]))
    tag = registry.save_model(
        source.model, source.card, pd.read_parquet(source.reference_path),
        labels={"role": "champion"},
    )
    if len(sys.argv) > 3:  # package it as churn_bento does after a promotion
        from churn_assets.defs.model.bento import build_bento

        build_bento(tag, tag.split(":", 1)[1])
    print(tag)
    """
)
LIST = textwrap.dedent(
    """
    import json
    import serving  # the service's import: the same default as the code location
    import bentoml
    from bentoml.exceptions import NotFound
    from churn import registry

    try:
        tags = [str(m.tag) for m in bentoml.models.list("churn_model")]
    except NotFound:
        tags = []
    try:
        registry.champion_for_source("synthetic")
        same_source = "ok"
    except registry.SourceMismatchError as error:
        same_source = str(error)
    try:
        registry.champion_for_source("examples/flat/source.yaml")
        other_source = "ok"
    except registry.SourceMismatchError as error:
        other_source = str(error)
    print(json.dumps({"tags": tags, "same_source": same_source, "other_source": other_source}))
    """
)


def _env(home: Path, **extra: str) -> dict[str, str]:
    """Only CHURN_HOME says where state lives; BENTOML_HOME must follow from it."""
    env = os.environ | {"CHURN_HOME": str(home)} | extra
    env.pop("BENTOML_HOME", None)
    env.pop("CHURN_MODEL_TAG", None)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _python(code: str, home: Path, *args: str, timeout: float = 300) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


def _session_champion() -> tuple[str, str]:
    from churn import registry

    tag, path = registry.locate()
    return tag, str(path)


def test_two_homes_never_see_each_others_models(materialized, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    tag = _python(PROMOTE, first, *_session_champion())
    assert (first / "bentoml" / "models" / "churn_model" / tag.split(":")[1]).is_dir()

    in_first = json.loads(_python(LIST, first))
    in_second = json.loads(_python(LIST, second))
    assert in_first["tags"] == [tag]
    assert in_second["tags"] == []
    assert not (second / "bentoml" / "models" / "churn_model").exists()
    # The champion of one source is never compared with another source's data or models.
    assert in_first["same_source"] == "ok"
    assert "trained on source 'synthetic'" in in_first["other_source"]
    assert "refusing to compare across sources" in in_first["other_source"]
    assert in_second["other_source"] == "ok"  # no champion at all: nothing to refuse


def _model_version(url: str) -> str | None:
    try:
        response = httpx.post(f"{url}/model", json={}, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json()["model_version"] if response.status_code == 200 else None


def _wait_for_version(url: str, expected: str, demo: subprocess.Popen, log: Path) -> list[str]:
    """Poll /model (a new connection each time) until it answers ``expected``; return every
    answer seen, None for a failed request. Fails when the demo dies or it never answers so."""
    answers: list[str | None] = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            pytest.fail(f"the demo exited ({demo.returncode}):\n{log.read_text()[-3000:]}")
        answers.append(_model_version(url))
        if answers[-1] == expected:
            return answers
        time.sleep(0.2)
    pytest.fail(f"/model never answered {expected}:\n{log.read_text()[-4000:]}")


def _poll(url: str, answers: list[str | None], done: threading.Event) -> None:
    while not done.is_set():
        answers.append(_model_version(url))
        time.sleep(0.2)


@pytest.mark.slow  # runs the demo: a Bento served, a new one built, the switch
def test_demo_serves_a_newly_promoted_champion_without_a_restart(
    materialized, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(materialized.home / "bentoml", home / "bentoml")
    port = free_port()
    log = tmp_path / "demo.log"
    demo = subprocess.Popen(
        [sys.executable, "-m", "churn_assets.demo", "--no-ui", "--poll", "1"],
        env=_env(home, CHURN_BENTO_PORT=str(port)),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        from churn import registry

        before = registry.locate()[0].split(":")[1]
        _wait_for_version(url, before, demo, log)
        assert (home / "sample_request.json").exists()

        answers: list[str | None] = []
        polling = threading.Event()
        poller = threading.Thread(target=_poll, args=(url, answers, polling), daemon=True)
        poller.start()
        try:
            promoted = _python(PROMOTE, home, *_session_champion(), "build")
            after = promoted.split(":")[1]
            assert after != before
            _wait_for_version(url, after, demo, log)
            # The poller's request in flight at the switch may still be answered by the old
            # server (it finishes its requests); stop polling once the poller, too, sees the new.
            deadline = time.monotonic() + 30
            while after not in answers and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            polling.set()
            poller.join()
        # Every request during the promotion and switch was answered: by the old model, then
        # by the new one, never refused in between.
        assert None not in answers, answers
        assert answers[0] == before and answers[-1] == after, answers
        assert answers.index(after) == len(answers) - answers[::-1].index(before), answers
        switched = f"switched :{port} from churn_service:{before} to churn_service:{after}"
        deadline = time.monotonic() + 60
        while switched not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert switched in log.read_text()
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        code = demo.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    assert _model_version(url) is None  # nothing left serving on the port
