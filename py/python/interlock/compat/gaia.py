"""GAIA's folder locks for its task assigner (seed 004) over any interlock engine: the
``GaiaLockManager`` API, and the dashboard's routes as a FastAPI router (``router()``,
which alone needs the extra ``interlock[fastapi]``).

::

    from interlock.compat.gaia import GaiaLockManager

    manager = GaiaLockManager(interlock.connect(url))      # or GaiaLockManager() in one process
    if manager.acquire_lock(working_dir, session_name, task_id):   # the check and the lock in one
        ...

A folder lock is a lease on the folder's normalised path (``/a/b/`` and ``/a/b`` are one
lock; a lock on ``/a`` does not cover ``/a/b``: folders are independent resources), with
a TTL of ``lock_timeout_hours``, held by an interlock session named after the GAIA session.
The engine expires it at its TTL; nothing waits for a cleanup.
"""

import os
import threading
from typing import TYPE_CHECKING, Any, Optional, Union

import interlock

from ._common import holder, iso

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["GaiaLockManager", "default_engine", "normalize", "router"]

PathLike = Union[str, "os.PathLike[str]"]
TaskId = Union[int, str]

_defaults: dict[Optional[str], interlock.Engine] = {}
_defaults_mutex = threading.Lock()


def default_engine(gaia_locks_dir: Optional[PathLike] = None) -> interlock.Engine:
    """The engine of `GaiaLockManager()` without one: `interlock.connect($INTERLOCK_URL)`
    if that is set (locks shared by every process), else one engine per process (and per
    `gaia_locks_dir`, whose `locks.db` is then its journal: locks and their history
    survive a restart)."""
    url = os.environ.get("INTERLOCK_URL")
    key = url or (os.fspath(gaia_locks_dir) if gaia_locks_dir is not None else None)
    with _defaults_mutex:
        eng = _defaults.get(key)
        if eng is None:
            if url:
                eng = interlock.connect(url, token=os.environ.get("INTERLOCK_TOKEN"))
            elif gaia_locks_dir is not None:
                os.makedirs(gaia_locks_dir, exist_ok=True)
                eng = interlock.Engine(journal=os.path.join(gaia_locks_dir, "locks.db"))
            else:
                eng = interlock.Engine()
            _defaults[key] = eng
        return eng


def normalize(folder_path: PathLike) -> str:
    """The lock name of a folder: absolute, normalised, without a trailing separator."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(folder_path))))


class _Held:
    __slots__ = ("session", "lease", "session_id", "task_id")

    def __init__(
        self, session: interlock.Session, lease: interlock.Lease, session_id: str, task_id: TaskId
    ) -> None:
        self.session = session
        self.lease = lease
        self.session_id = session_id
        self.task_id = task_id


def _info(resource: str, h: dict[str, Any]) -> dict[str, Any]:
    md = h["metadata"] if h["metadata"].get("client") == "gaia" else {}
    return {
        "id": h["fence"],
        "folder_path": resource,
        "session_id": md.get("session_id", h["session_name"]),
        "task_id": md.get("task_id"),
        "created_at": iso(h["acquired_at"]),
        "expires_at": iso(h["expires_at"]),
    }


class GaiaLockManager:
    """Folder locks that every process using the same engine shares."""

    def __init__(
        self,
        engine: Optional[interlock.Engine] = None,
        lock_timeout_hours: float = 2,
        *,
        gaia_locks_dir: Optional[PathLike] = None,
    ) -> None:
        self.engine = engine if engine is not None else default_engine(gaia_locks_dir)
        self.lock_timeout = float(lock_timeout_hours) * 3600.0
        # The locks this manager holds, by folder.
        self._held: dict[str, _Held] = {}
        self._mutex = threading.Lock()

    def acquire_lock(self, folder_path: PathLike, session_id: str, task_id: TaskId) -> bool:
        """Locks the folder for `session_id`'s task `task_id` unless it is locked: one
        atomic step (no `is_locked` first is needed). True also if this manager already
        holds it for the same session and task (its TTL starts again)."""
        r = normalize(folder_path)
        with self._mutex:
            held = self._held.get(r)
            if held is not None and (held.session_id, held.task_id) == (session_id, task_id):
                try:
                    held.lease.renew()
                    return True
                except interlock.LockLost:
                    pass
            # The engine decides, not this manager's view of its own lease: that lease may
            # have expired on a server a moment before its event arrived here.
            s = self.engine.session(
                session_id,
                metadata={"client": "gaia", "session_id": session_id, "task_id": task_id},
                ttl=self.lock_timeout,
            )
            try:
                lease = s.acquire(r, timeout=0, ttl=self.lock_timeout, reason=f"task {task_id}")
            except BaseException as e:
                s.close()
                if isinstance(e, interlock.LockTimeout):
                    return False
                raise
            if held is not None:
                held.session.close()  # its lease is gone: the engine granted this one
            self._held[r] = _Held(s, lease, session_id, task_id)
            return True

    def release_lock(self, folder_path: PathLike, session_id: str) -> bool:
        """Releases `session_id`'s lock on the folder: True if released (or there is no
        lock), False if another session holds it. As in GAIA, the session id is the
        owner: a lock taken through another manager (another worker process, or before
        a restart) is released too, by its fence, so that only that lock goes."""
        r = normalize(folder_path)
        with self._mutex:
            held = self._held.get(r)
            if held is not None and held.session_id == session_id:
                del self._held[r]
                held.session.close()  # its lease goes with it
                if held.lease.lost_reason is None:
                    return True
        h = holder(self.engine.status(r))
        if h is None:
            return True
        if h["metadata"].get("client") != "gaia" or h["metadata"].get("session_id") != session_id:
            return False
        self.engine.force_release(r, reason=f"released by {session_id}", fence=h["fence"])
        return not self.engine.status(r)["locked"]

    def is_locked(self, folder_path: PathLike) -> tuple[bool, Optional[dict[str, Any]]]:
        """`(False, None)`, or `(True, info)` with `session_id`, `task_id`, `created_at`,
        `expires_at` (ISO 8601), `folder_path` and `id`."""
        r = normalize(folder_path)
        h = holder(self.engine.status(r))
        if h is None:
            return False, None
        return True, _info(r, h)

    def cleanup_expired_locks(self) -> int:
        """Forgets this manager's locks that expired (the engine released each at its
        expiry, whatever this is called); returns how many."""
        with self._mutex:
            gone = [r for r, h in self._held.items() if not h.lease.valid]
            ended = [self._held.pop(r) for r in gone]
        for h in ended:
            h.session.close()
        return len(ended)

    def get_lock_status(self) -> dict[str, list[dict[str, Any]]]:
        """`{"locks": [{id, folder_path, session_id, task_id, created_at, expires_at}]}`:
        every GAIA folder lock of the engine."""
        locks = [
            _info(st["resource"], st["holders"][0])
            for st in self.engine.locks()
            if st["holders"][0]["metadata"].get("client") == "gaia"
        ]
        return {"locks": locks}

    def force_release(self, lock_id: int, reason: Optional[str] = None) -> Optional[str]:
        """Releases the lock `lock_id` (its `id`) whoever holds it: the folder it was on,
        or None if no such lock is held. For admins (the dashboard's route)."""
        for lock in self.get_lock_status()["locks"]:
            if lock["id"] == lock_id:
                folder: str = lock["folder_path"]
                # By its fence: if the folder changed hands since the listing, the new
                # holder keeps it.
                why = reason or "force released by an admin"
                if self.engine.force_release(folder, reason=why, fence=lock_id):
                    return folder
        return None

    def get_lock_history(
        self, folder_path: Optional[PathLike] = None, limit: Optional[int] = None
    ) -> list[dict[str, Any]]:
        """The `lock_history` table's rows, from the engine's history (its journal's
        table, with one): `{id, folder_path, session_id, task_id, created_at,
        released_at, expired_at, status}`, oldest first."""
        r = normalize(folder_path) if folder_path is not None else None
        rows: dict[int, dict[str, Any]] = {}
        for e in self.engine.history(resource=r):
            if e.fence is None or e.resource is None:
                continue
            if e.kind == "acquired":
                task = e.reason[5:] if e.reason and e.reason.startswith("task ") else None
                rows[e.fence] = {
                    "id": e.fence,
                    "folder_path": e.resource,
                    "session_id": e.session_name,
                    "task_id": int(task) if task is not None and task.isdigit() else task,
                    "created_at": iso(e.at),
                    "released_at": None,
                    "expired_at": None,
                    "status": "active",
                }
            elif e.fence in rows:
                row = rows[e.fence]
                if e.kind == "expired":
                    row.update(expired_at=iso(e.at), status="expired")
                else:
                    row.update(released_at=iso(e.at), status="released")
        out = list(rows.values())
        return out[-limit:] if limit else out

    def close(self) -> None:
        """Releases every lock of this manager."""
        with self._mutex:
            held = list(self._held.values())
            self._held.clear()
        for h in held:
            h.session.close()


def router(
    engine: Optional[interlock.Engine] = None,
    *,
    admin_token: Optional[str] = None,
    manager: Optional[GaiaLockManager] = None,
) -> "APIRouter":
    """The dashboard's routes (needs FastAPI): `GET /api/gaia/locks`, `GET
    /api/gaia/locks/{folder}` and, for the admin (`Authorization: Bearer admin_token`),
    `POST /api/gaia/locks/{id}/release`, which really releases. Add the app's login as
    `include_router(router(...), dependencies=[Depends(login)])`."""
    from ._web import admin_dependency, engine_errors, log  # first: says what is missing

    from fastapi import APIRouter, Depends
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    m = manager if manager is not None else GaiaLockManager(engine)
    admin = admin_dependency(admin_token)
    r = APIRouter(tags=["GAIA locks"])

    @r.get("/api/gaia/locks")
    def get_gaia_locks() -> dict[str, Any]:
        with engine_errors():
            return m.get_lock_status()

    @r.get("/api/gaia/locks/{folder_path:path}")
    def get_lock_status(folder_path: str) -> dict[str, Any]:
        folder = folder_path if os.path.isabs(folder_path) else "/" + folder_path
        with engine_errors():
            locked, info = m.is_locked(folder)
        return {"folder_path": normalize(folder), "is_locked": locked, "lock_info": info}

    @r.post("/api/gaia/locks/{lock_id}/release")
    async def force_release_lock(lock_id: int, is_admin: bool = Depends(admin)) -> JSONResponse:
        if not is_admin:
            return JSONResponse(
                {"success": False, "message": "Force release needs an admin"}, status_code=403
            )
        with engine_errors():
            folder = await run_in_threadpool(m.force_release, lock_id)
        if folder is None:
            return JSONResponse(
                {"success": False, "message": f"No lock {lock_id} is held"}, status_code=404
            )
        log.info("gaia: lock %s on %s force-released by an admin", lock_id, folder)
        return JSONResponse({"success": True, "message": "Lock released", "folder_path": folder})

    return r


def main(argv: Optional[list[str]] = None) -> None:
    from ._common import launcher_arguments, open_engine
    from ._web import Redactor, add_admin_argument, run_launcher
    from fastapi import FastAPI

    p = launcher_arguments("GAIA's lock dashboard routes over interlock", 5000)
    add_admin_argument(p)
    args = p.parse_args(argv)
    engine = open_engine(args)
    app = FastAPI(title="GAIA locks (interlock)")
    app.include_router(router(engine, admin_token=args.admin_token))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    run_launcher(engine, app, args, Redactor())


if __name__ == "__main__":
    main()
