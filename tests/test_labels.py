"""Snapshot membership and the label definition on a hand-made history."""

from pathlib import Path

import dagster as dg
import duckdb

from tests.graph import materialize_graph

CUSTOMERS = """customer_id,signup_date,region,plan,monthly_fee,contract,payment_method,age,acquisition_channel
A,2024-06-01,north,basic,10,monthly,card,30,organic
B,2024-06-01,north,basic,10,monthly,card,30,organic
C,2024-06-01,north,basic,10,monthly,card,30,organic
D,2024-06-01,south,premium,35,annual,paypal,52,referral
E,2025-04-01,east,standard,20,monthly,invoice,41,social
"""
CANCELLATIONS = """customer_id,cancel_date,churn_type,reason
A,2025-04-15,voluntary,price
B,2025-05-01,involuntary,payment_failed
C,2025-05-02,voluntary,not_using
"""
EVENTS = """event_id,customer_id,session_id,event_time,event_type,duration_seconds
e1,D,s1,2025-03-31 23:59:59,login,10
e2,D,s2,2025-08-01 00:00:00,login,10
e3,E,s3,2025-07-31 12:00:00,login,10
"""
PAYMENTS = "payment_id,customer_id,payment_date,amount,status,payment_method,attempt\n"
TICKETS = "ticket_id,customer_id,created_at,category,priority\n"


def write_history(home: Path) -> None:
    raw = home / "raw"
    raw.mkdir(parents=True)
    for name, text in {
        "customers": CUSTOMERS,
        "cancellations": CANCELLATIONS,
        "events": EVENTS,
        "payments": PAYMENTS,
        "tickets": TICKETS,
    }.items():
        (raw / f"{name}.csv").write_text(text)


def test_labels_follow_the_horizon_and_maturity(tmp_path: Path):
    write_history(tmp_path)
    run = materialize_graph(
        tmp_path,
        dg.AssetSelection.groups("raw", "staging")
        | dg.AssetSelection.assets("customer_snapshots", "churn_labels"),
        first="2025-04-01",
        last="2025-08-01",
    )
    assert run.result.success
    with duckdb.connect(str(run.warehouse), read_only=True) as con:
        labels = {
            (customer, str(day)): churned
            for customer, day, churned in con.execute(
                "SELECT customer_id, observation_date, churned FROM churn_labels"
            ).fetchall()
        }
    # Data ends 2025-08-01 (last event that day): T + 30 days must be <= 2025-08-02.
    assert labels == {
        ("A", "2025-04-01"): True,  # left 04-15, within 30 days
        ("B", "2025-04-01"): True,  # left 05-01 = T + 30: inside the horizon
        ("C", "2025-04-01"): False,  # left 05-02: one day too late for T = 04-01 ...
        ("C", "2025-05-01"): True,  # ... but churns for T = 05-01
        ("D", "2025-04-01"): False,
        ("D", "2025-05-01"): False,
        ("D", "2025-06-01"): False,
        ("D", "2025-07-01"): False,
        ("D", "2025-08-01"): None,  # horizon runs past the data: unlabeled, to be scored
        ("E", "2025-05-01"): False,  # signed up 04-01: not observed at 04-01
        ("E", "2025-06-01"): False,
        ("E", "2025-07-01"): False,
        ("E", "2025-08-01"): None,
    }
