//! The journal in one SQLite file (rusqlite, SQLite bundled): WAL mode with
//! `synchronous=FULL`, one transaction per batch. The history is a view, `history`, that
//! `sqlite3` can query while the engine runs. One engine at a time: a lock file next to
//! the journal (`FILE.lock`, held with `flock`) keeps a second one out.
//!
//! The view joins two tables. A batch appends its events to `history_recent`, which has
//! no index: rows in seq order fill one page after another. Every [`FOLD_EVERY`] rows
//! they move, in one statement, into `history_indexed`, with its indexes on resource,
//! session and time. Written with each batch, those indexes dirtied a page for nearly
//! every event (the resources of one batch lie far apart in them): with 64 clients a
//! commit wrote about 70 pages where it now writes a handful, and durable grants/s
//! doubled (bench/RESULTS.md, run K).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{Batch, Journal};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::state::{Change, LeaseRow, SessionRow, Snapshot};
use crate::types::{Mode, OnExpire, SecretHash};

/// The schema this build writes, and the newest it reads.
const SCHEMA: i64 = 2;

/// Rows of `history_recent` that are moved into `history_indexed` together.
const FOLD_EVERY: u64 = 4096;

/// History is trimmed to the retention after at most this many new rows (fewer for a
/// small `keep_rows`, see [`Retention::trim_every`]).
const TRIM_EVERY: u64 = 1000;

/// The columns of the history, in its tables and its view.
const HISTORY_COLUMNS: &str = "
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, resource TEXT,
    session_id TEXT, session_name TEXT, mode TEXT, fence INTEGER, priority INTEGER,
    position INTEGER, reason TEXT";

/// Schema 1: the tables, with the history in one indexed table.
const SCHEMA_1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, metadata TEXT NOT NULL,
    secret_hash TEXT NOT NULL, ttl REAL, on_expire TEXT NOT NULL,
    created_at REAL NOT NULL, last_seen REAL NOT NULL, stale INTEGER NOT NULL,
    opened INTEGER NOT NULL
);
CREATE TABLE leases (
    fence INTEGER PRIMARY KEY, resource TEXT NOT NULL, session_id TEXT NOT NULL,
    mode TEXT NOT NULL, token_hash TEXT NOT NULL, acquired_at REAL NOT NULL,
    expires_at REAL, ttl REAL, priority INTEGER NOT NULL, reason TEXT
);
CREATE TABLE history ({HISTORY});
CREATE INDEX history_resource ON history (resource, seq);
CREATE INDEX history_session ON history (session_id, seq);
CREATE INDEX history_at ON history (at);
";

/// Schema 1 to 2: the indexed table keeps the older rows; the newest wait, unindexed, in
/// `history_recent`; the view `history` shows both.
const SCHEMA_2: &str = "
ALTER TABLE history RENAME TO history_indexed;
CREATE TABLE history_recent ({HISTORY});
CREATE VIEW history AS
    SELECT * FROM history_indexed UNION ALL SELECT * FROM history_recent;
";

pub struct SqliteJournal {
    db: Connection,
    /// Held for the life of the journal: the `flock` that keeps other engines out.
    _lock: File,
    retention: Retention,
    /// History rows written since the last trim.
    untrimmed: u64,
    /// Rows in `history_recent` (at most: a trim may have deleted some).
    recent: u64,
    engine_id: u64,
}

fn sql(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Internal(format!("journal: {what}: {e}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl SqliteJournal {
    /// Opens (or makes) the journal at `config.path`. Refuses, with a message that says
    /// why, a file that another engine holds, a file of a newer schema, a corrupt file,
    /// and a place where it cannot write.
    pub fn open(config: &super::JournalConfig) -> Result<Self> {
        let path = &config.path;
        let bad =
            |why: String| Error::InvalidArgument(format!("journal {}: {why}", path.display()));
        let lock = lock_file(path).map_err(bad)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let db = Connection::open_with_flags(path, flags)
            .map_err(|e| bad(format!("cannot open it: {e}")))?;
        let check: String = db
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| {
                bad(format!(
                    "it is not a readable SQLite file ({e}); nothing was changed"
                ))
            })?;
        if check != "ok" {
            return Err(bad(format!("it is damaged ({check}); nothing was changed")));
        }
        // Whether this build may use the file is decided before anything is written:
        // even the switch to WAL rewrites the header of a file in rollback mode, and a
        // refused file is left exactly as it was.
        let version = schema_of(&db).map_err(bad)?;
        // A commit writes each page it changed to the WAL whole and waits until the disk
        // has it: a batch changes a few rows of a few tables, so small pages make it
        // cheaper (bench/RESULTS.md, run N). Only a new file takes it.
        db.execute_batch("PRAGMA page_size=1024;")
            .map_err(|e| bad(format!("cannot set it up: {e}")))?;
        let mode: String = db
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| bad(format!("cannot switch it to WAL mode: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(bad(format!("it stays in {mode} mode, not WAL")));
        }
        db.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=1000;")
            .map_err(|e| bad(format!("cannot set it up: {e}")))?;
        migrate(&db, version).map_err(bad)?;
        let engine_id = engine_id_of(&db).map_err(bad)?;
        let mut journal = SqliteJournal {
            db,
            _lock: lock,
            retention: Retention {
                keep_rows: config.keep_rows,
                keep_for: config.keep_for.map(|d| d.as_secs_f64()),
            },
            untrimmed: 0,
            recent: 0,
            engine_id,
        };
        journal.recent = journal
            .db
            .query_row("SELECT COUNT(*) FROM history_recent", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| bad(format!("it lacks the tables of its schema ({e})")))?
            as u64;
        // History beyond the retention goes at once, not only after the next
        // `trim_every` rows: an engine that restarts often would otherwise never trim.
        journal.trim_now()?;
        Ok(journal)
    }

    fn trim_now(&mut self) -> Result<()> {
        let tx = self
            .db
            .transaction()
            .map_err(sql("starting a transaction"))?;
        self.retention.trim(&tx)?;
        tx.commit().map_err(sql("committing"))
    }
}

/// What history the journal keeps.
#[derive(Clone, Copy)]
struct Retention {
    keep_rows: Option<u64>,
    keep_for: Option<f64>,
}

impl Retention {
    /// New rows between two trims: a tenth of `keep_rows` (at most [`TRIM_EVERY`]), so
    /// that the table never holds much more than `keep_rows` (a trim costs little more
    /// than the rows it deletes).
    fn trim_every(self) -> u64 {
        self.keep_rows
            .map_or(TRIM_EVERY, |rows| (rows / 10).clamp(1, TRIM_EVERY))
    }

    /// Deletes history beyond the retention, from both tables of the view.
    fn trim(self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        for table in ["history_indexed", "history_recent"] {
            if let Some(rows) = self.keep_rows {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE seq <= (SELECT MAX(newest) FROM (
                            SELECT MAX(seq) AS newest FROM history_indexed UNION ALL
                            SELECT MAX(seq) FROM history_recent)) - ?1"
                    ),
                    // More rows than SQLite counts: all of them.
                    params![i64::try_from(rows).unwrap_or(i64::MAX)],
                )
                .map_err(sql("trimming the history"))?;
            }
            if let Some(age) = self.keep_for {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE at < ?1"),
                    params![unix_now() - age],
                )
                .map_err(sql("trimming the history"))?;
            }
        }
        Ok(())
    }
}

/// Takes the lock file of the journal at `path`, or says who holds it.
fn lock_file(path: &Path) -> std::result::Result<File, String> {
    // Named after the file's real path: through a symlink or a relative name, a second
    // engine finds the lock of the first (it shared the file before). (Two hard links
    // in different names are still two names.) The lock is not taken on the database
    // file itself: closing any other descriptor of that file would drop SQLite's own
    // POSIX locks on it in this process.
    let real = real_path(path).map_err(|e| format!("cannot resolve its path: {e}"))?;
    let mut name = real.into_os_string();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| {
            format!(
                "cannot make its lock file {}: {e}",
                Path::new(&name).display()
            )
        })?;
    // SAFETY: `flock` on a file descriptor this function owns (kept open in `file`).
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        return Err("another engine holds it (an engine does not share its journal)".into());
    }
    Ok(file)
}

/// The path with every symlink resolved, also when the file (or what a symlink names)
/// does not exist yet: then its directory's real path and its name.
fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::canonicalize(&path) {
            Ok(real) => return Ok(real),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        match std::fs::read_link(&path) {
            // A symlink to a file still to be made (an absolute target replaces `dir`).
            Ok(target) => path = dir.join(target),
            Err(_) => {
                let name = path.file_name().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "it names no file")
                })?;
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                return Ok(std::fs::canonicalize(dir)?.join(name));
            }
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// The schema version of the file, if this build can use it: it reads and never writes,
/// so that a file it refuses stays as it was.
fn schema_of(db: &Connection) -> std::result::Result<i64, String> {
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    match version {
        0 => {
            let tables: i64 = db
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| e.to_string())?;
            match tables {
                0 => Ok(0),
                _ => Err(
                    "it holds tables that are not an interlock journal's; nothing was changed"
                        .into(),
                ),
            }
        }
        1..=SCHEMA => Ok(version),
        v if v > SCHEMA => Err(format!(
            "it was written by a newer interlock (schema {v}; this one reads up to {SCHEMA}); \
             nothing was changed"
        )),
        v => Err(format!(
            "schema {v} is not one interlock wrote; nothing was changed"
        )),
    }
}

/// Brings the file from `version` (which [`schema_of`] accepted) up to this schema, in
/// one transaction.
fn migrate(db: &Connection, version: i64) -> std::result::Result<(), String> {
    let steps = [SCHEMA_1, SCHEMA_2];
    let todo: String = steps[version as usize..].concat();
    if todo.is_empty() {
        return Ok(());
    }
    let todo = todo.replace("{HISTORY}", HISTORY_COLUMNS);
    db.execute_batch(&format!(
        "BEGIN; {todo} PRAGMA user_version = {SCHEMA}; COMMIT;"
    ))
    .map_err(|e| format!("cannot bring its tables from schema {version} to {SCHEMA}: {e}"))
}

/// The engine id the file keeps, made now for a new file (or one written before engines
/// had ids).
fn engine_id_of(db: &Connection) -> std::result::Result<u64, String> {
    let kept: Option<i64> = db
        .query_row("SELECT value FROM meta WHERE key = 'engine_id'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| format!("cannot read its engine id: {e}"))?;
    if let Some(id) = kept {
        return u64::try_from(id)
            .map_err(|_| format!("its engine id {id} is not one interlock wrote"));
    }
    let id = super::new_engine_id().map_err(|e| e.to_string())?;
    db.execute("INSERT INTO meta VALUES ('engine_id', ?1)", [id as i64])
        .map_err(|e| format!("cannot write its engine id: {e}"))?;
    Ok(id)
}

/// A text column that does not read as what it should hold.
fn unreadable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
}

fn mode_of(s: &str) -> rusqlite::Result<Mode> {
    s.parse().map_err(|e: Error| unreadable(e))
}

fn parse<T: std::str::FromStr<Err = Error>>(s: &str) -> rusqlite::Result<T> {
    s.parse().map_err(|e: Error| unreadable(e))
}

fn hash_of(s: &str) -> rusqlite::Result<SecretHash> {
    SecretHash::from_hex(s).map_err(unreadable)
}

impl Journal for SqliteJournal {
    fn load(&mut self, history: usize) -> Result<Snapshot> {
        let db = &self.db;
        let meta = |key: &str| -> Result<u64> {
            let v: Option<i64> = db
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(sql("reading the counters"))?;
            Ok(v.unwrap_or(1) as u64)
        };
        let (next_fence, next_seq) = (meta("next_fence")?, meta("next_seq")?);
        let mut q = db
            .prepare("SELECT id, name, metadata, secret_hash, ttl, on_expire, created_at, last_seen, stale, opened FROM sessions")
            .map_err(sql("reading the sessions"))?;
        let sessions = q
            .query_map([], |r| {
                let metadata: String = r.get(2)?;
                Ok(SessionRow {
                    id: parse(&r.get::<_, String>(0)?)?,
                    name: r.get(1)?,
                    metadata: serde_json::from_str(&metadata).map_err(unreadable)?,
                    secret_hash: hash_of(&r.get::<_, String>(3)?)?,
                    ttl: r.get(4)?,
                    on_expire: parse::<OnExpire>(&r.get::<_, String>(5)?)?,
                    created_at: r.get(6)?,
                    last_seen: r.get(7)?,
                    stale: r.get(8)?,
                    opened: r.get::<_, i64>(9)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("reading the sessions"))?;
        let mut q = db
            .prepare("SELECT fence, resource, session_id, mode, token_hash, acquired_at, expires_at, ttl, priority, reason FROM leases")
            .map_err(sql("reading the leases"))?;
        let leases = q
            .query_map([], |r| {
                Ok(LeaseRow {
                    fence: r.get::<_, i64>(0)? as u64,
                    resource: r.get(1)?,
                    session: parse(&r.get::<_, String>(2)?)?,
                    mode: mode_of(&r.get::<_, String>(3)?)?,
                    token_hash: hash_of(&r.get::<_, String>(4)?)?,
                    acquired_at: r.get(5)?,
                    expires_at: r.get(6)?,
                    ttl: r.get(7)?,
                    priority: r.get::<_, i64>(8)?.clamp(0, 255) as u8,
                    reason: r.get(9)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("reading the leases"))?;
        let mut q = db
            .prepare("SELECT seq, at, kind, resource, session_id, session_name, mode, fence, priority, position, reason FROM history ORDER BY seq DESC LIMIT ?1")
            .map_err(sql("reading the history"))?;
        let mut events = q
            .query_map([history as i64], |r| {
                let ev = serde_json::json!({
                    "seq": r.get::<_, i64>(0)?,
                    "at": r.get::<_, f64>(1)?,
                    "kind": r.get::<_, String>(2)?,
                    "resource": r.get::<_, Option<String>>(3)?,
                    "session_id": r.get::<_, Option<String>>(4)?,
                    "session_name": r.get::<_, Option<String>>(5)?,
                    "mode": r.get::<_, Option<String>>(6)?,
                    "fence": r.get::<_, Option<i64>>(7)?,
                    "priority": r.get::<_, Option<i64>>(8)?,
                    "position": r.get::<_, Option<i64>>(9)?,
                    "reason": r.get::<_, Option<String>>(10)?,
                });
                Ok(ev)
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("reading the history"))?;
        events.reverse();
        // A row that is not an event refuses the file: none is dropped unsaid.
        let history = events
            .into_iter()
            .map(|v| {
                let seq = v["seq"].clone();
                serde_json::from_value::<Event>(v)
                    .map(std::sync::Arc::new)
                    .map_err(|e| {
                        Error::Internal(format!(
                            "journal: reading the history: row {seq} is not an event ({e})"
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Snapshot {
            sessions,
            leases,
            next_fence,
            next_seq,
            history,
        })
    }

    fn engine_id(&self) -> u64 {
        self.engine_id
    }

    fn append(&mut self, batch: &Batch<'_>) -> Result<()> {
        self.untrimmed += batch.events.len() as u64;
        self.recent += batch.events.len() as u64;
        let trim = self.untrimmed >= self.retention.trim_every();
        let fold = self.recent >= FOLD_EVERY;
        let tx = self
            .db
            .transaction()
            .map_err(sql("starting a transaction"))?;
        for change in batch.changes {
            match change {
                Change::Session(id, None) => {
                    tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")
                        .and_then(|mut st| st.execute([id.to_string()]))
                        .map_err(sql("writing a session"))?;
                }
                Change::Session(_, Some(s)) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .and_then(|mut st| st.execute(params![
                            s.id.to_string(),
                            s.name,
                            s.metadata.to_string(),
                            s.secret_hash.to_hex(),
                            s.ttl,
                            match s.on_expire {
                                OnExpire::Release => "release",
                                OnExpire::Keep => "keep",
                            },
                            s.created_at,
                            s.last_seen,
                            s.stale,
                            s.opened as i64,
                        ]))
                    .map_err(sql("writing a session"))?;
                }
                Change::Lease(fence, None) => {
                    tx.prepare_cached("DELETE FROM leases WHERE fence = ?1")
                        .and_then(|mut st| st.execute([*fence as i64]))
                        .map_err(sql("writing a lease"))?;
                }
                Change::Lease(_, Some(l)) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO leases VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .and_then(|mut st| st.execute(params![
                            l.fence as i64,
                            l.resource,
                            l.session.to_string(),
                            l.mode.as_str(),
                            l.token_hash.to_hex(),
                            l.acquired_at,
                            l.expires_at,
                            l.ttl,
                            l.priority,
                            l.reason,
                        ]))
                    .map_err(sql("writing a lease"))?;
                }
            }
        }
        {
            let mut insert = tx
                .prepare_cached("INSERT OR REPLACE INTO history_recent VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")
                .map_err(sql("writing the history"))?;
            for e in batch.events {
                insert
                    .execute(params![
                        e.seq as i64,
                        e.at,
                        e.kind.as_str(),
                        e.resource.as_deref(),
                        e.session_id().map(|s| s.to_string()),
                        e.session_name(),
                        e.mode.map(Mode::as_str),
                        e.fence().map(|f| f as i64),
                        e.priority,
                        e.position().map(|p| p as i64),
                        e.reason(),
                    ])
                    .map_err(sql("writing the history"))?;
            }
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO meta VALUES ('next_fence', ?1), ('next_seq', ?2)",
        )
        .and_then(|mut st| st.execute(params![batch.next_fence as i64, batch.next_seq as i64]))
        .map_err(sql("writing the counters"))?;
        if trim {
            self.retention.trim(&tx)?;
        }
        if fold {
            tx.execute_batch(
                "INSERT OR REPLACE INTO history_indexed SELECT * FROM history_recent;
                 DELETE FROM history_recent;",
            )
            .map_err(sql("moving the history into its indexes"))?;
        }
        tx.commit().map_err(sql("committing"))?;
        if trim {
            self.untrimmed = 0;
        }
        if fold {
            self.recent = 0;
        }
        Ok(())
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        // Folds the WAL back into the file, so that what is left is one plain file.
        let _ = self.db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalConfig;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("interlock-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn refusal(path: &Path) -> String {
        match SqliteJournal::open(&JournalConfig::at(path)) {
            Ok(_) => panic!("{} was not refused", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn another_name_of_a_held_journal_is_refused() {
        let dir = temp("alias");
        let path = dir.join("locks.db");
        let _held = SqliteJournal::open(&JournalConfig::at(&path)).unwrap();
        let link = dir.join("alias.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        for other in [link, sub.join("..").join("locks.db"), path] {
            let e = refusal(&other);
            assert!(
                e.contains("another engine holds it"),
                "{}: {e}",
                other.display()
            );
        }
    }

    #[test]
    fn a_symlink_to_a_journal_not_made_yet_finds_its_target() {
        let dir = temp("dangling");
        let link = dir.join("alias.db");
        std::os::unix::fs::symlink("target.db", &link).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap().join("target.db");
        assert_eq!(real_path(&link).unwrap(), real);
        assert_eq!(
            real_path(&dir.join("new.db")).unwrap(),
            real.with_file_name("new.db")
        );
    }

    #[test]
    fn a_refused_file_in_rollback_mode_keeps_its_bytes() {
        let dir = temp("rollback");
        for (name, sql, why) in [
            ("newer.db", "PRAGMA user_version = 9;", "newer"),
            (
                "foreign.db",
                "CREATE TABLE samples (v);",
                "not an interlock journal",
            ),
        ] {
            let path = dir.join(name);
            let db = Connection::open(&path).unwrap();
            db.execute_batch(&format!(
                "PRAGMA journal_mode = DELETE; CREATE TABLE t (x); {sql}"
            ))
            .unwrap();
            drop(db);
            let before = std::fs::read(&path).unwrap();
            let e = refusal(&path);
            assert!(e.contains(why), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), before, "{name} changed");
        }
    }

    #[test]
    fn a_schema_1_journal_is_brought_to_schema_2_and_keeps_its_history() {
        let dir = temp("schema1");
        let path = dir.join("locks.db");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "{} INSERT INTO history (seq, at, kind, resource) VALUES (7, 1.0, 'acquired', 'psu');
             INSERT INTO meta VALUES ('next_seq', 8); PRAGMA user_version = 1;",
            SCHEMA_1.replace("{HISTORY}", HISTORY_COLUMNS)
        ))
        .unwrap();
        drop(db);
        let mut journal = SqliteJournal::open(&JournalConfig::at(&path)).unwrap();
        let snap = journal.load(10).unwrap();
        assert_eq!(snap.history.len(), 1);
        assert_eq!(snap.history[0].seq, 7);
        assert_eq!(snap.next_seq, 8);
        let ask = |q: &str| -> i64 { journal.db.query_row(q, [], |r| r.get(0)).unwrap() };
        assert_eq!(ask("PRAGMA user_version"), 2);
        // A file keeps the pages it was made with.
        assert_eq!(ask("PRAGMA page_size"), 4096);
        assert_eq!(ask("SELECT seq FROM history WHERE resource = 'psu'"), 7);
        assert_eq!(ask("SELECT COUNT(*) FROM history_indexed"), 1);
        // A file from before engine ids gets one.
        let id = ask("SELECT value FROM meta WHERE key = 'engine_id'");
        assert_eq!(id as u64, journal.engine_id());
        assert_eq!(
            ask("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'history_indexed'"),
            3
        );
    }

    #[test]
    fn a_journal_keeps_the_engine_id_it_was_made_with() {
        let dir = temp("engine-id");
        let id = |name: &str| {
            let journal = SqliteJournal::open(&JournalConfig::at(dir.join(name))).unwrap();
            journal.engine_id()
        };
        let made = id("locks.db");
        assert_eq!(id("locks.db"), made);
        assert_ne!(id("other.db"), made);
    }

    #[test]
    fn a_new_journal_has_small_pages_in_wal_mode() {
        let dir = temp("pages");
        let journal = SqliteJournal::open(&JournalConfig::at(dir.join("locks.db"))).unwrap();
        let page: i64 = journal
            .db
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let mode: String = journal
            .db
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!((page, mode.as_str()), (1024, "wal"));
    }

    #[test]
    fn a_small_keep_rows_is_kept_to_within_a_tenth() {
        let r = |rows| Retention {
            keep_rows: Some(rows),
            keep_for: None,
        };
        assert_eq!(r(50).trim_every(), 5);
        assert_eq!(r(5).trim_every(), 1);
        assert_eq!(r(0).trim_every(), 1);
        assert_eq!(r(1_000_000).trim_every(), TRIM_EVERY);
        let by_age = Retention {
            keep_rows: None,
            keep_for: Some(1.0),
        };
        assert_eq!(by_age.trim_every(), TRIM_EVERY);
    }

    #[test]
    fn a_keep_rows_beyond_what_sqlite_counts_keeps_every_row() {
        let dir = temp("huge");
        let mut journal = SqliteJournal::open(&JournalConfig::at(dir.join("locks.db"))).unwrap();
        journal
            .db
            .execute_batch(
                "INSERT INTO history_recent (seq, at, kind) VALUES (1, 1.0, 'acquired'), (2, 2.0, 'released');",
            )
            .unwrap();
        let count = |db: &Connection| -> i64 {
            db.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))
                .unwrap()
        };
        for (rows, left) in [(u64::MAX, 2), (1u64 << 63, 2), (1, 1)] {
            let retention = Retention {
                keep_rows: Some(rows),
                keep_for: None,
            };
            let tx = journal.db.transaction().unwrap();
            retention.trim(&tx).unwrap();
            tx.commit().unwrap();
            assert_eq!(count(&journal.db), left, "keep_rows {rows}");
        }
    }
}
