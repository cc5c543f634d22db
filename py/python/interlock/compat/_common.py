"""What the compat modules share and that needs nothing but the standard library: time
formats, public labels of sessions, the admin check, the engine a launcher opens, and
access logs without credentials."""

import argparse
import datetime
import hmac
import logging
import os
import re
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlencode

import interlock

UTC = datetime.timezone.utc


def iso(t: Optional[float]) -> Optional[str]:
    """Unix seconds as ISO 8601 with an offset (UTC), the compat modules' default."""
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, UTC).isoformat()


def iso_local(t: Optional[float]) -> Optional[str]:
    """Unix seconds as ISO 8601 in this machine's time zone, with its offset."""
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, UTC).astimezone().isoformat()


def iso_naive_utc(t: Optional[float]) -> Optional[str]:
    """Unix seconds as a naive UTC ISO string (what `datetime.utcnow().isoformat()` gave)."""
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat()


def label(session_id: str) -> str:
    """A short public label of an interlock session: the start of its id, which is
    public in interlock (status, events, dashboard) and no credential of any seed."""
    return session_id[:8]


def is_admin(authorization: Optional[str], admin_token: Optional[str]) -> bool:
    """Does the `Authorization` header carry `Bearer <admin_token>`? Never with no token
    configured; compared in constant time."""
    if admin_token is None or authorization is None:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), admin_token.encode())


def holder(status: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The first holder in an `eng.status()` answer (the only one of an exclusive lock)."""
    holders: list[dict[str, Any]] = status["holders"]
    return holders[0] if holders else None


def launcher_arguments(description: str, default_port: int) -> argparse.ArgumentParser:
    """The options every `python -m interlock.compat.NAME` takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")
    p.add_argument(
        "--url",
        default=os.environ.get("INTERLOCK_URL"),
        help="an interlock server to use (default: $INTERLOCK_URL, else an engine in this process)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("INTERLOCK_TOKEN"),
        help="bearer token for the interlock server (default: $INTERLOCK_TOKEN)",
    )
    p.add_argument("--journal", help="with no --url: the SQLite journal of this process's engine")
    return p


def open_engine(args: argparse.Namespace, keepalive: bool = True) -> interlock.Engine:
    """The engine a launcher serves: a server's (`--url`), or its own. `keepalive`: see
    `interlock.connect` (False where the seed's clients heartbeat their sessions)."""
    if args.url:
        return interlock.connect(args.url, token=args.token, keepalive=keepalive)
    return interlock.Engine(journal=args.journal)


class Redactor:
    """Rewrites request targets for the log: the values of `query` parameters and the
    path segment after each of `after` become `***`."""

    def __init__(self, query: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> None:
        self._query = set(query)
        self._after = [re.compile(re.escape(p) + r"[^/?]+") for p in after]
        self._prefixes = after

    def __call__(self, target: str) -> str:
        path, sep, qs = target.partition("?")
        for pattern, prefix in zip(self._after, self._prefixes):
            path = pattern.sub(prefix.replace("\\", "\\\\") + "***", path)
        if sep and self._query:
            pairs = [
                (k, "***" if k in self._query else v)
                for k, v in parse_qsl(qs, keep_blank_values=True)
            ]
            qs = urlencode(pairs, safe="*")
        return path + sep + qs


class _AccessLogFilter(logging.Filter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record: (client, method, target, http version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], self._redact(args[2]), args[3], args[4])
        return True


def redact_access_log(redact: Callable[[str], str]) -> None:
    """Makes uvicorn's access log show request targets through `redact` (for an app that
    mounts a compat router on its own uvicorn)."""
    logging.getLogger("uvicorn.access").addFilter(_AccessLogFilter(redact))
