"""Prediction logs are ingested exactly once, and never while half-written."""

import json
from pathlib import Path

import duckdb

from churn.monitoring.logs import FILES_TABLE, LOG_TABLE, ingest_logs, volume_by_version


def _record(i: int, version: str = "v1") -> dict:
    return {
        "request_id": f"r{i}",
        "logged_at": "2025-09-02T10:00:00+00:00",
        "route": "/score",
        "model_version": version,
        "customer_id": f"c{i}",
        "features": {"plan": "basic", "monthly_fee": 10.0 + i},
        "churn_probability": i / 10,
        "churn_label": int(i >= 5),
        "threshold": 0.5,
        "risk_tier": "high" if i >= 7 else "low",
        "observation_date": None,
    }


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_each_closed_file_is_loaded_once_and_open_files_never(tmp_path: Path) -> None:
    logs = tmp_path / "prediction_logs"
    _write(logs / "2025-09-02" / "host-1-100000-00001.jsonl", [_record(i) for i in range(10)])
    half = _write(logs / "2025-09-02" / "host-1-100500-00002.jsonl.open", [_record(99)])
    half.write_text(half.read_text() + '{"request_id": "r100", "logged_')  # torn last line
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    first = ingest_logs(con, logs)
    assert first.rows_loaded == 10 and len(first.files_loaded) == 1
    assert _count(con, LOG_TABLE) == 10

    second = ingest_logs(con, logs)  # same files again: nothing new
    assert second.rows_loaded == 0 and second.files_loaded == []
    assert _count(con, LOG_TABLE) == 10

    # The same content under another name (a copied file) is recognised by its hash.
    copy = logs / "2025-09-03" / "host-1-000000-00001.jsonl"
    copy.parent.mkdir()
    copy.write_bytes((logs / "2025-09-02" / "host-1-100000-00001.jsonl").read_bytes())
    third = ingest_logs(con, logs)
    assert third.skipped_duplicates == ["2025-09-03/host-1-000000-00001.jsonl"]
    assert _count(con, LOG_TABLE) == 10

    # Once the writer closes the file (rename), it is loaded.
    half.write_text(json.dumps(_record(99, "v2")) + "\n")
    half.rename(half.with_name(half.name.removesuffix(".open")))
    fourth = ingest_logs(con, logs)
    assert fourth.rows_loaded == 1
    assert _count(con, FILES_TABLE) == 2
    per_version = {row[0]: row for row in volume_by_version(con)}
    assert per_version["v1"][1] == 10 and per_version["v2"][1] == 1
    assert per_version["v1"][9] == 3  # tiers: three "high" rows (i = 7, 8, 9)


def test_a_corrupt_file_is_reported_and_writes_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "prediction_logs"
    _write(logs / "2025-09-02" / "good.jsonl", [_record(1)])
    bad = logs / "2025-09-02" / "zbad.jsonl"
    bad.write_text('{"request_id": "x", "churn_probability": "not a number"}\n')
    con = duckdb.connect()
    summary = ingest_logs(con, logs)
    assert summary.files_loaded == ["2025-09-02/good.jsonl"]
    assert "2025-09-02/zbad.jsonl" in summary.failed
    assert _count(con, LOG_TABLE) == 1 and _count(con, FILES_TABLE) == 1
