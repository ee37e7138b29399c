"""API keys for the scoring routes, as plain ASGI middleware (BentoML's ``add_asgi_middleware``).

When ``CHURN_API_KEYS`` (comma-separated) is set, every request outside :data:`OPEN_PATHS` must
carry ``Authorization: Bearer <key>``; otherwise it gets a 401 before the body is read or the
model touched. Health, readiness, metrics and the OpenAPI document stay open so orchestrators
and humans can probe the service. Keys are compared with ``hmac.compare_digest`` (no timing
oracle) and never logged: neither the configured keys nor the presented one appear in any
message or response.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.config import API_KEYS_ENV
from serving.errors import send_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/"})
OPEN_PREFIXES = ("/static_content/",)


def key_matches(presented: bytes, keys: tuple[bytes, ...]) -> bool:
    """Constant-time per key, and every key is compared, so timing reveals neither which key
    matched nor how much of one did."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class ApiKeyMiddleware:
    """Refuses unauthenticated requests to protected paths with 401 and a JSON body.

    ``keys`` are the service's settings (``ServingSettings.api_keys``, parsed once at startup);
    empty means authentication is off. They are fixed for the app's life: changing
    ``CHURN_API_KEYS`` takes a restart, like every other setting.
    """

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...] = ()) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        keys = self.keys
        if not keys:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and key_matches(token, keys):
            await self.app(scope, receive, send)
            return
        await _unauthorized(send, "missing" if token is None else "invalid")


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


async def _unauthorized(send: Send, problem: str) -> None:
    await send_error(
        send,
        401,
        f"{problem} API key",
        kind="unauthorized",
        loc=["header", "Authorization"],
        msg=f"send 'Authorization: Bearer <key>' with one of the keys in {API_KEYS_ENV}",
        headers=[(b"www-authenticate", b'Bearer realm="churn"')],
    )
