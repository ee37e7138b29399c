"""Sensors and automation: incoming files, quarantine, declarative refresh, new labels ->
retrain."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.synthetic.shift import next_month
from churn_assets.definitions import defs
from churn_assets.defs.monitoring import sensors as monitoring_sensors
from churn_assets.defs.monitoring.assets import REFRESH
from churn_assets.defs.raw import sensors as raw_sensors
from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource

RAW_TABLES = ("raw_customers", "raw_events", "raw_payments", "raw_tickets", "raw_cancellations")


def _age(path: Path) -> Path:
    """Make a file look fully copied (older than the sensor's settle time)."""
    old = time.time() - raw_sensors.SETTLE_SECONDS - 5
    os.utime(path, (old, old))
    return path


def _tick(sensor, instance: dg.DagsterInstance, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor(context), context.cursor


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    return tmp_path


def _customers_csv(path: Path, rows: list[str]) -> Path:
    header = "customer_id,signup_date,region,plan,monthly_fee,contract,payment_method,age,"
    header += "acquisition_channel"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return _age(path)


GOOD_ROW = "c_new_1,2025-09-03,north,basic,19.0,monthly,card,33,organic"


def test_new_file_requests_one_run_keyed_by_content(home: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    path = _customers_csv(home / "incoming" / "customers_2025-10.csv", [GOOD_ROW])
    request, cursor = _tick(raw_sensors.incoming_files_sensor, instance)
    assert isinstance(request, dg.RunRequest)
    files = request.run_config["ops"]["raw_tables"]["config"]["incoming_files"]
    assert files == [str(path)]
    # The same bytes give the same key, so the daemon never launches it twice.
    again = raw_sensors.incoming_files_sensor(
        dg.build_sensor_context(instance=instance, definitions=defs)
    )
    assert again.run_key == request.run_key
    # With the cursor, a tick while the run is pending requests nothing new.
    skipped, _ = _tick(raw_sensors.incoming_files_sensor, instance, cursor)
    assert isinstance(skipped, dg.SkipReason)
    assert path.exists()


def test_a_file_still_being_copied_is_left_alone(home: Path) -> None:
    path = _customers_csv(home / "incoming" / "customers.csv", [GOOD_ROW])
    os.utime(path, None)  # just written
    result, _ = _tick(raw_sensors.incoming_files_sensor, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SkipReason) and path.exists()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("customers_bad.csv", None, "missing column(s) region"),
        ("customers_types.csv", "c1,not-a-date,north,basic,abc,monthly,card,33,organic", "wrong"),
        ("customers_dupes.csv", GOOD_ROW + "\n" + GOOD_ROW, "duplicate key"),
        ("invoices.csv", GOOD_ROW, "not a known table"),
        ("customers_torn.csv", GOOD_ROW + "\nc2,2025-09-03,no", "cannot be read"),
    ],
)
def test_bad_files_are_quarantined_with_a_reason(
    home: Path, name: str, content: str | None, reason: str
) -> None:
    incoming = home / "incoming"
    if content is None:
        incoming.mkdir(parents=True)
        (incoming / name).write_text("customer_id,signup_date\nc1,2025-01-01\n")
        _age(incoming / name)
    else:
        _customers_csv(incoming / name, content.split("\n"))
    result, _ = _tick(raw_sensors.incoming_files_sensor, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SkipReason)
    assert not (incoming / name).exists()
    assert (home / "quarantine" / name).exists()
    assert reason in (home / "quarantine" / f"{name}.reason.txt").read_text()


def test_refresh_waits_for_blocking_checks_that_eager_alone_ignores() -> None:
    def graph(check_passes: bool, condition: dg.AutomationCondition) -> list:
        @dg.asset(check_specs=[dg.AssetCheckSpec("gate", asset="upstream", blocking=True)])
        def upstream():
            yield dg.MaterializeResult()
            yield dg.AssetCheckResult(check_name="gate", passed=check_passes)

        @dg.asset(deps=[upstream], automation_condition=condition)
        def report() -> None: ...

        return [upstream, report]

    for condition, passes, expected in [
        (REFRESH, True, 1),
        (REFRESH, False, 0),
        (dg.AutomationCondition.eager(), False, 1),
    ]:
        assets = graph(passes, condition)
        instance = dg.DagsterInstance.ephemeral()
        first = dg.evaluate_automation_conditions(defs=assets, instance=instance)
        dg.materialize(assets[:1], instance=instance, raise_on_error=False)
        second = dg.evaluate_automation_conditions(
            defs=assets, instance=instance, cursor=first.cursor
        )
        assert second.get_num_requested(dg.AssetKey("report")) == expected, (condition, passes)


def test_monitoring_assets_carry_the_refresh_condition() -> None:
    graph = defs.resolve_asset_graph()
    for key in ("drift_report", "model_performance"):
        assert graph.get(dg.AssetKey(key)).automation_condition == REFRESH
    statuses = {s.name: s.default_status for s in defs.sensors or []}
    assert len(statuses) == 6 and {"scoring_automation", "new_month_sensor"} <= set(statuses)
    assert set(statuses.values()) == {dg.DefaultSensorStatus.RUNNING}


# --------------------------------------------------------------------------------------------
# End to end on a copy of the session's pipeline home
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pipeline_copy(materialized, home: Path, monkeypatch: pytest.MonkeyPatch):
    """The session home's warehouse, source files, model and Bento store, copied: never touched.

    This process's BentoML stores are patched to the copy; ``BENTOML_HOME`` points the
    ``bentoml build`` that ``churn_bento`` runs in a subprocess at it too."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    for name in ("raw", "truth"):
        shutil.copytree(materialized.home / name, home / name)
    shutil.copy2(materialized.warehouse, home / "warehouse.duckdb")
    store = home / "bentoml"
    shutil.copytree(materialized.home / "bentoml", store)
    monkeypatch.setenv("BENTOML_HOME", str(store))
    with (
        BentoMLContainer.model_store.patch(ModelStore(str(store / "models"))),
        BentoMLContainer.bento_store.patch(BentoStore(str(store / "bentos"))),
    ):
        yield home


def _counts(home: Path, tables: tuple[str, ...] = RAW_TABLES) -> dict[str, int]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def _rows(paths: list[Path]) -> int:
    names = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    with duckdb.connect() as con:
        return con.execute(f"SELECT count(*) FROM read_parquet([{names}])").fetchone()[0]


def _newest_bento() -> str:
    import bentoml

    return str(max(bentoml.bentos.list("churn_service"), key=lambda b: b.info.creation_time).tag)


def _run(home: Path, instance, selection, run_config: dict | None = None):
    from churn.settings import load_settings
    from churn_assets.partitions import full_range_tags, sync_calendar
    from tests.graph import expected_calendar, staged_calendar

    settings = load_settings()
    calendar = staged_calendar(home, settings) or expected_calendar(settings)
    if calendar is not None:
        sync_calendar(instance, *calendar)
    return dg.materialize(
        assets=list(defs.assets or []),
        selection=selection,
        resources={
            "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
            "churn_home": ChurnHomeResource(home=str(home)),
            "engine": EngineResource(home=str(home)),
        },
        instance=instance,
        tags=full_range_tags(instance),
        run_config=run_config,
        raise_on_error=False,
    )


@pytest.mark.slow  # the retrain builds a new Bento
def test_walkthrough_two_shifted_months_new_labels_retrain_and_a_new_bento(
    pipeline_copy: Path,
) -> None:
    """docs/drift-walkthrough.md in order, through the sensors: shift twice (two new months,
    fresh ids), the incoming sensor lands both, drift fails, the first shifted month's labels
    mature, so the retrain sensor retrains behind the gate, and a promoted champion is packaged
    as the newest Bento (which ``make demo``'s supervisor then serves: tests/test_ops_home.py)."""
    from churn import registry

    home = pipeline_copy
    champion_before, bento_before = registry.latest_tag(), _newest_bento()
    before = _counts(home, (*RAW_TABLES, "stg_events"))
    first = next_month(home / "raw", home / "incoming", "price_rise", region="north", pct=60)
    second = next_month(home / "raw", home / "incoming", "price_rise", region="north", pct=60)
    months = sorted({path.name.split("_")[1] for path in first + second})
    assert len(months) == 2, months  # the second shift is the month after the first
    new_events = _rows([p for p in first + second if p.name.startswith("events_")])
    new_cancellations = _rows([p for p in first + second if p.name.startswith("cancellations_")])
    assert new_cancellations > 0  # customers keep leaving, so the labels stay plausible
    for path in first + second:
        _age(path)
    bad = _customers_csv(home / "incoming" / "payments_broken.csv", [GOOD_ROW])

    instance = dg.DagsterInstance.ephemeral()
    request, _ = _tick(raw_sensors.incoming_files_sensor, instance)
    assert isinstance(request, dg.RunRequest)
    files = request.run_config["ops"]["raw_tables"]["config"]["incoming_files"]
    assert sorted(files) == sorted(str(path) for path in first + second)
    assert (home / "quarantine" / f"{bad.name}.reason.txt").exists()
    assert _counts(home, (*RAW_TABLES, "stg_events")) == before  # the sensor never writes

    run_config = dict(request.run_config)
    run_config["ops"] = run_config["ops"] | {
        # Any feature drifted against the training sample fails. The price rise rewrites the
        # fee of every month's snapshot (staging keeps the newest profile), so the previous
        # month shows no change: the default rule (both comparisons) would not fail.
        "drift_report": {"config": {"max_drift_share": 0.0, "decide_on": "training"}}
    }
    ingest = _run(home, instance, raw_sensors.INCOMING_SELECTION, run_config)
    assert ingest.success
    after = _counts(home, (*RAW_TABLES, "stg_events"))
    assert after["raw_events"] == before["raw_events"] + new_events
    assert after["stg_events"] == before["stg_events"] + new_events  # nothing deduplicated away
    assert after["raw_cancellations"] == before["raw_cancellations"] + new_cancellations
    assert not any((home / "incoming").iterdir())  # landed files are archived
    checks = {e.check_name: e for e in ingest.get_asset_check_evaluations()}
    assert checks["label_rate_plausible"].passed  # the matured shifted month has churners
    drift = checks["drift_check"]
    assert not drift.passed
    assert "monthly_fee" in drift.metadata["drifted_columns"].value

    retrain, _ = _tick(monitoring_sensors.new_labels_retrain_sensor, instance)
    assert isinstance(retrain, dg.RunRequest)
    assert retrain.run_key.startswith("retrain-labels-")
    again, _ = _tick(monitoring_sensors.new_labels_retrain_sensor, instance)
    assert again.run_key == retrain.run_key  # the daemon launches one run per key
    result = _run(home, instance, monitoring_sensors.RETRAIN_SELECTION)
    gate = {e.check_name: e for e in result.get_asset_check_evaluations()}["quality_gate"]
    materialized_keys = {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    if gate.passed:
        assert result.success
        assert {"champion_model", "churn_bento"} <= materialized_keys
        champion = registry.latest_tag()
        assert champion != champion_before
        assert _newest_bento() == f"churn_service:{champion.split(':', 1)[1]}"
    else:
        assert "champion_model" not in materialized_keys
        assert registry.latest_tag() == champion_before
        assert _newest_bento() == bento_before


def test_a_bad_file_changes_nothing(pipeline_copy: Path) -> None:
    from churn import registry

    home = pipeline_copy
    before, champion = _counts(home), registry.latest_tag()
    path = home / "incoming" / "events_2025-09.csv"
    path.parent.mkdir(parents=True)
    path.write_text("event_id,customer_id\ne1,c1\n")
    _age(path)
    result, _ = _tick(raw_sensors.incoming_files_sensor, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SkipReason)
    assert "missing column" in (home / "quarantine" / "events_2025-09.csv.reason.txt").read_text()
    assert _counts(home) == before and registry.latest_tag() == champion
