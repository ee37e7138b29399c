"""Every refusal in one shape: ``{"error": ..., "detail": [{"type", "loc", "msg"}, ...]}``.

BentoML turns a pydantic ``ValidationError`` raised while handling a request into a 400 with that
body. Checks that need more than one field (a history row for another customer, a signup after
``as_of``) raise the same error (:func:`invalid_request`), and the ASGI middlewares that refuse a
request before BentoML sees it (401 key, 413 body, 415 media type, 429 rate, 431 headers, 503
busy, 408 slow body) write the same body with :func:`send_error`, so a client handles one error
format whatever the check was. Starlette's own 404 (no such route) and 405 (wrong method) are
plain text; :class:`BoundedErrorsMiddleware` rewrites them into this shape, and the uvicorn
protocol (``serving.http_limits``) answers its parser's 400, 408 and 431 in it too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Location = Sequence[str | int]


def invalid_request(title: str, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
    """Raise a ``ValidationError`` with one entry per ``(location, message)``."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(
                "invalid_request", message.replace("{", "(").replace("}", ")")
            ),
            loc=location,
            input=None,
        )
        for location, message in problems
    ]
    raise ValidationError.from_exception_data(title, details)


def error_body(error: str, kind: str, loc: Location, msg: str) -> bytes:
    """The JSON of a refusal with a single ``detail`` entry."""
    detail = [{"type": kind, "loc": list(loc), "msg": msg}]
    return json.dumps({"error": error, "detail": detail}).encode()


async def send_error(
    send: Send,
    status: int,
    error: str,
    *,
    kind: str,
    loc: Location,
    msg: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer an ASGI request with ``status`` and the shared error body (see the module doc)."""
    body = error_body(error, kind, loc, msg)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- bounding what a refusal echoes and logs -------------------------------------------------

MAX_LOC_TEXT = 64
"""Characters of one ``loc`` element kept in an answer or a log line: a field name is short; a
900 KB key (an unknown field is named in ``loc``) was echoed whole, twice."""
MAX_MSG_TEXT = 300
MAX_DETAILS = 50
"""Entries of ``detail`` returned; ``error`` still says how many there were."""
MAX_ERROR_BODY = 1 << 20
"""A 4xx body longer than this is not parsed to be bounded; it is replaced outright."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def bounded_location(loc: Any) -> list[Any]:
    if not isinstance(loc, list | tuple):
        return []
    return [_clip(part, MAX_LOC_TEXT) if isinstance(part, str) else part for part in loc]


def _envelope_first(detail: list[Any]) -> list[Any]:
    """Shallow locations first, in their order: a bad ``threshold`` or an unknown top-level key
    must survive the cut even when every one of a model's many features is also missing."""

    def depth(item: Any) -> int:
        loc = item.get("loc") if isinstance(item, dict) else None
        return len(loc) if isinstance(loc, list | tuple) else 0

    return sorted(detail, key=depth)


def bound_refusal(payload: Any) -> Any:
    """The refusal body with every ``loc`` part, message and the list itself cut to size."""
    if not isinstance(payload, dict):
        return payload
    bounded = dict(payload)
    if isinstance(bounded.get("error"), str):
        bounded["error"] = _clip(bounded["error"], MAX_MSG_TEXT)
    detail = bounded.get("detail")
    if isinstance(detail, list):
        items = []
        for item in _envelope_first(detail)[:MAX_DETAILS]:
            if isinstance(item, dict):
                item = dict(item)
                if "loc" in item:
                    item["loc"] = bounded_location(item["loc"])
                if isinstance(item.get("msg"), str):
                    item["msg"] = _clip(item["msg"], MAX_MSG_TEXT)
                item.pop("input", None)
            items.append(item)
        bounded["detail"] = items
    return bounded


ROUTING_ERRORS = {
    404: ("not found", "not_found", "no route here; see /docs.json for the routes"),
    405: ("method not allowed", "method_not_allowed", "this route does not take this method"),
}
"""Starlette's plain-text answers, as (error, type, message) of the shared shape."""


class BoundedErrorsMiddleware:
    """Rewrites the app's JSON 4xx answers through :func:`bound_refusal`, and Starlette's
    plain-text 404/405 into the shared shape (``loc: ["path"]``, ``Allow`` kept). Only 4xx
    responses are held back (they are small unless something echoed the request); 2xx
    answers stream through untouched, so the scoring path pays one status check."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def bounded_send(message: MutableMapping[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if 400 <= message["status"] < 500 and (
                    _is_json(message) or message["status"] in ROUTING_ERRORS
                ):
                    start = message
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            if _is_json(start):
                body = _bounded_body(b"".join(chunks))
            else:
                error, kind, msg = ROUTING_ERRORS[start["status"]]
                body = error_body(error, kind, ["path"], msg)
            drop = (b"content-length", b"content-type")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in drop]
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, bounded_send)


def _is_json(start: MutableMapping[str, Any]) -> bool:
    return any(
        k == b"content-type" and v.startswith(b"application/json") for k, v in start["headers"]
    )


def _bounded_body(body: bytes) -> bytes:
    if len(body) <= MAX_ERROR_BODY:
        try:
            return json.dumps(bound_refusal(json.loads(body))).encode()
        except ValueError:
            pass
    return error_body("invalid request", "invalid_request", [], "the refusal was too long to show")


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs every refused request at ERROR with the ``ValidationError``'s traceback
    (1.9 KB each, and the whole offending key when one was echoed in ``loc``). A client's bad
    input is not a server error: keep one bounded line, at INFO, and leave real failures (any
    other exception) with their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            first = error.errors(include_input=False)[:1]
            where = bounded_location(list(first[0]["loc"])) if first else []
            path = _clip(str(record.args[0]) if record.args else "?", MAX_LOC_TEXT)
            record.msg = "refused %s: %d validation error(s) for %s, first at %s"
            record.args = (path, error.error_count(), _clip(error.title, MAX_LOC_TEXT), where)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
"""The logger BentoML's request handler reports exceptions on (``log_exception``)."""


def install_client_error_log_filter() -> None:
    """Idempotent: attach :class:`ClientErrorLogFilter` to BentoML's request logger."""
    target = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in target.filters):
        target.addFilter(ClientErrorLogFilter())
