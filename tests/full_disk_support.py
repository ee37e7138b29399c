"""A real small filesystem to fill: a 2-8 MiB tmpfs mounted for one test (root only; CI runs as
root). ``fill`` takes every free byte with a filler file, ``free`` gives them back."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FILLER = ".filler"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the tests as root)")


@contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted at ``where`` (created), unmounted afterwards."""
    require_root()
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> int:
    """Write a filler file until the disk is full; the bytes written."""
    written = 0
    block = b"\0" * 65536
    with (disk / FILLER).open("ab", buffering=0) as handle:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    written += handle.write(block[:size])
            except OSError:
                continue
    assert shutil.disk_usage(disk).free < 4096, shutil.disk_usage(disk)
    return written


def free(disk: Path) -> None:
    (disk / FILLER).unlink()
