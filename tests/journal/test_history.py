"""The history as a table that the sqlite3 command line queries, as a user would (also
while the server runs: WAL readers), its retention by rows and by days, the WAL's
checkpoints, and what waits for the disk (group commit) and what does not."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import Server, sqlite3, sqlite3_cli, wait_until

import interlock

Serve = Callable[..., Server]

COLUMNS = ["resource", "session_id", "session_name", "kind", "fence", "mode", "reason", "at"]


def rows(db: Path, where: str = "1") -> list[dict[str, Any]]:
    out = sqlite3(db, "-json", f"SELECT {', '.join(COLUMNS)} FROM history WHERE {where} ORDER BY seq")
    return json.loads(out) if out.strip() else []


def count(db: Path) -> int:
    return int(sqlite3(db, "SELECT COUNT(*) FROM history"))


def wal_size(db: Path) -> int:
    wal = Path(str(db) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


class Shell:
    """An interactive `sqlite3 FILE` that stays open, to hold a snapshot or the write
    lock from one call to the next."""

    def __init__(self, db: Path):
        self.proc = subprocess.Popen([sqlite3_cli(), str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def run(self, sql: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()

    def ask(self, sql: str) -> str:
        """Runs `sql`, which prints one line; returns that line."""
        self.run(sql)
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def test_the_history_table_as_sqlite3_shows_it_while_the_server_runs(serve: Serve) -> None:
    srv = serve()
    db = srv.journal
    assert sqlite3(db, "PRAGMA journal_mode").strip() == "wal"
    info = sqlite3(db, "PRAGMA table_info(history)")
    columns = [line.split("|")[1] for line in info.splitlines()]
    assert set(COLUMNS) <= set(columns), columns
    # `history` is a view: the indexed table, and its newest rows not indexed yet.
    indexes = sqlite3(db, ".indexes history_indexed").split()
    assert "history_resource" in indexes and "history_session" in indexes, indexes
    for col, index in (("resource", "history_resource"), ("session_id", "history_session")):
        plan = sqlite3(db, f"EXPLAIN QUERY PLAN SELECT * FROM history WHERE {col} = 'x' ORDER BY seq")
        assert f"SEARCH history_indexed USING INDEX {index}" in plan, plan

    eng = interlock.connect(srv.url)
    s = eng.session("ana", metadata={"user": "ana"})
    # Each acknowledged call is in the table at once (committed before it was answered),
    # for a reader in another process, while the server runs.
    lease = s.acquire("psu", reason="calibration", ttl=30.0)
    last = rows(db)[-1]
    assert last == {"resource": "psu", "session_id": s.id, "session_name": "ana", "kind": "acquired",
                    "fence": lease.fence, "mode": "exclusive", "reason": "calibration", "at": last["at"]}
    assert abs(last["at"] - time.time()) < 5
    lease.release()
    assert rows(db)[-1]["kind"] == "released"
    obs = s.acquire("scope", mode="shared")
    eng.force_release("scope", reason="maintenance")
    last = rows(db)[-1]
    assert (last["kind"], last["fence"], last["mode"], last["reason"]) == (
        "force_released", obs.fence, "shared", "maintenance")
    by_resource = rows(db, "resource = 'psu'")
    assert [r["kind"] for r in by_resource] == ["acquired", "released"]
    by_session = [r["kind"] for r in rows(db, f"session_id = '{s.id}'")]
    assert by_session == ["session_opened", "acquired", "released", "acquired", "force_released"]
    s.close()
    assert rows(db)[-1]["kind"] == "session_closed"
    # No token and no secret is in the files, only their hashes.
    secret_s = eng.session("secretive")
    l2 = secret_s.acquire("vault")
    blob = db.read_bytes() + Path(str(db) + "-wal").read_bytes()
    assert l2.token.encode() not in blob
    eng.close()


def test_a_reader_holding_a_snapshot_does_not_stop_the_server(serve: Serve) -> None:
    srv = serve()
    db = srv.journal
    eng = interlock.connect(srv.url)
    s = eng.session("writer")
    s.acquire("a").release()
    reader = Shell(db)
    assert reader.ask("BEGIN; SELECT 'begun';") == "begun"
    before = reader.ask("SELECT COUNT(*) FROM history;")
    for i in range(50):  # each would fail after the busy timeout if the reader blocked it
        s.acquire(f"r{i}").release()
    assert reader.ask("SELECT COUNT(*) FROM history;") == before  # its snapshot
    assert reader.ask("COMMIT; SELECT 'done';") == "done"
    assert int(reader.ask("SELECT COUNT(*) FROM history;")) == int(before) + 100
    reader.close()
    eng.close()


def test_retention_by_rows_keeps_the_table_bounded(tmp_path: Path, serve: Serve) -> None:
    db = tmp_path / "embedded.db"
    eng = interlock.Engine(journal=str(db), keep_rows=50)
    s = eng.session("busy")
    sizes = []
    for i in range(400):
        s.acquire(f"r{i % 5}").release()
        if i % 40 == 0:
            sizes.append(count(db))
    eng.close()
    sizes.append(count(db))
    # At most keep_rows plus a tenth of it (trimmed every keep_rows/10 new rows).
    assert max(sizes) <= 56, sizes
    assert sizes[-1] >= 50
    newest = int(sqlite3(db, "SELECT MAX(seq) FROM history"))
    assert int(sqlite3(db, "SELECT MIN(seq) FROM history")) >= newest - 55
    # The server's flag, and a restart with a smaller retention trims at once.
    srv = serve("--keep-rows", "10", journal=db)
    assert count(db) <= 11
    srv.stop()


def test_retention_by_days(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    eng = interlock.Engine(journal=str(db))
    s = eng.session("old")
    for i in range(30):
        s.acquire(f"r{i}").release()
    eng.close()
    total = count(db)
    # Ten days ago, as far as the table knows: a start with keep_days=1 deletes them.
    for table in ("history_indexed", "history_recent"):  # the two tables of the view
        sqlite3(db, f"UPDATE {table} SET at = at - 10 * 86400 WHERE seq <= 20")
    eng = interlock.Engine(journal=str(db), keep_days=1)
    assert count(db) == total - 20
    assert int(sqlite3(db, "SELECT MIN(seq) FROM history")) == 21
    # A tiny retention (a second) while running: rows age out as new ones come.
    eng.close()
    eng = interlock.Engine(journal=str(db), keep_days=1 / 86400)
    s = eng.session("new")
    time.sleep(1.2)
    for i in range(520):  # more than the 1000 new rows after which it trims
        s.acquire("r").release()
    oldest = float(sqlite3(db, "SELECT MIN(at) FROM history"))
    assert oldest > time.time() - 1.0 - 10, oldest
    assert count(db) < 1042 + total
    assert int(sqlite3(db, "SELECT COUNT(*) FROM history WHERE seq <= 30")) == 0
    eng.close()


def test_the_wal_is_checkpointed_under_a_steady_load_and_gone_after_a_clean_stop(serve: Serve) -> None:
    srv = serve()
    db = srv.journal
    eng = interlock.connect(srv.url)
    pad = {"pad": "x" * 30_000}  # each session open and close writes several pages
    wal = []
    for i in range(400):
        eng.session(f"s{i}", metadata=pad).close()
        if i % 20 == 0:
            wal.append(wal_size(db))
    db_size = db.stat().st_size
    wal.append(wal_size(db))
    # wal_autocheckpoint=1000 pages: the WAL is reused from its start after each
    # checkpoint, so it stays near 1000 pages (4 MB) while 400 x 2 x ~8 pages went through.
    page = int(sqlite3(db, "PRAGMA page_size"))
    assert max(wal) <= 1100 * (page + 24) + 32, (wal, page)
    assert wal[-1] > 0
    assert int(sqlite3(db, "SELECT COUNT(*) FROM history WHERE kind = 'session_closed'")) == 400
    print("wal sizes", wal, "db", db_size)
    eng.close()
    assert srv.stop() == 0
    assert wal_size(db) == 0, "the WAL is not empty after a clean stop"
    assert sqlite3(db, "PRAGMA integrity_check").strip() == "ok"
    # An embedded engine too.
    eng = interlock.Engine(journal=str(db))
    eng.session("one").acquire("x")
    eng.close()
    assert wal_size(db) == 0


def test_writes_wait_for_the_disk_and_reads_do_not(tmp_path: Path) -> None:
    """With the file's write lock held by sqlite3 (as a slow disk would hold a commit),
    an acquire is neither answered nor published until its batch is written; calls
    that change nothing are answered meanwhile as long as no write is queued ahead of
    them."""
    db = tmp_path / "locks.db"
    eng = interlock.Engine(journal=str(db))
    s = eng.session("waiting")
    first = s.acquire("before")
    sub = eng.subscribe()
    blocker = Shell(db)
    assert blocker.ask("BEGIN IMMEDIATE; SELECT 'locked';") == "locked"  # the write lock
    # Reads are answered although nothing can be written: the disk is not asked (a read
    # that waited for the write lock would wait until the COMMIT below, which comes
    # only after them, or fail after the busy timeout and stop the engine).
    assert eng.status("before")["holders"][0]["fence"] == first.fence
    assert eng.check("before", s.id) and eng.check_fence("before", first.fence)
    assert eng.history(resource="before")[-1].kind == "acquired"
    # A write: not acknowledged, not published, while it cannot be written.
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(s.acquire("during")))
    waiter.start()
    events: list[Any] = []
    threading.Thread(target=lambda: events.append(next(iter(sub))), daemon=True).start()
    # The write cannot be committed while the lock is held: whatever time passes, an
    # answer or an event seen now went out before the batch was written.
    time.sleep(1.0)
    assert not got and not events, "answered before it was written"
    blocker.run("COMMIT;")
    waiter.join(10)
    assert got and got[0].fence > first.fence
    wait_until(lambda: events, 5, "the event")
    assert events[0].kind == "acquired" and events[0].fence == got[0].fence
    assert rows(db)[-1]["fence"] == got[0].fence
    blocker.close()
    eng.close()


def test_a_journal_that_cannot_be_written_stops_the_engine_and_acknowledges_nothing(tmp_path: Path) -> None:
    """A write lock held longer than SQLite's busy timeout (5 s): the batch's callers get
    an error, nothing is acknowledged, the engine stops; a restart finds what was
    acknowledged before."""
    db = tmp_path / "locks.db"
    eng = interlock.Engine(journal=str(db))
    s = eng.session("unlucky")
    first = s.acquire("before")
    blocker = Shell(db)
    assert blocker.ask("BEGIN IMMEDIATE; SELECT 'locked';") == "locked"  # the write lock
    with pytest.raises(interlock.Error) as e:
        s.acquire("during")
    print("error:", e.value)
    assert "nothing of this was written" in str(e.value)
    with pytest.raises((interlock.EngineClosed, interlock.Error)):
        eng.status("before")
    blocker.run("ROLLBACK;")
    blocker.close()
    eng.close()
    eng = interlock.Engine(journal=str(db))
    assert eng.status("before")["holders"][0]["fence"] == first.fence
    assert not eng.status("during")["locked"]
    eng.close()
