"""A TCP relay in front of ``bentoml serve``, so ``make demo`` can swap Bentos without a gap.

The public port belongs to the relay; each Bento is served on a private loopback port. Switching
to a new Bento is pointing the relay at the new port once it answers ``/readyz``: connections
opened from then on reach the new server, connections already open finish on the old one, which
is then stopped gracefully. Bytes are relayed as they are (no HTTP parsing), so every route,
streaming and keep-alive behave as with ``bentoml serve`` alone.

A production deployment needs none of this: a new image per Bento behind a load balancer with a
rolling update does the same (README, "The demo's service follows the champion").
"""

from __future__ import annotations

import asyncio
import threading

CHUNK_BYTES = 64 * 1024


class TcpRelay:
    """Accepts on ``host:port`` and relays each connection to ``127.0.0.1:<target>``."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:
        self.port = port
        self.host = host
        self.target: int | None = None
        """The backend's port; None refuses connections (closed at once)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the public port and relay in a daemon thread (raises if the port is taken)."""
        bound = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                server = loop.run_until_complete(
                    asyncio.start_server(self._relay, self.host, self.port)
                )
            except OSError as error:
                failure.append(error)
                bound.set()
                return
            bound.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="bento-relay", daemon=True)
        self._thread.start()
        bound.wait()
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _relay(self, client_reader, client_writer) -> None:
        target = self.target
        try:
            if target is None:
                return
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                return
            try:
                await asyncio.gather(
                    _pipe(client_reader, server_writer), _pipe(server_reader, client_writer)
                )
            finally:
                server_writer.close()
        finally:
            client_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on (HTTP clients may shut their write side)."""
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
