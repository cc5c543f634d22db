"""Scenario 1: two Python processes, a C program and an Octave MEX session share one
`interlock serve`: FIFO order, observers (shared holders) and preemption across them."""

from __future__ import annotations

import pytest

from harness import Lab, Worker, history, holder_ids, wait_queued


@pytest.fixture
def four(lab: Lab):
    """The server and the four processes, connected, each with a session."""
    server = lab.server("--history-limit", "10000")
    workers = lab.workers_at_once(
        [("python", "pyA"), ("python", "pyB"), ("c", "c"), ("octave", "oct")])
    for w in workers:
        w.connect(server.url, 15)
    sessions = {w.name: w.open() for w in workers}
    return server, {w.name: w for w in workers}, sessions


def fifo_round(lab: Lab, server, w: dict[str, Worker], sessions, res: str,
               holder: str, order: list[str]) -> None:
    before = max([e["seq"] for e in history(server, res)], default=0)
    w[holder].acquire(res)
    first = w[holder].wait("granted", res=res)
    # Each joins the queue only once the one before it is in it: a known order.
    for name in order:
        w[name].acquire(res, timeout=60, hold=0.15)
        wait_queued(server, res, sessions[name])
    st = server.admin.status(res)
    assert [x["session_id"] for x in st["waiters"]] == [sessions[n] for n in order]
    assert [x["position"] for x in st["waiters"]] == [1, 2, 3]
    w[holder].send("release", res)

    grants = [first] + [w[n].wait("granted", timeout=20, res=res) for n in order]
    releasing = [w[n].wait("releasing", timeout=20, res=res) for n in [holder] + order]
    for n in order:
        w[n].wait("released", timeout=20, res=res)
    names = [holder] + order
    # Each process's own log: grant times and fences in the queue's order, and each
    # grant after the previous holder began to release.
    times = [g["t"] for g in grants]
    fences = [g["fence"] for g in grants]
    assert times == sorted(times), list(zip(names, times))
    assert fences == sorted(fences) and len(set(fences)) == 4, list(zip(names, fences))
    for i in range(1, 4):
        assert grants[i]["t"] > releasing[i - 1]["t"], (names[i], grants[i], releasing[i - 1])
        assert grants[i]["session"] == sessions[names[i]]
    # The server's history tells the same story.
    h = [e for e in history(server, res) if e["seq"] > before]
    queued = [e["session_id"] for e in h if e["kind"] == "queued"]
    acquired = [(e["session_id"], e["fence"]) for e in h if e["kind"] == "acquired"]
    assert queued == [sessions[n] for n in order]
    assert acquired == [(sessions[n], f) for n, f in zip(names, fences)]
    lab.note(f"FIFO {res}: " + ", ".join(
        f"{n}({w[n].lang}) fence {f} +{t - times[0]:.3f}s" for n, f, t in zip(names, fences, times)))


def test_fifo_order_across_languages(lab: Lab, four) -> None:
    server, w, sessions = four
    fifo_round(lab, server, w, sessions, "psu", "pyA", ["oct", "c", "pyB"])
    fifo_round(lab, server, w, sessions, "psu", "c", ["pyB", "oct", "pyA"])


def test_observers_then_exclusive(lab: Lab, four) -> None:
    server, w, sessions = four
    res = "scope"
    shared = ["pyA", "c", "oct"]
    for n in shared:
        w[n].acquire(res, mode="shared", timeout=10)
        w[n].wait("granted", res=res)
    st = server.admin.status(res)
    assert st["mode"] == "shared"
    assert sorted(holder_ids(server, res)) == sorted(sessions[n] for n in shared)

    # An exclusive request queues behind the observers...
    w["pyB"].acquire(res, timeout=60, hold=0.3)
    wait_queued(server, res, sessions["pyB"])
    # ... and they leave one by one; it is granted only when the last one has left.
    w["oct"].send("release", res)
    w["oct"].wait("released", res=res)
    # A shared request that comes now waits behind the exclusive one: no jumping.
    w["c"].send("release", res)
    w["c"].wait("released", res=res)
    w["c"].acquire(res, mode="shared", timeout=60, hold=0)
    wait_queued(server, res, sessions["c"])
    # While the last observer holds, the server has both waiting (a grant happens on the
    # server first: neither process can have one while it says so).
    st = server.admin.status(res)
    assert [x["session_id"] for x in st["waiters"]] == [sessions["pyB"], sessions["c"]]
    assert holder_ids(server, res) == [sessions["pyA"]]
    assert not w["pyB"].find("granted", res=res)
    assert len(w["c"].find("granted", res=res)) == 1  # its first, shared, lease only
    w["pyA"].send("release", res)
    last = w["pyA"].wait("releasing", res=res)
    grant = w["pyB"].wait("granted", timeout=10, res=res)
    assert grant["t"] > last["t"]
    b_releasing = w["pyB"].wait("releasing", timeout=10, res=res)
    c_again = w["c"].wait("granted", timeout=10, res=res)
    assert c_again["fence"] > grant["fence"]
    assert c_again["t"] > b_releasing["t"]

    h = history(server, res)
    kinds = [(e["kind"], e["session_id"]) for e in h if e["kind"] in ("acquired", "released")]
    # The exclusive grant comes right after the third release of an observer.
    i = kinds.index(("acquired", sessions["pyB"]))
    assert [k for k, _ in kinds[:i]].count("released") == 3
    assert kinds[i - 1] == ("released", sessions["pyA"])
    lab.note(f"observers: 3 shared (python, C, Octave); exclusive granted "
             f"{grant['t'] - last['t']:.4f}s after the last observer began to release; "
             f"a later shared request waited behind it (granted "
             f"{c_again['t'] - b_releasing['t']:.4f}s after the exclusive holder let go)")


PREEMPTIONS = [("c", "pyA"), ("pyA", "c"), ("oct", "pyB")]


@pytest.mark.parametrize("victim,taker", PREEMPTIONS, ids=[f"{v}-by-{t}" for v, t in PREEMPTIONS])
def test_preemption_across_languages(lab: Lab, four, victim: str, taker: str) -> None:
    server, w, sessions = four
    res = "psu"
    w[victim].acquire(res, priority=100, timeout=10)
    held = w[victim].wait("granted", res=res)
    # Equal priority never evicts: the same request at 100 only queues, then times out.
    if w[taker].lang != "octave":
        w[taker].acquire(res, priority=100, preempt=True, timeout=0.3)
        failed = w[taker].wait("acquire_failed", res=res)
        assert failed["error"] in ("LockTimeout", "INTERLOCK_TIMEOUT")
    w[taker].acquire(res, priority=0, preempt=True, timeout=5)
    grant = w[taker].wait("granted", res=res)
    assert grant["fence"] > held["fence"]
    assert holder_ids(server, res) == [sessions[taker]]
    if w[victim].lang != "octave":  # the MEX gateway has no on_lost
        lost = w[victim].wait("lost", timeout=5, res=res)
        assert lost["reason"] == "preempted" and lost["fence"] == held["fence"]
        margin = f"on_lost in {victim} {grant['t'] - lost['t']:+.4f}s before {taker}'s grant returned"
    else:
        margin = "no on_lost in Octave (the gateway has none)"
    w[victim].send("release", res)
    failed = w[victim].wait("release_failed", timeout=5, res=res)
    assert failed["error"] in ("LockLost", "INTERLOCK_LOCK_LOST", "interlock:lockLost"), failed
    if w[victim].lang == "python":
        w[victim].send("valid", res)
        state = w[victim].wait("lease_state", res=res)
        assert state["valid"] is False and state["lost_reason"] == "preempted"
    ev = [e for e in history(server, res) if e["kind"] == "preempted"]
    assert [(e["session_id"], e["fence"]) for e in ev] == [(sessions[victim], held["fence"])]
    lab.note(f"preempt {victim}({w[victim].lang}) by {taker}({w[taker].lang}): "
             f"release -> {failed['error']}; {margin}")
    w[taker].send("release", res)
    w[taker].wait("released", res=res)
