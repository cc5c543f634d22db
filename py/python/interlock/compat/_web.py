"""What the compat routers share: FastAPI (the extra `interlock[fastapi]`), the one place
engine errors become HTTP statuses, the admin credential as a dependency, and a launcher
whose access log never shows a credential."""

import argparse
import contextlib
import logging
import os
from typing import Any, Callable, Iterator, Optional

try:
    import uvicorn
    from fastapi import FastAPI, Header, HTTPException
except ImportError as e:  # pragma: no cover - what a plain `pip install ./py` gives
    raise ImportError(
        "the interlock.compat routers need FastAPI: pip install 'interlock[fastapi]'"
    ) from e

import interlock

from ._common import Redactor, is_admin, redact_access_log

__all__ = [
    "Redactor",
    "add_admin_argument",
    "admin_dependency",
    "engine_errors",
    "log",
    "redact_access_log",
    "run_launcher",
    "serve",
]

log = logging.getLogger("interlock.compat")


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Turns what the engine raises for reasons no client caused into 503, and bad input
    into 422 (the message names only what the client sent)."""
    try:
        yield
    except (interlock.ConnectionLost, interlock.EngineClosed) as e:
        raise HTTPException(503, "the lock engine is unavailable") from e
    except interlock.AlreadyHeld as e:
        raise HTTPException(409, "this session already holds or waits for it") from e
    except interlock.Deadlock as e:
        raise HTTPException(409, "waiting for it would close a cycle of waiting sessions") from e
    except interlock.PermissionDenied as e:
        raise HTTPException(503, "the lock server refused this service's credentials") from e
    except (ValueError, TypeError) as e:
        raise HTTPException(422, str(e)) from e


def admin_dependency(admin_token: Optional[str]) -> Callable[..., bool]:
    """A dependency: does the request carry the router's admin token (`Authorization:
    Bearer`)? False when the router has none."""

    def admin(authorization: Optional[str] = Header(default=None)) -> bool:
        return is_admin(authorization, admin_token)

    return admin


def add_admin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("INTERLOCK_COMPAT_ADMIN_TOKEN"),
        help="the admin credential (Authorization: Bearer) that force release needs "
        "(default: $INTERLOCK_COMPAT_ADMIN_TOKEN; none: force release is refused)",
    )


def serve(app: FastAPI, host: str, port: int, redact: Callable[[str], str]) -> None:
    """Runs `app` under uvicorn until it is stopped (Ctrl-C, SIGTERM)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="info")
    # uvicorn sets up its loggers while it makes its config: the filter goes on after.
    redact_access_log(redact)
    uvicorn.Server(config).run()


def run_launcher(
    engine: interlock.Engine, app: FastAPI, args: Any, redact: Callable[[str], str]
) -> None:
    """Serves `app` and closes the engine when the server stops."""
    with engine:
        serve(app, args.host, args.port, redact)
