"""The compiled half of ``interlock`` (re-exported by the package)."""

from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Coroutine, Generic, Literal, Optional, TypeVar, Union, final, overload

from typing_extensions import Self

__all__ = [
    "Error",
    "LockTimeout",
    "InvalidToken",
    "NotFound",
    "SessionExpired",
    "LockLost",
    "Deadlock",
    "AlreadyHeld",
    "EngineClosed",
    "Cancelled",
    "ConnectionLost",
    "PermissionDenied",
    "Engine",
    "Session",
    "Lease",
    "Locked",
    "Ticket",
    "Event",
    "Subscription",
    "Server",
    "connect",
    "cli_main",
    "_close_all",
    "_leave",
]

_Mode = Literal["exclusive", "shared", "observer"]
_LostReason = Literal["preempted", "expired", "force_released", "session_expired", "connection_lost"]
_OnExpire = Literal["release", "keep"]
_OnLost = Callable[["Lease", _LostReason], object]
_Granted = TypeVar("_Granted", "Lease", "list[Lease]")

class Error(Exception):
    """Base class of every error the engine reports."""

class LockTimeout(Error, TimeoutError):
    """A wait ran out of time (or a timeout of 0 found the resource taken)."""

class InvalidToken(Error, PermissionError):
    """The token does not name a current lease on the resource."""

class NotFound(Error, KeyError):
    """No such session, lease or ticket."""

class SessionExpired(Error):
    """The session expired: its TTL ran out without activity."""

class LockLost(Error):
    """The lease was lost: preempted, expired, force-released, its session expired or (a
    remote engine) its connection was lost."""

class Deadlock(Error):
    """The wait could never be granted: it closes a cycle of waiting sessions."""

class AlreadyHeld(Error):
    """The session already holds, or already waits for, the resource."""

class EngineClosed(Error):
    """The engine is closed, or was inherited across `os.fork()` (an engine does not cross
    a fork: make a new one in the child)."""

class Cancelled(Error):
    """The wait was cancelled (its ticket was cancelled or its session closed)."""

class ConnectionLost(Error, ConnectionError):
    """A remote engine cannot reach its server (it keeps trying to reconnect)."""

class PermissionDenied(Error, PermissionError):
    """The server refused the call: no token, a token whose role does not allow it, or a
    wrong session secret."""

class _Exits:
    """Ends something (closes, releases) when a `with` block is left."""

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Engine(_Exits):
    """One embedded lock engine; a context manager that closes it. It does not cross
    `os.fork()`: in a forked child, every call on it (or on its sessions and leases) raises
    `EngineClosed` at once, and closing it returns at once."""

    def __new__(
        cls,
        lock_ttl: Optional[float] = None,
        session_ttl: Optional[float] = None,
        history_limit: int = 100,
        on_session_expire: _OnExpire = "release",
        *,
        global_history: int = 10000,
        subscriber_buffer: int = 1024,
        journal: Optional[str] = None,
        keep_rows: Optional[int] = 1_000_000,
        keep_days: Optional[float] = None,
        grace: float = 15.0,
    ) -> Self:
        """An engine in this process. With `journal` (a SQLite file), a restart on the same
        file loses no acknowledged lock: sessions get a `grace` (at least their TTL) to
        resume; the history is a table `sqlite3` can query, kept for `keep_rows` rows
        and `keep_days` days."""
    def session(
        self,
        name: str,
        metadata: Optional[dict[str, Any]] = None,
        ttl: Optional[float] = None,
        on_expire: Optional[_OnExpire] = None,
    ) -> Session:
        """Opens a session; a context manager that closes it."""
    def release(self, resource: str, token: str) -> None:
        """Releases the lease `token` on `resource`. `LockLost` if that lease was lost
        (preempted, expired, force-released, its session expired); `InvalidToken` for any
        other token that is not current (malformed, released, of another resource)."""
    def renew(self, resource: str, token: str, ttl: Optional[float] = None) -> Optional[float]:
        """Extends the lease `token` on `resource` by `ttl` seconds from now, which becomes
        its TTL (`None`: by its TTL; a lease without one stays without); returns the new
        expiry. Errors as `release`."""
    def resume(self, session_id: str, secret: str) -> Session:
        """Takes up a session by its id and `Session.secret` (after a restart, or from
        elsewhere); counts as its activity. `PermissionDenied` for a wrong secret,
        `NotFound` for an unknown or closed session, `ValueError` for a malformed id."""
    def force_release(self, resource: str, reason: Optional[str] = None, fence: Optional[int] = None) -> int:
        """Releases every holder of `resource` (with `fence`: only the lease that carries it,
        if it is still current); returns how many there were."""
    def status(self, resource: str) -> dict[str, Any]:
        """`{"resource", "locked", "mode", "holders": [...], "waiters": [...]}`, never a token."""
    def locks(self) -> list[dict[str, Any]]:
        """The status of every held resource."""
    def sessions(self) -> list[dict[str, Any]]:
        """Every open session, oldest first."""
    def check(self, resource: str, session_id: str, action: Literal["control", "observe"] = "control") -> bool:
        """`"control"`: does the session hold `resource` exclusively? `"observe"`: at all?
        False for an unknown session; `ValueError` for a malformed id."""
    def check_fence(self, resource: str, fence: int) -> bool:
        """Is `fence` the fence of a current lease on `resource`?"""
    def history(
        self, resource: Optional[str] = None, session_id: Optional[str] = None, limit: Optional[int] = None
    ) -> list[Event]:
        """Recorded events, oldest first: of a resource, of a session, or of the engine.
        `ValueError` for a malformed session id."""
    def subscribe(
        self,
        resources: Optional[Sequence[str]] = None,
        since: Optional[int] = None,
        callback: Optional[Callable[[Event], object]] = None,
    ) -> Subscription:
        """A stream of events; with `since`, first those after that `seq`. With `callback`,
        each event goes to it on the dispatcher thread instead (keep the subscription).
        A subscriber that falls behind keeps the newest events: see `Subscription`."""
    def serve(
        self,
        addr: str = "127.0.0.1:7411",
        tokens: Optional[dict[str, Literal["read", "client", "admin"]]] = None,
        *,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        max_wait: float = 300.0,
        session_ttl: float = 15.0,
    ) -> Server:
        """Serves this engine to other processes and PCs (HTTP API, the WebSocket protocol
        of `connect`, events, dashboard). Port 0 picks a free port; without tokens only a
        loopback address may be bound."""
    def close(self) -> None:
        """Fails pending waits with `EngineClosed`, ends subscriptions; closing twice is harmless."""
    def __enter__(self) -> Self: ...

@final
class Session(_Exits):
    """A client of the engine; a context manager that closes it. Dropping it does not end it."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def secret(self) -> Optional[str]:
        """The secret that resumes this session (see `Engine.resume`), if this value
        opened or resumed it (every `Session` of an embedded engine did). No listing,
        status, event or history shows it."""
    def heartbeat(self) -> None:
        """Records activity (and revives a stale session)."""
    def close(self) -> int:
        """Ends the session and releases its leases; returns how many (0 if already closed)."""
    def acquire(
        self,
        resource: str,
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> Lease:
        """Acquires `resource`, waiting up to `timeout` seconds (`None`: forever, 0: not at all).
        `on_lost(lease, why)` runs on the dispatcher thread if the lease is lost."""
    def acquire_many(
        self,
        resources: Sequence[str],
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> list[Lease]:
        """Acquires all of `resources` at once or none; the leases in the order given."""
    @overload
    def enqueue(  # type: ignore[overload-overlap]  # a str is a Sequence[str] too
        self,
        resource: str,
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> Ticket[Lease]:
        """Queues an acquire without waiting for it; errors known at once are raised here."""
    @overload
    def enqueue(
        self,
        resource: Sequence[str],
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> Ticket[list[Lease]]:
        """Queues an acquire of all of `resource` at once."""
    def lock(
        self,
        resource: str,
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> Locked[Lease]:
        """`with session.lock(...) as lease:` released on every way out; raises `LockLost`
        on leaving if the lease was lost inside (unless another exception is on its way)."""
    def lock_many(
        self,
        resources: Sequence[str],
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> Locked[list[Lease]]:
        """`with session.lock_many([...]) as leases:`, as `lock`."""
    def acquire_async(
        self,
        resource: str,
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> Coroutine[Any, Any, Lease]:
        """`await session.acquire_async(...)`; cancelling the task withdraws the request."""
    def lock_async(
        self,
        resource: str,
        mode: _Mode = "exclusive",
        timeout: Optional[float] = None,
        ttl: Optional[float] = None,
        priority: int = 100,
        preempt: bool = False,
        reason: Optional[str] = None,
        break_stale: bool = False,
        on_lost: Optional[_OnLost] = None,
    ) -> AbstractAsyncContextManager[Lease]:
        """`async with session.lock_async(...) as lease:`, as `lock`."""
    def __enter__(self) -> Self: ...

@final
class Lease:
    """One session's hold on one resource. Dropping it does not release it."""

    @property
    def resource(self) -> str: ...
    @property
    def mode(self) -> Literal["exclusive", "shared"]: ...
    @property
    def token(self) -> str: ...
    @property
    def fence(self) -> int: ...
    @property
    def session_id(self) -> str: ...
    @property
    def acquired_at(self) -> float: ...
    @property
    def expires_at(self) -> Optional[float]: ...
    @property
    def priority(self) -> int: ...
    @property
    def valid(self) -> bool: ...
    @property
    def lost_reason(self) -> Optional[_LostReason]: ...
    def renew(self, ttl: Optional[float] = None) -> Optional[float]:
        """Extends the lease by `ttl` seconds from now, which becomes its TTL (`None`: by its
        TTL); returns the new expiry. `LockLost` if it was lost, `InvalidToken` if released."""
    def release(self) -> None:
        """Releases the lease; twice is harmless; a lost lease raises `LockLost`."""

@final
class Locked(_Exits, Generic[_Granted]):
    """What `Session.lock` and `lock_many` return: acquires on entry, releases on exit."""

    def __enter__(self) -> _Granted: ...

@final
class Ticket(Generic[_Granted]):
    """A queued acquire: `await ticket`, `ticket.wait()`, `ticket.cancel()`. Await it from
    one task at a time."""

    @property
    def position(self) -> Optional[int]:
        """The live 1-based place in the queue; `None` once granted, cancelled or failed."""
    @property
    def resources(self) -> list[str]: ...
    def wait(self, timeout: Optional[float] = None) -> _Granted:
        """The `Lease` (a list for a list of names); `LockTimeout` after `timeout`, and the
        ticket stays queued; Ctrl-C cancels it. Waiting again gives the same leases, or
        raises the same error."""
    def cancel(self) -> None:
        """Withdraws the request (or releases a grant not yet handed out); later waits
        raise `Cancelled`."""
    def wait_async(self) -> Coroutine[Any, Any, _Granted]:
        """Awaits the grant; cancelling the awaiting task cancels the ticket."""
    def __await__(self) -> Generator[Any, None, _Granted]: ...
    def _poll(self, wake: Callable[[], object]) -> Optional[_Granted]: ...

@final
class Event:
    """Something that happened; fields that do not apply are `None`; never a token or a
    secret. For `kind == "lagged"`, `position` is how many events were missed."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def resource(self) -> Optional[str]: ...
    @property
    def session_id(self) -> Optional[str]: ...
    @property
    def session_name(self) -> Optional[str]: ...
    @property
    def mode(self) -> Optional[Literal["exclusive", "shared"]]: ...
    @property
    def fence(self) -> Optional[int]: ...
    @property
    def priority(self) -> Optional[int]: ...
    @property
    def position(self) -> Optional[int]: ...
    @property
    def reason(self) -> Optional[str]: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class Subscription(_Exits):
    """An iterator and async iterator of `Event`s (read it from one thread or task at a
    time); it ends when closed or when the engine closes. If it falls behind, a full buffer
    drops its oldest events, and a `lagged` event with their count comes before those kept."""

    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Event: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Coroutine[Any, Any, Event]: ...
    def _poll(self, wake: Callable[[], object]) -> Optional[Event]: ...
    def __enter__(self) -> Self: ...

def _close_all() -> None: ...
def _leave(held: Union[Lease, list[Lease]], propagating: bool) -> None:
    """Releases what a lock block held; see `Locked`."""

@final
class Server(_Exits):
    """A running server of an engine (`Engine.serve`); a context manager that closes it."""

    @property
    def url(self) -> str:
        """`http://HOST:PORT` (or `https://`)."""
    def close(self) -> None:
        """Stops serving, after the answers in flight; closing twice is harmless."""
    def __enter__(self) -> Self: ...

def connect(
    url: str,
    token: Optional[str] = None,
    session_ttl: float = 15.0,
    *,
    ca_file: Optional[str] = None,
    subscriber_buffer: int = 1024,
    keepalive: bool = True,
    idle_timeout: float = 15.0,
) -> Engine:
    """An `Engine` that a server holds, reached at `url`; it works as an embedded one. Its
    sessions always have a TTL, heartbeated by the library (unless `keepalive` is false:
    for a gateway whose sessions live by the calls made for them; a session opened without
    a TTL is heartbeated either way); it reconnects by itself, also when the server has
    sent nothing for `idle_timeout` seconds (it pings a quiet one every third of that)."""

def cli_main(argv: list[str]) -> int:
    """Runs the `interlock` command line `argv`; returns its exit code."""
