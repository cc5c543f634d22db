"""Scenario 2: `kill -9` of the process that holds a lock.

With sessions that release on expiry, another process gets the lock within TTL + 1 s;
with on_expire="keep" the lease stays, turns stale after the TTL, and a second process
takes it over with break_stale=True (of two racing takers exactly one wins)."""

from __future__ import annotations

import random
import time

import pytest

from harness import Lab, history, holder_ids, wait_queued, wait_until

TTL = 2.0

PAIRS = [("python", "c"), ("c", "python"), ("octave", "python")]


@pytest.mark.parametrize("holder_lang,waiter_lang", PAIRS, ids=[f"{h}-then-{w}" for h, w in PAIRS])
def test_kill9_holder_next_waiter_gets_it(lab: Lab, holder_lang: str, waiter_lang: str) -> None:
    server = lab.server("--session-ttl", str(TTL))
    holder, waiter = lab.workers_at_once([(holder_lang, "holder"), (waiter_lang, "waiter")])
    holder.connect(server.url, TTL)
    waiter.connect(server.url, TTL)
    hs = holder.open()
    ws = waiter.open()
    holder.acquire("psu", timeout=5)
    held = holder.wait("granted", res="psu")
    waiter.acquire("psu", timeout=30, hold=0)
    wait_queued(server, "psu", ws)
    # A random point in the holder's heartbeat cycle (one every TTL/3).
    time.sleep(random.uniform(0, TTL / 3))
    killed = holder.kill9()
    grant = waiter.wait("granted", timeout=TTL + 5, res="psu")
    delay = grant["t"] - killed
    h = [e for e in history(server) if e["at"] >= killed]
    expired = [e for e in h if e["kind"] == "session_expired" and e["session_id"] == hs]
    lab.note(f"kill -9 {holder_lang} holder: {waiter_lang} waiter granted {delay:.3f}s later "
             f"(TTL {TTL}s); server expired the session {expired[0]['at'] - killed:.3f}s after "
             f"the kill" if expired else "no session_expired event")
    assert delay <= TTL + 1.0, delay
    assert grant["fence"] > held["fence"]
    assert expired, h
    # The session outlived its connection (the kernel closed it at the kill) until its
    # TTL, counted from the last heartbeat, which was at most TTL/3 before the kill.
    assert expired[0]["at"] - killed >= TTL - TTL / 3 - 0.1
    acquired = [e for e in h if e["kind"] == "acquired" and e["resource"] == "psu"]
    assert [(e["session_id"], e["fence"]) for e in acquired] == [(ws, grant["fence"])]
    assert acquired[0]["seq"] > expired[0]["seq"]


@pytest.mark.parametrize("holder_lang", ["python", "c"])
def test_kill9_stale_lease_taken_over(lab: Lab, holder_lang: str) -> None:
    server = lab.server("--session-ttl", str(TTL))
    holder, tpy, tc = lab.workers_at_once(
        [(holder_lang, "holder"), ("python", "taker_py"), ("c", "taker_c")])
    for w in (holder, tpy, tc):
        w.connect(server.url, TTL if w is holder else 15)
    hs = holder.open(on_expire="keep")
    spy, sc = tpy.open(), tc.open()
    holder.acquire("psu", timeout=5)
    held = holder.wait("granted", res="psu")
    time.sleep(random.uniform(0, TTL / 3))
    killed = holder.kill9()

    # Not stale yet: break_stale finds a live holder, and the lock stays.
    tpy.acquire("psu", timeout=0, break_stale=True)
    early = tpy.wait("acquire_failed", res="psu")
    assert early["error"] == "LockTimeout", early
    assert early["t"] - killed < TTL - TTL / 3 - 0.1  # it really was early

    def stale():
        hs_ = server.admin.status("psu")["holders"]
        return hs_ and hs_[0]["stale"] and time.time()
    stale_at = wait_until(stale, timeout=TTL + 3, interval=0.02, what="the lease to turn stale")
    st = server.admin.status("psu")
    assert [h["session_id"] for h in st["holders"]] == [hs] and st["holders"][0]["fence"] == held["fence"]
    assert stale_at - killed <= TTL + 1.0
    # The stale lease stays held: a plain request still finds it taken.
    time.sleep(0.5)
    tc.acquire("psu", timeout=0)
    plain = tc.wait("acquire_failed", res="psu")
    assert plain["error"] == "INTERLOCK_TIMEOUT", plain
    assert holder_ids(server, "psu") == [hs]

    # Two processes race to take it over: exactly one wins.
    tpy.acquire("psu", timeout=0, break_stale=True)
    tc.acquire("psu", timeout=0, break_stale=True)
    outcomes = {}
    for w in (tpy, tc):
        # Each has one failed acquire already (above): its outcome is the next record.
        def outcome(w=w):
            return w.find("granted", res="psu") or w.find("acquire_failed", res="psu")[1:]
        outcomes[w.name] = wait_until(outcome, timeout=10, what=f"{w.name}'s takeover")[-1]
    winners = [n for n, r in outcomes.items() if r["ev"] == "granted"]
    losers = [n for n, r in outcomes.items() if r["ev"] == "acquire_failed"]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    win = outcomes[winners[0]]
    assert outcomes[losers[0]]["error"] in ("LockTimeout", "INTERLOCK_TIMEOUT")
    assert win["fence"] > held["fence"]
    assert holder_ids(server, "psu") == [spy if winners[0] == "taker_py" else sc]
    ends = [e for e in history(server, "psu") if e["fence"] == held["fence"] and e["kind"] != "acquired"]
    lab.note(f"kill -9 {holder_lang} holder (on_expire=keep): stale {stale_at - killed:.3f}s after "
             f"the kill (TTL {TTL}s); break_stale race won by {winners[0]}; the old lease ended "
             f"as {[(e['kind'], e['reason']) for e in ends]}")
