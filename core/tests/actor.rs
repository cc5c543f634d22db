//! The real actor, from many threads and from async callers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
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

/// The next event of `sub`, which must come (within 5 s).
fn next_event(sub: &Subscription) -> Arc<Event> {
    sub.recv_timeout(Duration::from_secs(5))
        .expect("an event within 5 s")
}

/// The OS id of the calling thread, as /proc/self/task names it.
#[cfg(target_os = "linux")]
fn os_thread_id() -> u64 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link.file_name().and_then(|t| t.to_str()).expect("a tid");
    tid.parse().expect("a numeric tid")
}

/// The OS id of the actor thread of `eng`: a closed subscription's callback is dropped
/// where the actor forgets it, on its own thread, at its next event.
#[cfg(target_os = "linux")]
fn actor_thread(eng: &Handle) -> u64 {
    struct Tell(mpsc::Sender<(String, u64)>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = self.0.send((name, os_thread_id()));
        }
    }
    let (tx, rx) = mpsc::channel();
    let tell = Tell(tx);
    let sub = eng
        .subscribe_callback(Some(&["unused".to_string()]), None, move |_| {
            let _ = &tell;
        })
        .unwrap();
    drop(sub);
    eng.open_session(SessionSpec::named("probe")).unwrap();
    let (name, tid) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(name, "interlock-actor");
    tid
}

/// Waits until the thread `tid` sleeps in the kernel (the actor parked on its channel).
#[cfg(target_os = "linux")]
fn wait_until_parked(tid: u64) {
    let asleep = || {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // "tid (name) S ...": the state follows the parenthesised name.
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name.split_whitespace().next() == Some("S")
    };
    eventually("the actor parked", asleep);
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
    let opts = AcquireOptions::default();
    let mut waiting = Box::pin(b.acquire_async("motor", &opts));
    let queued = async {
        while eng.status("motor").unwrap().waiters.len() != 1 {
            tokio::time::sleep(ms(1)).await;
        }
    };
    tokio::select! {
        got = &mut waiting => panic!("b got the held lock: {got:?}"),
        () = queued => {}
    }
    let waiter = &eng.status("motor").unwrap().waiters[0];
    assert_eq!(waiter.session_id, b.id(), "b waits in the queue");
    drop(waiting);
    assert!(
        eng.status("motor").unwrap().waiters.is_empty(),
        "the dropped wait left the queue"
    );
    held.release_async().await.unwrap();
    assert!(
        !eng.status("motor").unwrap().locked,
        "nobody holds it after the release"
    );
    assert!(!eng.check("motor", b.id(), Action::Observe).unwrap());
    let hist = eng.history(Some("motor"), Some(b.id()), None).unwrap();
    let kinds: Vec<_> = hist.iter().map(|e| (e.kind, e.reason())).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Queued, None),
            (EventKind::Dequeued, Some("cancelled"))
        ]
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
    // The grant was made; the ticket gave it back.
    let hist = eng.history(Some("ps"), Some(b.id()), None).unwrap();
    let kinds: Vec<_> = hist.iter().map(|e| (e.kind, e.reason())).collect();
    use EventKind::*;
    assert_eq!(kinds, [(Queued, None), (Acquired, None), (Released, None)]);
}

#[test]
fn cancelling_a_ticket_whose_grant_arrived_unseen_releases_it() {
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
    ticket.cancel().unwrap();
    assert_eq!(
        ticket.wait(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::Cancelled
    );
    let st = eng.status("ps").unwrap();
    assert!(!st.locked, "the unseen grant was released: {st:?}");
    let last = eng.history(Some("ps"), Some(b.id()), None).unwrap();
    assert_eq!(last.last().unwrap().kind, EventKind::Released);
    // The engine is free for the next one at once.
    a.acquire("ps", &exclusive(Some(Duration::ZERO))).unwrap();
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
    assert_eq!(tc.wait(None).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_ticket_whose_request_failed_gives_its_error_on_every_wait() {
    let eng = engine();
    let a = eng.open_session(SessionSpec::named("a")).unwrap();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let _held = a.acquire("ps", &AcquireOptions::default()).unwrap();
    let ticket = b.enqueue(&["ps"], &exclusive(Some(ms(20)))).unwrap();
    for _ in 0..2 {
        let err = ticket.wait(Some(Duration::from_secs(5))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockTimeout);
    }
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
    // The engine too remembers why the token stopped working.
    let lost = Error::LockLost {
        resource: "dev".into(),
        reason: LostReason::Preempted,
    };
    assert_eq!(eng.release("dev", lease.token()).unwrap_err(), lost);
    assert_eq!(eng.renew("dev", lease.token(), None).unwrap_err(), lost);
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
    // The dispatcher runs callbacks in order: once a later loss is told, anything the
    // release of "a" would have caused was told before it.
    s.acquire("c", &opts).unwrap();
    assert_eq!(eng.force_release("c", None).unwrap(), 1);
    eventually("the later callback ran", || seen.lock().unwrap().len() == 2);
    let seen = seen.lock().unwrap();
    let told = |r: &str| {
        (
            r.to_string(),
            LostReason::ForceReleased,
            "interlock-dispatch".to_string(),
        )
    };
    assert_eq!(*seen, [told("b"), told("c")]);
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
    let b = s.acquire("b", &AcquireOptions::default()).unwrap();
    let kinds: Vec<EventKind> = (0..4).map(|_| next_event(&all).kind).collect();
    use EventKind::*;
    assert_eq!(kinds, [SessionOpened, Acquired, Released, Acquired]);
    // One more, known event: each stream has exactly what it should up to it.
    b.release().unwrap();
    let after = next_event(&all);
    assert_eq!((after.seq, after.kind), (5, Released));
    let b_events: Vec<_> = (0..2).map(|_| next_event(&only_b)).collect();
    assert!(b_events.iter().all(|e| e.resource.as_deref() == Some("b")));
    assert_eq!(
        b_events.iter().map(|e| (e.seq, e.kind)).collect::<Vec<_>>(),
        [(4, Acquired), (5, Released)]
    );
    // A replay is queued whole before `subscribe` returns.
    let replay = eng.subscribe(None, Some(2)).unwrap();
    let seqs: Vec<u64> = std::iter::from_fn(|| replay.try_recv())
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    eng.close();
    assert!(
        all.recv().is_none(),
        "the stream ends when the engine closes"
    );
}

#[test]
fn a_replay_that_catches_up_an_expiry_gets_each_event_once() {
    // A lease runs out while nothing wakes the actor (a manual clock): the subscription
    // that replays from the start is the first message after it. The expiry, and the
    // grant it makes possible, come to it once each, in order.
    use EventKind::*;
    let (clock, eng, s) = manual_clock_engine();
    let b = eng.open_session(SessionSpec::named("b")).unwrap();
    let opts = AcquireOptions {
        ttl: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let first = s.acquire("psu", &opts).unwrap();
    let ticket = b.enqueue(&["psu"], &AcquireOptions::default()).unwrap();
    clock.advance(Duration::from_secs(60));
    let sub = eng.subscribe(None, Some(0)).unwrap();
    let second = ticket.wait(Some(Duration::from_secs(5))).unwrap().remove(0);
    second.release().unwrap();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &Arc<Event>| e.kind == Released && e.fence() == Some(second.fence()))
    {
        seen.push(next_event(&sub));
    }
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ends: Vec<_> = seen
        .iter()
        .filter(|e| e.resource.as_deref() == Some("psu") && e.kind != Queued)
        .map(|e| (e.kind, e.fence()))
        .collect();
    assert_eq!(
        ends,
        [
            (Acquired, Some(first.fence())),
            (Expired, Some(first.fence())),
            (Acquired, Some(second.fence())),
            (Released, Some(second.fence())),
        ]
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
    // It keeps the newest 4 of the 101 events, behind a marker for the 97 it dropped.
    let got: Vec<_> = std::iter::from_fn(|| slow.try_recv()).collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].kind, EventKind::Lagged);
    assert_eq!(got[0].position(), Some(101 - 4));
    let kept: Vec<_> = got[1..].iter().map(|e| (e.seq, e.kind)).collect();
    use EventKind::*;
    assert_eq!(
        kept,
        [
            (98, Acquired),
            (99, Released),
            (100, Acquired),
            (101, Released)
        ]
    );
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
/// (That it parked is seen in /proc; that it was still polling cannot be made sure of,
/// but a command sent right after a reply usually finds it so.)
#[test]
#[cfg(target_os = "linux")]
fn a_command_is_timed_when_the_actor_takes_it() {
    let (clock, eng, s) = manual_clock_engine();
    let actor = actor_thread(&eng);
    let opts = AcquireOptions {
        ttl: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    for (i, parked) in [false, true, false].into_iter().enumerate() {
        clock.advance(Duration::from_secs(1));
        if parked {
            wait_until_parked(actor);
        }
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

/// A holder's `release` and the engine ending the lease meanwhile (here, an expiry it
/// notices when the release arrives) race for the lease's cell; whichever wins, the
/// holder sees one consistent end: `release` is `Ok` and the lease released, with no
/// `on_lost`, or `release` is `LockLost` and the lease lost, with `on_lost` told once.
/// Every other round, the engine notices the expiry before the release is sent: then
/// the loss wins for certain.
#[test]
fn a_release_racing_an_expiry_ends_the_lease_one_way_for_its_holder() {
    let (clock, eng, s) = manual_clock_engine();
    let (lost_tx, lost_rx) = mpsc::channel::<u64>();
    let on_lost: LostCallback = Arc::new(move |n: &LostNotice| {
        let _ = lost_tx.send(n.fence);
    });
    let opts = AcquireOptions {
        ttl: Some(Duration::from_secs(1)),
        on_lost: Some(on_lost),
        ..Default::default()
    };
    let (mut released, mut lost) = (0, 0);
    for round in 0..200 {
        let (resource, mark) = (format!("dev-{round}"), format!("mark-{round}"));
        let (marked_tx, marked) = mpsc::channel::<()>();
        let marker = eng
            .subscribe_callback(Some(std::slice::from_ref(&mark)), None, move |_| {
                let _ = marked_tx.send(());
            })
            .unwrap();
        let lease = s.acquire(&resource, &opts).unwrap();
        // The TTL runs out on the engine's clock.
        clock.advance(Duration::from_secs(2));
        let noticed_first = round % 2 == 0;
        if noticed_first {
            assert!(!eng.status(&resource).unwrap().locked);
            assert!(
                !lease.is_valid(),
                "exact once the engine processed the expiry"
            );
        }
        let outcome = lease.release();
        // Callbacks run in order: once the marker's has run, any `on_lost` of this
        // round's lease has run before it.
        s.acquire(&mark, &AcquireOptions::default())
            .unwrap()
            .release()
            .unwrap();
        marked.recv_timeout(Duration::from_secs(5)).unwrap();
        let told: Vec<u64> = lost_rx.try_iter().collect();
        match outcome {
            Ok(()) => {
                released += 1;
                assert!(!noticed_first, "round {round}: released a lost lease");
                assert_eq!(lease.state(), LeaseState::Released, "round {round}");
                assert!(told.is_empty(), "round {round}: on_lost after a release");
            }
            Err(e) => {
                lost += 1;
                let expired = Error::LockLost {
                    resource: resource.clone(),
                    reason: LostReason::Expired,
                };
                assert_eq!(e, expired, "round {round}");
                assert_eq!(lease.lost_reason(), Some(LostReason::Expired));
                assert_eq!(told, [lease.fence()], "round {round}: on_lost once");
            }
        }
        // The engine decided by the order of its commands: the expiry came first.
        assert!(!eng.check_fence(&resource, lease.fence()).unwrap());
        let last = eng.history(Some(&resource), None, Some(1)).unwrap();
        assert_eq!(last[0].kind, EventKind::Expired, "round {round}");
        drop(marker);
    }
    assert!(lost >= 100, "every other round the loss came first");
    println!(
        "races: {} won by the release, {} by the expiry",
        released,
        lost - 100
    );
}

/// Each lease's cell is its own, across the pages in which the actor hands them out.
#[test]
fn each_lease_has_its_own_cell_across_pages_of_cells() {
    let eng = engine();
    let s = eng.open_session(SessionSpec::named("s")).unwrap();
    let leases: Vec<Lease> = (0..3 * 64 + 1)
        .map(|i| {
            s.acquire(&format!("r{i}"), &AcquireOptions::default())
                .unwrap()
        })
        .collect();
    for l in leases.iter().step_by(3) {
        l.release().unwrap();
    }
    for l in leases.iter().skip(1).step_by(3) {
        assert_eq!(eng.force_release(l.resource(), None).unwrap(), 1);
    }
    for (i, l) in leases.iter().enumerate() {
        let want = match i % 3 {
            0 => LeaseState::Released,
            1 => LeaseState::Lost(LostReason::ForceReleased),
            _ => LeaseState::Held,
        };
        assert_eq!(l.state(), want, "lease {i}");
        let current = eng.check_fence(l.resource(), l.fence()).unwrap();
        assert_eq!(current, i % 3 == 2, "lease {i}");
    }
}

#[test]
fn a_session_is_resumed_with_its_secret_and_a_token_renews_alone() {
    let (clock, eng, s) = manual_clock_engine();
    let secret = s.secret().expect("the opener knows the secret");
    let again = eng.resume_session(s.id(), secret).unwrap();
    assert_eq!((again.id(), again.name()), (s.id(), "s"));
    assert_eq!(again.secret(), Some(secret));
    assert_eq!(eng.session(s.id()).unwrap().secret(), None);
    let other = eng.open_session(SessionSpec::named("other")).unwrap();
    let wrong = eng.resume_session(s.id(), other.secret().unwrap());
    assert_eq!(wrong.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert!(!format!("{secret} {secret:?} {s:?}").contains(&secret.expose()));
    // A holder that kept only the token renews by it.
    let lease = again
        .acquire(
            "a",
            &AcquireOptions {
                ttl: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )
        .unwrap();
    clock.advance(Duration::from_secs(4));
    let renewed = eng.renew("a", lease.token(), Some(Duration::from_secs(10)));
    assert_eq!(renewed.unwrap(), Some(1014.0));
    clock.advance(Duration::from_secs(9));
    assert!(eng.check_fence("a", lease.fence()).unwrap());
    assert!(lease.is_valid());
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
