"""Bring your own data: both example sources (``examples/make_examples.py``) run the whole graph.

Each example runs as ``CHURN_SOURCE=<example>/source.yaml make pipeline`` does, in a fresh
process (the code location reads the source at load time), into its own temp homes. The
assertions are what a user of each shape relies on: rows landed, bad text numbers rejected with
their reason, features inferred and dropped, the split the metadata reports, a champion whose
card carries the right feature schema, and the service's request model following that card.
"""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pandas as pd
import pydantic
import pytest

from churn.features import FEATURE_NAMES
from churn.features.events import CARD_KEY, EventFeatureSpec, features
from churn.modeling.spec import specs_from_dicts
from churn.sources.config import SourceConfigError, load_source, parse_source
from serving.schemas import build_schemas
from tests.byod_support import examples_root, run_example

pytestmark = pytest.mark.slow

FLAT_FEATURES = [
    "gender",
    "senior_citizen",
    "has_partner",
    "tenure_months",
    "contract",
    "internet",
    "paperless_billing",
    "payment_method",
    "monthly_charges",
    "total_charges",
    "support_calls",
]


def _metadata(run, asset: str) -> dict:
    instance = dg.DagsterInstance.from_config(str(run.dagster_home))
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None, f"{asset} was not materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _checks(run) -> dict[str, bool]:
    instance = dg.DagsterInstance.from_config(str(run.dagster_home))
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    results = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        key = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        results[key] = evaluation.passed
    return results


# --- the configs ---------------------------------------------------------------------------


def test_example_configs_parse_with_paths_relative_to_the_yaml():
    flat = load_source(examples_root() / "flat" / "source.yaml")
    assert flat.shape == "flat" and flat.flat.id_column == "account_code"
    assert flat.flat.positive == ("Yes",) and flat.flat.cv_folds == 5
    assert flat.flat.path == (examples_root() / "flat" / "customers.csv").resolve()
    events = load_source(examples_root() / "events" / "source.yaml")
    assert events.shape == "events"
    assert events.tables["events"].file_column("event_time") == "ts"
    assert (events.observation.start.isoformat(), events.observation.end.isoformat()) == (
        "2024-04-01",
        "2024-11-01",
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"shape": "wide"}, "shape: must be 'flat' or 'events'"),
        ({"shape": "flat", "table": "missing.csv"}, "label: required key is missing"),
        (
            {
                "shape": "flat",
                "table": "c.csv",
                "id_column": "id",
                "label": {"column": "y", "positive": 1},
                "colums": {},
            },
            "unknown key(s) colums",
        ),
        ({"shape": "events", "tables": {}}, "observation: required key is missing"),
    ],
)
def test_a_broken_config_names_what_is_wrong(tmp_path, data, message):
    (tmp_path / "c.csv").write_text("id,y\n1,1\n")
    with pytest.raises(SourceConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_source(data, tmp_path / "source.yaml")


# --- flat ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flat_run():
    return run_example("flat")


def test_flat_lands_every_row_and_rejects_the_bad_text_numbers_with_a_reason(flat_run):
    source_rows = len(pd.read_csv(flat_run.source.parent / "customers.csv"))
    with duckdb.connect(str(flat_run.warehouse), read_only=True) as con:
        raw = con.execute("SELECT count(*) FROM raw_customers").fetchone()[0]
        staged = con.execute("SELECT count(*) FROM stg_customers").fetchone()[0]
        reasons = [
            r[0] for r in con.execute("SELECT reject_reason FROM stg_customers_rejects").fetchall()
        ]
        blanks_kept = con.execute(
            "SELECT count(*) FROM stg_customers WHERE total_charges IS NULL"
        ).fetchone()[0]
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert raw == source_rows == 2000
    assert len(reasons) == 12 and staged == raw - 12
    assert all(
        r.startswith("invalid_type: TotalCharges=") and "is not a number" in r for r in reasons
    )
    assert any("'#VALUE!'" in r for r in reasons)
    assert blanks_kept > 0, "blank text numbers are missing values, not rejects"
    event_tables = {
        f"{layer}_{name}{suffix}"
        for name in ("events", "payments", "tickets", "cancellations")
        for layer, suffix in (("raw", ""), ("stg", ""), ("stg", "_rejects"))
    }
    assert not event_tables & tables, "a flat source has no event tables: none is created"
    assert "event_feature_spec" not in tables
    for name in ("raw_events", "stg_events", "stg_events_rejects"):
        assert _metadata(flat_run, name)["note"] == "a flat source has no events table"


def test_flat_infers_features_and_drops_id_constant_and_ignored_columns(flat_run):
    staging = _metadata(flat_run, "stg_customers")
    assert staging["inferred_features"] == FLAT_FEATURES
    assert staging["dropped_columns"] == {"Country": "constant", "Notes": "ignored"}
    assert set(staging["text_number_columns"]) >= {"MonthlyCharges", "TotalCharges"}
    with duckdb.connect(str(flat_run.warehouse), read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE customer_features").fetchall()]
        dates = con.execute("SELECT DISTINCT observation_date FROM customer_snapshots").fetchall()
        label_rate = con.execute(
            "SELECT avg(CAST(churned AS DOUBLE)) FROM churn_labels"
        ).fetchone()[0]
    assert columns == ["customer_id", "observation_date", *FLAT_FEATURES]
    assert [str(d[0]) for d in dates] == ["2025-06-01"], "one snapshot, at as_of"
    assert 0.1 < label_rate < 0.6


def test_flat_is_evaluated_on_a_stratified_split_and_says_so(flat_run):
    candidates = _metadata(flat_run, "candidate_models")
    assert candidates["split_kind"] == "stratified"
    assert candidates["split"]["kind"] == "stratified"
    assert candidates["cv_folds"] == 5 and "lightgbm" in candidates["cv_roc_auc"]
    evaluation = _metadata(flat_run, "model_evaluation")
    assert evaluation["split_kind"] == "stratified"
    assert evaluation["test_roc_auc"] > 0.7
    checks = _checks(flat_run)
    assert checks["model_evaluation:quality_gate"] is True
    assert checks["customer_features:no_future_leakage"] is True
    assert checks["stg_customers:types_valid"] is False, "the 12 bad text numbers warn"


def test_flat_champion_card_and_service_schema_follow_the_inferred_features(flat_run):
    (card,) = flat_run.cards()
    assert card["feature_order"] == FLAT_FEATURES
    assert card["data_window"]["kind"] == "stratified"
    schema = {spec["name"]: spec for spec in card["feature_schema"]}
    assert schema["contract"]["categories"] == ["1 year", "2 years", "Monthly"]
    assert schema["total_charges"]["dtype"] == "number"
    assert schema["tenure_months"]["dtype"] == "integer"
    request = build_schemas(card, specs_from_dicts(card["feature_schema"])).score_request
    row = {
        "gender": "F",
        "senior_citizen": "0",
        "has_partner": "Yes",
        "tenure_months": 3,
        "contract": "Monthly",
        "internet": "Fibre",
        "paperless_billing": "Yes",
        "payment_method": "Voucher",
        "monthly_charges": 80.5,
        "total_charges": 241.5,
        "support_calls": 2,
    }
    request.model_validate({"customer_id": "TEL-1", "features": row})
    with pytest.raises(pydantic.ValidationError, match="events_30d"):
        request.model_validate({"customer_id": "TEL-1", "features": row | {"events_30d": 1}})
    with pytest.raises(pydantic.ValidationError, match="contract"):
        request.model_validate({"customer_id": "TEL-1", "features": row | {"contract": "weekly"}})
    assert (flat_run.bentoml_home / "bentos" / "churn_service").exists()


def test_flat_scores_are_one_decision_with_plain_reasons_and_no_silent_gaps(flat_run):
    """Issue 25 on a flat table: no row where tier and label disagree, a plain reason on every
    row, and the customers whose row was rejected listed in the unscored file with why."""
    with duckdb.connect(str(flat_run.warehouse), read_only=True) as con:
        scores = con.execute("SELECT * FROM customer_scores").df()
        rejected = [
            row[0]
            for row in con.execute("SELECT account_code FROM stg_customers_rejects").fetchall()
        ]
    assert len(scores) > 0
    disagree = (scores["risk_tier"] == "high") != (scores["churn_label"] == 1)
    assert not disagree.any(), scores.loc[disagree, ["churn_probability", "risk_tier"]]
    assert scores["reason_1_text"].notna().all()
    assert scores["reason_1_text"].str.contains(r"\d").all()
    newest = scores["observation_date"].max().date()
    path = flat_run.home / "exports" / f"customer_scores_unscored_{newest.isoformat()}.csv"
    unscored = pd.read_csv(path, dtype={"customer_id": str})
    listed = unscored.set_index("customer_id")
    assert rejected and set(rejected) <= set(listed.index)
    assert (listed.loc[rejected, "reason_kind"] == "rejected").all()
    assert listed.loc[rejected, "reason"].str.contains("TotalCharges=").all()
    assert _metadata(flat_run, "customer_scores")["unscored_customers"] == len(unscored)


# --- events --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events_run():
    return run_example("events")


def test_events_source_is_renamed_onto_the_contract_and_follows_its_calendar(events_run):
    with duckdb.connect(str(events_run.warehouse), read_only=True) as con:
        raw_columns = [r[0] for r in con.execute("DESCRIBE raw_events").fetchall()]
        counts = {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("raw_customers", "stg_customers", "stg_events", "stg_events_rejects")
        }
        dates = [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT observation_date FROM customer_snapshots ORDER BY 1"
            ).fetchall()
        ]
        unlabeled = con.execute(
            "SELECT count(*) FROM churn_labels WHERE churned IS NULL AND observation_date = '2024-11-01'"
        ).fetchone()[0]
    assert raw_columns[:6] == [
        "event_id",
        "customer_id",
        "session_id",
        "event_time",
        "event_type",
        "duration_seconds",
    ]
    assert counts["raw_customers"] == counts["stg_customers"] == 1_500
    assert counts["stg_events"] > 10_000 and counts["stg_events_rejects"] == 0
    assert dates[0] == "2024-04-01" and dates[-1] == "2024-11-01" and len(dates) == 8
    assert unlabeled > 0, "the newest month is the unlabeled one the model scores"


def test_events_run_the_point_in_time_path_with_a_time_split(events_run):
    checks = _checks(events_run)
    assert checks["customer_features:no_future_leakage"] is True
    assert checks["customer_features:rows_match_active_customers"] is True
    assert checks["model_evaluation:quality_gate"] is True
    candidates = _metadata(events_run, "candidate_models")
    assert candidates["split_kind"] == "time"
    assert candidates["split"]["test_dates"][-1] < "2024-11-01"
    (card,) = events_run.cards()
    # The hand-written subscription family first, then the generated features it lacks.
    assert card["feature_order"][: len(FEATURE_NAMES)] == list(FEATURE_NAMES)
    spec = EventFeatureSpec.from_dict(card[CARD_KEY])
    assert spec.subscription_family and card["feature_order"] == [f.name for f in features(spec)]
    assert set(spec.event_types) == {"login", "page_view", "feature_use", "export", "share"}
    assert json.loads(json.dumps(card["lineage"]))["source"].endswith("source.yaml")
