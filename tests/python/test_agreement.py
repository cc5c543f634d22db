"""Bad input and tokens that are not current: the Python binding gives the answers the C
API gives (``tests/c/test_api.c``), so that a program gets the same outcome in either
language. Each Python exception stands for one C status: ``LockLost`` for
``INTERLOCK_LOCK_LOST``, ``InvalidToken`` for ``INTERLOCK_INVALID_TOKEN``, ``NotFound``
for ``INTERLOCK_NOT_FOUND``, ``ValueError`` for ``INTERLOCK_INVALID_ARGUMENT``."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from helpers import wait_until

import interlock

UNKNOWN_ID = "8b0e9a52-3c7b-4c5e-9d43-5b1f3a0e6c11"  # well-formed, never handed out
# In-process only, "session_expired": a session that falls silent while its holder lives
# (README.md).
LOSSES = ["force_released", "preempted", "expired", pytest.param("session_expired", marks=pytest.mark.embedded_only)]


def lost_lease(eng: interlock.Engine, why: str) -> interlock.Lease:
    """A lease on "r" that was lost for the reason `why`."""
    if why == "session_expired":
        lease = eng.session("short", ttl=0.2).acquire("r")
    else:
        lease = eng.session("a").acquire("r", priority=5, ttl=0.2 if why == "expired" else None)
    if why == "force_released":
        eng.force_release("r")
    elif why == "preempted":
        eng.session("maintenance").acquire("r", priority=0, preempt=True)
    wait_until(lambda: not lease.valid, "the loss")
    assert lease.lost_reason == why
    if why == "expired":
        # A remote holder learns it first, by its own clock (README): the engine follows.
        wait_until(lambda: not eng.status("r")["locked"], "the engine's expiry")
    return lease


@pytest.mark.parametrize("why", LOSSES)
def test_releasing_a_lost_lease_by_token_is_lock_lost_as_in_c(eng: interlock.Engine, why: str) -> None:
    """C: `interlock_release` and `interlock_renew` of a lost lease give
    INTERLOCK_LOCK_LOST, with the reason in the message, every time they are asked."""
    lease = lost_lease(eng, why)
    for _ in range(2):
        with pytest.raises(interlock.LockLost, match=why):
            eng.release("r", lease.token)
    with pytest.raises(interlock.LockLost, match=why):
        eng.renew("r", lease.token)
    with pytest.raises(interlock.LockLost, match=why):
        eng.renew("r", lease.token, ttl=10.0)
    with pytest.raises(interlock.LockLost):
        lease.release()


def test_the_token_of_a_released_lease_is_invalid_not_lost_as_in_c(eng: interlock.Engine) -> None:
    """C: released normally (by the holder, or by closing its session), a lease is not
    lost; its token is simply no longer current: INTERLOCK_INVALID_TOKEN."""
    s = eng.session("a")
    released = s.acquire("r")
    released.release()
    closed = s.acquire("q")
    s.close()
    for lease in (released, closed):
        with pytest.raises(interlock.InvalidToken):
            eng.release(lease.resource, lease.token)
        with pytest.raises(interlock.InvalidToken):
            eng.renew(lease.resource, lease.token)


@pytest.mark.parametrize(
    "token",
    ["garbage", "", "not-a-token", "8b0e9a52-3c7b-4c5e-9d43", UNKNOWN_ID + "0", UNKNOWN_ID],
    ids=["word", "empty", "dashed", "short", "long", "unknown"],
)
@pytest.mark.parametrize("call", ["release", "renew"])
def test_a_malformed_token_is_an_invalid_token_as_in_c(eng: interlock.Engine, call: str, token: str) -> None:
    """C: `interlock_release(e, "r", "garbage")` (and `interlock_renew`) give
    INTERLOCK_INVALID_TOKEN: a token that does not parse is one that is not current, like
    a well-formed one that was never handed out. Nothing changes."""
    lease = eng.session("a").acquire("r", ttl=30.0)
    before = len(eng.history())
    with pytest.raises(interlock.InvalidToken):
        getattr(eng, call)("r", token)
    assert lease.valid and eng.check_fence("r", lease.fence)
    assert eng.status("r")["holders"][0]["expires_at"] == lease.expires_at
    assert len(eng.history()) == before


def test_a_token_for_another_resource_is_an_invalid_token_as_in_c(eng: interlock.Engine) -> None:
    """C: `interlock_release(e, "nowhere", l.token)` and a token of another resource give
    INTERLOCK_INVALID_TOKEN."""
    s = eng.session("a")
    r, q = s.acquire("r"), s.acquire("q")
    for resource, token in [("nowhere", r.token), ("r", q.token)]:
        with pytest.raises(interlock.InvalidToken):
            eng.release(resource, token)
        with pytest.raises(interlock.InvalidToken):
            eng.renew(resource, token)
    assert r.valid and q.valid


SESSION_ID_CALLS: dict[str, Callable[[interlock.Engine, str], Any]] = {
    "check": lambda eng, id: eng.check("r", id),
    "check-observe": lambda eng, id: eng.check("r", id, "observe"),
    "history": lambda eng, id: eng.history(session_id=id),
    "resume": lambda eng, id: eng.resume(id, UNKNOWN_ID),
}


@pytest.mark.parametrize("call", SESSION_ID_CALLS.values(), ids=SESSION_ID_CALLS.keys())
@pytest.mark.parametrize("id", ["no-such-session", "", "8b0e9a52", UNKNOWN_ID + "0"])
def test_a_malformed_session_id_is_a_value_error_as_in_c(
    eng: interlock.Engine, call: Callable[[interlock.Engine, str], Any], id: str
) -> None:
    """C: a session id that does not parse is INTERLOCK_INVALID_ARGUMENT in every call
    that takes one (`interlock_check`, `interlock_history`, `interlock_session_heartbeat`;
    C has no resume): in Python a ValueError, not False, [] or NotFound."""
    eng.session("a").acquire("r")
    with pytest.raises(ValueError, match="not a session id"):
        call(eng, id)


def test_a_well_formed_unknown_session_id_is_not_bad_input_as_in_c(eng: interlock.Engine) -> None:
    """C: an unknown session checks false, has no history, and is INTERLOCK_NOT_FOUND for
    a session call."""
    eng.session("a").acquire("r")
    assert eng.check("r", UNKNOWN_ID) is False
    assert eng.check("r", UNKNOWN_ID, "observe") is False
    assert eng.history(session_id=UNKNOWN_ID) == []
    with pytest.raises(interlock.NotFound):
        eng.resume(UNKNOWN_ID, UNKNOWN_ID)


@pytest.mark.parametrize(
    "call",
    [
        lambda eng: eng.release("r", "\ud800"),
        lambda eng: eng.renew("r", "\ud800"),
        lambda eng: eng.release("r\ud800", UNKNOWN_ID),
        lambda eng: eng.check("r", "\ud800"),
        lambda eng: eng.history(session_id="\ud800"),
        lambda eng: eng.resume("\ud800", UNKNOWN_ID),
    ],
    ids=["release-token", "renew-token", "release-resource", "check", "history", "resume"],
)
def test_a_string_that_is_not_unicode_text_is_a_value_error_as_in_c(
    eng: interlock.Engine, call: Callable[[interlock.Engine], Any]
) -> None:
    """C: a string argument that is not UTF-8 is INTERLOCK_INVALID_ARGUMENT. A Python str
    with a lone surrogate has no UTF-8 form: UnicodeEncodeError, a ValueError."""
    with pytest.raises(ValueError):
        call(eng)
