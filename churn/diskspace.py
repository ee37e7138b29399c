"""A full disk named as such: which path could not be written, on which device, how much is free.

A write that runs out of space surfaces as whatever the writer says (pyarrow's ``IOError``,
DuckDB's ``IOException``, Python's ``OSError`` with ``ENOSPC``; Dagster's own sqlite only says
"disk I/O error"). Where our code writes (the warehouse file, the exports), the error is turned
into a :class:`DiskFullError` that says the disk is full and where, so the run's failure tells
the operator what to free instead of a library's internals.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

_NO_SPACE = ("no space left on device", "disk quota exceeded", "not enough space")
_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(OSError):
    """A write failed because the device holding ``path`` is full (or over quota)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(errno.ENOSPC, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the device is out of space.

    pyarrow and DuckDB do not always set ``errno``, so their messages are read too."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ERRNOS:
            return True
        if any(text in str(current).lower() for text in _NO_SPACE):
            return True
        current = current.__cause__ or current.__context__
    return False


def free_space(path: Path) -> str:
    """``"<free> free of <total>"`` for the device holding ``path`` (its nearest existing
    parent), or ``"free space unknown"`` when the device cannot be asked."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def disk_full(
    error: BaseException, path: Path, what: str, placed_by: str = "CHURN_HOME"
) -> DiskFullError:
    """The :class:`DiskFullError` for ``error`` raised while writing ``what`` at ``path``;
    ``placed_by`` names the setting that puts ``what`` there."""
    return DiskFullError(
        f"disk full: could not write {what} at {path} ({free_space(path)} on that device): "
        f"free space there, or point {placed_by} at a disk with room, then re-run. "
        f"The writer said: {error}",
        Path(path),
    )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
