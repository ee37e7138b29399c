"""Prometheus metrics labelled by route, never by the raw request path.

BentoML 1.4's service app puts ``RunnerTrafficMetricsMiddleware``
(``bentoml._internal.server.http.instruments``) outermost, before any middleware of ours, and it
labels ``request_total``, ``request_duration_seconds`` and ``request_in_progress`` with
``endpoint=scope["path"]``: every distinct path a client invents is a new series in every
worker's memory, in the multiprocess files under ``$BENTOML_HOME/prometheus_multiproc_dir`` and
in each ``/metrics`` answer. 400 requests to distinct unknown paths (401s or 404s alike) grew a
worker by 670 MiB, ``/metrics`` to 482 MB and the directory to 600 MB.

:func:`install` replaces that class, where BentoML looks it up when it builds the app, by
:class:`RouteLabelledMetricsMiddleware`: the same middleware, shown the *route* the request
matches in the Starlette app (``/score``, ``/static_content`` for the mount,
:data:`UNMATCHED` for anything that matches no route) instead of the path, while the app
behind it still sees the real path. The number of series is then bounded by the routes, the
methods' status codes and the workers, whatever clients send.
"""

from __future__ import annotations

from typing import Any

from serving.auth import ASGIApp, Receive, Scope, Send

UNMATCHED = "/__unmatched__"
"""The one label of every request that matches no route."""
REAL_PATH = "churn.real_path"
"""Scope key carrying the request's path past the metrics middleware."""

try:
    from bentoml._internal.server.http import instruments
    from starlette.routing import Match
except ImportError:  # pragma: no cover - BentoML is a dependency of the service
    instruments = None  # type: ignore[assignment]


_EXACT: dict[tuple[int, str], str] = {}
"""Paths that are a route's own template, per router: the hot routes skip the route scan. Only
such paths are kept, so the table is bounded by the routes, whatever clients send."""


def route_label(scope: Scope) -> str:
    """The path template of the first route of the Starlette app that matches ``scope`` fully
    or by path only (a wrong method is still that route's request), else :data:`UNMATCHED`."""
    router = getattr(scope.get("app"), "router", None)
    path = scope.get("path", "")
    known = _EXACT.get((id(router), path))
    if known is not None:
        return known
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match != Match.NONE:
            label = str(getattr(route, "path", UNMATCHED))
            if label == path:
                _EXACT[(id(router), path)] = label
            return label
    return UNMATCHED


class _RestorePath:
    """Between the metrics middleware and the rest of the app: the real path back in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if REAL_PATH in scope:
            real = scope[REAL_PATH]
            scope = {k: v for k, v in scope.items() if k != REAL_PATH}
            scope["path"] = real
        await self.app(scope, receive, send)


if instruments is not None:
    _Base: Any = instruments.RunnerTrafficMetricsMiddleware

    class RouteLabelledMetricsMiddleware(_Base):  # type: ignore[misc,valid-type]
        """BentoML's traffic metrics with ``endpoint`` = the route (see the module docstring)."""

        def __init__(self, app: ASGIApp, **options: Any) -> None:
            super().__init__(_RestorePath(app), **options)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                label = route_label(scope)
                if label != scope["path"]:
                    scope = {**scope, "path": label, REAL_PATH: scope["path"]}
            await super().__call__(scope, receive, send)


def install() -> bool:
    """Make BentoML build :class:`RouteLabelledMetricsMiddleware` instead of its own; call it
    before the app is built (importing ``serving.service`` does). Idempotent."""
    if instruments is None:
        return False
    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetricsMiddleware
    return True
