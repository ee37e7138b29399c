"""An event log's rules on hand-made rows in an in-memory DuckDB: who is observed, the
inactivity / cancellation / hybrid labels, time-format detection and structural staging."""

from __future__ import annotations

import re
from datetime import date, datetime

import duckdb
import pytest

from churn.features.event_spec import choose_event_types
from churn.features.events import ChurnDefinition, EventFeatureSpec, features
from churn.features.labels import data_end
from churn.ingest.eventlog import detect_time_format, events_table
from churn.ingest.staging import stage_table
from churn.sources.config import SourceConfigError, parse_source
from churn.sources.event_log import EventLogSource


def _shape(churn: ChurnDefinition) -> EventLogSource:
    """An event log's source object as resolved after staging decided ``spec``."""
    spec = EventFeatureSpec(event_types=("buy",), churn=churn)
    return EventLogSource(spec=spec, features=tuple(features(spec)))


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_events (customer_id VARCHAR, event_time TIMESTAMP, "
        "event_type VARCHAR, session_id VARCHAR)"
    )
    con.execute("CREATE TABLE stg_customers (customer_id VARCHAR, signup_date DATE)")
    con.execute(
        "CREATE TABLE stg_cancellations (customer_id VARCHAR, cancel_date DATE, "
        "churn_type VARCHAR, reason VARCHAR)"
    )
    con.execute("CREATE TABLE stg_payments (payment_date DATE)")
    con.execute("CREATE TABLE stg_tickets (created_at TIMESTAMP)")
    rows = [
        ("a", "2024-02-20 09:00"),  # active at 03-01, active after, then silent after 03-15
        ("a", "2024-03-15 09:00"),
        ("b", "2024-01-10 09:00"),  # lapsed before 03-01: never observed
        ("c", "2024-02-29 23:59"),  # next event exactly 30 days after 03-01: churned
        ("c", "2024-03-31 00:00"),
        ("d", "2024-03-01 00:00"),  # an event at T is not before T; by 04-01 it is 31 days old
        ("z", "2024-05-20 12:00"),  # the data's last day
    ]
    con.executemany("INSERT INTO stg_events VALUES (?, ?, 'buy', NULL)", rows)
    return con


def _observe(con, shape: EventLogSource, start: str, end: str) -> None:
    sql, params = shape.snapshots_query(start, end)
    con.execute(f"CREATE OR REPLACE TABLE customer_snapshots AS {sql}", params)


def _labels(con, shape: EventLogSource, start: str = "2024-03-01", end: str = "2024-07-01"):
    _observe(con, shape, start, end)
    sql, params = shape.labels_query(start, end, data_end(con))
    return {
        (row[0], row[1].isoformat()): (row[2], row[3])
        for row in con.execute(f"SELECT * FROM ({sql}) ORDER BY 1, 2", params).fetchall()
    }


def test_inactivity_observes_the_not_yet_lapsed_and_labels_the_silent(con):
    labels = _labels(con, _shape(ChurnDefinition(cancellation=False, inactive_days=30)))
    assert labels == {
        ("a", "2024-03-01"): (False, None),
        ("a", "2024-04-01"): (True, "inactive"),
        ("c", "2024-03-01"): (True, "inactive"),  # 03-31 is day 30: outside [T, T+30)
        ("c", "2024-04-01"): (True, "inactive"),
        ("z", "2024-06-01"): (None, None),  # 06-01 + 30 is past the data: not yet known
    }


def test_cancellation_and_hybrid_labels(con):
    con.execute("INSERT INTO stg_customers VALUES ('e', DATE '2024-01-01'), ('f', NULL)")
    con.executemany(
        "INSERT INTO stg_events VALUES (?, ?, ?, NULL)",
        [
            ("e", "2024-02-25 10:00", "buy"),
            ("e", "2024-03-05 10:00", "buy"),
            ("f", "2024-02-25 10:00", "buy"),
            ("f", "2024-03-10 10:00", 'it\'s "Cancel"; --'),
        ],
    )
    con.execute("INSERT INTO stg_cancellations VALUES ('e', DATE '2024-03-20', 'voluntary', NULL)")
    hybrid = ChurnDefinition(
        cancellation=True, inactive_days=30, cancellation_event='it\'s "Cancel"; --'
    )
    labels = _labels(con, _shape(hybrid), end="2024-05-01")
    # e: active after T but cancelled within the horizon; gone (not observed) at 04-01.
    assert labels[("e", "2024-03-01")] == (True, "voluntary")
    assert ("e", "2024-04-01") not in labels
    # f: no signup date (first event stands in), the cancellation is an event of the log.
    assert labels[("f", "2024-03-01")] == (True, "cancellation_event")
    assert ("f", "2024-04-01") not in labels
    assert labels[("a", "2024-03-01")] == (False, None)
    assert ("b", "2024-03-01") not in labels  # lapsed: the inactivity side of "observed"
    cancellation_only = ChurnDefinition(
        cancellation=True, cancellation_event=hybrid.cancellation_event
    )
    labels = _labels(con, _shape(cancellation_only), end="2024-05-01")
    assert labels[("b", "2024-03-01")] == (False, None)  # never lapses by cancellation rules
    assert labels[("a", "2024-04-01")] == (False, None)


def test_vocabulary_is_chosen_before_the_last_date_without_the_cancellation_event(con):
    con.executemany(
        "INSERT INTO stg_events VALUES ('a', ?, ?, NULL)",
        [("2024-03-02", "view"), ("2024-03-03", "view"), ("2024-03-04", "Cancel")]
        + [("2024-06-02", "late")] * 5,
    )
    chosen, other = choose_event_types(con, date(2024, 6, 1), top=1, exclude="Cancel")
    assert (chosen, other) == (("buy",), True)
    chosen, other = choose_event_types(con, date(2024, 6, 1), top=5, exclude="Cancel")
    assert (chosen, other) == (("buy", "view"), False)


@pytest.mark.parametrize(
    ("values", "kind", "first"),
    [
        (
            ["1700000000", "1700000100", " 1700000200 "],
            "epoch_seconds",
            datetime(2023, 11, 14, 22, 13, 20),
        ),
        (
            ["1700000000000", "1700000000500"],
            "epoch_milliseconds",
            datetime(2023, 11, 14, 22, 13, 20),
        ),
        (["2024-01-05", "2024-02-01"], "date", datetime(2024, 1, 5)),
        (["2024-01-05 10:30:00", "2024-01-05T11:00:00"], "timestamp", datetime(2024, 1, 5, 10, 30)),
    ],
)
def test_time_format_is_detected_and_parsed(values, kind, first):
    con = duckdb.connect()
    con.execute("CREATE TABLE raw (t VARCHAR)")
    con.executemany("INSERT INTO raw VALUES (?)", [[v] for v in values])
    found = detect_time_format(con, "raw", "t")
    assert found.kind == kind, found
    parsed = found.parse().format(text="nullif(trim(t), '')")
    assert con.execute(f"SELECT {parsed} FROM raw LIMIT 1").fetchone()[0] == first


def test_typed_epoch_numbers_from_json_are_milliseconds():
    con = duckdb.connect()
    con.execute("CREATE TABLE raw AS SELECT 1538352117000::BIGINT AS ts")
    assert detect_time_format(con, "raw", "ts").kind == "epoch_milliseconds"


def test_staging_rejects_only_structure_never_an_event_type():
    con = duckdb.connect()
    odd = ['it\'s "odd"; DROP TABLE stg_events; --', "Ünïcødé page", "", "NextSong"]
    con.execute(
        "CREATE TABLE raw_events (event_id VARCHAR, customer_id VARCHAR, session_id VARCHAR, "
        "event_time VARCHAR, event_type VARCHAR, amount VARCHAR, _loaded_at TIMESTAMPTZ, "
        "_source_file VARCHAR)"
    )
    rows = [(str(i), "c1", None, "1700000000000", name, "2.5") for i, name in enumerate(odd)]
    rows += [
        ("10", None, None, "1700000000000", "x", "1"),  # no customer
        ("11", "c2", None, "yesterday", "x", "1"),  # unparseable time
        ("12", "c3", None, "1700000000000", "x", "lots"),  # measure not a number
        ("13", "c4", None, "1700000000000", None, None),  # no type, no measure: fine
    ]
    con.executemany("INSERT INTO raw_events VALUES (?, ?, ?, ?, ?, ?, now(), 'log.csv')", rows)
    time = detect_time_format(con, "raw_events", "event_time")
    result = stage_table(con, events_table(time, ["amount"]))
    assert (result.staged_rows, result.rejected_rows) == (5, 3)
    staged = {r[0] for r in con.execute("SELECT event_type FROM stg_events").fetchall()}
    assert staged == {odd[0], odd[1], None, "NextSong"}  # a blank type is a missing type
    reasons = dict(con.execute("SELECT event_id, reject_reason FROM stg_events_rejects").fetchall())
    assert reasons["10"].startswith("missing_required: customer_id")
    assert reasons["11"].startswith("invalid_type: event_time=yesterday")
    assert reasons["12"].startswith("invalid_type: amount=lots")


# --- the config ---------------------------------------------------------------------------

MINIMAL = {
    "shape": "events",
    "name": "purchases",
    "observation": {"start": "2024-04-01", "end": "2025-03-01"},
    "churn": {"inactive_days": 90},
    "tables": {
        "events": {
            "path": "purchases.csv",
            "columns": {"customer_id": "cust", "event_time": "bought_on"},
            "measures": ["quantity", "amount"],
        }
    },
}


def test_the_minimal_event_log_config_is_enough(tmp_path):
    (tmp_path / "purchases.csv").write_text("cust,bought_on,quantity,amount\n")
    source = parse_source(MINIMAL, tmp_path / "source.yaml")
    assert source.is_event_log and not source.has_cancellations
    assert source.churn.inactive_days == 90 and source.top_event_types == 10
    assert source.tables["events"].measures == ("quantity", "amount")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"churn": {"inactive_days": 0}}, "churn.inactive_days: must be a positive"),
        ({"churn": {"inactive_days": "90"}}, "churn.inactive_days: must be a positive"),
        ({"churn": {"inactive_days": True}}, "churn.inactive_days: must be a positive"),
        ({"churn": {"inactve_days": 3}}, "unknown key(s) inactve_days"),
        ({"churn": None}, "churn: without a cancellations table"),
        (
            {"features": {"top_event_types": -1}},
            "features.top_event_types: must be a whole number >= 0",
        ),
        ({"tables": {}}, "tables.events: required key is missing"),
        (
            {"tables": {"events": {"path": "purchases.csv", "columns": {"user": "cust"}}}},
            "tables.events.columns: unknown key(s) user",
        ),
        (
            {"tables": {"events": {"path": "purchases.csv", "measures": "amount"}}},
            "tables.events.measures: must be a list",
        ),
        (
            {"tables": {"events": {"path": "purchases.txt"}}},
            "tables.events.path: purchases.txt is not a .csv or .parquet",
        ),
    ],
)
def test_a_broken_event_log_config_names_the_key(tmp_path, change, message):
    (tmp_path / "purchases.csv").write_text("cust,bought_on\n")
    (tmp_path / "purchases.txt").write_text("")
    data = {k: v for k, v in (MINIMAL | change).items() if v is not None}
    with pytest.raises(SourceConfigError, match=re.escape(message)):
        parse_source(data, tmp_path / "source.yaml")
