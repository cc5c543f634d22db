"""The web apps the compat tests run under uvicorn: each compat router mounted as an app
of its seed would mount it, on an engine of its own (then also served, its URL printed as
`INTERLOCK_URL=...`, so that a test can look into it) or on a server's (`--url`).

    python apps.py lablink|alchemist|bluesky|gaia --port P [--url URL] [--admin-token T]
        [--lock-ttl S]
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import interlock
from interlock.compat import alchemist, bluesky, gaia, lablink
from interlock.compat._web import Redactor, serve


class Command(BaseModel):
    """LabLink's equipment command (`shared/models/commands.py`, with `session_id`)."""

    command_id: str
    equipment_id: str
    action: str
    parameters: dict[str, Any] = {}
    session_id: Optional[str] = None


def lablink_app(engine: interlock.Engine, admin_token: Optional[str]) -> FastAPI:
    """LabLink's server: the lock routes and an equipment command route guarded by the
    router's permission dependency."""
    locks = lablink.router(engine, admin_token=admin_token)
    app = FastAPI()
    app.include_router(locks)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.post("/api/equipment/{equipment_id}/command")
    def command(
        equipment_id: str, cmd: Command, permit: lablink.Permit = Depends(locks.permission())
    ) -> dict[str, Any]:
        if permit.fence is not None and not engine.check_fence(equipment_id, permit.fence):
            raise HTTPException(409, "stale fence")  # what a driver would refuse
        return {
            "success": True,
            "command_id": cmd.command_id,
            "action": cmd.action,
            "checked_as": permit.action,
            "fence": permit.fence,
        }

    @app.get("/api/equipment/{equipment_id}/readings")
    def readings(permit: lablink.Permit = Depends(locks.permission("observe"))) -> dict[str, Any]:
        return {"equipment_id": permit.equipment_id, "voltage": 12.0}

    return app


def alchemist_app(
    engine: interlock.Engine, admin_token: Optional[str], lock_ttl: Optional[float]
) -> FastAPI:
    """ALchemist's app: its own sessions (every id but those starting with `missing`),
    the router's lock routes, and `/state`, which renews the lock as the app should."""

    async def exists(session_id: str) -> bool:
        return not session_id.startswith("missing")

    locks = alchemist.router(
        engine, session_exists=exists, admin_token=admin_token, lock_ttl=lock_ttl
    )
    app = FastAPI()
    app.include_router(locks)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/sessions/{session_id}")
    def get_session(session_id: str) -> dict[str, Any]:
        if session_id.startswith("missing"):
            raise HTTPException(404, f"Session {session_id} not found or expired")
        return {
            "session_id": session_id,
            "created_at": "2024-12-04T16:23:38.849288",
            "search_space": {},
            "data": {},
        }

    @app.get("/api/v1/sessions/{session_id}/state")
    def state(session_id: str) -> dict[str, Any]:
        locks.touch(session_id)
        return {"session_id": session_id, "model_trained": False}

    return app


def gaia_app(engine: interlock.Engine, admin_token: Optional[str]) -> FastAPI:
    app = FastAPI()
    app.include_router(gaia.router(engine, admin_token=admin_token))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("name", choices=["lablink", "alchemist", "bluesky", "gaia"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--url")
    p.add_argument("--admin-token", default="admin-secret")
    p.add_argument("--lock-ttl", type=float, default=60.0)
    args = p.parse_args()
    if args.url:
        # LabLink's clients heartbeat their sessions, as its launcher knows.
        engine = interlock.connect(args.url, keepalive=args.name != "lablink")
        server = None
    else:
        engine = interlock.Engine()
        server = engine.serve("127.0.0.1:0")
        print(f"INTERLOCK_URL={server.url}", flush=True)
    if args.name == "lablink":
        app, redact = lablink_app(engine, args.admin_token), lablink.redact
    elif args.name == "alchemist":
        app, redact = (
            alchemist_app(engine, args.admin_token, args.lock_ttl or None),
            alchemist.redact,
        )
    elif args.name == "bluesky":
        app, redact = bluesky.app(engine, admin_token=args.admin_token), bluesky.redact
    else:
        app, redact = gaia_app(engine, args.admin_token), Redactor()
    try:
        serve(app, "127.0.0.1", args.port, redact)
    finally:
        if server is not None:
            server.close()
        engine.close()


if __name__ == "__main__":
    main()
