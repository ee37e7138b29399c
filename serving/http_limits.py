"""A cap on the size and count of request headers, enforced while uvicorn parses them.

uvicorn parses HTTP/1.1 with httptools when it is installed (BentoML's default install has it),
and that path has no limit on a request head: one client sending a 60 MiB header made the
worker's event loop copy a growing buffer for seconds (the header is accumulated by repeated
concatenation), stalling every other client, before any middleware (API keys included) could
see the request. uvicorn's only head limit, ``h11_max_incomplete_event_size``, applies to its
h11 parser, and BentoML builds uvicorn's ``Config`` itself without exposing either setting.

So :func:`install` registers :class:`BoundedHttpToolsProtocol` under uvicorn's protocol names
(``uvicorn.config.HTTP_PROTOCOLS``, which ``Config.load`` resolves when the server starts; the
service module is imported first, in the same worker process). The subclass counts the bytes of
a head still incomplete and the header lines, and answers **431** with the shared error body
and closes the connection beyond :data:`MAX_HEAD_BYTES` or :data:`MAX_HEADERS`. Without
httptools uvicorn falls back to h11, whose default already bounds the head (16 KiB).
"""

from __future__ import annotations

import logging

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
        """uvicorn's httptools protocol with the head limits of the module docstring."""

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._header_count = 0
            self._refusing: str | None = None

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)  # parser callbacks below run inside
            if (
                self._in_head
                and self._head_bytes > MAX_HEAD_BYTES
                and self._refusing is None
                and not self.transport.is_closing()
            ):
                self._refuse(
                    f"the request line and headers may hold at most {MAX_HEAD_BYTES} bytes"
                )

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
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True

        def send_400_response(self, msg: str) -> None:
            if self._refusing is not None:
                self._refuse(self._refusing)
                return
            super().send_400_response(msg)

        def _refuse(self, reason: str) -> None:
            self._refusing = reason
            body = error_body(
                "request header fields too large", "headers_too_large", ["header"], reason
            )
            logger.info("refused a request head from %s: %s", self.client, reason)
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[431],
                        b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
            self.transport.close()


def install() -> bool:
    """Make uvicorn build :class:`BoundedHttpToolsProtocol` for ``http="auto"``/``"httptools"``.
    Returns False when httptools is missing (uvicorn's h11 default bounds the head then)."""
    if HttpToolsProtocol is None:
        return False
    import uvicorn.config

    target = f"{__name__}:BoundedHttpToolsProtocol"
    uvicorn.config.HTTP_PROTOCOLS["auto"] = target
    uvicorn.config.HTTP_PROTOCOLS["httptools"] = target
    return True
