"""Helpers of the cross-process tests: real `interlock serve` processes on loopback, each
started from the test with its own tokens file and limits, its URL read from what it
prints, its stderr log captured to a file (the secrecy tests grep it), and stopped at
teardown.

The binary is $INTERLOCK_BIN; run.sh sets it to the console script of the package it
installs. Without it, the `interlock` on PATH, else cargo's debug build, is used."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def interlock_bin() -> str:
    if os.environ.get("INTERLOCK_BIN"):
        return os.environ["INTERLOCK_BIN"]
    found = shutil.which("interlock")
    if found:
        return found
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/interlock-target"))
    built = target / "debug" / "interlock"
    if built.exists():
        return str(built)
    pytest.exit("no interlock binary: set INTERLOCK_BIN or run tests/cross/run.sh", 2)


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the test process dies, so that a run ended
    by its time limit (pytest-timeout ends the whole process) leaves no server behind."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def new_token(role: str) -> str:
    """A token no test will mistake for anything else (and that grep finds exactly)."""
    return f"{role}-tok-{uuid.uuid4().hex}"


@dataclass
class Server:
    """One `interlock serve` process."""

    proc: subprocess.Popen[str]
    url: str
    log_path: Path
    tokens: dict[str, str]  # role -> token
    secrets: set[str] = field(default_factory=set)  # every secret a test saw

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :] + "/v1/ws"

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        return host, int(port)

    def auth(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_server(
    tmp: Path,
    *args: str,
    roles: tuple[str, ...] = ("read", "client", "admin"),
    name: str = "server",
) -> Server:
    tokens = {role: new_token(role) for role in roles}
    cmd = [interlock_bin(), "serve"]
    if "--bind" not in args:
        cmd += ["--bind", "127.0.0.1:0"]
    if tokens:
        path = tmp / f"{name}.tokens"
        path.write_text("".join(f"{role} {tok}\n" for role, tok in tokens.items()))
        cmd += ["--tokens", str(path)]
    cmd += list(args)
    log_path = tmp / f"{name}.log"
    log = open(log_path, "w")
    # Debug logging: the secrecy tests want every line the server could write.
    env = dict(os.environ, INTERLOCK_LOG="debug", NO_COLOR="1")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=die_with_parent,
    )
    log.close()
    assert proc.stdout is not None
    line = [""]

    def read() -> None:
        line[0] = proc.stdout.readline() if proc.stdout else ""

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    prefix = "interlock serving at "
    if not line[0].startswith(prefix):
        proc.kill()
        raise AssertionError(f"the server did not start: {line[0]!r}\n{log_path.read_text()}")
    server = Server(proc=proc, url=line[0][len(prefix) :].strip(), log_path=log_path, tokens=tokens)
    wait_healthy(server)
    return server


def wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + 20
    role = "read" if "read" in server.tokens else None
    while True:
        try:
            r = requests.get(server.url + "/v1/health", headers=server.auth(role), timeout=5)
            if r.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the server never answered /v1/health")
        time.sleep(0.05)


def open_session(server: Server, role: str = "client", name: str = "s", **spec: Any) -> dict[str, Any]:
    r = requests.post(
        server.url + "/v1/sessions", json={"name": name, **spec}, headers=server.auth(role), timeout=10
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    server.secrets.add(body["secret"])
    return body


def as_session(server: Server, session: dict[str, Any], role: str = "client") -> dict[str, str]:
    return {**server.auth(role), "Interlock-Session-Secret": session["secret"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))
