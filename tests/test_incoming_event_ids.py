"""Events an ``incoming/`` file re-delivers are dropped, the first delivery winning (issue 24,
item 2): by ``event_id`` when the log maps one, else by the whole row; counted in metadata."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from churn.ingest.incoming import redelivered_name
from churn.ingest.schema import EVENTS
from churn.sources.config import load_source
from churn.sources.registry import source_for

CONFIG = """\
shape: events
name: ids
observation: {start: 2024-02-01}
churn: {inactive_days: 30}
tables:
  events:
    path: log.csv
    columns: {event_id: eid, customer_id: cust, event_time: at, event_type: what}
"""
HEADER = "eid,cust,at,what"


def _csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _staged(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT event_id, event_type FROM stg_events").fetchall())


def test_a_redelivered_event_id_is_dropped_and_the_first_delivery_wins(tmp_path):
    folder = tmp_path / "source"
    _csv(
        folder / "log.csv",
        [
            "e1,c1,2024-01-03 10:00:00,login",
            "e2,c1,2024-01-05 10:00:00,view",
            "e3,c2,2024-01-06 10:00:00,login",
        ],
    )
    (folder / "source.yaml").write_text(CONFIG)
    source = source_for(load_source(folder / "source.yaml"))
    assert source.kind == "event_log"
    con = duckdb.connect()
    for table in source.tables:
        source.land(con, table, tmp_path / "raw")
    inbox, landed = tmp_path / "incoming" / "events", tmp_path / "landed"
    first = _csv(
        inbox / "a.csv",
        ["e2,c1,2024-01-05 10:00:00,CHANGED", "e4,c2,2024-02-02 09:00:00,view"],
    )
    assert source.append_incoming(con, first, landed) == ("events", 1)
    second = _csv(
        inbox / "b.csv",
        ["e4,c2,2024-02-02 09:00:00,AGAIN", "e5,c1,2024-02-03 09:00:00,login"],
    )
    assert source.append_incoming(con, second, landed) == ("events", 1)

    staged = source.stage(con, EVENTS)
    assert _staged(con) == {"e1": "login", "e2": "view", "e3": "login", "e4": "view", "e5": "login"}
    assert staged.metadata == {"redelivered_events_dropped": 2}
    aside = redelivered_name("raw_events")
    assert sorted(r[0] for r in con.execute(f"SELECT event_type FROM {aside}").fetchall()) == [
        "AGAIN",
        "CHANGED",
    ]

    # a full reload replays both files: the same events, the same count
    for table in source.tables:
        source.land(con, table, tmp_path / "raw")
    source.replay_incoming(con, lambda _: None, pytest.fail)
    assert source.stage(con, EVENTS).metadata == {"redelivered_events_dropped": 2}
    assert _staged(con)["e2"] == "view"


def test_without_an_event_id_a_repeated_row_is_dropped(tmp_path):
    folder = tmp_path / "source"
    rows = ["c1,2024-01-03 10:00:00,login", "c1,2024-01-03 10:00:00,login"]  # two real events
    (folder).mkdir(parents=True)
    (folder / "log.csv").write_text("\n".join(["cust,at,what", *rows]) + "\n")
    (folder / "source.yaml").write_text(CONFIG.replace("event_id: eid, ", ""))
    source = source_for(load_source(folder / "source.yaml"))
    con = duckdb.connect()
    for table in source.tables:
        source.land(con, table, tmp_path / "raw")
    again = tmp_path / "incoming" / "events" / "again.csv"
    again.parent.mkdir(parents=True)
    again.write_text("cust,at,what\nc1,2024-01-03 10:00:00,login\nc2,2024-02-01 08:00:00,view\n")
    assert source.append_incoming(con, again, tmp_path / "landed") == ("events", 1)
    staged = source.stage(con, EVENTS)
    assert staged.result.staged_rows == 3, "identical rows of one file stay two events"
    assert staged.metadata == {"redelivered_events_dropped": 1}
