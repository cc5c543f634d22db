//! A remote engine against a server in this process: the same API as an embedded one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use interlock::{
    AcquireOptions, ConnectOptions, ErrorKind, EventKind, Handle, LeaseState, SessionSpec,
};

mod common;
use common::serve;

#[test]
fn a_remote_engine_acquires_queues_and_releases() {
    let (engine, server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let a = remote.open_session(SessionSpec::named("remote-a")).unwrap();
    let lease = a.acquire("psu", &AcquireOptions::default()).unwrap();
    assert!(lease.is_valid());
    assert!(engine.check_fence("psu", lease.fence()).unwrap());
    let b = engine.open_session(SessionSpec::named("local-b")).unwrap();
    let ticket = b.enqueue(&["psu"], &AcquireOptions::default()).unwrap();
    assert_eq!(ticket.position().unwrap(), Some(1));
    lease.release().unwrap();
    let got = ticket.wait(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(got[0].resource(), "psu");
    let status = remote.status("psu").unwrap();
    assert_eq!(status.holders[0].session_name.as_ref(), "local-b");
    assert!(a.secret().is_some());
    let sessions = remote.sessions().unwrap();
    assert_eq!(sessions.len(), 2);
}

#[test]
fn a_long_run_of_posted_releases_is_applied_in_full_before_the_next_call() {
    // More posts in a row than the server hands on without waiting (it awaits one in
    // each `POSTS_AHEAD`): none is lost, and the call after them sees them all applied.
    let (engine, server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let a = remote.open_session(SessionSpec::named("remote-a")).unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("channel-{i}")).collect();
    let leases: Vec<_> = names
        .iter()
        .map(|n| a.acquire(n, &AcquireOptions::default()).unwrap())
        .collect();
    assert_eq!(engine.locks().unwrap().len(), 100);
    for lease in &leases {
        lease.release().unwrap();
    }
    assert!(remote.status("channel-99").unwrap().holders.is_empty());
    assert!(engine.locks().unwrap().is_empty());
    assert!(leases.iter().all(|l| l.state() == LeaseState::Released));
}

#[test]
fn a_lease_taken_away_on_the_server_turns_lost_remotely() {
    let (engine, server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let a = remote.open_session(SessionSpec::named("remote-a")).unwrap();
    let lease = a.acquire("psu", &AcquireOptions::default()).unwrap();
    assert_eq!(engine.force_release("psu", Some("maintenance")).unwrap(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lease.is_valid() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        lease.state(),
        LeaseState::Lost(interlock::LostReason::ForceReleased)
    );
    assert_eq!(lease.release().unwrap_err().kind(), ErrorKind::LockLost);
}

#[test]
fn a_remote_subscription_sees_the_events() {
    let (engine, server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let sub = remote.subscribe(None, None).unwrap();
    let s = engine.open_session(SessionSpec::named("x")).unwrap();
    s.acquire("r", &AcquireOptions::default()).unwrap();
    let kinds: Vec<_> = (0..2)
        .map(|_| sub.recv_timeout(Duration::from_secs(5)).unwrap().kind)
        .collect();
    assert_eq!(
        kinds,
        [
            interlock::EventKind::SessionOpened,
            interlock::EventKind::Acquired
        ]
    );
}

#[test]
fn a_session_resumed_on_another_connection_acts_there() {
    let (_engine, server) = serve();
    let one = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let a = one.open_session(SessionSpec::named("a")).unwrap();
    let other = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let again = other.resume_session(a.id(), a.secret().unwrap()).unwrap();
    let lease = again.acquire("psu", &AcquireOptions::default()).unwrap();
    assert!(lease.is_valid());
}

#[test]
fn a_client_closes_its_own_session_and_then_gets_the_engines_answers() {
    let engine = Handle::new(interlock::Config::default()).unwrap();
    let token = "a-client-token-of-the-test";
    let config = interlock_server::ServerConfig {
        bind: "127.0.0.1:0".into(),
        tokens: interlock_server::Tokens::new([(token, interlock_server::Role::Client)]).unwrap(),
        ..interlock_server::ServerConfig::default()
    };
    let server = interlock_server::Server::start(engine.clone(), config).unwrap();
    let options = ConnectOptions {
        token: Some(token.into()),
        ..ConnectOptions::default()
    };
    let remote = Handle::connect(server.url(), options).unwrap();
    let a = remote.open_session(SessionSpec::named("a")).unwrap();
    a.acquire("psu", &AcquireOptions::default()).unwrap();
    assert_eq!(a.close().unwrap(), 1);
    assert!(engine.sessions().unwrap().is_empty());
    // As an embedded engine answers: closing again is harmless, acting is `NotFound`.
    assert_eq!(a.close().unwrap(), 0);
    assert_eq!(a.heartbeat().unwrap_err().kind(), ErrorKind::NotFound);
    let acquire = a.acquire("psu", &AcquireOptions::default());
    assert_eq!(acquire.unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn closing_a_remote_engine_fails_its_waits_rather_than_granting_them() {
    let (engine, server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let holder = remote.open_session(SessionSpec::named("holder")).unwrap();
    holder.acquire("psu", &AcquireOptions::default()).unwrap();
    let waiter = remote.open_session(SessionSpec::named("waiter")).unwrap();
    let ticket = waiter
        .request(&["psu"], &AcquireOptions::default())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while engine.status("psu").unwrap().waiters.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the wait never came");
        std::thread::yield_now();
    }
    remote.close();
    let waited = ticket.wait(Some(Duration::from_secs(5)));
    assert_eq!(waited.unwrap_err().kind(), ErrorKind::EngineClosed);
    assert!(engine.locks().unwrap().is_empty());
    assert!(engine.sessions().unwrap().is_empty());
}

/// A remote engine that leaves heartbeating to its program, and a session of `name`
/// opened with a TTL of its own (which the link then does not heartbeat).
fn without_keepalive(
    server: &interlock_server::Server,
    ttl: Duration,
    name: &str,
) -> (Handle, interlock::Session) {
    let options = ConnectOptions {
        keepalive: false,
        session_ttl: ttl,
        ..ConnectOptions::default()
    };
    let remote = Handle::connect(server.url(), options).unwrap();
    let session = remote
        .open_session(SessionSpec {
            ttl: Some(ttl),
            ..SessionSpec::named(name)
        })
        .unwrap();
    (remote, session)
}

#[test]
fn without_keepalive_only_sessions_opened_without_a_ttl_are_heartbeated() {
    let (engine, server) = serve();
    let ttl = Duration::from_millis(300);
    let (remote, own) = without_keepalive(&server, ttl, "lives-by-its-calls");
    let kept = remote
        .open_session(SessionSpec::named("asked-for-no-ttl"))
        .unwrap();
    let seen = |id| {
        engine
            .sessions()
            .unwrap()
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.last_seen)
    };
    let first = seen(kept.id()).unwrap();
    // The server ends the session nobody heartbeats, at its TTL...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen(own.id()).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        seen(own.id()),
        None,
        "the session with a TTL of its own expired"
    );
    // ...while the link heartbeats the other: the server saw it again, several TTLs on.
    let mut beats = 0;
    let mut last = first;
    while beats < 6 && std::time::Instant::now() < deadline {
        let now = seen(kept.id()).expect("the session without a TTL stays open");
        if now > last {
            beats += 1;
            last = now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        beats >= 6 && last - first > 2.0 * ttl.as_secs_f64(),
        "{beats} heartbeats"
    );
}

#[test]
fn a_lease_of_a_session_closed_through_another_connection_turns_released_at_once() {
    // The server tells a lease's end to the connection that handed it out, not only to
    // the one that acts as its session now: closing the session elsewhere is a release
    // to its holder (as embedded), not a loss found at the next heartbeat.
    let (_engine, server) = serve();
    let one = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let a = one.open_session(SessionSpec::named("a")).unwrap();
    let lost = Arc::new(AtomicUsize::new(0));
    let counted = lost.clone();
    let options = AcquireOptions {
        on_lost: Some(Arc::new(move |_: &interlock::LostNotice| {
            counted.fetch_add(1, Ordering::SeqCst);
        })),
        ..AcquireOptions::default()
    };
    let lease = a.acquire("psu", &options).unwrap();
    let other = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let again = other.resume_session(a.id(), a.secret().unwrap()).unwrap();
    again.close().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lease.state() == LeaseState::Held && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lease.state(), LeaseState::Released);
    lease.release().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(one.callbacks_done_async()).unwrap();
    assert_eq!(lost.load(Ordering::SeqCst), 0, "a release is not a loss");
}

#[test]
fn without_keepalive_a_renew_keeps_the_session_alive_on_both_sides() {
    // The server counts a renew as its session's activity; so must the link's TTL clock,
    // or it gives up a lease the server still holds.
    let (engine, server) = serve();
    let ttl = Duration::from_millis(300);
    let (_remote, s) = without_keepalive(&server, ttl, "renews");
    let lease = s
        .acquire(
            "psu",
            &AcquireOptions {
                ttl: Some(Duration::from_secs(30)),
                ..AcquireOptions::default()
            },
        )
        .unwrap();
    for _ in 0..10 {
        std::thread::sleep(ttl / 3);
        lease.renew(None).unwrap();
    }
    assert_eq!(
        lease.state(),
        LeaseState::Held,
        "four TTLs on, renewed all along"
    );
    assert!(engine.check_fence("psu", lease.fence()).unwrap());
}

#[test]
fn a_wait_after_cancel_is_cancelled_at_once_remotely() {
    // The cancel's answer and the request's own answer travel separately; a wait that
    // follows `cancel` must not see the request still pending (found by CI under valgrind).
    let (_engine, server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    let a = remote.open_session(SessionSpec::named("holder")).unwrap();
    let b = remote.open_session(SessionSpec::named("waiter")).unwrap();
    let _held = a.acquire("scope", &AcquireOptions::default()).unwrap();
    for _ in 0..200 {
        let ticket = b.enqueue(&["scope"], &AcquireOptions::default()).unwrap();
        ticket.cancel().unwrap();
        let err = ticket.wait(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
        assert_eq!(ticket.position().unwrap(), None);
    }
    assert!(remote.status("scope").unwrap().waiters.is_empty());
}

#[test]
fn a_server_restarted_without_its_journal_is_another_history_to_a_subscription() {
    // Seqs count one engine's history: after a reconnect to another engine on the same
    // address, a subscription says that it lost track (a `lagged` marker), then goes on
    // with the new engine's events from its first, rather than with seqs that start
    // again unannounced.
    let (engine, mut server) = serve();
    let remote = Handle::connect(server.url(), ConnectOptions::default()).unwrap();
    assert_eq!(remote.engine_id(), engine.engine_id());
    let sub = remote.subscribe(None, None).unwrap();
    let before = engine.open_session(SessionSpec::named("before")).unwrap();
    before.acquire("r", &AcquireOptions::default()).unwrap();
    let next = || sub.recv_timeout(Duration::from_secs(10)).unwrap();
    let old: Vec<_> = (0..2).map(|_| next().seq).collect();
    assert_eq!(old, [1, 2]);
    let addr = server.addr();
    server.close();
    engine.close();

    let again = Handle::new(interlock::Config::default()).unwrap();
    assert_ne!(again.engine_id(), engine.engine_id());
    let config = interlock_server::ServerConfig {
        bind: addr.to_string(),
        ..interlock_server::ServerConfig::default()
    };
    // The new engine is past the old one's seqs before the link is back, so that only the
    // engine id can tell the link that these are other events than the ones it had.
    let names = ["after-1", "after-2", "after-3"];
    for name in names {
        again.open_session(SessionSpec::named(name)).unwrap();
    }
    let _server = interlock_server::Server::start(again.clone(), config).unwrap();
    let marker = next();
    // Without a count: how many of the old engine's events it missed is not known.
    assert_eq!((marker.kind, marker.position()), (EventKind::Lagged, None));
    let new: Vec<_> = (0..3).map(|_| next()).collect();
    assert_eq!(new.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        new.iter().map(|e| e.session_name()).collect::<Vec<_>>(),
        names.map(Some)
    );
    assert_eq!(remote.engine_id(), again.engine_id());
    // One marker, once: live events go on from there.
    again.open_session(SessionSpec::named("live")).unwrap();
    let live = next();
    assert_eq!((live.kind, live.seq), (EventKind::SessionOpened, 4));
}
