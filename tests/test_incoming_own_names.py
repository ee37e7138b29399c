"""``incoming/`` files of a five-table source use the source's own column names (its YAML's
mapping), and may sit in ``incoming/<table>/`` (issue 24, item 2: the five-table part)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from churn.ingest.incoming import (
    LANDED_TABLE,
    append_incoming,
    candidate_files,
    replay_landed,
    table_for,
    validate_file,
)
from churn.ingest.landing import SourceFileError, land_file
from churn.ingest.schema import PAYMENTS
from churn.sources.config import load_source
from churn.sources.registry import source_for

OWN_HEADER = "id,cust_no,billed_on,total,outcome,method,try"
CONTRACT_HEADER = "payment_id,customer_id,payment_date,amount,status,payment_method,attempt"
CONFIG = """\
shape: events
observation: {start: 2024-04-01}
tables:
  customers: {path: accounts.csv, columns: {customer_id: cust_no}}
  events: {path: activity.csv, columns: {customer_id: cust_no, event_time: ts}}
  tickets: {path: support.csv, columns: {customer_id: cust_no}}
  payments:
    path: billing.csv
    columns: {payment_id: id, customer_id: cust_no, payment_date: billed_on, amount: total,
              status: outcome, payment_method: method, attempt: try}
  cancellations: {path: ended.csv, columns: {customer_id: cust_no, cancel_date: ended_on}}
"""


@pytest.fixture
def renames(tmp_path) -> dict[str, dict[str, str]]:
    """A five-table config with its own column names (the README's mapping)."""
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("accounts.csv", "activity.csv", "billing.csv", "support.csv", "ended.csv"):
        (folder / name).write_text("id\n1\n")
    (folder / "source.yaml").write_text(CONFIG)
    source = source_for(load_source(folder / "source.yaml"))
    assert source.kind == "five_table"
    return source.incoming_renames()


def _payments(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_files_in_a_table_folder_belong_to_that_table(tmp_path):
    inbox = tmp_path / "incoming"
    nested = _payments(
        inbox / "payments" / "october.csv", OWN_HEADER, ["p1,c1,2024-10-02,9.5,paid,card,1"]
    )
    flat = _payments(
        inbox / "payments_2024-11.csv", OWN_HEADER, ["p2,c1,2024-11-02,9.5,paid,card,1"]
    )
    (inbox / "payments" / "half.csv.part").write_text("id\n")
    assert candidate_files(inbox) == sorted([nested, flat])
    assert table_for(nested) is PAYMENTS and table_for(flat) is PAYMENTS


def test_a_mapped_source_file_validates_under_its_own_names(tmp_path, renames):
    good = _payments(
        tmp_path / "payments" / "a.csv", OWN_HEADER, ["p1,c1,2024-10-02,9.5,paid,card,1"]
    )
    assert validate_file(good, renames=renames) is PAYMENTS
    contract = _payments(
        tmp_path / "payments" / "b.csv", CONTRACT_HEADER, ["p1,c1,2024-10-02,9.5,paid,card,1"]
    )
    with pytest.raises(SourceFileError, match=r"missing column.*cust_no"):
        validate_file(contract, renames=renames)
    wrong = _payments(
        tmp_path / "payments" / "c.csv", OWN_HEADER, ["p1,c1,yesterday,9.5,paid,card,1"]
    )
    with pytest.raises(SourceFileError, match="billed_on: 1 value"):
        validate_file(wrong, renames=renames)
    twice = _payments(
        tmp_path / "payments" / "d.csv",
        OWN_HEADER,
        ["p1,c1,2024-10-02,9.5,paid,card,1", "p1,c1,2024-10-03,9.5,paid,card,1"],
    )
    with pytest.raises(SourceFileError, match=r"duplicate key value\(s\) in \(id\)"):
        validate_file(twice, renames=renames)


def test_a_mapped_source_file_lands_once_and_replays_under_its_own_names(tmp_path, renames):
    first = _payments(
        tmp_path / "source" / "billing.csv", OWN_HEADER, ["p0,c1,2024-09-02,9.5,paid,card,1"]
    )
    con = duckdb.connect()
    land_file(con, first, PAYMENTS, replace=True, renames=renames["payments"])
    new = _payments(
        tmp_path / "incoming" / "payments" / "oct.csv",
        OWN_HEADER,
        ["p1,c1,2024-10-02,9.5,paid,card,1"],
    )
    copy = tmp_path / "copy.csv"
    copy.write_text(new.read_text())
    assert append_incoming(con, new, tmp_path / "landed", renames) == ("payments", 1)
    assert not new.exists()
    copy.replace(new)  # the same content dropped again: archived, not landed twice
    assert append_incoming(con, new, tmp_path / "landed", renames) is None
    ids = [r[0] for r in con.execute("SELECT payment_id FROM raw_payments ORDER BY 1").fetchall()]
    assert ids == ["p0", "p1"]
    assert con.execute(f"SELECT count(*) FROM {LANDED_TABLE}").fetchone()[0] == 1

    land_file(con, first, PAYMENTS, replace=True, renames=renames["payments"])  # a full reload
    replay_landed(con, lambda _: None, pytest.fail, renames)
    ids = [r[0] for r in con.execute("SELECT payment_id FROM raw_payments ORDER BY 1").fetchall()]
    assert ids == ["p0", "p1"]
