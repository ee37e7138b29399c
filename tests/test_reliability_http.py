"""The HTTP boundary against cheap denial of service (issue 28 items 2-5, 7, 8), at the level of
the pieces: our ASGI middleware and the uvicorn protocol on a real uvicorn on loopback, spoken
to with raw sockets. The served Bento is exercised in ``test_reliability_http_served.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from serving import http_limits
from serving.auth import ApiKeyMiddleware
from serving.config import SettingError, configured_limits, load_serving_settings
from serving.errors import BoundedErrorsMiddleware
from serving.limits import BodyLimitMiddleware
from serving.metrics_labels import UNMATCHED, route_label
from serving.ratelimit import RateLimitMiddleware
from tests.serving_support import free_port

HEAD_TIMEOUT = 1.5
BODY_TIMEOUT = 3.0


def call(app, path="/score", *, headers=(), body=b"", client="10.0.0.1", method="POST"):
    """One request through an ASGI app: (status, headers, json body)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": (client, 1234),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(payload)


async def ok_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


@contextlib.contextmanager
def uvicorn_on_loopback(app) -> Iterator[tuple[str, int]]:
    """A real uvicorn with the protocol the service installs (head cap and head timeout)."""
    assert http_limits.install(HEAD_TIMEOUT)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", backlog=4096)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)
        http_limits.install()


def post(address: tuple[str, int], body: bytes = b"{}", path: str = "/score") -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        return sock.recv(65536)


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it still holds the connection."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except OSError:
        pass
    return received


# --- 3. idle uploads -------------------------------------------------------------------------


def test_two_trickling_uploads_neither_lock_others_out_nor_stay(capsys):
    """Two connections announce the largest allowed body and send a few bytes now and then.
    The budget used to be charged by the announced length, so every other POST got 503 busy
    until BentoML's timeout; now only bytes that arrived count, and the tricklers get 408 and
    are closed once they fall below the minimum rate."""
    max_body = 1024 * 1024
    app = BodyLimitMiddleware(
        ok_app,
        max_bytes=max_body,
        max_inflight=max_body + max_body // 2,
        body_timeout=BODY_TIMEOUT,
        min_rate=1024,
    )
    with uvicorn_on_loopback(app) as address:
        tricklers = [socket.create_connection(address, timeout=10) for _ in range(2)]
        started = time.monotonic()
        for sock in tricklers:
            sock.sendall(
                f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: {max_body}\r\n\r\n{{".encode()
            )
        statuses = []
        for _ in range(5):
            time.sleep(0.2)
            for sock in tricklers:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
            statuses.append(post(address, b'{"customer_id": "c1"}')[:12])
        assert statuses == [b"HTTP/1.1 200"] * 5, statuses
        answers = [closed_within(sock, BODY_TIMEOUT + 5) for sock in tricklers]
        held = time.monotonic() - started
        for sock in tricklers:
            sock.close()
    for answer in answers:
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["detail"][0]["type"] == "body_timeout"
        assert "CHURN_MIN_BODY_RATE" in body["detail"][0]["msg"]
    assert held < BODY_TIMEOUT + 2
    assert app.budget.used == 0 and app.too_slow == 2


def test_the_budget_counts_bytes_as_they_arrive():
    """Announced lengths reserve nothing; arrived bytes do, and a body that would push them
    over the budget is 503 with Retry-After."""
    app = BodyLimitMiddleware(ok_app, max_bytes=100, max_inflight=100)
    app.budget.used = 50  # another body's bytes still in flight
    status, _, _ = call(app, headers=[("content-length", "100")], body=b"x" * 40)
    assert status == 200 and app.budget.used == 50  # 100 announced, 40 arrived: it fits
    status, headers, _ = call(app, headers=[("content-length", "60")], body=b"x" * 60)
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert app.budget.used == 50


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"CHURN_HEAD_TIMEOUT_SECONDS": "nan"}, "CHURN_HEAD_TIMEOUT_SECONDS"),
        ({"CHURN_HEAD_TIMEOUT_SECONDS": "0"}, "CHURN_HEAD_TIMEOUT_SECONDS"),
        ({"CHURN_BODY_TIMEOUT_SECONDS": "inf"}, "CHURN_BODY_TIMEOUT_SECONDS"),
        ({"CHURN_BODY_TIMEOUT_SECONDS": "soon"}, "CHURN_BODY_TIMEOUT_SECONDS"),
        ({"CHURN_MIN_BODY_RATE": "-5"}, "CHURN_MIN_BODY_RATE"),
        ({"CHURN_MIN_BODY_RATE": "1.5"}, "CHURN_MIN_BODY_RATE"),
    ],
)
def test_the_timeouts_and_rate_are_validated_naming_the_variable(env, name):
    with pytest.raises(SettingError, match=name):
        load_serving_settings(env)


def test_the_timeouts_and_rate_load():
    settings = load_serving_settings(
        {
            "CHURN_HEAD_TIMEOUT_SECONDS": "5",
            "CHURN_BODY_TIMEOUT_SECONDS": "12.5",
            "CHURN_MIN_BODY_RATE": "2048",
        }
    )
    assert settings.head_timeout_seconds == 5.0
    assert settings.body_timeout_seconds == 12.5
    assert settings.min_body_rate == 2048


# --- 4. chunked trailers ---------------------------------------------------------------------


def test_an_endless_chunked_trailer_is_cut_off_early_and_others_stay_fast():
    """llhttp parses trailers like headers, httptools concatenates each field, and uvicorn
    counted nothing after the head: one trailer was read for as long as the client sent it."""
    with uvicorn_on_loopback(ok_app) as address:
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\nX-Trailer: "
        )
        sent, slowest = 0, 0.0
        piece = b"t" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(piece)
                sent += len(piece)
                if sent % (1024 * 1024) == 0:
                    began = time.monotonic()
                    assert post(address).startswith(b"HTTP/1.1 200")
                    slowest = max(slowest, time.monotonic() - began)
        except OSError:
            pass
        finally:
            sock.close()
    assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes of trailer"
    assert slowest < 1.0


def test_ordinary_chunked_bodies_with_small_chunks_and_a_trailer_still_work():
    chunks = b"".join(b"1\r\nx\r\n" for _ in range(20_000))  # 120 KB of framing, 20 KB of body
    with (
        uvicorn_on_loopback(ok_app) as address,
        socket.create_connection(address, timeout=10) as sock,
    ):
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\nX-Checksum: abc\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


# --- 5. several Content-Type headers ---------------------------------------------------------


@pytest.mark.parametrize(
    "media_types",
    [
        ["application/json", "multipart/form-data; boundary=x"],
        ["multipart/form-data; boundary=x", "application/json"],
        ["application/json", "application/json"],
        ["application/json", "text/plain"],
    ],
)
def test_several_content_types_are_415_whatever_their_order(media_types):
    headers = [("content-type", m) for m in media_types] + [("content-length", "2")]
    for path in ("/score", "/model"):
        status, _, body = call(BodyLimitMiddleware(ok_app), path, headers=headers, body=b"{}")
        assert status == 415
        assert body["detail"][0]["loc"] == ["header", "Content-Type"]


# --- 7. unauthenticated requests are rate-limited --------------------------------------------


def test_requests_without_a_valid_key_are_rate_limited_by_address():
    keys = (b"good-key",)
    limits = configured_limits({"CHURN_RATE_LIMIT": "1/m", "CHURN_RATE_BURST": "2"})
    app = RateLimitMiddleware(ApiKeyMiddleware(ok_app, keys), limits, keys=keys)
    wrong = [("authorization", "Bearer guess")]
    statuses = [call(app, headers=wrong)[0] for _ in range(2)]
    statuses.append(call(app, f"/unknown-{len(statuses)}")[0])  # no key, another path
    assert statuses == [401, 401, 429]
    status, headers, body = call(app, headers=wrong)
    assert status == 429 and int(headers[b"retry-after"]) >= 1
    assert body["detail"][0]["type"] == "rate_limited"
    good = [("authorization", "Bearer good-key")]
    assert call(app, headers=good)[0] == 200  # a valid key has its own bucket
    assert call(app, headers=wrong, client="10.0.0.2")[0] == 401  # another address too
    assert call(app, "/healthz", method="GET")[0] == 200  # probes are never limited


# --- 8. slow heads, and 404 / 405 / 400 in the error shape -----------------------------------


def test_partial_and_silent_heads_are_408_and_closed_after_the_head_timeout():
    with uvicorn_on_loopback(ok_app) as address:
        partial = [socket.create_connection(address, timeout=10) for _ in range(1000)]
        for sock in partial:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        silent = socket.create_connection(address, timeout=10)
        started = time.monotonic()
        answers = [closed_within(sock, HEAD_TIMEOUT + 10) for sock in [*partial, silent]]
        waited = time.monotonic() - started
        assert post(address).startswith(b"HTTP/1.1 200")  # the server still serves
        for sock in [*partial, silent]:
            sock.close()
    assert None not in answers
    assert waited < HEAD_TIMEOUT + 5
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers)
    body = json.loads(answers[0].split(b"\r\n\r\n", 1)[1])
    assert body["detail"][0]["type"] == "head_timeout"
    assert "CHURN_HEAD_TIMEOUT_SECONDS" in body["detail"][0]["msg"]


def test_keep_alive_requests_are_not_cut_by_the_head_timeout():
    with (
        uvicorn_on_loopback(ok_app) as address,
        socket.create_connection(address, timeout=10) as sock,
    ):
        for _ in range(3):  # each head is fast; the connection lives past the timeout
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(HEAD_TIMEOUT * 0.7)


def test_the_parsers_400_has_the_error_shape():
    with (
        uvicorn_on_loopback(ok_app) as address,
        socket.create_connection(address, timeout=10) as sock,
    ):
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        answer = closed_within(sock, 5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 400")
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["detail"][0]["type"] == "invalid_http"


def _routed_app() -> Starlette:
    async def score(request):
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/score", score, methods=["POST"]),
            Mount("/static_content", routes=[Route("/{name}", score)]),
        ]
    )


def test_404_and_405_have_the_error_shape():
    app = BoundedErrorsMiddleware(_routed_app())
    status, _, body = call(app, "/no/such/route")
    assert status == 404 and body["detail"][0] == {
        "type": "not_found",
        "loc": ["path"],
        "msg": body["detail"][0]["msg"],
    }
    status, headers, body = call(app, "/score", method="GET")
    assert status == 405 and body["detail"][0]["type"] == "method_not_allowed"
    assert headers[b"allow"] == b"POST" and headers[b"content-type"] == b"application/json"


# --- 2. metrics labelled by route ------------------------------------------------------------


def test_routes_are_labelled_by_their_template_and_everything_else_as_one():
    app = _routed_app()

    def label(path: str, method: str = "POST") -> str:
        return route_label({"type": "http", "path": path, "method": method, "app": app})

    assert label("/score") == "/score"
    assert label("/score", "GET") == "/score"  # a 405 still belongs to its route
    assert label("/static_content/app.js", "GET") == "/static_content"
    assert {label(f"/probe-{i}") for i in range(400)} == {UNMATCHED}
