"""A request body cap, enforced before BentoML reads the body into memory.

Schema limits (1000 rows per batch, 100 000 history rows per table) are checked only after the
whole body has been read and parsed; without a byte cap a client could make the worker buffer
and parse gigabytes first. A declared ``Content-Length`` over the cap is refused at once; a
chunked body is read here under the cap and replayed to the app. Either way the answer
is 413 with a body naming the limit, before any parsing.
"""

from __future__ import annotations

import json
import os

from serving.auth import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES_ENV = "CHURN_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""Room for a full ``/score_events`` history (~150 bytes per event) and any batch of 1000."""


class BodyLimitMiddleware:
    """413 for bodies larger than ``max_bytes`` (default from ``CHURN_MAX_BODY_BYTES``)."""

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        env_value = os.environ.get(MAX_BODY_BYTES_ENV)
        self.max_bytes = max_bytes or (int(env_value) if env_value else DEFAULT_MAX_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # Chunked: read it here under the cap, then replay it. Raising from inside the app's
        # receive would surface as BentoML's generic 500, so the cap is applied before.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": "request body too large",
            "detail": [
                {
                    "type": "too_large",
                    "loc": ["body"],
                    "msg": f"the body may hold at most {limit} bytes ({MAX_BODY_BYTES_ENV})",
                }
            ],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
