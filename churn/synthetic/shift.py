"""The next month of data with a chosen shift, as files for ``incoming/``.

``python -m churn.synthetic.shift --kind price_rise --region north --out $CHURN_HOME/incoming``

The month after the source's last one is built from its last month: every active customer's
events, payments and tickets move forward one calendar month (new ids), then the shift is applied:

* ``price_rise``: the region's monthly fee rises by ``--pct`` (an updated customers file; staging
  keeps the newest profile) and its new payments charge the new fee;
* ``payment_failure``: every payment with ``--method`` fails (a broken payment provider);
* ``usage_drop``: the region loses ``--pct`` of its product events (an outage).

As many customers cancel as in the last month, the least engaged first, so the month before the
new one keeps a plausible label rate once it matures (cancellations are written for every kind).

Files are written as ``<table>_<YYYY-MM>_<kind>.parquet`` (``*.part`` first, then renamed, so the
sensor never sees a half-written file). Partitions: the new month's observation date joins the
calendar when the files land (staging writes it into the Dagster instance; no restart).

Run it again and it writes the month after *that*: months written before, still waiting in
``incoming/`` or already archived in ``landed/``, count as history (their newest customer
profiles too). Copying the same month twice would only give rows whose ids staging already
holds, silently deduplicated away.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb

from churn.ingest.schema import REGIONS

KINDS = ("price_rise", "payment_failure", "usage_drop")


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _source(raw_dir: Path, name: str) -> str:
    parquet, csv = raw_dir / f"{name}.parquet", raw_dir / f"{name}.csv"
    if parquet.exists():
        return f"read_parquet({_q(parquet)})"
    return f"read_csv({_q(csv)}, header = true)"


def shifted_files(table: str, folders: Sequence[Path]) -> list[Path]:
    """Files this module wrote for ``table``, in ``incoming/`` (``<table>_<YYYY-MM>_<kind>``) or
    archived by the sensor in ``landed/`` (``<hash>_<table>_<YYYY-MM>_<kind>``), oldest month
    first."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += folder.glob(f"{table}_????-??_*.parquet")
            found += folder.glob(f"*_{table}_????-??_*.parquet")
    return sorted(set(found), key=lambda path: (_month_of(path, table), path.name))


def _month_of(path: Path, table: str) -> str:
    return path.name.split(f"{table}_", 1)[1][:7]


def _history(con, raw_dir: Path, name: str, shifted: list[Path]) -> None:
    """``src_<name>``: the source file and the months shifted before it, with an ``_order``
    column (0 for the source, then by month) so the newest customer profile can win."""
    parts = [f"SELECT *, 0 AS _order FROM {_source(raw_dir, name)}"]
    parts += [
        f"SELECT *, {i} AS _order FROM read_parquet({_q(path)})"
        for i, path in enumerate(shifted, start=1)
    ]
    con.execute(f"CREATE VIEW src_{name}_all AS {' UNION ALL BY NAME '.join(parts)}")
    if name == "customers":
        con.execute(
            "CREATE VIEW src_customers AS SELECT * EXCLUDE (_order) FROM src_customers_all "
            "QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY _order DESC) = 1"
        )
    else:
        con.execute(f"CREATE VIEW src_{name} AS SELECT * EXCLUDE (_order) FROM src_{name}_all")


def next_month(
    raw_dir: Path,
    out_dir: Path,
    kind: str,
    *,
    region: str = "north",
    method: str = "card",
    pct: float = 30.0,
    history: Sequence[Path] | None = None,
) -> list[Path]:
    """Write the shifted next month into ``out_dir``; return the files written.

    ``history``: folders holding months written before (default: ``out_dir`` and the
    ``landed/`` folder next to ``raw_dir``, i.e. ``$CHURN_HOME/landed``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    folders = [out_dir, raw_dir.parent / "landed"] if history is None else list(history)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    for name in ("customers", "events", "payments", "tickets", "cancellations"):
        _history(con, raw_dir, name, shifted_files(name, folders))
    end = con.execute(
        "SELECT CAST(date_trunc('month', greatest((SELECT max(CAST(event_time AS TIMESTAMP)) "
        "FROM src_events), (SELECT max(CAST(payment_date AS TIMESTAMP)) FROM src_payments))) "
        "+ INTERVAL 1 MONTH AS DATE)"
    ).fetchone()[0]
    start = con.execute("SELECT CAST(? AS DATE) - INTERVAL 1 MONTH", [end]).fetchone()[0]
    month = f"{end:%Y-%m}"
    params = {
        "start": start,
        "end": end,
        "month": month,
        "kind": kind,
        "region": region,
        "method": method,
        "factor": 1 + pct / 100,
        "pct": int(pct),
    }
    con.execute(
        """CREATE TEMP TABLE active AS SELECT c.* FROM src_customers c
        LEFT JOIN src_cancellations x USING (customer_id)
        WHERE x.customer_id IS NULL OR CAST(x.cancel_date AS DATE) >= $end""",
        {"end": end},
    )
    for table, sql in _shifted_month_sql().items():
        used = {name: value for name, value in params.items() if f"${name}" in sql}
        con.execute(f"CREATE TEMP TABLE new_{table} AS {sql}", used)
    for table, time_column in (
        ("events", "event_time"),
        ("payments", "payment_date"),
        ("tickets", "created_at"),
    ):  # nothing happens after a customer's cancel date
        con.execute(
            f"DELETE FROM new_{table} t USING new_cancellations x WHERE "
            f"t.customer_id = x.customer_id AND CAST(t.{time_column} AS DATE) >= x.cancel_date"
        )
    tables = ["events", "payments", "tickets", "cancellations"]
    if kind == "price_rise":
        tables.insert(0, "customers")
    written = []
    for table in tables:
        final = out_dir / f"{table}_{month}_{kind}.parquet"
        partial = final.with_name(final.name + ".part")
        con.execute(f"COPY (SELECT * FROM new_{table}) TO {_q(partial)} (FORMAT parquet)")
        partial.rename(final)
        written.append(final)
    con.close()
    return written


def _shifted_month_sql() -> dict[str, str]:
    """The new month's tables, in creation order, over ``active`` and the ``src_*`` views.

    Values arrive as bound parameters (``$region``, ``$pct``...), never spliced into the SQL.
    Cancellations: as many as the last month had, among the active customers least engaged in
    the new month (the generator's churn hazard is driven by engagement decay), so the month
    before keeps a plausible label rate once it matures; their activity stops at the cancel
    date."""
    return {
        "events": """
            SELECT e.event_id || '_' || $month AS event_id, e.customer_id,
                e.session_id || '_' || $month AS session_id,
                CAST(e.event_time AS TIMESTAMP) + INTERVAL 1 MONTH AS event_time,
                e.event_type, e.duration_seconds
            FROM src_events e JOIN active c USING (customer_id)
            WHERE CAST(e.event_time AS TIMESTAMP) >= $start
                AND NOT ($kind = 'usage_drop' AND c.region = $region
                         AND hash(e.event_id) % 100 < $pct)""",
        "payments": """
            SELECT p.payment_id || '_' || $month AS payment_id, p.customer_id,
                CAST(CAST(p.payment_date AS DATE) + INTERVAL 1 MONTH AS DATE) AS payment_date,
                CASE WHEN $kind = 'price_rise' AND c.region = $region
                    THEN round(p.amount * $factor, 2) ELSE p.amount END AS amount,
                CASE WHEN $kind = 'payment_failure' AND p.payment_method = $method
                    THEN 'failed' ELSE p.status END AS status,
                p.payment_method, p.attempt
            FROM src_payments p JOIN active c USING (customer_id)
            WHERE CAST(p.payment_date AS DATE) >= $start""",
        "tickets": """
            SELECT t.ticket_id || '_' || $month AS ticket_id, t.customer_id,
                CAST(t.created_at AS TIMESTAMP) + INTERVAL 1 MONTH AS created_at,
                t.category, t.priority
            FROM src_tickets t JOIN active c USING (customer_id)
            WHERE CAST(t.created_at AS TIMESTAMP) >= $start""",
        "cancellations": """
            WITH engagement AS (
                SELECT c.customer_id, count(e.event_id) AS events
                FROM active c LEFT JOIN new_events e USING (customer_id)
                GROUP BY c.customer_id
            )
            SELECT customer_id,
                CAST($end + to_days(CAST(hash(customer_id || $month) % 28 AS INTEGER)) AS DATE)
                    AS cancel_date,
                CASE WHEN $kind = 'payment_failure' THEN 'involuntary' ELSE 'voluntary' END
                    AS churn_type,
                CASE $kind WHEN 'price_rise' THEN 'price'
                    WHEN 'payment_failure' THEN 'payment_failed' ELSE 'not_using' END AS reason
            FROM engagement
            ORDER BY events, hash(customer_id || $month)
            LIMIT (SELECT count(*) FROM src_cancellations
                   WHERE CAST(cancel_date AS DATE) >= $start
                       AND CAST(cancel_date AS DATE) < $end)""",
        "customers": """
            SELECT customer_id, signup_date, region, plan,
                round(monthly_fee * $factor, 2) AS monthly_fee, contract, payment_method, age,
                acquisition_channel
            FROM active WHERE region = $region""",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn.synthetic.shift", description=__doc__)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--region", choices=REGIONS, default="north")
    parser.add_argument("--method", default="card", help="payment method for payment_failure")
    parser.add_argument("--pct", type=float, default=30.0, help="size of the shift in percent")
    parser.add_argument("--raw", type=Path, default=None, help="source files (default: raw/)")
    parser.add_argument("--out", type=Path, required=True, help="usually $CHURN_HOME/incoming")
    args = parser.parse_args(argv)
    from churn.settings import load_settings

    settings = load_settings()
    raw_dir = args.raw or settings.raw_dir
    written = next_month(
        raw_dir, args.out, args.kind, region=args.region, method=args.method, pct=args.pct
    )
    for path in written:
        sys.stdout.write(f"{path}\n")
    events = next(path for path in written if path.name.startswith("events_"))
    month = date.fromisoformat(_month_of(events, "events") + "-01")
    sys.stderr.write(calendar_hint(month, settings.synthetic.start_date) + "\n")
    return 0


def calendar_hint(month: date, start: date) -> str:
    """Which observation date sees ``month``: it joins the calendar when the files land (the
    calendar follows the newest landed event; no restart)."""
    observed = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return (
        f"wrote {month:%Y-%m}; the snapshot that sees it is {observed}: it joins the "
        "observation calendar when these files land from incoming/ (no restart needed)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
