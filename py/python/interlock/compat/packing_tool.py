"""The Packing Tool's session lock manager (seed 002) over any interlock engine: the
method names, arguments and return shapes of its ``SessionLockManager``, with the lock
on a server instead of a ``.session.lock`` file on the shared drive.

::

    import interlock
    from interlock.compat.packing_tool import SessionLockManager

    manager = SessionLockManager(interlock.connect("http://lock-pc:7411"),
                                 user_name="Ivan Petrenko", app_version="1.2.0")
    ok, message = manager.acquire_lock("M", session_dir)

Each lock is a lease held by an interlock session of its own, with the metadata the lock
file had (computer, user, process, version, worker) and a TTL of ``STALE_TIMEOUT``: when
its heartbeats stop it turns stale (its lease stays held), and another PC may take it
over with ``force_release_lock`` - atomically, so of two PCs racing exactly one wins.
Staleness is decided by the server's clock alone. Needs no third-party package.
"""

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import interlock

from ._common import iso_local

__all__ = ["SessionLockManager"]

PathLike = Union[str, "os.PathLike[str]"]


def _username() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USERNAME") or os.environ.get("USER") or "Unknown"


class SessionLockManager:
    """Session locks shared by every PC that uses the same engine (normally
    `interlock.connect(url)` to one server)."""

    HEARTBEAT_INTERVAL = 60  # seconds: how often the application calls update_heartbeat
    STALE_TIMEOUT = 120  # seconds without a heartbeat before a lock is stale

    def __init__(
        self,
        engine: interlock.Engine,
        user_name: Optional[str] = None,
        hostname: Optional[str] = None,
        app_version: Optional[str] = None,
        *,
        stale_timeout: Optional[float] = None,
    ) -> None:
        self.engine = engine
        self.username = user_name or _username()
        self.hostname = hostname or socket.gethostname()
        self.process_id = os.getpid()
        self.app_version = app_version or "unknown"
        self.stale_timeout = float(stale_timeout or self.STALE_TIMEOUT)
        # The locks this manager holds: the interlock session of each and its lease.
        self._held: dict[str, tuple[interlock.Session, interlock.Lease]] = {}
        # Sessions of lost locks that could not be closed yet (the server was away).
        self._ended: list[interlock.Session] = []
        self._mutex = threading.Lock()

    @staticmethod
    def resource(session_dir: PathLike) -> str:
        """The lock's name: the session folder's path, normalised."""
        return os.path.normpath(os.fspath(session_dir))

    def _mine(self, r: str) -> Optional[tuple[interlock.Session, interlock.Lease]]:
        """This manager's live lock on `r`; a lost one is forgotten (and its session
        closed)."""
        self._close_ended()
        entry = self._held.get(r)
        if entry is not None and not entry[1].valid:
            del self._held[r]
            self._ended.append(entry[0])
            self._close_ended()
            return None
        return entry

    def _close_ended(self) -> None:
        while self._ended:
            try:
                self._ended[-1].close()
            except interlock.ConnectionLost:
                return  # the next call tries again
            self._ended.pop()

    def _take(
        self, r: str, metadata: dict[str, Any], break_stale: bool
    ) -> Optional[tuple[interlock.Session, interlock.Lease]]:
        """Opens a session for a lock on `r` and acquires it without waiting: the pair,
        or None (and no session left open) if it is held."""
        s = self.engine.session(
            f"{self.username} on {self.hostname}",
            metadata={
                "client": "packing_tool",
                "locked_by": self.hostname,
                "user_name": self.username,
                "process_id": self.process_id,
                "app_version": self.app_version,
                **metadata,
            },
            ttl=self.stale_timeout,
            on_expire="keep",
        )
        try:
            lease = s.acquire(r, timeout=0, break_stale=break_stale)
        except BaseException as e:
            self._ended.append(s)
            self._close_ended()
            if isinstance(e, interlock.LockTimeout):
                return None
            raise
        self._held[r] = (s, lease)
        return s, lease

    def acquire_lock(
        self,
        client_id: str,
        session_dir: PathLike,
        worker_id: Optional[str] = None,
        worker_name: Optional[str] = None,
    ) -> tuple[bool, Optional[str]]:
        """Locks the session: `(True, None)`, also for this manager's own lock again;
        else `(False, message)`. A stale holder's message contains the word "stale"."""
        r = self.resource(session_dir)
        with self._mutex:
            try:
                mine = self._mine(r)
                if mine is not None:
                    mine[0].heartbeat()
                    return True, None
                taken = self._take(
                    r,
                    {"client_id": client_id, "worker_id": worker_id, "worker_name": worker_name},
                    break_stale=False,
                )
                if taken is not None:
                    return True, None
                locked, info = self.is_locked(session_dir)
            except interlock.ConnectionLost as e:
                return False, f"The lock server cannot be reached: {e}"
        if not locked or info is None:
            return False, "The session lock changed hands just now: please try again."
        if info["stale"]:
            return False, self._stale_message(info)
        return False, (
            "Session is currently active on another PC:\n"
            f"{info['user_name']} on {info['locked_by']}\n"
            "Please wait or choose another session."
        )

    def _stale_message(self, info: dict[str, Any]) -> str:
        return (
            f"Session has a stale lock (no heartbeat for {self._stale_minutes(info)} minutes):\n"
            f"{info['user_name']} on {info['locked_by']}\n"
            "The application may have crashed.\n"
            "You can force-release the lock."
        )

    @staticmethod
    def _stale_minutes(info: dict[str, Any]) -> int:
        idle = info.get("idle_seconds")
        return int(idle // 60) if isinstance(idle, (int, float)) else 0

    def release_lock(self, session_dir: PathLike) -> bool:
        """Releases this manager's lock: True if it is released or there is none, False
        if another holds it."""
        r = self.resource(session_dir)
        with self._mutex:
            entry = self._held.pop(r, None)
            try:
                if entry is not None:
                    session, lease = entry
                    held = lease.valid
                    self._ended.append(session)  # closing it releases the lease
                    self._close_ended()
                    if held and not self._ended:
                        return True
                return not self.engine.status(r)["locked"]
            except interlock.ConnectionLost:
                return False

    def is_locked(self, session_dir: PathLike) -> tuple[bool, Optional[dict[str, Any]]]:
        """`(False, None)`, or `(True, info)` with the lock file's fields: `locked_by`
        (the computer), `user_name`, `lock_time`, `process_id`, `app_version`,
        `heartbeat`, `worker_id`, `worker_name`; and `stale` (the server's verdict) and
        `idle_seconds` since the last heartbeat. An unreachable server raises
        `interlock.ConnectionLost` (a `ConnectionError`): it never reads as free."""
        st = self.engine.status(self.resource(session_dir))
        if not st["holders"]:
            return False, None
        h = st["holders"][0]
        row = next((s for s in self.engine.sessions() if s["id"] == h["session_id"]), None)
        return True, _info(h, row)

    def update_heartbeat(self, session_dir: PathLike) -> bool:
        """Proves this manager's holder is alive: False if it holds no lock there (any
        more), or the server cannot be reached."""
        with self._mutex:
            mine = self._mine(self.resource(session_dir))
            if mine is None:
                return False
            try:
                mine[0].heartbeat()
            except interlock.Error:
                return False
            return mine[1].valid

    def is_lock_stale(
        self, lock_info: dict[str, Any], stale_timeout: Optional[float] = None
    ) -> bool:
        """Is the lock of `lock_info` (from `is_locked`) stale? With no `stale_timeout`,
        the server's verdict; with one, whether the heartbeat is older than that."""
        if stale_timeout is None and isinstance(lock_info.get("stale"), bool):
            return bool(lock_info["stale"])
        idle = lock_info.get("idle_seconds")
        if not isinstance(idle, (int, float)):
            return True
        return idle > (stale_timeout if stale_timeout is not None else self.stale_timeout)

    def force_release_lock(self, session_dir: PathLike) -> bool:
        """Takes a stale lock over: True if it was stale (or free, or already this
        manager's), and then this manager holds it (`acquire_lock` gives `(True, None)`,
        `release_lock` lets it go); False if its holder is alive - also when another PC
        won the race for it."""
        r = self.resource(session_dir)
        with self._mutex:
            if self._mine(r) is not None:
                return True
            taken = self._take(r, {"taken_over": True}, break_stale=True)
        return taken is not None

    def get_all_active_sessions(self) -> dict[str, list[dict[str, Any]]]:
        """The Session Monitor's rows: by client id, each session folder's name, path
        and lock info (as `is_locked` gives it)."""
        rows = {s["id"]: s for s in self.engine.sessions()}
        out: dict[str, list[dict[str, Any]]] = {}
        for st in self.engine.locks():
            h = st["holders"][0]
            if h["metadata"].get("client") != "packing_tool":
                continue
            info = _info(h, rows.get(h["session_id"]))
            client = str(h["metadata"].get("client_id") or "")
            out.setdefault(client, []).append(
                {
                    "session_name": Path(st["resource"]).name,
                    "session_path": st["resource"],
                    "lock_info": info,
                }
            )
        return out

    def close(self) -> None:
        """Releases every lock of this manager."""
        with self._mutex:
            held = list(self._held.values())
            self._held.clear()
        for session, _ in held:
            session.close()

    def __enter__(self) -> "SessionLockManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _info(h: dict[str, Any], row: Optional[dict[str, Any]]) -> dict[str, Any]:
    """A holder as the lock file showed it."""
    md = h["metadata"]
    last_seen = row["last_seen"] if row is not None else h["acquired_at"]
    return {
        "locked_by": md.get("locked_by") or md.get("host") or h["session_name"],
        "user_name": md.get("user_name") or md.get("user") or h["session_name"],
        "lock_time": iso_local(h["acquired_at"]),
        "process_id": md.get("process_id"),
        "app_version": md.get("app_version"),
        "heartbeat": iso_local(last_seen),
        "worker_id": md.get("worker_id"),
        "worker_name": md.get("worker_name"),
        "client_id": md.get("client_id"),
        "stale": bool(h["stale"]),
        # For the minutes in a message only: whether a lock is stale is the server's call.
        "idle_seconds": max(0.0, time.time() - last_seen),
    }


def main(argv: Optional[list[str]] = None) -> None:
    """`--port P`: serves an engine for the PCs (the "server on one PC"); `--url URL`:
    prints the Session Monitor of that server."""
    import argparse

    p = argparse.ArgumentParser(description="the Packing Tool's session lock server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7411)
    p.add_argument("--url", default=os.environ.get("INTERLOCK_URL"), help="print its sessions")
    p.add_argument("--token", default=os.environ.get("INTERLOCK_TOKEN"))
    p.add_argument("--journal", help="the SQLite journal of the served engine")
    args = p.parse_args(argv)
    if args.url:
        with interlock.connect(args.url, token=args.token) as eng:
            sessions = SessionLockManager(eng).get_all_active_sessions()
        for client, rows in sorted(sessions.items()):
            for row in rows:
                i = row["lock_info"]
                state = "stale" if i["stale"] else "active"
                print(
                    f"{client}\t{row['session_name']}\t{i['user_name']}\t{i['locked_by']}\t"
                    f"{i['lock_time']}\t{i['heartbeat']}\t{state}"
                )
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with (
        interlock.Engine(journal=args.journal) as eng,
        eng.serve(f"{args.host}:{args.port}") as srv,
    ):
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
