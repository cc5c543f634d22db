"""What the journal tests share: the `interlock serve` process (start, kill -9, stop), a
small HTTP client, the sqlite3 command line, file hashes. Every test runs real
processes on real SQLite files in temporary directories."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def server_binary() -> Path:
    """The `interlock` command built by `cargo build -p interlock-cli` (run.sh builds it);
    $INTERLOCK_BIN names another."""
    env = os.environ.get("INTERLOCK_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/interlock-target")
    return target / "debug" / "interlock"


def sqlite3_cli() -> str:
    path = shutil.which("sqlite3")
    if path is None:
        raise RuntimeError("the sqlite3 command line is missing (tests/journal/run.sh installs it)")
    return path


def sqlite3(db: Path, *sql: str, check: bool = True) -> str:
    """Runs the sqlite3 command line on `db` as a user would; returns what it printed."""
    p = subprocess.run([sqlite3_cli(), str(db), *sql], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"sqlite3 {db} {sql}: exit {p.returncode}: {p.stderr}")
    return p.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeError(Exception):
    """`interlock serve` did not start: its exit code and what it said."""

    def __init__(self, code: Optional[int], stderr: str):
        super().__init__(f"interlock serve exited with {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr


class Server:
    """One `interlock serve --journal FILE` process. `port=0` picks a free port at the
    first start; later starts reuse it, so remote clients reconnect by themselves."""

    def __init__(self, journal: Path, port: int = 0, args: tuple[str, ...] = (), log: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None, wrap: tuple[str, ...] = ()):
        self.journal = journal
        self.wrap = wrap  # a command that runs the server (strace ...)
        self.env = None if env is None else {**os.environ, **env}
        self.port = port
        self.args = args
        self.log = log or journal.with_name(journal.name + ".server.log")
        self.proc: Optional[subprocess.Popen[str]] = None
        self.url = ""
        self.starts = 0

    def start(self, port: Optional[int] = None, timeout: float = 20.0, extra: tuple[str, ...] = ()) -> "Server":
        """Starts the server and waits for its "interlock serving at URL" line; raises
        `ServeError` if it exits instead."""
        assert self.proc is None, "already running"
        bind_port = self.port if port is None else port
        cmd = [*self.wrap, str(server_binary()), "serve", "--bind", f"127.0.0.1:{bind_port}",
               "--journal", str(self.journal), *self.args, *extra]
        deadline = time.monotonic() + timeout
        while True:
            err = open(self.log, "a")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                    start_new_session=True, env=self.env)
            err.close()
            line = _readline(proc, deadline)
            if line.startswith("interlock serving at "):
                break
            proc.wait()
            stderr = self.log.read_text()[-4000:]
            # A port just freed by a killed server can be briefly unavailable.
            if "in use" in stderr.lower() and time.monotonic() < deadline and bind_port != 0:
                time.sleep(0.05)
                continue
            raise ServeError(proc.returncode, stderr)
        self.proc = proc
        self.url = line.split("interlock serving at ", 1)[1].strip()
        if port is None and self.port == 0:
            self.port = int(urllib.parse.urlparse(self.url).port or 0)
        self.starts += 1
        return self

    def kill9(self) -> None:
        """kill -9: no cleanup of any kind runs in the server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 20.0) -> int:
        """A clean stop (SIGTERM); returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("interlock serve did not stop on SIGTERM")
        self.proc = None
        return code

    def close(self) -> None:
        if self.proc is not None:
            self.kill9()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP ---------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = None, headers: Optional[dict[str, str]] = None,
             timeout: float = 10.0) -> tuple[int, Any]:
        return http(self.url, method, path, body, headers, timeout)

    def get(self, path: str) -> Any:
        code, data = self.http("GET", path)
        assert code == 200, (path, code, data)
        return data


def _readline(proc: subprocess.Popen[str], deadline: float) -> str:
    """The first line of the process's stdout, or "" if it ends or the deadline passes."""
    out: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not out:
        proc.kill()
        return ""
    return out[0]


def http(base: str, method: str, path: str, body: Any = None, headers: Optional[dict[str, str]] = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def run_serve(journal: Path, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Runs `interlock serve --journal FILE` expecting it to refuse the file (exit at once);
    if it starts instead, it is killed and the result says so (returncode None)."""
    cmd = [str(server_binary()), "serve", "--bind", "127.0.0.1:0", "--journal", str(journal), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return subprocess.CompletedProcess(cmd, None, out, err)  # type: ignore[arg-type]


def slow_disk(workdir: Path, journal: Path, ms: float) -> dict[str, str]:
    """The environment that preloads slowdisk.c (built here with cc) into a server, so
    that each of its writes to `journal` (and its -wal) waits `ms` first."""
    lib = workdir / "slowdisk.so"
    if not lib.exists():
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(HERE / "slowdisk.c"), "-ldl"],
                       check=True)
    return {"LD_PRELOAD": str(lib), "SLOWDISK_PREFIX": str(journal), "SLOWDISK_US": str(int(ms * 1000))}


def wait_until(pred: Any, timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)
