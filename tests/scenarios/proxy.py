"""A TCP proxy for network cuts between interlock clients and the server.

Runs an asyncio loop on a thread of the test process. Every connection a client makes to
`proxy.port` is forwarded to the server; the test can, at any moment,

- `sever()`: close every connection at once (both sockets are aborted, so each side sees
  a reset). With `refuse=True` (the default) new connections are closed as soon as they
  are accepted until `resume()`: the client's reconnects fail, as against a host that is
  gone.
- `swallow()`: stop forwarding, both ways, while keeping every socket open: bytes stay
  where they are (in the proxy and in the kernel's buffers), as during a partition
  under which TCP keeps retrying. New connections are accepted but carry nothing.
- `sever_after(n)`: sever (as `sever()`) once a connection accepted from then on has
  carried `n` bytes from the server to its client: a cut at a known point of a stream,
  e.g. in the middle of a replay.
- `resume()`: forward again (what was held back is delivered, in order) and accept new
  connections normally.

Each control call returns the `time.time()` at which it took effect on the proxy's
loop; `events` records what happened (accepts, refusals, cuts) for the logs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Optional


class Proxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", name: str = "proxy"):
        self.name = name
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        self.events: list[tuple[float, str]] = []
        self.accepted = 0
        self._refusing = False
        self._flowing: Optional[asyncio.Event] = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        # An armed sever_after: after how many bytes, refuse, and whom to tell when.
        self._trigger: Optional[tuple[int, bool, Future[float]]] = None
        self._server = self._run(self._start())
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # ----- control, from any thread ------------------------------------------------

    def sever(self, refuse: bool = True) -> float:
        """Aborts every connection; with `refuse`, refuses new ones until `resume`."""
        return self._run(self._sever(refuse))

    def swallow(self) -> float:
        """Stops forwarding both ways; sockets stay open."""
        return self._run(self._swallow())

    def sever_after(self, nbytes: int, refuse: bool = True) -> Future[float]:
        """Severs once a connection accepted from now on has carried `nbytes` to its
        client; the future's result is the time it did."""
        done: Future[float] = Future()
        self._run(self._arm((nbytes, refuse, done)))
        return done

    def resume(self) -> float:
        """Forwards again and accepts new connections."""
        return self._run(self._resume())

    def connections(self) -> int:
        return self._run(self._count())

    def close(self) -> None:
        try:
            self._run(self._close(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)

    # ----- the loop's side ---------------------------------------------------------

    def _run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _note(self, what: str) -> float:
        t = time.time()
        self.events.append((t, what))
        return t

    async def _start(self):
        self._flowing = asyncio.Event()
        self._flowing.set()
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _count(self) -> int:
        return len(self._conns)

    async def _sever(self, refuse: bool) -> float:
        self._refusing = refuse
        for client, upstream in list(self._conns):
            client.transport.abort()
            upstream.transport.abort()
        self._conns.clear()
        # A sever also ends a swallow: the held bytes went with the connections.
        assert self._flowing is not None
        self._flowing.set()
        return self._note(f"sever refuse={refuse}")

    async def _arm(self, trigger: tuple[int, bool, Future[float]]) -> None:
        self._trigger = trigger

    async def _swallow(self) -> float:
        assert self._flowing is not None
        self._flowing.clear()
        return self._note("swallow")

    async def _resume(self) -> float:
        assert self._flowing is not None
        self._refusing = False
        self._flowing.set()
        return self._note("resume")

    async def _close(self) -> None:
        self._server.close()
        for client, upstream in list(self._conns):
            client.transport.abort()
            upstream.transport.abort()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self._note("refused a connection")
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError as e:
            self._note(f"upstream unreachable: {e}")
            writer.transport.abort()
            return
        if self._refusing:  # severed while connecting upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.accepted += 1
        self._note(f"accepted connection {self.accepted}")
        conn = (writer, up_writer)
        self._conns.add(conn)
        await asyncio.gather(
            self._pump(reader, up_writer, conn),
            self._pump(up_reader, writer, conn, self._trigger),
        )

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn,
                    trigger: Optional[tuple[int, bool, Future[float]]] = None) -> None:
        flowing = self._flowing
        assert flowing is not None
        carried = 0
        try:
            while True:
                await flowing.wait()
                data = await src.read(65536)
                if not data:
                    break
                # Read just before a swallow began: held until the resume.
                await flowing.wait()
                if conn not in self._conns:
                    break
                dst.write(data)
                await dst.drain()
                carried += len(data)
                if trigger is not None and trigger is self._trigger and carried >= trigger[0]:
                    self._trigger = None
                    trigger[2].set_result(await self._sever(trigger[1]))
                    break
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if conn in self._conns:
                self._conns.discard(conn)
                for w in conn:
                    w.transport.abort()
