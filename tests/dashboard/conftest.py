"""Fixtures of the dashboard tests: `interlock serve` in a process of its own (restartable
on the same port, with a journal and a tokens file if asked), lock clients in processes of
their own (client.py), and Debian's Chromium driven by Playwright (no browser download:
`executable_path`). Run through run.sh, which installs and builds all of it."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/interlock-target")
BINARY = Path(os.environ.get("INTERLOCK_BIN") or TARGET / "debug/interlock")
CHROMIUM = os.environ.get("INTERLOCK_CHROMIUM") or "/usr/bin/chromium"
# Without the background-networking flags Chromium waits on services it cannot reach (the
# lab and CI machines have no internet). Playwright gives every launch a fresh, temporary
# user-data-dir of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "admin-token-0123456789abcdef"
CLIENT_TOKEN = "client-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"


def wait_until(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Polls `check` until it returns something true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Server:
    """`interlock serve` in its own process; `restart()` brings it back on the same port."""

    def __init__(self, tmp: Path, tokens: bool = False, journal: bool = False) -> None:
        self.args = [str(BINARY), "serve", "--grace", "30"] if journal else [str(BINARY), "serve"]
        if tokens:
            path = tmp / "tokens"
            path.write_text(f"admin {ADMIN_TOKEN}\nclient {CLIENT_TOKEN}\nread {READ_TOKEN}\n")
            self.args += ["--tokens", str(path)]
        if journal:
            self.args += ["--journal", str(tmp / "locks.db")]
        self.log = open(tmp / "server.log", "ab")
        self.proc: Optional[subprocess.Popen[str]] = None
        self.url = ""
        self.start("127.0.0.1:0")

    def start(self, bind: str) -> None:
        self.proc = subprocess.Popen(
            [*self.args, "--bind", bind], stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("interlock serving at "), f"server said {line!r}"
        self.url = line.split()[-1]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        self.start(self.url.removeprefix("http://"))

    def http(self, method: str, path: str, body: Any = None, token: Optional[str] = None,
             headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
        """One call of the HTTP API: (status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def close(self) -> None:
        self.stop()
        self.log.close()


class Client:
    """A lock client in its own process (client.py), as another program on the lab PC."""

    def __init__(self, server: Server, name: str, metadata: Optional[dict[str, Any]] = None,
                 token: Optional[str] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "client.py"), server.url, token or "-", name,
             json.dumps(metadata or {})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.session = self.expect("ready")["session"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def expect(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next report of kind `event` (earlier reports of other kinds are kept)."""
        for seen in self.seen:
            if seen["event"] == event:
                self.seen.remove(seen)
                return seen
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"client: no {event!r} within {timeout} s; saw {self.seen}")
            if got["event"] == event:
                return got
            if got["event"] == "error":
                raise AssertionError(f"client error: {got}")
            self.seen.append(got)

    def send(self, op: str, resource: str = "", **options: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "resource": resource, **options}) + "\n")
        self.proc.stdin.flush()

    def acquire(self, resource: str, **options: Any) -> dict[str, Any]:
        self.send("acquire", resource, **options)
        return self.expect("acquired")

    def enqueue(self, resource: str, **options: Any) -> dict[str, Any]:
        self.send("enqueue", resource, **options)
        return self.expect("queued")

    def release(self, resource: str) -> None:
        self.send("release", resource)
        self.expect("released")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(**kw: Any) -> Server:
        servers.append(Server(tmp_path, **kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(*args: Any, **kw: Any) -> Client:
        clients.append(Client(*args, **kw))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run tests/dashboard/run.sh, which installs it")
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


class Watched:
    """A page and what it did: the dialogs it opened, its console errors (a violation of
    the Content-Security-Policy is one), every URL it requested."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page: Page = context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, d: Any) -> None:
        self.dialogs.append(d.message)
        d.dismiss()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Watched]]:
    """`open_page(url, width=1280, height=800)`: a page in a context of its own (its own
    cookies), at `url`."""
    contexts: list[BrowserContext] = []

    def make(url: str, width: int = 1280, height: int = 800) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        w = Watched(context)
        w.page.goto(url)
        return w

    yield make
    for c in contexts:
        c.close()


def tmux_available() -> bool:
    return shutil.which("tmux") is not None
