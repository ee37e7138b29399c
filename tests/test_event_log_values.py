"""An event log's damaged values, landed and staged as ``raw_tables`` and ``stg_events`` do:
times with offsets (text, JSON Lines and Parquet ``TIMESTAMPTZ``, in any session time zone),
times outside the calendar or after their load, epoch numbers of the wrong unit, infinite or
huge measures, one odd value in a JSON column, padded ids, empty files and overlong event
types. Each bad value rejects its own row with a reason naming the column, never the file and
never the whole column (issue 28, items 10, 11, 12, 14 and 16)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from churn.ingest.eventlog import (
    check_incoming_events,
    land_event_log_table,
    stage_customers,
    stage_events,
)
from churn.ingest.landing import SourceFileError, no_rows_warning
from churn.ingest.schema import CUSTOMERS, EVENTS
from churn.sources.config import SourceConfig, parse_source
from churn.sql import quote_path
from serving.events import _arrow_table, observation_date_of

ZONES = ("UTC", "America/New_York", "Asia/Tokyo")


def _source(folder: Path, events: str, customers: str | None = None) -> SourceConfig:
    tables: dict = {
        "events": {
            "path": events,
            "columns": {"customer_id": "cust", "event_time": "ts", "event_type": "kind"},
            "measures": ["amount"],
        }
    }
    if customers is not None:
        tables["customers"] = {"path": customers, "columns": {"customer_id": "cust"}}
    config = {
        "shape": "events",
        "name": "log",
        "observation": {"start": "2024-04-01", "end": "2025-03-01"},
        "churn": {"inactive_days": 30},
        "tables": tables,
    }
    return parse_source(config, folder / "source.yaml")


def _stage(source: SourceConfig, zone: str = "UTC", customers: bool = False):
    """Land and stage the log's events (and customers) in a fresh DuckDB whose session runs in
    ``zone``: the staged instants must not depend on it."""
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{zone}'")
    if customers:
        land_event_log_table(con, source, CUSTOMERS)
        stage_customers(con, source)
    land_event_log_table(con, source, EVENTS)
    result, time = stage_events(con, source)
    return con, result, time


def _csv(path: Path, rows: list[str], header: str = "cust,ts,kind,amount") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _staged(con) -> dict[str, datetime]:
    return dict(con.execute("SELECT customer_id, event_time FROM stg_events").fetchall())


def _rejected(con) -> dict[str, str]:
    return dict(con.execute("SELECT customer_id, reject_reason FROM stg_events_rejects").fetchall())


# --- 10. one UTC rule ---------------------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_text_times_with_offsets_are_converted_to_utc_and_counted(tmp_path, zone):
    """22:00 at -05:00 on Jan 31 is Feb 1 03:00 UTC: after a Feb 1 observation date."""
    _csv(
        tmp_path / "log.csv",
        [
            "a,2025-01-31 22:00:00-05:00,buy,1",
            "b,2025-02-01T01:30:00+02:00,buy,1",
            "c,2025-01-31 23:59:59Z,buy,1",
            "d,2025-01-31 23:00:00,buy,1",  # naive: UTC
        ],
    )
    con, result, time = _stage(_source(tmp_path, "log.csv"), zone)
    assert _staged(con) == {
        "a": datetime(2025, 2, 1, 3, 0),
        "b": datetime(2025, 1, 31, 23, 30),
        "c": datetime(2025, 1, 31, 23, 59, 59),
        "d": datetime(2025, 1, 31, 23, 0),
    }
    assert result.rejected_rows == 0
    assert time.kind == "timestamp"
    assert "times with offsets converted to UTC: 3" in time.reason


@pytest.mark.parametrize("zone", ZONES)
def test_json_lines_and_parquet_timestamptz_are_utc_whatever_the_session_zone(tmp_path, zone):
    rows = [
        {"cust": "a", "ts": "2025-01-31T22:00:00-05:00", "kind": "buy", "amount": 1.0},
        {"cust": "b", "ts": "2025-01-31T23:30:00+00:00", "kind": "buy", "amount": 2.0},
    ]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'America/Los_Angeles'")  # written in yet another zone
        source = f"read_json({quote_path(tmp_path / 'log.jsonl')}, format = 'newline_delimited')"
        assert con.execute(f"SELECT typeof(ts) FROM {source} LIMIT 1").fetchone()[0] == (
            "TIMESTAMP WITH TIME ZONE"
        )
        con.execute(f"COPY (SELECT * FROM {source}) TO {quote_path(tmp_path / 'log.parquet')}")
    expected = {"a": datetime(2025, 2, 1, 3, 0), "b": datetime(2025, 1, 31, 23, 30)}
    for name in ("log.jsonl", "log.parquet"):
        con, result, time = _stage(_source(tmp_path, name), zone)
        assert (_staged(con), result.rejected_rows) == (expected, 0), name
        assert "converted to UTC: 2" in time.reason, name


def test_training_and_serving_agree_on_an_offset_time_near_midnight(tmp_path):
    """The same text, staged by the pipeline and read by ``/score_events`` (pydantic's datetime
    into the request's Arrow table), is the same naive-UTC instant, on the same side of the
    observation date."""
    text = "2025-01-31T22:00:00-05:00"
    _csv(tmp_path / "log.csv", [f"a,{text},buy,1"])
    con, _, _ = _stage(_source(tmp_path, "log.csv"), "America/New_York")
    staged = _staged(con)["a"]
    schema = pa.schema([("customer_id", pa.string()), ("event_time", pa.timestamp("us"))])
    served = _arrow_table(schema, [{"event_time": datetime.fromisoformat(text)}], "a")
    assert served.column("event_time")[0].as_py() == staged == datetime(2025, 2, 1, 3, 0)
    as_of = datetime.fromisoformat("2025-01-31T23:00:00-05:00")  # Feb 1, 04:00 UTC
    assert observation_date_of(as_of) == date(2025, 2, 1) > staged.date() - timedelta(days=1)
    assert not staged < datetime(2025, 2, 1)  # after the Feb 1 date on both sides


# --- 11. bad times ------------------------------------------------------------------------


def test_times_outside_the_calendar_or_after_the_load_are_rejected_per_row(tmp_path):
    future = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    _csv(
        tmp_path / "log.csv",
        [
            "ok,2025-01-10 10:00:00,buy,1",
            "far,2205-01-01 00:00:00,buy,1",
            "old,1850-06-01 00:00:00,buy,1",
            f"soon,{future},buy,1",
        ],
    )
    con, result, _ = _stage(_source(tmp_path, "log.csv"))
    assert set(_staged(con)) == {"ok"}
    reasons = _rejected(con)
    assert reasons["far"].startswith(
        "out_of_range: event_time=2205-01-01 00:00:00 is outside 1900-01-01..2199-12-31; "
    )
    assert reasons["old"].startswith("out_of_range: event_time=1850-06-01")
    assert "is after its load time" in reasons["soon"]
    assert result.rejects_by_rule["out_of_range"] == 3
    assert con.execute("SELECT max(event_time) FROM stg_events").fetchone()[0] == datetime(
        2025, 1, 10, 10, 0
    ), "the data's end is the real data's"


def test_epoch_seconds_outside_the_calendar_are_rejected_naming_the_column(tmp_path):
    _csv(
        tmp_path / "log.csv",
        ["a,1700000000,buy,1", "b,1700000100,buy,1", "c,-5000000000,buy,1", "d,95000000000,buy,1"],
    )
    con, _result, time = _stage(_source(tmp_path, "log.csv"))
    assert time.kind == "epoch_seconds"
    assert "2 not times in 1900-01-01..2199-12-31" in time.reason
    assert _staged(con) == {
        "a": datetime(2023, 11, 14, 22, 13, 20),
        "b": datetime(2023, 11, 14, 22, 15),
    }
    reasons = _rejected(con)
    assert reasons["c"].startswith("out_of_range: event_time=-5000000000 is outside")  # 1811
    assert reasons["d"].startswith("out_of_range: event_time=95000000000 is outside")  # 4980


def test_one_seconds_value_in_a_milliseconds_column_is_rejected_not_read_as_1970(tmp_path):
    rows = [f"m{i},{1700000000000 + i * 1000},buy,1" for i in range(9)] + ["s,1700000000,buy,1"]
    _csv(tmp_path / "log.csv", rows)
    con, _result, time = _stage(_source(tmp_path, "log.csv"))
    assert time.kind == "epoch_milliseconds"
    assert min(_staged(con).values()) == datetime(2023, 11, 14, 22, 13, 20)
    assert _rejected(con) == {
        "s": "out_of_range: event_time=1700000000 looks like epoch seconds in a column of epoch "
        "milliseconds"
    }


# --- 12. infinite and huge measures ---------------------------------------------------------


def test_infinite_nan_and_huge_measures_are_rejected_naming_the_column(tmp_path):
    _csv(
        tmp_path / "log.csv",
        [
            "ok,2025-01-10,buy,12.5",
            "big,2025-01-10,buy,-1e15",  # the bound itself is kept
            "blank,2025-01-10,buy,",
            "inf,2025-01-10,buy,inf",
            "e400,2025-01-10,buy,1e400",
            "nan,2025-01-10,buy,NaN",
            "huge,2025-01-10,buy,9.3e15",
        ],
    )
    con, _result, _ = _stage(_source(tmp_path, "log.csv"))
    assert set(_staged(con)) == {"ok", "big", "blank"}
    reasons = _rejected(con)
    assert set(reasons) == {"inf", "e400", "nan", "huge"}
    for customer, reason in reasons.items():
        assert reason.startswith("out_of_range: amount="), customer
        assert reason.endswith("is not a finite number within ±1e+15"), customer


def test_typed_parquet_measures_follow_the_same_bound(tmp_path):
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * FROM (VALUES ('ok', TIMESTAMP '2025-01-10', 'buy', 3.0), "
            "('inf', TIMESTAMP '2025-01-10', 'buy', 'inf'::DOUBLE), "
            "('nan', TIMESTAMP '2025-01-10', 'buy', 'nan'::DOUBLE)) AS t(cust, ts, kind, amount)) "
            f"TO {quote_path(tmp_path / 'log.parquet')}"
        )
    con, _result, _ = _stage(_source(tmp_path, "log.parquet"))
    assert set(_staged(con)) == {"ok"} and set(_rejected(con)) == {"inf", "nan"}


# --- 14. one odd value in a JSON column -----------------------------------------------------


def test_one_odd_value_in_a_json_column_changes_only_its_row(tmp_path):
    events = [
        {"cust": f"C{i}", "ts": f"2025-01-{i + 1:02d}T10:00:00", "kind": "buy", "amount": 1}
        for i in range(20)
    ]
    events[7]["ts"] = 1736000000  # a number among ISO strings
    events[15]["cust"] = 15  # a number among string ids
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in events))
    customers = [{"cust": f"C{i}", "plan": "a"} for i in range(20)]
    customers[15]["cust"] = 15
    (tmp_path / "users.jsonl").write_text("".join(json.dumps(row) + "\n" for row in customers))
    source = _source(tmp_path, "log.jsonl", customers="users.jsonl")
    con, result, _ = _stage(source, customers=True)
    assert (result.staged_rows, result.rejected_rows) == (19, 1)
    assert _rejected(con) == {"C7": "invalid_type: event_time=1736000000 is not a valid TIMESTAMP"}
    ids = {row[0] for row in con.execute("SELECT customer_id FROM stg_events").fetchall()}
    assert "15" in ids and "C3" in ids and not any('"' in i for i in ids)
    joined = con.execute(
        "SELECT count(*) FROM stg_events JOIN stg_customers USING (customer_id)"
    ).fetchone()[0]
    assert joined == 19


# --- 16. lesser items -----------------------------------------------------------------------


def test_event_log_ids_are_trimmed_and_join(tmp_path):
    _csv(tmp_path / "log.csv", ["C1 ,2025-01-10,buy,1", "  C2,2025-01-10,buy,1"])
    _csv(tmp_path / "users.csv", ["C1,x", "C2 ,y"], header="cust,plan")
    con, _result, _ = _stage(_source(tmp_path, "log.csv", customers="users.csv"), customers=True)
    assert set(_staged(con)) == {"C1", "C2"}
    joined = con.execute(
        "SELECT count(*) FROM stg_events JOIN stg_customers USING (customer_id)"
    ).fetchone()[0]
    assert joined == 2


def test_an_empty_file_says_empty_and_a_header_only_file_says_no_rows(tmp_path):
    (tmp_path / "log.csv").write_bytes(b"")
    source = _source(tmp_path, "log.csv")
    with pytest.raises(SourceFileError, match=r"^log\.csv: empty file \(0 bytes\)$"):
        check_incoming_events(tmp_path / "log.csv", source)
    with pytest.raises(SourceFileError, match="empty file"), duckdb.connect() as con:
        land_event_log_table(con, source, EVENTS)
    _csv(tmp_path / "log.csv", [])
    with pytest.raises(SourceFileError, match=r"^log\.csv: no rows$"):
        check_incoming_events(tmp_path / "log.csv", source)
    with duckdb.connect() as con:  # the source's own file: lands, and says so
        path, rows = land_event_log_table(con, source, EVENTS)
    assert rows == 0
    assert no_rows_warning(path, rows) == (
        "log.csv: 0 rows (the file has a header or schema and no rows); everything "
        "downstream of this table will be empty"
    )
    assert no_rows_warning(path, 1) is None and no_rows_warning(None, 0) is None


def test_an_event_type_longer_than_the_service_accepts_is_rejected(tmp_path):
    _csv(tmp_path / "log.csv", [f"ok,2025-01-10,{'x' * 256},1", f"long,2025-01-10,{'y' * 257},1"])
    con, _result, _ = _stage(_source(tmp_path, "log.csv"))
    assert set(_staged(con)) == {"ok"}
    assert _rejected(con) == {
        "long": "out_of_range: event_type is 257 characters, over the 256 the service accepts"
    }
