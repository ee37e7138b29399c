"""No silent gaps (:mod:`churn.scoring.unscored`) on a small real DuckDB warehouse."""

from __future__ import annotations

from datetime import date

import duckdb

from churn.scoring.export import export_scores
from churn.scoring.unscored import counts, unscored

DAY = date(2025, 3, 1)


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_customers AS SELECT * FROM (VALUES ('c1', DATE '2024-01-01'), "
        "('c2', DATE '2024-01-01'), ('c3', DATE '2024-06-01'), ('c4', DATE '2025-05-01'), "
        "('c6', DATE '2024-01-01'), ('c7', DATE '2024-01-01'), ('c8', DATE '2024-01-01')) "
        "t(customer_id, signup_date)"
    )
    con.execute(
        "CREATE TABLE stg_customers_rejects AS SELECT * FROM (VALUES "
        "('c5', 'out_of_range: age=7 is below 16'), (NULL, 'missing: customer_id is empty')) "
        "t(customer_id, reject_reason)"
    )
    con.execute(
        "CREATE TABLE stg_cancellations AS SELECT * FROM (VALUES ('c2', DATE '2025-01-15'), "
        "('c6', DATE '2025-02-10')) t(customer_id, cancel_date)"
    )
    con.execute(
        "CREATE TABLE customer_scores AS SELECT * FROM (VALUES ('c1', DATE '2025-03-01', 0.1), "
        "('c6', DATE '2025-02-01', 0.4), ('c7', DATE '2025-02-01', 0.2), "
        "('c8', DATE '2025-01-01', 0.3)) t(customer_id, observation_date, churn_probability)"
    )
    return con


def test_every_known_customer_without_a_score_has_its_reason():
    with _warehouse() as con:
        table = unscored(con, DAY).to_pylist()
    by_id = {row["customer_id"]: row for row in table}
    # c1 scored; c4 signed up after the date; c2 cancelled in January and c8 dropped out in
    # February: both were listed in February's file, not again.
    assert set(by_id) == {"c3", "c5", "c6", "c7", None}
    assert by_id["c5"]["reason_kind"] == "rejected"
    assert by_id["c5"]["reason"] == "rejected at staging: out_of_range: age=7 is below 16"
    assert by_id[None]["reason_kind"] == "rejected"
    assert by_id["c6"]["reason_kind"] == "cancelled" and "2025-02-10" in by_id["c6"]["reason"]
    assert by_id["c3"]["reason_kind"] == "not_observed"  # never scored at all
    assert by_id["c7"]["reason_kind"] == "not_observed"  # scored last month, not now
    assert all(row["observation_date"] == DAY for row in table)


def test_the_unscored_file_is_written_with_the_export(tmp_path):
    with _warehouse() as con:
        missing = unscored(con, DAY)
        exported = export_scores(con, tmp_path, DAY, unscored=missing)
    path = tmp_path / "customer_scores_unscored_2025-03-01.csv"
    assert exported.files["unscored_csv"] == path and exported.unscored_rows == 5
    text = path.read_text()
    assert "c5" in text and "out_of_range" in text
    assert counts(missing) == {"rejected": 2, "cancelled": 1, "not_observed": 2}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_warehouse_without_staged_customers_lists_nobody():
    with duckdb.connect() as con:
        con.execute("CREATE TABLE customer_scores (customer_id VARCHAR, observation_date DATE)")
        assert unscored(con, DAY).num_rows == 0
