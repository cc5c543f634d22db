"""ALchemist's session lock routes and session WebSocket (seed 000) over any interlock
engine.

::

    from interlock.compat import alchemist

    locks = alchemist.router(engine, session_exists=lambda sid: sid in my_sessions)
    app.include_router(locks)   # /api/v1/sessions/{id}/lock, /api/v1/ws/sessions/{id}

    @app.get("/api/v1/sessions/{session_id}/state")   # the app's own route, which the
    def state(session_id: str):                        # connector polls every 5 s
        locks.touch(session_id)                        # renews the lock's TTL
        ...

The app keeps its sessions; the router locks them. A lock is a lease on the resource
``prefix + session_id``; its ``lock_token`` is the lease's token. Locks have a TTL
(``lock_ttl``) that ``touch()``, the heartbeat route or any renewal extends, so a crashed
controller does not hold a session forever.
"""

import asyncio
import inspect
import threading
import time
from typing import Any, Awaitable, Callable, Optional, Union

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
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

import interlock

from ._common import holder, iso, launcher_arguments, open_engine

__all__ = ["AlchemistRouter", "LockRequest", "app", "redact", "router"]

SessionExists = Callable[[str], Union[bool, Awaitable[bool]]]

UNLOCKED: dict[str, Any] = {
    "locked": False,
    "locked_by": None,
    "locked_at": None,
    "lock_token": None,
}

# The events that change whether a session is locked.
_CHANGES = frozenset({"acquired", "released", "expired", "force_released", "preempted"})


class LockRequest(BaseModel):
    locked_by: str
    client_id: Optional[str] = None


class Alchemist:
    """The routes' logic (blocking: the routes run it in the thread pool)."""

    def __init__(
        self,
        engine: interlock.Engine,
        session_exists: SessionExists,
        lock_ttl: Optional[float],
        prefix: str,
    ) -> None:
        self.engine = engine
        self.session_exists = session_exists
        self.lock_ttl = lock_ttl
        self.prefix = prefix
        # The locks this router granted: the interlock session opened for each, its lease.
        self._locks: dict[str, tuple[interlock.Session, interlock.Lease]] = {}
        self._mutex = threading.Lock()

    def resource(self, session_id: str) -> str:
        return self.prefix + session_id

    async def exists(self, session_id: str) -> bool:
        if inspect.iscoroutinefunction(self.session_exists):
            return bool(await self.session_exists(session_id))
        found = await run_in_threadpool(self.session_exists, session_id)
        if inspect.isawaitable(found):
            found = await found
        return bool(found)

    def _drop(self, session_id: str, token: Optional[str] = None) -> None:
        """Closes the interlock session of this router's lock on `session_id` (only if it
        is the lock of `token`, when given)."""
        with self._mutex:
            entry = self._locks.get(session_id)
            if entry is None or (token is not None and entry[1].token != token):
                return
            del self._locks[session_id]
        entry[0].close()

    def _prune(self) -> None:
        """Closes the interlock sessions of this router's locks that the engine ended."""
        with self._mutex:
            lost = [k for k, (_, lease) in self._locks.items() if not lease.valid]
            ended = [self._locks.pop(k)[0] for k in lost]
        for s in ended:
            s.close()

    def state(self, session_id: str) -> dict[str, Any]:
        h = holder(self.engine.status(self.resource(session_id)))
        if h is None:
            return {"locked": False, "locked_by": None, "locked_at": None}
        return {"locked": True, "locked_by": h["session_name"], "locked_at": iso(h["acquired_at"])}

    def lock(self, session_id: str, req: LockRequest) -> dict[str, Any]:
        self._prune()
        s = self.engine.session(
            req.locked_by,
            metadata={"client": "alchemist", "client_id": req.client_id, "session": session_id},
        )
        try:
            lease = s.acquire(self.resource(session_id), timeout=0, ttl=self.lock_ttl)
        except BaseException as e:
            s.close()
            if isinstance(e, interlock.LockTimeout):
                by = self.state(session_id)["locked_by"] or "another client"
                raise HTTPException(
                    409, f"Session {session_id} is already locked by {by}"
                ) from None
            raise
        with self._mutex:
            self._locks[session_id] = (s, lease)
        return {
            "locked": True,
            "locked_by": s.name,
            "locked_at": iso(lease.acquired_at),
            "lock_token": lease.token,
        }

    def unlock(self, session_id: str, token: Optional[str], admin: bool) -> dict[str, Any]:
        r = self.resource(session_id)
        if token is not None:
            try:
                self.engine.release(r, token)
            except (interlock.InvalidToken, interlock.LockLost):
                raise HTTPException(403, "Invalid lock token") from None
            except ValueError:
                raise HTTPException(403, "Invalid lock token") from None
            self._drop(session_id, token)
        elif admin:
            self.engine.force_release(r, reason="force unlock through the ALchemist API")
            log.info("alchemist: session lock %s force-released by an admin", session_id)
            self._drop(session_id)
        else:
            raise HTTPException(403, "Unlocking without the lock token needs the admin token")
        self._prune()
        return dict(UNLOCKED)

    def heartbeat(self, session_id: str, token: str) -> dict[str, Any]:
        try:
            expires = self.engine.renew(self.resource(session_id), token)
        except (interlock.InvalidToken, interlock.LockLost, ValueError):
            raise HTTPException(403, "Invalid lock token") from None
        return {**self.state(session_id), "lock_token": None, "expires_at": iso(expires)}

    def touch(self, session_id: str) -> bool:
        with self._mutex:
            entry = self._locks.get(session_id)
        if entry is None or not entry[1].valid:
            return False
        try:
            entry[1].renew()
        except interlock.LockLost:
            return False
        return True


class AlchemistRouter(APIRouter):
    """The lock routes; `touch(session_id)` renews the TTL of a lock this router granted."""

    alchemist: Alchemist

    def touch(self, session_id: str) -> bool:
        """Renews the lock on `session_id` if this router granted it and it still holds
        (blocking: from an async route, `await run_in_threadpool(router.touch, id)`).
        Call it from the route the controller polls."""
        with engine_errors():
            return self.alchemist.touch(session_id)


def router(
    engine: interlock.Engine,
    *,
    session_exists: SessionExists,
    admin_token: Optional[str] = None,
    lock_ttl: Optional[float] = 60.0,
    prefix: str = "",
    ws_path: str = "/api/v1/ws/sessions/{session_id}",
) -> AlchemistRouter:
    """ALchemist's lock routes over `engine`, for the app's sessions: `session_exists(id)`
    (plain or async) says whether one exists (else 404). `lock_ttl` (seconds; `None`: no
    TTL) is how long a lock lasts without renewal. `admin_token` (sent as
    `Authorization: Bearer`) is what `DELETE .../lock` without a token needs."""
    al = Alchemist(engine, session_exists, lock_ttl, prefix)
    r = AlchemistRouter(tags=["Session locks"])
    r.alchemist = al
    admin = admin_dependency(admin_token)

    async def known(session_id: str) -> None:
        if not await al.exists(session_id):
            raise HTTPException(404, f"Session {session_id} not found or expired")

    @r.post("/api/v1/sessions/{session_id}/lock")
    async def lock(session_id: str, req: LockRequest) -> dict[str, Any]:
        await known(session_id)
        with engine_errors():
            return await run_in_threadpool(al.lock, session_id, req)

    @r.delete("/api/v1/sessions/{session_id}/lock")
    async def unlock(
        session_id: str,
        lock_token: Optional[str] = Query(default=None),
        is_admin: bool = Depends(admin),
    ) -> dict[str, Any]:
        await known(session_id)
        with engine_errors():
            return await run_in_threadpool(al.unlock, session_id, lock_token, is_admin)

    @r.get("/api/v1/sessions/{session_id}/lock")
    async def get_lock(session_id: str) -> dict[str, Any]:
        await known(session_id)
        with engine_errors():
            return {**await run_in_threadpool(al.state, session_id), "lock_token": None}

    @r.post("/api/v1/sessions/{session_id}/lock/heartbeat")
    async def heartbeat(session_id: str, lock_token: str = Query()) -> dict[str, Any]:
        await known(session_id)
        with engine_errors():
            return await run_in_threadpool(al.heartbeat, session_id, lock_token)

    @r.websocket(ws_path)
    async def session_events(websocket: WebSocket, session_id: str) -> None:
        if not await al.exists(session_id):
            await websocket.close(code=4404)
            return
        await websocket.accept()
        try:
            sub = await run_in_threadpool(engine.subscribe, [al.resource(session_id)])
        except interlock.Error:
            await websocket.close(code=1011)
            return
        try:
            await _session_socket(websocket, session_id, al, sub)
        finally:
            await run_in_threadpool(sub.close)

    return r


async def _session_socket(
    websocket: WebSocket, session_id: str, al: Alchemist, sub: interlock.Subscription
) -> None:
    """`connected` with the current lock state, then `lock_status_changed` on every
    change, until the client goes. Subscribed before the state is read, so no change
    falls in between."""
    state = await run_in_threadpool(al.state, session_id)
    await websocket.send_json(
        {
            "event": "connected",
            "session_id": session_id,
            "message": f"Connected to session {session_id}",
            **state,
        }
    )

    async def pump() -> None:
        async for ev in sub:
            if ev.kind == "lagged":  # events were missed: say what holds now
                changed = {**await run_in_threadpool(al.state, session_id), "reason": "resync"}
            elif ev.kind not in _CHANGES:
                continue
            elif ev.kind == "acquired":
                changed = {"locked": True, "locked_by": ev.session_name, "locked_at": iso(ev.at)}
            else:
                changed = {"locked": False, "locked_by": None, "locked_at": None, "reason": ev.kind}
            await websocket.send_json(
                {"event": "lock_status_changed", "session_id": session_id, **changed}
            )
        await websocket.close()

    task = asyncio.create_task(pump())
    try:
        while not task.done():
            receive = asyncio.ensure_future(websocket.receive_text())
            await asyncio.wait({receive, task}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                break
            receive.result()  # a message from the client: nothing to answer
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


redact = Redactor(query=("lock_token",))


def app(
    engine: interlock.Engine, *, admin_token: Optional[str] = None, lock_ttl: Optional[float] = 60.0
) -> FastAPI:
    """A stand-in ALchemist server: every session id exists; `GET /api/v1/sessions/{id}`
    and `/state` answer minimally (and `/state`, which the connector polls, renews its
    lock), next to the lock routes."""
    a = FastAPI(title="ALchemist session locks (interlock)")
    locks = router(
        engine, session_exists=lambda _: True, admin_token=admin_token, lock_ttl=lock_ttl
    )
    a.include_router(locks)
    first_seen: dict[str, float] = {}

    def created(session_id: str) -> Optional[str]:
        return iso(first_seen.setdefault(session_id, time.time()))

    @a.get("/api/v1/sessions/{session_id}")
    def get_session(session_id: str) -> dict[str, Any]:
        return {
            "session_id": session_id,
            "created_at": created(session_id),
            "search_space": {},
            "data": {},
        }

    @a.get("/api/v1/sessions/{session_id}/state")
    def get_state(session_id: str) -> dict[str, Any]:
        locks.touch(session_id)
        return {"session_id": session_id, "created_at": created(session_id), "model_trained": False}

    @a.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return a


def main(argv: Optional[list[str]] = None) -> None:
    p = launcher_arguments("ALchemist's session lock routes over interlock", 8000)
    add_admin_argument(p)
    p.add_argument("--lock-ttl", type=float, default=60.0, help="lock TTL in seconds (0: none)")
    args = p.parse_args(argv)
    engine = open_engine(args)
    a = app(engine, admin_token=args.admin_token, lock_ttl=args.lock_ttl or None)
    run_launcher(engine, a, args, redact)


if __name__ == "__main__":
    main()
