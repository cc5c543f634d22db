"""A scenario process in Python (the C and Octave workers speak the same language).

Reads commands on stdin, one a line, words separated by spaces, and writes what happens
on stdout as JSON lines: {"ev": WHAT, "t": time.time() when it happened, ...}. Times are
taken in this process, on this host's clock, at the moment of the event (for a grant:
when the acquire returned; for a loss: first thing in on_lost).

Common commands (every worker):
  connect URL TTL                    interlock.connect(URL, session_ttl=TTL)
  open NAME [ON_EXPIRE [TTL]]        a session ("-" for the defaults); the current one
  acquire RES MODE PRIO PREEMPT TIMEOUT BREAK_STALE HOLD
                                     PREEMPT/BREAK_STALE 0|1, TIMEOUT seconds or inf;
                                     HOLD >= 0: release after HOLD seconds, -1: keep
  release RES
  ping                               waits until a call reaches the server (reconnected)
  sleep S
  exit
Python only:
  subscribe                          every event, logged as "event" lines
  burst N PREFIX PAUSE               N acquire/release cycles, PAUSE s apart
  valid RES                          the lease's valid, lost_reason, fence, session
  session                            the current session's id, in a "session" line
  drive RES HOST PORT NAME ROUNDS HOLD
                                     ROUNDS times: acquire RES, send commands with the
                                     fence to the device at HOST:PORT every 20 ms while
                                     lease.valid, for HOLD s, release (again, while
                                     the link is down); after a loss, "zombie"
                                     probes with the old fence for 1 s
  stop                               ends drives after their current round
Acquires, bursts, subscriptions and drives run on threads of their own, so that later
commands are read while they wait.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any, Optional

import interlock

_out = threading.Lock()


def log(ev: str, t: Optional[float] = None, **fields: Any) -> None:
    rec = {"ev": ev, "t": time.time() if t is None else t, **fields}
    line = json.dumps(rec)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def seconds(word: str) -> Optional[float]:
    return None if word in ("inf", "none", "-") else float(word)


class Worker:
    def __init__(self) -> None:
        self.eng: Optional[interlock.Engine] = None
        self.session: Optional[interlock.Session] = None
        self.leases: dict[str, interlock.Lease] = {}
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    # ----- helpers ---------------------------------------------------------------

    def on_lost(self, lease: interlock.Lease, why: str) -> None:
        t = time.time()
        log("lost", t=t, res=lease.resource, fence=lease.fence, reason=why,
            session=lease.session_id, valid=lease.valid)

    def spawn(self, target, *args) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception as e:  # noqa: BLE001 - everything goes to the log
                log("error", error=type(e).__name__, message=str(e),
                    trace=traceback.format_exc())
        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.threads.append(th)

    # ----- commands --------------------------------------------------------------

    def cmd_connect(self, url: str, ttl: str, subbuf: str = "1024") -> None:
        self.eng = interlock.connect(url, session_ttl=float(ttl), subscriber_buffer=int(subbuf))
        log("connected", url=url, pid=os.getpid())

    def cmd_open(self, name: str, on_expire: str = "-", ttl: str = "-") -> None:
        assert self.eng is not None
        self.session = self.eng.session(
            name, metadata={"pid": os.getpid(), "lang": "python"},
            ttl=seconds(ttl), on_expire=None if on_expire == "-" else on_expire)  # type: ignore[arg-type]
        log("opened", session=self.session.id, name=name)

    def cmd_acquire(self, res: str, mode: str, prio: str, preempt: str, timeout: str,
                    break_stale: str, hold: str) -> None:
        session = self.session
        assert session is not None
        self.spawn(self._acquire, session, res, mode, int(prio), preempt == "1",
                   seconds(timeout), break_stale == "1", float(hold))

    def _acquire(self, session, res, mode, prio, preempt, timeout, break_stale, hold) -> None:
        log("acquiring", res=res, mode=mode, priority=prio, session=session.id)
        try:
            lease = session.acquire(res, mode=mode, timeout=timeout, priority=prio,
                                    preempt=preempt, break_stale=break_stale,
                                    on_lost=self.on_lost)
        except interlock.Error as e:
            log("acquire_failed", res=res, error=type(e).__name__, message=str(e))
            return
        t = time.time()
        self.leases[res] = lease
        log("granted", t=t, res=res, fence=lease.fence, mode=lease.mode,
            session=lease.session_id, acquired_at=lease.acquired_at)
        if hold >= 0:
            time.sleep(hold)
            self._release(res)

    def cmd_release(self, res: str) -> None:
        self._release(res)

    def _release(self, res: str) -> None:
        lease = self.leases.get(res)
        if lease is None:
            log("release_failed", res=res, error="NoLease")
            return
        log("releasing", res=res, fence=lease.fence)
        try:
            lease.release()
        except interlock.Error as e:
            log("release_failed", res=res, fence=lease.fence, error=type(e).__name__,
                message=str(e), valid=lease.valid, lost_reason=lease.lost_reason)
            return
        log("released", res=res, fence=lease.fence)

    def cmd_valid(self, res: str) -> None:
        lease = self.leases[res]
        log("lease_state", res=res, valid=lease.valid, lost_reason=lease.lost_reason,
            fence=lease.fence, session=lease.session_id)

    def cmd_session(self) -> None:
        log("session", session=None if self.session is None else self.session.id)

    def cmd_ping(self, limit: str = "30") -> None:
        assert self.eng is not None
        start = time.time()
        failures = 0
        while True:
            try:
                self.eng.status("ping")
                break
            except interlock.ConnectionLost:
                failures += 1
                if time.time() - start > float(limit):
                    log("ping_failed", waited=time.time() - start)
                    return
                time.sleep(0.02)
        log("pong", waited=time.time() - start, failures=failures)

    def cmd_sleep(self, s: str) -> None:
        time.sleep(float(s))

    def cmd_subscribe(self) -> None:
        assert self.eng is not None
        sub = self.eng.subscribe()
        log("subscribed")
        self.spawn(self._read, sub)

    def _read(self, sub) -> None:
        for e in sub:
            log("event", seq=e.seq, kind=e.kind, res=e.resource, position=e.position,
                session=e.session_id, fence=e.fence)
        log("subscription_ended")

    def cmd_burst(self, n: str, prefix: str, pause: str) -> None:
        session = self.session
        assert session is not None
        self.spawn(self._burst, session, int(n), prefix, float(pause))

    def _burst(self, session, n, prefix, pause) -> None:
        log("burst_started", n=n)
        errors = 0
        for i in range(n):
            try:
                session.acquire(f"{prefix}-{i % 8}", timeout=5).release()
            except interlock.Error:
                errors += 1
            if pause:
                time.sleep(pause)
        log("burst_done", n=n, errors=errors)

    def cmd_drive(self, res: str, host: str, port: str, name: str, rounds: str,
                  hold: str) -> None:
        self.spawn(self._drive, res, host, int(port), name, int(rounds), float(hold))

    def _drive(self, res, host, port, name, rounds, hold) -> None:
        dev = socket.create_connection((host, port))
        dev.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = dev.makefile("r")
        n = 0

        def command(fence: int, zombie: bool, valid: bool) -> bool:
            nonlocal n
            n += 1
            sent = time.time()
            dev.sendall((json.dumps({"client": name, "fence": fence, "n": n, "sent": sent,
                                     "zombie": zombie, "valid": valid}) + "\n").encode())
            answer = json.loads(reader.readline())
            log("command", n=n, fence=fence, sent=sent, zombie=zombie, valid=valid,
                accepted=answer["accepted"], why=answer.get("why"), answered=time.time())
            return answer["accepted"]

        done = 0
        while done < rounds and not self.stopping.is_set():
            session = self.session
            try:
                if session is None:
                    raise interlock.NotFound("no session")
                lease = session.acquire(res, timeout=10, on_lost=self.on_lost)
            except interlock.ConnectionLost:
                time.sleep(0.05)  # the link reconnects by itself
                continue
            except interlock.Error as e:
                log("acquire_failed", res=res, error=type(e).__name__, message=str(e))
                self._reopen(name)
                continue
            log("granted", res=res, fence=lease.fence, session=lease.session_id)
            end = time.time() + hold
            while time.time() < end and lease.valid:
                command(lease.fence, zombie=False, valid=True)
                time.sleep(0.02)
            # Released, or lost on the way (during a cut a release cannot get through:
            # it is tried again until it does, or until the lease turns lost).
            while lease.valid and not self._released(lease):
                time.sleep(0.05)
            if not lease.valid:
                # A holder that goes on regardless: the device must refuse it, once the
                # server has ended the lease.
                lost_at = time.time()
                while time.time() < lost_at + 1.0:
                    command(lease.fence, zombie=True, valid=lease.valid)
                    time.sleep(0.05)
                self._reopen(name)
            done += 1
            time.sleep(0.05)
        log("drive_done", rounds=done)

    def _released(self, lease: interlock.Lease) -> bool:
        log("releasing", res=lease.resource, fence=lease.fence)
        try:
            lease.release()
        except interlock.ConnectionLost:
            return False
        except interlock.Error as e:
            log("release_failed", res=lease.resource, fence=lease.fence, error=type(e).__name__)
            return True
        log("released", res=lease.resource, fence=lease.fence)
        return True

    def _reopen(self, name: str) -> None:
        """After a loss or a failed wait: a fresh session once the server answers (the old
        one may have expired there)."""
        assert self.eng is not None
        while True:
            try:
                if self.session is not None:
                    try:
                        self.session.heartbeat()
                        return
                    except (interlock.SessionExpired, interlock.NotFound):
                        pass
                self.session = self.eng.session(name, metadata={"pid": os.getpid()})
                log("opened", session=self.session.id, name=name)
                return
            except interlock.ConnectionLost:
                time.sleep(0.05)

    def cmd_stop(self) -> None:
        """Ends drives after their current round."""
        self.stopping.set()

    def cmd_close(self) -> None:
        assert self.session is not None
        log("closed", released=self.session.close())


def main() -> None:
    w = Worker()
    log("ready", pid=os.getpid(), lang="python")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "exit":
            break
        f = getattr(w, "cmd_" + words[0], None)
        if f is None:
            log("error", error="UnknownCommand", message=line.strip())
            continue
        try:
            f(*words[1:])
        except Exception as e:  # noqa: BLE001
            log("error", error=type(e).__name__, message=str(e), command=line.strip(),
                trace=traceback.format_exc())
    log("bye")
    if w.eng is not None:
        w.eng.close()


if __name__ == "__main__":
    main()
