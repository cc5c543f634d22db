"""interlock.compat.bluesky under uvicorn, driven as its real client drives it: aiohttp
for HTTP (parsing every answer with the client's own models), websockets for `/ws`."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from enum import Enum
from typing import Any, Optional

import aiohttp
import pytest
import websockets
from pydantic import BaseModel
from support import App

ADMIN = {"Authorization": "Bearer admin-secret"}


# The client's models (bluesky_queueserver_api/coordination/models.py): what it parses.
class LockType(Enum):
    MAINTENANCE = "MAINTENANCE"
    QUEUE_EXECUTING = "QUEUE_EXECUTING"
    MANUAL_OPERATOR = "MANUAL_OPERATOR"
    QUEUE_QUEUED = "QUEUE_QUEUED"


class DeviceLock(BaseModel):
    device_name: str
    lock_type: LockType
    user_id: str
    lock_key: str
    acquired_at: datetime.datetime
    expires_at: Optional[datetime.datetime] = None
    reason: Optional[str] = None
    plan_uid: Optional[str] = None
    priority: int = 3


class LockResponse(BaseModel):
    success: bool
    lock_key: Optional[str] = None
    message: str
    expires_at: Optional[datetime.datetime] = None


class LockStatus(BaseModel):
    device_name: str
    locked: bool
    lock: Optional[DeviceLock] = None
    timestamp: datetime.datetime


class LocksStatusResponse(BaseModel):
    locks: list[DeviceLock]
    total_count: int
    timestamp: datetime.datetime


class Client:
    """The calls of DeviceCoordinationClient, as it makes them."""

    def __init__(self, app: App, session: aiohttp.ClientSession) -> None:
        self.app = app
        self.base = app.url
        self.session = session

    async def health_check(self) -> Any:
        async with self.session.get(self.base + "/api/health/ready") as r:
            r.raise_for_status()
            return await r.json()

    async def request_lock(
        self,
        device_name: str,
        lock_type: LockType,
        user_id: str,
        timeout: Optional[int] = 300,
        reason: Optional[str] = None,
        plan_uid: Optional[str] = None,
    ) -> LockResponse:
        body = {
            "device_name": device_name,
            "lock_type": lock_type.value,
            "user_id": user_id,
            "timeout": timeout,
            "reason": reason,
            "plan_uid": plan_uid,
        }
        async with self.session.post(self.base + "/api/lock/request", json=body) as r:
            r.raise_for_status()
            answer = LockResponse(**await r.json())
        if answer.lock_key:
            self.app.secrets.add(answer.lock_key)
        return answer

    async def release_lock(self, device_name: str, lock_key: str, user_id: str) -> Any:
        params = {"device_name": device_name, "lock_key": lock_key, "user_id": user_id}
        async with self.session.post(self.base + "/api/lock/release", params=params) as r:
            r.raise_for_status()
            return await r.json()

    async def get_lock_status(self, device_name: str) -> LockStatus:
        async with self.session.get(self.base + f"/api/locks/device/{device_name}") as r:
            r.raise_for_status()
            return LockStatus(**await r.json())

    async def get_all_locks(self) -> LocksStatusResponse:
        async with self.session.get(self.base + "/api/locks/status") as r:
            r.raise_for_status()
            return LocksStatusResponse(**await r.json())

    async def release_status(self, **params: str) -> int:
        async with self.session.post(self.base + "/api/lock/release", params=params) as r:
            return r.status


def device() -> str:
    return f"det_{uuid.uuid4().hex[:8]}"


def run(app: App, test: Any) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            await test(Client(app, s))

    asyncio.run(main())


class Socket:
    """The `/ws` stream as the client reads it."""

    def __init__(self, app: App) -> None:
        self.url = app.url.replace("http://", "ws://") + "/ws"
        self.raw: list[str] = []

    async def __aenter__(self) -> "Socket":
        self.ws = await websockets.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def next(self, type_: Optional[str] = None) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), 10)
            assert isinstance(raw, str)
            self.raw.append(raw)
            msg: dict[str, Any] = json.loads(raw)
            if type_ is None or msg["type"] == type_:
                return msg

    async def update(self, dev: str) -> dict[str, Any]:
        """The next lock_update about `dev` (the socket sees every device)."""
        while True:
            msg = await self.next("lock_update")
            if msg["device_name"] == dev:
                DeviceLock(**msg["lock"])
                return msg


def test_basic_client_operations(bluesky_app: App) -> None:
    """The seed's "Basic Client Operations" example."""

    async def test(client: Client) -> None:
        assert isinstance(await client.health_check(), dict)
        response = await client.request_lock(
            device_name="detector1",
            lock_type=LockType.MANUAL_OPERATOR,
            user_id="operator123",
            timeout=300,
            reason="Calibration",
        )
        assert response.success and response.lock_key
        assert response.message == "Lock acquired for detector1"
        assert response.expires_at is not None and response.expires_at.tzinfo is None  # naive UTC
        status = await client.get_lock_status("detector1")
        assert status.locked and status.lock is not None
        assert (
            status.lock.lock_type is LockType.MANUAL_OPERATOR
            and status.lock.user_id == "operator123"
        )
        assert status.lock.reason == "Calibration" and status.lock.priority == 2
        assert status.lock.lock_key == ""  # the key went to its owner only
        released = await client.release_lock("detector1", response.lock_key, "operator123")
        assert released == {"success": True, "message": "Lock released for detector1"}
        assert not (await client.get_lock_status("detector1")).locked

    run(bluesky_app, test)


def test_queue_server_integration_example(bluesky_app: App) -> None:
    """The seed's queue server example: lock a plan's devices, run it, release them."""

    async def test(client: Client) -> None:
        plan_uid = str(uuid.uuid4())
        devices_to_lock = [device(), device(), device()]
        lock_keys = {}
        for d in devices_to_lock:
            response = await client.request_lock(
                device_name=d,
                lock_type=LockType.QUEUE_EXECUTING,
                user_id="queue_server",
                plan_uid=plan_uid,
                timeout=60,
            )
            if response.success:
                assert response.lock_key is not None
                lock_keys[d] = response.lock_key
        assert len(lock_keys) == 3
        every = await client.get_all_locks()
        mine = [lk for lk in every.locks if lk.device_name in lock_keys]
        assert len(mine) == 3 and all(lk.plan_uid == plan_uid and lk.priority == 1 for lk in mine)
        assert every.total_count == len(every.locks)
        for d, lock_key in lock_keys.items():
            await client.release_lock(d, lock_key, "queue_server")
        assert not any(lk.device_name in lock_keys for lk in (await client.get_all_locks()).locks)

    run(bluesky_app, test)


def test_higher_priority_preempts_and_the_socket_tells(bluesky_app: App) -> None:
    async def test(client: Client) -> None:
        d = device()
        async with Socket(bluesky_app) as ws:
            initial = await ws.next()
            assert initial["type"] == "initial_status"
            LocksStatusResponse(**initial["data"])
            manual = await client.request_lock(d, LockType.MANUAL_OPERATOR, "operator")
            assert (await ws.update(d))["action"] == "acquired"
            lower = await client.request_lock(d, LockType.QUEUE_QUEUED, "queue_server")
            assert not lower.success and lower.lock_key is None
            queue = await client.request_lock(
                d, LockType.QUEUE_EXECUTING, "queue_server", reason="plan 7"
            )
            assert queue.success
            old, new = await ws.update(d), await ws.update(d)
            assert old["action"] == "force_released" and old["lock"]["user_id"] == "operator"
            assert old["lock"]["lock_type"] == "MANUAL_OPERATOR" and old["reason"] == "plan 7"
            assert new["action"] == "acquired" and new["lock"]["lock_type"] == "QUEUE_EXECUTING"
            assert manual.lock_key is not None and queue.lock_key is not None
            assert (
                await client.release_status(
                    device_name=d, lock_key=manual.lock_key, user_id="operator"
                )
                == 403
            )
            maint = await client.request_lock(d, LockType.MAINTENANCE, "admin")
            assert maint.success and (await ws.update(d))["action"] == "force_released"
            assert (await client.get_lock_status(d)).lock.lock_type is LockType.MAINTENANCE  # type: ignore[union-attr]
            assert maint.lock_key is not None
            await client.release_lock(d, maint.lock_key, "admin")

    run(bluesky_app, test)


def test_equal_priority_does_not_evict(bluesky_app: App) -> None:
    async def test(client: Client) -> None:
        d = device()
        first = await client.request_lock(d, LockType.MANUAL_OPERATOR, "alice")
        second = await client.request_lock(d, LockType.MANUAL_OPERATOR, "bob")
        assert first.success and not second.success  # denied with 200, never a 4xx
        assert second.lock_key is None and second.message.startswith(
            f"Device {d} is locked by MANUAL_OPERATOR"
        )
        status = await client.get_lock_status(d)
        assert status.lock is not None and status.lock.user_id == "alice"
        self_preempt = await client.request_lock(d, LockType.QUEUE_EXECUTING, "alice")
        assert self_preempt.success  # a user's more important work may take over its own lock

    run(bluesky_app, test)


def test_the_key_goes_only_to_its_owner(bluesky_app: App) -> None:
    async def test(client: Client) -> None:
        d = device()
        async with Socket(bluesky_app) as ws:
            await ws.next("initial_status")
            granted = await client.request_lock(d, LockType.MANUAL_OPERATOR, "operator")
            assert granted.lock_key is not None
            await ws.update(d)
            await ws.ws.send(json.dumps({"type": "get_status"}))
            await ws.next("status_response")
            await client.release_lock(d, granted.lock_key, "operator")
            await ws.update(d)
            async with client.session.get(client.base + "/api/locks/status") as r:
                listed = await r.text()
            async with client.session.get(client.base + f"/api/locks/device/{d}") as r:
                one = await r.text()
            assert granted.lock_key not in "\n".join([*ws.raw, listed, one])
        async with Socket(bluesky_app) as late:
            other = await client.request_lock(device(), LockType.QUEUE_QUEUED, "queue_server")
            initial = await late.next("initial_status")
            assert other.lock_key is not None and other.lock_key not in json.dumps(initial)
            assert all(lk["lock_key"] == "" for lk in initial["data"]["locks"])

    run(bluesky_app, test)


def test_check_and_insert_do_not_race(bluesky_app: App) -> None:
    async def test(client: Client) -> None:
        d = device()
        answers = await asyncio.gather(
            *(client.request_lock(d, LockType.MANUAL_OPERATOR, f"user{i}") for i in range(20))
        )
        assert sum(a.success for a in answers) == 1

    run(bluesky_app, test)


def test_websocket_messages(bluesky_app: App) -> None:
    async def test(client: Client) -> None:
        d = device()
        async with Socket(bluesky_app) as ws:
            initial = await ws.next()
            assert initial["type"] == "initial_status"
            assert set(initial["data"]) == {"locks", "total_count", "timestamp"}
            await ws.ws.send(json.dumps({"type": "ping"}))
            pong = await ws.next("pong")
            assert datetime.datetime.fromisoformat(pong["timestamp"]).tzinfo is None
            await ws.ws.send("not json")
            await ws.ws.send(json.dumps({"type": "get_status"}))
            status = await ws.next("status_response")
            LocksStatusResponse(**status["data"])
            granted = await client.request_lock(
                d, LockType.QUEUE_QUEUED, "queue_server", timeout=None, plan_uid="p1"
            )
            up = await ws.update(d)
            assert set(up) == {"type", "action", "device_name", "lock", "timestamp"}
            assert (
                up["action"] == "acquired"
                and up["lock"]["plan_uid"] == "p1"
                and up["lock"]["expires_at"] is None
            )
            assert granted.lock_key is not None
            await client.release_lock(d, granted.lock_key, "queue_server")
            down = await ws.update(d)
            assert down["action"] == "released" and down["lock"]["user_id"] == "queue_server"

    run(bluesky_app, test)


def test_requests_and_releases_answer_as_the_original(bluesky_app: App) -> None:
    async def test(client: Client) -> None:
        d = device()
        for bad in (-1, "soon"):
            body = {
                "device_name": d,
                "lock_type": "MANUAL_OPERATOR",
                "user_id": "u",
                "timeout": bad,
            }
            async with client.session.post(client.base + "/api/lock/request", json=body) as r:
                assert r.status == 422
        async with client.session.post(
            client.base + "/api/lock/request",
            json={"device_name": d, "lock_type": "OWNER", "user_id": "u"},
        ) as r:
            assert r.status == 422
        for timeout in (None, 0):
            g = await client.request_lock(d, LockType.MANUAL_OPERATOR, "u", timeout=timeout)
            assert g.success and g.expires_at is None and g.lock_key is not None
            await client.release_lock(d, g.lock_key, "u")
        assert (
            await client.release_status(device_name=d, lock_key=str(uuid.uuid4()), user_id="u")
            == 404
        )
        g = await client.request_lock(d, LockType.MANUAL_OPERATOR, "u")
        assert g.lock_key is not None
        assert (
            await client.release_status(device_name=d, lock_key=str(uuid.uuid4()), user_id="u")
            == 403
        )
        assert (
            await client.release_status(device_name=d, lock_key=g.lock_key, user_id="mallory")
            == 403
        )
        async with client.session.post(
            client.base + "/api/lock/release", params={"device_name": d}
        ) as r:
            assert r.status == 422
        assert (await client.get_lock_status(d)).locked
        async with client.session.post(
            client.base + "/api/lock/force_release", params={"device_name": d}
        ) as r:
            assert r.status == 403
        async with client.session.post(
            client.base + "/api/lock/force_release", params={"device_name": d}, headers=ADMIN
        ) as r:
            assert r.status == 200 and (await r.json())["success"] is True
        assert not (await client.get_lock_status(d)).locked
        assert await client.release_status(device_name=d, lock_key=g.lock_key, user_id="u") == 404

    run(bluesky_app, test)


def test_an_expired_lock_leaves_at_its_expiry(bluesky_app: App) -> None:
    """The original listed expired locks until a sweep every 60 s."""

    async def test(client: Client) -> None:
        d = device()
        async with Socket(bluesky_app) as ws:
            await ws.next("initial_status")
            g = await client.request_lock(d, LockType.MANUAL_OPERATOR, "u", timeout=1)
            acquired = await ws.update(d)
            gone = await ws.update(d)
            assert gone["action"] == "force_released" and gone["reason"] == "expired"
            took = datetime.datetime.fromisoformat(
                gone["timestamp"]
            ) - datetime.datetime.fromisoformat(acquired["lock"]["acquired_at"])
            assert 1.0 <= took.total_seconds() < 2.0  # at its expiry, not a 60 s sweep later
            assert not any(lk.device_name == d for lk in (await client.get_all_locks()).locks)
            assert g.lock_key is not None
            assert (
                await client.release_status(device_name=d, lock_key=g.lock_key, user_id="u") == 404
            )

    run(bluesky_app, test)


@pytest.mark.parametrize("path", ["/api/health/live", "/api/health/ready"])
def test_health(bluesky_app: App, path: str) -> None:
    async def test(client: Client) -> None:
        async with client.session.get(client.base + path) as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert (await r.json())["status"] in ("alive", "ready")

    run(bluesky_app, test)
