"""Secrets: only `lease.token` shows a lease's token, only `session.secret` a session's."""

from __future__ import annotations

import pytest
from engines import Engines
from helpers import wait_until

import interlock


def test_the_token_appears_nowhere_but_in_the_lease(eng: interlock.Engine, make_engine: Engines) -> None:
    sub = eng.subscribe()
    callback_events: list[interlock.Event] = []
    callback_sub = eng.subscribe(callback=callback_events.append)
    a = eng.session("Optimizer", metadata={"user": "ana"})
    b = eng.session("Monitor")
    lease = a.acquire("reactor-1", ttl=30.0, reason="run")
    shared = b.acquire("scope", mode="shared")
    ticket = b.enqueue("reactor-1", priority=3)
    many = a.acquire_many(["m1", "m2"])
    lost = a.acquire("victim", priority=9)
    b.acquire("victim", priority=0, preempt=True)
    make_engine.noticed(lambda: not lost.valid, "the preemption")
    with pytest.raises(interlock.InvalidToken) as invalid:
        eng.release("reactor-1", shared.token)
    with pytest.raises(interlock.LockLost) as lost_error:
        lost.release()
    lease.renew()
    tokens = {l.token for l in [lease, shared, lost, *many]}
    assert len(tokens) == 5
    wait_until(lambda: len(callback_events) == len(eng.history()), "every event at the callback")

    seen = [
        eng.status("reactor-1"),
        eng.status("scope"),
        eng.locks(),
        eng.sessions(),
        [e.to_dict() for e in eng.history()],
        [e.to_dict() for e in eng.history(resource="reactor-1")],
        [e.to_dict() for e in eng.history(session_id=a.id)],
        [repr(e) for e in eng.history()],
        [e.to_dict() for e in [next(sub) for _ in range(len(eng.history()))]],
        [e.to_dict() for e in callback_events],
        [repr(x) for x in (eng, a, b, lease, shared, lost, *many, ticket, sub, callback_sub)],
        [str(x) for x in (lease, shared, lost)],
        [str(invalid.value), repr(invalid.value), str(lost_error.value)],
    ]
    text = repr(seen)
    for token in tokens:
        assert token not in text
    assert lease.fence and str(lease.fence) in text, "the check looked at the right things"
    ticket.cancel()
    callback_sub.close()


def test_the_session_secret_appears_nowhere_but_in_the_session(eng: interlock.Engine) -> None:
    sub = eng.subscribe()
    callback_events: list[interlock.Event] = []
    callback_sub = eng.subscribe(callback=callback_events.append)
    a = eng.session("Optimizer", metadata={"user": "ana"}, ttl=30.0)
    b = eng.session("Monitor")
    assert a.secret is not None and b.secret is not None
    resumed = eng.resume(a.id, a.secret)
    lease = resumed.acquire("reactor-1", reason="run")
    b.enqueue("reactor-1").cancel()
    with pytest.raises(interlock.PermissionDenied) as denied:
        eng.resume(b.id, a.secret)
    a.heartbeat()
    b.close()
    wait_until(lambda: len(callback_events) == len(eng.history()), "every event at the callback")
    secrets = {a.secret, b.secret}

    seen = [
        eng.status("reactor-1"),
        eng.locks(),
        eng.sessions(),
        [e.to_dict() for e in eng.history()],
        [e.to_dict() for e in eng.history(session_id=a.id)],
        [e.to_dict() for e in eng.history(session_id=b.id)],
        [repr(e) for e in eng.history()],
        [e.to_dict() for e in [next(sub) for _ in range(len(eng.history()))]],
        [e.to_dict() for e in callback_events],
        [repr(x) for x in (eng, a, b, resumed, lease, sub, callback_sub)],
        [str(denied.value), repr(denied.value)],
    ]
    text = repr(seen)
    for secret in secrets:
        assert secret not in text
    assert a.id in text and b.id in text, "the check looked at the right things"
    callback_sub.close()
