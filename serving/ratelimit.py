"""Per-caller rate limits: a token bucket per API key, as ASGI middleware.

Configuration (parsed once by ``serving.config``, which also holds the parsers; unset = no
limits):

* ``CHURN_RATE_LIMIT`` — ``<n>/s``, ``<n>/m`` or ``<n>/h`` (e.g. ``100/s``): the sustained rate.
* ``CHURN_RATE_BURST`` — bucket size, i.e. how many requests may arrive at once after a quiet
  spell; default: one second's worth of the rate (at least 1).
* ``CHURN_RATE_LIMIT_KEYS`` — optional per-key overrides, ``<key>=<rate>[:<burst>]`` separated by
  commas, e.g. ``batch-job=1000/s:2000,partner=5/s``. Keys are compared by SHA-256 digest and never
  logged.

Who is a caller: with ``CHURN_API_KEYS`` set, a request carrying one of the keys is its key;
any other request (no key, a wrong one) is its client address, and is counted against the
default limit like everyone else's *before* it is refused with 401: this middleware sits
*outside* ``ApiKeyMiddleware``, so a client guessing keys or probing paths gets 429 like any
other caller over its rate, instead of an unlimited stream of 401s (each one costing a
response, a log line and, before route labels, a metrics series). With authentication off,
every caller is its client address (``scope["client"]``): the TCP peer,
unless the peer is listed in ``CHURN_TRUSTED_PROXIES`` (then uvicorn takes the address from its
``X-Forwarded-For``; see ``serving.config``). Nobody is trusted by default: uvicorn's own default
trusts loopback, so a client on the same host (or a local proxy that passes the header through)
could rotate ``X-Forwarded-For`` to get a fresh bucket per request.

A request over its limit gets **429** with ``Retry-After`` (whole seconds until a token is back)
and the usual JSON error body, before the body is read or any model runs: no prediction-log row.
Health, readiness, metrics and the OpenAPI document (``serving.auth.OPEN_PATHS``) are never limited.
One bucket lookup and a little arithmetic per request, in the event loop (no lock needed).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from serving.auth import ASGIApp, Receive, Scope, Send, _is_open, bearer_token, key_matches
from serving.config import (
    Limit,
    RateLimits,
    key_digest,
)
from serving.errors import send_error

MAX_BUCKETS = 100_000
"""Callers tracked at once. Beyond it the least recently seen caller is forgotten (O(1): the
table is kept in recency order). A forgotten caller starts again with a full bucket, so a flood
of new callers can at worst give the *oldest* idle caller a fresh burst, never lift anyone's
rate while they keep calling."""


class TokenBucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now

    def take(self, limit: Limit, now: float) -> float:
        """Take one token; returns 0 when granted, else the seconds until one is available."""
        self.tokens = min(limit.burst, self.tokens + (now - self.updated) * limit.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / limit.rate


class RateLimitMiddleware:
    """429 + ``Retry-After`` for callers over their token bucket; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        limits: RateLimits,
        clock: Callable[[], float] = time.monotonic,
        *,
        keys: tuple[bytes, ...] = (),
    ) -> None:
        """``keys``: the configured API keys (``ServingSettings.api_keys``); a request with
        one of them is counted by its key, every other request by its address."""
        self.app = app
        self.limits = limits
        self.clock = clock
        self.keys = keys
        self.buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self.limited = 0

    def caller(self, scope: Scope) -> bytes:
        if self.keys:
            token = bearer_token(scope)
            if token is not None and key_matches(token, self.keys):
                return b"key:" + key_digest(token)
        client = scope.get("client") or ("unknown", 0)
        return b"addr:" + str(client[0]).encode()

    def limit_for(self, caller: bytes) -> Limit | None:
        if caller.startswith(b"key:"):
            override = self.limits.per_key.get(caller[4:])
            if override is not None:
                return override
        return self.limits.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.limits.enabled or scope["type"] != "http" or _is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        caller = self.caller(scope)
        limit = self.limit_for(caller)
        if limit is None:
            await self.app(scope, receive, send)
            return
        now = self.clock()
        bucket = self.buckets.get(caller)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self.buckets.popitem(last=False)  # the least recently seen caller
            bucket = self.buckets[caller] = TokenBucket(limit.burst, now)
        else:
            self.buckets.move_to_end(caller)
        wait = bucket.take(limit, now)
        if wait == 0.0:
            await self.app(scope, receive, send)
            return
        self.limited += 1
        await _too_many(send, wait, limit)


async def _too_many(send: Send, wait: float, limit: Limit) -> None:
    retry_after = max(1, math.ceil(wait))
    await send_error(
        send,
        429,
        "rate limit exceeded",
        kind="rate_limited",
        loc=["header", "Authorization"],
        msg=f"at most {limit.describe()} per caller; retry in {retry_after} s",
        headers=[(b"retry-after", str(retry_after).encode())],
    )
