"""Engine lifetime across the language boundary: dropping, closing from callbacks,
leaving the interpreter with an engine still open."""

from __future__ import annotations

import asyncio
import glob
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import thread_name, wait_until

import interlock


def engine_threads() -> int:
    names = []
    for path in glob.glob("/proc/self/task/*/comm"):
        with open(path) as f:
            names.append(f.read().strip())
    return names.count("interlock-actor")


def test_dropping_the_last_reference_closes_the_engine() -> None:
    before = engine_threads()
    eng = interlock.Engine()
    s = eng.session("a")
    lease = s.acquire("r")
    assert engine_threads() == before + 1
    del eng
    assert engine_threads() == before + 1, "the session and the lease keep it open"
    assert lease.valid
    del s, lease
    assert engine_threads() == before


def test_dropping_an_engine_while_its_callbacks_need_the_gil() -> None:
    got: list[str] = []

    def slow(ev: interlock.Event) -> None:
        time.sleep(0.02)
        got.append(ev.kind)

    eng = interlock.Engine()
    sub = eng.subscribe(callback=slow)
    for i in range(5):
        eng.session(f"s{i}")
    del eng  # joins the dispatcher, which must get the GIL to finish its callback
    assert sub.closed
    assert set(got) <= {"session_opened"}


def test_closing_the_engine_from_a_callback() -> None:
    eng = interlock.Engine()
    where: list[str] = []

    def close(ev: interlock.Event) -> None:
        where.append(thread_name())
        eng.close()

    def closed() -> bool:
        try:
            eng.status("r")
        except interlock.EngineClosed:
            return True
        return False

    sub = eng.subscribe(callback=close)
    eng.session("a")
    wait_until(closed, "the engine to close")
    assert where == ["interlock-dispa"]
    sub.close()


def test_a_callback_may_call_the_engine(eng: interlock.Engine) -> None:
    seen: list[bool] = []
    sub = eng.subscribe(
        resources=["r"], callback=lambda ev: seen.append(eng.status("r")["locked"])
    )
    eng.session("a").acquire("r")
    wait_until(lambda: seen, "the callback")
    assert seen == [True]
    sub.close()


def test_leaving_a_session_block_after_the_engine_closed() -> None:
    eng = interlock.Engine()
    with eng.session("a") as s:
        s.acquire("r")
        eng.close()
    with pytest.raises(interlock.EngineClosed):
        s.close()


def test_on_lost_of_a_lease_lost_before_its_ticket_was_waited(eng: interlock.Engine) -> None:
    calls: list[tuple[interlock.Lease, str]] = []
    holder = eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r", priority=5, on_lost=lambda l, why: calls.append((l, why)))
    holder.release()  # granted to the ticket, which nobody has waited on yet
    eng.session("maintenance").acquire("r", priority=0, preempt=True)
    lease = ticket.wait(5.0)
    assert lease.valid is False and lease.lost_reason == "preempted"
    wait_until(lambda: calls, "on_lost")
    assert calls == [(lease, "preempted")]


def test_on_lost_of_an_async_acquire(eng: interlock.Engine) -> None:
    calls: list[str] = []
    s = eng.session("a")

    async def main() -> interlock.Lease:
        return await s.acquire_async("r", priority=5, on_lost=lambda l, why: calls.append(why))

    lease = asyncio.run(main())
    eng.force_release("r")
    wait_until(lambda: calls, "on_lost")
    assert calls == ["force_released"] and not lease.valid


def test_the_interpreter_exits_cleanly_with_an_engine_left_open() -> None:
    script = textwrap.dedent(
        """
        import threading, time, interlock
        eng = interlock.Engine()
        holder = eng.session("holder")
        holder.acquire("r", on_lost=lambda lease, why: print("lost", why))
        keep = eng.subscribe(callback=lambda ev: print(ev.kind, flush=True))
        waiter = eng.session("waiter")
        def wait():
            try:
                waiter.acquire("r")
            except interlock.EngineClosed:
                print("closed at exit", flush=True)
        threading.Thread(target=wait, daemon=True).start()
        while not eng.status("r")["waiters"]:
            time.sleep(0.01)
        print("exiting", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout and done.stderr == ""


def test_leaving_a_lock_block_after_the_engine_closed_raises_engine_closed() -> None:
    eng = interlock.Engine()
    s = eng.session("a")
    with pytest.raises(interlock.EngineClosed):
        with s.lock("r"):
            eng.close()


def test_a_lease_is_not_valid_once_its_engine_has_closed() -> None:
    eng = interlock.Engine()
    lease = eng.session("a").acquire("r")
    eng.close()
    assert lease.valid is False
    assert lease.lost_reason is None
