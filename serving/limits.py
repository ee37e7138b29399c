"""Limits on what a request may make the worker hold, enforced before BentoML reads the body.

* **415** for a body that is not JSON (``Content-Type`` other than ``application/json``; a
  missing one is taken as JSON, as BentoML does). BentoML would otherwise parse forms and
  multipart bodies, and its parser's errors (bad boundary, too many fields, an oversized
  field, a lone surrogate) surfaced as 500s on every route.
* **413** for a body over ``CHURN_MAX_BODY_BYTES``. Schema limits (1000 rows per batch, 100 000
  history rows per table) are checked only after the whole body has been read and parsed;
  without a byte cap a client could make the worker buffer and parse gigabytes first. A
  declared ``Content-Length`` over the cap is refused at once; a chunked body is read here
  under the cap and replayed to the app.
* **503** with ``Retry-After`` when the bodies already admitted and not yet answered, plus this
  one, would exceed ``CHURN_MAX_INFLIGHT_BYTES``. Parsing and scoring a body costs several
  times its size in Python objects (a 31 MiB history is ~100k row models), so 24 concurrent
  31 MiB bodies took a worker from 333 MiB to 5.1 GB; the budget bounds that sum instead of
  each body alone. Small requests still fit beside a big one (the default budget is twice the
  body cap), and the client is told when to come back rather than waiting into a 504.

Every refusal has the shared error body (``serving.errors``).
"""

from __future__ import annotations

from serving.auth import ASGIApp, Message, Receive, Scope, Send
from serving.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_INFLIGHT_BYTES,
    MAX_BODY_BYTES_ENV,
    MAX_INFLIGHT_BYTES_ENV,
)
from serving.errors import send_error

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "InflightBudget"]

JSON_MEDIA_TYPE = b"application/json"
BUSY_RETRY_AFTER_SECONDS = 1


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
    """415 / 413 / 503 as described in the module docstring. The service passes its settings'
    ``max_body_bytes`` and ``max_inflight_bytes`` (``serving.config``); the defaults are the
    documented ones, for code that builds the middleware without settings."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_inflight: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = InflightBudget(max_inflight or max(DEFAULT_MAX_INFLIGHT_BYTES, max_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        media_type, declared = _body_headers(scope)
        if media_type is not None and media_type != JSON_MEDIA_TYPE and _has_body(scope):
            await _unsupported(send, media_type)
            return
        if declared is not None and declared > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        if declared is not None:
            if not self.budget.take(declared):
                await _busy(send, self.budget.limit)
                return
            try:
                await self.app(scope, receive, send)
            finally:
                self.budget.give(declared)
            return
        await self._chunked(scope, receive, send)

    async def _chunked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read a chunked body under the cap and the budget, then replay it. Raising from
        inside the app's receive would surface as BentoML's generic 500, so both are applied
        before the app runs."""
        chunks: list[bytes] = []
        size = 0
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # client went away
                chunk = message.get("body", b"")
                if size + len(chunk) > self.max_bytes:
                    await _too_large(send, self.max_bytes)
                    return
                if not self.budget.take(len(chunk)):
                    await _busy(send, self.budget.limit)
                    return
                size += len(chunk)
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            chunks.clear()
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.budget.give(size)


def _body_headers(scope: Scope) -> tuple[bytes | None, int | None]:
    """The media type (lower case, parameters dropped) and the declared length, if any."""
    media_type = declared = None
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
    return media_type, declared


def _has_body(scope: Scope) -> bool:
    """Only requests that can carry a body are refused for their media type (a GET probe with
    a stray Content-Type is still answered)."""
    return scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS")


async def _unsupported(send: Send, media_type: bytes) -> None:
    shown = media_type[:64].decode("latin-1")
    await send_error(
        send,
        415,
        "unsupported media type",
        kind="unsupported_media_type",
        loc=["header", "Content-Type"],
        msg=f"send the body as application/json, not {shown!r}",
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
