"""The observation calendar follows the clock and the data (issue 24, item 1).

``CHURN_TODAY`` is read on every call; ``observation.end`` and ``as_of`` may be left out; the
calendar ends at the newest landed event (the synthetic generator's months, or today's month for
a flat table); a new month appears in the same Definitions object, for the schedule and the
sensor, without a restart; ``make pipeline`` works on a fresh instance.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.settings import load_settings, today
from churn.sources.base import CalendarError
from churn.sources.config import load_source
from churn.sources.registry import source_for
from churn_assets.definitions import defs
from churn_assets.defs.features.schedules import monthly_refresh
from churn_assets.defs.features.sensors import new_month_sensor
from churn_assets.partitions import (
    CALENDAR_NAME,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    calendar_keys,
    sync_calendar,
)
from tests.byod_support import REPO, example_env
from tests.conftest import SESSION_HOME
from tests.event_log_support import write_log
from tests.graph import LAND, materialize_graph

FLAT_EXAMPLE = REPO / "examples" / "flat"


# --- today ------------------------------------------------------------------------------------


def test_today_is_churn_today_read_on_every_call(monkeypatch):
    monkeypatch.setenv("CHURN_TODAY", "2026-03-10")
    assert today() == date(2026, 3, 10)
    monkeypatch.setenv("CHURN_TODAY", "2026-04-02")
    assert today() == date(2026, 4, 2), "never frozen at the first read"
    monkeypatch.delenv("CHURN_TODAY")
    assert today() == date.today()


def test_a_bad_churn_today_names_the_variable():
    with pytest.raises(ValueError, match="CHURN_TODAY must be an ISO date"):
        today({"CHURN_TODAY": "next tuesday"})


# --- what each kind's calendar is -------------------------------------------------------------


def _events_yaml(folder: Path, observation: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.csv").write_text("user,ts\nu1,2024-01-05\n")
    path = folder / "source.yaml"
    path.write_text(
        "shape: events\n"
        f"observation: {observation}\n"
        "churn: {inactive_days: 30}\n"
        "tables:\n  events: {path: events.csv, columns: {customer_id: user, event_time: ts}}\n"
    )
    return path


def _staged_events(newest: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE stg_events (event_time TIMESTAMP)")
    con.execute("INSERT INTO stg_events VALUES ('2024-02-03'), (?)", [newest])
    return con


def test_an_event_log_without_end_runs_to_the_month_of_its_newest_event(tmp_path):
    config = load_source(_events_yaml(tmp_path, "{start: 2024-03-01}"))
    assert config.observation is not None and config.observation.end is None
    source = source_for(config)
    with _staged_events("2024-09-17 08:00") as con:
        # a historic log read years later: the calendar ends with the data, not the clock
        assert source.calendar(con, load_settings(), date(2026, 12, 7)) == (
            date(2024, 3, 1),
            date(2024, 9, 1),
        )
        # a future-dated event does not open a month nobody lives in yet
        assert source.calendar(con, load_settings(), date(2024, 8, 2))[1] == date(2024, 8, 1)


def test_dates_outside_the_calendar_are_errors_naming_the_key(tmp_path):
    late_end = source_for(
        load_source(_events_yaml(tmp_path / "a", "{start: 2024-03-01, end: 2025-01-01}"))
    )
    with (
        _staged_events("2024-09-17") as con,
        pytest.raises(CalendarError, match=r"observation\.end 2025-01-01"),
    ):
        late_end.calendar(con, load_settings(), date(2024, 10, 15))
    late_start = source_for(load_source(_events_yaml(tmp_path / "b", "{start: 2024-11-01}")))
    with (
        _staged_events("2024-09-17") as con,
        pytest.raises(CalendarError, match=r"observation\.start 2024-11-01"),
    ):
        late_start.calendar(con, load_settings(), date(2026, 1, 1))


def _flat_source(folder: Path, as_of: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(FLAT_EXAMPLE / "customers.csv", folder / "customers.csv")
    lines = (FLAT_EXAMPLE / "source.yaml").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("as_of:")]
    if as_of is not None:
        kept.append(f"as_of: {as_of}")
    path = folder / "source.yaml"
    path.write_text("\n".join(kept) + "\n")
    return path


def test_a_flat_table_without_as_of_is_observed_in_the_month_of_today(tmp_path, monkeypatch):
    config = load_source(_flat_source(tmp_path / "now", None))
    monkeypatch.setenv("CHURN_TODAY", "2026-03-10")
    source = source_for(config)
    assert source.observation_date == date(2026, 3, 1)
    assert source.calendar(duckdb.connect(), load_settings(), today()) == (
        date(2026, 3, 1),
        date(2026, 3, 1),
    )
    future = source_for(load_source(_flat_source(tmp_path / "future", "2026-05-01")))
    with pytest.raises(CalendarError, match="as_of 2026-05-01"):
        future.calendar(duckdb.connect(), load_settings(), today())


def test_the_calendar_grows_at_its_end_and_is_rewritten_in_order_otherwise():
    instance = dg.DagsterInstance.ephemeral()
    assert sync_calendar(instance, date(2025, 4, 1), date(2025, 6, 1)).added == [
        "2025-04-01",
        "2025-05-01",
        "2025-06-01",
    ]
    change = sync_calendar(instance, date(2025, 4, 1), date(2025, 7, 1))
    assert change.added == ["2025-07-01"] and change.removed == []
    change = sync_calendar(instance, date(2025, 2, 1), date(2025, 3, 1))  # another source
    assert change.removed == ["2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01"]
    assert instance.get_dynamic_partitions(CALENDAR_NAME) == ["2025-02-01", "2025-03-01"]


# --- a new month without a restart: the same Definitions, the schedule and the sensor --------


def test_a_new_month_appears_for_the_schedule_and_the_sensor_without_a_restart(
    tmp_path, monkeypatch
):
    """A flat table without ``as_of``: landed in March, then again after the clock (CHURN_TODAY)
    stepped into April; the one Definitions object imported at the top serves both."""
    monkeypatch.setenv("CHURN_SOURCE", str(_flat_source(tmp_path / "source", None)))
    monkeypatch.setenv("CHURN_TODAY", "2026-03-10")
    with dg.instance_for_test() as instance:  # a schedule context needs a persistent one
        _step_the_clock(tmp_path / "home", instance, monkeypatch)


def _step_the_clock(home: Path, instance: dg.DagsterInstance, monkeypatch) -> None:
    materialize_graph(home, LAND, instance=instance)
    assert calendar_keys(instance) == ["2026-03-01"]
    materialize_graph(home, "customer_snapshots", instance=instance)

    march = datetime(2026, 3, 1, 6, tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=march) as context:
        request = monthly_refresh(context)
    assert request.tags[PARTITION_RANGE_START_TAG] == "2026-03-01"

    sensor = new_month_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(sensor, dg.SkipReason), "March is snapshotted already"

    monkeypatch.setenv("CHURN_TODAY", "2026-04-02")
    materialize_graph(home, LAND, instance=instance)
    assert calendar_keys(instance)[-1] == "2026-04-01"

    april = datetime(2026, 4, 1, 6, tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=april) as context:
        request = monthly_refresh(context)
    assert request.tags[PARTITION_RANGE_END_TAG] == "2026-04-01"
    sensor = new_month_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(sensor, dg.RunRequest)
    assert sensor.tags[PARTITION_RANGE_START_TAG] == sensor.tags[PARTITION_RANGE_END_TAG]
    assert sensor.tags[PARTITION_RANGE_END_TAG] == "2026-04-01"

    run = materialize_graph(home, "customer_snapshots", instance=instance, first="2026-04-01")
    assert run.result.success
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        dates = [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT observation_date FROM customer_snapshots ORDER BY 1"
            ).fetchall()
        ]
    assert dates == ["2026-03-01", "2026-04-01"]


# --- make pipeline on a fresh instance, configs without an end date ----------------------------


def _pipeline(source: Path, today_iso: str, name: str) -> tuple[Path, Path, str]:
    """``make pipeline`` minus the install, on a fresh home and a fresh Dagster instance (no
    dagster.yaml: the pipeline needs nothing set up beforehand)."""
    home = Path(tempfile.mkdtemp(prefix=f"churn-calendar-{name}-", dir=SESSION_HOME))
    dagster_home = home / "dagster_home"
    env = example_env(home, dagster_home, home / "bentoml", source) | {"CHURN_TODAY": today_iso}
    completed = subprocess.run(
        [sys.executable, "-m", "churn_assets.pipeline"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    return home, dagster_home, output


def _scored_dates(home: Path) -> list[str]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT observation_date FROM customer_scores ORDER BY 1"
            ).fetchall()
        ]


def _instance_keys(dagster_home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return calendar_keys(instance)


def test_an_event_log_without_end_scores_the_month_in_progress(tmp_path):
    source = write_log(tmp_path / "log", customers=300)
    source.write_text(
        source.read_text().replace(
            "observation: {start: 2024-03-01, end: 2024-09-01}", "observation: {start: 2024-03-01}"
        )
    )
    home, dagster_home, output = _pipeline(source, "2024-09-20", "events")
    assert "--partition-range 2024-03-01...2024-09-01" in output
    assert _instance_keys(dagster_home)[-1] == "2024-09-01"
    assert _scored_dates(home)[-1] == "2024-09-01", "the month in progress is scored"


def test_a_flat_table_without_as_of_scores_the_month_in_progress(tmp_path):
    source = _flat_source(tmp_path / "flat", None)
    home, dagster_home, _ = _pipeline(source, "2026-03-10", "flat")
    assert _instance_keys(dagster_home) == ["2026-03-01"]
    assert _scored_dates(home) == ["2026-03-01"]
