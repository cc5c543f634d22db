"""Processes of the cross-process compat tests, each a "PC" or a client of its own.

python workers.py packing-hold URL DIR STALE           lock DIR, print "locked", wait
python workers.py packing-race URL DIR STALE NAME GO   when file GO exists, take DIR over
                                                       (and hold it until GO.end exists)
python workers.py lablink-client ROUTER EQ ROUNDS LOG  use EQ exclusively ROUNDS times
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any, Callable

import requests

import interlock
from interlock.compat.packing_tool import SessionLockManager


def packing_hold(url: str, folder: str, stale: str) -> None:
    eng = interlock.connect(url)
    m = SessionLockManager(
        eng, user_name="Ivan Petrenko", hostname="DESKTOP-PC1", stale_timeout=float(stale)
    )
    ok, msg = m.acquire_lock("M", folder)
    print("locked" if ok else f"refused {msg}", flush=True)
    time.sleep(3600)  # until killed: a crash


def packing_race(url: str, folder: str, stale: str, name: str, go: str) -> None:
    eng = interlock.connect(url)
    m = SessionLockManager(eng, user_name=name, hostname=f"PC-{name}", stale_timeout=float(stale))
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    won = m.force_release_lock(folder)
    acquired = m.acquire_lock("M", folder)
    print(json.dumps({"won": won, "acquired": list(acquired)}), flush=True)
    while not os.path.exists(go + ".end"):
        time.sleep(0.01)
    m.close()
    eng.close()


def lablink_client(router: str, eq: str, rounds: str, log: str) -> None:
    """The GUI's use of a power supply: acquire (queueing when busy), wait for the lock,
    command it, release; each hold is written to `log` as `start end fence`."""
    base = router + "/api/locks"
    session_id = str(uuid.uuid4())
    with open(log, "a") as out:
        for i in range(int(rounds)):
            body: dict[str, Any] = {
                "equipment_id": eq,
                "session_id": session_id,
                "lock_mode": "exclusive",
                "timeout_seconds": 30,
                "queue_if_busy": True,
            }
            while True:
                answer = requests.post(f"{base}/acquire", json=body, timeout=10)
                assert answer.ok, answer.text
                if answer.json()["status"] in ("locked", "refreshed"):
                    break
                time.sleep(0.01)
            start = time.time()
            cmd = requests.post(
                f"{router}/api/equipment/{eq}/command",
                json={
                    "command_id": f"c{i}",
                    "equipment_id": eq,
                    "action": "set_voltage",
                    "parameters": {"voltage": 12.0},
                    "session_id": session_id,
                },
                timeout=10,
            )
            cmd.raise_for_status()
            time.sleep(0.02)
            end = time.time()
            released = requests.post(
                f"{base}/release", json={"equipment_id": eq, "session_id": session_id}, timeout=10
            )
            assert released.json()["status"] == "released", released.text
            out.write(f"{start} {end} {cmd.json()['fence']}\n")
            out.flush()
    print("done", flush=True)


if __name__ == "__main__":
    commands: dict[str, Callable[..., None]] = {
        "packing-hold": packing_hold,
        "packing-race": packing_race,
        "lablink-client": lablink_client,
    }
    cmd, *args = sys.argv[1:]
    commands[cmd](*args)
