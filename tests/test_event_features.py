"""The generated event-feature family on hand-made histories in an in-memory DuckDB.

These run the real SQL of :mod:`churn.features.events` over Arrow-typed tables like the ones
``/score_events`` builds, with a vocabulary of awkward names (quotes, semicolons, slug
collisions) that must neither break the SQL nor collide as feature names.
"""

from __future__ import annotations

import duckdb
import pytest

from churn.features import SourceTables
from churn.features.events import (
    CARD_KEY,
    ChurnDefinition,
    EventFeatureSpec,
    feature_sql,
    features,
    write_vocabulary,
)

ODD = 'it\'s "odd"; DROP TABLE x; --'
SOURCES = SourceTables(snapshots="snaps", customers="cust", events="ev", vocabulary="vocab")


def _spec(**overrides) -> EventFeatureSpec:
    values = {
        "event_types": ("Next Song", ODD, "next-song"),
        "other_types": True,
        "measures": ("amount",),
        "has_sessions": True,
        "profile": (("plan", "categorical", "VARCHAR"), ("events_7d", "numeric", "DOUBLE")),
    }
    return EventFeatureSpec(**(values | overrides))


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE snaps AS SELECT * FROM (VALUES ('a', DATE '2024-03-01'), "
        "('b', DATE '2024-03-01'), ('c', DATE '2024-03-01')) t(customer_id, observation_date)"
    )
    con.execute(
        "CREATE TABLE cust (customer_id VARCHAR, signup_date DATE, plan VARCHAR, events_7d DOUBLE)"
    )
    con.execute("INSERT INTO cust VALUES ('a', DATE '2024-01-01', 'gold', 3.0)")
    con.execute(
        "CREATE TABLE ev (customer_id VARCHAR, event_time TIMESTAMP, event_type VARCHAR, "
        "session_id VARCHAR, amount DOUBLE)"
    )
    con.executemany(
        "INSERT INTO ev VALUES (?, ?, ?, ?, ?)",
        [
            ("a", "2024-02-28 10:00", "Next Song", "s1", 1.5),
            ("a", "2024-02-28 11:00", ODD, "s1", None),
            ("a", "2024-02-10 11:00", "never chosen", "s2", 2.25),
            ("a", "2024-03-10 11:00", "never chosen", "s2", 100.0),  # after T: unseen
            ("b", "2023-12-10 11:00", "next-song", "s3", 1.0),
        ],
    )
    return con


def _rows(con, spec) -> dict[str, dict]:
    write_vocabulary(con, spec, "vocab")
    frame = con.sql(feature_sql(spec, SOURCES)).df()
    names = [f.name for f in features(spec)]
    assert list(frame.columns) == ["customer_id", "observation_date", *names]
    return {row["customer_id"]: row for row in frame.to_dict("records")}


def test_windows_types_measures_and_profile_on_a_hand_made_history(con):
    rows = _rows(con, _spec())
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["days_since_last_event"], a["tenure_days"]) == (2, 60)
    assert (a["events_7d"], a["events_30d"], a["events_90d"]) == (2, 3, 3)
    assert (a["active_days_30d"], a["sessions_30d"]) == (2, 2)
    assert (a["type_next_song_7d"], a["type_it_s_odd_drop_table_x_7d"]) == (1, 1)
    assert (a["type_other_7d"], a["type_other_30d"]) == (0, 1)
    assert a["amount_sum_30d"] == 3.75 and a["amount_mean_30d"] == 1.875
    assert a["plan"] == "gold" and a["profile_events_7d"] == 3.0
    # b: one old event of the third type, no profile row: tenure from the first event.
    assert (b["type_next_song_2_90d"], b["events_30d"], b["tenure_days"]) == (1, 0, 82)
    assert b["plan"] is None and b["events_trend_30d_90d"] == 0.5
    # c: never seen anywhere: zeros, and the mean is missing rather than invented.
    assert (c["events_90d"], c["days_since_last_event"]) == (0, 0)
    assert c["amount_mean_90d"] != c["amount_mean_90d"]  # NaN


def test_event_types_never_reach_the_sql_text():
    sql = feature_sql(_spec(), SOURCES)
    for event_type in _spec().event_types:
        assert event_type not in sql
    assert "DROP TABLE" not in sql


def test_future_rows_do_not_change_features(con):
    before = _rows(con, _spec())
    con.execute("INSERT INTO ev VALUES ('a', TIMESTAMP '2024-03-01 00:00', 'Next Song', 's9', 7)")
    con.execute("INSERT INTO cust VALUES ('c', DATE '2024-03-05', 'new', 1.0)")
    after = _rows(con, _spec())
    assert str(before) == str(after)


def test_spec_round_trips_through_the_card_dict():
    spec = _spec(churn=ChurnDefinition(inactive_days=30, cancellation_event="Cancel"))
    card = {CARD_KEY: spec.to_dict()}
    assert EventFeatureSpec.from_dict(card[CARD_KEY]) == spec
    assert card[CARD_KEY]["churn"]["kind"] == "hybrid"
    assert card[CARD_KEY]["event_type_slugs"] == [
        "next_song",
        "it_s_odd_drop_table_x",
        "next_song_2",
    ]


def test_subscription_family_adds_only_what_it_lacks():
    spec = EventFeatureSpec(
        event_types=("login", "feature_use"),
        measures=("duration_seconds",),
        has_sessions=True,
        subscription_family=True,
    )
    names = [f.name for f in features(spec)]
    assert len(names) == len(set(names))
    assert "logins_30d" in names and "type_login_30d" not in names
    assert "type_login_7d" in names and "type_feature_use_90d" not in names
    assert "sessions_7d" in names and "duration_seconds_sum_30d" in names
