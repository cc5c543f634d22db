"""The scenario harness: real processes on real sockets.

- `Server`: an `interlock serve` process on a free loopback port.
- `Worker`: a process of worker_py.py, worker_c or worker_octave.m, driven by command
  lines on its stdin; what it reports (JSON lines on its stdout, each with the time it
  happened in that process) is collected as records.
- `Device`: device.py, the fence-checking instrument.
- `Lab`: everything a test started, stopped at its end, with every log written to its
  own folder (SCENARIO_LOG_DIR/TEST/): NAME.jsonl (the records), NAME.err (stderr),
  server.out/.err, proxy-*.log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import interlock

from proxy import Proxy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/interlock-target"))
BUILD = Path(os.environ.get("SCENARIO_BUILD", TARGET / "scenarios"))
INTERLOCK_BIN = os.environ.get("INTERLOCK_BIN", str(TARGET / "release/interlock"))
C_WORKER = os.environ.get("SCENARIO_C_WORKER", str(BUILD / "worker_c"))
MEX_DIR = os.environ.get("SCENARIO_MEX_DIR", str(BUILD))
LOG_ROOT = Path(os.environ.get("SCENARIO_LOG_DIR", BUILD / "logs"))


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
               what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Server:
    def __init__(self, logdir: Path, *args: str):
        self.logdir = logdir
        self.args = args
        self.out = open(logdir / "server.out", "w")
        self.err = open(logdir / "server.err", "w")
        env = dict(os.environ, INTERLOCK_LOG=os.environ.get("INTERLOCK_LOG", "info"))
        self.proc = subprocess.Popen(
            [INTERLOCK_BIN, "serve", "--bind", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        self.url = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.write(line)
            m = re.match(r"interlock serving at (\S+)", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            raise RuntimeError(f"interlock serve did not start; see {logdir}/server.err")
        self.out.flush()
        self.port = int(self.url.rsplit(":", 1)[1])
        self._admin: Optional[interlock.Engine] = None

    @property
    def admin(self) -> interlock.Engine:
        """A connection of the harness itself (no sessions), for status and history."""
        if self._admin is None:
            self._admin = interlock.connect(self.url)
        return self._admin

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()


class Worker:
    def __init__(self, lab: "Lab", lang: str, name: str):
        self.lang = lang
        self.name = name
        self.logdir = lab.logdir
        if lang == "python":
            argv = [sys.executable, "-u", str(HERE / "worker_py.py")]
        elif lang == "c":
            argv = [C_WORKER]
        elif lang == "octave":
            script = (f"addpath('{MEX_DIR}'); addpath('{ROOT}/examples/matlab'); "
                      f"source('{HERE}/worker_octave.m');")
            argv = ["octave-cli", "--no-init-file", "--no-history", "--quiet", "--eval", script]
        else:
            raise ValueError(lang)
        self.err = open(self.logdir / f"{name}.err", "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1, cwd=str(HERE))
        self.records: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready = self.wait("ready", timeout=60)
        self.pid = self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"ev": "text", "t": time.time(), "text": line}
            with self._cond:
                self.records.append(rec)
                self._cond.notify_all()
        with self._cond:
            self.records.append({"ev": "eof", "t": time.time()})
            self._cond.notify_all()

    def send(self, *words: Any) -> None:
        assert self.proc.stdin is not None
        # Octave's fgetl returns a line only once it has seen the character after it:
        # an empty line after each command lets it return at once (empty lines are
        # skipped by every worker).
        end = "\n\n" if self.lang == "octave" else "\n"
        self.proc.stdin.write(" ".join(str(w) for w in words) + end)
        self.proc.stdin.flush()

    def _match(self, rec: dict[str, Any], ev: str, match: dict[str, Any]) -> bool:
        return rec.get("ev") == ev and all(rec.get(k) == v for k, v in match.items())

    def wait(self, ev: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first record of kind `ev` with these fields that no earlier `wait` returned;
        fails on timeout, or at once if the worker reported an error or ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, rec in enumerate(self.records):
                    if i not in self._taken and self._match(rec, ev, match):
                        self._taken.add(i)
                        return rec
                    if rec.get("ev") in ("error", "eof") and ev not in ("error", "eof"):
                        raise AssertionError(f"{self.name} ({self.lang}): {rec}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name} ({self.lang}): no {ev} {match} in {timeout} s; "
                        f"last records: {self.records[-5:]}")
                self._cond.wait(left)

    def find(self, ev: str, **match: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self.records if self._match(r, ev, match)]

    def connect(self, url: str, ttl: float = 15.0, *extra: Any) -> None:
        self.send("connect", url, ttl, *extra)
        self.wait("connected", timeout=30)

    def open(self, name: Optional[str] = None, on_expire: str = "-", ttl: str = "-") -> str:
        if self.lang == "octave":
            self.send("open", name or self.name)
        else:
            self.send("open", name or self.name, on_expire, ttl)
        return self.wait("opened", timeout=30)["session"]

    def acquire(self, res: str, mode: str = "exclusive", priority: int = 100,
                preempt: bool = False, timeout: Any = "inf", break_stale: bool = False,
                hold: float = -1) -> None:
        """Sends an acquire; its outcome comes as a "granted" or "acquire_failed" record."""
        self.send("acquire", res, mode, priority, int(preempt), timeout, int(break_stale), hold)

    def kill9(self) -> float:
        t = time.time()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return t

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        with open(self.logdir / f"{self.name}.jsonl", "w") as f:
            for rec in self.records:
                f.write(json.dumps(rec) + "\n")
        self.err.close()


class Device:
    def __init__(self, lab: "Lab", url: str, resource: str, exec_s: float = 0.002):
        self.err = open(lab.logdir / "device.err", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(HERE / "device.py"), url, resource, str(exec_s)],
            stdout=subprocess.PIPE, stderr=self.err, text=True, bufsize=1)
        self.logdir = lab.logdir
        self.records: list[dict[str, Any]] = []
        assert self.proc.stdout is not None
        first = json.loads(self.proc.stdout.readline())
        self.port = first["port"]
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.records.append(json.loads(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self._reader.join(timeout=5)
        with open(self.logdir / "device.jsonl", "w") as f:
            for rec in self.records:
                f.write(json.dumps(rec) + "\n")
        self.err.close()


class Lab:
    """What one test started; `close` stops it all and writes the logs."""

    def __init__(self, test_name: str):
        self.logdir = LOG_ROOT / re.sub(r"[^\w.-]+", "_", test_name)
        shutil.rmtree(self.logdir, ignore_errors=True)
        self.logdir.mkdir(parents=True)
        self.servers: list[Server] = []
        self.workers: list[Worker] = []
        self.proxies: list[Proxy] = []
        self.devices: list[Device] = []
        self.notes: list[str] = []

    def server(self, *args: str) -> Server:
        s = Server(self.logdir, *args)
        self.servers.append(s)
        return s

    def worker(self, lang: str, name: str) -> Worker:
        w = Worker(self, lang, name)
        self.workers.append(w)
        return w

    def workers_at_once(self, specs: list[tuple[str, str]]) -> list[Worker]:
        """Starts several workers in parallel (an Octave start takes a second or two)."""
        out: list[Optional[Worker]] = [None] * len(specs)
        errors: list[BaseException] = []

        def start(i: int, lang: str, name: str) -> None:
            try:
                out[i] = Worker(self, lang, name)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=start, args=(i, l, n)) for i, (l, n) in enumerate(specs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.workers.extend(w for w in out if w is not None)
        if errors:
            raise errors[0]
        return [w for w in out if w is not None]

    def proxy(self, server: Server, name: str = "proxy") -> Proxy:
        p = Proxy(server.port, name=name)
        self.proxies.append(p)
        return p

    def device(self, server: Server, resource: str, exec_s: float = 0.002) -> Device:
        d = Device(self, server.url, resource, exec_s)
        self.devices.append(d)
        return d

    def note(self, text: str) -> None:
        """A line for the test's report (also printed; pytest -s shows it)."""
        self.notes.append(text)
        print(text)

    def close(self) -> None:
        threads = [threading.Thread(target=w.stop) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for d in self.devices:
            d.stop()
        for i, p in enumerate(self.proxies):
            with open(self.logdir / f"proxy-{i}-{p.name}.log", "w") as f:
                for at, what in p.events:
                    f.write(f"{at:.6f} {what}\n")
            p.close()
        for s in self.servers:
            s.stop()
        if self.notes:
            (self.logdir / "notes.txt").write_text("\n".join(self.notes) + "\n")


def history(server: Server, resource: Optional[str] = None) -> list[dict[str, Any]]:
    return [e.to_dict() for e in server.admin.history(resource=resource)]


def waiter_ids(server: Server, resource: str) -> list[str]:
    return [w["session_id"] for w in server.admin.status(resource)["waiters"]]


def holder_ids(server: Server, resource: str) -> list[str]:
    return [h["session_id"] for h in server.admin.status(resource)["holders"]]


def wait_queued(server: Server, resource: str, session: str, timeout: float = 20.0) -> None:
    wait_until(lambda: session in waiter_ids(server, resource), timeout,
               what=f"session {session} queued for {resource}")
