"""Event logs as they come, end to end: the graph up to the champion on two logs made here.

* a purchase log with nothing but a customer, a day and two numbers, configured by the
  minimal YAML (churn = 90 days without a purchase);
* a streaming log as JSON Lines with epoch-millisecond times, its own page names (one with
  quotes and a semicolon), sessions, a cancellation *event* and a users table whose
  registration is in epoch milliseconds too (churn = hybrid: the cancellation event or 30
  days of silence).

Each runs in a fresh process (the code location reads ``CHURN_SOURCE`` at load) with its own
homes, like ``make pipeline`` but stopping at ``champion_model``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from churn.features.events import CARD_KEY, EventFeatureSpec, features
from churn.ingest.schema import RAW_TABLES
from churn_assets.pipeline import land_command
from tests.byod_support import REPO, example_env
from tests.conftest import SESSION_HOME

pytestmark = pytest.mark.slow

ODD_PAGE = 'it\'s "odd"; DROP TABLE stg_events; --'
CANCEL = "Cancellation Confirmation"


@dataclass(frozen=True)
class LogRun:
    home: Path
    source: Path
    output: str

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def metadata(self, asset: str) -> dict:
        instance = dg.DagsterInstance.from_config(str(self.home / "dagster_home"))
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None, f"{asset} was not materialized"
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    def checks(self) -> dict[str, bool]:
        instance = dg.DagsterInstance.from_config(str(self.home / "dagster_home"))
        records = instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
        found = {}
        for record in records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            found[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = (
                evaluation.passed
            )
        return found

    def card(self) -> dict:
        (path,) = (self.home / "bentoml" / "models" / "churn_model").glob("*/card.json")
        return json.loads(path.read_text())

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()


def run_log(folder: Path, first: str, last: str) -> LogRun:
    home = Path(tempfile.mkdtemp(prefix="churn-log-", dir=SESSION_HOME))
    (home / "dagster_home").mkdir()
    shutil.copy2(REPO / "config" / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    source = folder / "source.yaml"
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "--select",
        ",".join(["*champion_model", *(f"stg_{t.name}_rejects" for t in RAW_TABLES)]),
        "--partition-range",
        f"{first}...{last}",
        "-m",
        "churn_assets.definitions",  # its executor runs in process (defs/resources.py)
    ]
    env = example_env(home, home / "dagster_home", home / "bentoml", source)
    output = ""
    # the README's plain commands: on a fresh instance, landing and staging write the calendar
    for step in (land_command(), command):
        completed = subprocess.run(
            step, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        output += completed.stdout + completed.stderr
        assert completed.returncode == 0, output[-6000:]
    return LogRun(home, source, output)


# --- a purchase log -------------------------------------------------------------------------

PURCHASES_YAML = """\
shape: events
name: purchases
observation: {start: 2024-04-01, end: 2025-03-01}
churn: {inactive_days: 90}
tables:
  events:
    path: purchases.csv
    columns: {customer_id: cust, event_time: bought_on}
    measures: [quantity, amount]
"""


def write_purchases(folder: Path, customers: int = 500, seed: int = 3) -> int:
    """Each customer buys at their own rate from signup until they quietly stop."""
    rng = np.random.default_rng(seed)
    first, last = date(2023, 10, 1), date(2025, 5, 31)
    lines = ["cust,bought_on,quantity,amount"]
    for i in range(customers):
        day = first + timedelta(days=int(rng.integers(0, 450)))
        stop = min(day + timedelta(days=float(rng.exponential(300))), last)
        gap = float(rng.lognormal(np.log(12), 0.5))
        price = float(rng.choice([4.5, 9.99, 25.0]))
        while True:
            day += timedelta(days=float(rng.exponential(gap)))
            if day > stop:
                break
            quantity = int(rng.integers(1, 5))
            lines.append(f"C{i:04d},{day.isoformat()},{quantity},{quantity * price:.2f}")
    lines += [",2024-06-01,1,3.00", "C0001,not a date,1,3.00", "C0002,2024-06-02,1,lots"]
    (folder / "purchases.csv").write_text("\n".join(lines) + "\n")
    (folder / "source.yaml").write_text(PURCHASES_YAML)
    return len(lines) - 1


@pytest.fixture(scope="module")
def purchases():
    folder = Path(tempfile.mkdtemp(prefix="purchases-", dir=SESSION_HOME))
    rows = write_purchases(folder)
    return rows, run_log(folder, "2024-04-01", "2025-03-01")


def test_purchase_log_lands_and_rejects_only_broken_rows(purchases):
    rows, run = purchases
    ((staged,),) = run.query("SELECT count(*) FROM stg_events")
    reasons = sorted(r for (r,) in run.query("SELECT reject_reason FROM stg_events_rejects"))
    assert staged == rows - 3
    assert [r.split(":")[0] for r in reasons] == [
        "invalid_type",
        "invalid_type",
        "missing_required",
    ]
    assert any("amount=lots" in r for r in reasons) and any("not a date" in r for r in reasons)
    staging = run.metadata("stg_events")
    assert staging["time_format"]["event_time"].startswith("date")
    assert staging["churn_definition"]["kind"] == "inactivity"


def test_purchase_log_runs_partitions_leakage_check_and_gate(purchases):
    _, run = purchases
    checks = run.checks()
    for check in (
        "customer_features:no_future_leakage",
        "customer_features:rows_match_active_customers",
        "customer_features:required_features_present",
        "model_evaluation:quality_gate",
    ):
        assert checks[check] is True, check
    dates = run.query("SELECT DISTINCT observation_date FROM customer_features ORDER BY 1")
    assert len(dates) == 12
    ((rate,),) = run.query("SELECT avg(churned) FROM training_set")
    assert 0.02 < rate < 0.6
    split = run.metadata("candidate_models")["split"]
    assert split["kind"] == "time" and split["embargoed"], "a 90-day label spans months"


def test_purchase_log_card_records_the_generated_family(purchases):
    _, run = purchases
    card = run.card()
    spec = EventFeatureSpec.from_dict(card[CARD_KEY])
    assert card["feature_order"] == [f.name for f in features(spec)]
    assert spec.event_types == () and spec.measures == ("quantity", "amount")
    assert not spec.has_sessions and not spec.subscription_family
    assert card["churn_definition"] == card[CARD_KEY]["churn"]
    assert card["churn_definition"]["kind"] == "inactivity"
    assert card["churn_definition"]["inactive_days"] == 90
    assert {"amount_sum_30d", "quantity_mean_90d", "days_since_last_event"} <= set(
        card["feature_order"]
    )
    columns = [r[0] for r in run.query("DESCRIBE customer_features")]
    assert columns[2:] == card["feature_order"]


def test_purchase_log_reports_the_model_against_recency_alone(purchases):
    _, run = purchases
    evaluation = run.metadata("model_evaluation")
    recency = evaluation["baseline_recency_auc"]
    assert 0.0 < recency < 1.0
    assert evaluation["auc_over_recency"] == pytest.approx(evaluation["test_roc_auc"] - recency)
    assert run.card()["metrics"]["baselines"]["recency_auc"] == pytest.approx(recency)


# --- a streaming log ------------------------------------------------------------------------

STREAMING_YAML = """\
shape: events
name: streaming
observation: {start: 2024-04-01, end: 2024-10-01}
churn: {cancellation_event: "Cancellation Confirmation", inactive_days: 30}
features: {top_event_types: 3}
tables:
  events:
    path: events.jsonl
    columns: {customer_id: userId, event_time: ts, event_type: page, session_id: sessionId}
    measures: [length]
  customers:
    path: users.csv
    columns: {customer_id: userId, signup_date: registration}
"""


def _ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds() * 1000)


def write_streaming(folder: Path, users: int = 220, seed: int = 5) -> None:
    """Sessions of page events; leavers fade, and some confirm a cancellation."""
    rng = np.random.default_rng(seed)
    pages = ["NextSong"] * 6 + [ODD_PAGE] * 3 + ["Thumbs Up"] * 2 + ["Add to Playlist", "Help"]
    first, last = datetime(2024, 1, 1), datetime(2024, 11, 15)
    events, people = [], ["userId,registration,gender,level,userAgent,country"]
    session = 0
    for u in range(users):
        start = first + timedelta(days=float(rng.uniform(0, 200)))
        stop = min(start + timedelta(days=float(rng.exponential(160))), last)
        gap = float(rng.lognormal(np.log(3), 0.4))
        people.append(
            f"{u},{_ms(start)},{rng.choice(['M', 'F'])},{rng.choice(['free', 'paid'])},agent-{u},US"
        )
        moment = start
        while True:
            fading = 3.0 if (stop - moment).days < 40 and stop < last else 1.0
            moment += timedelta(days=float(rng.exponential(gap * fading)))
            if moment > stop:
                break
            session += 1
            for k in range(int(rng.integers(2, 7))):
                page = str(rng.choice(pages))
                when = moment + timedelta(minutes=4 * k)
                length = round(float(rng.uniform(120, 300)), 3) if page == "NextSong" else None
                events.append(
                    {
                        "userId": str(u),
                        "ts": _ms(when),
                        "page": page,
                        "sessionId": session,
                        "length": length,
                    }
                )
        if stop < last and rng.random() < 0.5:
            events.append(
                {
                    "userId": str(u),
                    "ts": _ms(stop),
                    "page": CANCEL,
                    "sessionId": session,
                    "length": None,
                }
            )
    (folder / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    (folder / "users.csv").write_text("\n".join(people) + "\n")
    (folder / "source.yaml").write_text(STREAMING_YAML)


@pytest.fixture(scope="module")
def streaming():
    folder = Path(tempfile.mkdtemp(prefix="streaming-", dir=SESSION_HOME))
    write_streaming(folder)
    return run_log(folder, "2024-04-01", "2024-10-01")


def test_streaming_log_keeps_its_own_vocabulary_and_detects_epoch_milliseconds(streaming):
    staged = {r[0] for r in streaming.query("SELECT DISTINCT event_type FROM stg_events")}
    assert ODD_PAGE in staged and CANCEL in staged
    assert streaming.query("SELECT count(*) FROM stg_events_rejects") == [(0,)]
    staging = streaming.metadata("stg_events")
    assert staging["time_format"]["event_time"].startswith("epoch_milliseconds")
    customers = streaming.metadata("stg_customers")
    assert customers["time_format"]["signup_date"].startswith("epoch_milliseconds")
    assert customers["dropped_columns"] == {"userAgent": "identifier", "country": "constant"}
    ((earliest,),) = streaming.query("SELECT min(signup_date) FROM stg_customers")
    assert date(2024, 1, 1) <= earliest < date(2024, 2, 1)


def test_streaming_log_is_hybrid_and_its_card_names_the_chosen_vocabulary(streaming):
    checks = streaming.checks()
    assert checks["customer_features:no_future_leakage"] is True
    assert checks["model_evaluation:quality_gate"] is True
    card = streaming.card()
    spec = EventFeatureSpec.from_dict(card[CARD_KEY])
    assert spec.churn.kind == "hybrid" and spec.churn.cancellation_event == CANCEL
    assert spec.event_types == ("NextSong", ODD_PAGE, "Thumbs Up")
    assert CANCEL not in spec.event_types and spec.other_types and spec.has_sessions
    assert spec.profile == (
        ("gender", "categorical", "VARCHAR"),
        ("level", "categorical", "VARCHAR"),
    )
    assert card["feature_order"] == [f.name for f in features(spec)]
    odd = "type_it_s_odd_drop_table_stg_events_30d"  # a slug: the name never reaches the SQL
    assert {"type_next_song_30d", odd, "type_other_7d", "length_mean_30d", "sessions_90d"} <= set(
        card["feature_order"]
    )
    ((odd_events,),) = streaming.query(f"SELECT sum({odd}) FROM customer_features")
    assert odd_events > 0
    kinds = dict(streaming.query("SELECT churn_type, count(*) FROM churn_labels GROUP BY 1"))
    assert kinds.get("cancellation_event", 0) > 0 and kinds.get("inactive", 0) > 0
