"""Prometheus' multiprocess files, pre-allocated, so a full disk cannot kill the worker.

The upstream behaviour this guards against: ``prometheus_client`` keeps each worker's metric
values in a memory-mapped file (``MmapedDict``) under ``PROMETHEUS_MULTIPROC_DIR``, which
BentoML puts in ``$BENTOML_HOME/prometheus_multiproc_dir``, usually the same disk as the
prediction logs. It sizes the file with ``truncate``, which leaves a *sparse* file: the blocks
are only allocated when a page is first written through the map. On a full disk that write
cannot be backed and the kernel sends SIGBUS: the worker dies (exit 135), BentoML restarts it
every few seconds, ``/readyz`` times out instead of saying 503, and the prediction-log rows
waiting in the dead worker's memory are lost (issue 28, item 1).

The fix at our boundary: :func:`install` replaces ``MmapedDict``'s two sizing steps (opening a
file, growing it for a new key) with ``posix_fallocate``, which reserves the blocks up front or
fails with an ordinary ``OSError`` (ENOSPC). When the disk has no room, that process's values
move to an anonymous in-memory map: the worker keeps scoring and logging (and ``/readyz`` says
what the prediction log says), and its metrics stay at what was last written to the file until
it restarts. Installed in workers only, before they record any metric.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from typing import Any

logger = logging.getLogger("churn.serving")

_installed = False
_lock = threading.Lock()


def _reserve(fileno: int, size: int) -> None:
    """Allocate real blocks for bytes ``[0, size)`` (extending the file): raises OSError when
    the disk is full, so no page of the map can later fault with SIGBUS."""
    os.posix_fallocate(fileno, 0, size)


def _to_memory(store: Any, capacity: int, reason: OSError) -> None:
    """Move ``store``'s map to anonymous memory of ``capacity`` bytes (contents kept)."""
    anonymous = mmap.mmap(-1, capacity)
    if store._m is not None:
        used = min(len(store._m), capacity)
        anonymous[:used] = store._m[:used]
        store._m.close()
    store._m = anonymous
    store._in_memory = True
    logger.warning(
        "metrics: %s cannot grow (%s); this worker's metrics stay in memory until it restarts",
        store._fname,
        reason,
    )


def install() -> None:
    """Patch ``prometheus_client``'s ``MmapedDict`` as described in the module docstring."""
    global _installed
    with _lock:
        if _installed:
            return
        from prometheus_client import mmap_dict

        initial = mmap_dict._INITIAL_MMAP_SIZE
        pack_integer = mmap_dict._pack_integer
        unpack_integer = mmap_dict._unpack_integer
        original_init = mmap_dict.MmapedDict.__init__

        def __init__(self: Any, filename: str, read_mode: bool = False) -> None:
            if read_mode:
                original_init(self, filename, read_mode)
                return
            self._f = open(filename, "a+b")  # noqa: SIM115 - closed by close(), as upstream
            self._fname = filename
            self._in_memory = False
            capacity = os.fstat(self._f.fileno()).st_size or initial
            self._capacity = capacity
            self._m = None
            try:
                _reserve(self._f.fileno(), capacity)
                self._m = mmap.mmap(self._f.fileno(), capacity, access=mmap.ACCESS_WRITE)
            except OSError as error:
                if os.fstat(self._f.fileno()).st_size > 0:
                    # A file with values: read them into memory rather than mapping holes.
                    self._f.seek(0)
                    data = self._f.read(capacity)
                    _to_memory(self, capacity, error)
                    self._m[: len(data)] = data
                else:  # nothing written yet: leave no empty file for the collector to misread
                    self._f.close()
                    os.unlink(filename)
                    self._f = None
                    _to_memory(self, capacity, error)
            self._positions = {}
            self._used = unpack_integer(self._m, 0)[0]
            if self._used == 0:
                self._used = 8
                pack_integer(self._m, 0, self._used)
            else:
                for key, _, _, pos in self._read_all_values():
                    self._positions[key] = pos

        def _init_value(self: Any, key: str) -> None:
            encoded = key.encode("utf-8")
            padded = encoded + (b" " * (8 - (len(encoded) + 4) % 8))
            value = mmap_dict.struct.pack(
                f"i{len(padded)}sdd".encode(), len(encoded), padded, 0.0, 0.0
            )
            capacity = self._capacity
            while self._used + len(value) > capacity:
                capacity *= 2
            if capacity != self._capacity:
                if getattr(self, "_in_memory", False) or self._f is None:
                    _to_memory(self, capacity, OSError("already in memory"))
                else:
                    try:
                        _reserve(self._f.fileno(), capacity)
                        self._m = mmap.mmap(self._f.fileno(), capacity)
                    except OSError as error:
                        _to_memory(self, capacity, error)
                self._capacity = capacity
            self._m[self._used : self._used + len(value)] = value
            self._used += len(value)
            pack_integer(self._m, 0, self._used)
            self._positions[key] = self._used - 16

        def close(self: Any) -> None:
            if self._m is not None:
                self._m.close()
                self._m = None
            if self._f is not None:
                self._f.close()
                self._f = None

        mmap_dict.MmapedDict.__init__ = __init__
        mmap_dict.MmapedDict._init_value = _init_value
        mmap_dict.MmapedDict.close = close
        _installed = True
