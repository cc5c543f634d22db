//! The journal: an engine restarted on its file finds its sessions and leases again, and
//! refuses files it must not use.

use std::path::PathBuf;
use std::time::Duration;

use interlock::journal::JournalConfig;
use interlock::{AcquireOptions, Config, ErrorKind, Handle, ManualClock, SessionSpec};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("interlock-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("locks.db")
}

fn durable(path: &PathBuf) -> Config {
    Config {
        journal: Some(JournalConfig::at(path)),
        ..Config::default()
    }
}

#[test]
fn a_restarted_engine_finds_its_locks_and_hands_out_no_fence_twice() {
    let path = temp("restart");
    let engine = Handle::new(durable(&path)).unwrap();
    assert!(engine.is_durable());
    let s = engine
        .open_session(SessionSpec {
            ttl: Some(Duration::from_secs(60)),
            ..SessionSpec::named("holder")
        })
        .unwrap();
    let secret = s.secret().unwrap();
    let kept = s.acquire("psu", &AcquireOptions::default()).unwrap();
    let gone = s.acquire("scope", &AcquireOptions::default()).unwrap();
    gone.release().unwrap();
    let (fence, token) = (kept.fence(), kept.token());
    engine.close();
    drop((kept, gone, s, engine));

    let engine = Handle::new(durable(&path)).unwrap();
    let st = engine.status("psu").unwrap();
    assert_eq!(st.holders.len(), 1);
    assert_eq!(st.holders[0].fence, fence);
    assert_eq!(st.holders[0].session_name.as_ref(), "holder");
    assert!(!engine.status("scope").unwrap().locked);
    // The holder kept its token: it can renew and release.
    engine.renew("psu", token, None).unwrap();
    let s = engine
        .resume_session(st.holders[0].session_id, secret)
        .unwrap();
    let next = s.acquire("scope", &AcquireOptions::default()).unwrap();
    assert!(
        next.fence() > fence + 1,
        "fence {} after {fence}",
        next.fence()
    );
    engine.release("psu", token).unwrap();
    assert!(!engine.status("psu").unwrap().locked);
    let kinds: Vec<_> = engine
        .history(Some("psu"), None, None)
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["acquired", "released"]);
}

#[test]
fn a_restored_session_expires_after_its_grace_unless_resumed() {
    let path = temp("grace");
    let engine = Handle::new(durable(&path)).unwrap();
    let s = engine
        .open_session(SessionSpec {
            ttl: Some(Duration::from_secs(1)),
            ..SessionSpec::named("short")
        })
        .unwrap();
    s.acquire("psu", &AcquireOptions::default()).unwrap();
    let id = s.id();
    engine.close();
    drop((s, engine));
    // A manual clock that starts now, as the journal's times do.
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let clock = std::sync::Arc::new(ManualClock::new(unix_now));
    let config = Config {
        journal: Some(JournalConfig {
            grace: Duration::from_secs(20),
            ..JournalConfig::at(&path)
        }),
        ..Config::default()
    };
    let engine = Handle::with_clock(config, clock.clone()).unwrap();
    assert!(engine.status("psu").unwrap().locked);
    clock.advance(Duration::from_secs(19));
    assert!(engine.status("psu").unwrap().locked, "still in its grace");
    clock.advance(Duration::from_secs(2));
    assert!(
        !engine.status("psu").unwrap().locked,
        "expired after the grace"
    );
    let reasons: Vec<_> = engine
        .history(Some("psu"), None, None)
        .unwrap()
        .iter()
        .map(|e| (e.kind.as_str().to_string(), e.reason().map(str::to_string)))
        .collect();
    assert_eq!(
        reasons.last().unwrap(),
        &("expired".to_string(), Some("session_expired".to_string()))
    );
    // Restarted once more, the engine still knows how the session ended: a late call
    // says `SessionExpired` (not `NotFound`), and its history is still there.
    engine.close();
    drop(engine);
    let engine = Handle::new(durable(&path)).unwrap();
    let late = engine.session(id).err().unwrap();
    assert_eq!(late.kind(), ErrorKind::SessionExpired, "{late}");
    let kinds: Vec<_> = engine
        .history(None, Some(id), None)
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["session_opened", "acquired", "expired", "session_expired"]
    );
}

#[test]
fn a_journal_refuses_a_second_engine_a_newer_schema_and_a_damaged_file() {
    let path = temp("refuse");
    let engine = Handle::new(durable(&path)).unwrap();
    let second = Handle::new(durable(&path)).err().unwrap();
    assert_eq!(second.kind(), ErrorKind::InvalidArgument);
    assert!(
        second.to_string().contains("another engine holds it"),
        "{second}"
    );
    engine.close();
    drop(engine);

    let newer = temp("newer");
    let db = rusqlite::Connection::open(&newer).unwrap();
    db.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(db);
    let e = Handle::new(durable(&newer)).err().unwrap().to_string();
    assert!(e.contains("newer interlock"), "{e}");

    let damaged = temp("damaged");
    let junk = b"this is not a database, but it is a file all the same".repeat(100);
    std::fs::write(&damaged, &junk).unwrap();
    let e = Handle::new(durable(&damaged)).err().unwrap().to_string();
    assert!(
        e.contains("not a readable SQLite file") || e.contains("damaged"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        junk,
        "nothing was changed"
    );
}

#[test]
fn the_history_view_shows_every_event_while_its_newest_rows_move_into_the_indexes() {
    let path = temp("fold");
    let engine = Handle::new(durable(&path)).unwrap();
    let s = engine.open_session(SessionSpec::named("worker")).unwrap();
    let ask = |q: &str| -> i64 {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.query_row(q, [], |r| r.get(0)).unwrap()
    };
    let mut events = 1; // session_opened
    for round in 0..2 {
        for i in 0..2100 {
            let resource = format!("r{}", i % 64);
            let lease = s.acquire(&resource, &AcquireOptions::default()).unwrap();
            lease.release().unwrap();
            events += 2;
        }
        // Every event is in the view, each once, and most have moved to the indexed table.
        assert_eq!(ask("SELECT COUNT(*) FROM history"), events, "round {round}");
        assert_eq!(ask("SELECT COUNT(DISTINCT seq) FROM history"), events);
        assert!(ask("SELECT COUNT(*) FROM history_recent") < 4096);
        assert!(ask("SELECT COUNT(*) FROM history_indexed") >= events - 4096);
        assert_eq!(
            ask("SELECT COUNT(*) FROM history WHERE resource = 'r5' AND kind = 'acquired'"),
            (round + 1) * 33
        );
    }
    engine.close();
    // A restart reads the newest events back from both tables.
    let engine = Handle::new(durable(&path)).unwrap();
    let last = engine.history(None, None, Some(3)).unwrap();
    assert_eq!(last.len(), 3);
    assert_eq!(last[2].seq as i64, ask("SELECT MAX(seq) FROM history"));
}

#[test]
fn times_out_of_range_in_a_file_start_the_engine_or_refuse_it_never_panic() {
    let path = temp("far");
    let engine = Handle::new(durable(&path)).unwrap();
    let s = engine.open_session(SessionSpec::named("holder")).unwrap();
    let lease = s.acquire("psu", &AcquireOptions::default()).unwrap();
    let fence = lease.fence();
    engine.close();
    drop((lease, s, engine));
    // Far in the future: as good as never.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "UPDATE leases SET expires_at = 1e30, ttl = 1e30;
         UPDATE sessions SET ttl = 1e300, last_seen = 1e30;",
    )
    .unwrap();
    drop(db);
    let engine = Handle::new(durable(&path)).unwrap();
    let st = engine.status("psu").unwrap();
    assert_eq!(st.holders[0].fence, fence);
    engine.close();
    drop(engine);
    // Before 1970: not a time interlock writes.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("UPDATE sessions SET created_at = -1e30;")
        .unwrap();
    drop(db);
    let Err(err) = Handle::new(durable(&path)) else {
        panic!("a time before 1970 was taken");
    };
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("before 1970"), "{err}");
}

#[test]
fn a_row_it_cannot_read_refuses_the_file_rather_than_dropping_it() {
    let path = temp("unreadable");
    let engine = Handle::new(durable(&path)).unwrap();
    let s = engine.open_session(SessionSpec::named("holder")).unwrap();
    let lease = s.acquire("psu", &AcquireOptions::default()).unwrap();
    lease.release().unwrap();
    engine.close();
    drop((lease, s, engine));
    for (damage, what) in [
        (
            "UPDATE sessions SET metadata = '{not json'",
            "reading the sessions",
        ),
        (
            "UPDATE history_recent SET kind = 'vanished' WHERE kind = 'released'",
            "is not an event",
        ),
    ] {
        let copy = path.with_file_name(format!("{}.db", what.len()));
        std::fs::copy(&path, &copy).unwrap();
        let db = rusqlite::Connection::open(&copy).unwrap();
        assert_eq!(db.execute(damage, []).unwrap(), 1, "{damage}");
        drop(db);
        let Err(err) = Handle::new(durable(&copy)) else {
            panic!("{damage}: the file was taken");
        };
        assert!(err.to_string().contains(what), "{damage}: {err}");
    }
}
