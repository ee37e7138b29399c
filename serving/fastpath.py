"""``/score``'s happy path without BentoML's per-request machinery.

A valid ``POST /score`` spent about a third of its CPU outside our code
(docs/performance.md, "Service"): Starlette routing, a ``Request`` object and BentoML's request
context, the serde lookup, ``APIMethod.__get__`` building an ``inspect.signature`` twice, the
output model wrapped and dumped, and a chunked response sent in three messages through every
middleware. :class:`FastScoreMiddleware`, the innermost of our middleware (every guard, the
rate limit, the API key, the log backlog, the body limits and the bounded errors, has already
run), answers those requests itself with the same objects BentoML would use: the route's own
``input_spec`` validates the body, the service method's own function runs (an ``async def``, on
the event loop, as under BentoML), the route's ``output_spec`` serializes the answer, and the
response carries BentoML's ``Server`` header. The body is the same bytes; the one difference is
framing: a ``Content-Length`` instead of chunked transfer encoding.

Only async routes are served here: a sync one (``/score_batch``, ``/score_events``) would need
BentoML's own thread limiter, which is not reachable, and a second limiter would let two sync
calls run at once; for those milliseconds-long requests the framework's share is small anyway.

Anything else goes to BentoML unchanged, with the body replayed: other routes and methods, a
body that does not validate (BentoML's 400, with its wording and ``detail``), and a service
method that raises (it runs again under BentoML, which answers as it always does: a request
that failed after its prediction-log row was queued, a 500 either way, would be logged twice).
Before the service instance exists (:func:`serve` not yet called) every request goes to
BentoML.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from _bentoml_sdk.io_models import IORootModel
from pydantic import ValidationError

from serving.auth import ASGIApp, Message, Receive, Scope, Send

ROUTES = ("/score",)
"""The routes served here when valid; their service methods are named like the route and are
``async def``."""


class _Route:
    """What answering one route takes, looked up once: its function and its specs."""

    def __init__(self, service: Any, name: str) -> None:
        method = service.apis[name]
        if not inspect.iscoroutinefunction(method.func):
            raise TypeError(f"{name} is not async: the fast path serves async routes only")
        self.func: Callable[..., Any] = method.func
        self.input_spec = method.input_spec
        self.output_spec = method.output_spec
        self.root_input = bool(getattr(method.input_spec, "__root_input__", False))
        self.media_type = method.output_spec.mime_type().encode()


class _Served:
    """The worker's service instance and its routes, set by :func:`serve`."""

    def __init__(self, service: Any, instance: Any) -> None:
        self.instance = instance
        self.routes = {route: _Route(service, route[1:]) for route in ROUTES}
        self.server_header = f"BentoML Service/{service.name}".encode()


_served: _Served | None = None


def serve(service: Any, instance: Any) -> None:
    """Answer the fast routes with ``instance``, the worker's object of the BentoML
    ``service`` (called from its ``__init__``): BentoML builds middleware from the class
    alone, before the instance exists."""
    global _served
    _served = _Served(service, instance)


class FastScoreMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = _served
        route = (
            served.routes.get(scope.get("path", ""))
            if served is not None and scope["type"] == "http" and scope.get("method") == "POST"
            else None
        )
        if route is None or served is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(chunks, receive, message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        answer = await _answer(served, route, body)
        if answer is None:
            await self.app(scope, _replay([body], receive, None), send)
            return
        payload, status = answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", route.media_type),
                    (b"server", served.server_header),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _answer(served: _Served, route: _Route, body: bytes) -> tuple[bytes, int] | None:
    """The response body and status, or None to let BentoML answer (see the module doc)."""
    try:
        data = route.input_spec.model_validate_json(body or b"{}")
    except ValidationError:
        return None
    if not route.root_input:
        return None
    argument = getattr(data, "root", data)
    try:
        output = await route.func(served.instance, argument)
    except Exception:  # BentoML answers it (its status, body and log line)
        return None
    # BentoML's IODescriptor.to_http_response and JSONSerde.serialize_model, for a model.
    spec = route.output_spec
    if issubclass(spec, IORootModel) and not isinstance(output, IORootModel):
        output = spec(output)
    excluded = set(getattr(output, "multipart_fields", set()))
    return output.model_dump_json(exclude=excluded).encode("utf-8"), 200


def _replay(chunks: list[bytes], receive: Receive, last: Message | None) -> Receive:
    """A ``receive`` that gives back what was already read, then defers to the real one."""
    pending = list(chunks)

    async def replay() -> Message:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        nonlocal last
        if last is not None:
            message, last = last, None
            return message
        return await receive()

    return replay
