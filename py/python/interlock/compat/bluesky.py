"""The bluesky device coordination service (seed 003) over any interlock engine: its HTTP
routes and its WebSocket ``/ws``.

::

    from interlock.compat import bluesky
    app.include_router(bluesky.router(engine, admin_token="..."))

or ``python -m interlock.compat.bluesky`` (port 60620, with ``/api/health/live`` and
``/ready``). A lock type is an interlock priority (MAINTENANCE 0, QUEUE_EXECUTING 1,
MANUAL_OPERATOR 2, QUEUE_QUEUED 3) and every request may preempt: the engine revokes a
holder only of strictly lower priority, atomically. A ``lock_key`` is the lease's token:
it is in the answer to its request and nowhere else (``""`` in status and events).
"""

import asyncio
import datetime
import threading
from enum import Enum
from typing import Any, Optional

from ._web import (
    Redactor,
    add_admin_argument,
    admin_dependency,
    engine_errors,
    log,
    run_launcher,
)
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Query,
    WebSocket,
    WebSocketDisconnect,
)
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

import interlock

from ._common import holder, iso_naive_utc, launcher_arguments, open_engine

__all__ = ["LockRequest", "LockType", "PRIORITY", "app", "redact", "router"]


class LockType(str, Enum):
    MAINTENANCE = "MAINTENANCE"
    QUEUE_EXECUTING = "QUEUE_EXECUTING"
    MANUAL_OPERATOR = "MANUAL_OPERATOR"
    QUEUE_QUEUED = "QUEUE_QUEUED"


PRIORITY = {
    LockType.MAINTENANCE: 0,
    LockType.QUEUE_EXECUTING: 1,
    LockType.MANUAL_OPERATOR: 2,
    LockType.QUEUE_QUEUED: 3,
}
_BY_PRIORITY = {p: t for t, p in PRIORITY.items()}


def lock_type_of(priority: int) -> LockType:
    """The lock type a priority shows as (a holder that is not a bluesky client may have
    any priority: what is less important than QUEUE_QUEUED shows as it)."""
    return _BY_PRIORITY.get(max(0, min(priority, 3)), LockType.QUEUE_QUEUED)


class LockRequest(BaseModel):
    device_name: str
    lock_type: LockType
    user_id: str
    timeout: Optional[int] = Field(default=300, ge=0)  # seconds; None or 0: no expiry
    reason: Optional[str] = None
    plan_uid: Optional[str] = None


def _now() -> Optional[str]:
    return iso_naive_utc(datetime.datetime.now(datetime.timezone.utc).timestamp())


def device_lock(device: str, h: dict[str, Any]) -> dict[str, Any]:
    """A holder (of `eng.status()`) as a `DeviceLock`, without its key."""
    md = h["metadata"] if h["metadata"].get("client") == "bluesky" else {}
    return {
        "device_name": device,
        "lock_type": md.get("lock_type") or lock_type_of(h["priority"]).value,
        "user_id": md.get("user_id") or h["session_name"],
        "lock_key": "",
        "acquired_at": iso_naive_utc(h["acquired_at"]),
        "expires_at": iso_naive_utc(h["expires_at"]),
        "reason": h["reason"],
        "plan_uid": md.get("plan_uid"),
        "priority": h["priority"],
    }


def _event_lock(ev: interlock.Event) -> dict[str, Any]:
    """A `DeviceLock` made from an event alone (when its lease is no longer listed)."""
    return {
        "device_name": ev.resource,
        "lock_type": lock_type_of(ev.priority if ev.priority is not None else 3).value,
        "user_id": ev.session_name or "",
        "lock_key": "",
        "acquired_at": iso_naive_utc(ev.at),
        "expires_at": None,
        "reason": ev.reason,
        "plan_uid": None,
        "priority": ev.priority if ev.priority is not None else 3,
    }


class _Granted:
    __slots__ = ("session", "lease", "user_id")

    def __init__(self, session: interlock.Session, lease: interlock.Lease, user_id: str) -> None:
        self.session = session
        self.lease = lease
        self.user_id = user_id


class Coordination:
    """The routes' logic (blocking: the routes run it in the thread pool)."""

    def __init__(self, engine: interlock.Engine, prefix: str) -> None:
        self.engine = engine
        self.prefix = prefix
        # The locks this router granted, by key: each has its own interlock session, so
        # that one user's higher-priority request may preempt its own lower one.
        self._granted: dict[str, _Granted] = {}
        self._mutex = threading.Lock()

    def resource(self, device: str) -> str:
        return self.prefix + device

    def device(self, resource: str) -> Optional[str]:
        return resource[len(self.prefix) :] if resource.startswith(self.prefix) else None

    def _prune(self) -> None:
        with self._mutex:
            lost = [k for k, g in self._granted.items() if not g.lease.valid]
            ended = [self._granted.pop(k).session for k in lost]
        for s in ended:
            s.close()

    def request(self, req: LockRequest) -> dict[str, Any]:
        self._prune()
        d = req.device_name
        s = self.engine.session(
            req.user_id,
            metadata={
                "client": "bluesky",
                "user_id": req.user_id,
                "lock_type": req.lock_type.value,
                "plan_uid": req.plan_uid,
            },
        )
        try:
            lease = s.acquire(
                self.resource(d),
                timeout=0,
                ttl=float(req.timeout) if req.timeout else None,
                priority=PRIORITY[req.lock_type],
                preempt=True,
                reason=req.reason,
            )
        except BaseException as e:
            s.close()
            if not isinstance(e, interlock.LockTimeout):
                raise
            h = holder(self.engine.status(self.resource(d)))
            if h is None:
                message = f"Device {d} is busy"
            else:
                dl = device_lock(d, h)
                message = f"Device {d} is locked by {dl['lock_type']} (expires: {dl['expires_at']})"
            return {"success": False, "lock_key": None, "message": message, "expires_at": None}
        with self._mutex:
            self._granted[lease.token] = _Granted(s, lease, req.user_id)
        log.info("bluesky: %s locked by %s (%s)", d, req.user_id, req.lock_type.value)
        return {
            "success": True,
            "lock_key": lease.token,
            "message": f"Lock acquired for {d}",
            "expires_at": iso_naive_utc(lease.expires_at),
        }

    def release(self, device: str, lock_key: str, user_id: str) -> dict[str, Any]:
        r = self.resource(device)
        h = holder(self.engine.status(r))
        if h is None:
            raise HTTPException(404, f"No lock found for device {device}")
        with self._mutex:
            g = self._granted.get(lock_key)
        owner = g.user_id if g is not None else device_lock(device, h)["user_id"]
        if owner != user_id:
            raise HTTPException(403, "Not authorized to release this lock")
        try:
            self.engine.release(r, lock_key)
        except (interlock.InvalidToken, interlock.LockLost, ValueError):
            raise HTTPException(403, "Invalid lock key") from None
        if g is not None:
            with self._mutex:
                self._granted.pop(lock_key, None)
            g.session.close()
        return {"success": True, "message": f"Lock released for {device}"}

    def force_release(self, device: str, reason: Optional[str]) -> dict[str, Any]:
        n = self.engine.force_release(self.resource(device), reason=reason or "Forced release")
        if n == 0:
            raise HTTPException(404, f"No lock found for device {device}")
        self._prune()
        log.info("bluesky: %s force-released by an admin", device)
        return {"success": True, "message": f"Lock force released for {device}"}

    def locks(self) -> dict[str, Any]:
        return self.snapshot()[0]

    def snapshot(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """`LocksStatusResponse`, and every holder's `DeviceLock` by fence."""
        locks = []
        by_fence: dict[int, dict[str, Any]] = {}
        for st in self.engine.locks():
            d = self.device(st["resource"])
            if d is None or not st["holders"]:
                continue
            locks.append(device_lock(d, st["holders"][0]))
            by_fence.update((h["fence"], device_lock(d, h)) for h in st["holders"])
        return {"locks": locks, "total_count": len(locks), "timestamp": _now()}, by_fence

    def device_status(self, device: str) -> dict[str, Any]:
        h = holder(self.engine.status(self.resource(device)))
        return {
            "device_name": device,
            "locked": h is not None,
            "lock": device_lock(device, h) if h is not None else None,
            "timestamp": _now(),
        }

    def lock_by_fence(self, resource: str, fence: Optional[int]) -> Optional[dict[str, Any]]:
        d = self.device(resource)
        if d is None:
            return None
        h = next((h for h in self.engine.status(resource)["holders"] if h["fence"] == fence), None)
        return device_lock(d, h) if h is not None else None


# What each lease event is to a bluesky client.
_ACTIONS = {
    "acquired": "acquired",
    "released": "released",
    "preempted": "force_released",
    "force_released": "force_released",
    "expired": "force_released",
}


def router(
    engine: interlock.Engine, *, admin_token: Optional[str] = None, prefix: str = ""
) -> APIRouter:
    """The coordination service's routes and `/ws` over `engine`. A device is the
    resource `prefix + device_name`. `admin_token` (sent as `Authorization: Bearer`) is
    what `POST /api/lock/force_release` needs; without one it is refused."""
    co = Coordination(engine, prefix)
    r = APIRouter(tags=["Device coordination"])
    admin = admin_dependency(admin_token)

    @r.post("/api/lock/request")
    async def request_lock(req: LockRequest) -> dict[str, Any]:
        with engine_errors():
            return await run_in_threadpool(co.request, req)

    @r.post("/api/lock/release")
    async def release_lock(
        device_name: str = Query(), lock_key: str = Query(), user_id: str = Query()
    ) -> dict[str, Any]:
        with engine_errors():
            return await run_in_threadpool(co.release, device_name, lock_key, user_id)

    @r.post("/api/lock/force_release")
    async def force_release(
        device_name: str = Query(),
        reason: Optional[str] = Query(default=None),
        is_admin: bool = Depends(admin),
    ) -> dict[str, Any]:
        if not is_admin:
            raise HTTPException(403, "Force release needs the admin token")
        with engine_errors():
            return await run_in_threadpool(co.force_release, device_name, reason)

    @r.get("/api/locks/status")
    async def all_locks() -> dict[str, Any]:
        with engine_errors():
            return await run_in_threadpool(co.locks)

    @r.get("/api/locks/device/{device_name:path}")
    async def device_lock_status(device_name: str) -> dict[str, Any]:
        with engine_errors():
            return await run_in_threadpool(co.device_status, device_name)

    @r.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            sub = await run_in_threadpool(engine.subscribe)
        except interlock.Error:
            await websocket.close(code=1011)
            return
        try:
            await _socket(websocket, co, sub)
        finally:
            await run_in_threadpool(sub.close)

    return r


async def _socket(websocket: WebSocket, co: Coordination, sub: interlock.Subscription) -> None:
    """`initial_status`, then a `lock_update` for every lease event, and answers to
    `ping` and `get_status`; subscribed before the status is read, so nothing falls in
    between."""
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_json(message)

    async def status() -> dict[str, Any]:
        return await run_in_threadpool(co.locks)

    initial, shown = await run_in_threadpool(co.snapshot)
    await send({"type": "initial_status", "data": initial})

    async def pump() -> None:
        async for ev in sub:
            if ev.kind == "lagged":
                await send({"type": "status_response", "data": await status()})
                continue
            action = _ACTIONS.get(ev.kind)
            if action is None or ev.resource is None or co.device(ev.resource) is None:
                continue
            if ev.kind == "acquired":
                lock = await run_in_threadpool(co.lock_by_fence, ev.resource, ev.fence)
                lock = lock or _event_lock(ev)
                if ev.fence is not None:
                    shown[ev.fence] = lock
            else:
                # The locks this socket has shown, by fence: what a release is about.
                lock = (shown.pop(ev.fence, None) if ev.fence is not None else None) or _event_lock(
                    ev
                )
            message: dict[str, Any] = {
                "type": "lock_update",
                "action": action,
                "device_name": co.device(ev.resource),
                "lock": {**lock, "device_name": co.device(ev.resource)},
                "timestamp": _now(),
            }
            if action == "force_released":
                message["reason"] = ev.reason or ev.kind
            await send(message)
        await websocket.close()

    task = asyncio.create_task(pump())
    try:
        while not task.done():
            receive = asyncio.ensure_future(websocket.receive_json())
            await asyncio.wait({receive, task}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                break
            try:
                data = receive.result()
            except (ValueError, KeyError):
                continue  # not JSON: ignored, as the original did
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "ping":
                await send({"type": "pong", "timestamp": _now()})
            elif kind == "get_status":
                await send({"type": "status_response", "data": await status()})
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


redact = Redactor(query=("lock_key",))


def app(engine: interlock.Engine, *, admin_token: Optional[str] = None) -> FastAPI:
    """The coordination service: the routes, `/ws` and the health routes."""
    a = FastAPI(title="Device Coordination Service (interlock)")
    a.include_router(router(engine, admin_token=admin_token))

    @a.get("/api/health/live")
    def live() -> dict[str, Any]:
        return {"status": "alive", "timestamp": _now()}

    @a.get("/api/health/ready")
    def ready() -> dict[str, Any]:
        with engine_errors():
            return {"status": "ready", "active_locks": len(engine.locks())}

    return a


def main(argv: Optional[list[str]] = None) -> None:
    p = launcher_arguments("the bluesky device coordination service over interlock", 60620)
    add_admin_argument(p)
    args = p.parse_args(argv)
    engine = open_engine(args)
    run_launcher(engine, app(engine, admin_token=args.admin_token), args, redact)


if __name__ == "__main__":
    main()
