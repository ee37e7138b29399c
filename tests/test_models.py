"""The model stage for real: time split, quality gate, champion in the BentoML model store."""

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from churn import registry
from churn.modeling.spec import encode_frame
from tests.graph import GraphRun, materialize_graph

MODEL_STAGE = dg.AssetSelection.assets("candidate_models", "model_evaluation", "champion_model")


def copy_home(materialized: GraphRun, tmp_path: Path) -> Path:
    """A private copy of the session's warehouse and truth, to be tampered with."""
    shutil.copy(materialized.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(materialized.home / "truth", tmp_path / "truth")
    return tmp_path


def materialization(run: GraphRun, key: str) -> dg.AssetMaterialization | None:
    events = [
        e.event_specific_data.materialization
        for e in run.result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == key
    ]
    return events[-1] if events else None


def test_split_is_time_ordered_and_both_candidates_are_registered(materialized: GraphRun):
    split = materialization(materialized, "candidate_models").metadata["split"].value
    train, validation, test = (
        [date.fromisoformat(d) for d in split[part]]
        for part in ("train_dates", "validation_dates", "test_dates")
    )
    assert train and validation and test
    assert max(train) < min(validation) <= max(validation) < min(test)
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        unlabeled = con.execute("SELECT max(observation_date) FROM churn_labels").fetchone()[0]
        rows = con.execute(
            "SELECT candidate, gate_decision, model_tag FROM model_registry ORDER BY candidate"
        ).fetchall()
    assert unlabeled not in set(test)  # the newest snapshot has no label and is never tested on
    assert {candidate for candidate, _, _ in rows} == {"lightgbm", "logistic_regression"}
    promoted = [tag for _, decision, tag in rows if decision == "promoted"]
    assert len(promoted) == 1 and promoted[0].startswith("churn_model:")


def test_evaluation_reports_metrics_oracle_thresholds_and_plots(materialized: GraphRun):
    metadata = materialization(materialized, "model_evaluation").metadata
    assert 0.6 < metadata["test_roc_auc"].value < 0.98
    assert 0.6 < metadata["oracle_auc"].value < 1.0
    assert 0.8 < metadata["auc_to_oracle"].value < 1.1
    thresholds = metadata["thresholds"].value
    assert thresholds["default"] == 0.5 and 0.0 < thresholds["expected_value"] < 1.0
    low_medium, medium_high = metadata["risk_tier_cuts"].value
    assert 0.0 < low_medium <= medium_high == thresholds["decision"] < 1.0
    # The metrics table: precision and recall where each candidate draws its line, not at 0.5.
    records = {
        r.data["metric (test unless noted)"]: r.data for r in metadata["metrics"].value.records
    }
    winner = metadata["winner"].value
    assert records["threshold"][winner] == pytest.approx(thresholds["decision"], abs=1e-4)
    assert all(
        value != 0.5
        for key, value in records["threshold"].items()
        if key != "metric (test unless noted)"
    )
    reports = Path(metadata["reports"].value)
    for plot in (
        "roc",
        "precision_recall",
        "calibration",
        "feature_importance",
        "confusion_matrix",
    ):
        assert (reports / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "data:image/png;base64," in metadata[f"plot_{plot}"].value


def test_card_round_trips_from_the_model_store(materialized: GraphRun):
    champion = materialization(materialized, "champion_model").metadata
    tag = champion["model_tag"].value
    stored = registry.load_model(tag)
    assert stored.card == champion["model_card"].value
    assert stored.card["feature_order"] == [spec.name for spec in stored.model.specs]
    assert stored.card["lineage"]["dagster_run_id"] == materialized.result.run_id
    assert len(stored.card["lineage"]["data_fingerprint"]) == 16
    assert set(stored.card["risk_tiers"]) == {"low_medium", "medium_high"}
    assert stored.card["risk_tiers"]["medium_high"] == stored.card["thresholds"]["decision"]
    # Plain-language reasons: a phrase for every feature, percentiles of the training rows.
    assert set(stored.card["feature_descriptions"]) == set(stored.card["feature_order"])
    assert all(stored.card["feature_descriptions"].values())
    assert stored.card["feature_descriptions"]["days_since_last_event"] == (
        "days since the last event"
    )
    quantiles = stored.card["reference"]["quantiles"]
    assert all(len(q) == 101 and q == sorted(q) for q in quantiles.values())
    reference = stored.reference_path
    assert reference.exists()
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        frame = con.sql("SELECT * FROM customer_features LIMIT 200").df()
    scores = stored.model.predict_proba(encode_frame(frame, stored.model.specs))
    assert scores.shape == (200,) and np.all((scores > 0) & (scores < 1))


def test_a_planted_leaky_feature_trips_the_gate_and_keeps_the_champion(
    materialized: GraphRun, tmp_path: Path
):
    champion_before = registry.latest_tag()
    home = copy_home(materialized, tmp_path)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("UPDATE training_set SET cancellation_requests_90d = churned")

    run = materialize_graph(home, MODEL_STAGE, raise_on_error=False)

    gate = run.checks()["model_evaluation:quality_gate"]
    assert not gate.passed
    assert gate.description.startswith("suspected leakage")
    assert materialization(run, "champion_model") is None
    assert registry.latest_tag() == champion_before
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        decision = con.execute(
            "SELECT gate_decision, gate_reason FROM model_registry WHERE run_id = ? AND is_winner",
            [run.result.run_id],
        ).fetchone()
    assert decision[0] == "rejected" and "suspected leakage" in decision[1]


def test_a_worse_model_is_not_promoted_and_the_champion_stays(
    materialized: GraphRun, tmp_path: Path
):
    champion_before = registry.latest_tag()
    home = copy_home(materialized, tmp_path)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        first_test_month = con.execute(
            "SELECT DISTINCT observation_date FROM training_set ORDER BY 1 DESC LIMIT 1 OFFSET 1"
        ).fetchone()[0]
        # Training and validation labels replaced by noise: whatever wins learns nothing.
        con.execute(
            "UPDATE training_set SET churned = CAST(hash(customer_id, observation_date) % 25 = 0 "
            "AS INTEGER) WHERE observation_date < ?",
            [first_test_month],
        )

    run = materialize_graph(
        home,
        MODEL_STAGE,
        raise_on_error=False,
        run_config={"ops": {"model_evaluation": {"config": {"auc_floor": 0.0}}}},
    )

    gate = run.checks()["model_evaluation:quality_gate"]
    assert not gate.passed
    assert f"worse than champion {champion_before}" in gate.description
    assert materialization(run, "champion_model") is None
    assert registry.latest_tag() == champion_before
    metadata = gate.metadata
    assert metadata["rule"].value in {"significantly_worse", "below_champion"}
    assert metadata["champion_auc"].value - metadata["test_auc"].value > 0.01
    assert metadata["auc_delta"].value == pytest.approx(
        metadata["test_auc"].value - metadata["champion_auc"].value, abs=1e-9
    )
    assert metadata["ci_low"].value <= metadata["auc_delta"].value <= metadata["ci_high"].value
    comparison = materialization(run, "model_evaluation").metadata["gate_comparison"].value
    (row,) = [record.data for record in comparison.records]
    assert row["champion"] == champion_before and row["delta"] < 0


def test_the_model_card_in_the_ui_is_strict_json_with_the_gate(materialized: GraphRun):
    card = materialization(materialized, "champion_model").metadata["model_card"].value
    text = json.dumps(card, allow_nan=False)  # raises on NaN or infinity
    assert json.loads(text) == card
    gate = card["quality_gate"]
    assert gate["rule"] in gate["rules"] and gate["reason"] == card["lineage"]["gate"]
    assert gate["settings"]["champion_tolerance"] == 0.0
    assert set(gate["versus_champion"]) >= {"champion_auc", "test_auc", "auc_delta", "ci_low"}


def test_metrics_and_figures_are_tables_the_ui_renders_inline(materialized: GraphRun):
    metadata = materialization(materialized, "model_evaluation").metadata
    for key in ("metrics", "confusion_matrix", "calibration", "feature_importance"):
        assert isinstance(metadata[key], dg.TableMetadataValue), key
    metrics = {r.data["metric (test unless noted)"]: r.data for r in metadata["metrics"].records}
    assert metrics["roc_auc"][metadata["winner"].value] == round(metadata["test_roc_auc"].value, 4)
    confusion = [r.data for r in metadata["confusion_matrix"].records]
    total = sum(v for row in confusion for k, v in row.items() if k.startswith("predicted"))
    assert total == metrics["rows"][metadata["winner"].value]


def test_model_registry_keeps_every_candidate_ever_trained(materialized: GraphRun, tmp_path):
    home = copy_home(materialized, tmp_path)
    before = registry.latest_tag()
    run = materialize_graph(
        home,
        dg.AssetSelection.assets("candidate_models", "model_evaluation"),
        raise_on_error=False,
    )
    assert run.checks()["model_evaluation:quality_gate"] is not None
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        runs = con.execute("SELECT count(DISTINCT run_id), count(*) FROM model_registry").fetchone()
    assert runs == (2, 4)
    assert registry.latest_tag() == before
