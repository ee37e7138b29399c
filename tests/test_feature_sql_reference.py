"""The feature SQL against a straightforward reference computed in Python, on a random history.

The SQL is written for speed (sessions counted as groups, whole-history figures read from one
running window, the generated family joined to its longest window only); the reference here is
the plain definition of each feature: filter the events before the observation date, count.
A seeded random history has what the shortcuts must get right: several sessions a day, NULL
sessions and durations, events on the observation date and after it, customers with history
older than every window, customers with none, and a customer with no signup date.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import duckdb
import pytest

from churn.features import SourceTables
from churn.features.events import EventFeatureSpec, feature_sql, write_vocabulary

TYPES = ("login", "page_view", "feature_use", "export", "share", "rare")
DATES = (date(2024, 3, 1), date(2024, 6, 1), date(2024, 9, 15))
SOURCES = SourceTables(
    snapshots="snaps",
    customers="cust",
    events="ev",
    payments="pay",
    tickets="tix",
    vocabulary="vocab",
)


def _history(seed: int = 7) -> tuple[list[tuple], list[tuple]]:
    """(customers, events): 40 customers, bursts of events with shared sessions."""
    rng = random.Random(seed)
    customers, events = [], []
    start = date(2023, 6, 1)
    for i in range(40):
        cid = f"c{i}"
        signup = None if i == 3 else start + timedelta(days=rng.randrange(0, 300))
        customers.append((cid, signup, "basic", "monthly", "card", "north", "ads", 9.99, 30))
        if i % 9 == 5:
            continue  # no events at all
        first = (signup or start) + timedelta(days=rng.randrange(0, 40))
        for burst in range(rng.randrange(1, 40)):
            day = first + timedelta(days=rng.randrange(0, 480))
            sessions = [f"{cid}-{burst}-{k}" for k in range(rng.randrange(1, 3))] + [None]
            for _ in range(rng.randrange(1, 6)):
                moment = datetime.combine(day, datetime.min.time()) + timedelta(
                    minutes=rng.randrange(0, 1440)
                )
                duration = None if rng.random() < 0.1 else rng.randrange(0, 900_000) / 1000
                events.append((cid, moment, rng.choice(TYPES), rng.choice(sessions), duration))
    return customers, events


@pytest.fixture(scope="module")
def world() -> SimpleNamespace:
    customers, events = _history()
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE cust (customer_id VARCHAR, signup_date DATE, plan VARCHAR, "
        "contract VARCHAR, payment_method VARCHAR, region VARCHAR, acquisition_channel VARCHAR, "
        "monthly_fee DOUBLE, age INTEGER)"
    )
    con.executemany("INSERT INTO cust VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", customers)
    con.execute(
        "CREATE TABLE ev (customer_id VARCHAR, event_time TIMESTAMP, event_type VARCHAR, "
        "session_id VARCHAR, duration_seconds DOUBLE)"
    )
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?, ?)", events)
    con.execute(
        "CREATE TABLE pay (customer_id VARCHAR, payment_date DATE, amount DOUBLE, status VARCHAR)"
    )
    con.execute(
        "CREATE TABLE tix (customer_id VARCHAR, created_at TIMESTAMP, category VARCHAR, "
        "priority VARCHAR)"
    )
    con.execute(
        "CREATE TABLE snaps AS SELECT customer_id, observation_date FROM cust, "
        "(SELECT unnest([" + ", ".join(f"DATE '{d}'" for d in DATES) + "]) AS observation_date)"
    )
    return SimpleNamespace(con=con, events=events, customers={c[0]: c[1] for c in customers})


def _reference(events: list[tuple], signups: dict) -> dict[tuple[str, date], dict]:
    """Every (customer, T): the figures by their definitions, from the raw events."""
    by_customer = defaultdict(list)
    for row in events:
        by_customer[row[0]].append(row)
    found = {}
    for cid, signup in signups.items():
        for t in DATES:
            before = [e for e in by_customer[cid] if e[1].date() < t]
            days = defaultdict(list)
            for e in before:
                days[e[1].date()].append(e)

            def within(w, days=days, t=t):
                return {d: rows for d, rows in days.items() if (t - d).days <= w}

            def sessions(rows):
                return len({e[3] for e in rows if e[3] is not None})

            row = {}
            for w in (7, 14, 30, 90):
                recent = within(w)
                row[f"events_{w}d"] = sum(len(r) for r in recent.values())
                row[f"active_days_{w}d"] = len(recent)
                row[f"sessions_{w}d"] = sum(sessions(r) for r in recent.values())
                for kind in TYPES:
                    row[f"type_{kind}_{w}d"] = sum(
                        1 for r in recent.values() for e in r if e[2] == kind
                    )
                durations = [
                    round(e[4] * 1000) for r in recent.values() for e in r if e[4] is not None
                ]
                row[f"milli_{w}d"] = sum(durations)
                row[f"measured_{w}d"] = len(durations)
            first = min(days) if days else None
            last = max(days) if days else None
            total = sum(len(r) for r in days.values())
            total_sessions = sum(sessions(r) for r in days.values())
            span = max((t - first).days, 1) if first else None
            row["days_since_last_event"] = (t - (last or signup)).days
            row["lifetime_events_per_day"] = total / span if days else 0.0
            row["lifetime_sessions_per_day"] = total_sessions / span if days else 0.0
            row["first_age"] = (t - first).days if first else None
            found[(cid, t)] = row
    return found


def _table(con, spec: EventFeatureSpec) -> dict[tuple[str, date], dict]:
    write_vocabulary(con, spec, "vocab")
    frame = con.sql(feature_sql(spec, SOURCES)).df()
    return {(r["customer_id"], r["observation_date"].date()): r for r in frame.to_dict("records")}


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


def test_subscription_family_equals_the_reference(world):
    spec = EventFeatureSpec(
        event_types=TYPES[:5],
        other_types=True,
        measures=("duration_seconds",),
        has_sessions=True,
        subscription_family=True,
    )
    got, want = _table(world.con, spec), _reference(world.events, world.customers)
    assert len(got) == len(want) == 40 * len(DATES)
    checked = 0
    for key, row in got.items():
        ref = want[key]
        for w in (7, 14, 30, 90):
            assert row[f"events_{w}d"] == ref[f"events_{w}d"], (key, w)
            assert row[f"active_days_{w}d"] == ref[f"active_days_{w}d"], (key, w)
        assert (row["sessions_30d"], row["sessions_90d"]) == (
            ref["sessions_30d"],
            ref["sessions_90d"],
        ), key
        assert row["sessions_7d"] == ref["sessions_7d"], key  # the generated family's
        for name, kind in (("logins", "login"), ("exports", "export"), ("shares", "share")):
            assert row[f"{name}_30d"] == ref[f"type_{kind}_30d"], (key, name)
        assert row["type_page_view_90d"] == ref["type_page_view_90d"], key
        assert row["type_other_7d"] == ref["type_rare_7d"], key
        for w in (7, 30, 90):
            assert _close(row[f"duration_seconds_sum_{w}d"], ref[f"milli_{w}d"] / 1000.0), key
            mean = (
                ref[f"milli_{w}d"] / 1000.0 / ref[f"measured_{w}d"]
                if ref[f"measured_{w}d"]
                else math.nan
            )
            assert _close(row[f"duration_seconds_mean_{w}d"], mean), (key, w)
        minutes = ref["milli_30d"] / 60000.0 / ref["sessions_30d"] if ref["sessions_30d"] else 0
        assert _close(row["avg_session_minutes_30d"], minutes), key
        if world.customers[key[0]] is not None:
            assert row["days_since_last_event"] == ref["days_since_last_event"], key
        assert _close(row["lifetime_events_per_day"], ref["lifetime_events_per_day"]), key
        assert _close(row["lifetime_sessions_per_day"], ref["lifetime_sessions_per_day"]), key
        checked += 1
    # The history exercises what the shortcuts must get right.
    assert any(r["days_since_last_event"] > 90 for r in want.values())
    assert any(r["sessions_30d"] > 1 and r["active_days_30d"] == 1 for r in want.values())
    assert checked == len(want)


def test_generated_family_alone_equals_the_reference(world):
    spec = EventFeatureSpec(
        event_types=TYPES[:3],
        other_types=True,
        measures=("duration_seconds",),
        has_sessions=True,
    )
    got, want = _table(world.con, spec), _reference(world.events, world.customers)
    for key, row in got.items():
        ref, signup = want[key], world.customers[key[0]]
        if signup is not None and signup >= key[1]:
            signup = None  # the profile joins only when signed up before T
        for w in spec.windows:
            for name in ("events", "active_days", "sessions"):
                assert row[f"{name}_{w}d"] == ref[f"{name}_{w}d"], (key, name, w)
            other = sum(ref[f"type_{kind}_{w}d"] for kind in TYPES[3:])
            assert row[f"type_other_{w}d"] == other, (key, w)
        # Whole history: recency, tenure from the first event without a signup date, rate.
        recency = ref["days_since_last_event"] if ref["first_age"] is not None else None
        expected_recency = (
            recency if recency is not None else ((key[1] - signup).days if signup else 0)
        )
        assert row["days_since_last_event"] == expected_recency, key
        tenure = (key[1] - signup).days if signup else (ref["first_age"] or 0)
        assert row["tenure_days"] == tenure, key
        assert _close(row["lifetime_events_per_day"], ref["lifetime_events_per_day"]), key


def test_a_log_without_sessions_counts_days_alone(world):
    spec = EventFeatureSpec(event_types=TYPES[:2], has_sessions=False)
    got, want = _table(world.con, spec), _reference(world.events, world.customers)
    for key, row in got.items():
        assert row["events_90d"] == want[key]["events_90d"], key
        assert row["active_days_30d"] == want[key]["active_days_30d"], key
        assert "sessions_30d" not in row
