"""interlock.compat.gaia: GaiaLockManager on an embedded engine and over a server (the
seed's "Testing" section ported as it is), and the dashboard routes under uvicorn."""

from __future__ import annotations

import datetime
import pathlib
import sqlite3
import threading
import uuid
from typing import Iterator
from urllib.parse import quote

import pytest
import requests
from support import App, wait_until

import interlock
from interlock.compat.gaia import GaiaLockManager, normalize

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def manager(engine: interlock.Engine) -> Iterator[GaiaLockManager]:
    m = GaiaLockManager(engine)
    yield m
    m.close()


# --- the seed's "Testing" section (test_gaia_locking.py), as written -----------------------


def test_acquire_lock(manager: GaiaLockManager) -> None:
    """Test lock acquisition"""
    assert manager.acquire_lock("/test/folder", "session1", 123)
    is_locked, info = manager.is_locked("/test/folder")
    assert is_locked
    assert info is not None and info["session_id"] == "session1"


def test_prevent_double_lock(manager: GaiaLockManager) -> None:
    """Test that locks prevent double assignment"""
    manager.acquire_lock("/test/folder", "session1", 123)
    # Second session can't get lock
    assert not manager.acquire_lock("/test/folder", "session2", 124)


def test_release_lock(manager: GaiaLockManager) -> None:
    """Test lock release"""
    manager.acquire_lock("/test/folder", "session1", 123)
    assert manager.release_lock("/test/folder", "session1")
    is_locked, info = manager.is_locked("/test/folder")
    assert not is_locked


def test_prevent_cross_session_release(manager: GaiaLockManager) -> None:
    """Test that wrong session can't release lock"""
    manager.acquire_lock("/test/folder", "session1", 123)
    # session2 can't release session1's lock
    assert not manager.release_lock("/test/folder", "session2")


# --- more ---------------------------------------------------------------------------------


def folder() -> str:
    return f"/gaia/work/{uuid.uuid4().hex[:8]}"


def test_lock_info_and_status(manager: GaiaLockManager) -> None:
    f = folder()
    assert manager.is_locked(f) == (False, None)
    assert manager.acquire_lock(f, "session1", 123)
    _, info = manager.is_locked(f)
    assert info is not None and info["task_id"] == 123 and info["folder_path"] == f
    created = datetime.datetime.fromisoformat(info["created_at"])
    expires = datetime.datetime.fromisoformat(info["expires_at"])
    assert created.utcoffset() is not None and abs((expires - created).total_seconds() - 7200) < 5
    locks = manager.get_lock_status()["locks"]
    mine = [lk for lk in locks if lk["folder_path"] == f]
    assert len(mine) == 1 and set(mine[0]) == {
        "id",
        "folder_path",
        "session_id",
        "task_id",
        "created_at",
        "expires_at",
    }
    assert isinstance(mine[0]["id"], int)
    assert manager.acquire_lock(f, "session1", 123)  # the same task again
    assert not manager.acquire_lock(f, "session1", 124)  # another task of that session


def test_another_manager_sees_the_lock(engine: interlock.Engine) -> None:
    """Two assigners (or the assigner and the dashboard) share the engine's locks."""
    a, b = GaiaLockManager(engine), GaiaLockManager(engine)
    f = folder()
    assert a.acquire_lock(f, "session1", 1)
    assert b.is_locked(f)[0] and not b.acquire_lock(f, "session2", 2)
    assert not b.release_lock(f, "session2")
    assert a.release_lock(f, "session1") and b.acquire_lock(f, "session2", 2)
    a.close()
    b.close()


def test_folder_paths_are_normalised(manager: GaiaLockManager) -> None:
    f = folder()
    assert manager.acquire_lock(f + "/", "session1", 1)
    assert (
        manager.is_locked(f)[0]
        and manager.is_locked(f + "//")[0]
        and manager.is_locked(f + "/x/..")[0]
    )
    assert not manager.acquire_lock(f, "session2", 2)
    assert normalize(f + "/") == f
    # The documented choice: folders are independent; a lock on /a does not cover /a/b.
    assert not manager.is_locked(f + "/sub")[0]
    assert manager.acquire_lock(f + "/sub", "session2", 2)


def test_acquire_lock_is_the_check(engine: interlock.Engine) -> None:
    """The seed's pattern `is_locked` then `acquire_lock` races; `acquire_lock` alone is
    atomic: of many assigners racing for one folder, exactly one gets it."""
    f = folder()
    managers = [GaiaLockManager(engine) for _ in range(12)]
    barrier = threading.Barrier(len(managers))
    won: list[bool] = []

    def assign(i: int) -> None:
        barrier.wait()
        won.append(managers[i].acquire_lock(f, f"session{i}", i))

    threads = [threading.Thread(target=assign, args=(i,)) for i in range(len(managers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 11 + [True]
    for m in managers:
        m.close()


def test_locks_expire_without_a_cleanup(engine: interlock.Engine) -> None:
    m = GaiaLockManager(engine, lock_timeout_hours=1 / 3600)  # one second
    f = folder()
    assert m.acquire_lock(f, "session1", 7)
    wait_until(lambda: not m.is_locked(f)[0], "the lock's expiry")
    assert m.acquire_lock(f, "session2", 8) is True  # no cleanup needed first
    other = folder()
    m.acquire_lock(other, "session3", 9)
    wait_until(lambda: not m.is_locked(other)[0], "the lock's expiry")
    assert m.cleanup_expired_locks() >= 1 and m.cleanup_expired_locks() == 0
    m.close()


def test_a_session_releases_its_lock_through_another_manager(engine: interlock.Engine) -> None:
    """The seed's tests make a new `GaiaLockManager()` each time: a session's lock is the
    session's, whichever manager took it."""
    taker, other = GaiaLockManager(engine), GaiaLockManager(engine)
    f = folder()
    assert taker.acquire_lock(f, "session1", 1)
    assert not other.release_lock(f, "session2")
    assert other.is_locked(f)[0]
    assert other.release_lock(f, "session1")
    assert other.is_locked(f) == (False, None)
    assert other.acquire_lock(f, "session2", 2)
    assert not taker.acquire_lock(f, "session1", 1)  # its old lock is gone, not back
    taker.close()
    other.close()


def test_lock_history(manager: GaiaLockManager) -> None:
    f = folder()
    manager.acquire_lock(f, "session1", 5)
    manager.release_lock(f, "session1")
    manager.acquire_lock(f, "session2", 6)
    rows = manager.get_lock_history(f)
    assert [(r["session_id"], r["task_id"], r["status"]) for r in rows] == [
        ("session1", 5, "released"),
        ("session2", 6, "active"),
    ]
    assert rows[0]["released_at"] is not None and rows[1]["released_at"] is None


def test_with_a_journal_locks_and_history_survive_a_restart(tmp_path: pathlib.Path) -> None:
    journal = tmp_path / "locks.db"
    f = folder()
    with interlock.Engine(journal=str(journal)) as eng:
        m = GaiaLockManager(eng)
        m.acquire_lock(f, "session1", 11)
        m.acquire_lock(f + "-done", "session1", 12)
        m.release_lock(f + "-done", "session1")
    with interlock.Engine(journal=str(journal)) as eng:
        m = GaiaLockManager(eng)
        locked, info = m.is_locked(f)
        assert (
            locked
            and info is not None
            and info["session_id"] == "session1"
            and info["task_id"] == 11
        )
        rows = {(r["folder_path"], r["status"]) for r in m.get_lock_history()}
        assert {(f, "active"), (f + "-done", "released")} <= rows
    with sqlite3.connect(journal) as db:  # lock_history is the journal's history table
        kinds = [
            k
            for (k,) in db.execute(
                "SELECT kind FROM history WHERE resource = ? ORDER BY seq", (f + "-done",)
            )
        ]
    assert kinds == ["acquired", "released"]


def test_default_engines(tmp_path: pathlib.Path) -> None:
    """`GaiaLockManager()` as the seed's dashboard makes one per request: they share a
    process's engine, and `gaia_locks_dir` gives that engine a journal."""
    f = folder()
    assert GaiaLockManager().acquire_lock(f, "session1", 1)
    assert GaiaLockManager().is_locked(f)[0]
    d = tmp_path / "GAIA_HOME" / "locks"
    assert GaiaLockManager(gaia_locks_dir=str(d)).acquire_lock(f, "session1", 1)
    assert (d / "locks.db").exists() and GaiaLockManager(gaia_locks_dir=str(d)).is_locked(f)[0]


# --- the dashboard routes -------------------------------------------------------------------


def test_dashboard_routes(gaia_app: App) -> None:
    with gaia_app.engine() as eng:
        m = GaiaLockManager(eng)
        f = folder()
        assert m.acquire_lock(f, "session1", 42)
        listed = requests.get(f"{gaia_app.url}/api/gaia/locks", timeout=10).json()
        mine = [lk for lk in listed["locks"] if lk["folder_path"] == f]
        assert len(mine) == 1 and mine[0]["session_id"] == "session1" and mine[0]["task_id"] == 42
        lock_id = mine[0]["id"]
        for url in (
            f"/api/gaia/locks/{quote(f, safe='')}",
            f"/api/gaia/locks/{f}",
            f"/api/gaia/locks/{f[1:]}/",
        ):
            one = requests.get(gaia_app.url + url, timeout=10).json()
            assert one["folder_path"] == f and one["is_locked"] is True, url
            assert one["lock_info"]["id"] == lock_id
        free = requests.get(f"{gaia_app.url}/api/gaia/locks/{f}-free", timeout=10).json()
        assert free == {"folder_path": f + "-free", "is_locked": False, "lock_info": None}

        release = f"{gaia_app.url}/api/gaia/locks/{lock_id}/release"
        refused = requests.post(release, timeout=10)
        assert refused.status_code == 403 and refused.json()["success"] is False
        assert (
            requests.post(
                release, headers={"Authorization": "Bearer guess"}, timeout=10
            ).status_code
            == 403
        )
        assert m.is_locked(f)[0]
        missing = requests.post(
            f"{gaia_app.url}/api/gaia/locks/999999/release", headers=ADMIN, timeout=10
        )
        assert missing.status_code == 404 and missing.json()["success"] is False
        done = requests.post(release, headers=ADMIN, timeout=10)
        assert (
            done.status_code == 200
            and done.json()["success"] is True
            and done.json()["message"] == "Lock released"
        )
        assert m.is_locked(f) == (False, None)  # really released: the original's route was a stub
        assert m.acquire_lock(f, "session2", 43)
        assert requests.post(release, headers=ADMIN, timeout=10).status_code == 404  # an old id
        assert m.is_locked(f)[0]
        m.close()
