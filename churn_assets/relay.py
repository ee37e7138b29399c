"""A TCP relay in front of ``bentoml serve``, so ``make demo`` can swap Bentos without a gap.

The public port belongs to the relay; each Bento is served on a private loopback port. Switching
to a new Bento is pointing the relay at the new port once it answers ``/readyz``: connections
opened from then on reach the new server, connections already open finish on the old one, which
is then stopped gracefully. Bytes are relayed as they are (no HTTP parsing), so every route,
streaming and keep-alive behave as with ``bentoml serve`` alone.

A production deployment needs none of this: a new image per Bento behind a load balancer with a
rolling update does the same (README, "The demo's service follows the champion").

Bounded like a server, because it is one: it binds ``127.0.0.1`` unless told otherwise
(``CHURN_BENTO_HOST``, e.g. ``0.0.0.0`` to reach the demo from another machine), closes a
connection on which no byte moved for ``idle_seconds`` either way (a client that opens a socket
and goes silent would otherwise hold two file descriptors forever: the service's own timeouts
never see it while the relay's backend socket is idle too), and accepts at most
``max_connections`` at once (further ones are closed at once; the Bento's own limits answer the
rest with 503). Stopping cancels every connection task and waits for it before the loop
closes, so Python never reports "Task was destroyed but it is pending!" per open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

CHUNK_BYTES = 64 * 1024
IDLE_SECONDS = 120.0
"""No byte in either direction for this long closes the connection (longer than any scoring
request takes; uvicorn's own keep-alive timeout closes idle HTTP connections much sooner)."""
MAX_CONNECTIONS = 512
"""Open connections at once; each holds two sockets (well under a default 1,024-descriptor
limit)."""
LOOPBACK = "127.0.0.1"


class TcpRelay:
    """Accepts on ``host:port`` and relays each connection to ``127.0.0.1:<target>``."""

    def __init__(
        self,
        port: int,
        host: str = LOOPBACK,
        idle_seconds: float = IDLE_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.port = port
        self.host = host
        self.idle_seconds = idle_seconds
        self.max_connections = max_connections
        self.target: int | None = None
        """The backend's port; None refuses connections (closed at once)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        """Connections being relayed now (read from any thread; a snapshot)."""
        return len(self._connections)

    def start(self) -> None:
        """Bind the public port and relay in a daemon thread (raises if the port is taken)."""
        bound = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(bound))
            except OSError as error:
                failure.append(error)
                bound.set()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="bento-relay", daemon=True)
        self._thread.start()
        bound.wait()
        if failure:
            raise failure[0]

    async def _serve(self, bound: threading.Event) -> None:
        """Accept until :meth:`stop`, then close the listener and every connection, waiting
        for their tasks: nothing is left pending when the loop closes."""
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._accept, self.host, self.port)
        bound.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    def stop(self) -> None:
        """Stop accepting, end every open connection, and wait (up to 10 s) for the thread."""
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or thread is None or not thread.is_alive() or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            await _close(client_writer)
            return
        self._connections.add(task)
        try:
            await self._relay(client_reader, client_writer)
        except asyncio.CancelledError:
            pass  # stop(): the connection ends here, quietly
        finally:
            self._connections.discard(task)

    async def _relay(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        target = self.target
        server_writer: asyncio.StreamWriter | None = None
        try:
            if target is None:
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(LOOPBACK, target)
            except OSError:
                return
            activity = _Activity(asyncio.get_running_loop())
            pipes = [
                asyncio.ensure_future(_pipe(client_reader, server_writer, activity)),
                asyncio.ensure_future(_pipe(server_reader, client_writer, activity)),
            ]
            try:
                await _until_done_or_idle(pipes, activity, self.idle_seconds)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            if server_writer is not None:
                await _close(server_writer)
            await _close(client_writer)


class _Activity:
    """When a byte last moved on a connection, in the loop's clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.last = loop.time()

    def touch(self) -> None:
        self.last = self._loop.time()

    def idle_for(self) -> float:
        return self._loop.time() - self.last


async def _until_done_or_idle(
    pipes: list[asyncio.Future[None]], activity: _Activity, idle_seconds: float
) -> None:
    """Wait until both directions reached EOF, or neither moved a byte for ``idle_seconds``."""
    pending = set(pipes)
    while pending:
        timeout = max(idle_seconds - activity.idle_for(), 0.0)
        _, pending = await asyncio.wait(pending, timeout=timeout)
        if pending and activity.idle_for() >= idle_seconds:
            return


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity: _Activity
) -> None:
    """Copy until EOF, then pass the half-close on (HTTP clients may shut their write side)."""
    try:
        while data := await reader.read(CHUNK_BYTES):
            activity.touch()
            writer.write(data)
            await writer.drain()
            activity.touch()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait for the transport to finish (bounded: a peer that stopped reading)."""
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
