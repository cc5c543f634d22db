"""Files the journal must not use: each is a clear error at start, and the file is left
as it was (the same bytes). Also the schema's migration path: a file with schema
version 0 and none of our tables gets them; one with tables of its own is refused."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from helpers import Server, run_serve, server_binary, sha256, sqlite3

import interlock

Serve = Callable[..., Server]


def make_journal(db: Path, pairs: int = 5, metadata_kib: int = 0) -> None:
    """A real journal, closed cleanly (everything is in the main file)."""
    eng = interlock.Engine(journal=str(db))
    s = eng.session("maker", metadata={"pad": "x" * (metadata_kib * 1024)})
    for i in range(pairs):
        s.acquire(f"r{i % 7}").release()
    s.acquire("kept")
    eng.close()
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0


def refused(db: Path, *words: str) -> str:
    """Starts `interlock serve` on `db`, expects it to refuse with all of `words` in its
    message; checks that the file's bytes are unchanged; returns the message."""
    before = sha256(db) if db.exists() else None
    p = run_serve(db)
    assert p.returncode not in (0, None), f"it started on {db}: {p.stdout}"
    msg = p.stderr
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert str(db) in msg, msg
    if before is not None:
        assert sha256(db) == before, "the file changed"
    # Nothing was left behind that a later start would take as part of the journal.
    for side in ("-wal", "-shm", "-journal"):
        assert not Path(str(db) + side).exists() or before is None, f"{side} left behind"
    # The embedded engine refuses the same way.
    # (A bad journal is a bad argument of the engine: ValueError, as for other options.)
    with pytest.raises(ValueError) as e:
        interlock.Engine(journal=str(db))
    for w in words:
        assert w in str(e.value), str(e.value)
    if before is not None:
        assert sha256(db) == before, "the file changed (embedded engine)"
    return msg


# --- a newer schema ----------------------------------------------------------------------


def test_a_journal_of_a_newer_schema_is_refused_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    make_journal(db)
    sqlite3(db, "PRAGMA user_version = 7")
    msg = refused(db, "newer", "schema 7")
    print(msg)


def test_a_newer_file_in_rollback_mode_is_not_switched_to_wal(tmp_path: Path) -> None:
    """A file a newer interlock (or any program) left in rollback-journal mode: refusing
    it must not first switch it to WAL (that rewrites its header)."""
    db = tmp_path / "locks.db"
    sqlite3(db, "PRAGMA journal_mode = DELETE", "CREATE TABLE meta (key TEXT PRIMARY KEY, value)",
            "PRAGMA user_version = 99")
    assert sqlite3(db, "PRAGMA journal_mode").strip() == "delete"
    refused(db, "newer", "schema 99")
    assert sqlite3(db, "PRAGMA journal_mode").strip() == "delete"


# --- corrupt files -----------------------------------------------------------------------


def test_random_bytes_are_refused_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    db.write_bytes(random.Random(1).randbytes(64 * 1024))
    refused(db, "not a readable SQLite file")


def test_a_journal_with_overwritten_pages_is_refused_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    make_journal(db, pairs=400)
    page = int(sqlite3(db, "PRAGMA page_size"))
    pages = db.stat().st_size // page
    assert pages >= 10, pages
    data = bytearray(db.read_bytes())
    rng = random.Random(2)
    for p in (3, pages // 2, pages - 2):  # 0-based: inside the tables and indexes
        data[p * page:(p + 1) * page] = rng.randbytes(page)
    db.write_bytes(bytes(data))
    msg = refused(db, "damaged", "nothing was changed")
    print(msg)


def test_a_journal_with_an_overwritten_header_is_refused_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    make_journal(db, pairs=50)
    data = bytearray(db.read_bytes())
    data[0:100] = random.Random(3).randbytes(100)
    db.write_bytes(bytes(data))
    refused(db, "not a readable SQLite file")


# --- a file another engine holds ---------------------------------------------------------


def test_a_second_server_on_a_held_file_is_refused_and_the_first_keeps_working(serve: Serve,
                                                                                tmp_path: Path) -> None:
    first = serve()
    eng = interlock.connect(first.url)
    s = eng.session("first")
    lease = s.acquire("psu")
    p = run_serve(first.journal)
    assert p.returncode not in (0, None), "a second server started on a held journal"
    assert "another engine holds it" in p.stderr, p.stderr
    # Also through another name for the same file (a symlink, a relative path).
    link = tmp_path / "alias.db"
    link.symlink_to(first.journal)
    p = run_serve(link)
    assert p.returncode not in (0, None), f"a second server started through a symlink: {p.stdout}"
    assert "another engine holds it" in p.stderr, p.stderr
    rel = os.path.relpath(first.journal, Path.cwd())
    p = run_serve(Path(rel))
    assert p.returncode not in (0, None) and "another engine holds it" in p.stderr
    with pytest.raises(ValueError, match="another engine holds it"):
        interlock.Engine(journal=str(first.journal))
    # The first server never noticed.
    lease.renew()
    assert s.acquire("scope").fence > lease.fence
    lease.release()
    assert first.get("/v1/locks/scope")["locked"]
    eng.close()


# --- a read-only directory ---------------------------------------------------------------
# Tests may run as root, for whom chmod does not stop writes: the directory is a bind
# mount remounted read-only, in a mount namespace of its own (`unshare -rm`: a user
# namespace maps us to root in it, so this needs no privilege and changes nothing
# outside).


def readonly_serve(tmp_path: Path, src: Path, db_name: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("unshare"), "no unshare(1) (Debian's util-linux)"
    ro = tmp_path / "ro"
    ro.mkdir()
    script = ('mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" || exit 97; '
              'touch "$2/probe" 2>/dev/null && exit 98; '
              'exec "$3" serve --bind 127.0.0.1:0 --journal "$2/$4"')
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(src), str(ro), str(server_binary()),
                        db_name], capture_output=True, text=True, timeout=30)
    assert p.returncode != 97, f"cannot make a read-only bind mount here: {p.stderr.strip()}"
    assert p.returncode != 98, "the read-only mount is writable"
    return p


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "dir"
    src.mkdir()
    p = readonly_serve(tmp_path, src, "locks.db")
    assert p.returncode != 0, p.stdout
    assert "Read-only file system" in p.stderr and "locks.db" in p.stderr, p.stderr
    assert list(src.iterdir()) == []


def test_an_existing_journal_in_a_read_only_directory_is_refused_unchanged(tmp_path: Path) -> None:
    src = tmp_path / "dir"
    src.mkdir()
    make_journal(src / "locks.db")
    before = {f.name: sha256(f) for f in src.iterdir()}
    p = readonly_serve(tmp_path, src, "locks.db")
    assert p.returncode != 0, p.stdout
    assert "Read-only file system" in p.stderr and "locks.db" in p.stderr, p.stderr
    assert {f.name: sha256(f) for f in src.iterdir()} == before


# --- the migration path ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["missing", "empty file", "sqlite3 file without tables"])
def test_a_file_with_schema_0_and_none_of_our_tables_gets_them(tmp_path: Path, serve: Serve, how: str) -> None:
    db = tmp_path / "locks.db"
    if how == "empty file":
        db.write_bytes(b"")
    elif how == "sqlite3 file without tables":
        sqlite3(db, "PRAGMA application_id = 0", "VACUUM")
        assert db.exists()
    assert how == "missing" or sqlite3(db, "PRAGMA user_version").strip() == "0"
    srv = serve(journal=db)
    code, s = srv.http("POST", "/v1/sessions", {"name": "migrated"})
    assert code == 201
    srv.stop()
    assert sqlite3(db, "PRAGMA user_version").strip() == "2"
    tables = sqlite3(db, "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name").split()
    assert tables == ["view|history", "table|history_indexed", "table|history_recent",
                      "table|leases", "table|meta", "table|sessions"], tables
    assert sqlite3(db, "SELECT name FROM sessions").strip() == "migrated"


def test_a_journal_of_schema_1_is_brought_to_schema_2_with_its_locks_and_history(
        tmp_path: Path, serve: Serve) -> None:
    """Schema 1 (the first release) kept the history in one indexed table, `history`."""
    db = tmp_path / "locks.db"
    make_journal(db, pairs=40)
    rows = sqlite3(db, "SELECT seq, kind, resource FROM history ORDER BY seq")
    sqlite3(db, "DROP VIEW history",
            "INSERT INTO history_indexed SELECT * FROM history_recent",
            "DROP TABLE history_recent",
            "ALTER TABLE history_indexed RENAME TO history",
            "PRAGMA user_version = 1")
    assert "history_resource" in sqlite3(db, ".indexes history").split()
    srv = serve(journal=db)
    assert srv.get("/v1/locks/kept")["locked"]
    srv.stop()
    assert sqlite3(db, "PRAGMA user_version").strip() == "2"
    assert sqlite3(db, "SELECT seq, kind, resource FROM history ORDER BY seq") == rows
    assert "history_resource" in sqlite3(db, ".indexes history_indexed").split()
    assert sqlite3(db, "PRAGMA integrity_check").strip() == "ok"


def test_a_file_with_tables_of_its_own_is_refused_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    sqlite3(db, "CREATE TABLE samples (id INTEGER PRIMARY KEY, v REAL)", "INSERT INTO samples VALUES (1, 2.5)")
    refused(db, "not an interlock journal")
    assert sqlite3(db, "SELECT v FROM samples").strip() == "2.5"


def test_a_schema_version_interlock_never_wrote_is_refused_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    make_journal(db)
    sqlite3(db, "PRAGMA user_version = -1")
    refused(db, "schema -1")


def test_a_journal_of_this_schema_opens_again_and_again(tmp_path: Path, serve: Serve) -> None:
    db = tmp_path / "locks.db"
    make_journal(db)
    for _ in range(3):
        srv = serve(journal=db)
        assert srv.get("/v1/locks/kept")["locked"]
        srv.stop()
    assert sqlite3(db, "PRAGMA user_version").strip() == "2"
    assert sqlite3(db, "PRAGMA integrity_check").strip() == "ok"
