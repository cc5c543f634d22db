"""Across processes, through one `interlock serve`: two LabLink routers, each with its
own clients, share a power supply; Packing Tool PCs race for a crashed PC's stale lock."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Iterator

import pytest
import requests
from support import Proc, Web, wait_until

import interlock


@pytest.fixture
def interlock_serve(tmp_path: pathlib.Path) -> Iterator[str]:
    """The `interlock serve` command (the package's console script), in its own process."""
    import shutil
    import sys

    exe = shutil.which("interlock", path=str(pathlib.Path(sys.executable).parent))
    assert exe is not None
    log = tmp_path / "serve.log"
    proc = Proc(["serve", "--bind", "127.0.0.1:0"], log, exe=exe)
    url = proc.line("interlock serving at ").strip()
    yield url
    proc.stop()


def test_two_lablink_routers_share_a_power_supply(
    interlock_serve: str, tmp_path: pathlib.Path
) -> None:
    routers = [
        Web(["apps.py", "lablink", "--url", interlock_serve], tmp_path / f"router{i}.log")
        for i in range(2)
    ]
    try:
        eq = f"ps_{uuid.uuid4().hex[:6]}"
        # One client through each router: each sees the other's lock.
        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        r1, r2 = routers[0].url + "/api/locks", routers[1].url + "/api/locks"
        assert (
            requests.post(
                f"{r1}/acquire", json={"equipment_id": eq, "session_id": a}, timeout=10
            ).json()["status"]
            == "locked"
        )
        assert (
            requests.post(
                f"{r2}/acquire", json={"equipment_id": eq, "session_id": b}, timeout=10
            ).status_code
            == 409
        )
        st = requests.get(f"{r2}/status/{eq}", timeout=10).json()
        assert st["locked"] and st["session_id"] is None and a not in json.dumps(st)
        cmd = {"command_id": "c", "equipment_id": eq, "action": "set_voltage", "session_id": b}
        assert (
            requests.post(
                f"{routers[1].url}/api/equipment/{eq}/command", json=cmd, timeout=10
            ).status_code
            == 403
        )
        queued = requests.post(
            f"{r2}/acquire",
            json={"equipment_id": eq, "session_id": b, "queue_if_busy": True},
            timeout=10,
        )
        assert queued.json()["status"] == "queued"
        requests.post(f"{r1}/release", json={"equipment_id": eq, "session_id": a}, timeout=10)
        wait_until(
            lambda: (
                requests.post(
                    f"{r2}/acquire", json={"equipment_id": eq, "session_id": b}, timeout=10
                ).json()["status"]
                == "refreshed"
            ),
            "the other router's client to be granted",
        )
        requests.post(f"{r2}/release", json={"equipment_id": eq, "session_id": b}, timeout=10)

        # Two client processes, one per router, take turns driving it.
        log = tmp_path / "holds.log"
        clients = [
            Proc(
                ["workers.py", "lablink-client", r.url, eq, "6", str(log)],
                tmp_path / f"client{i}.log",
            )
            for i, r in enumerate(routers)
        ]
        for c in clients:
            assert c.wait() == 0, c.output()
        holds = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
        assert len(holds) == 12
        for (_, e1, f1), (s2, _, f2) in zip(holds, holds[1:]):
            assert e1 <= s2, "two clients drove the power supply at once"
            assert f2 > f1  # each hold had a newer fence
    finally:
        for r in routers:
            r.stop()
    for r in routers:
        assert a not in r.output() and b not in r.output()  # no credential in a log


def test_exactly_one_pc_takes_over_a_stale_lock(
    interlock_serve: str, tmp_path: pathlib.Path
) -> None:
    stale = "1.0"
    with interlock.connect(interlock_serve) as eng:
        for round_ in range(3):
            folder = str(tmp_path / f"Session_{round_}")
            holder = Proc(
                ["workers.py", "packing-hold", interlock_serve, folder, stale],
                tmp_path / f"hold{round_}.log",
            )
            assert holder.line("locked") == ""
            holder.kill()  # the PC crashes: its heartbeats stop
            wait_until(lambda: eng.status(folder)["holders"][0]["stale"], "the lock to turn stale")
            go = tmp_path / f"go{round_}"
            racers = [
                Proc(
                    ["workers.py", "packing-race", interlock_serve, folder, stale, name, str(go)],
                    tmp_path / f"{name}{round_}.log",
                )
                for name in ("Maria", "Olena", "Petro")
            ]
            for r in racers:
                r.line("ready")
            go.touch()
            results = [json.loads("{" + r.line("{", limit=30)) for r in racers]
            (tmp_path / f"go{round_}.end").touch()
            for r in racers:
                assert r.wait() == 0, r.output()
            assert sum(res["won"] for res in results) == 1, results
            for res in results:
                ok, msg = res["acquired"]
                if res["won"]:
                    assert ok and msg is None
                else:
                    assert not ok and "active on another PC" in msg
