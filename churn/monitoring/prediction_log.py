"""Prediction logs: what the scoring service writes and the ``prediction_logs`` asset reads.

Format: JSON Lines, one object per scored row, with the fields of :class:`PredictionRecord`
(declared once, here, with the warehouse type of each field: :data:`LOG_COLUMNS`).
Files live in ``$CHURN_HOME/prediction_logs/<YYYY-MM-DD>/`` and are named
``<host>-<pid>-<start>-<seq>.jsonl``. A file being written ends in ``.jsonl.open``; it is renamed
to ``.jsonl`` only once complete (at rotation and at shutdown). Readers take ``*.jsonl`` files
only, so a half-written file is never loaded, and a rename is atomic on one filesystem.

Requests never wait for the disk: :class:`PredictionLogWriter` appends to an in-memory buffer and
a background thread writes it out, so logging costs a list append on the request path.

A bad day on the disk must not lose answered rows silently:

* A failed write (the day folder cannot be created, the disk is full) keeps the rows in memory
  and the thread retries with exponential backoff (up to :data:`RETRY_MAX_SECONDS`); a partial
  append is cut back so no torn line is left behind. While it fails, :attr:`healthy` is False
  (the service's ``/readyz`` answers 503), and once :data:`MAX_BUFFERED_RECORDS` rows wait,
  :attr:`has_room` is False (the service refuses scoring with 503 rather than answer rows it
  could not log). The thread itself never dies of an error.
* A process killed with a file open (SIGKILL, OOM) leaves ``<name>.jsonl.open``.
  :func:`recover_orphans` seals such a file, cutting a torn last line and renaming it to
  ``.jsonl``, once it is clearly abandoned: its writer's pid (same host) is gone, or nothing
  has touched it for :data:`STALE_OPEN_SECONDS` (a live writer publishes within a minute). The
  service runs it when a writer starts (a restarted worker seals its predecessor's file) and
  the pipeline before each ingestion. A sealed file gets a name never ingested before, and
  ingestion also skips content it has seen, so nothing is loaded twice.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict, get_type_hints

from pydantic_core import to_json

logger = logging.getLogger("churn.monitoring.prediction_log")

OPEN_SUFFIX = ".jsonl.open"
_FILE_SEQUENCE = itertools.count(1)
"""Process-wide, not per writer: two writers opened in the same second by one process (several
service instances, tests) would otherwise pick the same file name, and the second rename would
overwrite the first writer's published file."""
CLOSED_SUFFIX = ".jsonl"
MAX_BUFFERED_RECORDS = 200_000
"""Rows held in memory while writes fail (~100 MB at ~500 bytes a row): minutes of full load.
Beyond it the service stops answering (``has_room``) rather than answer rows it cannot log."""
RETRY_MAX_SECONDS = 30.0
STALE_OPEN_SECONDS = 3600.0
"""An open file untouched this long is abandoned whoever wrote it (e.g. another host)."""


class PredictionRecord(TypedDict, total=False):
    """One scored row. ``Annotated`` carries each field's warehouse type: the ingestion's table
    and reader are derived from this declaration (:data:`LOG_COLUMNS`), not a copy of it."""

    request_id: Annotated[str, "VARCHAR"]
    logged_at: Annotated[str, "TIMESTAMPTZ"]  # ISO 8601, UTC
    route: Annotated[str, "VARCHAR"]  # "/score", "/score_batch", "/score_events"
    model_version: Annotated[str, "VARCHAR"]  # churn_model tag version
    customer_id: Annotated[str, "VARCHAR"]
    features: Annotated[dict[str, Any], "JSON"]
    churn_probability: Annotated[float, "DOUBLE"]
    churn_label: Annotated[int, "INTEGER"]
    threshold: Annotated[float, "DOUBLE"]
    risk_tier: Annotated[str, "VARCHAR"]
    observation_date: Annotated[str | None, "DATE"]  # as_of for /score_events, else None
    # Only while a challenger is served (shadow / canary); see serving.challenger:
    model_role: Annotated[str, "VARCHAR"]  # who answered: "champion" or "challenger"
    champion_version: Annotated[str, "VARCHAR"]
    champion_probability: Annotated[float | None, "DOUBLE"]  # None if the shadow was shed
    challenger_version: Annotated[str, "VARCHAR"]
    challenger_probability: Annotated[float | None, "DOUBLE"]


LOG_COLUMNS: dict[str, str] = {
    name: hint.__metadata__[0]
    for name, hint in get_type_hints(PredictionRecord, include_extras=True).items()
}
"""Field -> DuckDB type, in declaration order. The last five are written only while a challenger
is served (NULL in older files and in ``off``)."""


def closed_files(folder: Path) -> Iterator[Path]:
    """Complete log files under ``folder``, oldest day first."""
    if not folder.exists():
        return iter(())
    return iter(sorted(folder.glob(f"*/*{CLOSED_SUFFIX}")))


def _writer_of(path: Path) -> tuple[str, int] | None:
    """``(host, pid)`` from ``<host>-<pid>-<HHMMSS>-<seq>.jsonl.open`` (hosts may hold '-')."""
    parts = path.name[: -len(OPEN_SUFFIX)].rsplit("-", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie (killed, not yet reaped) writes nothing
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_orphaned(path: Path, stale_seconds: float = STALE_OPEN_SECONDS) -> bool:
    """True when no live writer can still append to ``path`` (see the module docstring)."""
    try:
        idle = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if idle > stale_seconds:
        return True
    writer = _writer_of(path)
    if writer is None or writer[0] != socket.gethostname() or writer[1] == os.getpid():
        return False
    return not _pid_alive(writer[1])


def _publish_name(path: Path) -> Path:
    """The ``.jsonl`` name for ``path``; never an existing file (a rename would replace it)."""
    target = path.with_name(path.name[: -len(".open")])
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name[: -len(OPEN_SUFFIX)]}-r{n}{CLOSED_SUFFIX}")
        n += 1
    return target


def _complete_length(handle: Any) -> int:
    """Bytes up to and including the file's last newline (what complete records occupy)."""
    position = handle.seek(0, os.SEEK_END)
    while position > 0:
        start = max(0, position - 65536)
        handle.seek(start)
        cut = handle.read(position - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        position = start
    return 0


def seal(path: Path) -> Path | None:
    """Cut a torn last line (a write interrupted mid-record) and publish ``path``; an empty
    file is removed. Returns the published path, or None."""
    try:
        with path.open("r+b") as handle:
            keep = _complete_length(handle)
            handle.truncate(keep)
        if keep == 0:
            path.unlink()
            return None
        target = _publish_name(path)
        path.rename(target)
        return target
    except FileNotFoundError:  # sealed by another process meanwhile
        return None


def recover_orphans(folder: Path, stale_seconds: float = STALE_OPEN_SECONDS) -> list[Path]:
    """Seal every abandoned ``.jsonl.open`` under ``folder``; returns the published files."""
    if not folder.is_dir():
        return []
    sealed = []
    for path in sorted(folder.glob(f"*/*{OPEN_SUFFIX}")):
        if is_orphaned(path, stale_seconds):
            published = seal(path)
            if published is not None:
                logger.warning("recovered abandoned prediction log %s -> %s", path, published.name)
                sealed.append(published)
    return sealed


class PredictionLogWriter:
    """Buffered, rotating JSON Lines writer; safe to call from many request threads."""

    def __init__(
        self,
        folder: Path,
        *,
        flush_seconds: float = 1.0,
        rotate_seconds: float = 60.0,
        rotate_bytes: int = 32 * 1024 * 1024,
        max_buffered: int = MAX_BUFFERED_RECORDS,
    ) -> None:
        self.folder = Path(folder)
        self.flush_seconds = flush_seconds
        self.rotate_seconds = rotate_seconds
        self.rotate_bytes = rotate_bytes
        self.max_buffered = max_buffered
        self.failures = 0
        """Consecutive failed flushes (0 while healthy)."""
        self.last_error: str | None = None
        self._buffer: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._file: Path | None = None
        self._opened_at = 0.0
        self._written = 0
        try:
            recover_orphans(self.folder)
        except OSError as error:  # recovery is a courtesy; ingestion tries again
            logger.warning("could not recover abandoned prediction logs: %s", error)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def healthy(self) -> bool:
        """Writing works: the last flush succeeded and the thread runs."""
        return self.failures == 0 and self._thread.is_alive()

    @property
    def has_room(self) -> bool:
        """More rows may be accepted (fewer than ``max_buffered`` wait for the disk)."""
        return len(self._buffer) < self.max_buffered

    def write(self, records: list[Mapping[str, Any]]) -> None:
        """Queue records; the background thread persists them within ``flush_seconds``."""
        with self._lock:
            self._buffer.extend(records)

    def close(self) -> None:
        """Flush everything and publish the current file (rename to ``.jsonl``)."""
        self._stop.set()
        self._thread.join(timeout=10)
        if not self._flush_safely():
            logger.error(
                "prediction log: %d rows could not be written at shutdown (%s)",
                len(self._buffer),
                self.last_error,
            )
            return
        try:
            self._publish()
        except OSError as error:
            logger.error("prediction log: could not publish %s: %s", self._file, error)

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            self._flush_safely()

    def _next_wait(self) -> float:
        if not self.failures:
            return self.flush_seconds
        return min(RETRY_MAX_SECONDS, self.flush_seconds * 2.0 ** min(self.failures, 30))

    def _flush_safely(self) -> bool:
        """One flush; on failure keep the rows and count it. Never raises."""
        try:
            self._flush()
        except Exception as error:  # the thread must outlive any error
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"
            if self.failures == 1 or self.failures % 10 == 0:
                logger.error(
                    "prediction log: write failed (%d in a row, %d rows waiting; retrying in "
                    "%.1f s): %s",
                    self.failures,
                    len(self._buffer),
                    self._next_wait(),
                    self.last_error,
                )
            return False
        if self.failures:
            logger.warning("prediction log: writing again after %d failures", self.failures)
            self.failures = 0
            self.last_error = None
        return True

    def _flush(self) -> None:
        with self._lock:
            pending, self._buffer = self._buffer, []
        if not pending:
            if self._file is not None and time.monotonic() - self._opened_at > self.rotate_seconds:
                self._publish()
            return
        try:
            self._append(pending)
        except BaseException:
            with self._lock:  # back in front, in order: retried by the next flush
                self._buffer[:0] = pending
            raise
        too_old = time.monotonic() - self._opened_at > self.rotate_seconds
        if self._written >= self.rotate_bytes or too_old:
            self._publish()

    def _append(self, pending: list[Mapping[str, Any]]) -> None:
        # pydantic-core's serializer, several times faster than json.dumps: this thread
        # competes with the requests for the GIL.
        payload = _escape_line_breaks(b"".join(to_json(record) + b"\n" for record in pending))
        if self._file is not None and self._written and not self._file.exists():
            self._file = None  # sealed by a recovery that took us for dead: start a new file
        if self._file is None:
            self._open()
        assert self._file is not None
        # Unbuffered: a buffered file's truncate() and close() flush first, so on a full disk
        # they failed again, the file was abandoned as torn and its earlier rows stayed in an
        # unpublished ``.open`` file until the next writer started.
        with self._file.open("ab", buffering=0) as handle:
            try:
                remaining = memoryview(payload)
                while remaining:  # a raw write may stop short (disk full) before it raises
                    remaining = remaining[handle.write(remaining) :]
            except BaseException:
                try:  # no torn line: the rows are retried, so drop what half-arrived
                    handle.truncate(self._written)
                except OSError:
                    self._file = None  # recovery cuts the torn tail; continue in a new file
                raise
        self._written += len(payload)

    def _open(self) -> None:
        now = datetime.now(UTC)
        day_folder = self.folder / now.strftime("%Y-%m-%d")
        day_folder.mkdir(parents=True, exist_ok=True)
        sequence = next(_FILE_SEQUENCE)
        name = f"{socket.gethostname()}-{os.getpid()}-{now:%H%M%S}-{sequence:05d}"
        self._file = day_folder / f"{name}{OPEN_SUFFIX}"
        self._opened_at = time.monotonic()
        self._written = 0

    def _publish(self) -> None:
        if self._file is None:
            return
        if self._file.exists():
            self._file.rename(_publish_name(self._file))
        self._file = None


_UNICODE_LINE_BREAKS = {
    "\u0085".encode(): b"\\u0085",
    "\u2028".encode(): b"\\u2028",
    "\u2029".encode(): b"\\u2029",
}


def _escape_line_breaks(payload: bytes) -> bytes:
    """Escape the Unicode line breaks JSON allows raw inside strings (a customer id may hold
    one), so every record stays on one line even for readers that split on them, such as
    Python's ``str.splitlines``. The bytes only occur inside strings, where the escape is
    the same character."""
    for raw, escaped in _UNICODE_LINE_BREAKS.items():
        if raw in payload:
            payload = payload.replace(raw, escaped)
    return payload
