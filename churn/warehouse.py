"""Opening the DuckDB warehouse safely from short-lived processes.

DuckDB lets one process write a file at a time; a second writer gets "Could not set lock on
file". Dagster steps, sensors and tests all open the file briefly, so instead of failing with
that message we wait, tell the user who is likely holding it, and give up with a clear error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

LOCK_HINT = (
    "Another process holds the DuckDB warehouse {path} (a second `dagster asset materialize`, a "
    "Python shell or a DuckDB CLI). DuckDB allows one writer per file: close it and retry."
)


class WarehouseLockedError(RuntimeError):
    """The warehouse stayed locked by another process for longer than we were willing to wait."""


def _is_lock_error(error: duckdb.Error) -> bool:
    return "lock" in str(error).lower()


def connect(
    path: Path,
    *,
    read_only: bool = False,
    lock_timeout_seconds: float = 120.0,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting with backoff while another process holds its lock."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_seconds
    delay = 0.2
    announced = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if not _is_lock_error(error):
                raise
            hint = LOCK_HINT.format(path=path)
            if time.monotonic() + delay > deadline:
                raise WarehouseLockedError(
                    f"{hint} Gave up after {lock_timeout_seconds:.0f} s. DuckDB said: {error}"
                ) from error
            if not announced:
                (on_wait or log.warning)(f"{hint} Waiting up to {lock_timeout_seconds:.0f} s.")
                announced = True
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing: a step killed mid-write leaves the previous table contents intact."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_name = ?",
        [name],
    ).fetchone()
    return bool(found and found[0])
