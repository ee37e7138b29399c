"""Write the two example sources for ``CHURN_SOURCE`` (bring your own data).

    python examples/make_examples.py            # into examples/flat and examples/events
    python examples/make_examples.py --out DIR  # anywhere else (the tests use a temp dir)

* ``flat/``: a telecom-style customer table, ``customers.csv``: an id column, a Yes/No label,
  numbers stored as text (``total_charges`` has blanks for brand-new lines and a few values a
  spreadsheet export mangled, which staging rejects with a reason), and a constant column.
  Invented here from a small latent-risk model; it is not a copy of any public data set.
* ``events/``: five tables from the embedded generator (``churn.synthetic``), with the column
  names a different system would use (``cust_no``, ``ts``, ...), mapped back by the YAML.
* ``streaming/`` and ``purchases/``: raw event logs as they come, for the minimal events source
  (a music-streaming click log in JSON Lines with a users table; a bare purchase log). Made by
  ``event_logs.py`` next to this script, whose docstring describes them.

Every ``source.yaml`` is written next to its data with relative paths.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from event_logs import make_purchases, make_streaming

HERE = Path(__file__).resolve().parent

FLAT_YAML = """\
# A flat customer table: one row per customer, its columns become the features.
shape: flat
name: telecom-example
table: customers.csv
id_column: account_code
label:
  column: Churned
  positive: "Yes"
as_of: 2025-06-01            # the one observation date (default: the current month's first day)
columns:
  categorical: [SeniorCitizen]   # 0/1 flags read better as categories
  ignore: [Notes]
evaluation:
  cv_folds: 5                    # stratified 5-fold CV reported next to the holdout
economics:
  retained_value: {measure: MonthlyCharges, months: 12}   # a year of the customer's own bill
"""

EVENTS_YAML = """\
# Five tables with their own column names, mapped onto the contract (churn/ingest/schema.py).
shape: events
name: subscription-events-example
observation:                 # monthly observation dates (month starts), both ends included
  start: 2024-04-01
  end: 2024-11-01
tables:
  customers:
    path: accounts.csv
    columns: {customer_id: cust_no, signup_date: joined_on, region: sales_region,
              plan: tier, monthly_fee: price, contract: commitment, payment_method: pays_by,
              age: holder_age, acquisition_channel: channel}
  events:
    path: activity.parquet
    columns: {event_id: id, customer_id: cust_no, session_id: session, event_time: ts,
              event_type: action, duration_seconds: seconds}
  payments:
    path: billing.parquet
    columns: {payment_id: id, customer_id: cust_no, payment_date: billed_on, amount: total,
              status: outcome, payment_method: method, attempt: try}
  tickets:
    path: support.csv
    columns: {ticket_id: id, customer_id: cust_no, created_at: opened, category: topic,
              priority: urgency}
  cancellations:
    path: churned_accounts.csv
    columns: {customer_id: cust_no, cancel_date: ended_on, churn_type: kind, reason: why}
"""

EVENTS_FILES = {
    "customers": "accounts.csv",
    "events": "activity.parquet",
    "payments": "billing.parquet",
    "tickets": "support.csv",
    "cancellations": "churned_accounts.csv",
}


def make_flat(folder: Path, customers: int = 2_000, seed: int = 11) -> Path:
    """A telecom-style table whose churn follows contract, tenure, price and support calls."""
    rng = np.random.default_rng(seed)
    n = customers
    contract = rng.choice(["Monthly", "1 year", "2 years"], n, p=[0.55, 0.25, 0.2])
    internet = rng.choice(["Fibre", "Cable", "None"], n, p=[0.45, 0.4, 0.15])
    tenure = np.where(
        contract == "Monthly", rng.geometric(1 / 14, n), rng.geometric(1 / 36, n)
    ).clip(0, 84)
    tenure[rng.random(n) < 0.02] = 0  # brand-new lines: no bill yet
    monthly = np.round(
        18 + 30 * (internet == "Fibre") + 18 * (internet == "Cable") + rng.gamma(2, 8, n), 2
    )
    calls = rng.poisson(0.6 + 1.2 * (internet == "Fibre"), n)
    senior = (rng.random(n) < 0.17).astype(int)
    paperless = rng.choice(["Yes", "No"], n, p=[0.6, 0.4])
    payment = rng.choice(["Direct debit", "Card", "Invoice", "Voucher"], n)
    logit = (
        -1.2
        + 1.4 * (contract == "Monthly")
        - 0.9 * (contract == "2 years")
        - 0.035 * tenure
        + 0.018 * (monthly - 50)
        + 0.35 * calls
        + 0.4 * senior
        + 0.5 * (payment == "Voucher")
        + rng.normal(0, 0.6, n)
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    total = np.round(monthly * tenure * rng.uniform(0.95, 1.05, n), 2)
    total_text = np.array([f"{value:.2f}" for value in total], dtype=object)
    total_text[tenure == 0] = " "  # blank, like a spreadsheet export of an empty cell
    mangled = rng.choice(np.flatnonzero(tenure > 0), 12, replace=False)
    total_text[mangled] = rng.choice(["n/a", "#VALUE!", "1.234,50", "--"], mangled.size)
    frame = pd.DataFrame(
        {
            "account_code": [f"TEL-{i:06d}" for i in rng.permutation(n) + 100_000],
            "Gender": rng.choice(["F", "M", "X"], n, p=[0.49, 0.49, 0.02]),
            "SeniorCitizen": senior,
            "HasPartner": rng.choice(["Yes", "No"], n),
            "TenureMonths": tenure,
            "Contract": contract,
            "Internet": internet,
            "PaperlessBilling": paperless,
            "PaymentMethod": payment,
            "MonthlyCharges": [f"{value:.2f}" for value in monthly],
            "TotalCharges": total_text,
            "SupportCalls": calls,
            "Country": "Freedonia",  # constant: dropped by type inference
            "Notes": rng.choice(["", "vip", "moved house", "called twice"], n),
            "Churned": np.where(churned, "Yes", "No"),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "customers.csv", index=False)
    (folder / "source.yaml").write_text(FLAT_YAML)
    return folder


RENAMES = {
    "customers": {
        "customer_id": "cust_no",
        "signup_date": "joined_on",
        "region": "sales_region",
        "plan": "tier",
        "monthly_fee": "price",
        "contract": "commitment",
        "payment_method": "pays_by",
        "age": "holder_age",
        "acquisition_channel": "channel",
    },
    "events": {
        "event_id": "id",
        "customer_id": "cust_no",
        "session_id": "session",
        "event_time": "ts",
        "event_type": "action",
        "duration_seconds": "seconds",
    },
    "payments": {
        "payment_id": "id",
        "customer_id": "cust_no",
        "payment_date": "billed_on",
        "amount": "total",
        "status": "outcome",
        "payment_method": "method",
        "attempt": "try",
    },
    "tickets": {
        "ticket_id": "id",
        "customer_id": "cust_no",
        "created_at": "opened",
        "category": "topic",
        "priority": "urgency",
    },
    "cancellations": {
        "customer_id": "cust_no",
        "cancel_date": "ended_on",
        "churn_type": "kind",
        "reason": "why",
    },
}


def make_events(folder: Path, customers: int = 1_500, seed: int = 5) -> Path:
    """The generator's tables, renamed as another system would name them."""
    from churn.synthetic import GeneratorConfig, generate

    config = GeneratorConfig(customers=customers, months=10, seed=seed, start_date=date(2024, 1, 1))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        raw, truth = Path(scratch) / "raw", Path(scratch) / "truth"
        generate(config, raw, truth, progress=_progress("events example"))
        for table, file_name in EVENTS_FILES.items():
            frame = pd.read_parquet(raw / f"{table}.parquet").rename(columns=RENAMES[table])
            target = folder / file_name
            if target.suffix == ".csv":
                frame.to_csv(target, index=False)
            else:
                frame.to_parquet(target, index=False)
    (folder / "source.yaml").write_text(EVENTS_YAML)
    return folder


def _progress(label: str):
    shown = [-1]

    def show(stage: str, fraction: float) -> None:
        step = int(fraction * 10)
        if step != shown[0]:
            shown[0] = step
            print(f"  {label}: {stage} {fraction:.0%}", file=sys.stderr, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="root folder (default: examples/)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    flat = make_flat(args.out / "flat")
    events = make_events(args.out / "events")
    streaming = make_streaming(args.out / "streaming")
    purchases = make_purchases(args.out / "purchases")
    for folder in (flat, events, streaming, purchases):
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"wrote {folder} ({size:.1f} MB): CHURN_SOURCE={folder / 'source.yaml'}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    if args.out != HERE:
        shutil.copy2(__file__, args.out / "make_examples.py")
        shutil.copy2(HERE / "event_logs.py", args.out / "event_logs.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
