"""An engine does not cross ``os.fork()``: in the child, what it inherited refuses every
call at once with ``EngineClosed`` (whose message says why), the child exits without
hanging (atexit closes the inherited engine, finalization and the garbage collector free
its objects) and may make an engine of its own; the parent's engine goes on untouched.

Each case runs in a subprocess of its own, so that a child that hangs fails its test
instead of hanging pytest: the script's parent measures how long its child took, kills a
child that hangs, and reports as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

# In-process only: what a forked child inherits of an engine in its parent's process.
pytestmark = pytest.mark.embedded_only

# How long a child may take, from the fork until it has exited and been reaped.
CHILD_LIMIT = 1.0

# The parent: an engine in use in every way a program uses one (a session holding a lease
# with an `on_lost`, a wait in flight, a subscription with events queued, asyncio, a
# callback subscription). It ends with a call that waits for the engine: every event is
# published by then and the engine's threads are idle at the fork, so what the child finds
# does not depend on timing.
PARENT = """
import asyncio, gc, json, os, signal, sys, time, warnings
import interlock

eng = interlock.Engine()
holder = eng.session("holder")
lost = []
lease = holder.acquire("r", on_lost=lambda l, why: lost.append(why))
waiter = eng.session("waiter")
ticket = waiter.enqueue("r")
sub = eng.subscribe()

async def contended(engine):
    # A wait that only a wake-up ends: the engine wakes the loop through the package's
    # relay thread.
    a, b = engine.session("async-a"), engine.session("async-b")
    first = await a.acquire_async("q")
    task = asyncio.ensure_future(b.acquire_async("q"))
    while not engine.status("q")["waiters"]:
        await asyncio.sleep(0.001)
    first.release()
    second = await asyncio.wait_for(task, 2.0)
    second.release()
    a.close()
    b.close()

asyncio.run(contended(eng))
watch = eng.subscribe(callback=lambda ev: None)
eng.status("r")

with warnings.catch_warnings():
    # Python 3.12+ warns that fork() in a process with threads (the engine's) may deadlock
    # the child: that it does not is what this test checks. Only that warning is let
    # through; the script runs with -W error, as pytest's filterwarnings = error.
    warnings.filterwarnings(
        "ignore",
        message=r"This process \\(pid=\\d+\\) is multi-threaded, use of fork\\(\\) may lead to deadlocks",
        category=DeprecationWarning,
    )
    start = time.monotonic()
    pid = os.fork()
if pid == 0:
"""

# The parent once its child is gone (or killed after 10 s): its engine is as it was and
# still works, asyncio included.
PARENT_AFTER = """
else:
    status = None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
        elif time.monotonic() > start + 10.0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "hung"
        else:
            time.sleep(0.001)
    took = time.monotonic() - start
    holders = [h["session_id"] for h in eng.status("r")["holders"]]
    position = ticket.position
    lease.release()
    granted = ticket.wait(5.0)
    events = []
    for ev in sub:
        if ev.resource == "r":
            events.append([ev.kind, ev.session_name])
            if ev.kind == "acquired":
                break
    asyncio.run(contended(eng))
    parent = {
        "holders": holders == [holder.id],
        "lease": [lease.valid, lease.lost_reason, lost],
        "position": position,
        "granted": granted.valid and granted.session_id == waiter.id,
        "events": events,
    }
    print(json.dumps({"child": status, "took": took, "parent": parent}))
"""

PARENT_WENT_ON = {
    "holders": True,
    "lease": [False, None, []],
    "position": 1,
    "granted": True,
    "events": [["released", "holder"], ["acquired", "waiter"]],
}


def fork(child: str) -> dict[str, Any]:
    """Runs the parent, forking a child that runs `child`; the parent's report, once the
    parent's engine was seen to go on untouched."""
    script = PARENT + textwrap.indent(textwrap.dedent(child), "    ") + PARENT_AFTER
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    print(f"the child took {report['took']:.3f} s")
    assert report["child"] == 0, f"the child failed ({report['child']}): {done.stderr}"
    assert done.stderr == ""
    assert report["took"] < CHILD_LIMIT, f"the child took {report['took']:.3f} s"
    assert report["parent"] == PARENT_WENT_ON
    return report


@pytest.mark.parametrize(
    "how",
    ["pass  # falls off the end of the script", "sys.exit(0)"],
    ids=["end-of-script", "sys-exit"],
)
def test_a_child_that_leaves_the_inherited_engine_alone_exits_at_once(how: str) -> None:
    # At exit the atexit hook closes the inherited engine (it returns at once: its threads
    # are not in the child), and the interpreter shuts down around the inherited objects
    # that the script still holds.
    fork(how)


def test_a_child_calling_the_inherited_engine_gets_engine_closed_at_once() -> None:
    fork(
        """
        def refused(call):
            try:
                call()
            except interlock.EngineClosed as e:
                assert "does not cross a fork" in str(e), str(e)
            else:
                raise AssertionError("an inherited engine answered in a forked child")

        calls = [
            lambda: eng.status("r"),
            lambda: eng.locks(),
            lambda: eng.sessions(),
            lambda: eng.history(),
            lambda: eng.check("r", holder.id),
            lambda: eng.check_fence("r", lease.fence),
            lambda: eng.session("child"),
            lambda: eng.subscribe(),
            lambda: eng.release("r", lease.token),
            lambda: eng.renew("r", lease.token),
            lambda: eng.force_release("r"),
            lambda: eng.resume(holder.id, holder.secret),
            lambda: holder.acquire("q"),
            lambda: holder.acquire("r", timeout=0),
            lambda: holder.acquire_many(["q", "p"]),
            lambda: holder.enqueue("q"),
            lambda: holder.heartbeat(),
            lambda: holder.close(),
            lambda: lease.renew(),
            lambda: lease.release(),
            lambda: ticket.position,
            lambda: ticket.cancel(),
        ]
        for call in calls:
            refused(call)
        try:
            with holder.lock("q"):
                raise AssertionError("entered a lock block of an inherited engine")
        except interlock.EngineClosed:
            pass
        eng.close()  # returns at once: there is nothing of the engine in the child to stop
        refused(lambda: eng.status("r"))
        # What the child inherited goes to the garbage collector before the exit.
        del eng, holder, lease, waiter, ticket, sub, watch
        gc.collect()
        """
    )


def test_a_child_makes_an_engine_of_its_own() -> None:
    fork(
        """
        mine = interlock.Engine()
        with mine.session("child") as s:
            got = s.acquire("r", timeout=1.0)  # the parent's "r" is another engine's
            assert got.valid and mine.status("r")["locked"]
            got.release()
            assert mine.status("r")["locked"] is False
        # asyncio too: the child starts a relay thread of its own (the parent's, which the
        # child inherited the use of, is not in the child).
        asyncio.run(contended(mine))
        assert [e.kind for e in mine.history(resource="q")] == ["acquired", "queued", "released", "acquired", "released"]
        # `mine` stays open: the atexit hook closes it (joining its threads) and the
        # inherited engine.
        """
    )


def test_waiting_on_an_inherited_ticket_in_the_child_is_refused() -> None:
    fork(
        """
        try:
            ticket.wait(0.3)
        except interlock.EngineClosed as e:
            assert "does not cross a fork" in str(e), str(e)
        """
    )


def test_an_inherited_subscription_ends_in_the_child() -> None:
    fork(
        """
        def still_waiting(signum, frame):
            raise TimeoutError("the inherited subscription is still waiting")

        signal.signal(signal.SIGALRM, still_waiting)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        try:
            for ev in sub:
                pass
        except interlock.EngineClosed as e:
            assert "does not cross a fork" in str(e), str(e)
        signal.setitimer(signal.ITIMER_REAL, 0)
        """
    )
