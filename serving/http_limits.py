"""A cap on the size and count of request headers, enforced while uvicorn parses them.

uvicorn parses HTTP/1.1 with httptools when it is installed (BentoML's default install has it),
and that path has no limit on a request head: one client sending a 60 MiB header made the
worker's event loop copy a growing buffer for seconds (the header is accumulated by repeated
concatenation), stalling every other client, before any middleware (API keys included) could
see the request. uvicorn's only head limit, ``h11_max_incomplete_event_size``, applies to its
h11 parser, and BentoML builds uvicorn's ``Config`` itself without exposing either setting.

So :func:`install` registers :class:`BoundedHttpToolsProtocol` under uvicorn's protocol names
(``uvicorn.config.HTTP_PROTOCOLS``, which ``Config.load`` resolves when the server starts; the
service module is imported first, in the same worker process). The subclass guards what only
the connection can see, before any ASGI middleware runs:

* **Head size**: it counts the bytes of a head still incomplete and the header lines, and
  answers **431** and closes the connection beyond :data:`MAX_HEAD_BYTES` or
  :data:`MAX_HEADERS`.
* **Head time**: a connection whose head is not complete ``CHURN_HEAD_TIMEOUT_SECONDS`` after it
  opened (or after the first byte of its next request) gets **408** and is closed. uvicorn only
  times out *idle* keep-alive connections; a head that never ends (or a connection that sends
  nothing) was held forever, 3,000 of them for over a minute.
* **Chunked trailers**: bytes after the head that carry no body (chunk framing, chunk
  extensions, trailer fields) may not run beyond :data:`MAX_HEAD_BYTES` in a row; beyond, the
  connection is closed. llhttp parses trailers like headers and httptools accumulates each
  field by concatenation, but uvicorn counts nothing after the head, so one endless trailer was
  read (154 MiB in 30 s) while the worker's event loop stalled. The check is per ``recv``: at
  most one read (256 KiB) beyond the cap is parsed.
* **Parser errors**: httptools' 400 (``Invalid HTTP request received.`` in plain text) is
  answered in the shared JSON error shape.

Without httptools uvicorn falls back to h11, whose default already bounds the head (16 KiB).
"""

from __future__ import annotations

import asyncio
import logging

from serving.config import DEFAULT_HEAD_TIMEOUT_SECONDS, HEAD_TIMEOUT_ENV
from serving.errors import error_body

MAX_HEAD_BYTES = 64 * 1024
"""Request line + headers. Browsers and proxies send a few KiB; nginx's default is 8 KiB per
line (4 of them), gunicorn's 8 KiB per line."""
MAX_HEADERS = 100
"""Header lines per request (gunicorn's default)."""

logger = logging.getLogger("churn.serving")

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn then parses with h11 (bounded by default)
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class _TooManyHeaders(Exception):
    pass


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol with the limits of the module docstring."""

        head_timeout: float = DEFAULT_HEAD_TIMEOUT_SECONDS
        """Set by :func:`install` from the service's settings."""

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._header_count = 0
            self._refusing: str | None = None
            self._head_timer: asyncio.TimerHandle | None = None
            self._past_head = False
            self._body_seen = 0
            self._bodyless_run = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()  # a connection that sends nothing is a head that never ends

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_timer is None:
                    self._arm_head_timer()
            past_head_before, body_before = self._past_head, self._body_seen
            super().data_received(data)  # parser callbacks below run inside
            if self.transport.is_closing():
                return
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES and self._refusing is None:
                self._refuse(
                    f"the request line and headers may hold at most {MAX_HEAD_BYTES} bytes"
                )
                return
            if self._body_seen != body_before:
                self._bodyless_run = 0
            elif past_head_before and self._past_head:
                self._bodyless_run += len(data)
                if self._bodyless_run > MAX_HEAD_BYTES:
                    logger.info(
                        "closed a connection from %s: %d bytes after the head carried no body "
                        "(chunk framing or trailers beyond %d)",
                        self.client,
                        self._bodyless_run,
                        MAX_HEAD_BYTES,
                    )
                    self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._header_count = 0

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            if self._header_count > MAX_HEADERS:
                self._refusing = f"a request may carry at most {MAX_HEADERS} header lines"
                raise _TooManyHeaders  # httptools stops parsing: uvicorn's send_400_response
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._disarm_head_timer()
            self._past_head, self._bodyless_run = True, 0
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._body_seen += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._past_head = False

        def send_400_response(self, msg: str) -> None:
            if self._refusing is not None:
                self._refuse(self._refusing)
                return
            body = error_body(
                "invalid HTTP request",
                "invalid_http",
                ["request"],
                "the request could not be parsed as HTTP/1.1",
            )
            self._answer(400, body)

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # an answer is still being written: never interleave
                return
            logger.info(
                "closed a connection from %s: no complete request head in %g s",
                self.client,
                self.head_timeout,
            )
            body = error_body(
                "request head too slow",
                "head_timeout",
                ["header"],
                f"the request line and headers must arrive within {self.head_timeout:g} s "
                f"({HEAD_TIMEOUT_ENV})",
            )
            self._answer(408, body)

        def _refuse(self, reason: str) -> None:
            self._refusing = reason
            body = error_body(
                "request header fields too large", "headers_too_large", ["header"], reason
            )
            logger.info("refused a request head from %s: %s", self.client, reason)
            self._answer(431, body)

        def _answer(self, status: int, body: bytes) -> None:
            """Write a whole JSON answer and close: the connection's state is not trusted."""
            self._disarm_head_timer()
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
            self.transport.close()


def install(head_timeout: float = DEFAULT_HEAD_TIMEOUT_SECONDS) -> bool:
    """Make uvicorn build :class:`BoundedHttpToolsProtocol` for ``http="auto"``/``"httptools"``,
    with ``head_timeout`` (``CHURN_HEAD_TIMEOUT_SECONDS``). Returns False when httptools is
    missing (uvicorn's h11 default bounds the head then)."""
    if HttpToolsProtocol is None:
        return False
    import uvicorn.config

    BoundedHttpToolsProtocol.head_timeout = head_timeout
    target = f"{__name__}:BoundedHttpToolsProtocol"
    uvicorn.config.HTTP_PROTOCOLS["auto"] = target
    uvicorn.config.HTTP_PROTOCOLS["httptools"] = target
    return True
