"""Seed-compatible APIs: the wire formats and Python APIs of five existing lock systems,
spoken by modules that translate them into calls on any ``interlock.Engine`` (embedded,
or ``interlock.connect(url)``), so that those systems' clients run unchanged.

- ``interlock.compat.lablink``: LabLink's ``/api/locks`` API (FastAPI router);
- ``interlock.compat.alchemist``: ALchemist's session lock routes and WebSocket (router);
- ``interlock.compat.bluesky``: the bluesky device coordination service (router);
- ``interlock.compat.packing_tool``: the Packing Tool's ``SessionLockManager``;
- ``interlock.compat.gaia``: GAIA's ``GaiaLockManager`` and its dashboard routes.

The routers need the extra ``interlock[fastapi]``; ``packing_tool`` and ``gaia``'s
manager import without it. Each module runs on its own with ``python -m
interlock.compat.NAME --port P [--url URL]``. None holds lock logic: every decision is
the engine's. `redact_access_log(module.redact)` keeps the credentials a seed puts in
URLs out of uvicorn's access log, for an app that mounts a router on its own server. See
README.md in this directory.
"""

from ._common import Redactor, redact_access_log

__all__ = ["Redactor", "redact_access_log"]
