"""Sessions: identity, metadata, closing, TTL expiry and stale takeover."""

from __future__ import annotations

import gc
import math
import threading
import uuid

import pytest
from helpers import wait_until

import interlock


def test_session_identity_and_metadata(eng: interlock.Engine) -> None:
    s = eng.session("ReactorController", metadata={"user": "ana", "pid": 7, "tags": ["a", 1.5, None]})
    assert uuid.UUID(s.id).version == 4
    assert s.name == "ReactorController"
    assert s.metadata == {"user": "ana", "pid": 7, "tags": ["a", 1.5, None]}
    assert eng.session("x").metadata == {}
    assert repr(s) == f"<Session ReactorController id={s.id}>"


def test_session_is_a_context_manager_that_closes_it(eng: interlock.Engine) -> None:
    with eng.session("a") as s:
        lease = s.acquire("r")
    assert lease.valid is False and lease.lost_reason is None
    assert eng.sessions() == []
    with pytest.raises(interlock.Error):
        s.acquire("r")


def test_close_releases_leases_and_counts_them(eng: interlock.Engine) -> None:
    s = eng.session("a")
    leases = [s.acquire("r1"), s.acquire("r2", mode="shared")]
    assert s.close() == 2
    assert all(not l.valid and l.lost_reason is None for l in leases)
    assert s.close() == 0
    assert eng.locks() == []


def test_close_cancels_the_sessions_waits(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    s = eng.session("a")
    ticket = s.enqueue("r")
    s.close()
    with pytest.raises(interlock.Cancelled):
        ticket.wait(5.0)
    assert eng.status("r")["waiters"] == []


def test_a_collected_session_object_does_not_end_its_session(eng: interlock.Engine) -> None:
    lease = eng.session("a").acquire("r")
    gc.collect()
    assert lease.valid
    assert len(eng.sessions()) == 1


def test_a_closed_session_cannot_act(eng: interlock.Engine) -> None:
    s = eng.session("a")
    s.close()
    with pytest.raises(interlock.NotFound):
        s.acquire("r")
    with pytest.raises(interlock.NotFound):
        s.heartbeat()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"name": ""}, ValueError),
        ({"name": "x" * 257}, ValueError),
        ({"name": "a\0b"}, ValueError),
        ({"name": 5}, TypeError),
        ({"name": "a", "metadata": ["not", "a", "dict"]}, TypeError),
        ({"name": "a", "metadata": "{}"}, TypeError),
        ({"name": "a", "metadata": {"x": object()}}, TypeError),
        ({"name": "a", "metadata": {"x": math.nan}}, ValueError),
        ({"name": "a", "metadata": {"blob": "x" * 70_000}}, ValueError),
        ({"name": "a", "ttl": -1.0}, ValueError),
        ({"name": "a", "ttl": 0}, ValueError),
        ({"name": "a", "on_expire": "sometimes"}, ValueError),
    ],
)
def test_bad_session_arguments_change_nothing(eng: interlock.Engine, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        eng.session(**kwargs)
    assert eng.sessions() == []


def test_session_ttl_release_ends_the_session(eng: interlock.Engine) -> None:
    s = eng.session("short", ttl=0.5, on_expire="release")
    lease = s.acquire("r")
    wait_until(lambda: not lease.valid, "expiry")
    assert lease.lost_reason == "session_expired"
    assert eng.sessions() == []
    with pytest.raises(interlock.SessionExpired):
        s.acquire("r")
    with pytest.raises(interlock.LockLost):
        lease.release()
    kinds = [e.kind for e in eng.history(session_id=s.id)]
    assert kinds[-2:] == ["expired", "session_expired"]


def test_session_expiry_fails_its_waits(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    s = eng.session("short", ttl=0.3)
    with pytest.raises(interlock.SessionExpired):
        s.acquire("r")
    assert eng.status("r")["waiters"] == []


def test_heartbeat_keeps_a_session_alive(eng: interlock.Engine) -> None:
    s = eng.session("a", ttl=100.0)
    before = eng.sessions()[0]["expires_at"]
    s.heartbeat()
    after = eng.sessions()[0]
    assert after["expires_at"] >= before
    assert after["last_seen"] >= after["created_at"]


def test_stale_session_keeps_its_lock_until_broken(eng: interlock.Engine) -> None:
    crashed = eng.session("packer", ttl=0.2, on_expire="keep")
    lease = crashed.acquire("folder")
    wait_until(lambda: eng.status("folder")["holders"][0]["stale"], "staleness")
    assert lease.valid
    other = eng.session("other")
    with pytest.raises(interlock.LockTimeout):
        other.acquire("folder", timeout=0)
    taken = other.acquire("folder", break_stale=True, timeout=0)
    assert taken.valid
    assert lease.valid is False and lease.lost_reason == "session_expired"
    assert [h["session_id"] for h in eng.status("folder")["holders"]] == [other.id]


def test_a_stale_session_that_heartbeats_is_revived(eng: interlock.Engine) -> None:
    s = eng.session("packer", ttl=0.2, on_expire="keep")
    lease = s.acquire("folder")
    wait_until(lambda: eng.sessions()[0]["stale"], "staleness")
    s.heartbeat()
    assert eng.sessions()[0]["stale"] is False
    assert lease.valid
    assert eng.history(session_id=s.id)[-1].kind == "session_revived"


def test_exactly_one_of_two_racing_takers_breaks_a_stale_lock(eng: interlock.Engine) -> None:
    eng.session("crashed", ttl=0.2, on_expire="keep").acquire("folder")
    wait_until(lambda: eng.status("folder")["holders"][0]["stale"], "staleness")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def take(name: str) -> None:
        s = eng.session(name)
        barrier.wait()
        try:
            s.acquire("folder", break_stale=True, timeout=0)
            outcomes.append("won")
        except interlock.LockTimeout:
            outcomes.append("lost")

    threads = [threading.Thread(target=take, args=(n,)) for n in ("u1", "u2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "won"]
