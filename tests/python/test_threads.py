"""Threads and signals: one holder at a time, the GIL released while waiting, Ctrl-C."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from typing import Callable, Iterator

import pytest
from helpers import wait_until

import interlock


def test_many_threads_one_resource_never_two_in_the_critical_section(eng: interlock.Engine) -> None:
    threads, rounds = 8, 40
    inside = 0
    most_inside = 0
    entries = 0
    fences: list[int] = []
    guard = threading.Lock()  # protects the counters, not the critical section
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        nonlocal inside, most_inside, entries
        session = eng.session(f"worker-{i}")
        try:
            for _ in range(rounds):
                with session.lock("instrument") as lease:
                    with guard:
                        inside += 1
                        most_inside = max(most_inside, inside)
                        entries += 1
                        fences.append(lease.fence)
                    assert eng.check_fence("instrument", lease.fence)
                    with guard:
                        inside -= 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert entries == threads * rounds
    assert most_inside == 1
    assert fences == sorted(fences) and len(set(fences)) == len(fences)
    assert eng.locks() == []


def test_shared_holders_overlap_while_exclusive_ones_never_do(eng: interlock.Engine) -> None:
    readers_in = threading.Barrier(3, timeout=10)

    def reader(i: int) -> None:
        with eng.session(f"reader-{i}").lock("scope", mode="shared"):
            readers_in.wait()  # all three hold it at once, or this times out

    pool = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not readers_in.broken


def test_other_threads_run_while_one_is_blocked(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    waiter = eng.session("waiter")
    got: list[interlock.Lease] = []
    blocked = threading.Thread(target=lambda: got.append(waiter.acquire("r")))
    blocked.start()
    wait_until(lambda: eng.status("r")["waiters"], "the wait")
    # Pure Python work in this thread: it could not run at all if the blocked thread
    # held the GIL (the test would then hit its timeout).
    total = sum(i * i for i in range(200_000))
    assert total > 0
    holder.release()
    blocked.join()
    assert got[0].valid


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in the main thread, as in a terminal, even where
    pytest was started with SIGINT ignored (a shell's background job): Python then leaves
    it ignored, and `interrupt_main` does nothing."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def interrupt_main_when(condition: Callable[[], object]) -> threading.Thread:
    """Ctrl-C for the main thread, from another thread, once `condition()` holds."""

    def interrupt() -> None:
        wait_until(condition, "the main thread to block")
        _thread.interrupt_main()

    thread = threading.Thread(target=interrupt)
    thread.start()
    return thread


def blocked_for(seconds: float) -> Callable[[], bool]:
    """A condition for waits that the engine cannot show: some time has passed."""
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def test_ctrl_c_interrupts_a_blocked_acquire_and_leaves_nothing_behind(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    waiter = eng.session("waiter")
    timer = interrupt_main_when(lambda: eng.status("r")["waiters"])
    with pytest.raises(KeyboardInterrupt):
        waiter.acquire("r")
    timer.join()
    st = eng.status("r")
    assert st["waiters"] == []
    assert [h["session_name"] for h in st["holders"]] == ["holder"]
    holder.release()
    assert eng.status("r")["locked"] is False, "the withdrawn waiter must not be granted"
    assert eng.sessions()[1]["leases"] == []


def test_ctrl_c_interrupts_a_blocked_multi_acquire(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("m2")
    waiter = eng.session("waiter")
    timer = interrupt_main_when(lambda: eng.status("m1")["waiters"])
    with pytest.raises(KeyboardInterrupt):
        waiter.acquire_many(["m1", "m2"])
    timer.join()
    holder.release()
    assert eng.locks() == []


def test_ctrl_c_during_ticket_wait_cancels_the_ticket(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ticket = eng.session("waiter").enqueue("r")
    timer = interrupt_main_when(blocked_for(0.2))
    with pytest.raises(KeyboardInterrupt):
        ticket.wait()
    timer.join()
    assert eng.status("r")["waiters"] == []
    assert ticket.position is None


def test_ctrl_c_interrupts_a_blocked_subscription(eng: interlock.Engine) -> None:
    sub = eng.subscribe()
    timer = interrupt_main_when(blocked_for(0.2))
    with pytest.raises(KeyboardInterrupt):
        for _ in sub:
            pass
    timer.join()
