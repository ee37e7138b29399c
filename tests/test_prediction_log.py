"""The prediction log's files: one JSON record per line whatever a customer id contains, no row
lost while the disk fails for a while, and no file stranded when a writer is killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import get_type_hints

import duckdb

from churn.monitoring.logs import LOG_TABLE, ingest_logs
from churn.monitoring.prediction_log import (
    LOG_COLUMNS,
    OPEN_SUFFIX,
    PredictionLogWriter,
    PredictionRecord,
    closed_files,
    recover_orphans,
)


def test_every_record_stays_on_its_own_line(tmp_path: Path):
    records = [
        {"customer_id": "plain", "features": {"plan": "basic", "age": 30}},
        # JSON allows these raw inside strings; str.splitlines() would cut the line at each.
        {"customer_id": "a\u2028b\u2029c\x85d", "features": {"plan": "pro\u00e9", "age": 41}},
        {"customer_id": 'tab\there "quoted" \\ back', "features": {"plan": None, "age": 0.5}},
    ]
    writer = PredictionLogWriter(tmp_path, flush_seconds=60)
    writer.write(records)
    writer.close()
    [published] = list(closed_files(tmp_path))
    lines = published.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records


# --- a bad day: the disk fails, a writer is killed --------------------------------------------


def _records(n: int, prefix: str = "c") -> list[dict]:
    return [
        {"request_id": f"r{i}", "customer_id": f"{prefix}{i}", "churn_probability": 0.5}
        for i in range(n)
    ]


def _wait(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _published(folder: Path) -> list[dict]:
    return [
        json.loads(line) for path in closed_files(folder) for line in path.read_text().splitlines()
    ]


class TestWriterOnABadDisk:
    """The writer thread used to die on the first I/O error, silently dropping every later row."""

    def test_rows_wait_in_memory_while_writes_fail_and_land_once_it_works(self, tmp_path):
        folder = tmp_path / "prediction_logs"
        folder.write_text("not a folder")  # the day folder cannot be created under it
        writer = PredictionLogWriter(folder, flush_seconds=0.01)
        writer.write(_records(3))
        _wait(lambda: writer.failures >= 2)
        assert not writer.healthy and writer.has_room
        assert writer.buffered == 3 and "NotADirectoryError" in writer.last_error
        writer.write(_records(2, "later"))
        folder.unlink()  # the disk comes back
        _wait(lambda: writer.healthy, 30)
        writer.close()
        assert [r["customer_id"] for r in _published(folder)] == [
            "c0",
            "c1",
            "c2",
            "later0",
            "later1",
        ]

    def test_the_backlog_is_bounded_and_says_so(self, tmp_path):
        folder = tmp_path / "prediction_logs"
        folder.write_text("not a folder")
        writer = PredictionLogWriter(folder, flush_seconds=0.01, max_buffered=5)
        writer.write(_records(4))
        assert writer.has_room
        writer.write(_records(1, "fifth"))
        assert not writer.has_room
        folder.unlink()
        _wait(lambda: writer.has_room and writer.healthy, 30)
        writer.close()
        assert len(_published(folder)) == 5


WRITER_SCRIPT = """
import sys, time
from pathlib import Path
from churn.monitoring.prediction_log import PredictionLogWriter
writer = PredictionLogWriter(Path(sys.argv[1]), flush_seconds=0.02)
writer.write([{"request_id": f"r{i}", "customer_id": f"killed{i}"} for i in range(10)])
time.sleep(0.5)
print("flushed", flush=True)
time.sleep(600)
"""


class TestOrphanedOpenFiles:
    """A SIGKILLed writer leaves ``.jsonl.open``, which ingestion used to skip forever."""

    def _killed_writer(self, folder: Path) -> Path:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(folder)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert process.stdout.readline().strip() == "flushed"
            [open_file] = folder.glob(f"*/*{OPEN_SUFFIX}")
            assert not recover_orphans(folder), "a live writer's file must be left alone"
            assert open_file.exists()
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        return open_file

    def test_a_killed_writers_file_is_sealed_and_ingested_exactly_once(self, tmp_path):
        folder = tmp_path / "prediction_logs"
        open_file = self._killed_writer(folder)
        with open_file.open("ab") as handle:  # killed in the middle of an append
            handle.write(b'{"request_id": "torn", "customer_')
        con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
        first = ingest_logs(con, folder)
        assert len(first.recovered) == 1 and first.rows_loaded == 10
        assert not list(folder.glob(f"*/*{OPEN_SUFFIX}"))
        second = ingest_logs(con, folder)
        assert second.rows_loaded == 0 and not second.recovered
        ids = [row[0] for row in con.execute(f"SELECT customer_id FROM {LOG_TABLE}").fetchall()]
        assert sorted(ids) == sorted(f"killed{i}" for i in range(10))

    def test_a_restarted_writer_seals_its_predecessors_file(self, tmp_path):
        folder = tmp_path / "prediction_logs"
        self._killed_writer(folder)
        writer = PredictionLogWriter(folder, flush_seconds=60)  # what a new worker does
        writer.close()
        assert sorted(r["customer_id"] for r in _published(folder)) == sorted(
            f"killed{i}" for i in range(10)
        )

    def test_an_untouched_file_of_another_host_is_sealed_only_when_stale(self, tmp_path):
        day = tmp_path / "prediction_logs" / "2026-01-01"
        day.mkdir(parents=True)
        other = day / f"other-host-{os.getpid()}-120000-00001{OPEN_SUFFIX}"
        other.write_text('{"customer_id": "far"}\n')
        assert not recover_orphans(day.parent)
        old = time.time() - 7200
        os.utime(other, (old, old))
        assert [p.name for p in recover_orphans(day.parent)] == [other.name.removesuffix(".open")]


def test_the_log_schema_is_declared_once():
    assert list(LOG_COLUMNS) == list(get_type_hints(PredictionRecord))
    assert LOG_COLUMNS["logged_at"] == "TIMESTAMPTZ" and LOG_COLUMNS["features"] == "JSON"
