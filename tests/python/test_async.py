"""asyncio: acquire_async, lock_async, await ticket, async for over a subscription, and
cancellation that leaves nothing held and nothing queued."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
from engines import Engines

import interlock


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


async def until(condition: Callable[[], object], limit: float = 10.0) -> None:
    """Yields to the loop until `condition()` holds (bounded so a broken test ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition did not come true"
        await asyncio.sleep(0.005)


def test_acquire_async(eng: interlock.Engine) -> None:
    s = eng.session("a")

    async def main() -> interlock.Lease:
        return await s.acquire_async("r", mode="shared", ttl=30.0, priority=4)

    lease = run(main)
    assert lease.valid and lease.mode == "shared" and lease.priority == 4
    assert lease.session_id == s.id


def test_acquire_async_waits_for_a_release(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    s = eng.session("a")

    async def main() -> interlock.Lease:
        task = asyncio.create_task(s.acquire_async("r"))
        await until(lambda: eng.status("r")["waiters"])
        assert not task.done()
        holder.release()
        return await task

    assert run(main).valid


def test_the_loop_keeps_running_while_a_task_waits(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    s = eng.session("a")

    async def main() -> list[int]:
        ticks: list[int] = []
        task = asyncio.create_task(s.acquire_async("r"))
        for i in range(5):
            await asyncio.sleep(0.01)
            ticks.append(i)
        assert not task.done(), "the task waits while the loop runs"
        holder.release()
        await task
        return ticks

    assert run(main) == [0, 1, 2, 3, 4]


def test_acquire_async_timeout_raises_lock_timeout_and_leaves_the_queue(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    s = eng.session("a")

    async def main() -> None:
        with pytest.raises(interlock.LockTimeout):
            await s.acquire_async("r", timeout=0.1)
        with pytest.raises(interlock.LockTimeout):
            await s.acquire_async("r", timeout=0)

    run(main)
    assert eng.status("r")["waiters"] == []


def test_acquire_async_errors(eng: interlock.Engine) -> None:
    s = eng.session("a")
    s.acquire("r")

    async def main() -> None:
        with pytest.raises(interlock.AlreadyHeld):
            await s.acquire_async("r")
        with pytest.raises(ValueError):
            await s.acquire_async("")
        with pytest.raises(TypeError):
            await s.acquire_async("x", nonsense=True)  # type: ignore[call-arg]

    run(main)


def test_cancelling_the_task_removes_the_waiter(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    s = eng.session("a")

    async def main() -> None:
        task = asyncio.create_task(s.acquire_async("r"))
        await until(lambda: eng.status("r")["waiters"])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert eng.status("r")["waiters"] == []

    run(main)
    holder.release()
    assert eng.status("r")["locked"] is False


def test_cancelling_after_an_unseen_grant_holds_nothing(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    s = eng.session("a")

    async def main() -> None:
        task = asyncio.create_task(s.acquire_async("r"))
        await until(lambda: eng.status("r")["waiters"])
        holder.release()  # the engine grants the waiter now; the task has not run since
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert eng.status("r")["locked"] is False

    run(main)


def test_wait_for_timeout_removes_the_waiter(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    s = eng.session("a")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(s.acquire_async("r"), 0.1)
        assert eng.status("r")["waiters"] == []

    run(main)


def test_many_tasks_one_resource(eng: interlock.Engine) -> None:
    inside = 0
    most = 0

    async def worker(i: int) -> None:
        nonlocal inside, most
        s = eng.session(f"task-{i}")
        for _ in range(10):
            async with s.lock_async("r"):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0)
                inside -= 1

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(6)))

    run(main)
    assert most == 1
    assert eng.locks() == []


def test_async_with_releases_on_exit_and_on_exceptions(eng: interlock.Engine) -> None:
    s = eng.session("a")

    async def main() -> list[interlock.Lease]:
        held = []
        async with s.lock_async("r", timeout=5.0) as lease:
            assert lease.valid
            held.append(lease)
        with pytest.raises(ZeroDivisionError):
            async with s.lock_async("r") as lease:
                held.append(lease)
                1 / 0
        return held

    held = run(main)
    assert len(held) == 2 and not any(l.valid for l in held)
    assert eng.status("r")["locked"] is False


def test_async_with_raises_lock_lost_when_the_lease_was_lost_inside(
    eng: interlock.Engine, make_engine: Engines
) -> None:
    s = eng.session("optimizer")

    async def main() -> None:
        with pytest.raises(interlock.LockLost):
            async with s.lock_async("r", priority=3) as lease:
                eng.session("maintenance").acquire("r", priority=0, preempt=True)
                make_engine.noticed(lambda: not lease.valid, "the preemption")
        with pytest.raises(KeyError):
            async with s.lock_async("q"):
                eng.force_release("q")
                raise KeyError("mine")

    run(main)


def test_cancelling_a_task_inside_async_with_releases(eng: interlock.Engine) -> None:
    s = eng.session("a")

    async def main() -> None:
        entered = asyncio.Event()

        async def hold() -> None:
            async with s.lock_async("r"):
                entered.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(hold())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)
    assert eng.status("r")["locked"] is False


def test_await_a_ticket(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r")
    many = eng.session("b").enqueue(["x", "y"])

    async def main() -> tuple[Any, Any, Any]:
        task = asyncio.create_task(ticket.wait_async())
        await until(lambda: ticket.position == 1)
        holder.release()
        return await task, await ticket, await many

    lease, again, leases = run(main)
    assert lease.valid and again is lease
    assert [l.resource for l in leases] == ["x", "y"]


def test_cancelling_an_awaited_ticket_cancels_it(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ticket, 0.1)

    run(main)
    assert eng.status("r")["waiters"] == []
    with pytest.raises(interlock.Cancelled):
        ticket.wait(1.0)


def test_an_awaited_ticket_that_fails_raises(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r", timeout=0.1)

    async def main() -> None:
        with pytest.raises(interlock.LockTimeout):
            await ticket

    run(main)


def test_async_for_over_a_subscription(eng: interlock.Engine) -> None:
    sub = eng.subscribe(resources=["r"])
    s = eng.session("a")

    async def main() -> list[str]:
        kinds: list[str] = []

        async def consume() -> None:
            async for ev in sub:
                kinds.append(ev.kind)
                if ev.kind == "released":
                    break

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        lease = await s.acquire_async("r")
        lease.release()
        await asyncio.wait_for(task, 10)
        return kinds

    assert run(main) == ["acquired", "released"]


def test_async_for_ends_when_the_engine_closes(make_engine: Engines) -> None:
    eng = make_engine()
    sub = eng.subscribe()

    async def main() -> list[str]:
        kinds: list[str] = []

        async def consume() -> None:
            async for ev in sub:
                kinds.append(ev.kind)

        task = asyncio.create_task(consume())
        eng.session("a")
        await until(lambda: kinds)
        eng.close()
        await asyncio.wait_for(task, 10)
        return kinds

    assert run(main) == ["session_opened"]


def test_cancelling_an_async_for_loses_no_event(eng: interlock.Engine) -> None:
    sub = eng.subscribe()

    async def main() -> list[str]:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.05)
        eng.session("a")
        return [(await sub.__anext__()).kind]

    assert run(main) == ["session_opened"]
