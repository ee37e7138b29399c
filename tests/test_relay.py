"""The demo's TCP relay (``churn_assets.relay``) is bounded (issue 28, item 9): loopback by
default, idle connections closed, a connection cap, and a quiet stop. Real sockets on loopback,
a real echo server behind the relay."""

from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from churn.settings import load_settings
from churn_assets.relay import TcpRelay
from tests.serving_support import free_port


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@contextmanager
def relayed(**options: float) -> Iterator[TcpRelay]:
    """An echo server behind a started relay; both stopped afterwards."""
    backend = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    backend.daemon_threads = True
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    relay = TcpRelay(free_port(), **options)
    relay.target = backend.server_address[1]
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
        backend.shutdown()
        backend.server_close()


def _connect(relay: TcpRelay) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    return sock


def _echoes(sock: socket.socket, data: bytes = b"ping") -> bool:
    try:
        sock.sendall(data)
        return sock.recv(64) == data
    except OSError:
        return False


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the peer closes ``sock`` within ``seconds`` (EOF or reset)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(64) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def _wait(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_binds_loopback_by_default_and_the_setting_widens_it():
    assert load_settings({}).bento_host == "127.0.0.1"
    assert load_settings({"CHURN_BENTO_HOST": "0.0.0.0"}).bento_host == "0.0.0.0"
    with pytest.raises(ValueError, match="CHURN_BENTO_HOST"):
        load_settings({"CHURN_BENTO_HOST": "not a host!"})
    with relayed() as relay:
        assert relay.host == "127.0.0.1"
        with _connect(relay) as sock:
            assert _echoes(sock)
        outward = _outward_address()
        if outward is not None:  # reachable from the network before: bound 0.0.0.0
            with pytest.raises(OSError):
                socket.create_connection((outward, relay.port), timeout=2).close()


def test_an_idle_connection_is_closed_and_a_busy_one_is_not():
    with relayed(idle_seconds=0.5) as relay:
        with _connect(relay) as idle, _connect(relay) as busy:
            started = time.monotonic()
            while time.monotonic() - started < 1.5:  # three idle periods, talking throughout
                assert _echoes(busy)
                time.sleep(0.1)
            assert _closed_within(idle, 3.0)
            assert _echoes(busy)
        assert _wait(lambda: relay.open_connections == 0, 5)


def test_connections_beyond_the_cap_are_closed_at_once():
    with relayed(max_connections=2) as relay:
        first, second = _connect(relay), _connect(relay)
        try:
            assert _echoes(first) and _echoes(second)
            assert relay.open_connections == 2
            with _connect(relay) as third:
                assert _closed_within(third, 3.0)
            assert _echoes(first) and _echoes(second)
        finally:
            first.close()
            second.close()
        assert _wait(lambda: relay.open_connections == 0, 5)
        with _connect(relay) as again:  # room again once they closed
            assert _echoes(again)


STOP_WITH_OPEN_CONNECTIONS = textwrap.dedent(
    """
    import gc, socket, socketserver, sys, threading, time
    from churn_assets.relay import TcpRelay

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(65536):
                self.request.sendall(data)

    backend = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    backend.daemon_threads = True
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    relay = TcpRelay(int(sys.argv[1]))
    relay.target = backend.server_address[1]
    relay.start()
    clients = [socket.create_connection(("127.0.0.1", relay.port)) for _ in range(5)]
    for client in clients:
        client.sendall(b"x")
        assert client.recv(8) == b"x"
    started = time.monotonic()
    relay.stop()
    print(f"stopped in {time.monotonic() - started:.2f} s", flush=True)
    gc.collect()
    """
)


def test_stopping_with_open_connections_is_quiet_and_prompt():
    """Before: one "Task was destroyed but it is pending!" per open connection on stop."""
    done = subprocess.run(
        [sys.executable, "-c", STOP_WITH_OPEN_CONNECTIONS, str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Task was destroyed" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    seconds = float(done.stdout.split()[2])
    assert seconds < 5, done.stdout
