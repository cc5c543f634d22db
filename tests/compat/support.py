"""Helpers of the compat tests: processes (the apps under uvicorn, the workers), an
interlock server, a TCP proxy that can cut the network, and waiting."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

import requests

import interlock

HERE = pathlib.Path(__file__).resolve().parent
MODES = ("embedded", "remote")


def wait_until(
    condition: Callable[[], object], what: str = "condition", limit: float = 15.0
) -> None:
    """Waits for something another process or thread does. The limit only keeps a broken
    test from hanging; nothing here measures speed."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """A child process whose output (stdout and stderr) goes to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        log: pathlib.Path,
        env: Optional[dict[str, str]] = None,
        exe: str = sys.executable,
    ):
        self.log = log
        self._out = open(log, "ab")
        self.popen = subprocess.Popen(
            [exe, *argv],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=HERE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def line(self, prefix: str, limit: float = 15.0) -> str:
        """The rest of the first output line that starts with `prefix` (waits for it)."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [
                ln[len(prefix) :] for ln in self.output().splitlines() if ln.startswith(prefix)
            ]
            if not found and self.popen.poll() is not None:
                raise AssertionError(f"the process ended without {prefix!r}:\n{self.output()}")
            return bool(found)

        wait_until(seen, f"output {prefix!r}", limit)
        return found[0]

    def wait(self, limit: float = 60.0) -> int:
        """Waits for it to end by itself; its exit code."""
        try:
            code = self.popen.wait(timeout=limit)
        finally:
            self.stop()
        return code

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int:
        """Ends it (SIGTERM, then SIGKILL); its exit code. Twice is harmless."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        return self.popen.returncode

    def kill(self) -> None:
        """Ends it at once, as a crash would: nothing of it runs any more."""
        self.popen.kill()
        self.popen.wait()
        self._out.close()


class Web(Proc):
    """An app under uvicorn on a free port (the port goes last as `--port P`); it is up
    once `health` answers 200."""

    def __init__(self, argv: Sequence[str], log: pathlib.Path, health: str = "/health"):
        self._health = health
        for attempt in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            super().__init__([*argv, "--port", str(self.port)], log)
            try:
                wait_until(self._up, f"{argv} to answer {health}", 30)
                return
            except AssertionError:
                if self.alive() or attempt == 2:  # a port taken meanwhile ends it: retry
                    self.stop()
                    raise AssertionError(self.output()) from None
                self.stop()

    def _up(self) -> bool:
        if not self.alive():
            raise AssertionError(f"the app ended:\n{self.output()}")
        try:
            return requests.get(self.url + self._health, timeout=2).ok
        except requests.ConnectionError:
            return False


class Served:
    """An interlock server in this process (what `interlock serve` is), and its engine."""

    def __init__(self, **config: Any) -> None:
        self.engine = interlock.Engine(**config)
        self.server = self.engine.serve("127.0.0.1:0")
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()
        self.engine.close()


class Proxy:
    """A TCP proxy to 127.0.0.1:`port` whose link can be cut (every connection dropped,
    new ones refused as if the network were down) and restored."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._up = True
        self._socks: list[socket.socket] = []
        self._mutex = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                conn.close()
                continue
            with self._mutex:
                self._socks += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._up = False
        with self._mutex:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


class App:
    """A compat app (tests/compat/apps.py) under uvicorn, on an embedded engine or on a
    server's; `engine_url` reaches the engine it uses either way (the embedded one is
    served too, so that a test can look into it). Every credential a test registers in
    `secrets` is checked to be absent from the app's log when it stops."""

    def __init__(
        self, name: str, mode: str, log: pathlib.Path, *extra: str, health: str = "/health"
    ):
        self.mode = mode
        self.served = Served() if mode == "remote" else None
        argv = ["apps.py", name, *extra]
        if self.served is not None:
            argv += ["--url", self.served.url]
        self.web = Web(argv, log, health)
        self.url = self.web.url
        self.engine_url = (
            self.served.url if self.served is not None else self.web.line("INTERLOCK_URL=")
        )
        self.secrets: set[str] = set()

    def engine(self) -> interlock.Engine:
        """A (remote) engine on the app's engine: close it after use."""
        return interlock.connect(self.engine_url)

    def close(self) -> None:
        self.web.stop()
        log = self.web.output()
        leaked = [s for s in self.secrets if s in log]
        if self.served is not None:
            self.served.close()
        assert not leaked, f"{len(leaked)} credentials in the app's log"
