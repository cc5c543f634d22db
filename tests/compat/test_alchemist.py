"""interlock.compat.alchemist under uvicorn, driven as ALchemist's connector (a Qt widget
using `requests` with a 5 s timeout) and its web UI (the session WebSocket) drive it."""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from typing import Any, Iterator

import pytest
import requests
from support import App, wait_until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

ADMIN = {"Authorization": "Bearer admin-secret"}
TIMEOUT = 5  # the connector's


def new_session() -> str:
    return f"sess-{uuid.uuid4().hex[:10]}"


def api(app: App) -> str:
    return app.url + "/api/v1"


def ws_url(app: App, session_id: str) -> str:
    return app.url.replace("http://", "ws://") + f"/api/v1/ws/sessions/{session_id}"


def recv(ws: ClientConnection) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return msg


def lock(
    app: App, session_id: str, locked_by: str = "MyScript", client_id: str | None = "script-001"
) -> requests.Response:
    r = requests.post(
        f"{api(app)}/sessions/{session_id}/lock",
        json={"locked_by": locked_by, "client_id": client_id},
        timeout=TIMEOUT,
    )
    if r.ok:
        app.secrets.add(r.json()["lock_token"])
    return r


def unlock(
    app: App, session_id: str, token: str | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    params = {"lock_token": token} if token is not None else None
    return requests.delete(
        f"{api(app)}/sessions/{session_id}/lock", params=params, headers=headers, timeout=TIMEOUT
    )


def lock_state(app: App, session_id: str) -> dict[str, Any]:
    r = requests.get(f"{api(app)}/sessions/{session_id}/lock", timeout=TIMEOUT)
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    assert body["lock_token"] is None  # never exposed in status checks
    return body


def test_python_api_client_example(alchemist_app: App) -> None:
    """The seed's "Python API Client" example, as written."""
    API_URL = api(alchemist_app)
    session_id = new_session()
    response = requests.post(
        f"{API_URL}/sessions/{session_id}/lock",
        json={"locked_by": "MyScript", "client_id": "script-001"},
    )
    lock_data = response.json()
    lock_token = lock_data["lock_token"]  # Save for unlock!
    alchemist_app.secrets.add(lock_token)
    try:
        assert lock_state(alchemist_app, session_id)["locked_by"] == "MyScript"
    finally:
        r = requests.delete(
            f"{API_URL}/sessions/{session_id}/lock", params={"lock_token": lock_token}
        )
    assert r.json() == {"locked": False, "locked_by": None, "locked_at": None, "lock_token": None}


def test_the_connector_workflow(alchemist_app: App) -> None:
    """The real connector: read the session, lock it, poll its state, unlock on disconnect."""
    session_id = new_session()
    s = requests.get(f"{api(alchemist_app)}/sessions/{session_id}", timeout=TIMEOUT)
    assert s.ok and isinstance(s.json(), dict) and "created_at" in s.json()
    assert isinstance(s.json().get("search_space", {}), dict) and isinstance(
        s.json().get("data", {}), dict
    )
    r = lock(alchemist_app, session_id, "ReactorController", None)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"locked", "locked_by", "locked_at", "lock_token"}
    assert body["locked"] is True and body["locked_by"] == "ReactorController"
    assert uuid.UUID(body["lock_token"]).version == 4
    assert lock_state(alchemist_app, session_id)["locked_at"] == body["locked_at"]
    for _ in range(3):
        st = requests.get(f"{api(alchemist_app)}/sessions/{session_id}/state", timeout=TIMEOUT)
        assert st.json()["model_trained"] is False
    assert unlock(alchemist_app, session_id, body["lock_token"]).json()["locked"] is False
    assert lock_state(alchemist_app, session_id)["locked"] is False


def test_answers_and_errors(alchemist_app: App) -> None:
    session_id = new_session()
    token = lock(alchemist_app, session_id).json()["lock_token"]
    wrong = unlock(alchemist_app, session_id, str(uuid.uuid4()))
    assert wrong.status_code == 403 and wrong.json() == {"detail": "Invalid lock token"}
    assert unlock(alchemist_app, session_id, "not-a-token").status_code == 403
    other = new_session()
    assert unlock(alchemist_app, other, token).status_code == 403  # a token of another session
    assert lock_state(alchemist_app, session_id)["locked"] is True
    assert unlock(alchemist_app, session_id, token).status_code == 200
    assert unlock(alchemist_app, session_id, token).json() == {
        "detail": "Invalid lock token"
    }  # used up
    missing = "missing-42"
    for r in (
        lock(alchemist_app, missing),
        unlock(alchemist_app, missing, token),
        requests.get(f"{api(alchemist_app)}/sessions/{missing}/lock", timeout=TIMEOUT),
    ):
        assert r.status_code == 404 and r.json() == {
            "detail": f"Session {missing} not found or expired"
        }
    bad = requests.post(
        f"{api(alchemist_app)}/sessions/{session_id}/lock", json={"client_id": "x"}, timeout=TIMEOUT
    )
    assert bad.status_code == 422


def test_a_second_lock_is_refused_not_swapped(alchemist_app: App) -> None:
    session_id = new_session()
    first = lock(alchemist_app, session_id, "Optimizer-A").json()
    second = lock(alchemist_app, session_id, "Optimizer-B")
    assert second.status_code == 409
    assert "Optimizer-A" in second.json()["detail"] and first["lock_token"] not in second.text
    assert lock_state(alchemist_app, session_id)["locked_by"] == "Optimizer-A"
    assert unlock(alchemist_app, session_id, first["lock_token"]).status_code == 200
    assert lock(alchemist_app, session_id, "Optimizer-B").status_code == 200


def test_unlocking_without_a_token_needs_admin(alchemist_app: App) -> None:
    session_id = new_session()
    token = lock(alchemist_app, session_id).json()["lock_token"]
    refused = unlock(alchemist_app, session_id)
    assert refused.status_code == 403
    assert (
        unlock(alchemist_app, session_id, headers={"Authorization": "Bearer nope"}).status_code
        == 403
    )
    assert lock_state(alchemist_app, session_id)["locked"] is True
    forced = unlock(alchemist_app, session_id, headers=ADMIN)
    assert forced.status_code == 200 and forced.json()["locked"] is False
    assert unlock(alchemist_app, session_id, token).status_code == 403  # force-unlocked


def test_the_websocket_tells_every_change(alchemist_app: App) -> None:
    session_id = new_session()
    token = lock(alchemist_app, session_id, "Late").json()["lock_token"]
    with connect(ws_url(alchemist_app, session_id)) as ws:
        hello = recv(ws)
        assert (
            hello["event"] == "connected"
            and hello["session_id"] == session_id
            and "message" in hello
        )
        assert (
            hello["locked"] is True and hello["locked_by"] == "Late"
        )  # a late subscriber learns it
        unlock(alchemist_app, session_id, token)
        assert recv(ws) == {
            "event": "lock_status_changed",
            "session_id": session_id,
            "locked": False,
            "locked_by": None,
            "locked_at": None,
            "reason": "released",
        }
        lock(alchemist_app, session_id, "Again")
        again = recv(ws)
        assert again["locked"] is True and again["locked_by"] == "Again" and again["locked_at"]
        unlock(alchemist_app, session_id, headers=ADMIN)
        forced = recv(ws)
        assert forced["locked"] is False and forced["reason"] == "force_released"
    with pytest.raises(InvalidStatus):  # refused at the handshake
        with connect(ws_url(alchemist_app, "missing-7")) as ws:
            ws.recv(timeout=5)


@pytest.fixture(params=["embedded", "remote"])
def short_ttl_app(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[App]:
    app = App("alchemist", request.param, tmp_path / "alchemist.log", "--lock-ttl", "1")
    yield app
    app.close()


def test_a_crashed_controller_does_not_hold_forever(short_ttl_app: App) -> None:
    app = short_ttl_app
    kept, crashed = new_session(), new_session()
    token = lock(app, kept).json()["lock_token"]
    lock(app, crashed)
    with connect(ws_url(app, crashed)) as ws:
        assert recv(ws)["locked"] is True
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # the live connector polls its session's state
            requests.get(f"{api(app)}/sessions/{kept}/state", timeout=TIMEOUT)
            time.sleep(0.2)
        expired = recv(ws)  # the crashed one polled nothing
        assert expired["event"] == "lock_status_changed" and expired["locked"] is False
        assert expired["reason"] == "expired"
    assert lock_state(app, crashed)["locked"] is False
    assert lock_state(app, kept)["locked"] is True
    hb = requests.post(
        f"{api(app)}/sessions/{kept}/lock/heartbeat", params={"lock_token": token}, timeout=TIMEOUT
    )
    assert hb.status_code == 200 and hb.json()["locked"] is True and hb.json()["lock_token"] is None
    wrong = requests.post(
        f"{api(app)}/sessions/{kept}/lock/heartbeat",
        params={"lock_token": str(uuid.uuid4())},
        timeout=TIMEOUT,
    )
    assert wrong.status_code == 403
    wait_until(
        lambda: not lock_state(app, kept)["locked"], "the lock to expire once nothing renews it"
    )
    app.secrets.add(token)
