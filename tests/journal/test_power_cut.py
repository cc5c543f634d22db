"""A power cut keeps what the disk was told to keep (fsync) and may lose anything
else. Killing a process cannot show that (the kernel still writes what it was given),
so this test watches the order of the server's system calls instead (strace): every
answer it sends on a TCP connection leaves after the journal's writes were made
durable (fsync of the -wal, and of the database file after a checkpoint). With
`synchronous=FULL` in WAL mode SQLite syncs the WAL at each commit, and the actor
answers after the commit returns: an acknowledged change survives a power cut (as far
as the disk honours fsync)."""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import Server, slow_disk

# pid, then either "<... call resumed>" or "call(fd<target>": the target is a path, or
# "TCP:[local->peer]" (whose "->" holds a ">").
CALL = re.compile(r"^(\d+) +(?:<\.\.\. (\w+) resumed>|(\w+)\((\d+)<(TCP:\[[^\]]*\]|[^>]*)>)")


@dataclass
class Answer:
    line: str  # the first send of the answer, as strace shows it
    syncs: int  # journal syncs completed since the answer before it
    unsynced: list[str]  # journal files written but not yet synced when it left


def answers_in(trace: Path, journal: Path) -> tuple[list[Answer], int]:
    """The answers the server sent, in order (one per TCP connection: urllib opens one
    for each request), and how many writes to the journal it made."""
    dirty: set[str] = set()
    pending: dict[str, str] = {}  # pid -> path of its unfinished fsync
    answers: list[Answer] = []
    writes = syncs = 0
    conn = ""
    mine = (str(journal), str(journal) + "-wal")

    def synced(path: str) -> None:
        nonlocal syncs
        dirty.discard(path)
        syncs += 1

    for line in trace.read_text(errors="replace").splitlines():
        m = CALL.match(line)
        if not m:
            continue
        pid, resumed, call, _fd, target = m.groups()
        if resumed in ("fsync", "fdatasync"):
            path = pending.pop(pid, None)
            if path is not None and "= 0" in line:
                synced(path)
            continue
        if call is None:
            continue
        if target in mine:
            if call.startswith("pwrite") or call == "write":
                dirty.add(target)
                writes += 1
            elif call in ("fsync", "fdatasync"):
                if "<unfinished" in line:
                    pending[pid] = target
                elif "= 0" in line:
                    synced(target)
        elif target.startswith("TCP") and call in ("write", "writev", "sendto", "sendmsg") and target != conn:
            conn = target
            answers.append(Answer(line[:160], syncs, sorted(dirty)))
            syncs = 0
    return answers, writes


def test_every_answer_leaves_after_its_batch_is_synced(tmp_path: Path) -> None:
    """Over HTTP, one request at a time: each answer belongs to the one batch before it
    (no lease notices or heartbeats from other threads can overlap the next batch), so
    any answer sent while a journal write is unsynced left too early. Every write to the
    journal waits 1 ms first (slowdisk.c), so that an engine that answered before it
    wrote would lose that race every time, not only now and then."""
    assert shutil.which("strace"), "no strace (tests/journal/run.sh installs it)"
    db = tmp_path / "locks.db"
    trace = tmp_path / "trace"
    slow = [arg for k, v in slow_disk(tmp_path, db, 1.0).items() for arg in ("-E", f"{k}={v}")]
    wrap = ("strace", "-f", "-qq", "-yy", "-o", str(trace), *slow,
            "-e", "trace=pwrite64,write,writev,sendto,sendmsg,fsync,fdatasync")
    srv = Server(db, args=(), log=tmp_path / "server.log", wrap=wrap).start(timeout=60)

    writes_state: list[bool] = []  # per request, in order: whether it changes the state

    def call(method: str, path: str, body: Any = None, secret: str = "", want: int = 200) -> Any:
        headers = {"Interlock-Session-Secret": secret} if secret else None
        code, data = srv.http(method, path, body, headers)
        assert code == want, (method, path, code, data)
        writes_state.append(method != "GET")
        return data

    try:
        s = call("POST", "/v1/sessions", {"name": "strace", "metadata": {"pad": "x" * 5000}, "ttl": 600},
                 want=201)
        for i in range(60):
            r = f"r{i % 4}"
            lease = call("POST", f"/v1/sessions/{s['id']}/acquire", {"resources": [r], "ttl": 30, "timeout": 0},
                         secret=s["secret"])["leases"][0]
            call("POST", "/v1/renew", {"resource": r, "token": lease["token"], "ttl": 60})
            if i % 5 == 0:
                call("POST", f"/v1/locks/{r}/force-release", {"reason": "strace"})
            else:
                call("POST", "/v1/release", {"resource": r, "token": lease["token"]})
            call("GET", f"/v1/locks/{r}")
        for i in range(20):
            other = call("POST", "/v1/sessions", {"name": f"s{i}", "metadata": {"pad": "y" * 20000}, "ttl": 600},
                         want=201)
            call("DELETE", f"/v1/sessions/{other['id']}", secret=other["secret"])
    finally:
        # SIGTERM to the server itself (not to strace, which would lose its tail).
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()  # type: ignore[union-attr]
        for c in children:
            os.kill(int(c), signal.SIGTERM)
        srv.proc.wait(30)  # type: ignore[union-attr]
        srv.proc = None
    answers, writes = answers_in(trace, db)
    print(f"{len(answers)} answers checked, {writes} journal writes")
    assert len(answers) == len(writes_state) and writes > 200, (len(answers), len(writes_state), writes)
    early = [f"{a.line} (syncs before it: {a.syncs}, unsynced: {a.unsynced})"
             for a, changes in zip(answers, writes_state) if a.unsynced or (changes and a.syncs == 0)]
    assert not early, f"{len(early)} answers before their batch was synced, e.g.\n" + "\n".join(early[:5])
