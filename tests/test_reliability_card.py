"""A damaged model card stops startup naming the tag and the key (issue 28, item 6).

Each damage is written into a copy of the session's real champion (its own ``card.json`` and
``model.pkl`` in a temporary model store) and checked with :func:`serving.startup.checked_card`,
the function ``serving.service`` calls at import; one damage is also served with a real
``bentoml serve``, which must exit non-zero at once with one clear line instead of restarting a
worker that dies in ``__init__``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from churn import registry
from serving.startup import ModelLoadError, checked_card, checked_model
from tests.serving_support import bento_tag, free_port


def _first_categorical(card: dict[str, Any]) -> dict[str, Any]:
    return next(entry for entry in card["feature_schema"] if entry["kind"] == "categorical")


DAMAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "risk_tiers {}": (lambda card: card.update(risk_tiers={}), "risk_tiers.low_medium"),
    "thresholds 'x'": (lambda card: card.update(thresholds="x"), "key thresholds:"),
    "feature_schema [1]": (lambda card: card.update(feature_schema=[1]), "feature_schema.0"),
    "categories null": (
        lambda card: _first_categorical(card).update(categories=None),
        "needs a categories list",
    ),
    "no feature_order": (lambda card: card.pop("feature_order"), "key feature_order:"),
    "threshold above 1": (
        lambda card: card.update(thresholds={"decision": 7}),
        "thresholds.decision",
    ),
    "feature_order disagrees": (
        lambda card: card.update(feature_order=card["feature_order"][::-1]),
        "feature_order and the names in feature_schema differ",
    ),
}


def _store_copy(tmp_path: Path) -> tuple[Path, str, Path]:
    """A copy of the session's model store; (store, champion tag, champion's folder)."""
    store = tmp_path / "bentoml"
    shutil.copytree(Path(os.environ["BENTOML_HOME"]), store, symlinks=True)
    tag = registry.locate()[0]
    version = tag.split(":")[1]
    return store, tag, store / "models" / registry.MODEL_NAME / version


def _damage(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    card_file = folder / registry.CARD_FILE
    card = json.loads(card_file.read_text())
    change(card)
    card_file.write_text(json.dumps(card))
    return card_file


def test_the_real_champion_card_passes(materialized, tmp_path):
    _, tag, folder = _store_copy(tmp_path)
    card = checked_card(tag, folder)
    assert card["feature_order"]
    assert checked_model(tag, folder).card["feature_order"] == card["feature_order"]


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_card_is_refused_at_load_naming_tag_and_key(materialized, tmp_path, damage):
    change, expected = DAMAGES[damage]
    _, tag, folder = _store_copy(tmp_path)
    card_file = _damage(folder, change)
    with pytest.raises(ModelLoadError) as raised:
        checked_card(tag, folder)
    message = str(raised.value)
    assert tag in message and str(card_file) in message and expected in message, message
    assert "\n" not in message


@pytest.mark.slow
def test_bentoml_serve_of_a_damaged_card_exits_at_once_with_one_line(materialized, tmp_path):
    """Before: ``thresholds: "x"`` passed import; each worker died in ``Scorer`` with a
    ``TypeError`` and BentoML restarted it every few seconds, forever."""
    tag = bento_tag(materialized)
    store, model_tag, folder = _store_copy(tmp_path)
    _damage(folder, DAMAGES["thresholds 'x'"][0])
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "BENTOML_HOME": str(store),
        "CHURN_HOME": str(tmp_path / "home"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("CHURN_MODEL_TAG", None)
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [f"{bin_dir}/bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running after 120 s:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    assert code != 0
    lines = [line for line in output.splitlines() if "ModelLoadError" in line]
    assert lines, output[-3000:]
    assert model_tag in lines[-1] and "key thresholds:" in lines[-1], lines[-1]
    assert "TypeError" not in output and "Starting production HTTP" not in output
