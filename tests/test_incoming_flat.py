"""A flat table grows through ``incoming/customers/`` (issue 24, item 2: the flat part).

Each new file is the customer table as of one date: the date in its name, else the month it
lands in. It lands exactly once, a second file for a month already staged replaces that month's
snapshot, a full reload replays every snapshot at the date it was given, and a file whose
columns are not the table's, or whose date the calendar cannot hold, is quarantined.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from churn.ingest.flat_snapshots import SNAPSHOT_FILES, date_in_name
from churn.ingest.incoming import LANDED_TABLE
from churn.ingest.landing import SourceFileError
from churn.ingest.schema import CUSTOMERS
from churn.settings import load_settings, today
from churn.sources.config import load_source
from churn.sources.registry import source_for
from churn_assets.definitions import defs
from churn_assets.defs.features.sensors import new_month_sensor
from churn_assets.defs.raw.sensors import incoming_files_sensor
from churn_assets.partitions import PARTITION_RANGE_END_TAG, calendar_keys
from tests.byod_support import REPO
from tests.graph import LAND, materialize_graph, own_bentoml_store

FLAT_EXAMPLE = REPO / "examples" / "flat"


def _flat_source(folder: Path, as_of: str | None) -> Path:
    """The flat example, with ``as_of`` or without (then: the month it lands in)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(FLAT_EXAMPLE / "customers.csv", folder / "customers.csv")
    lines = (FLAT_EXAMPLE / "source.yaml").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("as_of:")]
    if as_of is not None:
        kept.append(f"as_of: {as_of}")
    path = folder / "source.yaml"
    path.write_text("\n".join(kept) + "\n")
    return path


def _table(source: Path) -> pd.DataFrame:
    return pd.read_csv(source.parent / "customers.csv", dtype=str, keep_default_na=False)


def _next_month(table: pd.DataFrame) -> pd.DataFrame:
    """The same customers a month on: a month more tenure, the same columns."""
    return table.assign(TenureMonths=(table["TenureMonths"].astype(int) + 1).astype(str))


def _write(table: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    old = time.time() - 60  # settled: not a file still being copied
    os.utime(path, (old, old))
    return path


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_dates_in_file_names():
    assert date_in_name("customers_2026-12-01.csv") == date(2026, 12, 1)
    assert date_in_name("3f2a9c1b7d0e_customers_2026-12.csv") == date(2026, 12, 1)
    assert date_in_name("customers_2026-12-17.parquet") == date(2026, 12, 1)
    assert date_in_name("customers_2026-13.csv") is None
    assert date_in_name("customers_latest.csv") is None


def test_a_second_file_for_a_staged_month_replaces_that_snapshot(tmp_path, monkeypatch):
    config = _flat_source(tmp_path / "source", "2026-11-01")
    monkeypatch.setenv("CHURN_TODAY", "2026-12-03")
    source = source_for(load_source(config))
    table = _table(config)
    con = duckdb.connect()
    source.land(con, CUSTOMERS, tmp_path / "raw")
    landed = tmp_path / "landed"

    first = _write(
        _next_month(table), tmp_path / "incoming" / "customers" / "customers_2026-12.csv"
    )
    assert source.append_incoming(con, first, landed) == ("customers", len(table))
    again = _write(_next_month(table), tmp_path / "incoming" / "customers" / "dec_copy.csv")
    assert source.append_incoming(con, again, landed) is None, "the same content lands once"
    fixed = _write(
        table.head(100), tmp_path / "incoming" / "customers" / "customers_2026-12-01.csv"
    )
    assert source.append_incoming(con, fixed, landed) == ("customers", 100)
    undated = _write(table.head(50), tmp_path / "incoming" / "customers" / "latest.csv")
    monkeypatch.setenv("CHURN_TODAY", "2027-01-04")
    assert source.append_incoming(con, undated, landed) == ("customers", 50)

    staged = source.stage(con, CUSTOMERS)
    by_date = dict(
        _rows(con, "SELECT observation_date, count(*) FROM stg_customers GROUP BY 1 ORDER BY 1")
    )
    rejected = staged.result.rejected_rows
    assert by_date[date(2026, 12, 1)] == 100, "the newer December file replaced the older one"
    assert by_date[date(2027, 1, 1)] == 50, "no date in the name: the month it landed in"
    assert sum(by_date.values()) + rejected <= len(table) + 150
    assert staged.metadata["snapshot_dates"] == ["2026-11-01", "2026-12-01", "2027-01-01"]
    [replacement] = staged.metadata["replaced_snapshots"]
    assert replacement["snapshot_date"] == "2026-12-01"
    assert replacement["kept"].endswith("customers_2026-12-01.csv")
    assert replacement["replaced"][0].endswith("customers_2026-12.csv")
    assert source.calendar(con, load_settings(), today()) == (date(2026, 11, 1), date(2027, 1, 1))

    # a full reload replays every snapshot at the date it was given, on another day
    monkeypatch.setenv("CHURN_TODAY", "2027-02-09")
    source.land(con, CUSTOMERS, tmp_path / "raw")
    source.replay_incoming(con, lambda _: None, pytest.fail)
    source.stage(con, CUSTOMERS)
    assert (
        dict(
            _rows(con, "SELECT observation_date, count(*) FROM stg_customers GROUP BY 1 ORDER BY 1")
        )
        == by_date
    )
    assert _rows(con, f"SELECT count(*) FROM {LANDED_TABLE}") == [(3,)]
    assert _rows(con, f"SELECT count(*) FROM {SNAPSHOT_FILES}") == [(3,)]


def test_a_snapshot_that_cannot_land_names_the_reason(tmp_path, monkeypatch):
    config = _flat_source(tmp_path / "source", "2026-11-01")
    monkeypatch.setenv("CHURN_TODAY", "2026-12-03")
    source = source_for(load_source(config))
    table = _table(config)
    inbox = tmp_path / "incoming" / "customers"
    cases = {
        "extra.csv": (table.assign(Surprise="x"), r"'Surprise' are not columns of customers\.csv"),
        "nolabel.csv": (table.drop(columns=["Churned"]), r"missing column.*'Churned' \(label"),
        "twice.csv": (pd.concat([table.head(2), table.head(1)]), "more than once"),
        "customers_2027-01.csv": (table, r"2027-01-01 is after the month in progress"),
    }
    for name, (frame, reason) in cases.items():
        with pytest.raises(SourceFileError, match=reason):
            source.validate_incoming(_write(frame, inbox / name))
    events = _write(table.head(3), tmp_path / "incoming" / "events" / "e.csv")
    with pytest.raises(SourceFileError, match="new snapshots of its customer table only"):
        source.validate_incoming(events)


def test_a_flat_table_grows_a_month_through_the_incoming_sensor_and_is_scored(
    tmp_path, monkeypatch
):
    """The real graph in process: November is landed, trained and scored; in December a new
    export lands through the sensor's run, December joins the calendar, ``new_month_sensor``
    asks for it and it is scored, while November's labels stay known."""
    source = _flat_source(tmp_path / "source", None)
    home = tmp_path / "home"
    monkeypatch.setenv("CHURN_SOURCE", str(source))
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.setenv("CHURN_TODAY", "2026-11-10")
    table = _table(source)
    with own_bentoml_store(home / "bentoml"), dg.instance_for_test() as instance:
        assert materialize_graph(home, "*", instance=instance).result.success
        assert calendar_keys(instance) == ["2026-11-01"]

        monkeypatch.setenv("CHURN_TODAY", "2026-12-03")
        inbox = home / "incoming" / "customers"
        good = _write(_next_month(table), inbox / "customers_2026-12.csv")
        bad = _write(table.assign(Surprise="x"), inbox / "customers_2026-12-02.csv")
        future = _write(table, home / "incoming" / "customers_2027-01.csv")
        partial = inbox / "customers_2026-12-05.csv.part"
        partial.write_text("account_code\n")

        request = incoming_files_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(request, dg.RunRequest)
        assert request.run_config["ops"]["raw_tables"]["config"]["incoming_files"] == [str(good)]
        quarantine = home / "quarantine"
        reason = (quarantine / f"{bad.name}.reason.txt").read_text()
        assert "'Surprise' are not columns of customers.csv" in reason
        reason = (quarantine / f"{future.name}.reason.txt").read_text()
        assert "after the month in progress" in reason
        assert partial.exists(), "a half-written file waits"

        run = materialize_graph(home, LAND, instance=instance, run_config=request.run_config)
        assert run.result.success
        assert not good.exists()
        assert calendar_keys(instance) == ["2026-11-01", "2026-12-01"]
        staged = run.result.asset_materializations_for_node("stage_customers")[0].metadata
        assert staged["snapshot_dates"].value == ["2026-11-01", "2026-12-01"]

        # the same file dropped again is not landed twice
        _write(_next_month(table), inbox / "december_again.csv")
        skipped = incoming_files_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(skipped, dg.SkipReason)
        assert "already ingested" in (quarantine / "december_again.csv.reason.txt").read_text()

        month = new_month_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert isinstance(month, dg.RunRequest)
        assert month.tags[PARTITION_RANGE_END_TAG] == "2026-12-01"
        scored = materialize_graph(
            home,
            "customer_snapshots,customer_features,churn_labels,customer_scores",
            instance=instance,
            first="2026-12-01",
            last="2026-12-01",
        )
        assert scored.result.success
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        scores = dict(
            _rows(con, "SELECT observation_date, count(*) FROM customer_scores GROUP BY 1")
        )
        assert set(scores) == {date(2026, 11, 1), date(2026, 12, 1)}
        assert scores[date(2026, 12, 1)] > 0
        labels = _rows(
            con,
            "SELECT observation_date, count(*), count(churned) FROM churn_labels "
            "GROUP BY 1 ORDER BY 1",
        )
        assert [row[0] for row in labels] == [date(2026, 11, 1), date(2026, 12, 1)]
        assert all(total == known for _, total, known in labels), "labels are known"
