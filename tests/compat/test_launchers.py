"""`python -m interlock.compat.NAME`: each module on its own, on its own engine and with
`--url`; access logs without credentials; locks that survive a restart with a journal;
and the modules that must import without FastAPI."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import textwrap
import uuid
from typing import Iterator

import pytest
import requests
from support import MODES, Proc, Served, Web, free_port, wait_until

import interlock


@pytest.fixture(params=MODES)
def url_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    if request.param == "embedded":
        yield []
        return
    served = Served()
    yield ["--url", served.url]
    served.close()


def launch(name: str, tmp_path: pathlib.Path, *args: str, health: str = "/health") -> Web:
    return Web(["-m", f"interlock.compat.{name}", *args], tmp_path / f"{name}.log", health)


def test_lablink(url_args: list[str], tmp_path: pathlib.Path) -> None:
    web = launch("lablink", tmp_path, "--admin-token", "t0p", *url_args)
    try:
        sid = str(uuid.uuid4())
        base = web.url + "/api/locks"
        assert (
            requests.post(
                f"{base}/acquire", json={"equipment_id": "ps_abc123", "session_id": sid}, timeout=10
            ).json()["status"]
            == "locked"
        )
        forced = requests.post(
            f"{base}/release",
            json={"equipment_id": "ps_abc123", "session_id": "admin_session", "force": True},
            headers={"Authorization": "Bearer t0p"},
            timeout=10,
        )
        assert forced.json()["was_forced"] is True
        created = requests.post(
            f"{base}/sessions/create", json={"client_name": "Lab PC #3"}, timeout=10
        ).json()["session_id"]
        assert requests.get(f"{base}/sessions/{created}", timeout=10).status_code == 200
        assert requests.delete(f"{base}/sessions/{created}", timeout=10).status_code == 200
    finally:
        web.stop()
    log = web.output()
    assert "/api/locks/sessions/***" in log  # the access log was on, and redacted
    assert sid not in log and created not in log and "t0p" not in log


def test_alchemist(url_args: list[str], tmp_path: pathlib.Path) -> None:
    web = launch("alchemist", tmp_path, *url_args)
    try:
        api = web.url + "/api/v1"
        session = requests.get(f"{api}/sessions/abc", timeout=5).json()
        assert (
            session["session_id"] == "abc"
            and session["search_space"] == {}
            and session["data"] == {}
        )
        assert session["created_at"]
        assert requests.get(f"{api}/sessions/abc/state", timeout=5).json()["model_trained"] is False
        token = requests.post(
            f"{api}/sessions/abc/lock",
            json={"locked_by": "MATLAB", "client_id": "matlab-001"},
            timeout=5,
        ).json()["lock_token"]
        assert (
            requests.delete(f"{api}/sessions/abc/lock?lock_token={token}", timeout=5).json()[
                "locked"
            ]
            is False
        )
        assert (
            requests.delete(f"{api}/sessions/abc/lock", timeout=5).status_code == 403
        )  # no admin token set
    finally:
        web.stop()
    log = web.output()
    assert "lock_token=***" in log and token not in log


def test_alchemist_locks_survive_a_restart_with_a_journal(tmp_path: pathlib.Path) -> None:
    journal = str(tmp_path / "locks.db")
    web = launch("alchemist", tmp_path, "--journal", journal)
    api = web.url + "/api/v1"
    try:
        token = requests.post(
            f"{api}/sessions/s1/lock", json={"locked_by": "Optimizer"}, timeout=5
        ).json()["lock_token"]
    finally:
        web.stop()
    web = launch("alchemist", tmp_path, "--journal", journal)
    api = web.url + "/api/v1"
    try:
        state = requests.get(f"{api}/sessions/s1/lock", timeout=5).json()
        assert state["locked"] is True and state["locked_by"] == "Optimizer"
        assert (
            requests.post(
                f"{api}/sessions/s1/lock", json={"locked_by": "Other"}, timeout=5
            ).status_code
            == 409
        )
        assert (
            requests.delete(
                f"{api}/sessions/s1/lock", params={"lock_token": token}, timeout=5
            ).json()["locked"]
            is False
        )
    finally:
        web.stop()


def test_bluesky(url_args: list[str], tmp_path: pathlib.Path) -> None:
    web = launch("bluesky", tmp_path, *url_args, health="/api/health/live")
    try:
        assert requests.get(web.url + "/api/health/ready", timeout=5).json()["status"] == "ready"
        body = {
            "device_name": "detector1",
            "lock_type": "MANUAL_OPERATOR",
            "user_id": "operator123",
        }
        key = requests.post(web.url + "/api/lock/request", json=body, timeout=5).json()["lock_key"]
        params = {"device_name": "detector1", "lock_key": key, "user_id": "operator123"}
        assert requests.post(web.url + "/api/lock/release", params=params, timeout=5).json()[
            "success"
        ]
    finally:
        web.stop()
    log = web.output()
    assert "lock_key=***" in log and key not in log


def test_bluesky_listens_on_60620_by_default(tmp_path: pathlib.Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "interlock.compat.bluesky", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "60620" in help_text
    # The port is in Linux's range for the local ends of connections: one of this run's
    # own may hold it (seen once in CI). Only a port that can be bound is tried.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(("127.0.0.1", 60620))
        except OSError as e:
            pytest.skip(f"port 60620 is taken on this machine: {e}")
    proc = Proc(["-m", "interlock.compat.bluesky"], tmp_path / "default.log")
    try:

        def up() -> bool:
            assert proc.alive(), proc.output()
            try:
                return requests.get("http://127.0.0.1:60620/api/health/live", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_until(up, "the service on port 60620", 30)
    finally:
        proc.stop()


def test_gaia(url_args: list[str], tmp_path: pathlib.Path) -> None:
    web = launch("gaia", tmp_path, "--admin-token", "t0p", *url_args)
    try:
        assert requests.get(web.url + "/api/gaia/locks", timeout=5).json() == {"locks": []}
        assert requests.post(web.url + "/api/gaia/locks/1/release", timeout=5).status_code == 403
        missing = requests.post(
            web.url + "/api/gaia/locks/1/release",
            headers={"Authorization": "Bearer t0p"},
            timeout=5,
        )
        assert missing.status_code == 404
    finally:
        web.stop()
    assert "t0p" not in web.output()


def test_packing_tool_serves_the_pcs_and_prints_the_monitor(tmp_path: pathlib.Path) -> None:
    from interlock.compat.packing_tool import SessionLockManager

    port = free_port()
    server = Proc(
        ["-m", "interlock.compat.packing_tool", "--port", str(port)], tmp_path / "server.log"
    )
    try:
        url = server.line("http://")
        url = "http://" + url.strip()
        with interlock.connect(url) as eng:
            m = SessionLockManager(eng, user_name="Ivan Petrenko", hostname="DESKTOP-PC1")
            assert m.acquire_lock("M", str(tmp_path / "Session_2025-10-28_143045")) == (True, None)
            monitor = subprocess.run(
                [sys.executable, "-m", "interlock.compat.packing_tool", "--url", url],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
            assert "Session_2025-10-28_143045" in monitor and "Ivan Petrenko" in monitor
            assert "DESKTOP-PC1" in monitor and "active" in monitor
            m.close()
    finally:
        assert server.stop() == 0


def test_the_managers_import_without_fastapi() -> None:
    """`pip install ./py` brings no FastAPI: packing_tool and gaia's manager work without
    it; a router says which extra it needs."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("fastapi", "starlette", "pydantic", "uvicorn"):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import interlock
        from interlock.compat.packing_tool import SessionLockManager
        from interlock.compat.gaia import GaiaLockManager
        eng = interlock.Engine()
        assert GaiaLockManager(eng).acquire_lock("/test/folder", "session1", 123)
        assert SessionLockManager(eng).acquire_lock("M", "/s/1") == (True, None)
        for name in ("lablink", "alchemist", "bluesky"):
            try:
                __import__(f"interlock.compat.{name}")
            except ImportError as e:
                assert "interlock[fastapi]" in str(e), e
            else:
                raise AssertionError(name + " imported without FastAPI")
        try:
            import interlock.compat.gaia as g
            g.router(eng)
        except ImportError as e:
            assert "interlock[fastapi]" in str(e), e
        else:
            raise AssertionError("gaia.router() worked without FastAPI")
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
