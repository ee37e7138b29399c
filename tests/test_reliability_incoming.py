"""Files in ``incoming/`` are landed, quarantined with a true reason, or retried: never lost
(issue 17, items 2, 3 and 9).

Real parts throughout: the sensor ticks against a real (ephemeral) Dagster instance, the run it
requests materializes the real raw asset into a DuckDB file, and failed runs are real runs.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from churn.ingest.incoming import LANDED_TABLE, append_incoming, validate_file
from churn.ingest.landing import SourceFileError, create_empty_raw, land_file
from churn.ingest.schema import CUSTOMERS, EVENTS
from churn.ingest.staging import stage_table
from churn.ingest.values import text_value, typed_value
from churn.sql import quote_path
from churn_assets.definitions import defs
from churn_assets.defs.raw import sensors as raw_sensors
from tests.graph import materialize_graph

RAW = "raw_customers,raw_events,raw_payments,raw_tickets,raw_cancellations"
HEADER = "event_id,customer_id,session_id,event_time,event_type,duration_seconds"


def _age(path: Path) -> Path:
    old = time.time() - raw_sensors.SETTLE_SECONDS - 5
    os.utime(path, (old, old))
    return path


def _events(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return _age(path)


def _tick(instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return raw_sensors.incoming_files_sensor(context), context.cursor


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    return tmp_path


def _raw_events(home: Path, where: str = "TRUE") -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            f"SELECT event_id, event_time, duration_seconds FROM raw_events WHERE {where} "
            "ORDER BY event_id"
        ).fetchall()


def test_one_bad_file_never_strands_its_batch(home: Path, monkeypatch: pytest.MonkeyPatch):
    """good, whitespace-only duration, good, and a large file with a wrong type that only the
    run reads: three land, the large one is quarantined with its real reason, none is left."""
    materialize_graph(home, RAW)
    monkeypatch.setenv("CHURN_INCOMING_CHECK_MAX_BYTES", "400")
    incoming = home / "incoming"
    _events(incoming / "events_a.csv", ["n_a,c1,s1,2025-08-01 10:00:00,login,5"])
    _events(incoming / "events_b.csv", ["n_b,c1,s1,2025-08-01 11:00:00,login,   "])
    _events(incoming / "events_c.csv", ["n_c,c1,s1,2025-11-30 22:00:00-05:00,export,7"])
    big_rows = [f"n_big_{i},c1,s1,2025-08-02 10:00:00,login,{i}" for i in range(20)]
    big = _events(incoming / "events_big.csv", [*big_rows, "n_big_x,c1,s1,yesterday,login,1"])
    assert big.stat().st_size > 400 > (incoming / "events_a.csv").stat().st_size

    instance = dg.DagsterInstance.ephemeral()
    request, cursor = _tick(instance, None)
    assert isinstance(request, dg.RunRequest)  # the big file passed the cheap checks only
    assert len(request.run_config["ops"]["raw_tables"]["config"]["incoming_files"]) == 4
    run = materialize_graph(home, RAW, run_config=request.run_config)
    assert run.result.success

    assert _raw_events(home, "event_id LIKE 'n_%'") == [
        ("n_a", datetime(2025, 8, 1, 10, 0), 5.0),
        ("n_b", datetime(2025, 8, 1, 11, 0), None),  # blank: missing, rejected by staging
        ("n_c", datetime(2025, 12, 1, 3, 0), 7.0),  # the offset converted to UTC
    ]
    reason = (home / "quarantine" / "events_big.csv.reason.txt").read_text()
    assert "wrong types" in reason and "event_time: 1 value(s) not TIMESTAMP" in reason
    assert sorted(p.name for p in incoming.iterdir()) == []
    assert not list((home / "landed").glob("*events_big.csv"))
    quarantined = run.result.asset_materializations_for_node("raw_tables")[0]
    assert "events_big.csv" in str(quarantined.metadata["quarantined_files"].value)
    again, _ = _tick(instance, cursor)
    assert isinstance(again, dg.SkipReason)


def test_a_failed_run_releases_its_files_and_repeated_failures_quarantine_them(
    home: Path, monkeypatch: pytest.MonkeyPatch
):
    path = _events(home / "incoming" / "events_x.csv", ["e1,c1,s1,2025-08-01 10:00:00,login,5"])
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset
    def landing_that_fails() -> None:
        raise RuntimeError("the warehouse disk is full")

    request, cursor = _tick(instance, None)
    keys = []
    for attempt in range(raw_sensors.MAX_ATTEMPTS):
        assert isinstance(request, dg.RunRequest), attempt
        keys.append(request.run_key)
        pending, cursor = _tick(instance, cursor)  # queued: not requested twice
        assert isinstance(pending, dg.SkipReason)
        failed = dg.materialize(
            [landing_that_fails],
            instance=instance,
            tags={raw_sensors.RUN_KEY_TAG: request.run_key},
            raise_on_error=False,
        )
        assert not failed.success
        request, cursor = _tick(instance, cursor)
    assert len(set(keys)) == raw_sensors.MAX_ATTEMPTS  # each retry under a new run key
    assert isinstance(request, dg.SkipReason) and not path.exists()
    reason = (home / "quarantine" / "events_x.csv.reason.txt").read_text()
    assert f"failed {raw_sensors.MAX_ATTEMPTS} times" in reason and failed.run_id in reason


def test_a_request_whose_run_never_appeared_expires(home: Path, monkeypatch):
    _events(home / "incoming" / "events_y.csv", ["e1,c1,s1,2025-08-01 10:00:00,login,5"])
    instance = dg.DagsterInstance.ephemeral()
    first, cursor = _tick(instance, None)
    assert isinstance(first, dg.RunRequest)
    assert isinstance(_tick(instance, cursor)[0], dg.SkipReason)
    monkeypatch.setattr(raw_sensors, "REQUEST_TIMEOUT_SECONDS", 0.0)
    again, _ = _tick(instance, cursor)
    assert isinstance(again, dg.RunRequest) and again.run_key == first.run_key


def test_a_file_that_fails_to_land_leaves_no_trace_and_no_false_duplicate(tmp_path: Path):
    """A landing error rolls back the rows and the hash and removes the archive copy, so the
    sensor never takes the file for "already ingested"."""
    path = _events(tmp_path / "incoming" / "events_z.csv", ["e1,c1,s1,2025-08-01,login,5"])
    landed = tmp_path / "landed"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE TABLE raw_events (event_id VARCHAR)")  # cannot take the file
        with pytest.raises(SourceFileError, match=r"events_z\.csv: cannot be loaded"):
            append_incoming(con, path, landed)
        assert con.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 0
        assert con.execute(f"SELECT count(*) FROM {LANDED_TABLE}").fetchone()[0] == 0
    assert path.exists() and list(landed.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-11-30 22:00:00-05:00", datetime(2025, 12, 1, 3, 0)),
        ("2025-11-30T23:30:00+01:00", datetime(2025, 11, 30, 22, 30)),
        ("2025-11-30 23:59:59Z", datetime(2025, 11, 30, 23, 59, 59)),
        ("2025-11-30 23:59:59", datetime(2025, 11, 30, 23, 59, 59)),
        ("2025-12-01 00:30:00+0100", datetime(2025, 11, 30, 23, 30)),
        ("2025-11-30", datetime(2025, 11, 30, 0, 0)),
        ("   ", None),
    ],
)
def test_offset_timestamps_become_utc_around_an_observation_date(value, expected):
    typed = typed_value(text_value("v"), "TIMESTAMP")
    with duckdb.connect() as con:
        row = con.execute(f"SELECT {typed} FROM (SELECT CAST(? AS VARCHAR) AS v)", [value])
        assert row.fetchone() == (expected,)


def test_offsets_and_timestamptz_land_and_stage_in_utc_before_or_after_the_date(tmp_path):
    """22:00-05:00 on Nov 30 is Dec 1 03:00 UTC: after a Dec 1 observation date, so features
    for Dec 1 must not see it. CSV (text) and Parquet (TIMESTAMPTZ) stage the same instant."""
    csv = tmp_path / "events.csv"
    csv.write_text(
        f"{HEADER}\n"
        "e1,c1,s1,2025-11-30 22:00:00-05:00,login,1\n"
        "e2,c1,s1,2025-12-01 00:30:00+01:00,login,1\n"
    )
    parquet = tmp_path / "events.parquet"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'America/New_York'")  # the session zone must not matter
        con.execute(
            f"COPY (SELECT event_id, customer_id, session_id, "
            f"CAST(event_time AS TIMESTAMPTZ) AS event_time, event_type, duration_seconds "
            f"FROM read_csv({quote_path(csv)}, all_varchar = true)) "
            f"TO {quote_path(parquet)} (FORMAT parquet)"
        )
    staged = {}
    for source in (csv, parquet):
        with duckdb.connect(str(tmp_path / f"{source.suffix[1:]}.duckdb")) as con:
            create_empty_raw(con, CUSTOMERS)
            con.execute("INSERT INTO raw_customers (customer_id) VALUES ('c1')")
            con.execute("CREATE TABLE stg_customers AS SELECT 'c1' AS customer_id")
            land_file(con, source, EVENTS, replace=True)
            stage_table(con, EVENTS)
            staged[source.suffix] = con.execute(
                "SELECT event_id, event_time, event_time < DATE '2025-12-01' "
                "FROM stg_events ORDER BY 1"
            ).fetchall()
    expected = [
        ("e1", datetime(2025, 12, 1, 3, 0), False),
        ("e2", datetime(2025, 11, 30, 23, 30), True),
    ]
    assert staged == {".csv": expected, ".parquet": expected}


def test_validation_and_landing_accept_the_same_values(tmp_path):
    """Whitespace-only numbers pass validation and land as missing, by the same rule."""
    path = _events(
        tmp_path / "events_w.csv",
        ["w1,c1,s1,2025-08-01 10:00:00,login,   ", "w2,c1,s1, 2025-08-01 11:00:00 ,login, 4 "],
    )
    assert validate_file(path) is EVENTS
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        create_empty_raw(con, EVENTS)
        assert append_incoming(con, path, tmp_path / "landed") == ("events", 2)
        assert con.execute(
            "SELECT event_id, event_time, duration_seconds FROM raw_events ORDER BY 1"
        ).fetchall() == [
            ("w1", datetime(2025, 8, 1, 10, 0), None),
            ("w2", datetime(2025, 8, 1, 11, 0), 4.0),
        ]


def test_a_waiting_file_is_hashed_once_not_on_every_tick(home: Path, monkeypatch):
    path = _events(home / "incoming" / "events_h.csv", ["e1,c1,s1,2025-08-01 10:00:00,login,5"])
    instance = dg.DagsterInstance.ephemeral()
    hashed: list[Path] = []
    real_hash = raw_sensors.content_hash
    monkeypatch.setattr(raw_sensors, "content_hash", lambda p: hashed.append(p) or real_hash(p))
    first, cursor = _tick(instance, None)
    assert isinstance(first, dg.RunRequest) and hashed == [path]
    waiting, cursor = _tick(instance, cursor)
    assert isinstance(waiting, dg.SkipReason) and hashed == [path]  # from the cursor
    _events(path, ["e2,c1,s1,2025-08-01 10:00:00,login,6"])  # new content: hashed again
    changed, _ = _tick(instance, cursor)
    assert isinstance(changed, dg.RunRequest) and hashed == [path, path]
    assert changed.run_key != first.run_key
