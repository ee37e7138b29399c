"""Limits on what a request may make the worker hold, enforced before BentoML reads the body.

* **415** for a body that is not JSON: a ``Content-Type`` other than ``application/json``, or
  more than one ``Content-Type`` header (a missing one is taken as JSON, as BentoML does).
  BentoML would otherwise parse forms and multipart bodies, and its parser's errors (bad
  boundary, too many fields, an oversized field, a lone surrogate) surfaced as 500s on every
  route. Several headers are refused outright because Starlette reads the *first* one while a
  check of the last would pass ``application/json`` last and ``multipart`` first (a 500).
* **413** for a body over ``CHURN_MAX_BODY_BYTES``. Schema limits (1000 rows per batch, 100 000
  history rows per table) are checked only after the whole body has been read and parsed;
  without a byte cap a client could make the worker buffer and parse gigabytes first. A
  declared ``Content-Length`` over the cap is refused at once; every body is read here under
  the cap and replayed to the app.
* **503** with ``Retry-After`` when the bodies being received or handled, plus the bytes this
  one just sent, would exceed ``CHURN_MAX_INFLIGHT_BYTES``. Parsing and scoring a body costs
  several times its size in Python objects (a 31 MiB history is ~100k row models), so 24
  concurrent 31 MiB bodies took a worker from 333 MiB to 5.1 GB; the budget bounds that sum
  instead of each body alone. Bytes are charged **as they arrive**, never as announced: two
  connections announcing ``Content-Length: 33554431`` and sending nothing used to hold the
  whole budget, so every other POST got 503 until BentoML's timeout.
* **408** (and the connection closed) for a body that does not arrive in time: all of it within
  ``CHURN_BODY_TIMEOUT_SECONDS`` of the head, and, after :data:`BODY_RATE_GRACE_SECONDS`, at an
  average of at least ``CHURN_MIN_BODY_RATE`` bytes per second. uvicorn and BentoML wait for
  a body as long as BentoML's request timeout, so a client trickling bytes held a task, a
  connection and its part of the budget for that long.

Every refusal has the shared error body (``serving.errors``). A 408 also closes the connection
(``Connection: close``); after a 413 or 503 uvicorn reads and drops the rest of the body
without keeping it, so a client still writing it can read its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from serving.auth import ASGIApp, Message, Receive, Scope, Send
from serving.config import (
    BODY_TIMEOUT_ENV,
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MIN_BODY_RATE,
    MAX_BODY_BYTES_ENV,
    MAX_INFLIGHT_BYTES_ENV,
    MIN_BODY_RATE_ENV,
)
from serving.errors import send_error

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "InflightBudget"]

JSON_MEDIA_TYPE = b"application/json"
BUSY_RETRY_AFTER_SECONDS = 1
BODY_RATE_GRACE_SECONDS = 2.0
"""The minimum body rate is an average counted from this long after the head: a small body
sent right after its head is never judged by the rate, only a long upload is."""
CLOSE = (b"connection", b"close")


class InflightBudget:
    """Bytes of request bodies admitted and not yet answered. One event loop per worker runs
    every middleware call, so plain arithmetic needs no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class BodyLimitMiddleware:
    """415 / 413 / 503 / 408 as described in the module docstring. The service passes its
    settings (``serving.config``); the defaults are the documented ones, for code that builds
    the middleware without settings. ``clock`` is for tests."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_inflight: int | None = None,
        body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        min_rate: float = DEFAULT_MIN_BODY_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = InflightBudget(max_inflight or max(DEFAULT_MAX_INFLIGHT_BYTES, max_bytes))
        self.body_timeout = body_timeout
        self.min_rate = min_rate
        self.clock = clock
        self.too_slow = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        media_types, declared = _body_headers(scope)
        if _has_body(scope) and (
            len(media_types) > 1 or any(m != JSON_MEDIA_TYPE for m in media_types)
        ):
            await _unsupported(send, media_types)
            return
        if declared is not None and declared > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        await self._read_then_call(scope, receive, send)

    def _seconds_left(self, started: float, received: int) -> float:
        """Until the body's deadline: its total timeout, or the moment the bytes received so
        far fall below the minimum average rate, whichever is first."""
        by_rate = started + BODY_RATE_GRACE_SECONDS + received / self.min_rate
        return min(started + self.body_timeout, by_rate) - self.clock()

    async def _read_then_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body under the cap, the budget and the deadlines, then replay it. Raising
        from inside the app's receive would surface as BentoML's generic 500, so all of them
        are applied before the app runs. The chunks are replayed as they came (no joined
        copy) and each is released as the app takes it."""
        chunks: deque[bytes] = deque()
        size = 0
        started = self.clock()
        try:
            more = True
            while more:
                wait = self._seconds_left(started, size)
                try:
                    if wait <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(wait):
                        message = await receive()
                except TimeoutError:
                    self.too_slow += 1
                    await _too_slow(send, size, self.body_timeout, self.min_rate)
                    return
                if message["type"] != "http.request":
                    return  # client went away
                chunk = message.get("body", b"")
                if size + len(chunk) > self.max_bytes:
                    await _too_large(send, self.max_bytes)
                    return
                if chunk and not self.budget.take(len(chunk)):
                    await _busy(send, self.budget.limit)
                    return
                size += len(chunk)
                chunks.append(chunk)
                more = message.get("more_body", False)

            async def replay() -> Message:
                if chunks:
                    chunk = chunks.popleft()
                    return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            chunks.clear()
            self.budget.give(size)


def _body_headers(scope: Scope) -> tuple[list[bytes], int | None]:
    """Every ``Content-Type``'s media type (lower case, parameters dropped) and the declared
    length, if any."""
    media_types: list[bytes] = []
    declared = None
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media_types.append(value.split(b";", 1)[0].strip().lower())
        elif name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
    return media_types, declared


def _has_body(scope: Scope) -> bool:
    """Only requests that can carry a body are refused for their media type (a GET probe with
    a stray Content-Type is still answered)."""
    return scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS")


async def _unsupported(send: Send, media_types: list[bytes]) -> None:
    if len(media_types) > 1:
        msg = f"send one Content-Type header, application/json, not {len(media_types)}"
    else:
        shown = media_types[0][:64].decode("latin-1")
        msg = f"send the body as application/json, not {shown!r}"
    await send_error(
        send,
        415,
        "unsupported media type",
        kind="unsupported_media_type",
        loc=["header", "Content-Type"],
        msg=msg,
    )


async def _too_large(send: Send, limit: int) -> None:
    await send_error(
        send,
        413,
        "request body too large",
        kind="too_large",
        loc=["body"],
        msg=f"the body may hold at most {limit} bytes ({MAX_BODY_BYTES_ENV})",
    )


async def _busy(send: Send, limit: int) -> None:
    await send_error(
        send,
        503,
        "busy: too many request bytes in flight",
        kind="busy",
        loc=["body"],
        msg=f"the worker is already handling {limit} bytes of requests "
        f"({MAX_INFLIGHT_BYTES_ENV}); retry in {BUSY_RETRY_AFTER_SECONDS} s",
        headers=[(b"retry-after", str(BUSY_RETRY_AFTER_SECONDS).encode())],
    )


async def _too_slow(send: Send, received: int, timeout: float, rate: float) -> None:
    await send_error(
        send,
        408,
        "request body too slow",
        kind="body_timeout",
        loc=["body"],
        msg=f"the body must arrive within {timeout:g} s ({BODY_TIMEOUT_ENV}) at {rate:g} "
        f"bytes/s or more ({MIN_BODY_RATE_ENV}); {received} bytes arrived",
        headers=[CLOSE],
    )
