"""interlock.compat.lablink under uvicorn, driven with `requests` as LabLink's client and
GUI drive it: the seed's own examples, every route's shapes and statuses, and each defect
of the original that must not come back."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from typing import Any

import pytest
import requests
from support import App, wait_until

ADMIN = {"Authorization": "Bearer admin-secret"}


def eq_name() -> str:
    return f"ps_{uuid.uuid4().hex[:8]}"


class Client:
    """A LabLink client: its own uuid4 session id, as the real client makes it."""

    def __init__(self, app: App, session_id: str | None = None) -> None:
        self.base = app.url + "/api"
        self.session_id = session_id or str(uuid.uuid4())
        app.secrets.add(self.session_id)

    def acquire(self, eq: str, **body: Any) -> requests.Response:
        return requests.post(
            f"{self.base}/locks/acquire",
            json={"equipment_id": eq, "session_id": self.session_id, **body},
            timeout=10,
        )

    def release(
        self, eq: str, headers: dict[str, str] | None = None, **body: Any
    ) -> requests.Response:
        return requests.post(
            f"{self.base}/locks/release",
            json={"equipment_id": eq, "session_id": self.session_id, **body},
            headers=headers,
            timeout=10,
        )

    def command(self, eq: str, action: str, **parameters: Any) -> requests.Response:
        return requests.post(
            f"{self.base}/equipment/{eq}/command",
            json={
                "command_id": f"cmd_{uuid.uuid4().hex[:6]}",
                "equipment_id": eq,
                "action": action,
                "parameters": parameters,
                "session_id": self.session_id,
            },
            timeout=10,
        )


def get(app: App, path: str, **params: Any) -> Any:
    r = requests.get(f"{app.url}/api/locks{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def parse(t: str) -> datetime.datetime:
    d = datetime.datetime.fromisoformat(t)
    assert d.utcoffset() is not None, f"{t} has no offset"
    return d


# --- the seed's own examples -------------------------------------------------------------


def test_basic_workflow(lablink_app: App) -> None:
    """The seed's "Basic Workflow", as written (create, lock, command, release, end)."""
    base_url = lablink_app.url + "/api"
    # 1. Create a session
    session_resp = requests.post(
        f"{base_url}/locks/sessions/create",
        json={"client_name": "My Lab PC", "timeout_seconds": 600},
    )
    assert session_resp.status_code == 200
    session_id = session_resp.json()["session_id"]
    lablink_app.secrets.add(session_id)
    # 2. Acquire exclusive lock on power supply
    eq = eq_name()
    lock_resp = requests.post(
        f"{base_url}/locks/acquire",
        json={
            "equipment_id": eq,
            "session_id": session_id,
            "lock_mode": "exclusive",
            "timeout_seconds": 300,
            "queue_if_busy": True,
        },
    )
    assert lock_resp.json()["status"] == "locked"
    # 3. Execute control command
    cmd_resp = requests.post(
        f"{base_url}/equipment/{eq}/command",
        json={
            "command_id": "cmd_001",
            "equipment_id": eq,
            "action": "set_voltage",
            "parameters": {"voltage": 12.0},
            "session_id": session_id,
        },
    )
    assert cmd_resp.status_code == 200
    assert cmd_resp.json()["checked_as"] == "control"
    # 4. Release lock when done
    rel = requests.post(
        f"{base_url}/locks/release", json={"equipment_id": eq, "session_id": session_id}
    )
    assert rel.json() == {"success": True, "status": "released", "was_forced": False}
    # 5. End session
    end = requests.delete(f"{base_url}/locks/sessions/{session_id}")
    assert end.json() == {
        "success": True,
        "message": "Session ended",
        "session_id": session_id,
        "locks_released": 0,
    }
    assert get(lablink_app, f"/status/{eq}")["locked"] is False


def test_queue_example(lablink_app: App) -> None:
    """The seed's "Queue Example": queued behind a holder, polling the queue until it is
    next or holds the lock; then it holds it."""
    base_url = lablink_app.url + "/api"
    eq = eq_name()
    holder = Client(lablink_app)
    assert holder.acquire(eq).json()["status"] == "locked"
    session_id = str(uuid.uuid4())
    lablink_app.secrets.add(session_id)

    resp = requests.post(
        f"{base_url}/locks/acquire",
        json={
            "equipment_id": eq,
            "session_id": session_id,
            "lock_mode": "exclusive",
            "queue_if_busy": True,
        },
    )
    assert resp.json()["status"] == "queued"
    position = resp.json()["queue_entry"]["position"]
    assert position == 1
    threading.Timer(0.3, holder.release, args=(eq,)).start()
    deadline = time.monotonic() + 15
    while True:
        queue_resp = requests.get(f"{base_url}/locks/queue/{eq}")
        queue = queue_resp.json()["queue"]
        if len(queue) == 0 or queue[0]["session_id"] == session_id:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status = get(lablink_app, f"/status/{eq}")
    assert status["locked"] is True and status["session_name"].startswith("LabLink client")
    again = Client(lablink_app, session_id).acquire(eq)
    assert again.json()["status"] == "refreshed"  # it holds the lock the queue gave it


def test_observer_mode_example(lablink_app: App) -> None:
    """The seed's "Observer Mode Example": an observer reads and may not control."""
    scope = eq_name()
    me = Client(lablink_app)
    observer_resp = me.acquire(scope, lock_mode="observer", timeout_seconds=600)
    assert observer_resp.json() == {"success": True, "status": "observer", "observer_count": 1}
    status_resp = me.command(scope, "get_waveform", channel=1)
    assert status_resp.status_code == 200 and status_resp.json()["checked_as"] == "observe"
    set_resp = me.command(scope, "set_timebase", value=0.001)
    assert set_resp.status_code == 403


# --- answers ----------------------------------------------------------------------------


def test_acquire_answers(lablink_app: App) -> None:
    eq = eq_name()
    a, b, c = Client(lablink_app), Client(lablink_app), Client(lablink_app)
    r = a.acquire(eq, lock_mode="exclusive", timeout_seconds=120)
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True and body["status"] == "locked"
    lock = body["lock"]
    assert lock["equipment_id"] == eq and lock["session_id"] == a.session_id
    assert lock["lock_mode"] == "exclusive" and lock["timeout_seconds"] == 120
    assert lock["lock_id"].startswith("lock_")
    parse(lock["acquired_at"])

    again = a.acquire(eq, timeout_seconds=60).json()
    assert again["status"] == "refreshed" and again["lock"]["lock_id"] == lock["lock_id"]
    assert again["lock"]["timeout_seconds"] == 60

    busy = b.acquire(eq)
    assert busy.status_code == 409  # the GUI's only sign of "held by another session"
    assert "409" in str(pytest.raises(requests.HTTPError, busy.raise_for_status).value)
    assert a.session_id not in busy.text and "LabLink client" in busy.json()["detail"]

    queued = b.acquire(eq, queue_if_busy=True, timeout_seconds=30)
    assert queued.status_code == 200
    q = queued.json()
    assert q["success"] is False and q["status"] == "queued" and "message" in q
    entry = q["queue_entry"]
    assert set(entry) >= {"queue_id", "equipment_id", "position", "queued_at"}
    assert entry["equipment_id"] == eq and entry["position"] == 1
    assert entry["session_id"] == b.session_id  # the caller's own
    parse(entry["queued_at"])
    second = c.acquire(eq, queue_if_busy=True).json()
    assert second["queue_entry"]["position"] == 2
    assert b.acquire(eq, queue_if_busy=True).json()["queue_entry"]["queue_id"] == entry["queue_id"]

    obs = eq_name()
    assert a.acquire(obs, lock_mode="observer").json() == {
        "success": True,
        "status": "observer",
        "observer_count": 1,
    }
    assert b.acquire(obs, lock_mode="observer").json()["observer_count"] == 2

    for bad in ({"lock_mode": "owner"}, {"timeout_seconds": -1}, {"equipment_id": ""}):
        r = requests.post(
            f"{lablink_app.url}/api/locks/acquire",
            json={"equipment_id": eq_name(), "session_id": a.session_id, **bad},
            timeout=10,
        )
        assert r.status_code == 422, (bad, r.text)


def test_release_answers(lablink_app: App) -> None:
    eq, obs = eq_name(), eq_name()
    a, b = Client(lablink_app), Client(lablink_app)
    a.acquire(eq)
    b.acquire(obs, lock_mode="observer")
    assert b.release(eq).status_code == 403  # another's lock, no force
    assert b.release(eq, force=True).status_code == 403  # force without admin
    assert get(lablink_app, f"/status/{eq}")["locked"] is True
    assert b.release(obs).json() == {
        "success": True,
        "status": "observer_released",
        "was_forced": False,
    }
    assert b.release(obs).json()["status"] == "not_locked"
    assert b.release(obs).json()["success"] is False
    forced = b.release(eq, force=True, headers=ADMIN)
    assert forced.json() == {"success": True, "status": "released", "was_forced": True}
    assert get(lablink_app, f"/status/{eq}")["locked"] is False
    wrong = b.release(eq_name(), force=True, headers={"Authorization": "Bearer admin-secreT"})
    assert wrong.json()["status"] == "not_locked"
    a.acquire(eq)
    assert b.release(eq, force=True, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert a.release(eq).json() == {"success": True, "status": "released", "was_forced": False}


def test_a_forced_release_also_clears_observers(lablink_app: App) -> None:
    eq = eq_name()
    a, b, admin = Client(lablink_app), Client(lablink_app), Client(lablink_app)
    a.acquire(eq, lock_mode="observer").raise_for_status()
    b.acquire(eq, lock_mode="observer").raise_for_status()
    assert admin.release(eq).json()["status"] == "not_locked"  # not forced: nothing of its own
    assert admin.release(eq, force=True).status_code == 403  # forced without the admin token
    forced = admin.release(eq, force=True, headers=ADMIN)
    assert forced.json() == {"success": True, "status": "released", "was_forced": True}
    assert admin.acquire(eq).json()["status"] == "locked"  # no observer is left to wait for


def test_the_gui_forces_release_before_every_acquire(lablink_app: App) -> None:
    """The GUI calls release with force=true before each acquire and ignores its error:
    on another's lock that is a refused force, and the acquire still says 409."""
    eq = eq_name()
    holder, gui = Client(lablink_app), Client(lablink_app)
    holder.acquire(eq)
    try:
        gui.release(eq, force=True).raise_for_status()
    except requests.HTTPError as e:
        assert e.response is not None and e.response.status_code == 403
    with pytest.raises(requests.HTTPError, match="409"):
        gui.acquire(eq).raise_for_status()
    holder.release(eq)
    gui.release(eq, force=True)  # nothing held: "not_locked", ignored
    assert gui.acquire(eq).json()["status"] == "locked"


def test_status_queue_all_and_events(lablink_app: App) -> None:
    eq = eq_name()
    unknown = get(lablink_app, f"/status/{eq}")
    assert unknown == {
        "equipment_id": eq,
        "locked": False,
        "lock_mode": None,
        "session_id": None,
        "session_name": None,
        "session_label": None,
        "lock_id": None,
        "acquired_at": None,
        "time_remaining": None,
        "observer_count": None,
        "observer_sessions": None,
        "queue_length": 0,
    }
    a, b = Client(lablink_app), Client(lablink_app)
    lock = a.acquire(eq, timeout_seconds=100).json()["lock"]
    b.acquire(eq, queue_if_busy=True)
    st = get(lablink_app, f"/status/{eq}")
    assert (
        st["locked"] is True and st["lock_mode"] == "exclusive" and st["lock_id"] == lock["lock_id"]
    )
    assert st["session_id"] is None and st["session_label"] and 0 < st["time_remaining"] <= 100
    assert st["queue_length"] == 1
    queue = get(lablink_app, f"/queue/{eq}")
    assert queue["equipment_id"] == eq and len(queue["queue"]) == 1
    assert queue["queue"][0]["position"] == 1 and queue["queue"][0]["session_id"] is None
    every = get(lablink_app, "/all")
    assert set(every) == {"exclusive_locks", "observer_locks", "queues"}
    assert every["exclusive_locks"][eq]["lock_id"] == lock["lock_id"]
    assert [e["position"] for e in every["queues"][eq]] == [1]
    obs = eq_name()
    a.acquire(obs, lock_mode="observer")
    assert len(get(lablink_app, "/all")["observer_locks"][obs]) == 1
    observed = get(lablink_app, f"/status/{obs}")
    assert observed["locked"] is False and observed["observer_count"] == 1
    a.release(eq)
    events = get(lablink_app, f"/events/{eq}", limit=50)
    assert events["equipment_id"] == eq and events["count"] == len(events["events"])
    kinds = [e["event"] for e in events["events"]]
    assert kinds == ["lock_acquired", "queued", "lock_released", "lock_acquired"]
    assert all(parse(e["timestamp"]) for e in events["events"])
    assert len(get(lablink_app, f"/events/{eq}", limit=1)["events"]) == 1
    assert (
        requests.get(f"{lablink_app.url}/api/locks/events/{eq}?limit=0", timeout=10).status_code
        == 422
    )


def test_activity_renews_the_lock(lablink_app: App) -> None:
    eq = eq_name()
    a = Client(lablink_app)
    a.acquire(eq, timeout_seconds=4)
    time.sleep(1.0)
    before = get(lablink_app, f"/status/{eq}")["time_remaining"]
    r = requests.post(
        f"{lablink_app.url}/api/locks/activity/{eq}", json={"session_id": a.session_id}, timeout=10
    )
    assert r.status_code == 200
    body = r.json()
    assert (
        body["success"] is True and body["equipment_id"] == eq and body["time_remaining"] > before
    )
    other = requests.post(
        f"{lablink_app.url}/api/locks/activity/{eq}",
        json={"session_id": str(uuid.uuid4())},
        timeout=10,
    )
    assert other.status_code == 404


def test_session_routes(lablink_app: App) -> None:
    base = lablink_app.url + "/api/locks"
    created = requests.post(
        f"{base}/sessions/create",
        json={
            "client_name": "Lab PC #3",
            "client_ip": "192.168.1.100",
            "timeout_seconds": 600,
            "metadata": {"user": "researcher_1"},
        },
        timeout=10,
    ).json()
    sid = created["session_id"]
    lablink_app.secrets.add(sid)
    assert uuid.UUID(sid).version == 4
    assert created["client_name"] == "Lab PC #3" and created["client_ip"] == "192.168.1.100"
    assert created["metadata"] == {"user": "researcher_1"}
    assert 590 < created["time_remaining"] <= 600 and created["duration_seconds"] >= 0
    parse(created["created_at"]), parse(created["last_activity"])
    assert requests.get(f"{base}/sessions/{sid}", timeout=10).json()["client_name"] == "Lab PC #3"
    listed = get(lablink_app, "/sessions")
    assert listed["count"] == len(listed["sessions"])
    mine = [s for s in listed["sessions"] if s["client_name"] == "Lab PC #3"]
    assert mine and all(s["session_id"] is None for s in listed["sessions"])
    activity = requests.post(f"{base}/sessions/{sid}/activity", timeout=10).json()
    assert activity == {"success": True, "message": "Session activity updated", "session_id": sid}
    me = Client(lablink_app, sid)
    eq1, eq2 = eq_name(), eq_name()
    me.acquire(eq1)
    me.acquire(eq2, lock_mode="observer")
    locks = requests.get(f"{base}/sessions/{sid}/locks", timeout=10).json()
    assert locks == {"session_id": sid, "locked_equipment": sorted([eq1, eq2]), "count": 2}
    events = requests.get(f"{base}/sessions/{sid}/events", timeout=10).json()
    assert [e["event"] for e in events["events"]][-2:] == [
        "lock_acquired",
        "observer_lock_acquired",
    ]
    end = requests.delete(f"{base}/sessions/{sid}", timeout=10).json()
    assert end["locks_released"] == 2
    assert get(lablink_app, f"/status/{eq1}")["locked"] is False
    for method, path in (("get", ""), ("delete", ""), ("post", "/activity"), ("get", "/locks")):
        assert (
            requests.request(method, f"{base}/sessions/{sid}{path}", timeout=10).status_code == 404
        )
    cleanup = requests.post(f"{base}/cleanup", timeout=10).json()
    assert cleanup["success"] is True and isinstance(cleanup["expired_sessions"], int)


def test_permission_dependency(lablink_app: App) -> None:
    eq = eq_name()
    url = f"{lablink_app.url}/api/equipment/{eq}/command"
    body: dict[str, Any] = {
        "command_id": "c1",
        "equipment_id": eq,
        "action": "set_voltage",
        "parameters": {},
    }
    assert requests.post(url, json=body, timeout=10).status_code == 401  # no session
    assert (
        requests.post(url, json={**body, "session_id": str(uuid.uuid4())}, timeout=10).status_code
        == 401
    )
    a, b = Client(lablink_app), Client(lablink_app)
    a.acquire(eq_name())  # a session the router knows, without this equipment
    assert a.command(eq, "set_voltage").status_code == 403  # no lock: no control
    assert a.command(eq, "get_voltage").status_code == 403  # no lock: no read
    b.acquire(eq, lock_mode="observer")
    assert b.command(eq, "get_voltage").status_code == 200
    assert b.command(eq, "set_voltage").status_code == 403  # observer: no control
    assert b.command(eq, "calibrate_everything").status_code == 403  # unknown: control
    readings = f"{lablink_app.url}/api/equipment/{eq}/readings"
    assert (
        requests.get(readings, headers={"X-Session-Id": b.session_id}, timeout=10).status_code
        == 200
    )
    assert (
        requests.get(readings, headers={"X-Session-Id": a.session_id}, timeout=10).status_code
        == 403
    )
    assert requests.get(readings, timeout=10).status_code == 401
    b.release(eq)
    a.acquire(eq)
    ok = a.command(eq, "set_voltage", voltage=12.0)
    assert ok.status_code == 200 and ok.json()["checked_as"] == "control" and ok.json()["fence"] > 0
    b.release(eq, force=True, headers=ADMIN)
    assert a.command(eq, "set_voltage").status_code == 403  # its lock was taken away


# --- the original's defects -----------------------------------------------------------------


def test_an_exclusive_acquire_does_not_drop_the_observers(lablink_app: App) -> None:
    eq = eq_name()
    o1, o2, ctl = Client(lablink_app), Client(lablink_app), Client(lablink_app)
    o1.acquire(eq, lock_mode="observer")
    o2.acquire(eq, lock_mode="observer")
    assert ctl.acquire(eq).status_code == 409
    assert get(lablink_app, f"/status/{eq}")["observer_count"] == 2
    assert ctl.acquire(eq, queue_if_busy=True).json()["status"] == "queued"
    assert get(lablink_app, f"/status/{eq}")["observer_count"] == 2
    assert o1.command(eq, "get_voltage").status_code == 200  # still observing
    o1.release(eq)
    o2.release(eq)
    wait_until(lambda: get(lablink_app, f"/status/{eq}")["locked"], "the queued exclusive grant")
    assert ctl.acquire(eq).json()["status"] == "refreshed"


def test_a_queued_grant_keeps_the_requested_ttl(lablink_app: App) -> None:
    """The original granted from its queue with a hard-coded 300 s."""
    eq = eq_name()
    a, b = Client(lablink_app), Client(lablink_app)
    a.acquire(eq)
    b.acquire(eq, queue_if_busy=True, timeout_seconds=2)
    a.release(eq)
    wait_until(lambda: get(lablink_app, f"/status/{eq}")["locked"], "the queued grant")
    assert get(lablink_app, f"/status/{eq}")["time_remaining"] <= 2
    wait_until(lambda: not get(lablink_app, f"/status/{eq}")["locked"], "the 2 s TTL to run out")
    assert get(lablink_app, f"/events/{eq}")["events"][-1]["event"] == "lock_expired"


def test_observers_time_out_and_expiry_needs_no_sweep(lablink_app: App) -> None:
    """Observers had no TTL, and expiry waited for a sweep every 10 s: a lease ends at
    its TTL, and what waits for it is granted then."""
    obs, eq = eq_name(), eq_name()
    a, b = Client(lablink_app), Client(lablink_app)
    a.acquire(obs, lock_mode="observer", timeout_seconds=1)
    a.acquire(eq, timeout_seconds=1)
    b.acquire(eq, queue_if_busy=True, timeout_seconds=30)

    def expired(name: str) -> bool:
        return any(
            e["event"] == "lock_expired" for e in get(lablink_app, f"/events/{name}")["events"]
        )

    wait_until(lambda: expired(obs) and expired(eq), "both expiries")
    assert get(lablink_app, f"/status/{obs}")["observer_count"] is None
    for name in (obs, eq):
        ev = get(lablink_app, f"/events/{name}")["events"]
        acquired = next(e for e in ev if e["event"].endswith("lock_acquired"))
        ended = next(e for e in ev if e["event"] == "lock_expired")
        took = (parse(ended["timestamp"]) - parse(acquired["timestamp"])).total_seconds()
        # The engine's record says when it ended it: at its TTL, not at the next tick of
        # a 10 s sweep (the bound leaves room for a loaded machine).
        assert 1.0 <= took < 2.0, took
    st = get(lablink_app, f"/status/{eq}")
    assert st["locked"] and st["queue_length"] == 0  # granted from the queue at the expiry


def test_queue_entries_end_with_their_session(lablink_app: App) -> None:
    eq = eq_name()
    holder, waiter = Client(lablink_app), Client(lablink_app)
    holder.acquire(eq)
    waiter.acquire(eq, queue_if_busy=True)
    assert get(lablink_app, f"/queue/{eq}")["queue"]
    requests.delete(f"{lablink_app.url}/api/locks/sessions/{waiter.session_id}", timeout=10)
    assert get(lablink_app, f"/queue/{eq}")["queue"] == []


def test_a_session_that_times_out_leaves_its_queue(lablink_app: App) -> None:
    """The session's own TTL ends it, and its queue entries with it (LABLINK_SESSION_TIMEOUT),
    also over a server (the launcher connects with keepalive=False)."""
    sid = requests.post(
        f"{lablink_app.url}/api/locks/sessions/create",
        json={"client_name": "short", "timeout_seconds": 1},
        timeout=10,
    ).json()["session_id"]
    lablink_app.secrets.add(sid)
    eq = eq_name()
    Client(lablink_app).acquire(eq)
    Client(lablink_app, sid).acquire(eq, queue_if_busy=True)
    wait_until(lambda: get(lablink_app, f"/queue/{eq}")["queue"] == [], "the session's expiry")
    assert (
        requests.get(f"{lablink_app.url}/api/locks/sessions/{sid}", timeout=10).status_code == 404
    )


def test_no_session_id_is_shown_to_anyone_else(lablink_app: App) -> None:
    eq, obs = eq_name(), eq_name()
    a, b, c = Client(lablink_app), Client(lablink_app), Client(lablink_app)
    created = requests.post(
        f"{lablink_app.url}/api/locks/sessions/create", json={"client_name": "D"}, timeout=10
    ).json()
    d = Client(lablink_app, created["session_id"])
    a.acquire(eq)
    b.acquire(eq, queue_if_busy=True)
    c.acquire(obs, lock_mode="observer")
    d.acquire(obs, lock_mode="observer")
    seen = [
        b.acquire(eq, queue_if_busy=True).text,
        c.acquire(eq).text,
        c.release(eq).text,
        c.release(eq, force=True).text,
        c.command(eq, "set_voltage").text,
    ]
    for path in (
        f"/status/{eq}",
        f"/status/{obs}",
        f"/queue/{eq}",
        "/all",
        f"/events/{eq}",
        f"/events/{obs}",
        "/sessions",
    ):
        seen.append(requests.get(f"{lablink_app.url}/api/locks{path}", timeout=10).text)
    seen.append(
        requests.get(f"{lablink_app.url}/api/locks/sessions/{c.session_id}/events", timeout=10).text
    )
    # seen[0] went to b; everything else to c or to nobody in particular.
    assert all(x.session_id not in seen[0] for x in (a, c, d))
    others = "\n".join(seen[1:])
    assert all(x.session_id not in others for x in (a, b, d))
    assert "LabLink client" in others and "D" in others  # names stand in for the ids


def test_a_wait_that_would_deadlock_is_refused(lablink_app: App) -> None:
    x, y = eq_name(), eq_name()
    a, b = Client(lablink_app), Client(lablink_app)
    a.acquire(x)
    b.acquire(y)
    assert a.acquire(y, queue_if_busy=True).json()["status"] == "queued"
    cycle = b.acquire(x, queue_if_busy=True)
    assert cycle.status_code == 409 and a.session_id not in cycle.text
    assert get(lablink_app, f"/queue/{x}")["queue"] == []
