"""What an attacker and a bad day found, at the level of the pieces: the ASGI limits, the
settings, the rate-limit table, bounded refusals and the request-head cap (a real uvicorn on
loopback). The served Bento is exercised in ``test_reliability_serving.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from pydantic import BaseModel, ConfigDict

from churn.settings import load_settings
from serving import http_limits
from serving.config import (
    FORWARDED_ALLOW_IPS_ENV,
    SettingError,
    apply_trusted_proxies,
    configured_limits,
    load_serving_settings,
)
from serving.errors import MAX_LOC_TEXT, BoundedErrorsMiddleware, ClientErrorLogFilter
from serving.limits import BodyLimitMiddleware
from serving.ratelimit import RateLimitMiddleware
from tests.serving_support import free_port


def call(app, path="/score", *, headers=(), body=b"", client="10.0.0.1", chunks=None):
    """One request through an ASGI app: (status, headers, body)."""
    sent: list[dict] = []
    parts = chunks if chunks is not None else [body]

    async def receive():
        if parts:
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(parts)}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": (client, 1234),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), payload


async def ok_app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


# --- 13. settings ----------------------------------------------------------------------------


class TestSettingsAreValidatedNamingTheVariable:
    @pytest.mark.parametrize(
        ("env", "name"),
        [
            ({"CHURN_RATE_LIMIT": "10/s", "CHURN_RATE_BURST": "nan"}, "CHURN_RATE_BURST"),
            ({"CHURN_RATE_LIMIT": "10/s", "CHURN_RATE_BURST": "inf"}, "CHURN_RATE_BURST"),
            ({"CHURN_RATE_LIMIT": "10/s", "CHURN_RATE_BURST": "0.5"}, "CHURN_RATE_BURST"),
            ({"CHURN_RATE_LIMIT": "0/s"}, "CHURN_RATE_LIMIT"),
            ({"CHURN_RATE_LIMIT": "fast"}, "CHURN_RATE_LIMIT"),
            ({"CHURN_RATE_LIMIT_KEYS": "k=5/s:nan"}, "CHURN_RATE_LIMIT_KEYS"),
            ({"CHURN_MAX_BODY_BYTES": "-1"}, "CHURN_MAX_BODY_BYTES"),
            ({"CHURN_MAX_BODY_BYTES": "0"}, "CHURN_MAX_BODY_BYTES"),
            ({"CHURN_MAX_BODY_BYTES": "1e6"}, "CHURN_MAX_BODY_BYTES"),
            ({"CHURN_MAX_INFLIGHT_BYTES": "nan"}, "CHURN_MAX_INFLIGHT_BYTES"),
            (
                {"CHURN_MAX_BODY_BYTES": "1000", "CHURN_MAX_INFLIGHT_BYTES": "999"},
                "CHURN_MAX_INFLIGHT_BYTES",
            ),
            ({"CHURN_TRUSTED_PROXIES": "10.0.0.1, proxy.local"}, "CHURN_TRUSTED_PROXIES"),
            ({"CHURN_SERVING_MODE": "shadowy"}, "CHURN_SERVING_MODE"),
        ],
    )
    def test_bad_serving_values_stop_startup_naming_the_variable(self, env, name):
        with pytest.raises(SettingError, match=name):
            load_serving_settings(env)

    def test_canary_fraction_must_be_finite(self):
        with pytest.raises(ValueError, match="CHURN_CANARY_FRACTION"):
            load_serving_settings(
                {"CHURN_SERVING_MODE": "canary", "CHURN_CANARY_FRACTION": "nan"},
                has_challenger=True,
            )

    def test_good_values_load(self):
        settings = load_serving_settings(
            {
                "CHURN_RATE_LIMIT": "100/s",
                "CHURN_RATE_BURST": "200",
                "CHURN_MAX_BODY_BYTES": "1048576",
                "CHURN_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            }
        )
        assert settings.max_body_bytes == 1048576
        assert settings.max_inflight_bytes >= settings.max_body_bytes
        assert settings.trusted_proxies == ("10.0.0.0/8", "::1")

    @pytest.mark.parametrize(
        "name", ["CHURN_CUSTOMERS", "CHURN_MONTHS", "CHURN_HORIZON_DAYS", "CHURN_SEED"]
    )
    def test_pipeline_sizes_are_checked_too(self, name):
        with pytest.raises(ValueError, match=name):
            load_settings({name: "-1"})


# --- 11. rate limits -------------------------------------------------------------------------


class TestRateLimitCallers:
    def test_forwarded_headers_are_trusted_only_from_configured_proxies(self, monkeypatch):
        monkeypatch.setenv(FORWARDED_ALLOW_IPS_ENV, "127.0.0.1")  # uvicorn's own default
        apply_trusted_proxies(load_serving_settings({}).trusted_proxies)
        assert uvicorn.Config(ok_app).forwarded_allow_ips == ""
        apply_trusted_proxies(
            load_serving_settings({"CHURN_TRUSTED_PROXIES": "10.1.0.0/16"}).trusted_proxies
        )
        assert uvicorn.Config(ok_app).forwarded_allow_ips == "10.1.0.0/16"

    def test_the_bucket_table_is_bounded_and_keeps_recent_callers(self, monkeypatch):
        from serving import ratelimit

        monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 3)
        app = RateLimitMiddleware(ok_app, configured_limits({"CHURN_RATE_LIMIT": "1/m"}))
        assert call(app, client="10.0.0.1")[0] == 200
        for n in range(2, 50):  # a flood of new callers
            call(app, client=f"10.0.1.{n}")
            assert len(app.buckets) <= 3
        assert call(app, client="10.0.1.49")[0] == 429  # a recent caller keeps its bucket


# --- 6. media types, 8. bytes in flight ------------------------------------------------------


class TestBodyLimits:
    @pytest.mark.parametrize(
        "media_type",
        [
            "multipart/form-data; boundary=x",
            "multipart/form-data",  # no boundary
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/vnd.bentoml+pickle",
        ],
    )
    def test_non_json_bodies_are_415_before_parsing(self, media_type):
        status, _, body = call(
            BodyLimitMiddleware(ok_app),
            headers=[("content-type", media_type), ("content-length", "3")],
            body=b"a=1",
        )
        assert status == 415
        assert json.loads(body)["detail"][0]["loc"] == ["header", "Content-Type"]

    def test_json_and_absent_media_types_pass(self):
        app = BodyLimitMiddleware(ok_app)
        for headers in ([("content-type", "application/json; charset=utf-8")], []):
            assert call(app, headers=[*headers, ("content-length", "2")], body=b"{}")[0] == 200

    def test_bytes_in_flight_are_bounded_with_retry_after(self):
        release = asyncio.Event()

        async def slow_app(scope, receive, send):
            await receive()
            await release.wait()
            await ok_app(scope, lambda: _done(), send)

        async def _done():
            return {"type": "http.request", "body": b"", "more_body": False}

        app = BodyLimitMiddleware(slow_app, max_bytes=100, max_inflight=150)

        async def scenario():
            results = []

            async def one(size):
                sent = []

                async def receive():
                    return {"type": "http.request", "body": b"x" * size, "more_body": False}

                async def send(message):
                    sent.append(message)

                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/score_events",
                    "headers": [(b"content-length", str(size).encode())],
                }
                await app(scope, receive, send)
                results.append((size, sent[0]["status"], dict(sent[0]["headers"])))

            first = asyncio.create_task(one(100))
            await asyncio.sleep(0.01)
            await one(100)  # would make 200 > 150 in flight: refused at once
            small = asyncio.create_task(one(40))  # a small one still fits beside the big one
            await asyncio.sleep(0.01)
            in_flight = app.budget.used
            release.set()
            await asyncio.gather(first, small)
            await one(100)  # the budget came back
            return results, in_flight

        results, in_flight = asyncio.run(scenario())
        statuses = [(size, status) for size, status, _ in results]
        assert in_flight == 140
        assert statuses[0] == (100, 503)
        assert sorted(statuses[1:]) == [(40, 200), (100, 200), (100, 200)]
        assert results[0][2][b"retry-after"] == b"1"
        assert app.budget.used == 0

    def test_chunked_bodies_count_against_the_budget(self):
        app = BodyLimitMiddleware(ok_app, max_bytes=100, max_inflight=100)
        assert call(app, chunks=[b"x" * 40, b"x" * 40])[0] == 200
        assert call(app, chunks=[b"x" * 60, b"x" * 60])[0] == 413
        assert app.budget.used == 0


# --- 12. bounded refusals --------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestRefusalsAreBounded:
    def test_a_huge_key_is_not_echoed_whole(self):
        key = "k" * 900_000

        async def refusing_app(scope, receive, send):
            body = json.dumps(
                {
                    "error": "1 validation error",
                    "detail": [{"type": "extra_forbidden", "loc": [key], "msg": "Extra inputs"}],
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        status, headers, body = call(BoundedErrorsMiddleware(refusing_app))
        assert status == 400 and len(body) < 1000
        assert int(headers[b"content-length"]) == len(body)
        loc = json.loads(body)["detail"][0]["loc"][0]
        assert loc.startswith("k" * MAX_LOC_TEXT) and "900000 chars" in loc

    def test_client_errors_log_one_bounded_line_without_traceback(self):
        try:
            _Strict.model_validate({"x" * 900_000: 1})
        except Exception as error:  # the ValidationError BentoML would log
            exc_info = (type(error), error, error.__traceback__)
        record = logging.LogRecord(
            "bentoml._internal.server.http_app",
            logging.ERROR,
            __file__,
            1,
            "Exception on %s [%s]",
            ("/model", "POST"),
            exc_info,
        )
        assert ClientErrorLogFilter().filter(record)
        text = logging.Formatter().format(record)
        assert record.levelno == logging.INFO and "Traceback" not in text
        assert len(text) < 400 and "/model" in text

    def test_server_errors_keep_their_traceback(self):
        try:
            raise RuntimeError("boom")
        except RuntimeError as error:
            exc_info = (type(error), error, error.__traceback__)
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/score", "POST"), exc_info
        )
        ClientErrorLogFilter().filter(record)
        assert "Traceback" in logging.Formatter().format(record)


# --- 7. request-head cap ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bounded_server() -> Iterator[str]:
    """A real uvicorn on loopback with the protocol the service installs."""
    assert http_limits.install()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await ok_app(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def raw_request(address: str, head: bytes, body: bytes = b"{}") -> bytes:
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close before reading it all
            sock.sendall(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        return sock.recv(65536)


class TestRequestHeadCap:
    def test_an_oversized_header_is_431_after_the_cap_not_after_the_header(self, bounded_server):
        big = b"a" * (8 * 1024 * 1024)
        answer = raw_request(
            bounded_server, b"POST /score HTTP/1.1\r\nHost: x\r\nX-Junk: " + big + b"\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 431")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"][0]["loc"] == ["header"]

    def test_too_many_headers_is_431(self, bounded_server):
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(http_limits.MAX_HEADERS + 1))
        answer = raw_request(bounded_server, b"POST /score HTTP/1.1\r\nHost: x\r\n" + lines)
        assert answer.startswith(b"HTTP/1.1 431")

    def test_ordinary_requests_and_keep_alive_still_work(self, bounded_server):
        head = b"POST /score HTTP/1.1\r\nHost: x\r\n" + b"X-Fine: " + b"b" * 8000 + b"\r\n"
        assert raw_request(bounded_server, head).startswith(b"HTTP/1.1 200")
        host, port = bounded_server.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            for _ in range(3):  # the per-request counters reset between keep-alive requests
                sock.sendall(
                    b"POST /score HTTP/1.1\r\nHost: x\r\n"
                    + b"X-H: v\r\n" * 90
                    + b"Content-Length: 2\r\n\r\n{}"
                )
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")


# --- 4. a full log backlog refuses scoring ---------------------------------------------------


def test_a_full_prediction_log_backlog_refuses_scoring_with_503(tmp_path, monkeypatch):
    from churn.monitoring.prediction_log import PredictionLogWriter
    from serving import prediction_logging

    folder = tmp_path / "prediction_logs"
    folder.write_text("in the way")
    writer = PredictionLogWriter(folder, flush_seconds=0.01, max_buffered=2)
    monkeypatch.setattr(prediction_logging, "_current", writer)
    app = prediction_logging.LogBacklogMiddleware(ok_app)
    try:
        writer.write([{"customer_id": "a"}])
        assert call(app)[0] == 200  # room left
        writer.write([{"customer_id": "b"}])
        status, headers, body = call(app)
        assert status == 503 and headers[b"retry-after"] == b"5"
        assert json.loads(body)["detail"][0]["type"] == "log_unavailable"
        assert "in the way" not in body.decode() and str(tmp_path) not in body.decode()
        assert call(app, "/readyz")[0] == 200  # probes pass; /readyz itself says 503
    finally:
        folder.unlink()
        writer.close()
    assert writer.failures == 0 and writer.buffered == 0  # both rows written at close
