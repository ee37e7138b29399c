"""Retraining follows new labels, never the same rows: the model group run again on unchanged
data promotes nothing (no new version, no new Bento, the gate says why), and the retrain sensor
requests a run only once labels have matured for a date after the champion's window."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn import registry
from churn.modeling.retrain import decide_retrain, newest_matured_date, window_end
from churn_assets.definitions import defs
from churn_assets.defs.monitoring import sensors as monitoring_sensors
from tests.alert_server import AlertServer
from tests.graph import GraphRun, materialize_graph

MODEL_GROUP = dg.AssetSelection.groups("model")


@pytest.fixture
def home_copy(
    materialized: GraphRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The session's warehouse, truth and model/Bento store, copied (the session's stay
    untouched whatever this code does); this process's BentoML stores point at the copy."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(materialized.warehouse, home / "warehouse.duckdb")
    shutil.copytree(materialized.home / "truth", home / "truth")
    store = home / "bentoml"
    shutil.copytree(materialized.home / "bentoml", store)
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.setenv("BENTOML_HOME", str(store))
    with (
        BentoMLContainer.model_store.patch(ModelStore(str(store / "models"))),
        BentoMLContainer.bento_store.patch(BentoStore(str(store / "bentos"))),
    ):
        yield home


def _store() -> tuple[list[str], list[str]]:
    import bentoml

    return (
        sorted(str(m.tag) for m in bentoml.models.list("churn_model")),
        sorted(str(b.tag) for b in bentoml.bentos.list("churn_service")),
    )


def test_the_model_group_twice_on_the_same_data_keeps_one_version_and_one_bento(
    home_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's run trained the champion; the same group again on the same rows refuses
    (WARN, so the run succeeds), saves nothing, keeps the Bento it had and posts no alert."""
    models, bentos = _store()
    assert len(models) == 1 and len(bentos) == 1
    champion = registry.latest_tag()
    with AlertServer() as server:
        monkeypatch.setenv("CHURN_ALERT_WEBHOOK", server.url)
        run = materialize_graph(home_copy, MODEL_GROUP, raise_on_error=False)
    assert run.result.success
    gate = run.checks()["model_evaluation:quality_gate"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.metadata["rule"].value == "nothing_new"
    assert gate.description.startswith("nothing new to learn: same training window ")
    assert f"and rows as champion {champion}" in gate.description
    done = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in run.result.get_asset_materialization_events()
    }
    assert {"candidate_models", "model_evaluation", "champion_model", "churn_bento"} <= set(done)
    assert done["champion_model"]["unchanged"].value is True
    assert done["champion_model"]["model_tag"].value == champion
    assert done["churn_bento"]["rebuilt"].value is False  # the Bento it had, kept
    assert _store() == (models, bentos) and registry.latest_tag() == champion
    assert server.received == []  # nothing new is not an alarm
    with duckdb.connect(str(home_copy / "warehouse.duckdb"), read_only=True) as con:
        decision = con.execute(
            "SELECT gate_decision, gate_reason FROM model_registry WHERE run_id = ? AND is_winner",
            [run.result.run_id],
        ).fetchone()
    assert decision[0] == "rejected" and decision[1].startswith("nothing new to learn")


def _tick(instance: dg.DagsterInstance):
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    return monitoring_sensors.new_labels_retrain_sensor(context)


def _drift_failed(instance: dg.DagsterInstance) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("drift_report"),
            check_name="drift_check",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description="33/62 features drifted (53%; limit 20%)",
        )
    )


def test_the_retrain_sensor_requests_a_run_only_for_newly_matured_labels(home_copy: Path) -> None:
    warehouse = home_copy / "warehouse.duckdb"
    _, path = registry.locate()
    end = window_end(registry.read_card(path))
    instance = dg.DagsterInstance.ephemeral()

    quiet = _tick(instance)
    assert isinstance(quiet, dg.SkipReason)
    assert "nothing new to learn" in quiet.skip_message and str(end) in quiet.skip_message

    _drift_failed(instance)
    drifted = _tick(instance)
    assert isinstance(drifted, dg.SkipReason)
    assert drifted.skip_message.startswith("drift_check failed (33/62 features drifted")
    assert "an alert, not a retrain" in drifted.skip_message

    with duckdb.connect(str(warehouse)) as con:  # the next month's labels mature
        (unlabeled,) = con.execute(
            "SELECT min(observation_date) FROM churn_labels WHERE churned IS NULL"
        ).fetchone()
        assert unlabeled > end
        con.execute(
            "UPDATE churn_labels SET churned = (hash(customer_id) % 7 = 0) "
            "WHERE observation_date = ?",
            [unlabeled],
        )
    request = _tick(instance)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"retrain-labels-{unlabeled.isoformat()}"
    assert request.tags["churn/trigger"] == "new_labels"
    assert _tick(instance).run_key == request.run_key  # one retrain per matured date
    assert monitoring_sensors.RETRAIN_SELECTION.resolve(defs.resolve_asset_graph()) == {
        dg.AssetKey(k)
        for k in ("training_set", "candidate_models", "model_evaluation", "champion_model")
    } | {dg.AssetKey("churn_bento")}
    with duckdb.connect(str(warehouse)) as con:  # closed again: a writer can open it
        assert newest_matured_date(con) == unlabeled


def test_retrain_decision_in_words() -> None:
    card = {"data_window": {"train_dates": ["2025-03-01"], "test_dates": ["2025-06-01"]}}
    before, after = date(2025, 6, 1), date(2025, 7, 1)
    assert not decide_retrain(before, "churn_model:a", card).due
    due = decide_retrain(after, "churn_model:a", card)
    assert due.due and due.run_key == "retrain-labels-2025-07-01"
    assert "after champion churn_model:a's window (through 2025-06-01)" in due.reason
    assert not decide_retrain(after, None, None).due
    assert not decide_retrain(None, "churn_model:a", card).due
