"""The pure-Python half of the package: the asyncio glue that the compiled module's
methods hand out (``Session.lock_async``, ``await ticket``, ``async for event in
subscription``).

Asyncio waits take their outcome on the event loop's own thread only: the engine merely
wakes the loop, so a task cancelled while it waits has received nothing, and withdrawing
its ticket leaves nothing held and nothing queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from ._interlock import EngineClosed, Error, _leave

if TYPE_CHECKING:
    from types import TracebackType

    from ._interlock import Event, Lease, Subscription, Ticket

T = TypeVar("T")
Held = Union["Lease", "list[Lease]"]


class AsyncLocked:
    """``async with session.lock_async(...) as lease:`` (the start is ``enqueue``). The
    blocking ``with session.lock(...)`` is native (``Locked``), as is ``_leave``."""

    __slots__ = ("_start", "_held")

    def __init__(
        self, start: Callable[..., Any], args: tuple[Any, ...], kwargs: Optional[dict[str, Any]]
    ) -> None:
        self._start: Callable[[], Any] = functools.partial(start, *args, **(kwargs or {}))
        self._held: Held

    async def __aenter__(self) -> Held:
        self._held = await self._start()
        return self._held

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        _leave(self._held, exc_type is not None)


async def acquire_async(
    enqueue: Callable[..., Ticket[Any]], args: tuple[Any, ...], kwargs: Optional[dict[str, Any]]
) -> Held:
    """``await session.acquire_async(...)``: an enqueued request, awaited."""
    held: Held = await enqueue(*args, **(kwargs or {}))
    return held


async def wait(ticket: Ticket[Any]) -> Held:
    """``await ticket``. If the awaiting task is cancelled, the ticket is cancelled."""
    try:
        return await _until_ready(ticket._poll)
    except Error:
        raise
    except BaseException:
        with contextlib.suppress(EngineClosed):
            ticket.cancel()
        raise


async def next_event(subscription: Subscription) -> Event:
    """``async for event in subscription``."""
    return await _until_ready(subscription._poll)


async def _until_ready(poll: Callable[[Callable[[], None]], Optional[T]]) -> T:
    """Calls ``poll(wake)`` until it has a result; in between, sleeps until the engine
    calls ``wake`` (from another thread)."""
    loop = asyncio.get_running_loop()
    while True:
        woken = loop.create_future()
        result = poll(functools.partial(_wake, loop, woken))
        if result is not None:
            return result
        await woken


def _wake(loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None]) -> None:
    try:
        loop.call_soon_threadsafe(_set_done, woken)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


def _set_done(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
