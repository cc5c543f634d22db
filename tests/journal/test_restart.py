"""Restart scenarios: remote clients across a kill -9 and restart of their server (the
failover story), an embedded engine restarted on its file, subscriptions that resume
with `since` across a restart, and fences and seqs that keep increasing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import Server, free_port, http, sqlite3, wait_until

import interlock

Serve = Callable[..., Server]


def reconnected(eng: interlock.Engine) -> Callable[[], bool]:
    """True once a call on the remote engine works again."""

    def probe() -> bool:
        try:
            eng.status("probe")
            return True
        except interlock.ConnectionLost:
            return False

    return probe


# --- (a) the failover story: remote clients keep their leases inside the grace --------


def test_remote_clients_keep_their_leases_across_a_restart_inside_the_grace(serve: Serve) -> None:
    srv = serve("--grace", "10")
    eng = interlock.connect(srv.url, session_ttl=6.0)
    lost: list[str] = []
    s = eng.session("controller", metadata={"user": "ana"})
    psu = s.acquire("psu", on_lost=lambda lease, why: lost.append(why))
    scope = s.acquire("scope", ttl=30.0)
    shared = s.acquire("camera", mode="shared")
    before = scope.expires_at
    assert before is not None

    srv.kill9()
    with pytest.raises(interlock.ConnectionLost):
        eng.status("psu")
    time.sleep(1.0)  # down for a while, well inside the session's TTL
    srv.start()  # same file, same port: the client finds it by itself
    wait_until(reconnected(eng), 15, "the client to reconnect")

    # The client's code is unchanged: the same Session and Lease objects go on working.
    for lease in (psu, scope, shared):
        assert lease.valid and lease.lost_reason is None
    st = eng.status("psu")
    assert [(h["session_id"], h["fence"], h["session_name"]) for h in st["holders"]] == [
        (s.id, psu.fence, "controller")]
    assert st["holders"][0]["metadata"] == {"user": "ana"}
    assert eng.check_fence("scope", scope.fence) and eng.check("psu", s.id)
    renewed = scope.renew()
    assert renewed is not None and renewed > before
    s.heartbeat()
    psu.release()  # a release after the restart works
    assert not eng.status("psu")["locked"] and not psu.valid and psu.lost_reason is None
    again = s.acquire("psu")
    assert again.fence > max(psu.fence, scope.fence, shared.fence)

    # A `with` block that spans a restart exits cleanly (its release works).
    with s.lock("oven") as oven:
        srv.kill9()
        time.sleep(0.3)
        srv.start()
        wait_until(reconnected(eng), 15, "the client to reconnect")
        assert oven.valid
    assert not eng.status("oven")["locked"]
    # The token still works for anyone who kept it (HTTP, as a script would).
    code, body = http(srv.url, "POST", "/v1/release", {"resource": "scope", "token": scope.token})
    assert code == 200, body
    assert not scope.valid or not eng.status("scope")["locked"]
    assert lost == []
    eng.close()


def test_leases_a_client_gave_up_are_released_on_the_server_when_it_resumes(serve: Serve) -> None:
    """Down longer than the session's TTL but back inside the grace: the client gave its
    lease up (`connection_lost`) while the restored server kept it for the session. When
    the session resumes, the client releases it there too, so that the two agree."""
    srv = serve("--grace", "30")
    eng = interlock.connect(srv.url, session_ttl=2.0)
    s = eng.session("lapsing")
    lease = s.acquire("psu")
    srv.kill9()
    wait_until(lambda: not lease.valid, 10, "the lease to turn lost")
    assert lease.lost_reason == "connection_lost"
    srv.start()
    wait_until(reconnected(eng), 15, "the client to reconnect")
    wait_until(lambda: not eng.status("psu")["locked"], 10, "the given-up lease to be released")
    ends = [e for e in srv.get(f"/v1/history?session_id={s.id}")
            if e["kind"] in ("released", "expired", "session_expired")]
    assert [(e["kind"], e["fence"]) for e in ends] == [("released", lease.fence)]
    s.heartbeat()  # the session itself goes on
    assert s.acquire("psu", timeout=1.0).fence > lease.fence
    eng.close()


def test_a_remote_client_back_after_the_grace_loses_its_leases_with_session_expired(serve: Serve) -> None:
    """Down longer than the session's TTL: the client gives its leases up first
    (`connection_lost`, Chubby's rule: the holder learns before anyone else can get the
    lock) and runs `on_lost`. The server comes back where the client cannot reach it
    (another port) for longer than the grace: the session expires there by its own
    rule (`session_expired`, its lease `expired` with that reason). Back on its port,
    the client finds its session gone, and the lock is free for others."""
    srv = serve("--grace", "1")
    home = srv.port
    eng = interlock.connect(srv.url, session_ttl=2.0)
    lost: list[tuple[str, str]] = []
    s = eng.session("late")
    lease = s.acquire("psu", on_lost=lambda l, why: lost.append((l.resource, why)))
    srv.kill9()
    wait_until(lambda: not lease.valid, 10, "the lease to turn lost")
    assert lease.lost_reason == "connection_lost"
    wait_until(lambda: lost, 5, "on_lost")
    assert lost == [("psu", "connection_lost")]

    before_start = time.time()
    srv.start(port=free_port())  # out of the client's reach
    assert srv.get("/v1/locks/psu")["holders"][0]["fence"] == lease.fence  # held for the grace

    def ended() -> list[dict[str, Any]]:
        return [e for e in srv.get(f"/v1/history?session_id={s.id}")
                if e["kind"] in ("expired", "session_expired") and e["at"] >= before_start]

    wait_until(lambda: len(ended()) == 2, 15, "the session to expire on the server")
    expired, session_expired = ended()
    assert (expired["kind"], expired["resource"], expired["fence"], expired["reason"]) == (
        "expired", "psu", lease.fence, "session_expired")
    assert session_expired["kind"] == "session_expired"
    # Not before the grace: the session's TTL (2 s), which is more than --grace 1.
    assert expired["at"] >= before_start + 2.0 - 0.01, (expired["at"] - before_start)

    srv.stop()
    srv.start(port=home)
    wait_until(reconnected(eng), 15, "the client to reconnect")
    # Its session expired two server lives ago: still `SessionExpired`, not `NotFound`.
    with pytest.raises(interlock.SessionExpired):
        s.acquire("psu", timeout=0)
    with pytest.raises(interlock.LockLost):
        lease.release()
    assert not eng.status("psu")["locked"]
    eng2 = interlock.connect(srv.url)
    other = eng2.session("other").acquire("psu", timeout=1.0)
    assert other.fence > lease.fence
    eng2.close()
    eng.close()


def test_a_session_nobody_resumes_expires_after_the_grace_with_session_expired(serve: Serve) -> None:
    """Sessions that nobody heartbeats after a restart (their clients are gone) keep their
    locks for the grace, then expire by their own rule: leases `expired` with reason
    `session_expired`, and `session_expired`; one that heartbeats within the grace stays."""
    srv = serve("--grace", "2")

    def open_http(name: str) -> tuple[str, str, int]:
        code, s = srv.http("POST", "/v1/sessions", {"name": name, "ttl": 1.0})
        assert code == 201, s
        code, a = srv.http("POST", f"/v1/sessions/{s['id']}/acquire", {"resources": [name], "timeout": 0},
                           headers={"Interlock-Session-Secret": s["secret"]})
        assert code == 200, a
        return s["id"], s["secret"], a["leases"][0]["fence"]

    gone_id, _, gone_fence = open_http("gone")
    kept_id, kept_secret, kept_fence = open_http("kept")
    # A remote client (heartbeating by itself) sees the expiry through its subscription.
    watcher = interlock.connect(srv.url)
    mark = watcher.history()[-1].seq
    srv.kill9()
    time.sleep(1.5)  # down longer than the TTL: only the grace keeps them
    before_start = time.time()
    srv.start()
    assert srv.get("/v1/locks/gone")["holders"][0]["fence"] == gone_fence
    wait_until(reconnected(watcher), 15, "the watcher to reconnect")
    sub = watcher.subscribe(resources=["gone"], since=mark)

    def beat_until_gone_expired() -> bool:
        code, _ = srv.http("POST", f"/v1/sessions/{kept_id}/heartbeat",
                           headers={"Interlock-Session-Secret": kept_secret})
        assert code == 200
        return not srv.get("/v1/locks/gone")["locked"]

    wait_until(beat_until_gone_expired, 15, "the unresumed session to expire", step=0.3)
    kept = srv.get("/v1/locks/kept")["holders"]
    assert [(h["session_id"], h["fence"]) for h in kept] == [(kept_id, kept_fence)]
    ev = next(iter(sub))
    assert (ev.kind, ev.fence, ev.reason, ev.session_id) == ("expired", gone_fence, "session_expired", gone_id)
    assert ev.at >= before_start + 2.0 - 0.01, "expired before the grace ran out"
    hist = srv.get(f"/v1/history?session_id={gone_id}")
    assert [e["kind"] for e in hist][-2:] == ["expired", "session_expired"]
    assert srv.http("GET", f"/v1/sessions/{gone_id}")[0] in (404, 410)
    sub.close()
    watcher.close()


# --- (b) an embedded engine restarted on the same file -----------------------------------

EMBEDDED = textwrap.dedent("""
    import json, sys, time, interlock
    eng = interlock.Engine(journal=sys.argv[1])
    a = eng.session("alpha", ttl=2.0)
    b = eng.session("beta", ttl=2.0)
    forever = eng.session("forever")  # no TTL: never expires
    la = a.acquire("psu")
    lb = b.acquire("scope", ttl=60.0)
    lf = forever.acquire("door")
    x = a.acquire("gone")
    x.release()
    print(json.dumps({
        "a": [a.id, a.secret], "b": [b.id, b.secret], "f": forever.id,
        "psu": [la.fence, la.token], "scope": [lb.fence, lb.token, lb.expires_at],
        "door": lf.fence, "gone": x.fence,
    }), flush=True)
    time.sleep(600)  # killed here with SIGKILL
""")


def test_an_embedded_engine_restarted_on_its_file_finds_its_locks(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    p = subprocess.Popen([sys.executable, "-c", EMBEDDED, str(db)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    kept = json.loads(p.stdout.readline())
    p.kill()  # kill -9 of the process that embedded the engine
    p.wait()

    before_start = time.time()
    eng = interlock.Engine(journal=str(db), grace=2.0)
    st = eng.status("psu")
    assert [(h["session_id"], h["session_name"], h["fence"]) for h in st["holders"]] == [
        (kept["a"][0], "alpha", kept["psu"][0])]
    assert eng.status("scope")["holders"][0]["fence"] == kept["scope"][0]
    assert abs(eng.status("scope")["holders"][0]["expires_at"] - kept["scope"][2]) < 1e-3
    assert not eng.status("gone")["locked"]
    assert {s["name"] for s in eng.sessions()} == {"alpha", "beta", "forever"}
    # The holder that kept its token renews and releases.
    eng.renew("scope", kept["scope"][1], 120.0)
    eng.release("psu", kept["psu"][1])
    assert not eng.status("psu")["locked"]
    with pytest.raises(interlock.InvalidToken):
        eng.release("psu", kept["psu"][1])
    # Alpha is resumed by its secret; beta is not, and expires after the grace.
    a = eng.resume(kept["a"][0], kept["a"][1])
    with pytest.raises(interlock.PermissionDenied):
        eng.resume(kept["b"][0], kept["a"][1])

    def beat_until_beta_expired() -> bool:
        a.heartbeat()
        return "beta" not in {s["name"] for s in eng.sessions()}

    wait_until(beat_until_beta_expired, 15, "beta to expire", step=0.2)
    assert {s["name"] for s in eng.sessions()} == {"alpha", "forever"}
    assert not eng.status("scope")["locked"]
    ended = eng.history(resource="scope")[-1]
    assert (ended.kind, ended.reason) == ("expired", "session_expired")
    assert ended.at >= before_start + 2.0 - 0.01, "expired before the grace ran out"
    assert eng.status("door")["holders"][0]["fence"] == kept["door"]
    # New fences go on from where the old engine stopped.
    nxt = a.acquire("psu")
    assert nxt.fence > max(kept["psu"][0], kept["scope"][0], kept["door"], kept["gone"])
    eng.close()


def test_the_default_grace_is_the_ttl_and_at_least_15_s(tmp_path: Path) -> None:
    db = str(tmp_path / "locks.db")
    eng = interlock.Engine(journal=db)
    short = eng.session("short", ttl=1.0)
    long = eng.session("long", ttl=40.0)
    eng.close()
    eng = interlock.Engine(journal=db)
    now = time.time()
    exp = {s["name"]: s["expires_at"] - now for s in eng.sessions()}
    assert 14.0 < exp["short"] <= 15.5, exp
    assert 39.0 < exp["long"] <= 40.5, exp
    assert {s["id"] for s in eng.sessions()} == {short.id, long.id}
    eng.close()


# --- (c) subscriptions that resume with `since` across a restart ------------------------


def test_a_live_remote_subscription_misses_nothing_across_a_kill(serve: Serve) -> None:
    srv = serve()
    eng = interlock.connect(srv.url)
    seen: list[Any] = []
    sub = eng.subscribe()
    done = threading.Event()

    def read() -> None:
        for ev in sub:
            seen.append(ev)
            if done.is_set() and ev.resource == "last":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    s = eng.session("busy")
    for i in range(20):
        s.acquire(f"r{i % 3}").release()
    srv.kill9()
    srv.start()
    wait_until(reconnected(eng), 15, "the client to reconnect")
    for i in range(20):
        s.acquire(f"r{i % 3}").release()
    done.set()
    s.acquire("last")
    reader.join(10)
    assert not reader.is_alive()
    assert not [e for e in seen if e.kind == "lagged"]
    seqs = [e.seq for e in seen]
    assert seqs == sorted(set(seqs)), "events repeated or out of order"
    eng.close()
    srv.stop()
    table = [int(x) for x in sqlite3(srv.journal, f"SELECT seq FROM history WHERE seq >= {seqs[0]} "
                                     f"AND seq <= {seqs[-1]} ORDER BY seq").split()]
    assert seqs == table, "the subscription has a gap" 


def test_a_subscription_resumes_with_since_from_the_restored_ring(serve: Serve) -> None:
    srv = serve()
    eng = interlock.connect(srv.url)
    s = eng.session("one")
    s.acquire("a").release()
    mark = eng.history()[-1].seq
    s.acquire("b")
    s.acquire("c").release()
    after = [e.seq for e in eng.history() if e.seq > mark]
    srv.kill9()
    eng.close()  # nothing reaches the dead server: session "one" stays open on it
    srv.start()
    eng = interlock.connect(srv.url)
    sub = eng.subscribe(since=mark)
    got = []
    it = iter(sub)
    while len(got) < len(after):
        got.append(next(it))
    assert [e.seq for e in got] == after
    assert [e.kind for e in got][:3] == ["acquired", "acquired", "released"]
    # Live after the replay, with seqs that go on above the restored ones.
    eng.session("two").acquire("d")
    live = [next(it) for _ in range(2)]
    assert [e.kind for e in live] == ["session_opened", "acquired"] and live[0].seq > after[-1]
    sub.close()
    eng.close()


def test_a_subscription_from_before_the_ring_gets_a_lagged_marker(tmp_path: Path) -> None:
    db = str(tmp_path / "locks.db")
    eng = interlock.Engine(journal=db, global_history=20)
    s = eng.session("many")
    for i in range(40):
        s.acquire(f"r{i}").release()
    last = eng.history()[-1].seq
    eng.close()
    eng = interlock.Engine(journal=db, global_history=20)
    it = iter(eng.subscribe(since=3))
    first = next(it)
    assert first.kind == "lagged" and first.position == (last - 20) - 3, (first.to_dict(), last)
    ring = [next(it) for _ in range(20)]
    assert [e.seq for e in ring] == list(range(last - 19, last + 1))
    eng.close()


def sse_events(url: str, last_event_id: int, n: int) -> list[dict[str, str]]:
    """The first `n` events of `/v1/events` resumed with `Last-Event-ID`, as a browser
    would: each one's fields (`event`, `id`, `data`)."""
    req = urllib.request.Request(url + "/v1/events", headers={"Last-Event-ID": str(last_event_id)})
    events: list[dict[str, str]] = []
    with urllib.request.urlopen(req, timeout=10) as r:
        fields: dict[str, str] = {}
        while len(events) < n:
            line = r.readline().decode().rstrip("\n")
            if line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
            elif "data" in fields:
                events.append(fields)
                fields = {}
    return events


def test_an_event_stream_resumed_on_another_history_is_told_so(serve: Serve, tmp_path: Path) -> None:
    """A browser resumes its event stream with the `Last-Event-ID` it last saw. A server
    restarted on another journal (a new file, or none) numbers its events afresh: the
    stream says so with a `lagged` marker without a count (and the id 0), then gives that
    engine's events from #1, rather than nothing until the new seqs pass the old one."""
    srv = serve()
    eng = interlock.connect(srv.url)
    s = eng.session("before")
    for i in range(10):
        s.acquire(f"r{i}").release()
    last = eng.history()[-1].seq
    eng.close()
    srv.kill9()
    srv.journal = tmp_path / "another.db"
    srv.start()
    code, _ = srv.http("POST", "/v1/sessions", {"name": "after"})
    assert code == 201
    marker, opened = sse_events(srv.url, last, 2)
    assert marker["event"] == "lagged" and json.loads(marker["data"])["position"] is None
    assert (opened["event"], opened["id"]) == ("session_opened", "1")
    assert json.loads(opened["data"])["session_name"] == "after"
    # The marker's id is where the browser resumes if the stream drops before another
    # event: the new history's start, which it then gets with no marker again.
    assert marker["id"] == "0"
    (again,) = sse_events(srv.url, 0, 1)
    assert (again["event"], again["id"]) == ("session_opened", "1")


# --- (d) fences and seqs keep increasing across restarts --------------------------------


def test_fences_and_seqs_keep_increasing_across_restarts(serve: Serve, tmp_path: Path) -> None:
    srv = serve("--keep-rows", "0")  # no history kept: the counters alone must carry on
    fences: list[int] = []
    seqs: list[int] = []
    for round in range(8):
        eng = interlock.connect(srv.url)
        s = eng.session(f"round{round}")
        sub = eng.subscribe()
        held = s.acquire("psu", timeout=5)
        fences.append(held.fence)
        held.release()
        seqs.append(next(iter(sub)).seq)
        sub.close()
        eng.close()
        if round % 2:
            srv.kill9()
        else:
            assert srv.stop() == 0
        srv.start()
    assert fences == sorted(set(fences)), fences
    assert seqs == sorted(set(seqs)), seqs
    srv.stop()
    # The embedded engine on the same file goes on from there too.
    eng = interlock.Engine(journal=str(srv.journal))
    lease = eng.session("embedded").acquire("psu")
    assert lease.fence > fences[-1]
    assert eng.history()[-1].seq > seqs[-1]
    eng.close()
