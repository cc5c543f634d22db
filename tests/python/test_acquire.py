"""Acquiring: modes, timeouts, queue order, preemption, deadlocks, tickets, leases and
the `with` blocks."""

from __future__ import annotations

import gc
import math
import threading
import time
import uuid
import weakref

import pytest
from engines import Engines
from helpers import thread_name, wait_until

import interlock


def test_lease_fields(eng: interlock.Engine) -> None:
    s = eng.session("Optimizer")
    before = time.time()
    lease = s.acquire("reactor-1", ttl=30.0, priority=5)
    assert lease.resource == "reactor-1"
    assert lease.mode == "exclusive"
    assert uuid.UUID(lease.token).version == 4
    assert lease.fence >= 1
    assert lease.session_id == s.id
    assert before - 1 <= lease.acquired_at <= time.time() + 1
    assert lease.expires_at == pytest.approx(lease.acquired_at + 30.0, abs=1.0)
    assert lease.priority == 5
    assert lease.valid is True and lease.lost_reason is None
    assert repr(lease) == f"<Lease reactor-1 exclusive fence={lease.fence} session=Optimizer>"
    assert s.acquire("other").expires_at is None
    assert s.acquire("third").priority == 100


def test_fences_strictly_increase(eng: interlock.Engine) -> None:
    s = eng.session("a")
    fences = []
    for i in range(5):
        lease = s.acquire(f"r{i % 2}")
        fences.append(lease.fence)
        lease.release()
    assert fences == sorted(set(fences))


def test_observer_is_shared_and_shared_holders_coexist(eng: interlock.Engine) -> None:
    a, b, c = eng.session("a"), eng.session("b"), eng.session("c")
    la = a.acquire("scope", mode="observer")
    lb = b.acquire("scope", mode="shared")
    assert la.mode == "shared" and lb.mode == "shared"
    st = eng.status("scope")
    assert st["mode"] == "shared" and {h["mode"] for h in st["holders"]} == {"shared"}
    with pytest.raises(interlock.LockTimeout):
        c.acquire("scope", timeout=0)


def test_exclusive_conflicts_with_everything(eng: interlock.Engine) -> None:
    eng.session("a").acquire("r")
    b = eng.session("b")
    for mode in ("exclusive", "shared", "observer"):
        with pytest.raises(interlock.LockTimeout):
            b.acquire("r", mode=mode, timeout=0)


def test_timeout_zero_tries_once_without_queueing(eng: interlock.Engine) -> None:
    eng.session("a").acquire("r")
    with pytest.raises(interlock.LockTimeout):
        eng.session("b").acquire("r", timeout=0)
    assert eng.status("r")["waiters"] == []
    assert "queued" not in [e.kind for e in eng.history(resource="r")]


def test_timeout_waits_then_leaves_the_queue(eng: interlock.Engine) -> None:
    eng.session("a").acquire("r")
    b = eng.session("b")
    start = time.monotonic()
    with pytest.raises(interlock.LockTimeout):
        b.acquire("r", timeout=0.2)
    assert time.monotonic() - start >= 0.2
    assert eng.status("r")["waiters"] == []
    assert [e.reason for e in eng.history(resource="r") if e.kind == "dequeued"] == ["timeout"]


def test_timeout_none_waits_until_granted(eng: interlock.Engine) -> None:
    holder = eng.session("a").acquire("r")
    b = eng.session("b")
    got: list[interlock.Lease] = []
    t = threading.Thread(target=lambda: got.append(b.acquire("r", timeout=None)))
    t.start()
    wait_until(lambda: eng.status("r")["waiters"], "the wait")
    holder.release()
    t.join()
    assert got[0].valid and got[0].session_id == b.id


def test_infinite_timeout_means_forever(eng: interlock.Engine) -> None:
    s = eng.session("a")
    assert s.acquire("r", timeout=math.inf).valid


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"resource": ""}, ValueError),
        ({"resource": "x" * 1025}, ValueError),
        ({"resource": "nul\0"}, ValueError),
        ({"resource": 3}, TypeError),
        ({"resource": "r", "mode": "write"}, ValueError),
        ({"resource": "r", "timeout": -1.0}, ValueError),
        ({"resource": "r", "timeout": math.nan}, ValueError),
        ({"resource": "r", "timeout": "5"}, TypeError),
        ({"resource": "r", "ttl": 0.0}, ValueError),
        ({"resource": "r", "ttl": -2.0}, ValueError),
        ({"resource": "r", "priority": 256}, ValueError),
        ({"resource": "r", "priority": -1}, ValueError),
        ({"resource": "r", "priority": 2**70}, ValueError),
        ({"resource": "r", "priority": 1.0}, TypeError),
        ({"resource": "r", "on_lost": "not callable"}, TypeError),
        ({"resource": "r", "reason": "x" * 2000}, ValueError),
        ({"resource": "r", "unknown": 1}, TypeError),
    ],
)
def test_bad_acquire_arguments_change_nothing(eng: interlock.Engine, kwargs: dict, error: type) -> None:
    s = eng.session("a")
    with pytest.raises(error):
        s.acquire(**kwargs)
    with pytest.raises(error):
        s.enqueue(**kwargs)
    assert eng.locks() == []
    assert [e.kind for e in eng.history()] == ["session_opened"]


def test_positional_arguments_follow_the_contract_order(eng: interlock.Engine) -> None:
    s = eng.session("a")
    lease = s.acquire("r", "shared", 1.0, 50.0, 9)
    assert (lease.mode, lease.priority) == ("shared", 9)
    assert lease.expires_at == pytest.approx(lease.acquired_at + 50.0, abs=1.0)


def test_already_held(eng: interlock.Engine) -> None:
    s = eng.session("a")
    s.acquire("r")
    with pytest.raises(interlock.AlreadyHeld):
        s.acquire("r")
    with pytest.raises(interlock.AlreadyHeld):
        s.acquire("r", mode="shared")


def test_a_session_already_waiting_gets_already_held(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    s = eng.session("a")
    ticket = s.enqueue("r")
    with pytest.raises(interlock.AlreadyHeld):
        s.enqueue("r")
    ticket.cancel()


def test_queue_order_is_priority_then_arrival(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    tickets = {}
    for name, prio in [("late-low", 3), ("first-normal", 1), ("urgent", 0), ("second-normal", 1)]:
        tickets[name] = eng.session(name).enqueue("r", priority=prio)
    assert [w["session_name"] for w in eng.status("r")["waiters"]] == [
        "urgent",
        "first-normal",
        "second-normal",
        "late-low",
    ]
    assert [tickets[n].position for n in ("urgent", "first-normal", "second-normal", "late-low")] == [1, 2, 3, 4]
    order = []
    lease = holder
    for _ in range(4):
        lease.release()
        granted = [n for n, t in tickets.items() if n not in order and t.position is None]
        assert len(granted) == 1
        order.append(granted[0])
        lease = tickets[granted[0]].wait(5.0)
    assert order == ["urgent", "first-normal", "second-normal", "late-low"]


def test_arrivals_never_jump_the_queue(eng: interlock.Engine) -> None:
    eng.session("reader-1").acquire("r", mode="shared")
    writer = eng.session("writer").enqueue("r")
    with pytest.raises(interlock.LockTimeout):
        eng.session("reader-2").acquire("r", mode="shared", timeout=0)
    reader3 = eng.session("reader-3").enqueue("r", mode="shared")
    assert (writer.position, reader3.position) == (1, 2)


def test_a_shared_head_is_granted_with_the_shared_requests_behind_it(eng: interlock.Engine) -> None:
    holder = eng.session("writer").acquire("r")
    readers = [eng.session(f"reader-{i}").enqueue("r", mode="shared") for i in range(3)]
    last_writer = eng.session("writer-2").enqueue("r")
    holder.release()
    leases = [t.wait(5.0) for t in readers]
    assert all(l.valid and l.mode == "shared" for l in leases)
    assert last_writer.position == 1
    for l in leases:
        l.release()
    assert last_writer.wait(5.0).valid


def test_preempt_revokes_lower_priority_holders(eng: interlock.Engine, make_engine: Engines) -> None:
    plan = eng.session("plan")
    victim = plan.acquire("device", priority=3)
    maintenance = eng.session("maintenance")
    lease = maintenance.acquire("device", priority=0, preempt=True, reason="calibration", timeout=0)
    assert lease.valid
    make_engine.noticed(lambda: victim.valid is False, "the preemption")
    assert victim.lost_reason == "preempted"
    ev = [e for e in eng.history(resource="device") if e.kind == "preempted"]
    assert len(ev) == 1 and ev[0].session_id == plan.id and ev[0].reason == "calibration"
    with pytest.raises(interlock.LockLost):
        victim.release()
    with pytest.raises(interlock.LockLost):
        victim.renew()


def test_preempt_needs_strictly_lower_priority(eng: interlock.Engine) -> None:
    holder = eng.session("a").acquire("device", priority=1)
    with pytest.raises(interlock.LockTimeout):
        eng.session("b").acquire("device", priority=1, preempt=True, timeout=0)
    assert holder.valid


def test_without_preempt_a_higher_priority_request_waits(eng: interlock.Engine) -> None:
    holder = eng.session("a").acquire("device", priority=3)
    with pytest.raises(interlock.LockTimeout):
        eng.session("b").acquire("device", priority=0, timeout=0)
    assert holder.valid


def test_deadlock_is_reported_to_the_request_that_closes_the_cycle(eng: interlock.Engine) -> None:
    a, b = eng.session("a"), eng.session("b")
    a.acquire("r1")
    b.acquire("r2")
    ticket = a.enqueue("r2")
    with pytest.raises(interlock.Deadlock):
        b.acquire("r1")
    assert ticket.position == 1
    with pytest.raises(interlock.Deadlock):
        b.enqueue("r1")
    ticket.cancel()


def test_acquire_many_returns_leases_in_the_order_given(eng: interlock.Engine) -> None:
    s = eng.session("a")
    leases = s.acquire_many(["motor2", "motor1", "motor3"], timeout=10.0)
    assert [l.resource for l in leases] == ["motor2", "motor1", "motor3"]
    assert len({l.fence for l in leases}) == 3


def test_acquire_many_is_all_or_nothing(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("motor2")
    s = eng.session("a")
    with pytest.raises(interlock.LockTimeout):
        s.acquire_many(["motor1", "motor2"], timeout=0.1)
    assert eng.status("motor1")["locked"] is False
    assert s.acquire("motor1", timeout=0).valid


def test_acquire_many_holds_nothing_while_it_waits(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("motor2")
    s = eng.session("a")
    ticket = s.enqueue(["motor1", "motor2"])
    motor1 = eng.status("motor1")
    assert motor1["locked"] is False
    assert [w["session_id"] for w in motor1["waiters"]] == [s.id]
    holder.release()
    assert [l.resource for l in ticket.wait(5.0)] == ["motor1", "motor2"]


def test_acquire_many_rejects_bad_lists(eng: interlock.Engine) -> None:
    s = eng.session("a")
    with pytest.raises(TypeError):
        s.acquire_many("motor1")
    with pytest.raises(ValueError):
        s.acquire_many([])
    with pytest.raises(ValueError):
        s.acquire_many(["m", "m"])
    with pytest.raises(ValueError):
        s.acquire_many(["m", ""])
    assert eng.locks() == []


def test_enqueue_and_wait(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r")
    assert ticket.position == 1
    assert ticket.resources == ["r"]
    assert repr(ticket) == "<Ticket r session=a>"
    with pytest.raises(interlock.LockTimeout):
        ticket.wait(0.1)
    assert ticket.position == 1, "a wait that times out stays queued"
    holder.release()
    lease = ticket.wait(5.0)
    assert lease.valid and ticket.position is None
    assert ticket.wait() is lease, "waiting again gives the same lease"
    assert repr(ticket) == "<Ticket r session=a granted>"


def test_enqueue_granted_at_once(eng: interlock.Engine) -> None:
    ticket = eng.session("a").enqueue(["x", "y"])
    assert ticket.position is None
    leases = ticket.wait(0)
    assert [l.resource for l in leases] == ["x", "y"]


def test_enqueue_raises_at_once_what_is_known_at_once(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    with pytest.raises(interlock.LockTimeout):
        eng.session("a").enqueue("r", timeout=0)


def test_enqueue_with_a_timeout_fails_in_the_ticket(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r", timeout=0.1)
    with pytest.raises(interlock.LockTimeout):
        ticket.wait(10.0)
    assert ticket.position is None
    assert eng.status("r")["waiters"] == []
    with pytest.raises(interlock.LockTimeout):
        ticket.wait(10.0)  # waiting again fails the same way


def test_a_ticket_failed_by_its_session_closing_fails_so_every_time(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    s = eng.session("a")
    ticket = s.enqueue("r")
    s.close()
    for _ in range(2):
        with pytest.raises(interlock.Cancelled):
            ticket.wait(10.0)


def test_ticket_position_is_live(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    first = eng.session("first").enqueue("r")
    second = eng.session("second").enqueue("r")
    assert (first.position, second.position) == (1, 2)
    first.cancel()
    assert (first.position, second.position) == (None, 1)
    holder.release()
    second.wait(5.0)
    assert second.position is None


def test_cancel_removes_the_waiter(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r")
    ticket.cancel()
    ticket.cancel()
    assert eng.status("r")["waiters"] == []
    with pytest.raises(interlock.Cancelled):
        ticket.wait(1.0)
    assert [e.reason for e in eng.history(resource="r") if e.kind == "dequeued"] == ["cancelled"]


def test_cancel_after_an_unseen_grant_releases_it(eng: interlock.Engine) -> None:
    holder = eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r")
    holder.release()
    assert ticket.position is None
    ticket.cancel()
    assert eng.status("r")["locked"] is False


def test_dropping_a_pending_ticket_withdraws_it(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ticket = eng.session("a").enqueue("r")
    del ticket
    assert eng.status("r")["waiters"] == []


def test_release_twice_is_harmless(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("r")
    lease.release()
    lease.release()
    assert lease.valid is False and lease.lost_reason is None
    assert repr(lease).endswith(" released>")


def test_renew_extends_by_the_leases_own_ttl(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("r", ttl=50.0)
    first = lease.expires_at
    assert first is not None and first == pytest.approx(lease.acquired_at + 50.0)
    time.sleep(0.05)  # so that "from now" is later than the grant
    new = lease.renew()
    assert new is not None and new > first
    assert new == pytest.approx(time.time() + 50.0, abs=5.0)
    assert lease.expires_at == new
    # A renewal's ttl becomes the lease's own: later renewals without one use it.
    longer = lease.renew(ttl=500.0)
    assert longer == pytest.approx(time.time() + 500.0, abs=5.0)
    assert lease.expires_at == longer
    again = lease.renew()
    assert again is not None and longer is not None and again >= longer
    assert eng.status("r")["holders"][0]["expires_at"] == again == lease.expires_at
    with pytest.raises(ValueError):
        lease.renew(ttl=0)
    with pytest.raises(ValueError):
        lease.renew(ttl=math.nan)


def test_renew_of_a_released_lease_is_an_invalid_token(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("r", ttl=5.0)
    lease.release()
    with pytest.raises(interlock.InvalidToken):
        lease.renew()


def test_a_lease_without_renewal_expires(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("r", ttl=0.2)
    wait_until(lambda: not lease.valid, "expiry")
    assert lease.lost_reason == "expired"
    # A remote holder learns it first, by its own clock (README): the engine follows.
    wait_until(lambda: eng.status("r")["locked"] is False, "the engine's expiry")
    with pytest.raises(interlock.LockLost):
        lease.release()
    # By its token, too, the engine says the lease was lost (as C's interlock_release).
    with pytest.raises(interlock.LockLost, match="expired"):
        eng.release("r", lease.token)
    assert repr(lease).endswith(" lost=expired>")


def test_valid_is_exact_once_the_call_that_lost_it_returns(eng: interlock.Engine, make_engine: Engines) -> None:
    for _ in range(50):
        a = eng.session("a").acquire("r", priority=5)
        b = eng.session("b").acquire("r", priority=1, preempt=True)
        make_engine.noticed(lambda: a.valid is False, "the preemption")
        assert a.lost_reason == "preempted"
        eng.force_release("r")
        make_engine.noticed(lambda: b.valid is False, "the force release")
        assert b.lost_reason == "force_released"


# ----- on_lost ------------------------------------------------------------------------


def test_on_lost_runs_on_the_dispatcher_thread(eng: interlock.Engine) -> None:
    calls: list[tuple[interlock.Lease, str, str]] = []
    lease = eng.session("a").acquire(
        "r", priority=3, on_lost=lambda l, why: calls.append((l, why, thread_name()))
    )
    eng.session("b").acquire("r", priority=0, preempt=True)
    wait_until(lambda: calls, "on_lost")
    [(got, why, thread)] = calls
    assert got is lease and why == "preempted"
    assert thread == "interlock-dispa"  # the OS keeps 15 characters of the name


def test_on_lost_is_not_called_on_a_normal_release(eng: interlock.Engine) -> None:
    calls: list[str] = []
    s = eng.session("a")
    s.acquire("r", on_lost=lambda l, why: calls.append(why)).release()
    flag = s.acquire("flag", on_lost=lambda l, why: calls.append(why))
    eng.force_release("flag")
    wait_until(lambda: calls, "on_lost")
    assert calls == ["force_released"] and not flag.valid


def test_on_lost_of_each_lease_of_a_multi_acquire(eng: interlock.Engine) -> None:
    calls: list[tuple[str, str]] = []
    eng.session("a").acquire_many(
        ["m1", "m2"], ttl=0.2, on_lost=lambda l, why: calls.append((l.resource, why))
    )
    wait_until(lambda: len(calls) == 2, "two on_lost calls")
    assert sorted(calls) == [("m1", "expired"), ("m2", "expired")]


def test_an_exception_in_on_lost_is_logged_and_later_callbacks_still_run(
    eng: interlock.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(lease: interlock.Lease, why: str) -> None:
        raise RuntimeError("callback bug")

    later: list[str] = []
    s = eng.session("a")
    s.acquire("r1", on_lost=broken)
    s.acquire("r2", on_lost=lambda l, why: later.append(why))
    with caplog.at_level("ERROR", logger="interlock"):
        eng.force_release("r1")
        eng.force_release("r2")
        wait_until(lambda: later, "the later callback")
    assert later == ["force_released"]
    [record] = [r for r in caplog.records if r.name == "interlock"]
    assert "on_lost" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert record.exc_info[2] is not None, "with the traceback"


# ----- with blocks ----------------------------------------------------------------------


def test_lock_releases_on_normal_exit(eng: interlock.Engine) -> None:
    s = eng.session("a")
    with s.lock("reactor-1", mode="shared", timeout=5.0) as lease:
        assert lease.valid and lease.mode == "shared"
        assert eng.check("reactor-1", s.id, "observe")
    assert lease.valid is False and eng.status("reactor-1")["locked"] is False


def test_lock_releases_when_an_exception_leaves_the_block(eng: interlock.Engine) -> None:
    s = eng.session("a")
    with pytest.raises(ZeroDivisionError):
        with s.lock("r") as lease:
            1 / 0
    assert lease.valid is False and eng.status("r")["locked"] is False


def test_lock_releases_on_break_and_return(eng: interlock.Engine) -> None:
    s = eng.session("a")

    def use() -> interlock.Lease:
        with s.lock("r") as lease:
            return lease

    assert use().valid is False
    for _ in range(2):
        with s.lock("r"):
            break
    assert eng.status("r")["locked"] is False


def test_leaving_a_preempted_block_raises_lock_lost(eng: interlock.Engine, make_engine: Engines) -> None:
    s = eng.session("optimizer")
    with pytest.raises(interlock.LockLost):
        with s.lock("reactor-1", priority=3) as lease:
            eng.session("maintenance").acquire("reactor-1", priority=0, preempt=True)
            make_engine.noticed(lambda: not lease.valid, "the preemption")
    assert lease.lost_reason == "preempted"


@pytest.mark.parametrize(
    "lose",
    [
        lambda eng, lease: eng.force_release(lease.resource),
        lambda eng, lease: wait_until(lambda: not lease.valid, "expiry"),
    ],
    ids=["force_released", "expired"],
)
def test_leaving_a_block_whose_lease_was_lost_raises_lock_lost(
    eng: interlock.Engine, make_engine: Engines, lose
) -> None:
    with pytest.raises(interlock.LockLost):
        with eng.session("a").lock("r", ttl=0.2) as lease:
            lose(eng, lease)
            make_engine.noticed(lambda: not lease.valid, "the loss")


def test_another_exception_on_its_way_is_left_alone(eng: interlock.Engine) -> None:
    s = eng.session("optimizer")
    with pytest.raises(KeyError):
        with s.lock("reactor-1", priority=3):
            eng.force_release("reactor-1")
            raise KeyError("mine")


def test_lock_failing_to_acquire_runs_no_block(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    ran = []
    with pytest.raises(interlock.LockTimeout):
        with eng.session("a").lock("r", timeout=0):
            ran.append(True)
    assert ran == []


def test_lock_many(eng: interlock.Engine) -> None:
    s = eng.session("a")
    with s.lock_many(["motor1", "motor2"], timeout=10.0) as leases:
        assert [l.resource for l in leases] == ["motor1", "motor2"]
        assert all(l.valid for l in leases)
    assert not any(l.valid for l in leases)


def test_lock_many_releases_the_rest_and_raises_lock_lost(eng: interlock.Engine, make_engine: Engines) -> None:
    s = eng.session("a")
    with pytest.raises(interlock.LockLost):
        with s.lock_many(["motor1", "motor2"]) as leases:
            eng.force_release("motor1")
            make_engine.noticed(lambda: not leases[0].valid, "the force release")
    assert leases[1].valid is False and leases[1].lost_reason is None
    assert eng.locks() == []


def test_a_lock_block_in_a_reference_cycle_is_collected(eng: interlock.Engine, make_engine: Engines) -> None:
    class Marker:
        pass

    marker = Marker()
    gone = weakref.ref(marker)
    s = eng.session("a")
    # The block holds its `on_lost` callback, which holds (by a default argument, not a
    # cell that `del` would empty) a list that holds the block: a cycle.
    box: list[object] = [marker]

    def on_lost(lease: interlock.Lease, why: str, box: list[object] = box) -> None:
        pass

    block = s.lock("r", on_lost=on_lost)
    box.append(block)
    with block:
        pass
    del block, marker, box, on_lost

    def collected() -> bool:
        eng.status("r")  # the engine has processed the release and dropped its callback
        gc.collect()
        return gone() is None

    # A remote engine drops the callback when the release's notice comes (and the binding
    # lets go of it at the next call, as it does of what a thread without the GIL drops).
    make_engine.noticed(collected, "the cycle collected")


def test_a_lock_block_entered_again_while_its_acquire_waits_says_already_held(
    eng: interlock.Engine,
) -> None:
    # Not a pattern to use, but the second entry gets the engine's answer, not an
    # internal error: the block is not kept borrowed while its acquire waits.
    holder = eng.session("holder").acquire("r")
    block = eng.session("a").lock("r")
    entered = threading.Event()

    def first() -> None:
        with block:
            entered.set()

    t = threading.Thread(target=first)
    t.start()
    wait_until(lambda: eng.status("r")["waiters"], "the first entry waits")
    with pytest.raises(interlock.AlreadyHeld):
        with block:
            pass
    holder.release()
    t.join(5)
    assert entered.is_set()
    assert eng.status("r")["locked"] is False
