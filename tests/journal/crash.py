"""Crash trials: `interlock serve --journal FILE` under N client processes
(crash_client.py, each its own `interlock.connect` engine doing random acquires,
releases, renews, force releases and session closes), killed with SIGKILL at a random
moment, again and again, on the same file. After each kill:

1. The harness waits until every client has logged that its connection dropped, so that
   every answer the dead server sent is in the logs.
2. It starts a *check* server on the same file on another port (the clients cannot
   reach it, so nothing changes while it looks), reads `GET /v1/locks` and
   `GET /v1/sessions`, and kills it with SIGKILL too.
3. It judges that state against the logs (see `Model.check`): every acknowledged grant
   that nobody released, force-released or closed is held by the same session with
   the same fence (and at least the acknowledged expiry); every acknowledged release
   (and close, and force release) stays done; every holder is a lease someone asked
   for; every acknowledged session that was not closed is there.
4. It restarts the server on the same file and the same port: the clients reconnect and
   resume their sessions by themselves (their code never reconnects), and go on with
   the same `Lease` objects.

Across all trials no fence may be acknowledged twice, and every fence acknowledged after
a restart is larger than every fence acknowledged before it. At the end the server
stops cleanly and the history table is checked with the sqlite3 command line: no fence
acquired twice, every acknowledged grant there with its session.

    python crash.py --trials 1000 [--clients 6] [--dir DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import HERE, Server, free_port, slow_disk, sqlite3, wait_until  # noqa: E402

# A lease whose known expiry is this close to the check is not required to be held.
EXPIRY_MARGIN = 3.0


@dataclass
class Grant:
    fence: int
    resource: str
    session: str
    client: int
    t0: float
    t1: float
    expires_at: Optional[float]
    gone: Optional[str] = None  # why it is certainly not held any more
    unsure: bool = False  # a release of it went unanswered and is not resolved


@dataclass
class Force:
    resource: str
    t0: float
    end: float  # the latest it can have taken effect (its answer, or the kill after it)
    acked: bool


@dataclass
class SessionLog:
    id: str
    client: int
    closed: Optional[str] = None  # "acked" | "unsure"


@dataclass
class Violation:
    trial: int
    what: str

    def __str__(self) -> str:
        return f"trial {self.trial}: {self.what}"


@dataclass
class Stats:
    acked: dict[str, int] = field(default_factory=dict)
    unanswered: dict[str, int] = field(default_factory=dict)
    held_checked: int = 0
    gone_checked: int = 0
    sessions_checked: int = 0
    ambiguous: int = 0
    orphans: int = 0
    holders_seen: int = 0
    while_down: int = 0
    acked_last_50ms: int = 0  # answered at most 50 ms before the kill began (or after)


class Model:
    """What the clients' logs say was acknowledged, and what a restarted server must show."""

    def __init__(self) -> None:
        self.grants: dict[int, Grant] = {}
        self.live: set[int] = set()  # fences not yet certainly gone
        self.forces: dict[str, list[Force]] = {}
        self.sessions: dict[str, SessionLog] = {}
        # (session, resource) of acquires whose answer never came: may be held (orphans).
        self.unknown_acquires: dict[tuple[str, str], int] = {}
        self.unknown_opens = 0
        self.stats = Stats()
        self.violations: list[Violation] = []
        self.trial = 0
        self.kills: list[float] = []  # monotonic times of the kills so far
        self.restarts: list[float] = []
        self.kill_starts: list[float] = []  # monotonic times just before each SIGKILL
        self.finished = False  # the trials are over: the last lines are fed
        self.max_fence_before: list[int] = []  # per kill: the largest fence acknowledged by then

    def violate(self, what: str) -> None:
        self.violations.append(Violation(self.trial, what))

    def count(self, table: dict[str, int], op: str) -> None:
        table[op] = table.get(op, 0) + 1

    def feed(self, client: int, line: dict[str, Any], kill_t: float) -> None:
        """One line of client `client`'s log; `kill_t` is when the server of the current
        cut was dead and reaped (what went unanswered before was cut off by the kill)."""
        op = line["op"]
        if op in ("start", "stop", "down", "up"):
            return
        if op == "lost":
            g = self.grants.get(line["fence"])
            if g and g.gone is None:
                if line["reason"] in ("force_released", "preempted", "expired", "session_expired"):
                    g.gone = f"the client saw it lost ({line['reason']})"
                else:
                    # Given up by the client (`connection_lost`): released on the server
                    # only once the session resumes.
                    g.unsure = True
            return
        if op == "orphan":
            self.stats.orphans += 1
            return
        if op == "session_gone":
            self.violate(f"client {client}: its session {line['session']} was gone on the server")
            return
        if line.get("ok") is False:
            err = line["err"]
            if err == "ConnectionLost" and self.while_down(line["t0"], line["t1"], kill_t):
                # Never reached a server (the check server listens on another port).
                self.stats.while_down += 1
            elif err == "ConnectionLost":
                self.count(self.stats.unanswered, op)
                self.unanswered(client, line, kill_t)
            elif op == "release" and line.get("retry") and err in ("InvalidToken", "LockLost"):
                g = self.grants.get(line["fence"])
                if g and g.gone is None:
                    g.gone = "a retried release found it gone"
                    g.unsure = False
            return
        self.count(self.stats.acked, op)
        if not self.finished and line.get("t1", 0.0) > self.kill_starts[-1] - 0.05:
            self.stats.acked_last_50ms += 1
        if op == "grant":
            f = line["fence"]
            if f in self.grants:
                old = self.grants[f]
                self.violate(f"fence {f} acknowledged twice: to client {old.client} ({old.resource}) "
                             f"and to client {client} ({line['resource']})")
                return
            if self.max_fence_before and line["t0"] > self.restarts[-1] and f <= self.max_fence_before[-1]:
                self.violate(f"fence {f} acknowledged after a restart, but {self.max_fence_before[-1]} "
                             "was acknowledged before it")
            self.grants[f] = Grant(f, line["resource"], line["session"], client, line["t0"], line["t1"],
                                   line.get("expires_at"))
            self.live.add(f)
        elif op == "release":
            g = self.grants.get(line["fence"])
            if g:
                g.gone = "released (acknowledged)"
                g.unsure = False
        elif op == "renew":
            g = self.grants.get(line["fence"])
            if g and line.get("expires_at") is not None:
                g.expires_at = max(g.expires_at or 0.0, line["expires_at"])
        elif op == "force":
            self.forces.setdefault(line["resource"], []).append(
                Force(line["resource"], line["t0"], line["t1"], True))
        elif op == "open":
            self.sessions[line["session"]] = SessionLog(line["session"], client)
        elif op == "close":
            s = self.sessions.get(line["session"])
            if s:
                s.closed = "acked"
            for g in self.grants_of(line["session"]):
                g.gone = "its session was closed (acknowledged)"

    def while_down(self, t0: float, t1: float, kill_t: float) -> bool:
        """A call that failed with `ConnectionLost` can have reached the server only if it
        was in flight at the kill: sent before the server was dead, failed after the
        kill began. Before that its link was not connected (it fails such calls at once,
        without sending them), after it no server was up."""
        return t0 > kill_t or t1 < self.kill_starts[-1]

    def unanswered(self, client: int, line: dict[str, Any], kill_t: float) -> None:
        op = line["op"]
        if op == "release":
            g = self.grants.get(line["fence"])
            if g and g.gone is None:
                g.unsure = True
        elif op == "force":
            self.forces.setdefault(line["resource"], []).append(
                Force(line["resource"], line["t0"], max(kill_t, line["t0"]), False))
        elif op == "acquire":
            key = (line["session"], line["resource"])
            self.unknown_acquires[key] = self.unknown_acquires.get(key, 0) + 1
        elif op == "close":
            s = self.sessions.get(line["session"])
            if s and s.closed is None:
                s.closed = "unsure"
        elif op == "open":
            self.unknown_opens += 1

    def grants_of(self, session: str) -> list[Grant]:
        return [self.grants[f] for f in self.live if self.grants[f].session == session]

    def forced(self, g: Grant) -> tuple[bool, bool]:
        """(certainly, possibly): a force release on its resource ended it."""
        certain = possible = False
        for f in self.forces.get(g.resource, []):
            if f.acked and f.t0 > g.t1:
                certain = True
            if f.end > g.t0:
                possible = True
        return certain, possible

    def check(self, locks: list[dict[str, Any]], sessions: list[dict[str, Any]], unix_now: float) -> None:
        """Judges the state a restarted server shows against the logs."""
        holders: dict[int, tuple[str, str, Optional[float]]] = {}
        for st in locks:
            for h in st["holders"]:
                f = h["fence"]
                if f in holders:
                    self.violate(f"fence {f} held twice ({holders[f][0]} and {st['resource']})")
                holders[f] = (st["resource"], h["session_id"], h.get("expires_at"))
        self.stats.holders_seen += len(holders)
        live_sessions = {s["id"] for s in sessions}
        for f in sorted(self.live):
            g = self.grants[f]
            certain, possible = self.forced(g)
            if g.gone is None and certain:
                g.gone = "force-released (acknowledged)"
            if g.gone is None and g.session in self.sessions and self.sessions[g.session].closed == "acked":
                g.gone = "its session was closed (acknowledged)"
            if g.gone is not None:
                self.stats.gone_checked += 1
                if f in holders:
                    self.violate(f"fence {f} on {g.resource} is held after the restart, but it was {g.gone}")
                self.live.discard(f)
                continue
            sess = self.sessions.get(g.session)
            expiring = g.expires_at is not None and g.expires_at < unix_now + EXPIRY_MARGIN
            if g.unsure or possible or expiring or (sess is not None and sess.closed == "unsure"):
                self.stats.ambiguous += 1
                continue
            self.stats.held_checked += 1
            h = holders.get(f)
            if h is None:
                self.violate(f"acknowledged grant lost: fence {f} on {g.resource} to session {g.session} "
                             f"(client {g.client}) is not held after the restart")
                continue
            if (h[0], h[1]) != (g.resource, g.session):
                self.violate(f"fence {f}: acknowledged as {g.resource} to {g.session}, held as {h[0]} by {h[1]}")
            if g.expires_at is not None and (h[2] is None or h[2] < g.expires_at - 1e-3):
                self.violate(f"fence {f}: acknowledged expiry {g.expires_at}, restored as {h[2]}")
        for f, (resource, session, _) in holders.items():
            g = self.grants.get(f)
            if g is None:
                # Held, but never acknowledged: only an acquire whose answer the crash
                # swallowed may explain it.
                if not self.unknown_acquires.get((session, resource)):
                    self.violate(f"fence {f} on {resource} is held by {session}, which nobody was granted")
        for s in self.sessions.values():
            if s.closed == "unsure":
                continue
            self.stats.sessions_checked += 1
            if s.closed == "acked" and s.id in live_sessions:
                self.violate(f"session {s.id} was closed (acknowledged) but is back after the restart")
            if s.closed is None and s.id not in live_sessions:
                self.violate(f"session {s.id} (client {s.client}) was opened (acknowledged) but is missing")


class LogReader:
    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.buf = b""

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, upto: Optional[int] = None) -> list[dict[str, Any]]:
        """The whole lines after the last read (up to byte `upto`)."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read() if upto is None else f.read(max(0, upto - self.offset))
        self.offset += len(data)
        data = self.buf + data
        lines = data.split(b"\n")
        self.buf = lines.pop()
        return [json.loads(x) for x in lines if x]

    def has_after(self, offset: int, op: str) -> bool:
        """Whether a whole line after byte `offset` logs `op` (the offset may fall inside
        a line that was being written: that piece is not one)."""
        with open(self.path, "rb") as f:
            f.seek(offset)
            lines = (x.strip() for x in f.read().split(b"\n"))
            return any(json.loads(x).get("op") == op for x in lines if x.startswith(b"{") and x.endswith(b"}"))


def run(trials: int, clients: int = 6, workdir: Optional[Path] = None, seed: Optional[int] = None,
        run_max: float = 0.6, resources: int = 8, quiet: bool = False,
        slow_ms: float = 0.0) -> dict[str, Any]:
    """Runs `trials` crash trials; returns a summary (with the violations). With
    `slow_ms`, every write of the server to the journal waits that long first
    (slowdisk.c), which widens the moment a kill -9 must hit to catch an answer sent
    before its batch was written."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="interlock-crash-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    db = work / "locks.db"
    stop = work / "stop"
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    model = Model()
    started = time.monotonic()
    env = slow_disk(work, db, slow_ms) if slow_ms > 0 else None
    server = Server(db, port=free_port(), log=work / "server.log", env=env)
    server.start()
    procs: list[subprocess.Popen[bytes]] = []
    readers: list[LogReader] = []
    try:
        for i in range(clients):
            log = work / f"client{i}.log"
            log.touch()
            readers.append(LogReader(log))
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "crash_client.py"), server.url, str(log), str(seed * 100 + i),
                 str(stop), "--resources", str(resources)],
                stderr=open(work / f"client{i}.err", "ab")))
        # Each client has done something before the first kill.
        wait_until(lambda: all(r.has_after(0, "open") for r in readers), 60, "the clients to start")
        ups = [0] * clients
        reported = 0
        for trial in range(1, trials + 1):
            model.trial = trial
            # Every client works (reconnected and acknowledged again) before the kill.
            wait_until(lambda: all(r.has_after(ups[i], "up") or (trial == 1)
                                   for i, r in enumerate(readers)), 60,
                       f"trial {trial}: every client to reconnect")
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a client exited ({p.returncode}); see {work}/client*.err")
            time.sleep(rng.uniform(0.02, run_max))
            marks = [r.size() for r in readers]
            model.kill_starts.append(time.monotonic())
            server.kill9()
            kill_t = time.monotonic()  # dead and reaped
            model.kills.append(kill_t)
            # Every answer the server sent before it died is logged once its client has
            # seen the connection drop.
            wait_until(lambda: all(r.has_after(m, "down") for r, m in zip(readers, marks)), 30,
                       f"trial {trial}: every client to see the connection drop")
            cut = [r.size() for r in readers]
            for i, r in enumerate(readers):
                for line in r.read(cut[i]):
                    model.feed(i, line, kill_t)
            model.max_fence_before.append(max(model.grants, default=0))
            check = Server(db, port=free_port(), log=work / "check.log")
            check.start()
            locks = check.get("/v1/locks")
            sessions = check.get("/v1/sessions")
            unix_now = time.time()
            check.kill9()
            model.check(locks, sessions, unix_now)
            ups = [r.size() for r in readers]
            server.start()
            model.restarts.append(time.monotonic())
            for v in model.violations[reported:]:
                say("VIOLATION", v)
            reported = len(model.violations)
            if trial % 50 == 0 or trial == trials:
                s = model.stats
                say(f"trial {trial}/{trials}: {sum(s.acked.values())} acknowledged ops, "
                    f"{s.held_checked} held-checks, {s.gone_checked} gone-checks, "
                    f"{len(model.violations)} violations, {time.monotonic() - started:.0f} s")
        stop.touch()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        model.finished = True
        for i, r in enumerate(readers):
            for line in r.read():
                model.feed(i, line, time.monotonic())
        code = server.stop()
        wal = db.with_name(db.name + "-wal")
        wal_after_stop = wal.stat().st_size if wal.exists() else None
        history_check(db, model)
    finally:
        stop.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.close()
    elapsed = time.monotonic() - started
    s = model.stats
    summary = {
        "seed": seed,
        "trials": trials,
        "clients": clients,
        "slow_disk_ms": slow_ms,
        "seconds": round(elapsed, 1),
        "acknowledged": dict(sorted(s.acked.items())),
        "acknowledged_total": sum(s.acked.values()),
        "unanswered_around_kill": dict(sorted(s.unanswered.items())),
        "refused_while_down": s.while_down,
        "acknowledged_in_last_50ms_before_kill": s.acked_last_50ms,
        "fences_acknowledged": len(model.grants),
        "held_checks": s.held_checked,
        "gone_checks": s.gone_checked,
        "session_checks": s.sessions_checked,
        "ambiguous_skipped": s.ambiguous,
        "orphans": s.orphans,
        "holders_seen": s.holders_seen,
        "server_exit_on_sigterm": code,
        "wal_bytes_after_stop": wal_after_stop,
        "violations": [str(v) for v in model.violations],
        "workdir": str(work),
    }
    if own_dir and not model.violations:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def history_check(db: Path, model: Model) -> None:
    """The history table, read with the sqlite3 command line: no fence acquired twice,
    and every acknowledged grant there, with its session."""
    twice = sqlite3(db, "SELECT fence FROM history WHERE kind = 'acquired' GROUP BY fence HAVING COUNT(*) > 1")
    if twice.strip():
        model.violate(f"history: fences acquired twice: {twice.split()[:10]}")
    rows = sqlite3(db, "-json", "SELECT fence, session_id, resource FROM history WHERE kind = 'acquired'")
    acquired = {r["fence"]: (r["session_id"], r["resource"]) for r in json.loads(rows or "[]")}
    for f, g in model.grants.items():
        if acquired.get(f) != (g.session, g.resource):
            model.violate(f"history: acknowledged grant {f} ({g.resource}, {g.session}) is "
                          f"{acquired.get(f)} in the table")
            break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--resources", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=None, help="keep the files here (default: a temp dir, "
                    "removed unless something failed)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--run-max", type=float, default=0.6, help="longest run between a restart and the next kill, s")
    ap.add_argument("--slow-disk", type=float, default=0.0, metavar="MS",
                    help="delay each write of the server to the journal by MS (slowdisk.c)")
    a = ap.parse_args()
    summary = run(a.trials, a.clients, a.dir, a.seed, a.run_max, a.resources, slow_ms=a.slow_disk)
    print(json.dumps(summary, indent=2))
    sys.exit(1 if summary["violations"] else 0)


if __name__ == "__main__":
    main()
