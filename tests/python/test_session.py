"""Sessions: identity, metadata, closing, TTL expiry and stale takeover."""

from __future__ import annotations

import gc
import math
import threading
import uuid

import pytest
from engines import Engines
from helpers import wait_until

import interlock


def test_session_identity_and_metadata(eng: interlock.Engine) -> None:
    s = eng.session("ReactorController", metadata={"user": "ana", "pid": 7, "tags": ["a", 1.5, None]})
    assert uuid.UUID(s.id).version == 4
    assert s.name == "ReactorController"
    assert s.metadata == {"user": "ana", "pid": 7, "tags": ["a", 1.5, None]}
    assert eng.session("x").metadata == {}
    assert repr(s) == f"<Session ReactorController id={s.id}>"


def test_metadata_nested_at_most_64_deep_reads_back_in_every_listing(eng: interlock.Engine) -> None:
    def nested(levels: int) -> dict[str, object]:
        value: object = "bottom"
        for _ in range(levels - 1):
            value = [value]
        return {"deep": value}

    with pytest.raises(ValueError, match="nested more than 64 levels"):
        eng.session("too-deep", metadata=nested(65))
    with pytest.raises(ValueError, match="nested more than 64 levels"):
        eng.session("far-too-deep", metadata=nested(120))
    s = eng.session("deep", metadata=nested(64))
    s.acquire("r")
    # Over a link every answer that carries it is still JSON a client reads.
    assert eng.sessions()[0]["metadata"] == nested(64)
    assert eng.locks()[0]["holders"][0]["metadata"] == nested(64)
    assert eng.status("r")["holders"][0]["metadata"] == nested(64)


def test_session_is_a_context_manager_that_closes_it(eng: interlock.Engine, make_engine: Engines) -> None:
    with eng.session("a") as s:
        lease = s.acquire("r")
    make_engine.noticed(lambda: lease.valid is False, "the release")
    assert lease.lost_reason is None
    assert eng.sessions() == []
    with pytest.raises(interlock.Error):
        s.acquire("r")


def test_close_releases_leases_and_counts_them(eng: interlock.Engine, make_engine: Engines) -> None:
    s = eng.session("a")
    leases = [s.acquire("r1"), s.acquire("r2", mode="shared")]
    assert s.close() == 2
    make_engine.noticed(lambda: not any(l.valid for l in leases), "the releases")
    assert all(l.lost_reason is None for l in leases)
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


# In-process only: a session that falls silent while its holder lives (README.md).
@pytest.mark.embedded_only
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


# In-process only: a session that falls silent while its holder lives (README.md).
@pytest.mark.embedded_only
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


# In-process only: a session that falls silent while its holder lives (README.md).
@pytest.mark.embedded_only
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


# In-process only: a session that falls silent while its holder lives (README.md).
@pytest.mark.embedded_only
def test_a_stale_session_that_heartbeats_is_revived(eng: interlock.Engine) -> None:
    s = eng.session("packer", ttl=0.2, on_expire="keep")
    lease = s.acquire("folder")
    wait_until(lambda: eng.sessions()[0]["stale"], "staleness")
    s.heartbeat()
    assert eng.sessions()[0]["stale"] is False
    assert lease.valid
    assert eng.history(session_id=s.id)[-1].kind == "session_revived"


def test_exactly_one_of_two_racing_takers_breaks_a_stale_lock(eng: interlock.Engine, make_engine: Engines) -> None:
    make_engine.abandon(eng, ["folder"], "crashed", ttl=0.2, on_expire="keep")
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


def test_a_session_has_a_secret_of_its_own(eng: interlock.Engine) -> None:
    a, b = eng.session("a"), eng.session("b")
    assert isinstance(a.secret, str) and isinstance(b.secret, str)
    assert uuid.UUID(a.secret) and a.secret != b.secret
    assert a.secret != a.id and a.secret == a.secret, "the same secret each time"


def test_resume_with_the_secret_takes_up_the_session(eng: interlock.Engine, make_engine: Engines) -> None:
    s = eng.session("ReactorController", metadata={"user": "ana"})
    held = s.acquire("r")
    assert s.secret is not None
    again = eng.resume(s.id, s.secret)
    assert isinstance(again, interlock.Session)
    assert (again.id, again.name, again.metadata, again.secret) == (s.id, s.name, s.metadata, s.secret)
    lease = again.acquire("q")
    assert lease.session_id == s.id and lease.valid
    assert eng.check("q", s.id) and eng.check("r", s.id)
    assert [x["id"] for x in eng.sessions()] == [s.id], "the same session, not a new one"
    with pytest.raises(interlock.AlreadyHeld):
        again.acquire("r", timeout=0)
    assert again.close() == 2
    make_engine.noticed(lambda: not held.valid and not lease.valid, "the releases")
    with pytest.raises(interlock.NotFound):
        eng.resume(s.id, s.secret)


def test_resume_counts_as_activity(eng: interlock.Engine, make_engine: Engines) -> None:
    id, secret = make_engine.abandon(eng, [], "packer", ttl=0.2, on_expire="keep")
    wait_until(lambda: eng.sessions()[0]["stale"], "staleness")
    eng.resume(id, secret)
    assert eng.sessions()[0]["stale"] is False
    assert eng.history(session_id=id)[-1].kind == "session_revived"


@pytest.mark.parametrize(
    "secret",
    ["8b0e9a52-3c7b-4c5e-9d43-5b1f3a0e6c11", "not-a-secret", ""],
    ids=["wrong", "malformed", "empty"],
)
def test_resume_with_a_wrong_secret_is_permission_denied(eng: interlock.Engine, secret: str) -> None:
    s = eng.session("a")
    lease = s.acquire("r")
    with pytest.raises(interlock.PermissionDenied) as denied:
        eng.resume(s.id, secret)
    assert isinstance(denied.value, PermissionError)
    other = eng.session("b")
    assert other.secret is not None
    with pytest.raises(interlock.PermissionDenied):
        eng.resume(s.id, other.secret)  # another session's secret
    assert lease.valid and [x["id"] for x in eng.sessions()] == [s.id, other.id]


def test_resume_of_an_unknown_or_closed_session_is_not_found(eng: interlock.Engine) -> None:
    with pytest.raises(interlock.NotFound) as unknown:
        eng.resume(str(uuid.uuid4()), str(uuid.uuid4()))
    assert isinstance(unknown.value, KeyError)
    s = eng.session("a")
    assert s.secret is not None
    s.close()
    with pytest.raises(interlock.NotFound):
        eng.resume(s.id, s.secret)


def test_every_python_session_value_has_its_secret(eng: interlock.Engine) -> None:
    # The engine hands out Session values only by opening (`session`) or resuming
    # (`resume`) one, and either way the value knows the secret: there is no way to get a
    # Session by its id alone, so `secret` is never None in this package.
    s = eng.session("a")
    assert s.secret is not None
    assert eng.resume(s.id, s.secret).secret == s.secret
    with eng.session("b") as b:
        assert b.secret is not None
