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


# --- realized quality by scored month --------------------------------------------------------


def _scored_world(con: duckdb.DuckDBPyConnection) -> None:
    """Two scored months by two model versions; March fully labelled, April half, May none."""
    con.execute(
        "CREATE TABLE customer_scores (customer_id VARCHAR, observation_date DATE, "
        "model_version VARCHAR, churn_probability DOUBLE, churn_label INTEGER)"
    )
    con.execute(
        "CREATE TABLE churn_labels (customer_id VARCHAR, observation_date DATE, churned BOOLEAN)"
    )
    rows = []
    for month, version in (("2025-03-01", "v1"), ("2025-04-01", "v2"), ("2025-05-01", "v2")):
        for i in range(8):
            p = (i + 1) / 10  # 0.1 .. 0.8
            rows.append((f"c{i}", month, version, p, int(p >= 0.5)))
    con.executemany("INSERT INTO customer_scores VALUES (?, ?, ?, ?, ?)", rows)
    labels = [(f"c{i}", "2025-03-01", i >= 4) for i in range(8)]  # churners: p 0.5 .. 0.8
    labels += [(f"c{i}", "2025-04-01", i in (1, 3) if i < 4 else None) for i in range(8)]
    labels += [(f"c{i}", "2025-05-01", None) for i in range(8)]
    con.executemany("INSERT INTO churn_labels VALUES (?, ?, ?)", labels)


def test_realized_quality_has_one_row_per_matured_month_and_version() -> None:
    from churn.monitoring.performance import stored_scores_realized

    con = duckdb.connect()
    _scored_world(con)
    months = stored_scores_realized(con, {"v1": 0.45, "v2": 0.35}.get)
    assert [(m.observation_date, m.model_version) for m in months] == [
        ("2025-03-01", "v1"),
        ("2025-04-01", "v2"),
    ]  # May has no matured label yet
    march, april = months
    assert (march.scored_rows, march.rows, march.share_labelled) == (8, 8, 1.0)
    assert march.roc_auc == 1.0 and march.threshold == 0.45
    assert march.precision_at_threshold == 1.0 and march.recall_at_threshold == 1.0
    assert (april.scored_rows, april.rows, april.share_labelled) == (8, 4, 0.5)
    # April's labelled rows: p 0.1 .. 0.4, churners at 0.2 and 0.4; v2 contacts p >= 0.35.
    assert april.contacted == 1 and april.precision_at_threshold == 1.0
    assert april.recall_at_threshold == 0.5
    assert april.to_dict()["share_labelled"] == 0.5


def test_without_a_card_threshold_the_stored_decision_is_used() -> None:
    from churn.monitoring.performance import stored_scores_realized

    con = duckdb.connect()
    _scored_world(con)
    march = stored_scores_realized(con)[0]
    assert march.threshold is None and march.contacted == 4  # churn_label = p >= 0.5


def test_model_performance_reports_each_matured_month_with_its_model_version(materialized):
    from tests.test_models import materialization

    metadata = materialization(materialized, "model_performance").metadata
    results = metadata["customer_scores_realized_results"].value
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        expected = con.execute(
            """
            SELECT CAST(s.observation_date AS VARCHAR), s.model_version, count(*),
                   count(l.churned)
            FROM customer_scores s LEFT JOIN churn_labels l USING (customer_id, observation_date)
            GROUP BY ALL HAVING count(l.churned) > 0 ORDER BY 1, 2
            """
        ).fetchall()
    assert [(r["observation_date"], r["model_version"]) for r in results] == [
        (day, version) for day, version, _, _ in expected
    ]
    assert len({r["observation_date"] for r in results}) == len(results)  # one scorer a month
    for result, (_, _, scored, labelled) in zip(results, expected, strict=True):
        assert result["scored_rows"] == scored and result["rows"] == labelled
        assert result["share_labelled"] == labelled / scored
        assert result["threshold"] is not None
        assert result["recall_at_threshold"] is None or 0 <= result["recall_at_threshold"] <= 1
    table = metadata["customer_scores_realized"]
    assert {"model_version", "share_labelled", "precision_at_threshold"} <= {
        column.name for column in table.schema.columns
    }
    png = Path(metadata["realized_by_month_png"].value)
    assert png.read_bytes().startswith(b"\x89PNG")
    assert png.parent.name == "model_performance" and png.parent.parent.name == "reports"
    assert "data:image/png;base64," in metadata["plot_customer_scores_realized"].value


def test_a_file_name_with_quotes_or_glob_characters_reads_only_itself(tmp_path: Path) -> None:
    """The path is quoted with glob characters escaped and the name is bound: a log named
    ``o'[1]*.jsonl`` loads its own rows once, not every file the glob would match."""
    logs = tmp_path / "prediction_logs"
    _write(logs / "2025-09-02" / "o'[1]*.jsonl", [_record(1)])
    _write(logs / "2025-09-02" / "o1x.jsonl", [_record(i) for i in range(2, 5)])
    con = duckdb.connect()
    summary = ingest_logs(con, logs)
    assert sorted(summary.files_loaded) == ["2025-09-02/o'[1]*.jsonl", "2025-09-02/o1x.jsonl"]
    assert summary.rows_loaded == 4 and not summary.failed
    sources = dict(
        con.execute(
            f"SELECT _source_file, count(*) FROM {LOG_TABLE} GROUP BY ALL ORDER BY 1"
        ).fetchall()
    )
    assert sources == {"2025-09-02/o'[1]*.jsonl": 1, "2025-09-02/o1x.jsonl": 3}
