"""Engine lifetime across the language boundary: dropping, closing from callbacks,
leaving the interpreter with an engine still open."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import subprocess
import sys
import textwrap
import time

import pytest
from engines import Engines
from helpers import thread_name, wait_until

import interlock


def threads_named(name: str) -> int:
    """How many threads of this process have the OS name `name`."""
    names = []
    for path in glob.glob("/proc/self/task/*/comm"):
        with open(path) as f:
            names.append(f.read().strip())
    return names.count(name)


def test_dropping_the_last_reference_closes_the_engine(make_engine: Engines) -> None:
    # The thread each engine keeps in this process: its actor, or a remote engine's
    # connection.
    thread = "interlock-remot" if make_engine.remote else "interlock-actor"  # 15 characters
    before = threads_named(thread)
    eng = make_engine()
    s = eng.session("a")
    lease = s.acquire("r")
    assert threads_named(thread) == before + 1
    del eng
    assert threads_named(thread) == before + 1, "the session and the lease keep it open"
    assert lease.valid
    del s, lease
    assert threads_named(thread) == before


def test_dropping_an_engine_while_its_callbacks_need_the_gil(make_engine: Engines) -> None:
    started: list[str] = []
    got: list[str] = []

    def slow(ev: interlock.Event) -> None:
        started.append(ev.kind)
        time.sleep(0.02)  # not a proof of anything: it keeps the callback busy
        got.append(f"{ev.kind} {ev.session_name}")

    eng = make_engine()
    sub = eng.subscribe(callback=slow)
    for i in range(5):
        eng.session(f"s{i}")
    wait_until(lambda: started, "the first callback")
    del eng  # joins the dispatcher, which must get the GIL to finish its callback
    assert sub.closed
    # The callback that had started when the engine was dropped finished, and those that
    # ran came in order; a callback that never finished would be missing here.
    assert 1 <= len(got) <= 5
    assert got == [f"session_opened s{i}" for i in range(len(got))]
    assert len(started) == len(got)


def test_closing_the_engine_from_a_callback(make_engine: Engines) -> None:
    eng = make_engine()
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
    # Over a link the event may overtake the open's answer: the close then fails the
    # call in flight, as closing an engine does.
    with contextlib.suppress(interlock.EngineClosed):
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


def test_leaving_a_session_block_after_the_engine_closed(make_engine: Engines) -> None:
    eng = make_engine()
    with eng.session("a") as s:
        s.acquire("r")
        eng.close()
    with pytest.raises(interlock.EngineClosed):
        s.close()


def test_on_lost_of_a_lease_lost_before_its_ticket_was_waited(eng: interlock.Engine, make_engine: Engines) -> None:
    calls: list[tuple[interlock.Lease, str]] = []
    holder = eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r", priority=5, on_lost=lambda l, why: calls.append((l, why)))
    holder.release()  # granted to the ticket, which nobody has waited on yet
    eng.session("maintenance").acquire("r", priority=0, preempt=True)
    lease = ticket.wait(5.0)
    make_engine.noticed(lambda: lease.valid is False, "the preemption")
    assert lease.lost_reason == "preempted"
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


def test_the_interpreter_exits_cleanly_with_an_engine_left_open(make_engine: Engines) -> None:
    # The engine is the script's own, or (remote mode) one that it connects to.
    script = textwrap.dedent(
        """
        import sys, threading, time, interlock
        eng = interlock.connect(sys.argv[1]) if sys.argv[1:] else interlock.Engine()
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
    url = [make_engine.served_url()] if make_engine.remote else []
    done = subprocess.run(
        [sys.executable, "-c", script, *url], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout and done.stderr == ""


def test_leaving_a_lock_block_after_the_engine_closed_raises_engine_closed(make_engine: Engines) -> None:
    eng = make_engine()
    s = eng.session("a")
    with pytest.raises(interlock.EngineClosed):
        with s.lock("r"):
            eng.close()


def test_a_lease_is_not_valid_once_its_engine_has_closed(make_engine: Engines) -> None:
    eng = make_engine()
    lease = eng.session("a").acquire("r")
    eng.close()
    assert lease.valid is False
    assert lease.lost_reason is None
