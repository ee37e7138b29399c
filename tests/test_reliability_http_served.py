"""The HTTP boundary of the served Bento against cheap denial of service (issue 28 items 2-5, 7,
8): real ``bentoml serve`` processes on loopback, one open and one with API keys and a rate
limit, spoken to over HTTP and raw sockets. The pieces are tested in
``test_reliability_http.py``."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serving_support import Server, bento_tag, serving, start
from tests.test_reliability_http import closed_within

pytestmark = pytest.mark.slow

KEY = "boundary-test-key"
HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 4.0
ROUTES = ("/score", "/score_batch", "/score_events", "/model")


@pytest.fixture(scope="module")
def servers(materialized, tmp_path_factory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("http-boundary")
    timeouts = {
        "CHURN_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "CHURN_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "CHURN_MIN_BODY_RATE": "1024",
    }
    limited = timeouts | {"CHURN_RATE_LIMIT": "20/m", "CHURN_RATE_BURST": "20"}
    tag = bento_tag(materialized)
    with serving(
        {
            "open": start(tag, root / "open", None, timeouts),
            "keyed": start(tag, root / "keyed", KEY, limited),
        }
    ) as started:
        yield started


def _address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _metrics(server: Server) -> str:
    response = httpx.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("name", ["open", "keyed"])
def test_distinct_unknown_paths_add_no_metrics_series(servers, name):
    """Item 2: BentoML labelled its request metrics by raw path, so each invented path was a
    new series in memory, in the multiprocess files and in every /metrics answer."""
    server = servers[name]
    before = _metrics(server)
    marker = f"probe-{uuid.uuid4().hex[:8]}"
    statuses = set()
    with httpx.Client(timeout=30) as client:
        for i in range(400):
            url = f"{server.url}/{marker}-{i}/x"
            response = client.post(url, json={}) if i % 2 else client.get(url)
            statuses.add(response.status_code)
            assert response.headers["content-type"] == "application/json", response.text
    assert statuses <= {401, 404, 405, 429}, statuses
    after = _metrics(server)
    assert marker not in after
    assert 'endpoint="/__unmatched__"' in after
    assert len(after) - len(before) < 20_000, (len(before), len(after))


def test_404_405_and_the_parsers_400_have_the_error_shape(servers):
    url = servers["open"].url
    response = httpx.get(f"{url}/no/such/route", timeout=30)
    assert response.status_code == 404 and response.json()["detail"][0]["loc"] == ["path"]
    response = httpx.get(f"{url}/score", timeout=30)
    assert response.status_code == 405
    assert response.json()["detail"][0]["type"] == "method_not_allowed"
    with socket.create_connection(_address(servers["open"]), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        answer = closed_within(sock, 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 400"), answer
    assert b'"invalid_http"' in answer


def test_several_content_types_are_415_on_every_route(servers):
    """Item 5: the middleware checked the last header, Starlette parsed by the first: a
    multipart first and JSON last was a 500 (``MultiPartException``) on every route."""
    for route in ROUTES:
        for pair in (
            ["multipart/form-data; boundary=zz", "application/json"],
            ["application/json", "application/json"],
        ):
            headers = httpx.Headers([("content-type", value) for value in pair])
            response = httpx.post(
                f"{servers['open'].url}{route}", content=b"{}", headers=headers, timeout=30
            )
            assert response.status_code == 415, (route, pair, response.text)
            assert response.json()["detail"][0]["loc"] == ["header", "Content-Type"]


def test_requests_without_a_valid_key_are_rate_limited(servers):
    """Item 7: 401s were answered without limit; now a caller without a valid key is counted
    by address against the default limit, like everyone else."""
    url = servers["keyed"].url
    statuses = []
    with httpx.Client(timeout=30) as client:
        for i in range(25):
            statuses.append(
                client.post(f"{url}/model", json={}, headers={"Authorization": f"Bearer guess-{i}"})
            )
    codes = [response.status_code for response in statuses]
    assert 429 in codes and set(codes) <= {401, 429}, codes  # earlier tests used the bucket
    limited = statuses[-1]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    ok = httpx.post(f"{url}/model", json={}, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200  # a valid key is its own caller


def test_two_trickling_uploads_do_not_lock_others_out(servers):
    """Item 3: two connections announcing ``Content-Length: 33554431`` and trickling bytes made
    every other POST get 503 busy for 30 s; now they get 408 and are closed."""
    server = servers["open"]
    tricklers = [socket.create_connection(_address(server), timeout=10) for _ in range(2)]
    try:
        for sock in tricklers:
            sock.sendall(
                b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 33554431\r\n\r\n{"
            )
        statuses = []
        for _ in range(4):
            time.sleep(0.3)
            for sock in tricklers:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
            response = httpx.post(  # 3 bytes: with the 2 x 33554431 announced, over 64 MiB
                f"{server.url}/model",
                content=b"{ }",
                headers={"content-type": "application/json"},
                timeout=30,
            )
            statuses.append(response.status_code)
        assert statuses == [200] * 4
        answers = [closed_within(sock, BODY_TIMEOUT + 10) for sock in tricklers]
    finally:
        for sock in tricklers:
            sock.close()
    assert all(a is not None and a.startswith(b"HTTP/1.1 408") for a in answers), answers


def test_slow_and_silent_heads_are_closed_after_the_head_timeout(servers):
    """Item 8: 3,000 partial heads were held for over a minute; a connection that sent nothing
    was held forever."""
    server = servers["open"]
    socks = [socket.create_connection(_address(server), timeout=10) for _ in range(500)]
    try:
        for sock in socks[:-1]:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        answers = [closed_within(sock, HEAD_TIMEOUT + 15) for sock in socks]
        waited = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert None not in answers
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers)
    assert waited < HEAD_TIMEOUT + 10
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200


def test_an_endless_chunked_trailer_is_cut_off_and_livez_stays_fast(servers):
    """Item 4 (no API keys): 154 MiB of trailer was read in 30 s while /livez stalled 11.7 s."""
    server = servers["open"]
    sock = socket.create_connection(_address(server), timeout=10)
    sent, slowest = 0, 0.0
    try:
        sock.sendall(
            b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: "
        )
        piece = b"t" * 65536
        while sent < 64 * 1024 * 1024:
            sock.sendall(piece)
            sent += len(piece)
            if sent % (1024 * 1024) == 0:
                began = time.monotonic()
                assert httpx.get(f"{server.url}/livez", timeout=30).status_code == 200
                slowest = max(slowest, time.monotonic() - began)
    except OSError:
        pass
    finally:
        sock.close()
    assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes of trailer"
    assert slowest < 1.0
