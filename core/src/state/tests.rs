//! Every rule of DESIGN.md "Semantics (v1)" on the pure state machine, with time
//! passed in by hand. A lease is current exactly while `CheckFence` says so; how its
//! holder sees it end is what its event says (`Event::lease_end`), as the links read it.

use super::*;
use crate::error::ErrorKind;
use crate::event::EventKind;
use crate::protocol::{AcquireOptions, AcquireRequest, Grant, SessionSpec};
use crate::types::{Action, LeaseState, Mode, ResourceStatus, MAX_RESOURCE_LEN};

const T0: f64 = 1_700_000_000.0;
const SEED: [u8; 32] = [7; 32];

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A session id that no state ever handed out.
fn unknown_session() -> SessionId {
    "2f1e8a55-6a4e-4a5b-9d2c-3f0c5a7d9e11".parse().unwrap()
}

/// A token that no state ever handed out.
fn unknown_token() -> Token {
    "00000000-0000-4000-8000-000000000000".parse().unwrap()
}

/// An exclusive request that waits forever, for `resources` of `session`.
fn request(session: SessionId, resources: &[&str]) -> AcquireRequest {
    AcquireRequest {
        session,
        resources: resources.iter().map(|r| r.to_string()).collect(),
        options: AcquireOptions::default(),
    }
}

/// A state and a hand-moved clock.
struct Bench {
    st: State,
    now: Duration,
}

impl Bench {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(cfg: Config) -> Self {
        Self::seeded(cfg, SEED)
    }

    fn seeded(cfg: Config, seed: [u8; 32]) -> Self {
        Bench {
            st: State::new(cfg, T0, seed),
            now: Duration::ZERO,
        }
    }

    fn run(&mut self, cmd: Command) -> (Result<Reply>, Effects) {
        self.st.apply(self.now, cmd)
    }

    fn ok(&mut self, cmd: Command) -> Reply {
        self.run(cmd).0.expect("command succeeds")
    }

    fn advance(&mut self, s: f64) -> Effects {
        self.now += secs(s);
        self.run(Command::Tick).1
    }

    fn open_with_secret(&mut self, spec: SessionSpec) -> (SessionId, Secret) {
        match self.ok(Command::OpenSession(spec)) {
            Reply::Opened {
                session, secret, ..
            } => (session.id, secret),
            r => panic!("{r:?}"),
        }
    }

    fn open_spec(&mut self, spec: SessionSpec) -> SessionId {
        self.open_with_secret(spec).0
    }

    fn open(&mut self, name: &str) -> SessionId {
        self.open_spec(SessionSpec::named(name))
    }

    /// Sends an acquire; the wait id is the one the state handed out if it queued.
    fn submit(&mut self, req: AcquireRequest) -> (Option<WaitId>, Result<Reply>, Effects) {
        let (r, fx) = self.run(Command::Acquire(req));
        let wait = match &r {
            Ok(Reply::Queued { wait, .. }) => Some(*wait),
            _ => None,
        };
        (wait, r, fx)
    }

    fn acquire_with(
        &mut self,
        s: SessionId,
        resources: &[&str],
        f: impl FnOnce(&mut AcquireOptions),
    ) -> (Option<WaitId>, Result<Reply>, Effects) {
        let mut req = request(s, resources);
        f(&mut req.options);
        self.submit(req)
    }

    /// Acquires at once or panics; returns the grant.
    fn grab(&mut self, s: SessionId, resource: &str, mode: Mode) -> Grant {
        match self.acquire_with(s, &[resource], |o| o.mode = mode).1 {
            Ok(Reply::Granted(mut g)) => g.remove(0),
            r => panic!("expected a grant, got {r:?}"),
        }
    }

    /// Queues a request or panics; returns the wait id the state gave it.
    fn queue(
        &mut self,
        s: SessionId,
        resources: &[&str],
        f: impl FnOnce(&mut AcquireOptions),
    ) -> WaitId {
        match self.acquire_with(s, resources, f) {
            (Some(w), Ok(Reply::Queued { .. }), _) => w,
            (_, r, _) => panic!("expected to queue, got {r:?}"),
        }
    }

    fn status(&mut self, resource: &str) -> ResourceStatus {
        match self.ok(Command::Status {
            resource: resource.into(),
        }) {
            Reply::Status(s) => s,
            r => panic!("{r:?}"),
        }
    }

    fn holders(&mut self, resource: &str) -> Vec<SessionId> {
        self.status(resource)
            .holders
            .iter()
            .map(|h| h.session_id)
            .collect()
    }

    /// Is the lease of `g` current (what a device driver asks)?
    fn current(&mut self, g: &Grant) -> bool {
        match self.ok(Command::CheckFence {
            resource: g.resource.to_string(),
            fence: g.fence,
        }) {
            Reply::Bool(b) => b,
            r => panic!("{r:?}"),
        }
    }

    fn release(&mut self, g: &Grant) -> Effects {
        let (r, fx) = self.run(Command::Release {
            resource: g.resource.clone(),
            token: g.token,
        });
        r.expect("release succeeds");
        fx
    }

    /// Hands back the token of a lease that is no longer current: the error, and that it
    /// changed nothing.
    fn late_release(&mut self, g: &Grant) -> Error {
        let (r, fx) = self.run(Command::Release {
            resource: g.resource.clone(),
            token: g.token,
        });
        assert!(fx.events.is_empty(), "a late release changes nothing");
        r.expect_err("the token no longer works")
    }

    fn history(&mut self, resource: Option<&str>, session: Option<SessionId>) -> Vec<Arc<Event>> {
        match self.ok(Command::History {
            resource: resource.map(Into::into),
            session,
            limit: None,
        }) {
            Reply::History(h) => h,
            r => panic!("{r:?}"),
        }
    }
}

fn granted(fx: &Effects, wait: WaitId) -> Grants {
    fx.completions
        .iter()
        .find(|(w, _)| *w == wait)
        .and_then(|(_, r)| r.as_ref().ok().cloned())
        .unwrap_or_else(|| panic!("wait {wait} was not granted: {:?}", fx.completions))
}

fn failed(fx: &Effects, wait: WaitId) -> ErrorKind {
    fx.completions
        .iter()
        .find(|(w, _)| *w == wait)
        .and_then(|(_, r)| r.as_ref().err().map(Error::kind))
        .unwrap_or_else(|| panic!("wait {wait} did not fail: {:?}", fx.completions))
}

/// How the holder of `g` sees its lease end, from the one event of `fx` that ends it.
fn ended(fx: &Effects, g: &Grant) -> LeaseState {
    let ends: Vec<LeaseState> = fx
        .events
        .iter()
        .filter(|e| e.resource.as_deref() == Some(&*g.resource))
        .filter_map(|e| e.lease_end())
        .filter(|(fence, _)| *fence == g.fence)
        .map(|(_, end)| end)
        .collect();
    match ends[..] {
        [end] => end,
        _ => panic!(
            "fence {} ended {} times: {:?}",
            g.fence,
            ends.len(),
            fx.events
        ),
    }
}

/// No event of `fx` ends the lease of `g`.
fn untouched(fx: &Effects, g: &Grant) -> bool {
    !fx.events
        .iter()
        .any(|e| e.lease_end().is_some_and(|(fence, _)| fence == g.fence))
}

fn lost(resource: &str, reason: LostReason) -> Error {
    Error::LockLost {
        resource: resource.into(),
        reason,
    }
}

fn kinds(fx: &Effects) -> Vec<EventKind> {
    fx.events.iter().map(|e| e.kind).collect()
}

fn err(r: Result<Reply>) -> ErrorKind {
    r.expect_err("command fails").kind()
}

// ----- sessions --------------------------------------------------------------------

#[test]
fn a_session_carries_name_metadata_and_ttl() {
    let mut b = Bench::new();
    let spec = SessionSpec {
        name: "ReactorController".into(),
        metadata: serde_json::json!({"user": "ana", "pid": 7}),
        ttl: Some(secs(30.0)),
        on_expire: None,
    };
    let (r, _) = b.run(Command::OpenSession(spec));
    let Ok(Reply::Opened { session, ttl, .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(ttl, Some(secs(30.0)));
    let Reply::Sessions(list) = b.ok(Command::Sessions) else {
        panic!()
    };
    assert_eq!(list, [session]);
    assert_eq!(&*list[0].name, "ReactorController");
    assert_eq!(list[0].metadata["user"], "ana");
    assert_eq!(list[0].expires_at, Some(T0 + 30.0));
}

#[test]
fn bad_session_input_is_refused_and_changes_nothing() {
    let mut b = Bench::new();
    for (name, metadata) in [
        ("", serde_json::json!({})),
        ("x\0y", serde_json::json!({})),
        (&*"n".repeat(257), serde_json::json!({})),
        ("ok", serde_json::json!([1, 2])),
        ("ok", serde_json::json!({"blob": "x".repeat(70_000)})),
    ] {
        let spec = SessionSpec {
            name: name.into(),
            metadata,
            ttl: None,
            on_expire: None,
        };
        let (r, fx) = b.run(Command::OpenSession(spec));
        assert_eq!(err(r), ErrorKind::InvalidArgument);
        assert!(fx.events.is_empty());
    }
    let Reply::Sessions(list) = b.ok(Command::Sessions) else {
        panic!()
    };
    assert!(list.is_empty());
}

#[test]
fn an_expiring_session_releases_its_leases_and_fails_its_waits() {
    let mut b = Bench::new();
    let spec = SessionSpec {
        ttl: Some(secs(10.0)),
        ..SessionSpec::named("flaky")
    };
    let flaky = b.open_spec(spec);
    let other = b.open("other");
    let held = b.grab(flaky, "a", Mode::Exclusive);
    b.grab(other, "b", Mode::Exclusive);
    let w = b.queue(flaky, &["b"], |_| {});
    b.advance(5.0);
    b.ok(Command::Heartbeat { session: flaky });
    let fx = b.advance(9.0);
    assert!(fx.events.is_empty(), "a heartbeat moved the expiry");
    let fx = b.advance(1.0);
    assert_eq!(failed(&fx, w), ErrorKind::SessionExpired);
    assert_eq!(
        kinds(&fx),
        [
            EventKind::Dequeued,
            EventKind::Expired,
            EventKind::SessionExpired
        ]
    );
    assert_eq!(fx.events[1].reason.as_deref(), Some("session_expired"));
    assert_eq!(
        ended(&fx, &held),
        LeaseState::Lost(LostReason::SessionExpired)
    );
    assert!(!b.current(&held));
    assert!(b.holders("a").is_empty());
    assert_eq!(b.late_release(&held), lost("a", LostReason::SessionExpired));
    assert_eq!(
        err(b.run(Command::Heartbeat { session: flaky }).0),
        ErrorKind::SessionExpired
    );
    let (_, r, _) = b.acquire_with(flaky, &["c"], |_| {});
    assert_eq!(err(r), ErrorKind::SessionExpired);
}

#[test]
fn a_kept_session_turns_stale_and_revives_on_activity() {
    let mut b = Bench::new();
    let spec = SessionSpec {
        ttl: Some(secs(10.0)),
        on_expire: Some(OnExpire::Keep),
        ..SessionSpec::named("slow")
    };
    let slow = b.open_spec(spec);
    let g = b.grab(slow, "folder", Mode::Exclusive);
    let fx = b.advance(10.0);
    assert_eq!(kinds(&fx), [EventKind::SessionStale]);
    assert!(b.status("folder").holders[0].stale);
    assert!(b.current(&g), "a stale lease is still held");
    let (r, fx) = b.run(Command::Heartbeat { session: slow });
    r.unwrap();
    assert_eq!(kinds(&fx), [EventKind::SessionRevived]);
    assert!(!b.status("folder").holders[0].stale);
    let fx = b.advance(10.0);
    assert_eq!(
        kinds(&fx),
        [EventKind::SessionStale],
        "the revived session expires again"
    );
}

#[test]
fn break_stale_takes_over_and_exactly_one_of_two_racers_wins() {
    let mut b = Bench::new();
    let spec = SessionSpec {
        ttl: Some(secs(1.0)),
        on_expire: Some(OnExpire::Keep),
        ..SessionSpec::named("crashed")
    };
    let crashed = b.open_spec(spec);
    let old = b.grab(crashed, "session-42", Mode::Exclusive);
    let (x, y) = (b.open("x"), b.open("y"));
    let (_, r, _) = b.acquire_with(x, &["session-42"], |o| o.timeout = Some(Duration::ZERO));
    assert_eq!(
        err(r),
        ErrorKind::LockTimeout,
        "a live holder cannot be broken"
    );
    b.advance(1.0);
    let try_break = |o: &mut AcquireOptions| {
        o.break_stale = true;
        o.timeout = Some(Duration::ZERO);
    };
    let (_, first, fx) = b.acquire_with(x, &["session-42"], try_break);
    let (_, second, _) = b.acquire_with(y, &["session-42"], try_break);
    assert!(matches!(first, Ok(Reply::Granted(_))));
    assert_eq!(err(second), ErrorKind::LockTimeout);
    assert_eq!(kinds(&fx), [EventKind::Expired, EventKind::Acquired]);
    assert_eq!(fx.events[0].reason.as_deref(), Some("stale_taken_over"));
    assert_eq!(
        ended(&fx, &old),
        LeaseState::Lost(LostReason::SessionExpired)
    );
    assert!(!b.current(&old));
    assert_eq!(b.holders("session-42"), [x]);
    let Reply::Sessions(list) = b.ok(Command::Sessions) else {
        panic!()
    };
    assert!(list
        .iter()
        .find(|s| s.id == crashed)
        .unwrap()
        .leases
        .is_empty());
    assert_eq!(
        b.late_release(&old),
        lost("session-42", LostReason::SessionExpired)
    );
}

#[test]
fn closing_a_session_releases_everything_and_cancels_its_waits() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g1 = b.grab(s, "a", Mode::Exclusive);
    let g2 = b.grab(s, "b", Mode::Shared);
    b.grab(t, "c", Mode::Exclusive);
    let w = b.queue(s, &["c"], |_| {});
    let (r, fx) = b.run(Command::CloseSession { session: s });
    assert!(matches!(r, Ok(Reply::Count(2))), "{r:?}");
    assert_eq!(failed(&fx, w), ErrorKind::Cancelled);
    assert_eq!(ended(&fx, &g1), LeaseState::Released);
    assert_eq!(ended(&fx, &g2), LeaseState::Released);
    assert_eq!(*kinds(&fx).last().unwrap(), EventKind::SessionClosed);
    assert!(b.holders("a").is_empty() && b.holders("b").is_empty());
    assert!(b.status("c").waiters.is_empty());
    assert!(matches!(
        b.run(Command::CloseSession { session: s }).0,
        Ok(Reply::Count(0))
    ));
    assert_eq!(
        err(b.run(Command::Heartbeat { session: s }).0),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.late_release(&g1).kind(),
        ErrorKind::InvalidToken,
        "closing released the lease: it was not lost"
    );
}

#[test]
fn resume_needs_the_sessions_secret_and_counts_as_activity() {
    let mut b = Bench::new();
    let spec = SessionSpec {
        ttl: Some(secs(10.0)),
        ..SessionSpec::named("remote")
    };
    let (s, secret) = b.open_with_secret(spec);
    let (_, other_secret) = b.open_with_secret(SessionSpec::named("other"));
    b.advance(8.0);
    let wrong = Command::Resume {
        session: s,
        secret: other_secret,
    };
    assert_eq!(err(b.run(wrong).0), ErrorKind::PermissionDenied);
    let (r, fx) = b.run(Command::Resume { session: s, secret });
    let Ok(Reply::Session(info)) = r else {
        panic!("{r:?}")
    };
    assert!(fx.events.is_empty());
    assert_eq!(info.expires_at, Some(T0 + 18.0), "resuming is activity");
    assert!(b.advance(9.0).events.is_empty());
    assert_eq!(kinds(&b.advance(1.0)), [EventKind::SessionExpired]);
    let late = Command::Resume { session: s, secret };
    assert_eq!(err(b.run(late).0), ErrorKind::SessionExpired);
    let nobody = Command::Resume {
        session: unknown_session(),
        secret,
    };
    assert_eq!(err(b.run(nobody).0), ErrorKind::NotFound);
}

// ----- determinism -----------------------------------------------------------------

#[test]
fn the_same_seed_and_commands_give_the_same_replies_events_and_state() {
    // One run of commands, by what each does to the ids earlier replies handed out.
    fn script(b: &mut Bench) -> Vec<String> {
        let mut out = Vec::new();
        let mut note = |r: &Result<Reply>, fx: &Effects| {
            out.push(format!("{r:?} {:?} {:?}", fx.events, fx.completions));
            // Debug hides secrets: compare them too.
            if let Ok(Reply::Opened { secret, .. }) = r {
                out.push(secret.expose());
            }
            if let Ok(Reply::Granted(g)) = r {
                out.extend(g.iter().map(|g| g.token.expose()));
            }
        };
        let (r, fx) = b.run(Command::OpenSession(SessionSpec::named("s")));
        note(&r, &fx);
        let Ok(Reply::Opened { session: s, .. }) = r else {
            panic!()
        };
        let (r, fx) = b.run(Command::OpenSession(SessionSpec::named("t")));
        note(&r, &fx);
        let Ok(Reply::Opened { session: t, .. }) = r else {
            panic!()
        };
        let mut req = request(s.id, &["a"]);
        req.options.ttl = Some(secs(5.0));
        let (r, fx) = b.run(Command::Acquire(req));
        note(&r, &fx);
        let (r, fx) = b.run(Command::Acquire(request(t.id, &["a", "b"])));
        note(&r, &fx);
        b.now += secs(6.0);
        let (r, fx) = b.run(Command::Tick);
        note(&r, &fx);
        for (_, grants) in &fx.completions {
            out.extend(grants.iter().flatten().map(|g| g.token.expose()));
        }
        out
    }
    let (mut one, mut two) = (Bench::new(), Bench::new());
    let (a, b) = (script(&mut one), script(&mut two));
    assert_eq!(a, b);
    assert_eq!(one.st.digest(), two.st.digest());
    let mut other = Bench::seeded(Config::default(), [8; 32]);
    assert_ne!(script(&mut other), a, "another seed, other ids and tokens");
}

// ----- leases ----------------------------------------------------------------------

#[test]
fn fences_increase_over_every_grant_and_tokens_differ() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g1 = b.grab(s, "a", Mode::Shared);
    let g2 = b.grab(t, "a", Mode::Shared);
    let g3 = b.grab(s, "b", Mode::Exclusive);
    b.release(&g1);
    let g4 = b.grab(s, "a", Mode::Shared);
    let fences = [g1.fence, g2.fence, g3.fence, g4.fence];
    assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
    assert_ne!(g1.token, g2.token);
    assert_ne!(g1.token, g4.token);
}

#[test]
fn release_needs_the_current_token() {
    let mut b = Bench::new();
    let s = b.open("s");
    let g = b.grab(s, "a", Mode::Exclusive);
    let (r, fx) = b.run(Command::Release {
        resource: "a".into(),
        token: unknown_token(),
    });
    assert_eq!(err(r), ErrorKind::InvalidToken);
    assert!(fx.events.is_empty());
    let (r, _) = b.run(Command::Release {
        resource: "other".into(),
        token: g.token,
    });
    assert_eq!(err(r), ErrorKind::InvalidToken);
    for bad in ["", "a\0b"] {
        let (r, fx) = b.run(Command::Release {
            resource: bad.into(),
            token: g.token,
        });
        assert_eq!(err(r), ErrorKind::InvalidArgument, "{bad:?}");
        assert!(fx.events.is_empty());
    }
    for malformed in ["", "not-a-token", "00000000-0000-4000-8000-00000000000"] {
        let e = malformed.parse::<Token>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidToken, "{malformed:?}");
    }
    assert!(b.current(&g));
    let fx = b.release(&g);
    assert_eq!(kinds(&fx), [EventKind::Released]);
    assert_eq!(ended(&fx, &g), LeaseState::Released);
    assert!(!b.current(&g));
    assert_eq!(
        b.late_release(&g).kind(),
        ErrorKind::InvalidToken,
        "a released lease was not lost"
    );
}

#[test]
fn a_lease_ttl_expires_unless_renewed() {
    let mut b = Bench::new();
    let s = b.open("s");
    let (_, r, _) = b.acquire_with(s, &["a"], |o| o.ttl = Some(secs(10.0)));
    let Ok(Reply::Granted(g)) = r else { panic!() };
    let g = &g[0];
    assert_eq!(g.expires_at, Some(T0 + 10.0));
    b.advance(8.0);
    let r = b.ok(Command::Renew {
        resource: "a".into(),
        token: g.token,
        ttl: None,
    });
    assert!(matches!(r, Reply::Renewed { expires_at: Some(e) } if e == T0 + 18.0));
    assert!(b.advance(9.0).events.is_empty());
    let fx = b.advance(1.0);
    assert_eq!(kinds(&fx), [EventKind::Expired]);
    assert_eq!(ended(&fx, g), LeaseState::Lost(LostReason::Expired));
    assert!(!b.current(g));
    let (r, _) = b.run(Command::Renew {
        resource: "a".into(),
        token: g.token,
        ttl: None,
    });
    assert_eq!(r.unwrap_err(), lost("a", LostReason::Expired));
    assert_eq!(b.late_release(g), lost("a", LostReason::Expired));
}

#[test]
fn a_ttl_beyond_584_years_is_cut_to_that_and_reported_so_everywhere() {
    let mut b = Bench::new();
    let s = b.open("s");
    let huge = Duration::from_secs(1 << 40);
    let (_, r, _) = b.acquire_with(s, &["a"], |o| o.ttl = Some(huge));
    let Ok(Reply::Granted(g)) = r else { panic!() };
    let most = Duration::from_nanos(u64::MAX);
    assert_eq!(g[0].ttl, Some(most));
    assert_eq!(g[0].expires_at, Some(T0 + most.as_secs_f64()));
    let st = b.status("a");
    assert_eq!(st.holders[0].expires_at, g[0].expires_at);
    assert!(
        b.advance(1e9).events.is_empty(),
        "still held after 31 years"
    );
}

#[test]
fn renewing_with_a_ttl_gives_a_lease_without_one_a_deadline() {
    let mut b = Bench::new();
    let s = b.open("s");
    let g = b.grab(s, "a", Mode::Exclusive);
    assert_eq!(g.expires_at, None);
    b.ok(Command::Renew {
        resource: "a".into(),
        token: g.token,
        ttl: Some(secs(2.0)),
    });
    assert_eq!(kinds(&b.advance(2.0)), [EventKind::Expired]);
}

#[test]
fn the_engine_lock_ttl_is_the_default_and_a_queued_grant_keeps_the_ttl_it_asked_for() {
    let mut b = Bench::with(Config {
        lock_ttl: Some(secs(60.0)),
        ..Config::default()
    });
    let (s, t) = (b.open("s"), b.open("t"));
    let g = b.grab(s, "a", Mode::Exclusive);
    assert_eq!(g.expires_at, Some(T0 + 60.0));
    let w = b.queue(t, &["a"], |o| o.ttl = Some(secs(5.0)));
    b.advance(30.0);
    let fx = b.release(&g);
    let got = granted(&fx, w);
    assert_eq!(
        got[0].expires_at,
        Some(T0 + 35.0),
        "TTL counts from the grant"
    );
    assert_eq!(got[0].ttl, Some(secs(5.0)));
}

#[test]
fn lost_tokens_are_remembered_for_as_many_leases_as_the_global_ring_keeps_events() {
    let mut b = Bench::with(Config {
        global_history: 2,
        ..Config::default()
    });
    let s = b.open("s");
    let grants: Vec<Grant> = (0..3)
        .map(|i| b.grab(s, &format!("r{i}"), Mode::Exclusive))
        .collect();
    for g in &grants {
        let r = b.ok(Command::ForceRelease {
            resource: g.resource.to_string(),
            reason: None,
            fence: None,
        });
        assert!(matches!(r, Reply::Count(1)));
    }
    assert_eq!(
        b.late_release(&grants[0]).kind(),
        ErrorKind::InvalidToken,
        "the oldest loss is forgotten"
    );
    for g in &grants[1..] {
        assert_eq!(
            b.late_release(g),
            lost(&g.resource, LostReason::ForceReleased)
        );
    }
}

// ----- modes and queues --------------------------------------------------------------

#[test]
fn shared_holders_coexist_and_exclusive_excludes() {
    let mut b = Bench::new();
    let (s, t, u) = (b.open("s"), b.open("t"), b.open("u"));
    b.grab(s, "scope", Mode::Shared);
    b.grab(t, "scope", Mode::Shared);
    let st = b.status("scope");
    assert_eq!(
        (st.locked, st.mode, st.holders.len()),
        (true, Some(Mode::Shared), 2)
    );
    let (_, r, _) = b.acquire_with(u, &["scope"], |o| o.timeout = Some(Duration::ZERO));
    assert_eq!(err(r), ErrorKind::LockTimeout);
    assert!(b.status("scope").waiters.is_empty(), "a try does not queue");
}

#[test]
fn the_queue_is_fifo_within_a_priority_and_priority_goes_first() {
    let mut b = Bench::new();
    let holder = b.open("holder");
    let g = b.grab(holder, "ps", Mode::Exclusive);
    let names = ["late-100", "next-100", "urgent-2", "manual-2"];
    let ids: Vec<SessionId> = names.iter().map(|n| b.open(n)).collect();
    let w0 = b.queue(ids[0], &["ps"], |_| {});
    let w1 = b.queue(ids[1], &["ps"], |_| {});
    let (w2, r, fx) = b.acquire_with(ids[2], &["ps"], |o| o.priority = 2);
    assert!(matches!(r, Ok(Reply::Queued { position: 1, .. })), "{r:?}");
    let w2 = w2.unwrap();
    assert_eq!(fx.events[0].position(), Some(1));
    let w3 = b.queue(ids[3], &["ps"], |o| o.priority = 2);
    let mut waits = vec![w0, w1, w2, w3];
    waits.dedup();
    assert_eq!(waits.len(), 4, "every wait gets its own id");
    let order: Vec<_> = b
        .status("ps")
        .waiters
        .iter()
        .map(|w| (w.session_id, w.position))
        .collect();
    assert_eq!(order, [(ids[2], 1), (ids[3], 2), (ids[0], 3), (ids[1], 4)]);
    assert!(matches!(
        b.ok(Command::Position { wait: w1 }),
        Reply::Position(Some(4))
    ));
    let fx = b.release(&g);
    let first = granted(&fx, w2);
    for w in [w3, w0, w1] {
        assert!(b.st.position(w).is_some());
    }
    assert_eq!(b.st.position(w2), None, "a granted wait has no position");
    let fx = b.release(&first[0]);
    granted(&fx, w3);
    assert_eq!(b.st.position(w0), Some(1));
}

#[test]
fn arrivals_never_jump_the_queue_and_shared_waits_behind_a_queued_exclusive() {
    let mut b = Bench::new();
    let (obs1, ctl, obs2) = (b.open("obs1"), b.open("ctl"), b.open("obs2"));
    let g = b.grab(obs1, "ps", Mode::Shared);
    let we = b.queue(ctl, &["ps"], |_| {});
    let (ws, r, _) = b.acquire_with(obs2, &["ps"], |o| o.mode = Mode::Shared);
    assert!(matches!(r, Ok(Reply::Queued { position: 2, .. })), "{r:?}");
    assert_eq!(
        b.holders("ps"),
        [obs1],
        "observers are not cleared by a waiting exclusive"
    );
    let fx = b.release(&g);
    let e = granted(&fx, we);
    assert_eq!(fx.completions.len(), 1);
    let fx = b.release(&e[0]);
    granted(&fx, ws.unwrap());
}

#[test]
fn a_shared_head_is_granted_with_the_consecutive_shared_requests_behind_it() {
    let mut b = Bench::new();
    let ids: Vec<SessionId> = (0..5).map(|i| b.open(&format!("s{i}"))).collect();
    let g = b.grab(ids[0], "r", Mode::Exclusive);
    let s1 = b.queue(ids[1], &["r"], |o| o.mode = Mode::Shared);
    let s2 = b.queue(ids[2], &["r"], |o| o.mode = Mode::Shared);
    let e3 = b.queue(ids[3], &["r"], |_| {});
    let s4 = b.queue(ids[4], &["r"], |o| o.mode = Mode::Shared);
    let fx = b.release(&g);
    let done: Vec<WaitId> = fx.completions.iter().map(|(w, _)| *w).collect();
    assert_eq!(done, [s1, s2]);
    assert_eq!(b.st.position(e3), Some(1));
    assert_eq!(b.st.position(s4), Some(2));
}

// ----- preemption ------------------------------------------------------------------

#[test]
fn preemption_revokes_only_strictly_lower_priority_holders() {
    let mut b = Bench::new();
    let (plan, manual, maint) = (b.open("plan"), b.open("manual"), b.open("maintenance"));
    let (_, r, _) = b.acquire_with(plan, &["dev"], |o| o.priority = 1);
    let Ok(Reply::Granted(p)) = r else { panic!() };
    let (_, r, _) = b.acquire_with(manual, &["dev"], |o| {
        o.priority = 1;
        o.preempt = true;
        o.timeout = Some(Duration::ZERO);
    });
    assert_eq!(
        err(r),
        ErrorKind::LockTimeout,
        "equal priority is not preempted"
    );
    let (_, r, fx) = b.acquire_with(maint, &["dev"], |o| {
        o.priority = 0;
        o.preempt = true;
        o.reason = Some("calibration".into());
    });
    assert!(matches!(r, Ok(Reply::Granted(_))));
    assert_eq!(kinds(&fx), [EventKind::Preempted, EventKind::Acquired]);
    assert_eq!(fx.events[0].session_id(), Some(plan));
    assert_eq!(fx.events[0].reason.as_deref(), Some("calibration"));
    assert_eq!(ended(&fx, &p[0]), LeaseState::Lost(LostReason::Preempted));
    assert!(!b.current(&p[0]));
    assert_eq!(b.holders("dev"), [maint]);
    assert_eq!(b.late_release(&p[0]), lost("dev", LostReason::Preempted));
}

#[test]
fn a_queued_preempting_request_preempts_when_it_reaches_the_head() {
    let mut b = Bench::new();
    let (low, mid, top) = (b.open("low"), b.open("mid"), b.open("top"));
    let (_, r, _) = b.acquire_with(low, &["dev"], |o| o.priority = 3);
    let Ok(Reply::Granted(l)) = r else { panic!() };
    let (_, r, _) = b.acquire_with(mid, &["dev2"], |o| o.priority = 0);
    let Ok(Reply::Granted(m)) = r else { panic!() };
    // `top` wants both; dev2's holder outranks it, so it waits, holding nothing.
    let w = b.queue(top, &["dev", "dev2"], |o| {
        o.priority = 1;
        o.preempt = true;
    });
    assert!(b.current(&l[0]));
    let fx = b.release(&m[0]);
    granted(&fx, w);
    assert_eq!(ended(&fx, &l[0]), LeaseState::Lost(LostReason::Preempted));
    assert!(!b.current(&l[0]));
}

// ----- timeouts, tickets, cancel -----------------------------------------------------

#[test]
fn a_wait_times_out_and_leaves_the_queue() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    b.grab(s, "a", Mode::Exclusive);
    let w = b.queue(t, &["a"], |o| o.timeout = Some(secs(2.0)));
    assert!(b.advance(1.9).completions.is_empty());
    let fx = b.advance(0.1);
    assert_eq!(failed(&fx, w), ErrorKind::LockTimeout);
    assert_eq!(kinds(&fx), [EventKind::Dequeued]);
    assert_eq!(fx.events[0].reason.as_deref(), Some("timeout"));
    assert!(b.status("a").waiters.is_empty());
    assert_eq!(b.st.position(w), None);
}

#[test]
fn cancelling_removes_the_entry_and_lets_the_next_one_through() {
    let mut b = Bench::new();
    let (s, t, u) = (b.open("s"), b.open("t"), b.open("u"));
    let g = b.grab(s, "a", Mode::Shared);
    let we = b.queue(t, &["a"], |_| {});
    let ws = b.queue(u, &["a"], |o| o.mode = Mode::Shared);
    let (r, fx) = b.run(Command::Cancel { wait: we });
    assert!(matches!(r, Ok(Reply::Unit)));
    assert_eq!(failed(&fx, we), ErrorKind::Cancelled);
    assert_eq!(fx.events[0].kind, EventKind::Dequeued);
    assert_eq!(fx.events[0].reason(), Some("cancelled"));
    granted(&fx, ws);
    assert_eq!(b.holders("a").len(), 2);
    assert!(b.current(&g));
}

/// `Cancel` only withdraws a request that still waits: a grant made meanwhile is in its
/// caller's hands, and the caller (its ticket) releases it if nobody will use it; see
/// `tests/actor.rs`.
#[test]
fn cancelling_a_wait_that_was_granted_meanwhile_changes_nothing() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g = b.grab(s, "a", Mode::Exclusive);
    let w = b.queue(t, &["a"], |_| {});
    let fx = b.release(&g);
    let got = granted(&fx, w);
    let (r, fx) = b.run(Command::Cancel { wait: w });
    assert!(matches!(r, Ok(Reply::Unit)));
    assert!(fx.events.is_empty() && fx.completions.is_empty(), "{fx:?}");
    assert!(b.current(&got[0]));
    assert_eq!(b.holders("a"), [t]);
    let (r, fx) = b.run(Command::Cancel { wait: 999 });
    assert!(
        matches!(r, Ok(Reply::Unit)),
        "an unknown wait: nothing to do"
    );
    assert!(fx.events.is_empty() && fx.completions.is_empty());
}

#[test]
fn a_session_may_not_hold_or_wait_twice_for_one_resource() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    b.grab(s, "a", Mode::Shared);
    let (_, r, _) = b.acquire_with(s, &["a"], |o| o.mode = Mode::Shared);
    assert_eq!(err(r), ErrorKind::AlreadyHeld);
    b.grab(s, "b", Mode::Exclusive);
    b.queue(t, &["b"], |_| {});
    let (_, r, _) = b.acquire_with(t, &["b", "c"], |_| {});
    assert_eq!(err(r), ErrorKind::AlreadyHeld);
}

// ----- multi-acquire -----------------------------------------------------------------

#[test]
fn multi_acquire_is_all_or_nothing_and_holds_nothing_while_waiting() {
    let mut b = Bench::new();
    let (s, t, u) = (b.open("s"), b.open("t"), b.open("u"));
    let g = b.grab(s, "motor2", Mode::Exclusive);
    let w = b.queue(t, &["motor1", "motor2"], |_| {});
    assert!(
        b.holders("motor1").is_empty(),
        "nothing is held while waiting"
    );
    // A later request for motor1 alone queues behind the multi-request: no jumping.
    let later = b.queue(u, &["motor1"], |_| {});
    let fx = b.release(&g);
    let got = granted(&fx, w);
    let names: Vec<&str> = got.iter().map(|g| &*g.resource).collect();
    assert_eq!(names, ["motor1", "motor2"]);
    assert!(got[0].fence < got[1].fence);
    assert_eq!(b.st.position(later), Some(1));
}

#[test]
fn a_multi_acquire_naming_a_resource_twice_is_refused() {
    let mut b = Bench::new();
    let s = b.open("s");
    let (_, r, _) = b.acquire_with(s, &["a", "a"], |_| {});
    assert_eq!(err(r), ErrorKind::InvalidArgument);
    let (_, r, _) = b.acquire_with(s, &[], |_| {});
    assert_eq!(err(r), ErrorKind::InvalidArgument);
}

// ----- deadlock ------------------------------------------------------------------------

#[test]
fn a_cycle_through_holders_fails_the_request_that_closes_it() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    b.grab(s, "a", Mode::Exclusive);
    b.grab(t, "b", Mode::Exclusive);
    let ws = b.queue(s, &["b"], |_| {});
    let before = b.st.next_seq;
    let (_, r, fx) = b.acquire_with(t, &["a"], |_| {});
    assert_eq!(err(r), ErrorKind::Deadlock);
    // The rejected request was never queued for anyone to see.
    assert!(fx.events.is_empty(), "{:?}", kinds(&fx));
    assert!(fx.completions.is_empty());
    assert_eq!(b.st.next_seq, before);
    assert!(b
        .history(Some("a"), Some(t))
        .iter()
        .all(|e| !matches!(e.kind, EventKind::Queued | EventKind::Dequeued)));
    assert_eq!(b.st.position(ws), Some(1), "the earlier wait stays");
    assert!(b.status("a").waiters.is_empty());
}

#[test]
fn a_cycle_through_queue_order_is_a_deadlock_too() {
    let mut b = Bench::new();
    let (s, t, u) = (b.open("s"), b.open("t"), b.open("u"));
    // u holds x; s waits for x. t holds y and queues for x behind s.
    b.grab(u, "x", Mode::Exclusive);
    b.grab(t, "y", Mode::Exclusive);
    b.queue(s, &["x"], |_| {});
    b.queue(t, &["x"], |_| {});
    // s now asks for y: s waits for t (holder of y), and t waits for s (ahead of it on x).
    let (_, r, fx) = b.acquire_with(s, &["y"], |_| {});
    assert_eq!(err(r), ErrorKind::Deadlock);
    assert!(fx.events.is_empty());
}

#[test]
fn a_three_way_cycle_is_found() {
    let mut b = Bench::new();
    let ids: Vec<SessionId> = (0..3).map(|i| b.open(&format!("p{i}"))).collect();
    let names = ["r0", "r1", "r2"];
    for i in 0..3 {
        b.grab(ids[i], names[i], Mode::Exclusive);
    }
    b.queue(ids[0], &["r1"], |_| {});
    b.queue(ids[1], &["r2"], |_| {});
    let (_, r, _) = b.acquire_with(ids[2], &["r0"], |_| {});
    assert_eq!(err(r), ErrorKind::Deadlock);
}

#[test]
fn waiting_on_a_preemptable_holder_is_no_deadlock() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    b.grab(s, "a", Mode::Exclusive);
    b.grab(t, "b", Mode::Exclusive);
    b.queue(s, &["b"], |_| {});
    let (_, r, _) = b.acquire_with(t, &["a"], |o| {
        o.priority = 0;
        o.preempt = true;
    });
    assert!(matches!(r, Ok(Reply::Granted(_))));
}

// ----- checks, force release -----------------------------------------------------------

#[test]
fn check_and_check_fence_follow_the_current_holders() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g = b.grab(s, "ps", Mode::Exclusive);
    let check = |b: &mut Bench, session, action| {
        matches!(
            b.ok(Command::Check {
                resource: "ps".into(),
                session,
                action
            }),
            Reply::Bool(true)
        )
    };
    assert!(check(&mut b, s, Action::Control));
    assert!(check(&mut b, s, Action::Observe));
    assert!(!check(&mut b, t, Action::Observe));
    assert!(!check(&mut b, unknown_session(), Action::Control));
    let fence = |b: &mut Bench, f| {
        matches!(
            b.ok(Command::CheckFence {
                resource: "ps".into(),
                fence: f
            }),
            Reply::Bool(true)
        )
    };
    assert!(fence(&mut b, g.fence));
    assert!(!fence(&mut b, g.fence + 1));
    b.release(&g);
    assert!(!fence(&mut b, g.fence));
    b.grab(t, "ps", Mode::Shared);
    assert!(!check(&mut b, t, Action::Control));
    assert!(check(&mut b, t, Action::Observe));
}

#[test]
fn force_release_of_a_fence_takes_only_that_lease_and_only_while_it_is_current() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g1 = b.grab(s, "ps", Mode::Shared);
    let g2 = b.grab(t, "ps", Mode::Shared);
    let only = |fence| Command::ForceRelease {
        resource: "ps".into(),
        reason: Some("this one".into()),
        fence: Some(fence),
    };
    let (r, fx) = b.run(only(g1.fence));
    assert!(matches!(r, Ok(Reply::Count(1))));
    assert_eq!(ended(&fx, &g1), LeaseState::Lost(LostReason::ForceReleased));
    assert!(!b.current(&g1) && b.current(&g2));
    // Released already: a second try takes nothing, not the lease granted since.
    assert!(matches!(b.run(only(g1.fence)).0, Ok(Reply::Count(0))));
    assert!(b.current(&g2));
}

#[test]
fn force_release_frees_every_holder_and_counts_them() {
    let mut b = Bench::new();
    let (s, t, u) = (b.open("s"), b.open("t"), b.open("u"));
    let g1 = b.grab(s, "ps", Mode::Shared);
    let g2 = b.grab(t, "ps", Mode::Shared);
    let w = b.queue(u, &["ps"], |_| {});
    let (r, fx) = b.run(Command::ForceRelease {
        resource: "ps".into(),
        reason: Some("stuck".into()),
        fence: None,
    });
    assert!(matches!(r, Ok(Reply::Count(2))));
    assert_eq!(
        &kinds(&fx)[..2],
        [EventKind::ForceReleased, EventKind::ForceReleased]
    );
    assert_eq!(fx.events[0].reason.as_deref(), Some("stuck"));
    for g in [&g1, &g2] {
        assert_eq!(ended(&fx, g), LeaseState::Lost(LostReason::ForceReleased));
        assert!(!b.current(g));
    }
    granted(&fx, w);
    assert_eq!(b.late_release(&g1), lost("ps", LostReason::ForceReleased));
    assert!(matches!(
        b.ok(Command::ForceRelease {
            resource: "nothing".into(),
            reason: None,
            fence: None,
        }),
        Reply::Count(0)
    ));
}

/// `State` knows nothing of a holder's own view of its lease (its cell, which its link
/// keeps): which of a release and a loss came first is decided by the order of the
/// commands alone. (The race of a holder's `release` against a loss the actor processes
/// meanwhile is tested through the public API in `tests/actor.rs`.)
#[test]
fn whether_a_release_or_a_loss_came_first_is_decided_by_command_order() {
    type Lose = fn(&mut Bench, SessionId) -> Effects;
    let ways: [(&str, Lose, LeaseState); 4] = [
        (
            "expiry",
            |b, _| b.advance(10.0),
            LeaseState::Lost(LostReason::Expired),
        ),
        (
            "preemption",
            |b, _| {
                let maint = b.open("maintenance");
                let (_, r, fx) = b.acquire_with(maint, &["dev"], |o| {
                    o.priority = 0;
                    o.preempt = true;
                });
                assert!(matches!(r, Ok(Reply::Granted(_))), "{r:?}");
                fx
            },
            LeaseState::Lost(LostReason::Preempted),
        ),
        (
            "force release",
            |b, _| {
                b.run(Command::ForceRelease {
                    resource: "dev".into(),
                    reason: Some("stuck".into()),
                    fence: None,
                })
                .1
            },
            LeaseState::Lost(LostReason::ForceReleased),
        ),
        (
            "session close",
            |b, plan| b.run(Command::CloseSession { session: plan }).1,
            LeaseState::Released,
        ),
    ];
    for (how, lose, end) in ways {
        // The release comes first: the loss that follows finds nothing to end.
        let mut b = Bench::new();
        let plan = b.open("plan");
        let (_, r, _) = b.acquire_with(plan, &["dev"], |o| o.ttl = Some(secs(5.0)));
        let Ok(Reply::Granted(g)) = r else { panic!() };
        let g = &g[0];
        let fx = b.release(g);
        assert_eq!(ended(&fx, g), LeaseState::Released, "{how}");
        let fx = lose(&mut b, plan);
        assert!(untouched(&fx, g), "{how}: {:?}", fx.events);
        let last = b.history(Some("dev"), Some(plan)).pop().expect("an event");
        assert_eq!(
            (last.kind, last.reason()),
            (EventKind::Released, None),
            "{how}"
        );
        assert_eq!(b.late_release(g).kind(), ErrorKind::InvalidToken, "{how}");

        // The loss comes first: the release that follows is told so.
        let mut b = Bench::new();
        let plan = b.open("plan");
        let (_, r, _) = b.acquire_with(plan, &["dev"], |o| o.ttl = Some(secs(5.0)));
        let Ok(Reply::Granted(g)) = r else { panic!() };
        let g = &g[0];
        let fx = lose(&mut b, plan);
        assert_eq!(ended(&fx, g), end, "{how}");
        assert!(!b.current(g), "{how}");
        let want = match end {
            LeaseState::Lost(reason) => lost("dev", reason),
            _ => Error::InvalidToken("dev".into()),
        };
        assert_eq!(b.late_release(g), want, "{how}: the late release");
    }
}

// ----- events, history, introspection ------------------------------------------------

#[test]
fn events_have_increasing_seqs_and_history_is_kept_per_resource_session_and_globally() {
    let mut b = Bench::with(Config {
        history_limit: 3,
        global_history: 50,
        ..Config::default()
    });
    let s = b.open("s");
    for _ in 0..4 {
        let g = b.grab(s, "a", Mode::Exclusive);
        b.release(&g);
    }
    let t = b.open("t");
    b.grab(t, "b", Mode::Exclusive);
    let global = b.history(None, None);
    assert!(global.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(global.len(), 1 + 8 + 1 + 1);
    let a = b.history(Some("a"), None);
    assert_eq!(a.len(), 3, "per-resource ring bounded by history_limit");
    assert_eq!(a.last().unwrap().kind, EventKind::Released);
    let by_t = b.history(None, Some(t));
    assert_eq!(
        by_t.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::SessionOpened, EventKind::Acquired]
    );
    let both = b.history(Some("b"), Some(s));
    assert!(both.is_empty());
    let Reply::History(last2) = b.ok(Command::History {
        resource: None,
        session: None,
        limit: Some(2),
    }) else {
        panic!()
    };
    assert_eq!(
        last2.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [global[9].seq, global[10].seq]
    );
}

#[test]
fn history_outlives_a_resource_while_the_global_ring_holds_its_events() {
    let mut b = Bench::with(Config {
        global_history: 4,
        ..Config::default()
    });
    let s = b.open("s");
    let g = b.grab(s, "gone", Mode::Exclusive);
    b.release(&g);
    assert_eq!(b.history(Some("gone"), None).len(), 2);
    for _ in 0..2 {
        let g = b.grab(s, "other", Mode::Exclusive);
        b.release(&g);
    }
    assert!(
        b.history(Some("gone"), None).is_empty(),
        "dropped once out of the global ring"
    );
    assert_eq!(b.history(Some("other"), None).len(), 4);
}

#[test]
fn replay_returns_what_the_ring_still_has_and_counts_the_rest() {
    let mut b = Bench::with(Config {
        global_history: 3,
        ..Config::default()
    });
    for i in 0..5 {
        b.open(&format!("s{i}"));
    }
    let Reply::Replay { events, missed } = b.ok(Command::Replay { since: 0 }) else {
        panic!()
    };
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(missed, Some(2));
    let Reply::Replay { events, missed } = b.ok(Command::Replay { since: 4 }) else {
        panic!()
    };
    assert_eq!((events.len(), missed), (1, Some(0)));
    let Reply::Replay { events, missed } = b.ok(Command::Replay { since: 5 }) else {
        panic!()
    };
    assert_eq!((events.len(), missed), (0, Some(0)));
    // Seq 6 is not reached yet: the asker saw another history (an engine restarted
    // without its journal); all of this one is new to it, and what it missed is unknown.
    let Reply::Replay { events, missed } = b.ok(Command::Replay { since: 6 }) else {
        panic!()
    };
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(missed, None);
}

#[test]
fn no_token_or_secret_appears_in_status_listings_events_or_history() {
    let mut b = Bench::with(Config {
        lock_ttl: Some(secs(5.0)),
        ..Config::default()
    });
    let (s, secret) = b.open_with_secret(SessionSpec::named("s"));
    let t = b.open("t");
    let g = b.grab(s, "a", Mode::Exclusive);
    b.queue(t, &["a"], |_| {});
    let (token, secret) = (g.token.expose(), secret.expose());
    let mut texts = vec![
        serde_json::to_string(&b.status("a")).unwrap(),
        serde_json::to_string(&b.history(None, None)).unwrap(),
    ];
    if let Reply::Locks(l) = b.ok(Command::Locks) {
        texts.push(serde_json::to_string(&l).unwrap());
    }
    if let Reply::Sessions(l) = b.ok(Command::Sessions) {
        texts.push(serde_json::to_string(&l).unwrap());
    }
    texts.push(format!("{g:?} {} {:?}", g.token, g.token));
    for text in texts {
        assert!(!text.contains(&token), "token leaked in {text}");
        assert!(!text.contains(&secret), "secret leaked in {text}");
    }
}

#[test]
fn status_of_an_unknown_resource_is_unlocked_and_empty() {
    let mut b = Bench::new();
    let st = b.status("nobody");
    assert_eq!(
        (st.locked, st.mode, st.holders.len(), st.waiters.len()),
        (false, None, 0, 0)
    );
}

#[test]
fn status_shows_remaining_time_and_locks_lists_held_resources_by_name() {
    let mut b = Bench::new();
    let s = b.open("s");
    let _ = b.acquire_with(s, &["z"], |o| o.ttl = Some(secs(10.0)));
    b.grab(s, "m", Mode::Shared);
    b.advance(4.0);
    assert_eq!(b.status("z").holders[0].remaining, Some(6.0));
    let Reply::Locks(l) = b.ok(Command::Locks) else {
        panic!()
    };
    assert_eq!(
        l.iter().map(|s| &*s.resource).collect::<Vec<_>>(),
        ["m", "z"]
    );
}

// ----- validation, close ---------------------------------------------------------------

#[test]
fn bad_acquire_input_is_refused_and_changes_nothing() {
    let mut b = Bench::new();
    let s = b.open("s");
    let long = "r".repeat(MAX_RESOURCE_LEN + 1);
    let edit = |f: &dyn Fn(&mut AcquireRequest)| {
        let mut r = request(s, &["a"]);
        f(&mut r);
        r
    };
    let cases = [
        edit(&|r| r.resources = vec!["".into()].into()),
        edit(&|r| r.resources = vec!["a\0b".into()].into()),
        edit(&|r| r.resources = vec![long.clone()].into()),
        edit(&|r| r.options.ttl = Some(Duration::ZERO)),
        edit(&|r| r.options.reason = Some("bad\0reason".into())),
    ];
    let before = b.st.next_seq;
    for req in cases {
        let (_, r, fx) = b.submit(req);
        assert_eq!(err(r), ErrorKind::InvalidArgument);
        assert!(fx.events.is_empty());
    }
    assert_eq!(b.st.next_seq, before);
    assert!(b.holders("a").is_empty());
    let (_, r, _) = b.acquire_with(unknown_session(), &["a"], |_| {});
    assert_eq!(err(r), ErrorKind::NotFound);
    assert_eq!(
        err(b
            .run(Command::Status {
                resource: String::new()
            })
            .0),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_session_ttl_of_zero_is_refused() {
    let mut b = Bench::new();
    let spec = SessionSpec {
        ttl: Some(Duration::ZERO),
        ..SessionSpec::named("s")
    };
    assert_eq!(
        err(b.run(Command::OpenSession(spec)).0),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn close_fails_every_pending_wait_and_ends_every_lease() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let held = b.grab(s, "a", Mode::Exclusive);
    let w = b.queue(t, &["a"], |_| {});
    let (_, fx) = b.run(Command::Close);
    assert_eq!(failed(&fx, w), ErrorKind::EngineClosed);
    assert!(!b.current(&held));
    assert!(!b.status("a").locked);
}

#[test]
fn deadline_heap_is_compacted_under_churn() {
    let mut b = Bench::with(Config {
        lock_ttl: Some(secs(3600.0)),
        ..Config::default()
    });
    let s = b.open("s");
    for _ in 0..10_000 {
        let g = b.grab(s, "a", Mode::Exclusive);
        b.release(&g);
    }
    assert!(
        b.st.deadlines.len() < 4096,
        "{} entries",
        b.st.deadlines.len()
    );
}

/// What the lost tests of cells across pages checked, as `State` sees it: among many
/// leases of one session, each ends alone, by its own token.
#[test]
fn each_lease_ends_alone_among_many() {
    let mut b = Bench::new();
    let s = b.open("s");
    let grants: Vec<Grant> = (0..3 * 64 + 1)
        .map(|i| b.grab(s, &format!("r{i}"), Mode::Exclusive))
        .collect();
    for g in grants.iter().step_by(3) {
        let fx = b.release(g);
        assert_eq!(ended(&fx, g), LeaseState::Released);
    }
    for (i, g) in grants.iter().enumerate() {
        assert_eq!(b.current(g), i % 3 != 0, "lease {i}");
    }
}

/// The memory of a held lease (bench/RESULTS.md) rests on these sizes: a field added
/// carelessly pushes a record into the next allocation size. (A holder no longer keeps
/// its lease's 16-byte cell, which the link keeps now: the record went from 152 to 136.)
#[test]
#[cfg(target_pointer_width = "64")]
fn the_records_of_a_held_lease_keep_their_sizes() {
    assert_eq!(size_of::<Event>(), 72);
    assert_eq!(size_of::<Ring>(), 16);
    assert_eq!(size_of::<ResourceRec>(), 136);
}
