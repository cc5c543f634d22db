"""One client of the crash trials (crash.py starts several, each a process of its own):
a remote engine (`interlock.connect`) doing random acquires, releases, renews, force
releases and session closes/opens on a few resources, for as long as the stop file is
missing. It logs every call it finished, one JSON line each, with `t0` (sent) and `t1`
(returned) on the system-wide monotonic clock, and whether it was acknowledged (`ok`) or
failed (`err`: the error's class); the harness judges durability from these logs.

The client never reconnects by hand: when the server is killed its calls raise
`ConnectionLost` (logged, then a `down` line), the library reconnects and resumes the
session by its secret once the server is back (on the same port), and the next call
that works logs `up`. Its `Lease` objects are used across restarts unchanged.

    python crash_client.py URL LOG SEED STOPFILE [--resources N] [--session-ttl S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from typing import Any, Callable, Optional, TextIO

import interlock


class Client:
    def __init__(self, eng: interlock.Engine, out: TextIO, rng: random.Random, names: list[str]):
        self.eng = eng
        self.out = out
        self.rng = rng
        self.names = names
        self.up = True
        self.session: Optional[interlock.Session] = None
        self.held: dict[str, interlock.Lease] = {}
        # Leases whose release went unanswered (the server died): retried until known.
        self.unsure: dict[str, interlock.Lease] = {}
        # A session whose close went unanswered: retried until known.
        self.closing: Optional[interlock.Session] = None

    def log(self, **kv: Any) -> None:
        self.out.write(json.dumps(kv) + "\n")

    def call(self, op: str, fn: Callable[[], Any], **kv: Any) -> tuple[bool, Any, float, float]:
        """Runs one call and logs it if it failed; returns (ok, value or error, t0, t1).
        A call that works shows the link is up again, except a release: the link answers
        one it has already seen applied (sent again by its resume) without the server,
        also while that resume is still going on."""
        t0 = time.monotonic()
        try:
            v = fn()
        except interlock.Error as e:
            t1 = time.monotonic()
            self.log(op=op, t0=t0, t1=t1, ok=False, err=type(e).__name__, **kv)
            if isinstance(e, interlock.ConnectionLost):
                if self.up:
                    self.log(op="down", t=t1)
                self.up = False
            return False, e, t0, t1
        t1 = time.monotonic()
        if not self.up and op != "release":
            self.log(op="up", t=t1)
            self.up = True
        return True, v, t0, t1

    def step(self) -> None:
        # Leases the engine ended (a force release by another client, ...) are forgotten.
        for r, lease in list(self.held.items()):
            if not lease.valid:
                self.log(op="lost", fence=lease.fence, resource=r, reason=lease.lost_reason,
                         t=time.monotonic())
                del self.held[r]
        if self.closing is not None:
            return self.close_session(self.closing)
        if self.session is None:
            return self.open_session()
        if self.unsure:
            r, lease = next(iter(self.unsure.items()))
            return self.release(r, lease, retry=True)
        op = self.rng.choices(["acquire", "release", "renew", "force", "cycle"], [40, 30, 15, 3, 1])[0]
        free = [r for r in self.names if r not in self.held]
        if op == "acquire" and free:
            self.acquire(self.rng.choice(free))
        elif op == "release" and self.held:
            r = self.rng.choice(sorted(self.held))
            self.release(r, self.held.pop(r))
        elif op == "renew" and self.held:
            self.renew(self.rng.choice(sorted(self.held)))
        elif op == "force":
            self.force(self.rng.choice(self.names))
        elif op == "cycle":
            self.close_session(self.session)

    def open_session(self) -> None:
        ok, v, t0, t1 = self.call("open", lambda: self.eng.session("crash", metadata={"pid": os.getpid()}))
        if ok:
            self.session = v
            self.log(op="open", ok=True, session=v.id, t0=t0, t1=t1)
        else:
            time.sleep(0.02)

    def close_session(self, s: interlock.Session) -> None:
        self.closing = s
        ok, v, t0, t1 = self.call("close", s.close, session=s.id)
        if ok:
            self.log(op="close", ok=True, session=s.id, released=v, t0=t0, t1=t1)
        elif isinstance(v, interlock.ConnectionLost):
            time.sleep(0.02)
            return  # retried: its outcome is not known yet
        self.closing = None
        self.session = None
        self.held.clear()
        self.unsure.clear()

    def acquire(self, r: str) -> None:
        assert self.session is not None
        s = self.session
        mode = self.rng.choice(["exclusive", "exclusive", "exclusive", "shared"])
        ttl = self.rng.choice([None, None, 30.0])
        timeout = self.rng.choice([0.0, 0.0, 0.05, 0.2])
        ok, v, t0, t1 = self.call("acquire", lambda: s.acquire(r, mode=mode, timeout=timeout, ttl=ttl),
                                  resource=r, session=s.id, mode=mode)
        if ok:
            self.held[r] = v
            self.log(op="grant", ok=True, resource=r, session=s.id, fence=v.fence, mode=mode,
                     expires_at=v.expires_at, t0=t0, t1=t1)
        elif isinstance(v, interlock.AlreadyHeld):
            # A grant to this session that the server wrote but whose answer the crash
            # swallowed: held by the session, its token unknown here. Closing the
            # session frees it.
            self.log(op="orphan", resource=r, session=s.id, t=time.monotonic())
            self.close_session(s)
        elif isinstance(v, (interlock.SessionExpired, interlock.NotFound)):
            # Not expected (the session heartbeats, and a restart gives it a grace
            # period); the harness counts these lines.
            self.log(op="session_gone", session=s.id, t=time.monotonic())
            self.session = None
            self.held.clear()
            self.unsure.clear()

    def release(self, r: str, lease: interlock.Lease, retry: bool = False) -> None:
        ok, v, t0, t1 = self.call("release", lease.release, fence=lease.fence, resource=r, retry=retry)
        if ok:
            self.log(op="release", ok=True, fence=lease.fence, resource=r, t0=t0, t1=t1, retry=retry)
            self.unsure.pop(r, None)
        elif isinstance(v, interlock.ConnectionLost):
            self.unsure[r] = lease
            time.sleep(0.02)
        else:
            # InvalidToken on a retry: the first attempt went through. LockLost: the
            # lease was lost first. Either way it is not held any more.
            self.unsure.pop(r, None)

    def renew(self, r: str) -> None:
        lease = self.held[r]
        ok, v, t0, t1 = self.call("renew", lambda: lease.renew(30.0), fence=lease.fence, resource=r)
        if ok:
            self.log(op="renew", ok=True, fence=lease.fence, resource=r, expires_at=v, t0=t0, t1=t1)

    def force(self, r: str) -> None:
        ok, v, t0, t1 = self.call("force", lambda: self.eng.force_release(r, reason="crash trial"), resource=r)
        if ok:
            self.log(op="force", ok=True, resource=r, released=v, t0=t0, t1=t1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("log")
    ap.add_argument("seed", type=int)
    ap.add_argument("stop")
    ap.add_argument("--resources", type=int, default=4)
    ap.add_argument("--session-ttl", type=float, default=10.0)
    a = ap.parse_args()
    out = open(a.log, "a", buffering=1)
    eng = interlock.connect(a.url, session_ttl=a.session_ttl)
    client = Client(eng, out, random.Random(a.seed), [f"r{i}" for i in range(a.resources)])
    client.log(op="start", pid=os.getpid(), t=time.monotonic())
    while not os.path.exists(a.stop):
        client.step()
        time.sleep(client.rng.choice([0.0, 0.0, 0.001, 0.005]))
    client.log(op="stop", t=time.monotonic())
    eng.close()


if __name__ == "__main__":
    main()
