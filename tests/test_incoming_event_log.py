"""An event log grows through ``incoming/events/`` (issue 24, item 2: the event-log part).

Real Dagster runs in process on a small log without ``observation.end``: a new events file in
the log's own column names lands once through the sensor, rows it repeats from the log are kept
once (no ``event_id``: the whole row is the identity), a later month joins the calendar, and a
broken file and a customers file are quarantined with their reasons.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import duckdb
import pandas as pd

from churn_assets.defs.raw.sensors import incoming_files_sensor
from churn_assets.partitions import calendar_keys
from tests.event_log_support import write_log
from tests.graph import LAND, materialize_graph


def _settled(path) -> None:
    old = time.time() - 60
    os.utime(path, (old, old))


def _count(home, sql: str) -> int:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_an_event_log_file_in_incoming_lands_once_and_grows_the_calendar(tmp_path, monkeypatch):
    source = write_log(tmp_path / "log", customers=120)
    source.write_text(
        source.read_text().replace(
            "observation: {start: 2024-03-01, end: 2024-09-01}", "observation: {start: 2024-03-01}"
        )
    )
    home = tmp_path / "home"
    monkeypatch.setenv("CHURN_SOURCE", str(source))
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.setenv("CHURN_TODAY", "2024-10-20")
    with dg.instance_for_test() as instance:
        materialize_graph(home, LAND, instance=instance)
        assert calendar_keys(instance)[-1] == "2024-09-01"
        staged = _count(home, "SELECT count(*) FROM stg_events")

        log = pd.read_csv(source.parent / "activity.csv")
        repeated = log.head(3)  # already in the log: kept once
        later = log.tail(4).assign(ts="2024-10-05 10:00:00", visit=["n1", "n2", "n3", "n4"])
        inbox = home / "incoming" / "events"
        inbox.mkdir(parents=True)
        good = inbox / "october.csv"
        pd.concat([repeated, later]).to_csv(good, index=False)
        broken = inbox / "broken.csv"
        broken.write_text("user,action\nu1,login\n")
        customers = home / "incoming" / "customers_new.csv"
        customers.write_text("user,joined\nu9,2024-10-01\n")
        for path in (good, broken, customers):
            _settled(path)

        request = incoming_files_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(request, dg.RunRequest)
        assert request.run_config["ops"]["raw_tables"]["config"]["incoming_files"] == [str(good)]
        quarantine = home / "quarantine"
        assert "no column 'ts'" in (quarantine / "broken.csv.reason.txt").read_text()
        reason = (quarantine / "customers_new.csv.reason.txt").read_text()
        assert "takes new files for its events only" in reason

        run = materialize_graph(home, LAND, instance=instance, run_config=request.run_config)
        assert run.result.success
        assert not good.exists() and any((home / "landed").iterdir())
        assert _count(home, "SELECT count(*) FROM stg_events") == staged + len(later)
        assert calendar_keys(instance)[-1] == "2024-10-01", "the new month joined the calendar"

        # a full reload replays the landed file: still once, and the calendar stays
        materialize_graph(home, LAND, instance=instance)
        assert _count(home, "SELECT count(*) FROM stg_events") == staged + len(later)
        assert calendar_keys(instance)[-1] == "2024-10-01"
