"""The engine: configuration, introspection, admin calls, closing."""

from __future__ import annotations

import math
import threading
import time

import pytest
from engines import Engines
from helpers import wait_until

import interlock

HOLDER_KEYS = {
    "session_id",
    "session_name",
    "metadata",
    "mode",
    "fence",
    "priority",
    "acquired_at",
    "expires_at",
    "remaining",
    "stale",
    "reason",
}
WAITER_KEYS = {"session_id", "session_name", "mode", "priority", "position", "queued_at"}
SESSION_KEYS = {"id", "name", "metadata", "created_at", "last_seen", "expires_at", "stale", "leases"}


def test_engine_is_a_context_manager_that_closes(make_engine: Engines) -> None:
    with make_engine() as eng:
        s = eng.session("a")
        assert repr(eng) == "<Engine>"
    assert repr(eng) == "<Engine closed>"
    with pytest.raises(interlock.EngineClosed):
        s.acquire("r")
    with pytest.raises(interlock.EngineClosed):
        eng.status("r")
    with pytest.raises(interlock.EngineClosed):
        eng.session("b")


def test_closing_twice_is_harmless(eng: interlock.Engine) -> None:
    lease = eng.session("holder").acquire("r")
    ticket = eng.session("waiter").enqueue("r")
    sub = eng.subscribe()
    eng.close()
    eng.close()
    assert repr(eng) == "<Engine closed>"
    assert lease.valid is False and lease.lost_reason is None
    with pytest.raises(interlock.EngineClosed):
        ticket.wait(5.0)
    assert list(sub) == [] and sub.closed
    with pytest.raises(interlock.EngineClosed):
        eng.status("r")


def test_close_fails_pending_waits_with_engine_closed(make_engine: Engines) -> None:
    eng = make_engine()
    eng.session("holder").acquire("r")
    waiter = eng.session("waiter")
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire("r")
        except interlock.Error as e:
            outcome.append(e)

    t = threading.Thread(target=wait)
    t.start()
    wait_until(lambda: eng.status("r")["waiters"], "the wait")
    eng.close()
    t.join()
    assert len(outcome) == 1 and isinstance(outcome[0], interlock.EngineClosed)


def test_default_lock_ttl_applies_to_leases_without_one(make_engine: Engines) -> None:
    with make_engine(lock_ttl=30.0) as eng:
        s = eng.session("a")
        lease = s.acquire("r")
        assert lease.expires_at is not None
        assert lease.expires_at == pytest.approx(lease.acquired_at + 30.0, abs=1.0)
        assert s.acquire("q", ttl=100.0).expires_at == pytest.approx(lease.acquired_at + 100.0, abs=1.0)


def test_default_session_ttl_and_on_expire(make_engine: Engines) -> None:
    with make_engine(session_ttl=0.2, on_session_expire="keep") as eng:
        # A session opened without a TTL or a rule of its own, whose client then stops.
        make_engine.abandon(eng, ["r"], "a")
        wait_until(lambda: eng.sessions()[0]["stale"], "staleness")
        assert eng.status("r")["holders"][0]["stale"] is True


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"lock_ttl": -1.0}, ValueError),
        ({"lock_ttl": math.nan}, ValueError),
        ({"lock_ttl": 0.0}, ValueError),
        ({"session_ttl": -5}, ValueError),
        ({"history_limit": -1}, ValueError),
        ({"history_limit": 1.5}, TypeError),
        ({"on_session_expire": "never"}, ValueError),
        ({"subscriber_buffer": 1}, ValueError),
        ({"lock_ttl": "soon"}, TypeError),
    ],
)
def test_bad_configuration_is_rejected(make_engine: Engines, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        make_engine(**kwargs)


def test_status_of_an_unknown_resource(eng: interlock.Engine) -> None:
    assert eng.status("nothing") == {
        "resource": "nothing",
        "locked": False,
        "mode": None,
        "holders": [],
        "waiters": [],
    }


def test_status_shows_holders_and_waiters(eng: interlock.Engine) -> None:
    a = eng.session("A", metadata={"user": "ana"})
    b = eng.session("B")
    lease = a.acquire("r", ttl=60.0, priority=7, reason="optimizing")
    ticket = b.enqueue("r", mode="observer", priority=3)
    st = eng.status("r")
    assert st["resource"] == "r" and st["locked"] is True and st["mode"] == "exclusive"
    [holder] = st["holders"]
    assert set(holder) == HOLDER_KEYS
    assert holder["session_id"] == a.id and holder["session_name"] == "A"
    assert holder["metadata"] == {"user": "ana"}
    assert holder["mode"] == "exclusive" and holder["fence"] == lease.fence
    assert holder["priority"] == 7 and holder["reason"] == "optimizing"
    assert holder["acquired_at"] == lease.acquired_at and holder["expires_at"] == lease.expires_at
    assert 0 < holder["remaining"] <= 60.0 and holder["stale"] is False
    [waiter] = st["waiters"]
    assert set(waiter) == WAITER_KEYS
    assert waiter["session_id"] == b.id and waiter["mode"] == "shared"
    assert waiter["priority"] == 3 and waiter["position"] == 1
    assert isinstance(waiter["queued_at"], float)
    ticket.cancel()


def test_locks_lists_every_held_resource(eng: interlock.Engine) -> None:
    s = eng.session("a")
    assert eng.locks() == []
    s.acquire("b-res")
    s.acquire("a-res", mode="shared")
    locks = eng.locks()
    assert [l["resource"] for l in locks] == ["a-res", "b-res"]
    assert locks[0] == eng.status("a-res")


def test_sessions_lists_open_sessions_oldest_first(eng: interlock.Engine, make_engine: Engines) -> None:
    a = eng.session("A", metadata={"pid": 42}, ttl=100.0)
    b = eng.session("B")
    a.acquire("r1")
    a.acquire("r2")
    listed = eng.sessions()
    assert [x["id"] for x in listed] == [a.id, b.id]
    assert set(listed[0]) == SESSION_KEYS
    assert listed[0]["name"] == "A" and listed[0]["metadata"] == {"pid": 42}
    assert sorted(listed[0]["leases"]) == ["r1", "r2"]
    assert listed[0]["expires_at"] > listed[0]["created_at"]
    # A session of a remote engine always has a TTL (DESIGN, Remote sessions).
    assert (listed[1]["expires_at"] is not None) is make_engine.remote
    assert listed[1]["leases"] == []
    b.close()
    assert [x["id"] for x in eng.sessions()] == [a.id]


def test_check_control_and_observe(eng: interlock.Engine) -> None:
    a, b = eng.session("a"), eng.session("b")
    a.acquire("x")
    b.acquire("y", mode="shared")
    assert eng.check("x", a.id) is True
    assert eng.check("x", a.id, "control") is True
    assert eng.check("x", a.id, "observe") is True
    assert eng.check("y", b.id, "control") is False
    assert eng.check("y", b.id, "observe") is True
    assert eng.check("x", b.id, "observe") is False
    assert eng.check("free", a.id) is False


def test_check_with_an_unknown_session_is_false(eng: interlock.Engine) -> None:
    eng.session("a").acquire("x")
    assert eng.check("x", "8b0e9a52-3c7b-4c5e-9d43-5b1f3a0e6c11") is False


def test_check_rejects_an_unknown_action(eng: interlock.Engine) -> None:
    a = eng.session("a")
    with pytest.raises(ValueError):
        eng.check("x", a.id, "drive")  # type: ignore[arg-type]


def test_check_fence(eng: interlock.Engine) -> None:
    s = eng.session("a")
    lease = s.acquire("x")
    assert eng.check_fence("x", lease.fence) is True
    assert eng.check_fence("x", lease.fence + 1) is False
    assert eng.check_fence("other", lease.fence) is False
    lease.release()
    assert eng.check_fence("x", lease.fence) is False
    with pytest.raises(ValueError):
        eng.check_fence("x", -1)
    with pytest.raises(TypeError):
        eng.check_fence("x", "7")  # type: ignore[arg-type]


def test_release_by_token(eng: interlock.Engine, make_engine: Engines) -> None:
    lease = eng.session("a").acquire("x")
    eng.release("x", lease.token)
    make_engine.noticed(lambda: lease.valid is False, "the release")
    assert lease.lost_reason is None
    assert eng.status("x")["locked"] is False


def test_release_with_a_token_that_is_not_current(eng: interlock.Engine) -> None:
    s = eng.session("a")
    lease = s.acquire("x")
    other = s.acquire("y")
    for token in [other.token, "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f", "not-a-token", ""]:
        with pytest.raises(interlock.InvalidToken):
            eng.release("x", token)
    assert lease.valid
    lease.release()
    with pytest.raises(interlock.InvalidToken):
        eng.release("x", lease.token)


def test_renew_by_token(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("x", ttl=50.0)
    first = lease.expires_at
    assert first is not None
    time.sleep(0.05)  # so that "from now" is later than the grant
    own = eng.renew("x", lease.token)  # by the lease's own TTL
    assert own is not None and own > first
    assert own == pytest.approx(time.time() + 50.0, abs=5.0)
    assert eng.status("x")["holders"][0]["expires_at"] == own
    longer = eng.renew("x", lease.token, ttl=500.0)
    assert longer == pytest.approx(time.time() + 500.0, abs=5.0)
    assert eng.status("x")["holders"][0]["expires_at"] == longer
    # A renewal's ttl becomes the lease's own, whichever way it was renewed.
    again = lease.renew()
    assert again is not None and longer is not None and again >= longer
    assert lease.valid and eng.check_fence("x", lease.fence)
    with pytest.raises(ValueError):
        eng.renew("x", lease.token, ttl=0)
    with pytest.raises(ValueError):
        eng.renew("x", lease.token, ttl=-1.0)
    with pytest.raises(ValueError):
        eng.renew("x", lease.token, ttl=math.nan)
    with pytest.raises(ValueError):
        eng.renew("", lease.token)
    eng.release("x", lease.token)
    with pytest.raises(interlock.InvalidToken):
        eng.renew("x", lease.token)


def test_renew_by_token_of_a_lease_without_a_ttl(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("x")
    assert eng.renew("x", lease.token) is None, "without a ttl it stays without one"
    assert eng.status("x")["holders"][0]["expires_at"] is None
    until = eng.renew("x", lease.token, ttl=100.0)
    assert until == pytest.approx(time.time() + 100.0, abs=5.0)
    assert eng.status("x")["holders"][0]["expires_at"] == until


def test_renew_by_token_keeps_a_short_lease_from_expiring(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("x", ttl=0.3)
    eng.renew("x", lease.token, ttl=60.0)
    # A lease that expires after it would have: if the renewal had not counted, "x"
    # would have expired first (expiries are processed in deadline order).
    marker = eng.session("b").acquire("marker", ttl=0.4)
    wait_until(lambda: not marker.valid, "the later lease to expire")
    assert marker.lost_reason == "expired"
    assert lease.valid and eng.status("x")["locked"] is True


def test_force_release_releases_every_holder(eng: interlock.Engine, make_engine: Engines) -> None:
    a, b = eng.session("a"), eng.session("b")
    la = a.acquire("x", mode="shared")
    lb = b.acquire("x", mode="shared")
    assert eng.force_release("x", reason="maintenance") == 2
    for lease in (la, lb):
        make_engine.noticed(lambda: lease.valid is False, "the force release")
        assert lease.lost_reason == "force_released"
    assert eng.force_release("x") == 0
    kinds = [(e.kind, e.reason) for e in eng.history(resource="x")]
    assert kinds[-2:] == [("force_released", "maintenance")] * 2


def test_force_release_by_fence_takes_only_that_lease(eng: interlock.Engine, make_engine: Engines) -> None:
    a, b = eng.session("a"), eng.session("b")
    old = a.acquire("x")
    old.release()
    la = a.acquire("x", mode="shared")
    lb = b.acquire("x", mode="shared")
    # A fence seen before the resource changed hands takes nothing.
    assert eng.force_release("x", reason="stale view", fence=old.fence) == 0
    assert la.valid and lb.valid
    assert eng.force_release("x", reason="only b", fence=lb.fence) == 1
    make_engine.noticed(lambda: lb.valid is False, "the force release")
    assert lb.lost_reason == "force_released" and la.valid
    assert [h["session_name"] for h in eng.status("x")["holders"]] == ["a"]
    assert eng.force_release("x", fence=lb.fence) == 0
    with pytest.raises((ValueError, OverflowError, TypeError)):
        eng.force_release("x", fence=-1)
    assert la.valid


def test_history_by_resource_session_and_limit(eng: interlock.Engine) -> None:
    a, b = eng.session("a"), eng.session("b")
    a.acquire("x").release()
    b.acquire("y").release()
    assert [e.kind for e in eng.history(resource="x")] == ["acquired", "released"]
    assert [e.kind for e in eng.history(session_id=a.id)] == ["session_opened", "acquired", "released"]
    everything = eng.history()
    assert [e.seq for e in everything] == sorted(e.seq for e in everything)
    assert len(everything) == 6
    assert eng.history(limit=2) == everything[-2:]
    assert eng.history(limit=0) == []
    assert eng.history(session_id="8b0e9a52-3c7b-4c5e-9d43-5b1f3a0e6c11") == []
    with pytest.raises(ValueError):
        eng.history(limit=-1)
    with pytest.raises(ValueError):
        eng.history(resource="")


def test_history_outlives_its_resource_and_session(eng: interlock.Engine) -> None:
    s = eng.session("gone")
    s.acquire("tmp").release()
    s.close()
    assert eng.status("tmp")["locked"] is False
    assert [e.kind for e in eng.history(resource="tmp")] == ["acquired", "released"]
    assert [e.kind for e in eng.history(session_id=s.id)][-1] == "session_closed"


def test_history_limit_caps_each_ring(make_engine: Engines) -> None:
    with make_engine(history_limit=3) as eng:
        s = eng.session("a")
        for _ in range(5):
            s.acquire("x").release()
        assert len(eng.history(resource="x")) == 3
        assert len(eng.history()) == 11


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.status(""),
        lambda e: e.status("x" * 1025),
        lambda e: e.status("a\0b"),
        lambda e: e.force_release(""),
        lambda e: e.check_fence("", 1),
        lambda e: e.check("", "no-such-session"),
        lambda e: e.release("", "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"),
        lambda e: e.subscribe(resources=[""]),
        lambda e: e.subscribe(since=-1),
    ],
)
def test_bad_resource_names_raise_value_error(eng: interlock.Engine, call) -> None:
    with pytest.raises(ValueError):
        call(eng)


def test_wrongly_typed_arguments_raise_type_error(eng: interlock.Engine) -> None:
    with pytest.raises(TypeError):
        eng.status(7)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        eng.subscribe(resources="reactor-1")
    with pytest.raises(TypeError):
        eng.subscribe(callback=42)  # type: ignore[arg-type]
