"""The score export is one set: all new files, or the previous ones and the previous table.

Issue 28 item 15: with the disk nearly full, ``latest.parquet`` was new while ``latest.csv`` and
the dated copies were old, the table was already replaced though the asset failed, and a
``.tmp`` file was left behind. Here writes fail partway through the real ``customer_scores``
asset (a directory where a file of the set goes; a tmpfs too small for the set, when the tests
run as root), and the pieces are checked on their own (a rename failing mid-publish, a failed
table swap after the files were written).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.csv as pa_csv
import pytest

from churn.diskspace import DiskFullError
from churn.scoring.export import export_scores, export_then_replace, stage_export
from tests.full_disk_support import small_disk as tmpfs
from tests.graph import GraphRun, materialize_graph

SCORES = "customer_scores"


def _files(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` (hidden ones too) with its content hash."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def _table_state(home: Path) -> list[tuple]:
    """What a swap changes: rows and scoring time per month."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            f"SELECT observation_date, count(*), max(scored_at) FROM {SCORES} GROUP BY ALL "
            "ORDER BY 1"
        ).fetchall()


def _newest(home: Path) -> str:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT max(observation_date) FROM {SCORES}").fetchone()[0].isoformat()


def _score(home: Path, month: str, *, ok: bool = True) -> GraphRun:
    run = materialize_graph(home, SCORES, first=month, last=month, raise_on_error=False)
    assert run.result.success is ok
    return run


def _failure(run: GraphRun) -> str:
    failure = next(e for e in run.result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    return error.to_string() if error is not None else str(failure.step_failure_data)


@pytest.fixture
def home(materialized: GraphRun, tmp_path: Path) -> Path:
    """A private copy of the session's warehouse (the champion stays in the session's store)."""
    copy = tmp_path / "home"
    copy.mkdir()
    shutil.copy(materialized.warehouse, copy / "warehouse.duckdb")
    return copy


def test_a_directory_in_place_of_a_file_keeps_the_previous_set_and_table(home: Path):
    month = _newest(home)
    _score(home, month)
    exports = home / "exports"
    (exports / f"customer_scores_{month}.csv").unlink()
    (exports / f"customer_scores_{month}.csv").mkdir()  # the set's fourth file cannot go there
    files, table = _files(exports), _table_state(home)

    run = _score(home, month, ok=False)

    assert f"customer_scores_{month}.csv is a directory" in _failure(run)
    assert _files(exports) == files  # latest.parquet and latest.csv are the previous ones
    assert _table_state(home) == table  # the table was not replaced
    (exports / f"customer_scores_{month}.csv").rmdir()
    _score(home, month)
    assert _table_state(home) != table
    assert {name for name in _files(exports)} == set(files) | {f"customer_scores_{month}.csv"}
    assert not [name for name in os.listdir(exports) if name.startswith(".")]


@pytest.fixture
def small_disk(home: Path) -> Iterator[Path]:
    """``home/exports`` on its own tmpfs, resized by the test (root only)."""
    with tmpfs(home / "exports", "64m") as exports:
        yield exports


def _resize(exports: Path, size: int) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(exports)], check=True, capture_output=True
    )


def test_a_disk_that_fills_mid_export_keeps_the_previous_set_and_table(
    home: Path, small_disk: Path
):
    month = _newest(home)
    _score(home, month)
    files, table = _files(small_disk), _table_state(home)
    used = sum((small_disk / name).stat().st_size for name in files)
    parquet = (small_disk / "customer_scores_latest.parquet").stat().st_size
    # room for the previous set and the new latest.parquet, not for the new latest.csv
    page = os.sysconf("SC_PAGE_SIZE")
    pages = sum(-(-(small_disk / name).stat().st_size // page) for name in files)
    _resize(small_disk, (pages + -(-parquet // page) + 2) * page)
    assert used < (pages + 2) * page + parquet

    run = _score(home, month, ok=False)

    message = _failure(run)
    assert "DiskFullError" in message and "disk full: could not write the score export" in message
    assert str(small_disk) in message and "free of" in message
    assert _files(small_disk) == files  # no new file in place, no temporary left
    assert _table_state(home) == table
    _resize(small_disk, 64 * 1024 * 1024)
    _score(home, month)
    assert set(_files(small_disk)) == set(files) and _files(small_disk) != files
    assert _table_state(home) != table


# --- the pieces ---------------------------------------------------------------------------

DAY = date(2025, 6, 1)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute(
        f"CREATE TABLE {SCORES} AS SELECT 'c' || i AS customer_id, DATE '2025-06-01' AS "
        "observation_date, i / 10.0 AS churn_probability FROM range(5) t(i)"
    )
    yield connection
    connection.close()


def test_a_rename_that_fails_mid_publish_puts_the_previous_files_back(con, tmp_path: Path):
    before = export_scores(con, tmp_path, DAY)
    files = _files(tmp_path)
    con.execute(f"UPDATE {SCORES} SET churn_probability = 1 - churn_probability")
    staged = stage_export(con, tmp_path, DAY)
    dated_csv = before.files["dated_csv"]
    dated_csv.unlink()
    dated_csv.mkdir()  # appears after the writes: the rename of the fourth file fails
    with pytest.raises(IsADirectoryError):
        staged.publish()
    dated_csv.rmdir()
    assert {k: v for k, v in _files(tmp_path).items()} == {
        name: digest for name, digest in files.items() if name != dated_csv.name
    }


def test_a_failed_table_swap_removes_the_written_files(con, tmp_path: Path):
    export_scores(con, tmp_path, DAY)
    files = _files(tmp_path)
    con.execute(
        f"CREATE TEMP TABLE _new AS SELECT * REPLACE (0.5 AS churn_probability) FROM {SCORES}"
    )

    def replace() -> None:
        raise RuntimeError("the swap failed")

    with pytest.raises(RuntimeError, match="the swap failed"):
        export_then_replace(con, tmp_path, SCORES, "_new", "TRUE", replace)
    assert _files(tmp_path) == files


def test_the_set_is_read_from_the_table_as_it_will_be(con, tmp_path: Path):
    con.execute(
        "CREATE TEMP TABLE _new AS SELECT 'n' || i AS customer_id, DATE '2025-07-01' AS "
        "observation_date, 0.5 AS churn_probability FROM range(3) t(i)"
    )
    swapped: list[bool] = []
    exported = export_then_replace(
        con,
        tmp_path,
        SCORES,
        "_new",
        "observation_date = DATE '2025-07-01'",
        lambda: swapped.append(True),
    )
    assert swapped == [True] and exported is not None
    assert exported.observation_date == date(2025, 7, 1) and exported.rows == 3
    latest = pa_csv.read_csv(exported.files["latest_csv"])
    assert latest.column("customer_id").to_pylist() == ["n0", "n1", "n2"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_a_disk_full_error_names_the_disk_and_the_path(tmp_path: Path):
    error = DiskFullError("disk full: could not write x", tmp_path)
    assert str(error) == "disk full: could not write x" and error.path == tmp_path
