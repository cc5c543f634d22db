//! Every rule of DESIGN.md "Semantics (v1)" on the pure state machine, with time
//! passed in by hand.

use super::*;
use crate::error::ErrorKind;

const T0: f64 = 1_700_000_000.0;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A state and a hand-moved clock.
struct Bench {
    st: State,
    now: Duration,
    next_wait: WaitId,
}

impl Bench {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(cfg: Config) -> Self {
        Bench {
            st: State::new(cfg, T0),
            now: Duration::ZERO,
            next_wait: 1,
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

    fn open_spec(&mut self, spec: SessionSpec) -> SessionId {
        match self.ok(Command::OpenSession(spec)) {
            Reply::Session(info) => info.id,
            r => panic!("{r:?}"),
        }
    }

    fn open(&mut self, name: &str) -> SessionId {
        self.open_spec(SessionSpec::named(name))
    }

    fn request(&mut self, s: SessionId, resources: &[&str]) -> AcquireRequest {
        let wait = self.next_wait;
        self.next_wait += 1;
        AcquireRequest::new(wait, s, resources.iter().map(|r| r.to_string()).collect())
    }

    fn acquire_with(
        &mut self,
        s: SessionId,
        resources: &[&str],
        f: impl FnOnce(&mut AcquireRequest),
    ) -> (WaitId, Result<Reply>, Effects) {
        let mut req = self.request(s, resources);
        f(&mut req);
        let wait = req.wait;
        let (r, fx) = self.run(Command::Acquire(req));
        (wait, r, fx)
    }

    /// Acquires at once or panics; returns the grants.
    fn grab(&mut self, s: SessionId, resource: &str, mode: Mode) -> Grant {
        match self.acquire_with(s, &[resource], |r| r.mode = mode).1 {
            Ok(Reply::Granted(mut g)) => g.remove(0),
            r => panic!("expected a grant, got {r:?}"),
        }
    }

    /// Queues a request or panics; returns its wait id.
    fn queue(
        &mut self,
        s: SessionId,
        resources: &[&str],
        f: impl FnOnce(&mut AcquireRequest),
    ) -> WaitId {
        match self.acquire_with(s, resources, f) {
            (w, Ok(Reply::Queued { .. }), _) => w,
            (_, r, _) => panic!("expected to queue, got {r:?}"),
        }
    }

    fn status(&mut self, resource: &str) -> ResourceStatus {
        match self.ok(Command::Status(resource.into())) {
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

    fn release(&mut self, g: &Grant) -> Effects {
        let (r, fx) = self.run(Command::Release {
            resource: g.resource.as_ref().into(),
            token: g.token,
        });
        r.expect("release succeeds");
        fx
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
    let id = b.open_spec(spec);
    let Reply::Sessions(list) = b.ok(Command::Sessions) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
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
    b.ok(Command::Heartbeat(flaky));
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
        held.cell.get(),
        LeaseState::Lost(LostReason::SessionExpired)
    );
    assert!(b.holders("a").is_empty());
    assert_eq!(
        err(b.run(Command::Heartbeat(flaky)).0),
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
    assert!(g.cell.get() == LeaseState::Held);
    let (r, fx) = b.run(Command::Heartbeat(slow));
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
    let (_, r, _) = b.acquire_with(x, &["session-42"], |r| r.timeout = Some(Duration::ZERO));
    assert_eq!(
        err(r),
        ErrorKind::LockTimeout,
        "a live holder cannot be broken"
    );
    b.advance(1.0);
    let try_break = |r: &mut AcquireRequest| {
        r.break_stale = true;
        r.timeout = Some(Duration::ZERO);
    };
    let (_, first, fx) = b.acquire_with(x, &["session-42"], try_break);
    let (_, second, _) = b.acquire_with(y, &["session-42"], try_break);
    assert!(matches!(first, Ok(Reply::Granted(_))));
    assert_eq!(err(second), ErrorKind::LockTimeout);
    assert_eq!(kinds(&fx), [EventKind::Expired, EventKind::Acquired]);
    assert_eq!(fx.events[0].reason.as_deref(), Some("stale_taken_over"));
    assert_eq!(old.cell.get(), LeaseState::Lost(LostReason::SessionExpired));
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
}

#[test]
fn closing_a_session_releases_everything_and_cancels_its_waits() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g1 = b.grab(s, "a", Mode::Exclusive);
    b.grab(s, "b", Mode::Shared);
    b.grab(t, "c", Mode::Exclusive);
    let w = b.queue(s, &["c"], |_| {});
    let (r, fx) = b.run(Command::CloseSession(s));
    assert!(matches!(r, Ok(Reply::Count(2))));
    assert_eq!(failed(&fx, w), ErrorKind::Cancelled);
    assert_eq!(g1.cell.get(), LeaseState::Released);
    assert_eq!(*kinds(&fx).last().unwrap(), EventKind::SessionClosed);
    assert!(b.holders("a").is_empty() && b.holders("b").is_empty());
    assert!(b.status("c").waiters.is_empty());
    assert!(matches!(
        b.run(Command::CloseSession(s)).0,
        Ok(Reply::Count(0))
    ));
    assert_eq!(err(b.run(Command::Heartbeat(s)).0), ErrorKind::NotFound);
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
        token: Token::random(),
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
    let fx = b.release(&g);
    assert_eq!(kinds(&fx), [EventKind::Released]);
    assert_eq!(g.cell.get(), LeaseState::Released);
    let (r, _) = b.run(Command::Release {
        resource: "a".into(),
        token: g.token,
    });
    assert_eq!(err(r), ErrorKind::InvalidToken);
}

#[test]
fn a_lease_ttl_expires_unless_renewed() {
    let mut b = Bench::new();
    let s = b.open("s");
    let (_, r, _) = b.acquire_with(s, &["a"], |r| r.ttl = Some(secs(10.0)));
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
    assert_eq!(g.cell.get(), LeaseState::Lost(LostReason::Expired));
    let (r, _) = b.run(Command::Renew {
        resource: "a".into(),
        token: g.token,
        ttl: None,
    });
    assert_eq!(err(r), ErrorKind::InvalidToken);
}

#[test]
fn a_ttl_beyond_584_years_is_cut_to_that_and_reported_so_everywhere() {
    let mut b = Bench::new();
    let s = b.open("s");
    let huge = Duration::from_secs(1 << 40);
    let (_, r, _) = b.acquire_with(s, &["a"], |r| r.ttl = Some(huge));
    let Ok(Reply::Granted(g)) = r else { panic!() };
    let most = Duration::from_nanos(u64::MAX);
    assert_eq!(g[0].ttl, Some(most));
    assert_eq!(g[0].expires_at, Some(T0 + most.as_secs_f64()));
    let Reply::Status(st) = b.ok(Command::Status("a".into())) else {
        panic!()
    };
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
    let w = b.queue(t, &["a"], |r| r.ttl = Some(secs(5.0)));
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
    let (_, r, _) = b.acquire_with(u, &["scope"], |r| r.timeout = Some(Duration::ZERO));
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
    let (w2, r, fx) = b.acquire_with(ids[2], &["ps"], |r| r.priority = 2);
    assert!(matches!(r, Ok(Reply::Queued { position: 1 })));
    assert_eq!(fx.events[0].position(), Some(1));
    let w3 = b.queue(ids[3], &["ps"], |r| r.priority = 2);
    let order: Vec<_> = b
        .status("ps")
        .waiters
        .iter()
        .map(|w| (w.session_id, w.position))
        .collect();
    assert_eq!(order, [(ids[2], 1), (ids[3], 2), (ids[0], 3), (ids[1], 4)]);
    assert_eq!(b.st.position(w1), Some(4));
    let fx = b.release(&g);
    let first = granted(&fx, w2);
    for w in [w3, w0, w1] {
        assert!(b.st.position(w).is_some());
    }
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
    let (ws, r, _) = b.acquire_with(obs2, &["ps"], |r| r.mode = Mode::Shared);
    assert!(matches!(r, Ok(Reply::Queued { position: 2 })), "{r:?}");
    assert_eq!(
        b.holders("ps"),
        [obs1],
        "observers are not cleared by a waiting exclusive"
    );
    let fx = b.release(&g);
    let e = granted(&fx, we);
    assert_eq!(fx.completions.len(), 1);
    let fx = b.release(&e[0]);
    granted(&fx, ws);
}

#[test]
fn a_shared_head_is_granted_with_the_consecutive_shared_requests_behind_it() {
    let mut b = Bench::new();
    let ids: Vec<SessionId> = (0..5).map(|i| b.open(&format!("s{i}"))).collect();
    let g = b.grab(ids[0], "r", Mode::Exclusive);
    let s1 = b.queue(ids[1], &["r"], |r| r.mode = Mode::Shared);
    let s2 = b.queue(ids[2], &["r"], |r| r.mode = Mode::Shared);
    let e3 = b.queue(ids[3], &["r"], |_| {});
    let s4 = b.queue(ids[4], &["r"], |r| r.mode = Mode::Shared);
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
    let (_, r, _) = b.acquire_with(plan, &["dev"], |r| r.priority = 1);
    let Ok(Reply::Granted(p)) = r else { panic!() };
    let (_, r, _) = b.acquire_with(manual, &["dev"], |r| {
        r.priority = 1;
        r.preempt = true;
        r.timeout = Some(Duration::ZERO);
    });
    assert_eq!(
        err(r),
        ErrorKind::LockTimeout,
        "equal priority is not preempted"
    );
    let (_, r, fx) = b.acquire_with(maint, &["dev"], |r| {
        r.priority = 0;
        r.preempt = true;
        r.reason = Some("calibration".into());
    });
    assert!(matches!(r, Ok(Reply::Granted(_))));
    assert_eq!(kinds(&fx), [EventKind::Preempted, EventKind::Acquired]);
    assert_eq!(fx.events[0].session_id(), Some(plan));
    assert_eq!(fx.events[0].reason.as_deref(), Some("calibration"));
    assert_eq!(p[0].cell.get(), LeaseState::Lost(LostReason::Preempted));
    assert_eq!(b.holders("dev"), [maint]);
}

#[test]
fn a_queued_preempting_request_preempts_when_it_reaches_the_head() {
    let mut b = Bench::new();
    let (low, mid, top) = (b.open("low"), b.open("mid"), b.open("top"));
    let (_, r, _) = b.acquire_with(low, &["dev"], |r| r.priority = 3);
    let Ok(Reply::Granted(l)) = r else { panic!() };
    let (_, r, _) = b.acquire_with(mid, &["dev2"], |r| r.priority = 0);
    let Ok(Reply::Granted(m)) = r else { panic!() };
    // `top` wants both; dev2's holder outranks it, so it waits, holding nothing.
    let w = b.queue(top, &["dev", "dev2"], |r| {
        r.priority = 1;
        r.preempt = true;
    });
    assert_eq!(l[0].cell.get(), LeaseState::Held);
    let fx = b.release(&m[0]);
    granted(&fx, w);
    assert_eq!(l[0].cell.get(), LeaseState::Lost(LostReason::Preempted));
}

// ----- timeouts, tickets, cancel -----------------------------------------------------

#[test]
fn a_wait_times_out_and_leaves_the_queue() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    b.grab(s, "a", Mode::Exclusive);
    let w = b.queue(t, &["a"], |r| r.timeout = Some(secs(2.0)));
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
    let ws = b.queue(u, &["a"], |r| r.mode = Mode::Shared);
    let (_, fx) = b.run(Command::Cancel {
        wait: we,
        resources: vec!["a".into()].into(),
    });
    assert_eq!(failed(&fx, we), ErrorKind::Cancelled);
    granted(&fx, ws);
    assert_eq!(b.holders("a").len(), 2);
    drop(g);
}

#[test]
fn cancelling_a_grant_its_caller_never_saw_releases_it() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    let g = b.grab(s, "a", Mode::Exclusive);
    let w = b.queue(t, &["a"], |_| {});
    let fx = b.release(&g);
    let lost = granted(&fx, w);
    let (_, fx) = b.run(Command::Cancel {
        wait: w,
        resources: vec!["a".into()].into(),
    });
    assert_eq!(kinds(&fx), [EventKind::Released]);
    assert_eq!(lost[0].cell.get(), LeaseState::Released);
    assert!(b.holders("a").is_empty());
}

#[test]
fn a_session_may_not_hold_or_wait_twice_for_one_resource() {
    let mut b = Bench::new();
    let (s, t) = (b.open("s"), b.open("t"));
    b.grab(s, "a", Mode::Shared);
    let (_, r, _) = b.acquire_with(s, &["a"], |r| r.mode = Mode::Shared);
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
    let (_, r, fx) = b.acquire_with(t, &["a"], |_| {});
    assert_eq!(err(r), ErrorKind::Deadlock);
    assert_eq!(kinds(&fx), [EventKind::Dequeued]);
    assert_eq!(fx.events[0].reason.as_deref(), Some("deadlock"));
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
    let (_, r, _) = b.acquire_with(s, &["y"], |_| {});
    assert_eq!(err(r), ErrorKind::Deadlock);
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
    let (_, r, _) = b.acquire_with(t, &["a"], |r| {
        r.priority = 0;
        r.preempt = true;
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
    assert!(!check(&mut b, SessionId::random(), Action::Control));
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
fn force_release_frees_every_holder_and_counts_them() {
    let mut b = Bench::new();
    let (s, t, u) = (b.open("s"), b.open("t"), b.open("u"));
    let g1 = b.grab(s, "ps", Mode::Shared);
    b.grab(t, "ps", Mode::Shared);
    let w = b.queue(u, &["ps"], |_| {});
    let (r, fx) = b.run(Command::ForceRelease {
        resource: "ps".into(),
        reason: Some("stuck".into()),
    });
    assert!(matches!(r, Ok(Reply::Count(2))));
    assert_eq!(
        &kinds(&fx)[..2],
        [EventKind::ForceReleased, EventKind::ForceReleased]
    );
    assert_eq!(fx.events[0].reason.as_deref(), Some("stuck"));
    assert_eq!(g1.cell.get(), LeaseState::Lost(LostReason::ForceReleased));
    granted(&fx, w);
    assert!(matches!(
        b.ok(Command::ForceRelease {
            resource: "nothing".into(),
            reason: None
        }),
        Reply::Count(0)
    ));
}

#[test]
fn a_lease_whose_holder_released_first_ends_released_not_lost() {
    // `Lease::release` queues its command, then marks the cell; the command reaches the
    // state later. An expiry, preemption, force release or session close processed in
    // between counts as that release: it is not counted as ended by that call.
    type Lose = fn(&mut Bench, SessionId);
    let lose: [(&str, Lose); 4] = [
        ("expiry", |b, _| drop(b.advance(10.0))),
        ("preemption", |b, _| {
            let maint = b.open("maintenance");
            let (_, r, _) = b.acquire_with(maint, &["dev"], |r| {
                r.priority = 0;
                r.preempt = true;
            });
            assert!(matches!(r, Ok(Reply::Granted(_))));
        }),
        ("force release", |b, _| {
            let r = b.run(Command::ForceRelease {
                resource: "dev".into(),
                reason: Some("stuck".into()),
            });
            assert!(matches!(r.0, Ok(Reply::Count(0))), "{:?}", r.0);
        }),
        ("session close", |b, plan| {
            let r = b.run(Command::CloseSession(plan));
            assert!(matches!(r.0, Ok(Reply::Count(0))), "{:?}", r.0);
        }),
    ];
    for (how, lose) in lose {
        let mut b = Bench::new();
        let plan = b.open("plan");
        let (_, r, _) = b.acquire_with(plan, &["dev"], |r| r.ttl = Some(secs(5.0)));
        let Ok(Reply::Granted(g)) = r else { panic!() };
        let g = &g[0];
        assert_eq!(g.cell.leave_held(LeaseState::Released), LeaseState::Held);
        lose(&mut b, plan);
        let ended = b.history(Some("dev"), Some(plan)).pop().expect("an event");
        assert_eq!(ended.kind, EventKind::Released, "{how}");
        assert_eq!(ended.reason(), None, "{how}");
        assert_eq!(g.cell.get(), LeaseState::Released, "{how}");
        let (r, fx) = b.run(Command::Release {
            resource: "dev".into(),
            token: g.token,
        });
        assert_eq!(err(r), ErrorKind::InvalidToken, "{how}: the late release");
        assert!(
            fx.events.is_empty(),
            "{how}: the late release changes nothing"
        );
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
    assert_eq!(missed, 2);
    let Reply::Replay { events, missed } = b.ok(Command::Replay { since: 4 }) else {
        panic!()
    };
    assert_eq!((events.len(), missed), (1, 0));
}

#[test]
fn no_token_appears_in_status_listings_events_or_history() {
    let mut b = Bench::with(Config {
        lock_ttl: Some(secs(5.0)),
        ..Config::default()
    });
    let (s, t) = (b.open("s"), b.open("t"));
    let g = b.grab(s, "a", Mode::Exclusive);
    b.queue(t, &["a"], |_| {});
    let token = g.token.to_string();
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
    texts.push(format!("{:?}", g));
    for text in texts {
        assert!(!text.contains(&token), "token leaked in {text}");
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
    let _ = b.acquire_with(s, &["z"], |r| r.ttl = Some(secs(10.0)));
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
    type Edit = Box<dyn Fn(&mut AcquireRequest)>;
    let cases: Vec<Edit> = vec![
        Box::new(|r| r.resources = vec!["".into()].into()),
        Box::new(|r| r.resources = vec!["a\0b".into()].into()),
        Box::new(move |r| r.resources = vec![long.clone()].into()),
        Box::new(|r| r.ttl = Some(Duration::ZERO)),
        Box::new(|r| r.reason = Some("bad\0reason".into())),
    ];
    let before = b.st.next_seq;
    for f in cases {
        let (_, r, fx) = b.acquire_with(s, &["a"], f);
        assert_eq!(err(r), ErrorKind::InvalidArgument);
        assert!(fx.events.is_empty());
    }
    assert_eq!(b.st.next_seq, before);
    assert!(b.holders("a").is_empty());
    let (_, r, _) = b.acquire_with(SessionId::random(), &["a"], |_| {});
    assert_eq!(err(r), ErrorKind::NotFound);
    assert_eq!(
        err(b.run(Command::Status(String::new())).0),
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
    assert_eq!(held.cell.get(), LeaseState::Closed);
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

#[test]
fn each_lease_has_its_own_cell_across_pages_of_cells() {
    let mut b = Bench::new();
    let s = b.open("s");
    let grants: Vec<Grant> = (0..3 * CELLS_PER_PAGE + 1)
        .map(|i| b.grab(s, &format!("r{i}"), Mode::Exclusive))
        .collect();
    for g in grants.iter().step_by(3) {
        b.release(g);
    }
    for (i, g) in grants.iter().enumerate() {
        let want = match i % 3 {
            0 => LeaseState::Released,
            _ => LeaseState::Held,
        };
        assert_eq!(g.cell.get(), want, "lease {i}");
    }
}

/// The memory of a held lease (bench/RESULTS.md) rests on these sizes: a field added
/// carelessly pushes a record into the next allocation size.
#[test]
#[cfg(target_pointer_width = "64")]
fn the_records_of_a_held_lease_keep_their_sizes() {
    assert_eq!(size_of::<Event>(), 72);
    assert_eq!(size_of::<Ring>(), 16);
    assert_eq!(size_of::<ResourceRec>(), 152);
}
