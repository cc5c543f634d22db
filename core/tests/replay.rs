//! Long random runs of `State`, and the cases they found:
//! - determinism: a run recorded as (time, command) and replayed on a fresh `State` with
//!   the same seed gives the same replies, effects and digest (DESIGN.md, "Version 2 /
//!   Determinism": what the journal relies on);
//! - differential: `State` against the reference model in `model/`, compared after every
//!   command (replies, completions, events, holders, queues, sessions), once woken at
//!   every deadline as the actor runs it, once with deadlines piling up between commands;
//! - regressions: minimal cases of differences the differential runs once found.
//!
//! `INTERLOCK_REPLAY_STEPS` sets how many steps the determinism test runs in all (default
//! 120,000); `INTERLOCK_DIFF_CASES` how many runs each differential test makes (default
//! 256, of up to 400 steps). Each test prints what it ran (`--nocapture` shows it).

mod model;

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::{
    Command, Config, Effects, Event, EventKind, Grants, OnExpire, Reply, State, WaitId,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRunner};

use model::{Acquire, Driver, Harness, Op, UNIX_BASE};

// ---------------------------------------------------------------------------------------
// Random runs.
// ---------------------------------------------------------------------------------------

/// Milliseconds: round values often, so that deadlines often fall at the same instant.
fn dur() -> impl Strategy<Value = u16> {
    prop_oneof![
        2 => Just(500u16),
        2 => Just(1000),
        2 => Just(2000),
        2 => Just(5000),
        3 => 1..10_000u16,
    ]
}

/// An index that picks mostly live things, sometimes any ever seen, rarely an unknown one
/// (see `model::Op`).
fn pick() -> impl Strategy<Value = u8> {
    prop_oneof![40 => 0..8u8, 4 => 128..250u8, 1 => 250..=255u8]
}

/// A resource index: rarely the invalid one.
fn res() -> impl Strategy<Value = u8> {
    prop_oneof![50 => 0..4u8, 1 => Just(4u8)]
}

fn acquire() -> impl Strategy<Value = Op> {
    let resources = prop_oneof![
        100 => proptest::sample::subsequence(vec![0u8, 1, 2, 3], 1..=3).prop_shuffle(),
        1 => Just(vec![]),
        1 => Just(vec![1, 1]),
        1 => Just(vec![0, 4]),
    ];
    (
        pick(),
        resources,
        any::<bool>(),
        prop_oneof![8 => Just(None), 3 => Just(Some(0)), 8 => dur().prop_map(Some)],
        prop_oneof![60 => Just(None), 1 => Just(Some(0)), 30 => dur().prop_map(Some)],
        prop_oneof![Just(0u8), Just(1), Just(2), Just(100), Just(100), Just(255)],
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
        prop_oneof![60 => Just(0u8), 10 => Just(1), 5 => Just(2), 1 => Just(3)],
    )
        .prop_map(
            |(session, resources, shared, timeout, ttl, priority, preempt, break_stale, reason)| {
                Op::Acquire(Acquire {
                    session,
                    resources,
                    shared,
                    timeout,
                    ttl,
                    priority,
                    preempt,
                    break_stale,
                    reason,
                })
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let open = (
        prop_oneof![30 => Just(None), 1 => Just(Some(0)), 30 => dur().prop_map(Some)],
        proptest::option::of(any::<bool>()),
        prop_oneof![30 => Just(0u8), 10 => Just(1), 1 => Just(2)],
        proptest::bool::weighted(0.02),
    )
        .prop_map(|(ttl, keep, metadata, bad_name)| Op::Open {
            ttl,
            keep,
            metadata,
            bad_name,
        });
    let ttl = prop_oneof![15 => Just(None), 1 => Just(Some(0)), 20 => dur().prop_map(Some)];
    let opt = |s: BoxedStrategy<u8>| proptest::option::of(s);
    prop_oneof![
        20 => open,
        10 => pick().prop_map(Op::Close),
        30 => pick().prop_map(Op::Heartbeat),
        5 => (pick(), proptest::bool::weighted(0.8))
            .prop_map(|(session, right_secret)| Op::Resume { session, right_secret }),
        5 => pick().prop_map(Op::Session),
        140 => acquire(),
        20 => pick().prop_map(Op::Cancel),
        10 => pick().prop_map(Op::Position),
        50 => (pick(), proptest::bool::weighted(0.1))
            .prop_map(|(lease, other_resource)| Op::Release { lease, other_resource }),
        20 => (pick(), ttl).prop_map(|(lease, ttl)| Op::Renew { lease, ttl }),
        10 => (res(), 0..4u8).prop_map(|(resource, reason)| Op::ForceRelease { resource, reason }),
        5 => res().prop_map(Op::Status),
        5 => Just(Op::Locks),
        5 => Just(Op::Sessions),
        5 => (res(), pick(), any::<bool>())
            .prop_map(|(resource, session, control)| Op::Check { resource, session, control }),
        5 => (res(), 0..4u8).prop_map(|(resource, back)| Op::CheckFence { resource, back }),
        10 => (opt(res().boxed()), opt(pick().boxed()), opt((0..6u8).boxed()))
            .prop_map(|(resource, session, limit)| Op::History { resource, session, limit }),
        5 => (0..30u8).prop_map(|back| Op::Replay { back }),
        10 => Just(Op::Tick),
        1 => Just(Op::CloseEngine),
    ]
}

/// A step: how far the clock moves (milliseconds), then what is done.
fn step() -> impl Strategy<Value = (u16, Op)> {
    let advance = prop_oneof![
        12 => Just(0u16),
        3 => Just(250),
        3 => Just(500),
        2 => Just(1000),
        1 => Just(3000),
        1 => 1..10_000u16,
    ];
    (advance, op())
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![3 => Just(None), 1 => Just(Some(Duration::from_secs(3)))],
        prop_oneof![3 => Just(None), 1 => Just(Some(Duration::from_secs(5)))],
        prop_oneof![Just(0usize), Just(3), Just(100)],
        prop_oneof![Just(12usize), Just(10_000)],
        prop_oneof![Just(OnExpire::Release), Just(OnExpire::Keep)],
    )
        .prop_map(
            |(lock_ttl, session_ttl, history_limit, global_history, on_session_expire)| Config {
                lock_ttl,
                session_ttl,
                history_limit,
                global_history,
                on_session_expire,
                ..Config::default()
            },
        )
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| {
            panic!("{name} must be a number, not {v:?}");
        }),
        Err(_) => default,
    }
}

fn runner(cases: u64) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        // A failing run of hundreds of steps needs many shrinking steps to become small.
        max_shrink_iters: 50_000,
        // The minimal failing input is printed; a failure found is made a named test.
        failure_persistence: None,
        // Unoptimised, the default ChaCha generator takes most of the time of a test
        // that draws thousands of values a run; XorShift is plenty for making inputs.
        rng_algorithm: RngAlgorithm::XorShift,
        ..RunnerConfig::default()
    })
}

// ---------------------------------------------------------------------------------------
// Determinism.
// ---------------------------------------------------------------------------------------

/// Steps in one recorded run: long, so that a run reaches deep states (full history
/// rings, compacted deadline heaps, many ended sessions).
const RUN_STEPS: usize = 2_000;

/// What one command did, recorded to compare with its replay.
struct Record {
    now: Duration,
    cmd: Command,
    reply: interlock::Result<Reply>,
    events: Vec<Arc<Event>>,
    completions: Vec<(WaitId, interlock::Result<Grants>)>,
    next_deadline: Option<Duration>,
}

/// A digest of the whole state is taken every so many commands.
const DIGEST_EVERY: usize = 250;

/// Runs `steps` on a fresh `State`: the concrete command applied at each step (with the
/// ids and tokens it names), what it did, and digests along the way.
fn record(cfg: &Config, seed: [u8; 32], steps: &[(u16, Op)]) -> (Vec<Record>, Vec<[u8; 32]>) {
    let mut st = State::new(cfg.clone(), UNIX_BASE, seed);
    let mut driver = Driver::default();
    let mut now = Duration::ZERO;
    let mut log = Vec::with_capacity(steps.len());
    let mut digests = Vec::new();
    for (i, (advance, op)) in steps.iter().enumerate() {
        // Time jumps freely here: one command may find many deadlines due at once.
        now += Duration::from_millis(u64::from(*advance));
        let cmd = driver.command(op);
        let (reply, fx) = st.apply(now, cmd.clone());
        driver.learn(&reply, &fx);
        let Effects {
            events,
            completions,
        } = fx;
        log.push(Record {
            now,
            cmd,
            reply,
            events,
            completions,
            next_deadline: st.next_deadline(),
        });
        if i % DIGEST_EVERY == DIGEST_EVERY - 1 {
            digests.push(st.digest());
        }
    }
    digests.push(st.digest());
    (log, digests)
}

/// Replays a recorded run on a fresh `State`; `Err` names the first step that differs.
fn replay(
    cfg: &Config,
    seed: [u8; 32],
    log: &[Record],
    digests: &[[u8; 32]],
) -> std::result::Result<(), String> {
    let mut st = State::new(cfg.clone(), UNIX_BASE, seed);
    let mut checkpoints = digests.iter();
    for (i, r) in log.iter().enumerate() {
        // The journal stores commands as JSON: they must come back the same.
        let text = serde_json::to_string(&r.cmd).map_err(|e| e.to_string())?;
        let cmd: Command = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if cmd != r.cmd {
            return Err(format!("step {i}: {text} does not round-trip"));
        }
        let (reply, fx) = st.apply(r.now, cmd);
        if reply != r.reply {
            return Err(format!(
                "step {i} ({:?}): reply {reply:?}, first time {:?}",
                r.cmd, r.reply
            ));
        }
        if fx.events != r.events || fx.completions != r.completions {
            return Err(format!(
                "step {i} ({:?}): effects differ\n  replay: {}\n  first:  {}",
                r.cmd,
                serde_json::to_string(&fx.events).unwrap_or_default(),
                serde_json::to_string(&r.events).unwrap_or_default()
            ));
        }
        if st.next_deadline() != r.next_deadline {
            return Err(format!("step {i}: next deadline differs"));
        }
        let digest_due = i % DIGEST_EVERY == DIGEST_EVERY - 1;
        if digest_due && checkpoints.next() != Some(&st.digest()) {
            return Err(format!("step {i}: digest differs"));
        }
    }
    match checkpoints.next() == Some(&st.digest()) {
        true => Ok(()),
        false => Err("final digest differs".into()),
    }
}

#[test]
fn a_replayed_run_gives_the_same_replies_effects_and_digest() {
    let total = env_number("INTERLOCK_REPLAY_STEPS", 120_000);
    let cases = total.div_ceil(RUN_STEPS as u64).max(1);
    let steps = Cell::new(0u64);
    let runs = Cell::new(0u64);
    let started = Instant::now();
    let strategy = (
        config(),
        any::<[u8; 32]>(),
        proptest::collection::vec(step(), RUN_STEPS),
    );
    let result = runner(cases).run(&strategy, |(cfg, seed, ops)| {
        let (log, digests) = record(&cfg, seed, &ops);
        steps.set(steps.get() + log.len() as u64);
        runs.set(runs.get() + 1);
        replay(&cfg, seed, &log, &digests).map_err(TestCaseError::fail)
    });
    println!(
        "determinism: {} steps in {} runs of {RUN_STEPS}, each recorded and replayed, in {:.1?}",
        steps.get(),
        runs.get(),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Differential.
// ---------------------------------------------------------------------------------------

/// Runs random command sequences through `State` and the model; `tick` as in
/// `Harness::tick_at_deadlines`.
fn differential(tick: bool, cases: u64, max_steps: usize) {
    let steps = Cell::new(0u64);
    let runs = Cell::new(0u64);
    let started = Instant::now();
    let strategy = (
        config(),
        any::<[u8; 32]>(),
        proptest::collection::vec(step(), 1..max_steps),
    );
    let result = runner(cases).run(&strategy, |(cfg, seed, ops)| {
        let mut h = Harness::new(cfg, seed, tick);
        runs.set(runs.get() + 1);
        for (advance, op) in &ops {
            steps.set(steps.get() + 1);
            let r = h.step(Duration::from_millis(u64::from(*advance)), op);
            if let Err(e) = r {
                return Err(TestCaseError::fail(e));
            }
        }
        Ok(())
    });
    println!(
        "differential (tick at deadlines: {tick}): {} steps in {} runs, in {:.1?}",
        steps.get(),
        runs.get(),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// As the engine runs `State`: its actor wakes at every deadline.
#[test]
fn state_agrees_with_the_model_after_every_command() {
    differential(true, env_number("INTERLOCK_DIFF_CASES", 256), 400);
}

/// Commands that come late, after several deadlines fell due at once (a busy actor, a
/// journal replayed).
#[test]
fn state_agrees_with_the_model_when_deadlines_pile_up() {
    differential(false, env_number("INTERLOCK_DIFF_CASES", 256), 400);
}

// ---------------------------------------------------------------------------------------
// Regressions: minimal cases of differences the differential tests found.
// ---------------------------------------------------------------------------------------

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn open_with(st: &mut State, now: Duration, spec: interlock::SessionSpec) -> interlock::SessionId {
    let name = spec.name.clone();
    match st.apply(now, Command::OpenSession(spec)).0 {
        Ok(Reply::Opened { session, .. }) => session.id,
        r => panic!("open {name}: {r:?}"),
    }
}

fn open(st: &mut State, now: Duration, name: &str) -> interlock::SessionId {
    open_with(st, now, interlock::SessionSpec::named(name))
}

fn request(
    st: &mut State,
    now: Duration,
    session: interlock::SessionId,
    resources: &[&str],
    options: interlock::AcquireOptions,
) -> (interlock::Result<Reply>, Effects) {
    let req = interlock::AcquireRequest {
        session,
        resources: resources.iter().map(|r| r.to_string()).collect(),
        options,
    };
    st.apply(now, Command::Acquire(req))
}

/// The kind of each event, with why for those that say.
fn kinds(fx: &Effects) -> Vec<(EventKind, Option<String>)> {
    let what = |e: &Arc<Event>| (e.kind, e.reason().map(String::from));
    fx.events.iter().map(what).collect()
}

/// Deadlines that pile up are met in order. a holds dev (its session opened with
/// `spec`, the lease taken with `lease`); b waits for it up to `timeout`; at `at`, the
/// command `keep` makes of a's session and token moves a's end past b's deadline. A
/// command that comes after both (a tick at 3 s: the actor is late, or a journal is
/// replayed) must time b's wait out first, then end a's lease with `after` as the
/// events that follow b's dequeue, and grant nobody.
fn deadlines_met_in_order(
    spec: interlock::SessionSpec,
    lease: interlock::AcquireOptions,
    timeout: f64,
    at: f64,
    keep: impl FnOnce(interlock::SessionId, interlock::Token) -> Command,
    after: &[(EventKind, Option<&str>)],
) {
    let mut st = State::new(Config::default(), UNIX_BASE, [1; 32]);
    let zero = Duration::ZERO;
    let a = open_with(&mut st, zero, spec);
    let b = open(&mut st, zero, "b");
    let Ok(Reply::Granted(g)) = request(&mut st, zero, a, &["dev"], lease).0 else {
        panic!("a gets dev")
    };
    let wait = interlock::AcquireOptions {
        timeout: Some(secs(timeout)),
        ..Default::default()
    };
    let Ok(Reply::Queued { wait, .. }) = request(&mut st, zero, b, &["dev"], wait).0 else {
        panic!("b waits for dev")
    };
    assert!(st.apply(secs(at), keep(a, g[0].token)).0.is_ok());
    let (_, fx) = st.apply(secs(3.0), Command::Tick);
    assert!(
        matches!(
            fx.completions[..],
            [(w, Err(interlock::Error::LockTimeout(_)))] if w == wait
        ),
        "b's wait timed out at {timeout} s, before a's end; got {:?}",
        fx.completions
    );
    let mut want = vec![(EventKind::Dequeued, Some("timeout".to_string()))];
    want.extend(after.iter().map(|(k, r)| (*k, r.map(String::from))));
    assert_eq!(kinds(&fx), want, "the timeout first, then a's end");
}

/// DESIGN.md: "`t > 0` waits up to `t` seconds, then `LockTimeout`". A lease renewed
/// past a waiter's deadline expires in its turn: renewed at 0.5 s to expire at 2.5 s,
/// after b's wait times out at 2 s.
#[test]
fn a_lease_renewed_past_a_timeout_expires_after_it_when_deadlines_pile_up() {
    let renew = |_, token| Command::Renew {
        resource: "dev".into(),
        token,
        ttl: Some(secs(2.0)),
    };
    let lease = interlock::AcquireOptions {
        ttl: Some(secs(1.0)),
        ..Default::default()
    };
    let spec = interlock::SessionSpec::named("a");
    deadlines_met_in_order(spec, lease, 2.0, 0.5, renew, &[(EventKind::Expired, None)]);
}

/// The same for a session kept alive past a waiter's timeout: a heartbeat moves its
/// expiry from 1 s to 1.9 s, after b's wait times out at 1.5 s; its lease goes with it.
#[test]
fn a_session_kept_alive_past_a_timeout_expires_after_it_when_deadlines_pile_up() {
    let spec = interlock::SessionSpec {
        ttl: Some(secs(1.0)),
        on_expire: Some(OnExpire::Release),
        ..interlock::SessionSpec::named("a")
    };
    let heartbeat = |session, _| Command::Heartbeat { session };
    let after = [
        (EventKind::Expired, Some("session_expired")),
        (EventKind::SessionExpired, None),
    ];
    deadlines_met_in_order(spec, Default::default(), 1.5, 0.9, heartbeat, &after);
}

/// DESIGN.md: "a wait that can never be granted — a cycle in the waits-for graph of
/// sessions, through holders or through queue order — fails promptly with `Deadlock`
/// for the request that closed the cycle". d, which already waits behind b for r3, asks
/// for r2 with priority 0, which puts it ahead of b's queued request for r2 and r3: held,
/// r2 would make b wait for d (its holder) while d waits for b (queued ahead of it on
/// r3), for ever. That acquire is refused with `Deadlock`, and changes nothing: when a
/// lets r3 go, b gets r2 and r3, and d waits on behind it.
#[test]
fn an_acquire_granted_at_once_that_would_close_a_cycle_of_waits_is_refused() {
    let mut st = State::new(Config::default(), UNIX_BASE, [2; 32]);
    let zero = Duration::ZERO;
    let (a, b, d) = (
        open(&mut st, zero, "a"),
        open(&mut st, zero, "b"),
        open(&mut st, zero, "d"),
    );
    let Ok(Reply::Granted(g)) = request(&mut st, zero, a, &["r3"], Default::default()).0 else {
        panic!("a gets r3")
    };
    let Ok(Reply::Queued { wait: wb, .. }) =
        request(&mut st, zero, b, &["r2", "r3"], Default::default()).0
    else {
        panic!("b waits for r2 and r3 (r3 is a's)")
    };
    let Ok(Reply::Queued { wait: wd, .. }) =
        request(&mut st, zero, d, &["r3"], Default::default()).0
    else {
        panic!("d waits for r3, behind b")
    };
    let urgent = interlock::AcquireOptions {
        priority: 0,
        ..Default::default()
    };
    let (reply, fx) = request(&mut st, zero, d, &["r2"], urgent);
    assert!(
        matches!(reply, Err(interlock::Error::Deadlock(_))),
        "holding r2, d would close a cycle with b; got {reply:?}"
    );
    assert!(
        fx.events.is_empty() && fx.completions.is_empty(),
        "a refused acquire changes nothing: {fx:?}"
    );
    let release = Command::Release {
        resource: "r3".into(),
        token: g[0].token,
    };
    let (reply, fx) = st.apply(zero, release);
    assert!(reply.is_ok());
    let names = |g: &Grants| g.iter().map(|g| g.resource.to_string()).collect::<Vec<_>>();
    let granted: Vec<_> = fx
        .completions
        .iter()
        .map(|(w, r)| (*w, r.as_ref().map(names)))
        .collect();
    assert_eq!(
        granted,
        [(wb, Ok(vec!["r2".to_string(), "r3".to_string()]))],
        "b gets r2 and r3"
    );
    assert_eq!(
        st.apply(zero, Command::Position { wait: wd }).0,
        Ok(Reply::Position(Some(1))),
        "d waits on for r3, behind nobody but its holder b"
    );
}
