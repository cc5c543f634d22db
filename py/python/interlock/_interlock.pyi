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
    "Engine",
    "Session",
    "Lease",
    "Locked",
    "Ticket",
    "Event",
    "Subscription",
    "_close_all",
    "_leave",
]

_Mode = Literal["exclusive", "shared", "observer"]
_LostReason = Literal["preempted", "expired", "force_released", "session_expired"]
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
    """The lease was lost: preempted, expired, force-released or its session expired."""

class Deadlock(Error):
    """The wait could never be granted: it closes a cycle of waiting sessions."""

class AlreadyHeld(Error):
    """The session already holds, or already waits for, the resource."""

class EngineClosed(Error):
    """The engine is closed."""

class Cancelled(Error):
    """The wait was cancelled (its ticket was cancelled or its session closed)."""

@final
class Engine:
    """One embedded lock engine; a context manager that closes it."""

    def __new__(
        cls,
        lock_ttl: Optional[float] = None,
        session_ttl: Optional[float] = None,
        history_limit: int = 100,
        on_session_expire: _OnExpire = "release",
        *,
        global_history: int = 10000,
        subscriber_buffer: int = 1024,
    ) -> Self: ...
    def session(
        self,
        name: str,
        metadata: Optional[dict[str, Any]] = None,
        ttl: Optional[float] = None,
        on_expire: Optional[_OnExpire] = None,
    ) -> Session:
        """Opens a session; a context manager that closes it."""
    def release(self, resource: str, token: str) -> None:
        """Releases the lease `token` on `resource`; `InvalidToken` if it is not current."""
    def force_release(self, resource: str, reason: Optional[str] = None) -> int:
        """Releases every holder of `resource`; returns how many there were."""
    def status(self, resource: str) -> dict[str, Any]:
        """`{"resource", "locked", "mode", "holders": [...], "waiters": [...]}`, never a token."""
    def locks(self) -> list[dict[str, Any]]:
        """The status of every held resource."""
    def sessions(self) -> list[dict[str, Any]]:
        """Every open session, oldest first."""
    def check(self, resource: str, session_id: str, action: Literal["control", "observe"] = "control") -> bool:
        """`"control"`: does the session hold `resource` exclusively? `"observe"`: at all?"""
    def check_fence(self, resource: str, fence: int) -> bool:
        """Is `fence` the fence of a current lease on `resource`?"""
    def history(
        self, resource: Optional[str] = None, session_id: Optional[str] = None, limit: Optional[int] = None
    ) -> list[Event]:
        """Recorded events, oldest first: of a resource, of a session, or of the engine."""
    def subscribe(
        self,
        resources: Optional[Sequence[str]] = None,
        since: Optional[int] = None,
        callback: Optional[Callable[[Event], object]] = None,
    ) -> Subscription:
        """A stream of events; with `since`, first those after that `seq`. With `callback`,
        each event goes to it on the dispatcher thread instead (keep the subscription)."""
    def close(self) -> None:
        """Fails pending waits with `EngineClosed`, ends subscriptions; closing twice is harmless."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Session:
    """A client of the engine; a context manager that closes it. Dropping it does not end it."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
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
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

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
        """Extends the lease by `ttl` seconds (its own TTL if `None`); returns the new expiry."""
    def release(self) -> None:
        """Releases the lease; twice is harmless; a lost lease raises `LockLost`."""

@final
class Locked(Generic[_Granted]):
    """What `Session.lock` and `lock_many` return: acquires on entry, releases on exit."""

    def __enter__(self) -> _Granted: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

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
        ticket stays queued; Ctrl-C cancels it. Waiting again gives the same leases."""
    def cancel(self) -> None:
        """Withdraws the request (or releases a grant not yet handed out); later waits
        raise `Cancelled`."""
    def wait_async(self) -> Coroutine[Any, Any, _Granted]:
        """Awaits the grant; cancelling the awaiting task cancels the ticket."""
    def __await__(self) -> Generator[Any, None, _Granted]: ...
    def _poll(self, wake: Callable[[], object]) -> Optional[_Granted]: ...

@final
class Event:
    """Something that happened; fields that do not apply are `None`; never a token."""

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
class Subscription:
    """An iterator and async iterator of `Event`s (read it from one thread or task at a
    time); it ends when closed or when the engine closes."""

    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Event: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Coroutine[Any, Any, Event]: ...
    def _poll(self, wake: Callable[[], object]) -> Optional[Event]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

def _close_all() -> None: ...
def _leave(held: Union[Lease, list[Lease]], propagating: bool) -> None:
    """Releases what a lock block held; see `Locked`."""
