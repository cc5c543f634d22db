"""interlock.compat.packing_tool: the Packing Tool's SessionLockManager, on one embedded
engine shared by several "PCs" and on a server that each PC reaches through its own
network link (a proxy that a test can cut). The seed's scenarios 1-4 are ported here."""

from __future__ import annotations

import datetime
import pathlib
import threading
import time
import uuid
from typing import Iterator

import pytest
from support import MODES, Proxy, Served, wait_until

import interlock
from interlock.compat.packing_tool import SessionLockManager

STALE = 1.5  # seconds (the tool's 120, shortened)


class Lab:
    """PCs sharing session locks: on one embedded engine, or each through its own link to
    one server. `interrupt(pc)` stops a PC's heartbeats reaching the engine."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.served = Served() if mode == "remote" else None
        self.embedded = interlock.Engine() if mode == "embedded" else None
        self._links: dict[int, tuple[Proxy, interlock.Engine]] = {}

    def pc(self, user: str, stale: float = STALE) -> SessionLockManager:
        if self.embedded is not None:
            return SessionLockManager(
                self.embedded,
                user_name=user,
                hostname=f"PC-{user}",
                app_version="1.2.0",
                stale_timeout=stale,
            )
        assert self.served is not None
        proxy = Proxy(int(self.served.url.rsplit(":", 1)[1]))
        eng = interlock.connect(proxy.url)
        m = SessionLockManager(
            eng, user_name=user, hostname=f"PC-{user}", app_version="1.2.0", stale_timeout=stale
        )
        self._links[id(m)] = (proxy, eng)
        return m

    def cut(self, pc: SessionLockManager) -> None:
        """Its heartbeats stop reaching the engine (a crash, or the network going down)."""
        if self.embedded is None:
            self._links[id(pc)][0].cut()
        # Embedded: a PC's heartbeats are its own update_heartbeat calls; it makes no more.

    def restore(self, pc: SessionLockManager) -> None:
        if self.embedded is None:
            self._links[id(pc)][0].restore()

    def close(self) -> None:
        for proxy, eng in self._links.values():
            proxy.close()
            eng.close()
        if self.served is not None:
            self.served.close()
        if self.embedded is not None:
            self.embedded.close()


@pytest.fixture(params=MODES)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    lab = Lab(request.param)
    yield lab
    lab.close()


@pytest.fixture
def session_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "clients" / "M" / "sessions" / f"Session_{uuid.uuid4().hex[:6]}"
    d.mkdir(parents=True)
    return d


def test_acquire_release_and_own_lock(lab: Lab, session_dir: pathlib.Path) -> None:
    ivan, maria = lab.pc("Ivan Petrenko"), lab.pc("Maria Ivanova")
    assert SessionLockManager.HEARTBEAT_INTERVAL == 60 and SessionLockManager.STALE_TIMEOUT == 120
    assert ivan.acquire_lock("M", session_dir, worker_id="worker_001", worker_name="Ivan") == (
        True,
        None,
    )
    assert ivan.acquire_lock("M", session_dir) == (True, None)  # its own lock again
    assert ivan.acquire_lock("M", str(session_dir) + "/") == (True, None)  # the same folder
    ok, msg = maria.acquire_lock("M", session_dir)
    assert not ok and msg is not None
    assert msg.startswith("Session is currently active on another PC")
    assert "Ivan Petrenko" in msg and "PC-Ivan Petrenko" in msg and "stale" not in msg
    assert maria.release_lock(session_dir) is False
    assert ivan.is_locked(session_dir)[0] is True
    assert ivan.release_lock(session_dir) is True
    assert ivan.release_lock(session_dir) is True  # absent
    assert ivan.is_locked(session_dir) == (False, None)
    assert maria.acquire_lock("M", session_dir) == (True, None)


def test_is_locked_gives_the_lock_file_fields(lab: Lab, session_dir: pathlib.Path) -> None:
    ivan, maria = lab.pc("Ivan Petrenko"), lab.pc("Maria Ivanova")
    ivan.acquire_lock("M", session_dir, worker_id="worker_001", worker_name="Ivan P.")
    locked, info = maria.is_locked(session_dir)
    assert locked and info is not None
    assert info["locked_by"] == "PC-Ivan Petrenko" and info["user_name"] == "Ivan Petrenko"
    assert info["app_version"] == "1.2.0" and isinstance(info["process_id"], int)
    assert info["worker_id"] == "worker_001" and info["worker_name"] == "Ivan P."
    for key in ("lock_time", "heartbeat"):
        assert datetime.datetime.fromisoformat(info[key]).utcoffset() is not None
    assert info["stale"] is False and maria.is_lock_stale(info) is False
    sessions = maria.get_all_active_sessions()
    rows = [r for r in sessions["M"] if r["session_path"] == str(session_dir)]
    assert len(rows) == 1 and rows[0]["session_name"] == session_dir.name
    assert rows[0]["lock_info"]["user_name"] == "Ivan Petrenko"


def test_update_heartbeat(lab: Lab, session_dir: pathlib.Path) -> None:
    ivan, maria = lab.pc("Ivan"), lab.pc("Maria")
    assert ivan.update_heartbeat(session_dir) is False  # nothing held
    ivan.acquire_lock("M", session_dir)
    assert ivan.update_heartbeat(session_dir) is True
    assert maria.update_heartbeat(session_dir) is False  # not hers


def test_scenario_1_both_users_start_the_same_session_at_the_same_time(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    """Only one user locks the session; the other sees an error."""
    pcs = [lab.pc("Ivan"), lab.pc("Maria")]
    for round_ in range(10):
        folder = tmp_path / f"Session_{round_}"
        barrier = threading.Barrier(len(pcs))
        results: list[tuple[bool, str | None]] = []

        def start(pc: SessionLockManager) -> None:
            barrier.wait()
            results.append(pc.acquire_lock("M", folder))

        threads = [threading.Thread(target=start, args=(pc,)) for pc in pcs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(ok for ok, _ in results) == [False, True]
        refused = next(msg for ok, msg in results if not ok)
        assert refused is not None and "active on another PC" in refused


def test_scenario_2_the_application_crashes(lab: Lab, session_dir: pathlib.Path) -> None:
    """The heartbeat stops; after the stale timeout the lock can be force-released."""
    ivan, maria = lab.pc("Ivan Petrenko"), lab.pc("Maria Ivanova")
    ivan.acquire_lock("M", session_dir)
    lab.cut(ivan)  # the crash
    wait_until(lambda: maria.is_locked(session_dir)[1]["stale"], "the lock to turn stale")  # type: ignore[index]
    ok, msg = maria.acquire_lock("M", session_dir)
    assert not ok and msg is not None and "stale" in msg
    assert "Ivan Petrenko" in msg and "PC-Ivan Petrenko" in msg and "minutes" in msg
    locked, info = maria.is_locked(session_dir)
    assert locked and info is not None and maria.is_lock_stale(info)
    assert maria.force_release_lock(session_dir) is True
    assert maria.acquire_lock("M", session_dir) == (True, None)
    _, info = maria.is_locked(session_dir)
    assert info is not None and info["user_name"] == "Maria Ivanova" and not info["stale"]
    lab.restore(ivan)
    wait_until(
        lambda: not ivan.update_heartbeat(session_dir), "the crashed PC to learn it lost the lock"
    )
    assert ivan.acquire_lock("M", session_dir)[0] is False


def test_scenario_3_forgot_to_end_the_session(lab: Lab, session_dir: pathlib.Path) -> None:
    """While the application runs and heartbeats, the lock stays active; closed without
    ending the session, it turns stale."""
    ivan, maria = lab.pc("Ivan"), lab.pc("Maria")
    ivan.acquire_lock("M", session_dir)
    deadline = time.monotonic() + 2.5 * STALE
    while time.monotonic() < deadline:
        assert ivan.update_heartbeat(session_dir)
        time.sleep(STALE / 5)
    ok, msg = maria.acquire_lock("M", session_dir)
    assert not ok and msg is not None and "active on another PC" in msg
    assert maria.force_release_lock(session_dir) is False
    lab.cut(ivan)  # the application closed without "End Session"
    wait_until(
        lambda: maria.force_release_lock(session_dir), "the lock to turn stale and be taken over"
    )


def test_scenario_4_network_interruption(lab: Lab, session_dir: pathlib.Path) -> None:
    """Short interruptions (under the stale timeout) are fine; longer ones make the lock
    stale, and another PC may take it over."""
    stale = 3.0
    ivan, maria = lab.pc("Ivan", stale), lab.pc("Maria", stale)
    ivan.acquire_lock("M", session_dir)
    lab.cut(ivan)
    time.sleep(stale / 6)
    lab.restore(ivan)
    wait_until(lambda: ivan.update_heartbeat(session_dir), "the heartbeat to get through again")
    locked, info = maria.is_locked(session_dir)
    assert locked and info is not None and not info["stale"] and info["user_name"] == "Ivan"
    lab.cut(ivan)
    wait_until(lambda: maria.is_locked(session_dir)[1]["stale"], "the lock to turn stale", 20)  # type: ignore[index]
    assert maria.force_release_lock(session_dir) is True
    lab.restore(ivan)
    assert ivan.update_heartbeat(session_dir) is False
    assert maria.is_locked(session_dir)[1]["user_name"] == "Maria"  # type: ignore[index]


def test_force_release_rechecks_freshness(lab: Lab, session_dir: pathlib.Path) -> None:
    """The original deleted whatever lock file it found; a live lock is refused."""
    ivan, maria = lab.pc("Ivan"), lab.pc("Maria")
    ivan.acquire_lock("M", session_dir)
    assert maria.force_release_lock(session_dir) is False
    assert ivan.update_heartbeat(session_dir) is True
    assert maria.is_locked(session_dir)[1]["user_name"] == "Ivan"  # type: ignore[index]


def test_staleness_never_compares_two_pcs_clocks(
    lab: Lab, session_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maria's clock is an hour ahead: Ivan's live lock is still live for her."""
    import interlock.compat.packing_tool as packing

    ivan, maria = lab.pc("Ivan"), lab.pc("Maria")
    ivan.acquire_lock("M", session_dir)
    real = time.time
    monkeypatch.setattr(packing.time, "time", lambda: real() + 3600)
    _, info = maria.is_locked(session_dir)
    assert info is not None and info["stale"] is False and maria.is_lock_stale(info) is False
    assert maria.force_release_lock(session_dir) is False
    ok, msg = maria.acquire_lock("M", session_dir)
    assert not ok and msg is not None and "stale" not in msg


def test_an_unreachable_lock_never_reads_as_free(lab: Lab, session_dir: pathlib.Path) -> None:
    """The original read a corrupt lock file as no lock."""
    ivan = lab.pc("Ivan")
    ivan.acquire_lock("M", session_dir)
    if lab.mode == "remote":
        maria = lab.pc("Maria")
        lab.cut(maria)
        with pytest.raises(ConnectionError):
            maria.is_locked(session_dir)
        ok, msg = maria.acquire_lock("M", session_dir)
        assert not ok and msg is not None and "cannot be reached" in msg
    else:
        with interlock.Engine() as other:
            gone = SessionLockManager(other, user_name="Maria")
        with pytest.raises(interlock.EngineClosed):
            gone.is_locked(session_dir)
