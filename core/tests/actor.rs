//! The real actor, from many threads and from async callers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interlock::*;

fn engine() -> Handle {
    Handle::new(Config::default()).expect("engine starts")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn exclusive(timeout: Option<Duration>) -> AcquireOptions {
    AcquireOptions {
        timeout,
        ..Default::default()
    }
}

/// An engine on a manual clock that reads unix time 1000.0 until advanced, and a session.
fn manual_clock_engine() -> (Arc<ManualClock>, Handle, Session) {
    let clock = Arc::new(ManualClock::new(1000.0));
    let eng = Handle::with_clock(Config::default(), clock.clone()).expect("engine starts");
    let s = eng.open_session(SessionSpec::named("s")).expect("session");
    (clock, eng, s)
}

/// Waits (up to 5 s) until `f` holds; for effects on other threads.
fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(ms(10));
    }
    panic!("never happened: {what}");
}

#[test]
fn many_threads_on_one_resource_never_overlap() {
    let eng = engine();
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (eng, inside, max_inside, total) = (
                eng.clone(),
                inside.clone(),
                max_inside.clone(),
                total.clone(),
            );
            std::thread::spawn(move || {
                let s = eng
                    .open_session(SessionSpec::named(format!("worker-{i}")))
                    .unwrap();
                for _ in 0..200 {
                    let lease = s.acquire("reactor-1", &AcquireOptions::default()).unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_inside.fetch_max(now, Ordering::SeqCst);
                    total.fetch_add(1, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    lease.release().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(max_inside.load(Ordering::SeqCst), 1);
    assert_eq!(total.load(Ordering::SeqCst), 1600);
    assert!(!eng.status("reactor-1").unwrap().locked);
}

#[test]
fn a_blocking_wait_times_out_and_leaves_the_queue() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let _held = a.acquire("scope", &AcquireOptions::default()).unwrap();
    let err = b.acquire("scope", &exclusive(Some(ms(50)))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
    assert!(eng.status("scope").unwrap().waiters.is_empty());
    let err = b
        .acquire("scope", &exclusive(Some(Duration::ZERO)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
}

#[test]
fn a_waiter_woken_by_a_release_gets_the_lock() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let held = a.acquire("ps", &AcquireOptions::default()).unwrap();
    let eng2 = eng.clone();
    let waiter = std::thread::spawn(move || {
        let b = eng2.open_session(SessionSpec::named("b")).unwrap();
        let lease = b
            .acquire("ps", &exclusive(Some(Duration::from_secs(10))))
            .unwrap();
        (b.id(), lease.fence())
    });
    eventually("b queued", || eng.status("ps").unwrap().waiters.len() == 1);
    held.release().unwrap();
    let (b, fence) = waiter.join().unwrap();
    assert!(eng.check("ps", b, Action::Control).unwrap());
    assert!(eng.check_fence("ps", fence).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_async_waiter_leaves_nothing_queued_or_held() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let held = a
        .acquire_async("motor", &AcquireOptions::default())
        .await
        .unwrap();
    let gave_up =
        tokio::time::timeout(ms(50), b.acquire_async("motor", &AcquireOptions::default())).await;
    assert!(gave_up.is_err(), "still waiting when the caller gave up");
    assert!(eng.status("motor").unwrap().waiters.is_empty());
    held.release_async().await.unwrap();
    assert!(
        !eng.status("motor").unwrap().locked,
        "nobody holds it after the release"
    );
}

#[test]
fn a_dropped_ticket_whose_grant_arrived_unseen_is_released() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let held = a.acquire("ps", &AcquireOptions::default()).unwrap();
    let ticket = b.enqueue(&["ps"], &AcquireOptions::default()).unwrap();
    assert_eq!(ticket.position().unwrap(), Some(1));
    held.release().unwrap();
    eventually("granted to b", || {
        eng.check("ps", b.id(), Action::Control).unwrap()
    });
    drop(ticket);
    let st = eng.status("ps").unwrap();
    assert!(!st.locked, "the unseen grant was undone: {st:?}");
    let hist = eng.history(Some("ps"), Some(b.id()), None).unwrap();
    assert_eq!(hist.last().unwrap().reason(), Some("cancelled"));
}

#[test]
fn a_ticket_can_be_waited_on_in_slices_and_cancelled() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let c = eng.open_session(SessionSpec::named("c")).unwrap();
    let held = a.acquire("ps", &AcquireOptions::default()).unwrap();
    let tb = b.enqueue(&["ps"], &AcquireOptions::default()).unwrap();
    let tc = c.enqueue(&["ps"], &AcquireOptions::default()).unwrap();
    assert_eq!(tc.position().unwrap(), Some(2));
    assert!(tb.poll(Some(ms(10))).unwrap().is_none());
    assert_eq!(
        tb.wait(Some(ms(10))).unwrap_err().kind(),
        ErrorKind::LockTimeout
    );
    assert_eq!(
        tb.position().unwrap(),
        Some(1),
        "a timed-out wait stays queued"
    );
    tb.cancel().unwrap();
    assert_eq!(tb.wait(None).unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(tb.position().unwrap(), None);
    assert_eq!(tc.position().unwrap(), Some(1));
    held.release().unwrap();
    let leases = tc.wait(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(leases[0].resource(), "ps");
    assert_eq!(tc.position().unwrap(), None);
}

#[test]
fn enqueue_reports_errors_at_once() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let _held = a.acquire("ps", &AcquireOptions::default()).unwrap();
    let err = a.enqueue(&["ps"], &AcquireOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyHeld);
    let err = a.enqueue(&[""], &AcquireOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn lease_state_is_exact_and_a_lost_lease_says_so() {
    let eng = engine();
    let plan = eng.open_session(SessionSpec::named("plan")).unwrap();
    let maint = eng.open_session(SessionSpec::named("maintenance")).unwrap();
    let lease = plan
        .acquire(
            "dev",
            &AcquireOptions {
                priority: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(lease.is_valid());
    let top = AcquireOptions {
        priority: 0,
        preempt: true,
        ..Default::default()
    };
    let m = maint.acquire("dev", &top).unwrap();
    assert!(
        !lease.is_valid(),
        "exact as soon as the preempting call returned"
    );
    assert_eq!(lease.lost_reason(), Some(LostReason::Preempted));
    let err = lease.release().unwrap_err();
    assert!(
        matches!(
            err,
            Error::LockLost {
                reason: LostReason::Preempted,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(lease.renew(None).unwrap_err().kind(), ErrorKind::LockLost);
    assert_eq!(
        eng.release("dev", lease.token()).unwrap_err().kind(),
        ErrorKind::InvalidToken
    );
    m.release().unwrap();
    assert!(!m.is_valid() && m.lost_reason().is_none());
    m.release().unwrap();
    assert_eq!(m.renew(None).unwrap_err().kind(), ErrorKind::InvalidToken);
}

#[test]
fn a_release_that_returned_is_seen_by_every_later_call_from_any_thread() {
    // `Lease::release` does not wait for the actor, yet nothing sent after it returns
    // may overtake it: here another thread, told by a plain channel, tries at once.
    let eng = engine();
    let s = eng.open_session(SessionSpec::named("s")).unwrap();
    let (go, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let other = {
        let eng = eng.clone();
        std::thread::spawn(move || {
            let t = eng.open_session(SessionSpec::named("t")).unwrap();
            for () in rx {
                t.acquire("a", &exclusive(Some(Duration::ZERO)))
                    .expect("free once the release returned")
                    .release()
                    .unwrap();
                done_tx.send(()).unwrap();
            }
        })
    };
    for _ in 0..2_000 {
        let lease = s.acquire("a", &exclusive(Some(Duration::ZERO))).unwrap();
        lease.release().unwrap();
        assert!(!lease.is_valid());
        go.send(()).unwrap();
        done.recv().unwrap();
    }
    drop(go);
    other.join().unwrap();
}

#[test]
fn on_lost_runs_on_the_dispatcher_thread_and_not_on_release() {
    let eng = engine();
    let s = eng.open_session(SessionSpec::named("s")).unwrap();
    let seen: Arc<Mutex<Vec<(String, LostReason, String)>>> = Arc::default();
    let sink = seen.clone();
    let on_lost: LostCallback = Arc::new(move |n: &LostNotice| {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        sink.lock()
            .unwrap()
            .push((n.resource.to_string(), n.reason, thread));
    });
    let opts = AcquireOptions {
        on_lost: Some(on_lost),
        ..Default::default()
    };
    let kept = s.acquire("a", &opts).unwrap();
    s.acquire("b", &opts).unwrap();
    kept.release().unwrap();
    assert_eq!(eng.force_release("b", Some("stuck")).unwrap(), 1);
    eventually("callback ran", || seen.lock().unwrap().len() == 1);
    std::thread::sleep(ms(20));
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [(
            "b".to_string(),
            LostReason::ForceReleased,
            "interlock-dispatch".to_string()
        )]
    );
}

#[test]
fn subscriptions_see_live_events_replay_from_a_seq_and_end_on_close() {
    let eng = engine();
    let all = eng.subscribe(None, None).unwrap();
    let only_b = eng.subscribe(Some(&["b".to_string()]), None).unwrap();
    let s = eng.open_session(SessionSpec::named("s")).unwrap();
    s.acquire("a", &AcquireOptions::default())
        .unwrap()
        .release()
        .unwrap();
    s.acquire("b", &AcquireOptions::default()).unwrap();
    let kinds: Vec<EventKind> = std::iter::from_fn(|| all.recv_timeout(ms(200)))
        .map(|e| e.kind)
        .collect();
    use EventKind::*;
    assert_eq!(kinds, [SessionOpened, Acquired, Released, Acquired]);
    let b_events: Vec<_> = std::iter::from_fn(|| only_b.try_recv()).collect();
    assert_eq!(b_events.len(), 1);
    assert_eq!(b_events[0].resource.as_deref(), Some("b"));
    let replay = eng.subscribe(None, Some(2)).unwrap();
    let seqs: Vec<u64> = std::iter::from_fn(|| replay.try_recv())
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [3, 4]);
    eng.close();
    assert!(
        all.recv().is_none(),
        "the stream ends when the engine closes"
    );
}

#[test]
fn a_slow_subscriber_gets_a_lagged_marker_and_never_stalls_the_engine() {
    let eng = Handle::new(Config {
        subscriber_buffer: 4,
        ..Config::default()
    })
    .unwrap();
    let slow = eng.subscribe(None, None).unwrap();
    let s = eng.open_session(SessionSpec::named("s")).unwrap();
    for _ in 0..50 {
        s.acquire("a", &AcquireOptions::default())
            .unwrap()
            .release()
            .unwrap();
    }
    // A release does not wait for the actor; any call that does has its events published.
    eng.status("a").unwrap();
    let got: Vec<_> = std::iter::from_fn(|| slow.try_recv()).collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].kind, EventKind::Lagged);
    assert_eq!(got[4].position(), Some(101 - 4));
}

#[test]
fn callback_subscriptions_run_on_the_dispatcher_and_a_panicking_callback_does_not_stop_them() {
    let eng = engine();
    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let sink = seen.clone();
    let _sub = eng
        .subscribe_callback(None, None, move |ev| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            sink.lock().unwrap().push((ev.seq, thread));
            assert!(ev.seq != 2, "a callback that panics");
        })
        .unwrap();
    let s = eng.open_session(SessionSpec::named("s")).unwrap();
    s.acquire("a", &AcquireOptions::default())
        .unwrap()
        .release()
        .unwrap();
    eventually("3 callbacks", || seen.lock().unwrap().len() == 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(seen.iter().all(|(_, t)| t == "interlock-dispatch"));
}

#[test]
fn close_fails_pending_waits_and_later_calls() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let _held = a.acquire("ps", &AcquireOptions::default()).unwrap();
    let eng2 = eng.clone();
    let waiter = std::thread::spawn(move || {
        let b = eng2.open_session(SessionSpec::named("b")).unwrap();
        b.acquire("ps", &AcquireOptions::default()).unwrap_err()
    });
    eventually("b queued", || eng.status("ps").unwrap().waiters.len() == 1);
    eng.close();
    assert_eq!(waiter.join().unwrap().kind(), ErrorKind::EngineClosed);
    assert_eq!(
        eng.status("ps").unwrap_err().kind(),
        ErrorKind::EngineClosed
    );
    assert_eq!(a.heartbeat().unwrap_err().kind(), ErrorKind::EngineClosed);
    eng.close();
}

#[test]
fn a_manual_clock_drives_expiry_through_the_actor() {
    let (clock, eng, s) = manual_clock_engine();
    let lease = s
        .acquire(
            "a",
            &AcquireOptions {
                ttl: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(lease.expires_at(), Some(1005.0));
    clock.advance(Duration::from_secs(4));
    assert_eq!(lease.renew(None).unwrap(), Some(1009.0));
    clock.advance(Duration::from_secs(5));
    assert!(!eng.status("a").unwrap().locked);
    assert_eq!(lease.lost_reason(), Some(LostReason::Expired));
}

/// The actor reads the clock when it takes commands from its queue, whether it was
/// still polling for them or had parked: a command is never timed before it was sent.
#[test]
fn a_command_is_timed_when_the_actor_takes_it() {
    let (clock, eng, s) = manual_clock_engine();
    let opts = AcquireOptions {
        ttl: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    for (i, pause) in [ms(0), ms(20), ms(0)].into_iter().enumerate() {
        clock.advance(Duration::from_secs(1));
        std::thread::sleep(pause);
        let lease = s.acquire(&format!("r{i}"), &opts).unwrap();
        assert_eq!(lease.expires_at(), Some(1011.0 + i as f64));
    }
    eng.close();
}

/// Commands sent in a burst reach the actor in batches that share one clock reading,
/// taken after the batch: none is timed before it was sent.
#[test]
fn commands_sent_in_a_burst_are_never_timed_before_they_were_sent() {
    let (clock, eng, s) = manual_clock_engine();
    let sent: Vec<(f64, interlock::Ticket)> = (0..500)
        .map(|i| {
            clock.advance(Duration::from_millis(1));
            let at = 1000.0 + f64::from(i + 1) / 1000.0;
            let ticket = s.request(&[&format!("r{i}")], &AcquireOptions::default());
            (at, ticket.unwrap())
        })
        .collect();
    for (at, ticket) in sent {
        let lease = ticket.wait(None).unwrap().pop().unwrap();
        // The clock's own float arithmetic may differ from ours in the last bit.
        assert!(
            lease.acquired_at() >= at - 1e-9,
            "{} < {at}",
            lease.acquired_at()
        );
    }
    eng.close();
}

#[test]
fn a_session_value_can_be_made_from_an_id() {
    let eng = engine();
    let s = eng.open_session(SessionSpec::named("from-c")).unwrap();
    let again = eng.session(s.id()).unwrap();
    assert_eq!(again.name(), "from-c");
    s.close().unwrap();
    assert_eq!(eng.session(s.id()).unwrap_err().kind(), ErrorKind::NotFound);
}
