"""Events: fields, subscriptions (iterator, filter, replay, lag, end), callbacks."""

from __future__ import annotations

import threading

import pytest
from engines import Engines
from helpers import thread_name, wait_until

import interlock

EVENT_FIELDS = [
    "seq",
    "at",
    "kind",
    "resource",
    "session_id",
    "session_name",
    "mode",
    "fence",
    "priority",
    "position",
    "reason",
]


def take(sub: interlock.Subscription, n: int) -> list[interlock.Event]:
    return [next(sub) for _ in range(n)]


def test_event_fields_and_to_dict(eng: interlock.Engine) -> None:
    sub = eng.subscribe()
    s = eng.session("Optimizer")
    lease = s.acquire("reactor-1", priority=7, reason="run 42")
    opened, acquired = take(sub, 2)
    assert opened.kind == "session_opened" and opened.resource is None and opened.fence is None
    assert acquired.kind == "acquired"
    assert acquired.seq == opened.seq + 1
    assert acquired.resource == "reactor-1"
    assert acquired.session_id == s.id and acquired.session_name == "Optimizer"
    assert acquired.mode == "exclusive" and acquired.fence == lease.fence
    assert acquired.priority == 7 and acquired.reason == "run 42"
    assert acquired.position is None
    assert acquired.at == pytest.approx(lease.acquired_at)
    d = acquired.to_dict()
    assert sorted(d) == sorted(EVENT_FIELDS)
    assert [d[f] for f in EVENT_FIELDS] == [getattr(acquired, f) for f in EVENT_FIELDS]
    assert repr(acquired) == (
        f"<Event {acquired.seq} acquired reactor-1 session=Optimizer exclusive "
        f"fence={lease.fence} reason=run 42>"
    )


def test_every_kind_of_event(eng: interlock.Engine, make_engine: Engines) -> None:
    a = eng.session("a")
    # Two sessions whose clients stop: one goes stale (and is taken up again), one expires.
    b, b_secret = make_engine.abandon(eng, ["s"], "b", ttl=0.2, on_expire="keep")
    c, _ = make_engine.abandon(eng, [], "c", ttl=0.2)
    a.acquire("r").release()
    wait_until(lambda: eng.sessions()[1]["stale"], "staleness")
    eng.resume(b, b_secret)
    eng.force_release("s")
    low = a.acquire("p", priority=5)
    eng.session("hi").acquire("p", priority=0, preempt=True)
    make_engine.noticed(lambda: low.lost_reason == "preempted", "the preemption")
    short = a.acquire("t", ttl=0.1)
    ticket = eng.session("w").enqueue("p")
    ticket.cancel()
    wait_until(lambda: not short.valid, "lease expiry")
    # A remote holder learns it first, by its own clock (README): the engine follows.
    wait_until(lambda: not eng.status("t")["locked"], "the engine's expiry")
    wait_until(lambda: "session_expired" in {e.kind for e in eng.history()}, "session expiry")
    a.close()
    kinds = {e.kind for e in eng.history()}
    assert kinds == {
        "session_opened",
        "session_closed",
        "session_expired",
        "session_stale",
        "session_revived",
        "acquired",
        "released",
        "expired",
        "force_released",
        "preempted",
        "queued",
        "dequeued",
    }
    assert c not in {s["id"] for s in eng.sessions()}


def test_queued_event_has_the_position(eng: interlock.Engine) -> None:
    eng.session("holder").acquire("r")
    tickets = [eng.session(f"w{i}").enqueue("r") for i in (1, 2)]
    queued = [e for e in eng.history(resource="r") if e.kind == "queued"]
    assert [e.position for e in queued] == [1, 2]
    assert [t.position for t in tickets] == [1, 2]


def test_subscription_filters_by_resource(eng: interlock.Engine) -> None:
    sub = eng.subscribe(resources=["b"])
    s = eng.session("a")
    s.acquire("a").release()
    s.acquire("b").release()
    got = take(sub, 2)
    assert [(e.kind, e.resource) for e in got] == [("acquired", "b"), ("released", "b")]


def test_since_replays_then_goes_live(eng: interlock.Engine) -> None:
    s = eng.session("a")
    first = s.acquire("r")
    mark = eng.history()[-1].seq
    first.release()
    s.acquire("r")
    sub = eng.subscribe(since=mark)
    replayed = take(sub, 2)
    assert [e.kind for e in replayed] == ["released", "acquired"]
    assert replayed[0].seq == mark + 1
    s.close()
    assert next(sub).kind == "released"


def test_since_zero_replays_everything_still_in_the_ring(eng: interlock.Engine) -> None:
    eng.session("a").acquire("r")
    sub = eng.subscribe(since=0)
    assert [e.kind for e in take(sub, 2)] == ["session_opened", "acquired"]


def test_since_beyond_the_newest_seq_is_another_history(eng: interlock.Engine) -> None:
    """A seq the engine has not reached (one a client kept from before a restart without
    the journal) is another history's: a lagged marker without a count, then everything
    the ring holds, then live events."""
    s = eng.session("a")
    s.acquire("r")
    ring = [e.seq for e in eng.history()]
    sub = eng.subscribe(since=ring[-1] + 100)
    marker = next(sub)
    assert marker.kind == "lagged" and marker.position is None
    assert [e.seq for e in take(sub, len(ring))] == ring
    s.close()
    assert next(sub).kind == "released"


def test_since_after_events_left_the_ring_starts_with_lagged(make_engine: Engines) -> None:
    with make_engine(global_history=5) as eng:
        s = eng.session("a")
        for _ in range(5):
            s.acquire("r").release()
        sub = eng.subscribe(since=0)
        marker = next(sub)
        assert marker.kind == "lagged" and marker.position == 6
        assert [e.seq for e in take(sub, 5)] == [7, 8, 9, 10, 11]


# In-process only: the events of a call are queued when it returns (README.md).
@pytest.mark.embedded_only
def test_a_slow_subscriber_keeps_the_newest_events_after_a_lagged_marker(make_engine: Engines) -> None:
    with make_engine(subscriber_buffer=4) as eng:
        sub = eng.subscribe()
        s = eng.session("a")
        for _ in range(5):
            s.acquire("r").release()
        eng.status("r")  # a release does not wait; a call that does has its events out
        got = take(sub, 5)
        # 11 events (an open, 5 pairs): the oldest 7 made room for the newest 4.
        assert got[0].kind == "lagged" and got[0].position == 7
        assert got[0].to_dict()["seq"] == 0
        assert [e.kind for e in got[1:]] == ["acquired", "released"] * 2
        assert [e.seq for e in got[1:]] == [8, 9, 10, 11]
        s.acquire("again")
        assert next(sub).resource == "again"


def test_subscription_ends_when_the_engine_closes(make_engine: Engines) -> None:
    eng = make_engine()
    sub = eng.subscribe()
    seen: list[str] = []
    t = threading.Thread(target=lambda: seen.extend(e.kind for e in sub))
    t.start()
    eng.session("a")
    wait_until(lambda: seen, "the first event")
    eng.close()
    t.join()
    assert seen == ["session_opened"]
    assert sub.closed and repr(sub) == "<Subscription closed>"


# In-process only: the events of a call are queued when it returns (README.md).
@pytest.mark.embedded_only
def test_close_ends_the_iteration(eng: interlock.Engine) -> None:
    with eng.subscribe() as sub:
        eng.session("a")
        assert repr(sub) == "<Subscription>"
    assert sub.closed
    assert [e.kind for e in sub] == ["session_opened"], "queued events can still be read"
    assert list(sub) == []


def test_callback_subscription_runs_on_the_dispatcher_thread(eng: interlock.Engine) -> None:
    got: list[tuple[str, str]] = []
    sub = eng.subscribe(resources=["r"], callback=lambda ev: got.append((ev.kind, thread_name())))
    eng.session("a").acquire("r").release()
    wait_until(lambda: len(got) == 2, "two callbacks")
    assert got == [("acquired", "interlock-dispa"), ("released", "interlock-dispa")]
    assert repr(sub) == "<Subscription to a callback>"
    with pytest.raises(TypeError):
        iter(sub)
    with pytest.raises(TypeError):
        sub.__aiter__()


def test_closing_a_callback_subscription_stops_it(eng: interlock.Engine) -> None:
    got: list[str] = []
    sub = eng.subscribe(callback=lambda ev: got.append(ev.kind))
    eng.session("a")
    wait_until(lambda: got, "the callback")
    sub.close()
    eng.session("b")
    marker: list[str] = []
    other = eng.subscribe(since=0, callback=lambda ev: marker.append(ev.kind))
    wait_until(lambda: len(marker) == 2, "replay to another subscription")
    assert got == ["session_opened"]
    other.close()


def test_an_exception_in_a_subscription_callback_is_logged_and_later_events_still_come(
    eng: interlock.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[str] = []

    def flaky(ev: interlock.Event) -> None:
        if ev.kind == "acquired":
            raise ValueError("subscriber bug")
        got.append(ev.kind)

    with caplog.at_level("ERROR", logger="interlock"):
        sub = eng.subscribe(callback=flaky)
        eng.session("a").acquire("r").release()
        wait_until(lambda: "released" in got, "the later event")
    assert got == ["session_opened", "released"]
    [record] = [r for r in caplog.records if r.name == "interlock"]
    assert "subscription callback" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert record.exc_info[2] is not None, "with the traceback"
    sub.close()


def test_events_compare_by_value(eng: interlock.Engine) -> None:
    sub = eng.subscribe()
    eng.session("a")
    assert next(sub) == eng.history()[-1]
