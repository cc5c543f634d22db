"""LabLink's equipment lock API (``/api/locks``, seed 001) over any interlock engine.

::

    from fastapi import FastAPI
    from interlock.compat import lablink

    locks = lablink.router(engine, admin_token="...")
    app = FastAPI()
    app.include_router(locks)                    # /api/locks/... as LabLink served it

    @app.post("/api/equipment/{equipment_id}/command")
    def command(cmd: Command, permit: lablink.Permit = Depends(locks.permission())): ...

A LabLink ``session_id`` is the client's credential: the router keeps the interlock
session it opened for each, and never shows an id to anyone but its owner (listings show
the session's name and a short label instead). ``timeout_seconds`` is the lease TTL;
queues, observers, expiry and force release are the engine's, exactly as it does them.
"""

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Literal, Optional

from ._web import (
    Redactor,
    add_admin_argument,
    admin_dependency,
    engine_errors,
    log,
    run_launcher,
)
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

import interlock

from ._common import holder, iso, label, launcher_arguments, open_engine

__all__ = [
    "CONTROL_COMMANDS",
    "OBSERVER_COMMANDS",
    "LabLinkRouter",
    "Permit",
    "classify",
    "redact",
    "router",
]

# The seed's command classes; any other `get_`/`read_`/`measure` command reads, every
# other command controls (an unknown command needs the exclusive lock).
CONTROL_COMMANDS = frozenset(
    {
        "set_voltage",
        "set_current",
        "set_output",
        "set_input",
        "set_mode",
        "set_range",
        "reset",
        "calibrate",
        "set_timebase",
        "set_trigger",
        "start",
        "stop",
    }
)
OBSERVER_COMMANDS = frozenset(
    {"get_voltage", "get_current", "get_status", "get_measurement", "get_waveform", "get_info"}
)

Action = Literal["control", "observe"]


def classify(command: str) -> Action:
    """Which lock a command needs: `"control"` (exclusive) or `"observe"` (any)."""
    if command in CONTROL_COMMANDS:
        return "control"
    if command in OBSERVER_COMMANDS or command.startswith(("get_", "read_", "measure")):
        return "observe"
    return "control"


# --- request bodies ---------------------------------------------------------------------


class AcquireLockRequest(BaseModel):
    equipment_id: str
    session_id: str
    lock_mode: Literal["exclusive", "observer"] = "exclusive"
    timeout_seconds: Optional[int] = Field(default=None, ge=0)  # 0: no TTL
    queue_if_busy: bool = False


class ReleaseLockRequest(BaseModel):
    equipment_id: str
    session_id: str
    force: bool = False


class UpdateActivityRequest(BaseModel):
    session_id: str


class CreateSessionRequest(BaseModel):
    client_name: Optional[str] = None
    client_ip: Optional[str] = None
    timeout_seconds: Optional[int] = Field(default=None, ge=0)  # 0: no TTL
    metadata: Optional[dict[str, Any]] = None


@dataclass(frozen=True)
class Permit:
    """What `permission()` hands a command route that may go ahead. `fence` is the
    lease's fence when this router holds it (a driver can `check_fence` it)."""

    equipment_id: str
    action: Action
    session_name: str
    fence: Optional[int]


# --- the translation --------------------------------------------------------------------


class _Client:
    """One LabLink session: the interlock session opened for it, its leases and its
    waiting tickets, by equipment."""

    OUTCOME_WAIT = 5.0  # seconds: how long a ticket out of the queue may take to say how

    def __init__(self, session: interlock.Session) -> None:
        self.session = session
        self.leases: dict[str, interlock.Lease] = {}
        self.tickets: dict[str, interlock.Ticket[interlock.Lease]] = {}
        # What a waiting ticket asked for, and since when (as the engine's queue shows it).
        self.queued_mode: dict[str, str] = {}
        self.queued_at: dict[str, float] = {}
        self.ttl: dict[str, Optional[int]] = {}
        self.busy = threading.Lock()  # one request of a client at a time

    def held(self, equipment: str) -> Optional[interlock.Lease]:
        """Its current lease on `equipment`, taking up a grant its ticket received."""
        lease = self.leases.get(equipment)
        if lease is not None:
            if lease.valid:
                return lease
            del self.leases[equipment]
        ticket = self.tickets.get(equipment)
        if ticket is not None and ticket.position is None:
            try:
                # Out of the queue: its outcome is here, or (over a server) on its way.
                lease = ticket.wait(self.OUTCOME_WAIT)
            except interlock.LockTimeout:
                return None
            except interlock.Error:
                self.drop_ticket(equipment)
                return None
            self.drop_ticket(equipment)
            self.leases[equipment] = lease
            return lease if lease.valid else None
        return None

    def drop_ticket(self, equipment: str) -> "Optional[interlock.Ticket[interlock.Lease]]":
        self.queued_mode.pop(equipment, None)
        self.queued_at.pop(equipment, None)
        return self.tickets.pop(equipment, None)

    def waiting(self, equipment: str) -> "Optional[interlock.Ticket[interlock.Lease]]":
        self.held(equipment)  # a ticket that was granted is taken up
        return self.tickets.get(equipment)


def _queue_id(session_id: str, equipment: str, queued_at: float) -> str:
    digest = hashlib.sha256(f"{session_id}|{equipment}|{queued_at!r}".encode()).hexdigest()
    return f"queue_{digest[:12]}"


def _describe(h: dict[str, Any]) -> str:
    return f"{h['session_name']} ({label(h['session_id'])})"


class LabLink:
    """The routes' logic: translation of LabLink requests into engine calls (each method
    is blocking: the routes run them in the thread pool)."""

    def __init__(
        self,
        engine: interlock.Engine,
        lock_timeout: int,
        session_timeout: int,
    ) -> None:
        self.engine = engine
        self.lock_timeout = lock_timeout
        self.session_timeout = session_timeout
        self._clients: dict[str, _Client] = {}
        self._mutex = threading.Lock()

    # sessions

    def _open(
        self,
        session_id: str,
        name: Optional[str],
        ip: Optional[str],
        timeout: Optional[int],
        metadata: Optional[dict[str, Any]],
    ) -> _Client:
        t = self.session_timeout if timeout is None else timeout
        session = self.engine.session(
            name or f"LabLink client at {ip or 'unknown'}",
            metadata={
                "client": "lablink",
                "client_ip": ip,
                "timeout_seconds": t,
                "metadata": metadata or {},
            },
            ttl=float(t) if t else None,
        )
        client = _Client(session)
        self._clients[session_id] = client
        return client

    def client(self, session_id: str) -> Optional[_Client]:
        with self._mutex:
            return self._clients.get(session_id)

    def client_for(self, session_id: str, ip: Optional[str]) -> _Client:
        """The client of `session_id`, opening a session for an id never seen (the real
        client makes its ids itself and never calls /sessions/create)."""
        with self._mutex:
            c = self._clients.get(session_id)
            if c is None:
                c = self._open(session_id, None, ip, None, None)
            return c

    def forget(self, session_id: str, c: _Client) -> None:
        with self._mutex:
            if self._clients.get(session_id) is c:
                del self._clients[session_id]

    def create_session(self, req: CreateSessionRequest, ip: Optional[str]) -> dict[str, Any]:
        session_id = str(uuid.uuid4())
        with self._mutex:
            c = self._open(
                session_id, req.client_name, req.client_ip or ip, req.timeout_seconds, req.metadata
            )
        return self.session_info(session_id, c)

    def _row(self, c: _Client) -> Optional[dict[str, Any]]:
        return next((r for r in self.engine.sessions() if r["id"] == c.session.id), None)

    def session_info(self, session_id: str, c: _Client) -> dict[str, Any]:
        row = self._row(c)
        if row is None:
            self.forget(session_id, c)
            raise HTTPException(404, "Session not found")
        return _session_response(row, session_id)

    def known(self, session_id: str) -> tuple[_Client, dict[str, Any]]:
        c = self.client(session_id)
        row = self._row(c) if c is not None else None
        if c is None or row is None:
            if c is not None:
                self.forget(session_id, c)
            raise HTTPException(404, "Session not found")
        return c, row

    def end_session(self, session_id: str) -> dict[str, Any]:
        c = self.client(session_id)
        if c is None:
            raise HTTPException(404, "Session not found")
        self.forget(session_id, c)
        with c.busy:
            released = c.session.close()
        return {
            "success": True,
            "message": "Session ended",
            "session_id": session_id,
            "locks_released": released,
        }

    def session_activity(self, session_id: str) -> dict[str, Any]:
        c = self.client(session_id)
        if c is None:
            raise HTTPException(404, "Session not found")
        try:
            c.session.heartbeat()
        except (interlock.SessionExpired, interlock.NotFound):
            self.forget(session_id, c)
            raise HTTPException(404, "Session not found") from None
        return {"success": True, "message": "Session activity updated", "session_id": session_id}

    def all_sessions(self) -> dict[str, Any]:
        rows = [r for r in self.engine.sessions() if r["metadata"].get("client") == "lablink"]
        return {"sessions": [_session_response(r, None) for r in rows], "count": len(rows)}

    def cleanup(self) -> dict[str, Any]:
        """Expiry is the engine's and immediate; this only forgets the sessions that have
        ended, and their leases."""
        alive = {r["id"] for r in self.engine.sessions()}
        with self._mutex:
            gone = [k for k, c in self._clients.items() if c.session.id not in alive]
            for k in gone:
                del self._clients[k]
        return {"success": True, "message": "Cleanup completed", "expired_sessions": len(gone)}

    # locks

    def acquire(self, req: AcquireLockRequest, ip: Optional[str]) -> dict[str, Any]:
        for _ in range(2):
            c = self.client_for(req.session_id, ip)
            try:
                with c.busy:
                    return self._acquire(c, req)
            except (interlock.SessionExpired, interlock.NotFound):
                self.forget(req.session_id, c)  # it ended: the id starts a new session
        raise HTTPException(503, "the lock engine is unavailable")

    def _acquire(self, c: _Client, req: AcquireLockRequest) -> dict[str, Any]:
        eq = req.equipment_id
        mode: Literal["exclusive", "shared"] = (
            "shared" if req.lock_mode == "observer" else "exclusive"
        )
        t = self.lock_timeout if req.timeout_seconds is None else req.timeout_seconds
        ttl = float(t) if t else None
        waiting = c.waiting(eq)  # first: a grant its ticket received is taken up
        lease = c.held(eq)
        if lease is not None:
            if lease.mode != mode:
                held = "an observer" if lease.mode == "shared" else "an exclusive"
                raise HTTPException(
                    409, f"This session holds {held} lock on {eq}: release it first"
                )
            c.session.heartbeat()
            lease.renew(ttl)
            c.ttl[eq] = t
            return {
                "success": True,
                "status": "refreshed",
                "lock": self._lock(req.session_id, lease, c),
            }
        if waiting is None:
            if req.queue_if_busy:
                ticket = c.session.enqueue(eq, mode=mode, ttl=ttl)
                if ticket.position is not None:
                    c.tickets[eq] = ticket
                    c.queued_mode[eq] = mode
                else:  # granted at once
                    lease = ticket.wait(_Client.OUTCOME_WAIT)
            else:
                try:
                    lease = c.session.acquire(eq, mode=mode, timeout=0, ttl=ttl)
                except interlock.LockTimeout:
                    h = holder(self.engine.status(eq))
                    by = _describe(h) if h is not None else "another session"
                    raise HTTPException(409, f"Equipment {eq} is locked by {by}") from None
        c.ttl[eq] = t
        if lease is None:
            return self._queued(req.session_id, c, eq)
        c.leases[eq] = lease
        if mode == "shared":
            holders = self.engine.status(eq)["holders"]
            return {"success": True, "status": "observer", "observer_count": len(holders)}
        return {"success": True, "status": "locked", "lock": self._lock(req.session_id, lease, c)}

    def _queued(self, session_id: str, c: _Client, eq: str) -> dict[str, Any]:
        """The answer to a request that waits in the queue (or was granted just now: over
        a server, the grant's notice may come a moment after the status that shows it)."""
        st = self.engine.status(eq)
        lease = c.held(eq)
        ticket = c.tickets.get(eq)
        if lease is not None or ticket is None:
            if lease is None:  # it failed meanwhile (its session ended)
                raise HTTPException(409, f"Equipment {eq} is no longer queued for")
            return {"success": True, "status": "locked", "lock": self._lock(session_id, lease, c)}
        mine = next((w for w in st["waiters"] if w["session_id"] == c.session.id), None)
        if mine is not None:
            c.queued_at.setdefault(eq, mine["queued_at"])
        queued_at = c.queued_at.setdefault(eq, time.time())
        h = holder(st)
        by = _describe(h) if h is not None else "another session"
        return {
            "success": False,
            "status": "queued",
            "message": f"Equipment locked by {by}",
            "queue_entry": {
                "queue_id": _queue_id(c.session.id, eq, queued_at),
                "equipment_id": eq,
                "session_id": session_id,
                "lock_mode": "observer" if c.queued_mode.get(eq) == "shared" else "exclusive",
                "position": mine["position"] if mine is not None else ticket.position,
                "queued_at": iso(queued_at),
            },
        }

    def _lock(self, session_id: str, lease: interlock.Lease, c: _Client) -> dict[str, Any]:
        return {
            "lock_id": f"lock_{lease.fence}",
            "equipment_id": lease.resource,
            "session_id": session_id,
            "lock_mode": "observer" if lease.mode == "shared" else "exclusive",
            "acquired_at": iso(lease.acquired_at),
            "last_activity": iso(time.time()),
            "timeout_seconds": c.ttl.get(lease.resource, self.lock_timeout),
            "fence": lease.fence,
        }

    def release(self, req: ReleaseLockRequest, admin: bool) -> dict[str, Any]:
        eq = req.equipment_id
        c = self.client(req.session_id)
        if c is not None:
            with c.busy:
                lease = c.held(eq)
                if lease is not None:
                    c.leases.pop(eq, None)
                    try:
                        lease.release()
                    except interlock.LockLost:
                        pass  # lost meanwhile: the lock is no longer its to release
                    else:
                        status = "observer_released" if lease.mode == "shared" else "released"
                        return {"success": True, "status": status, "was_forced": False}
                ticket = c.drop_ticket(eq)
                if ticket is not None:
                    ticket.cancel()
                    return {"success": True, "status": "dequeued", "was_forced": False}
        holders = self.engine.status(eq)["holders"]
        h = next((h for h in holders if h["mode"] == "exclusive"), None)
        # Forced, it goes whoever holds it: also observers that block an exclusive request.
        if h is None and not (req.force and holders):
            return {
                "success": False,
                "status": "not_locked",
                "message": f"No lock on {eq} for this session",
            }
        if not req.force:
            assert h is not None
            raise HTTPException(403, f"Cannot release lock: owned by {_describe(h)}")
        if not admin:
            raise HTTPException(403, "Force release needs the admin token")
        self.engine.force_release(eq, reason="forced through the LabLink API")
        log.info("lablink: %s force-released by an admin", eq)
        return {"success": True, "status": "released", "was_forced": True}

    def activity(self, eq: str, session_id: str) -> dict[str, Any]:
        missing = HTTPException(404, f"No lock found for equipment {eq} and this session")
        c = self.client(session_id)
        if c is None:
            raise missing
        with c.busy:
            lease = c.held(eq)
            if lease is None:
                raise missing
            try:
                expires = lease.renew()
            except interlock.LockLost:
                raise missing from None
        return {
            "success": True,
            "message": "Activity updated",
            "equipment_id": eq,
            "session_id": session_id,
            "time_remaining": None if expires is None else max(0.0, expires - time.time()),
        }

    def permitted(self, eq: str, session_id: Optional[str], action: Action) -> Permit:
        if not session_id:
            raise HTTPException(401, "A session_id is required for equipment commands")
        c = self.client(session_id)
        if c is None:
            raise HTTPException(401, "Unknown session")
        if not self.engine.check(eq, c.session.id, action):
            h = holder(self.engine.status(eq))
            by = f": locked by {_describe(h)}" if h is not None else ""
            need = "an exclusive lock" if action == "control" else "a lock"
            raise HTTPException(403, f"Command on {eq} needs {need}{by}")
        fence = None
        with c.busy:
            lease = c.held(eq)
            if lease is not None:
                fence = lease.fence
                try:
                    lease.renew()  # a command is activity, as in LabLink
                except interlock.LockLost:
                    raise HTTPException(403, f"The lock on {eq} was lost") from None
        return Permit(eq, action, c.session.name, fence)

    # listings

    def status(self, eq: str) -> dict[str, Any]:
        return _status(self.engine.status(eq))

    def queue(self, eq: str) -> dict[str, Any]:
        st = self.engine.status(eq)
        return {"equipment_id": eq, "queue": _queue(st)}

    def all_locks(self) -> dict[str, Any]:
        exclusive: dict[str, Any] = {}
        observers: dict[str, list[str]] = {}
        queues: dict[str, list[dict[str, Any]]] = {}
        for st in self.engine.locks():
            eq = st["resource"]
            if st["mode"] == "exclusive":
                exclusive[eq] = _public_lock(eq, st["holders"][0])
            else:
                observers[eq] = [label(h["session_id"]) for h in st["holders"]]
            if st["waiters"]:
                queues[eq] = _queue(st)
        return {"exclusive_locks": exclusive, "observer_locks": observers, "queues": queues}

    def events(self, eq: str, limit: int) -> dict[str, Any]:
        events = [_event(e) for e in self.engine.history(resource=eq, limit=limit)]
        return {"equipment_id": eq, "events": events, "count": len(events)}

    def session_locks(self, session_id: str) -> dict[str, Any]:
        _, row = self.known(session_id)
        return {
            "session_id": session_id,
            "locked_equipment": row["leases"],
            "count": len(row["leases"]),
        }

    def session_events(self, session_id: str, limit: int) -> dict[str, Any]:
        c, _ = self.known(session_id)
        events = [_event(e) for e in self.engine.history(session_id=c.session.id, limit=limit)]
        return {"session_id": session_id, "events": events, "count": len(events)}


def _session_response(row: dict[str, Any], session_id: Optional[str]) -> dict[str, Any]:
    """A session as LabLink showed it; its id only to its owner (`session_id` given)."""
    md = row["metadata"]
    ours = md.get("client") == "lablink"
    now = time.time()
    expires = row["expires_at"]
    return {
        "session_id": session_id,
        "session_label": label(row["id"]),
        "client_name": row["name"],
        "client_ip": md.get("client_ip") if ours else None,
        "created_at": iso(row["created_at"]),
        "last_activity": iso(row["last_seen"]),
        "time_remaining": None if expires is None else max(0.0, expires - now),
        "duration_seconds": max(0.0, now - row["created_at"]),
        "metadata": (md.get("metadata") or {}) if ours else md,
    }


def _public_lock(eq: str, h: dict[str, Any]) -> dict[str, Any]:
    return {
        "lock_id": f"lock_{h['fence']}",
        "equipment_id": eq,
        "session_id": None,
        "session_name": h["session_name"],
        "session_label": label(h["session_id"]),
        "lock_mode": "observer" if h["mode"] == "shared" else "exclusive",
        "acquired_at": iso(h["acquired_at"]),
        "expires_at": iso(h["expires_at"]),
        "time_remaining": h["remaining"],
        "fence": h["fence"],
    }


def _status(st: dict[str, Any]) -> dict[str, Any]:
    eq = st["resource"]
    answer: dict[str, Any] = {
        "equipment_id": eq,
        "locked": False,
        "lock_mode": None,
        "session_id": None,
        "session_name": None,
        "session_label": None,
        "lock_id": None,
        "acquired_at": None,
        "time_remaining": None,
        "observer_count": None,
        "observer_sessions": None,
        "queue_length": len(st["waiters"]),
    }
    if st["mode"] == "exclusive":
        h = st["holders"][0]
        answer.update(
            locked=True,
            lock_mode="exclusive",
            session_name=h["session_name"],
            session_label=label(h["session_id"]),
            lock_id=f"lock_{h['fence']}",
            acquired_at=iso(h["acquired_at"]),
            time_remaining=h["remaining"],
        )
    elif st["mode"] == "shared":
        answer.update(
            observer_count=len(st["holders"]),
            observer_sessions=[label(h["session_id"]) for h in st["holders"]],
        )
    return answer


def _queue(st: dict[str, Any]) -> list[dict[str, Any]]:
    eq = st["resource"]
    return [
        {
            "queue_id": _queue_id(w["session_id"], eq, w["queued_at"]),
            "equipment_id": eq,
            "session_id": None,
            "session_name": w["session_name"],
            "session_label": label(w["session_id"]),
            "lock_mode": "observer" if w["mode"] == "shared" else "exclusive",
            "position": w["position"],
            "queued_at": iso(w["queued_at"]),
        }
        for w in st["waiters"]
    ]


_EVENT_NAMES = {
    "acquired": "lock_acquired",
    "released": "lock_released",
    "expired": "lock_expired",
    "force_released": "lock_force_released",
    "preempted": "lock_preempted",
    "queued": "queued",
    "dequeued": "dequeued",
}


def _event(e: interlock.Event) -> dict[str, Any]:
    name = _EVENT_NAMES.get(e.kind, e.kind)
    if e.mode == "shared" and e.kind in ("acquired", "released"):
        name = f"observer_{name}"
    return {
        "event": name,
        "equipment_id": e.resource,
        "session_name": e.session_name,
        "session_label": label(e.session_id) if e.session_id else None,
        "lock_id": f"lock_{e.fence}" if e.fence is not None else None,
        "lock_mode": {"shared": "observer", "exclusive": "exclusive"}.get(e.mode or ""),
        "position": e.position,
        "reason": e.reason,
        "timestamp": iso(e.at),
        "seq": e.seq,
    }


# --- the router -------------------------------------------------------------------------


class LabLinkRouter(APIRouter):
    """The `/api/locks` routes, and `permission()` for an app's command routes."""

    lablink: LabLink

    def permission(
        self, action: Optional[Action] = None
    ) -> Callable[[Request], Coroutine[Any, Any, Permit]]:
        """A dependency for a command route (LabLink's `POST /api/equipment/{id}/command`
        with `{action, session_id, ...}`): 401 without a known `session_id`, 403 unless
        the session holds the equipment exclusively (`"control"`) or at all
        (`"observe"`). Without `action`, the body's `action` is classified (`classify`).
        The equipment is the path's `equipment_id`, else the body's; the session is the
        body's `session_id`, else the header `X-Session-Id` (for a route without a body).
        Allowed, it counts as the lock's activity and returns a `Permit`."""
        lablink = self.lablink

        async def permit(request: Request) -> Permit:
            body: Any = {}
            if await request.body():
                try:
                    body = await request.json()
                except ValueError:
                    raise HTTPException(422, "the body is not JSON") from None
            if not isinstance(body, dict):
                body = {}
            eq = request.path_params.get("equipment_id") or body.get("equipment_id")
            if not isinstance(eq, str) or not eq:
                raise HTTPException(422, "no equipment_id")
            sid = body.get("session_id") or request.headers.get("x-session-id")
            act = action or classify(str(body.get("action", "")))
            with engine_errors():
                return await run_in_threadpool(
                    lablink.permitted, eq, sid if isinstance(sid, str) else None, act
                )

        return permit


def router(
    engine: interlock.Engine,
    *,
    admin_token: Optional[str] = None,
    lock_timeout: int = 300,
    session_timeout: int = 600,
) -> LabLinkRouter:
    """LabLink's `/api/locks` routes over `engine`. `lock_timeout` is the TTL of a lock
    whose request gives no `timeout_seconds`, `session_timeout` that of a session made
    for an id not created through `/sessions/create` (LABLINK_LOCK_TIMEOUT_SEC and
    LABLINK_SESSION_TIMEOUT_SEC; 0: none). `admin_token` (sent as `Authorization:
    Bearer`) is what `force` needs; without one, force release is refused."""
    ll = LabLink(engine, lock_timeout, session_timeout)
    r = LabLinkRouter(prefix="/api/locks", tags=["Equipment Locks & Sessions"])
    r.lablink = ll
    admin = admin_dependency(admin_token)

    def ip(request: Request) -> Optional[str]:
        return request.client.host if request.client else None

    @r.post("/acquire")
    def acquire(req: AcquireLockRequest, request: Request) -> dict[str, Any]:
        with engine_errors():
            return ll.acquire(req, ip(request))

    @r.post("/release")
    def release(req: ReleaseLockRequest, is_admin: bool = Depends(admin)) -> dict[str, Any]:
        with engine_errors():
            return ll.release(req, is_admin)

    @r.get("/status/{equipment_id:path}")
    def status(equipment_id: str) -> dict[str, Any]:
        with engine_errors():
            return ll.status(equipment_id)

    @r.get("/queue/{equipment_id:path}")
    def queue(equipment_id: str) -> dict[str, Any]:
        with engine_errors():
            return ll.queue(equipment_id)

    @r.get("/all")
    def all_locks() -> dict[str, Any]:
        with engine_errors():
            return ll.all_locks()

    @r.get("/events/{equipment_id:path}")
    def events(equipment_id: str, limit: int = Query(default=50, ge=1, le=1000)) -> dict[str, Any]:
        with engine_errors():
            return ll.events(equipment_id, limit)

    @r.post("/activity/{equipment_id:path}")
    def activity(equipment_id: str, req: UpdateActivityRequest) -> dict[str, Any]:
        with engine_errors():
            return ll.activity(equipment_id, req.session_id)

    @r.post("/sessions/create")
    def create_session(req: CreateSessionRequest, request: Request) -> dict[str, Any]:
        with engine_errors():
            return ll.create_session(req, ip(request))

    @r.get("/sessions")
    def all_sessions() -> dict[str, Any]:
        with engine_errors():
            return ll.all_sessions()

    @r.get("/sessions/{session_id}")
    def get_session(session_id: str) -> dict[str, Any]:
        with engine_errors():
            c, row = ll.known(session_id)
            return _session_response(row, session_id)

    @r.delete("/sessions/{session_id}")
    def end_session(session_id: str) -> dict[str, Any]:
        with engine_errors():
            return ll.end_session(session_id)

    @r.post("/sessions/{session_id}/activity")
    def session_activity(session_id: str) -> dict[str, Any]:
        with engine_errors():
            return ll.session_activity(session_id)

    @r.get("/sessions/{session_id}/locks")
    def session_locks(session_id: str) -> dict[str, Any]:
        with engine_errors():
            return ll.session_locks(session_id)

    @r.get("/sessions/{session_id}/events")
    def session_events(
        session_id: str, limit: int = Query(default=50, ge=1, le=1000)
    ) -> dict[str, Any]:
        with engine_errors():
            return ll.session_events(session_id, limit)

    @r.post("/cleanup")
    def cleanup() -> dict[str, Any]:
        with engine_errors():
            return ll.cleanup()

    return r


# What the access log must not show: a LabLink session id is a credential.
redact = Redactor(after=("/api/locks/sessions/",))


def app(engine: interlock.Engine, *, admin_token: Optional[str] = None) -> FastAPI:
    """A LabLink-compatible server: the lock routes and `GET /health`."""
    a = FastAPI(title="LabLink locks (interlock)")
    a.include_router(router(engine, admin_token=admin_token))

    @a.get("/health")
    def health() -> dict[str, str]:
        return {"status": "healthy"}

    return a


def main(argv: Optional[list[str]] = None) -> None:
    p = launcher_arguments("LabLink's /api/locks API over interlock", 8000)
    add_admin_argument(p)
    args = p.parse_args(argv)
    # LabLink's clients heartbeat their sessions (LABLINK_SESSION_TIMEOUT): the link
    # must not keep a session alive that its client has left.
    engine = open_engine(args, keepalive=False)
    run_launcher(engine, app(engine, admin_token=args.admin_token), args, redact)


if __name__ == "__main__":
    main()
