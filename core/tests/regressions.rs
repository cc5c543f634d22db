//! Bugs found in review, one test each (each failed before its fix).

use std::sync::Arc;
use std::time::Duration;

use interlock::*;

const SEED: [u8; 32] = [7; 32];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ----- helpers for the pure state machine --------------------------------------------

fn open(st: &mut State, now: Duration, name: &str, ttl: Option<Duration>, keep: bool) -> SessionId {
    let spec = SessionSpec {
        name: name.into(),
        metadata: serde_json::Value::Null,
        ttl,
        on_expire: keep.then_some(OnExpire::Keep),
    };
    match st.apply(now, Command::OpenSession(spec)).0 {
        Ok(Reply::Opened { session, .. }) => session.id,
        r => panic!("open: {r:?}"),
    }
}

fn req(session: SessionId, r: &str, options: AcquireOptions) -> AcquireRequest {
    AcquireRequest {
        session,
        resources: vec![r.to_string()].into(),
        options,
    }
}

// ----- 1. renew with a shorter TTL does not move the expiry deadline ------------------

#[test]
fn renew_with_a_shorter_ttl_expires_at_the_new_time() {
    let mut st = State::new(Config::default(), 0.0, SEED);
    let t0 = Duration::ZERO;
    let a = open(&mut st, t0, "a", None, false);
    let opts = AcquireOptions {
        ttl: Some(secs(60)),
        ..Default::default()
    };
    let token = match st.apply(t0, Command::Acquire(req(a, "r", opts))).0 {
        Ok(Reply::Granted(g)) => g[0].token,
        r => panic!("acquire: {r:?}"),
    };
    let renewed = st
        .apply(
            t0,
            Command::Renew {
                resource: "r".into(),
                token,
                ttl: Some(secs(1)),
            },
        )
        .0;
    assert!(matches!(renewed, Ok(Reply::Renewed { expires_at: Some(e) }) if e == 1.0));
    // The engine sleeps until its next deadline: that must be the new expiry, 1 s.
    assert_eq!(
        st.next_deadline(),
        Some(secs(1)),
        "deadline still at the old 60 s expiry"
    );
    let status = Command::Status {
        resource: "r".into(),
    };
    match st.apply(secs(2), status).0 {
        Ok(Reply::Status(s)) => assert!(!s.locked, "lease renewed to 1 s still held at 2 s"),
        r => panic!("status: {r:?}"),
    }
}

// ----- 2. a waiter whose lock freed before its deadline times out anyway ------------

#[test]
fn a_lock_freed_before_the_waiters_deadline_is_granted_not_timed_out() {
    let mut st = State::new(Config::default(), 0.0, SEED);
    let t0 = Duration::ZERO;
    let a = open(&mut st, t0, "a", None, false);
    let b = open(&mut st, t0, "b", None, false);
    let held = AcquireOptions {
        ttl: Some(secs(3)),
        ..Default::default()
    };
    let r = st.apply(t0, Command::Acquire(req(a, "r", held)));
    assert!(matches!(r.0, Ok(Reply::Granted(_))));
    let waits = AcquireOptions {
        timeout: Some(secs(5)),
        ..Default::default()
    };
    let wait = match st.apply(t0, Command::Acquire(req(b, "r", waits))).0 {
        Ok(Reply::Queued { wait, .. }) => wait,
        r => panic!("b should wait: {r:?}"),
    };
    // The engine first looks at t = 10 s (a busy actor, or a manual clock): the lease
    // ended at 3 s, before b's deadline at 5 s, so b must have the lock.
    let (_, fx) = st.apply(secs(10), Command::Tick);
    let outcome = fx
        .completions
        .iter()
        .find(|(w, _)| *w == wait)
        .map(|(_, o)| o.clone());
    assert!(
        matches!(outcome, Some(Ok(_))),
        "b timed out although the lock was free from 3 s on: {outcome:?}"
    );
}

// ----- 3. a higher-priority wait that closes a cycle through queue order --------------

#[test]
fn a_priority_wait_that_closes_a_cycle_through_queue_order_is_a_deadlock() {
    let eng = Handle::new(Config::default()).unwrap();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let c = eng.open_session(SessionSpec::named("c")).unwrap();
    let once = AcquireOptions {
        timeout: Some(Duration::ZERO),
        ..Default::default()
    };
    let c_r = c.acquire("r", &once).unwrap();
    let _b_q = b.acquire("q", &once).unwrap();
    let _a_waits_q = a.enqueue(&["q"], &AcquireOptions::default()).unwrap(); // a -> b
    let _b_waits_r = b.enqueue(&["r"], &AcquireOptions::default()).unwrap(); // b -> c
                                                                             // a jumps ahead of b's wait on r: now b -> a (queue order) and a -> b (holder of q).
    let urgent = AcquireOptions {
        priority: 0,
        ..Default::default()
    };
    let res = a.enqueue(&["r"], &urgent);
    let closed_cycle = matches!(&res, Err(e) if e.kind() == ErrorKind::Deadlock);
    if !closed_cycle {
        // What follows: c lets go, a gets r, and a and b wait on each other for ever.
        c_r.release().unwrap();
        let got = res.unwrap().wait(Some(ms(500)));
        panic!(
            "no Deadlock; a then got r ({:?}) while waiting for q held by b, which waits for r",
            got.map(|l| l.len())
        );
    }
}

// ----- 4. a grant made while settling the request's own command is lost ---------------

#[test]
fn a_request_granted_in_the_settle_of_its_own_command_gets_its_lease() {
    let clock = Arc::new(ManualClock::new(1_700_000_000.0));
    let eng = Handle::with_clock(Config::default(), clock.clone()).unwrap();
    let s = eng
        .open_session(SessionSpec {
            ttl: Some(secs(10)),
            on_expire: Some(OnExpire::Keep),
            ..SessionSpec::named("crashed")
        })
        .unwrap();
    let p = eng.open_session(SessionSpec::named("taker")).unwrap();
    let x = eng.open_session(SessionSpec::named("observer")).unwrap();
    let _held = s.acquire("r", &AcquireOptions::default()).unwrap();
    let _taker = p
        .enqueue(
            &["r"],
            &AcquireOptions {
                mode: Mode::Shared,
                break_stale: true,
                ..Default::default()
            },
        )
        .unwrap();
    // s goes stale; the engine notices it at x's request, in the same command.
    clock.advance(secs(11));
    let ticket = x
        .request(
            &["r"],
            &AcquireOptions {
                mode: Mode::Shared,
                ..Default::default()
            },
        )
        .unwrap();
    let got = ticket.wait(Some(ms(500)));
    let status = eng.status("r").unwrap();
    let x_holds = status.holders.iter().any(|h| h.session_id == x.id());
    assert!(
        got.is_ok(),
        "x never got its lease ({:?}) although the engine lists x as a holder: {x_holds}",
        got.err()
    );
}

// ----- 5. a large duration panics the actor and kills the engine ----------------------

#[test]
fn a_huge_timeout_or_ttl_does_not_kill_the_engine() {
    let eng = Handle::new(Config::default()).unwrap();
    let sub = eng.subscribe(None, None).unwrap();
    let s = eng.open_session(SessionSpec::named("a")).unwrap();
    std::thread::sleep(ms(5));
    let forever = AcquireOptions {
        timeout: Some(Duration::MAX),
        ..Default::default()
    };
    let first = s.acquire("r", &forever);
    let after = eng.status("r");
    // The engine died: the subscription never learns it (it is not closed).
    let ended = {
        while sub.try_recv().is_some() {}
        sub.is_closed()
    };
    assert!(
        first.is_ok() && after.is_ok(),
        "acquire with timeout Duration::MAX: {first:?}; next call: {:?}; subscription closed: {ended}",
        after.err()
    );
}

// ----- 6. replay from `since` is cut at the subscriber buffer ------------------------

#[test]
fn subscribe_since_replays_everything_the_global_ring_still_holds() {
    let eng = Handle::new(Config::default()).unwrap(); // ring 10,000, buffer 1,024
    let s = eng.open_session(SessionSpec::named("a")).unwrap();
    for _ in 0..1000 {
        s.acquire("r", &AcquireOptions::default())
            .unwrap()
            .release()
            .unwrap();
    }
    let in_ring = eng.history(None, None, None).unwrap().len();
    assert!(in_ring > 2000);
    let sub = eng.subscribe(None, Some(0)).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
    let lagged = got.iter().filter(|e| e.kind == EventKind::Lagged).count();
    assert_eq!(
        (got.len(), lagged),
        (in_ring, 0),
        "a reconnecting client missed events that the ring still holds"
    );
}

// ----- 7. the last handle dropped on the actor thread joins the actor (or the dispatcher,
//          which waits for the actor) ------------------------------------------------

#[test]
#[cfg(target_os = "linux")]
fn the_last_handle_dropped_on_the_actor_thread_neither_panics_nor_hangs_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Mutex};

    /// The id of the calling thread in /proc/self/task.
    fn os_thread_id() -> u64 {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        let tid = link.file_name().and_then(|t| t.to_str()).expect("a tid");
        tid.parse().expect("a numeric tid")
    }

    /// Tells, when dropped, on which thread (name and OS id) that happened.
    struct TellsWhereDropped(mpsc::Sender<(String, u64)>);

    impl Drop for TellsWhereDropped {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = self.0.send((name, os_thread_id()));
        }
    }

    static ACTOR_PANICKED: AtomicBool = AtomicBool::new(false);
    static MSG: Mutex<String> = Mutex::new(String::new());
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Only this test's panic (another test here panics the actor differently).
        if std::thread::current().name() == Some("interlock-actor")
            && info.to_string().contains("failed to join thread")
        {
            ACTOR_PANICKED.store(true, Ordering::SeqCst);
            *MSG.lock().unwrap() = info.to_string();
        }
        prev(info);
    }));

    let clock = Arc::new(ManualClock::new(1_700_000_000.0));
    let eng = Handle::with_clock(Config::default(), clock.clone()).unwrap();
    let s = eng.open_session(SessionSpec::named("a")).unwrap();
    let lease = s
        .acquire(
            "r",
            &AcquireOptions {
                ttl: Some(ms(100)),
                ..Default::default()
            },
        )
        .unwrap();
    // A callback that keeps the engine at hand (to query status, say). It never runs: it
    // wants events of a resource nobody uses.
    let h2 = eng.clone();
    let (dropped_tx, dropped) = mpsc::channel();
    let tell = TellsWhereDropped(dropped_tx);
    let sub = eng
        .subscribe_callback(Some(&["unused".to_string()]), None, move |_| {
            let _ = (&h2, &tell);
        })
        .unwrap();
    drop(sub);
    drop(lease);
    drop(s);
    drop(eng);
    // Only now does the lease expire, on the engine's clock; the actor sees it when it
    // wakes for the deadline. It publishes the expiry, forgets the closed subscription,
    // drops its callback and with it the last handle: the link closes on the actor thread.
    clock.advance(ms(200));
    let (thread, tid) = dropped
        .recv_timeout(Duration::from_secs(10))
        .expect("the actor forgot the closed subscription");
    assert_eq!(thread, "interlock-actor", "the last handle went elsewhere");
    // The actor finishes by itself: it neither panics nor hangs.
    let task = format!("/proc/self/task/{tid}");
    for _ in 0..1000 {
        if !std::path::Path::new(&task).exists() {
            break;
        }
        std::thread::sleep(ms(10));
    }
    assert!(
        !std::path::Path::new(&task).exists(),
        "the actor thread never ended after the last handle dropped on it"
    );
    assert!(
        !ACTOR_PANICKED.load(Ordering::SeqCst),
        "actor thread panicked: {}",
        MSG.lock().unwrap()
    );
}

// ----- 8. a subscriber that reads nothing keeps the newest events -----------------------

#[test]
fn a_subscriber_that_reads_nothing_keeps_the_newest_events_after_a_lagged_marker() {
    let eng = Handle::new(Config::default()).unwrap(); // subscriber buffer 1,024
    let sub = eng.subscribe(None, None).unwrap();
    let s = eng.open_session(SessionSpec::named("a")).unwrap();
    for _ in 0..30_000 {
        s.acquire("r", &AcquireOptions::default())
            .unwrap()
            .release()
            .unwrap();
    }
    // The releases went ahead of this acquire: once it returns, every event before its
    // own is published, and its own too.
    let last = s.acquire("last", &AcquireOptions::default()).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
    assert_eq!(got[0].kind, EventKind::Lagged, "{:?}", got[0]);
    let missed = got[0]
        .position()
        .expect("a lagged marker counts what it missed");
    let kept = &got[1..];
    assert!(
        kept.windows(2).all(|w| w[0].seq < w[1].seq),
        "kept events out of order"
    );
    assert!(kept.iter().all(|e| e.kind != EventKind::Lagged));
    let newest = kept.last().unwrap();
    assert_eq!(
        (newest.kind, newest.resource.as_deref(), newest.fence()),
        (EventKind::Acquired, Some("last"), Some(last.fence())),
        "the newest event is kept"
    );
    // Events 1 (the session opening) to the last acquire's: each missed or kept.
    assert_eq!(missed + kept.len() as u64, newest.seq);
    assert_eq!(
        kept[0].seq,
        missed + 1,
        "the marker stands where events are missing"
    );
    assert_eq!(kept.len(), Config::default().subscriber_buffer);
}
