"""What a damaged input or a failure still broke in the pipeline (issue 28 items 16 and 19).

Settings caught at load naming the variable and its range; a label with one class named as a
churn definition problem, not scikit-learn's; the AUC floor settable and its refusal saying
where it came from and what to try; no ``promoted`` registry row without a model tag after a
failed save; a full disk under the warehouse named as such.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from churn.diskspace import DiskFullError
from churn.modeling.gate import decide
from churn.modeling.training import LabelError, check_label_classes, prepare
from churn.settings import MAX_MONTHS, load_settings, resolve_auc_floor
from churn.sources.config import SourceConfigError
from tests.full_disk_support import small_disk
from tests.graph import GraphRun, materialize_graph

MODEL_STAGE = "candidate_models,model_evaluation,champion_model"

# --- settings: at load, naming the variable and the range ---------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CHURN_MONTHS": "100000"}, f"CHURN_MONTHS must be between 7 and {MAX_MONTHS}"),
        ({"CHURN_MONTHS": "5"}, "CHURN_MONTHS must be between 7 and"),
        ({"CHURN_MONTHS": "8", "CHURN_HORIZON_DAYS": "90"}, "CHURN_MONTHS must be between 9"),
        ({"CHURN_PROMOTION": "xyz"}, "CHURN_PROMOTION must be one of immediate, challenger"),
        ({"CHURN_AUC_FLOOR": "abc"}, "CHURN_AUC_FLOOR must be a number from 0 to below 1"),
        ({"CHURN_AUC_FLOOR": "1.5"}, "CHURN_AUC_FLOOR must be a number from 0 to below 1"),
        ({"CHURN_AUC_FLOOR": "nan"}, "CHURN_AUC_FLOOR must be a number from 0 to below 1"),
    ],
)
def test_bad_pipeline_settings_fail_at_load_naming_the_variable_and_range(env, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")) as caught:
        load_settings(env)
    assert repr(next(iter(env.values()))) in str(caught.value)


def test_months_are_bounded_only_for_the_synthetic_source_they_size(tmp_path: Path):
    assert load_settings({"CHURN_MONTHS": "8"}).synthetic.months == 8
    assert load_settings({"CHURN_MONTHS": str(MAX_MONTHS)}).synthetic.months == MAX_MONTHS
    config = _events_config(tmp_path, "")
    settings = load_settings({"CHURN_MONTHS": "3", "CHURN_SOURCE": str(config)})
    assert settings.synthetic.months == 3  # not read for a YAML source


def _events_config(folder: Path, extra: str) -> Path:
    (folder / "events.csv").write_text("cust,bought_on\nc1,2025-01-05\n")
    config = folder / "source.yaml"
    config.write_text(
        "shape: events\nobservation: {start: 2025-01-01, end: 2025-06-01}\n"
        "churn: {inactive_days: 30}\ntables:\n  events:\n    path: events.csv\n"
        "    columns: {customer_id: cust, event_time: bought_on}\n" + extra
    )
    return config


# --- the AUC floor: settable, and a refusal that says what to try -------------------------


def test_the_floor_comes_from_the_run_then_the_environment_then_the_source_config(
    tmp_path: Path,
):
    config = _events_config(tmp_path, "model: {auc_floor: 0.55}\n")
    from_file = load_settings({"CHURN_SOURCE": str(config)})
    assert resolve_auc_floor(from_file) == (0.55, f"model.auc_floor in {config}")
    both = load_settings({"CHURN_SOURCE": str(config), "CHURN_AUC_FLOOR": "0.6"})
    assert resolve_auc_floor(both) == (0.6, "CHURN_AUC_FLOOR")
    assert resolve_auc_floor(both, 0.7)[0] == 0.7
    assert resolve_auc_floor(load_settings({})) == (0.65, "the default")


def test_a_bad_floor_in_the_source_config_names_the_key(tmp_path: Path):
    config = _events_config(tmp_path, "model: {auc_floor: 2}\n")
    with pytest.raises(SourceConfigError, match=r"model\.auc_floor: must be a test AUC"):
        load_settings({"CHURN_SOURCE": str(config)})


def test_a_first_model_below_the_floor_says_where_the_floor_is_set_and_what_to_try():
    decision = decide(0.6168, auc_floor=0.65, floor_source="the default", training_rows=812)
    assert not decision.promoted and decision.rule == "auc_floor"
    reason = decision.reason
    assert reason.startswith("test AUC 0.6168 is below the floor 0.6500 (set by the default)")
    for hint in ("812 training rows", "more history", "more customers", "CHURN_AUC_FLOOR"):
        assert hint in reason
    assert "model: {auc_floor: ...} in the source config" in reason
    assert "no champion yet, so no scores until a model passes" in reason
    with_champion = decide(0.6, auc_floor=0.65, champion_tag="churn_model:abc")
    assert "the champion churn_model:abc stays" in with_champion.reason


def test_the_environment_floor_reaches_the_gate_of_a_real_run(
    materialized: GraphRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from churn import registry

    champion = registry.latest_tag()
    home = _copy_home(materialized, tmp_path)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:  # other rows: something new
        con.execute("DELETE FROM training_set WHERE hash(customer_id) % 10 = 0")
    monkeypatch.setenv("CHURN_AUC_FLOOR", "0.97")  # above any honest model here, below leakage

    run = materialize_graph(home, MODEL_STAGE, raise_on_error=False)

    gate = run.checks()["model_evaluation:quality_gate"]
    assert not gate.passed and gate.metadata["rule"].value == "auc_floor"
    assert "below the floor 0.9700 (set by CHURN_AUC_FLOOR)" in gate.description
    assert f"the champion {champion} stays" in gate.description
    assert registry.latest_tag() == champion
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute(
            "SELECT gate_decision, model_tag FROM model_registry WHERE run_id = ? AND is_winner",
            [run.result.run_id],
        ).fetchone()
    assert row == ("rejected", None)


# --- labels with one class ------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory):
    from tests.small_data import training_frame

    return training_frame(tmp_path_factory.mktemp("small"))


@pytest.mark.parametrize(("value", "who"), [(0, "nobody churns"), (1, "everybody churns")])
def test_nobody_or_everybody_churning_names_the_churn_definition(frame, value, who):
    one_class = frame.assign(churned=value)
    with pytest.raises(LabelError) as caught:
        prepare(
            one_class,
            [c for c in frame.columns if c not in ("customer_id", "observation_date", "churned")],
            validation_months=1,
            test_months=2,
            horizon_days=30,
        )
    message = str(caught.value)
    assert message.startswith(f"{who}: all {len(frame):,} matured rows from ")
    assert "the churn: block of the source config" in message and "inactive_days" in message
    assert "only one class" not in message.lower()


def test_a_block_of_the_split_with_one_class_is_named():
    labels = [0, 1, 0, 1, 0, 0]
    parts = {"training": [True] * 4 + [False] * 2, "test": [False] * 4 + [True] * 2}
    import numpy as np

    with pytest.raises(LabelError, match=r"^the test block \(2 rows\) has only churned = 0"):
        check_label_classes(
            np.array(labels), {name: np.array(mask) for name, mask in parts.items()}
        )


# --- the registry after a failed save --------------------------------------------------------


def _copy_home(materialized: GraphRun, tmp_path: Path) -> Path:
    shutil.copy(materialized.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(materialized.home / "truth", tmp_path / "truth")
    return tmp_path


@pytest.fixture
def full_model_store(materialized: GraphRun) -> Iterator[Path]:
    """The BentoML model store hidden under a 64 KiB tmpfs (root only): saving a model fails
    with a full disk, and no champion is visible to the gate."""
    from churn.settings import bentoml_home

    with small_disk(bentoml_home() / "models", "64k") as models:
        yield models


def test_a_failed_save_leaves_no_promoted_row_without_a_model_tag(
    materialized: GraphRun, tmp_path: Path, full_model_store: Path
):
    home = _copy_home(materialized, tmp_path)

    run = materialize_graph(home, MODEL_STAGE, raise_on_error=False)

    assert run.checks()["model_evaluation:quality_gate"].passed
    failed = [e.step_key for e in run.result.all_events if e.is_step_failure]
    assert failed == ["champion_model"]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT gate_decision, model_tag FROM model_registry WHERE run_id = ? AND is_winner",
            [run.result.run_id],
        ).fetchall()
        orphans = con.execute(
            "SELECT count(*) FROM model_registry WHERE gate_decision = 'promoted' "
            "AND model_tag IS NULL"
        ).fetchone()
    assert rows == [("passed_gate", None)] and orphans == (0,)


# --- a full disk under the warehouse ---------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "tiny", "2m") as folder:
        yield folder


def test_a_full_disk_under_the_warehouse_is_named_with_its_path(tiny_disk: Path):
    from churn_assets.resources import WarehouseResource

    path = tiny_disk / "warehouse.duckdb"
    fill = "CREATE TABLE t AS SELECT i, md5(CAST(i AS VARCHAR)) AS s FROM range(300000) t(i)"
    with pytest.raises(DiskFullError) as caught, WarehouseResource(path=str(path)).connect() as con:
        con.execute(fill)
    message = str(caught.value)
    assert message.startswith(f"disk full: could not write the warehouse at {path} (")
    assert "free of 2.0 MiB on that device" in message and "CHURN_WAREHOUSE" in message
    assert "No space left on device" in message
