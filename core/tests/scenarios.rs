//! The users of DESIGN.md "Who uses it", one scenario each, through the real actor.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use interlock::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn manual_engine(cfg: Config) -> (Handle, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000.0));
    (Handle::with_clock(cfg, clock.clone()).unwrap(), clock)
}

fn session(eng: &Handle, name: &str, metadata: serde_json::Value) -> Session {
    eng.open_session(SessionSpec {
        metadata,
        ..SessionSpec::named(name)
    })
    .unwrap()
}

fn try_once() -> AcquireOptions {
    AcquireOptions {
        timeout: Some(Duration::ZERO),
        ..Default::default()
    }
}

#[test]
fn optimizer_locks_an_experiment_session_with_its_token_and_an_admin_force_unlocks_it() {
    let eng = Handle::new(Config::default()).unwrap();
    let optimizer = session(
        &eng,
        "Optimizer",
        serde_json::json!({"user": "ana", "host": "lab-pc-3"}),
    );
    let web_ui = session(&eng, "WebUI", serde_json::json!({"user": "ben"}));

    let lease = optimizer
        .acquire(
            "reactor-1",
            &AcquireOptions {
                reason: Some("bayesian run 17".into()),
                ..Default::default()
            },
        )
        .unwrap();
    // The web UI falls back to monitor mode: it may not control, and sees who does.
    assert!(!eng
        .check("reactor-1", web_ui.id(), Action::Control)
        .unwrap());
    let st = eng.status("reactor-1").unwrap();
    assert_eq!(&*st.holders[0].session_name, "Optimizer");
    assert_eq!(st.holders[0].metadata["user"], "ana");
    assert_eq!(st.holders[0].reason.as_deref(), Some("bayesian run 17"));
    assert_eq!(
        web_ui.acquire("reactor-1", &try_once()).unwrap_err().kind(),
        ErrorKind::LockTimeout
    );

    // Only the token releases it.
    assert_eq!(
        eng.release(
            "reactor-1",
            "00000000-0000-4000-8000-000000000000".parse().unwrap()
        )
        .unwrap_err()
        .kind(),
        ErrorKind::InvalidToken
    );
    eng.release("reactor-1", lease.token()).unwrap();
    assert!(!lease.is_valid() && lease.lost_reason().is_none());

    // The optimizer locks again and hangs; an admin force-unlocks.
    let lease = optimizer
        .acquire("reactor-1", &AcquireOptions::default())
        .unwrap();
    assert_eq!(
        eng.force_release("reactor-1", Some("optimizer hung"))
            .unwrap(),
        1
    );
    assert_eq!(lease.lost_reason(), Some(LostReason::ForceReleased));
    assert_eq!(lease.release().unwrap_err().kind(), ErrorKind::LockLost);
    let ui_lease = web_ui.acquire("reactor-1", &try_once()).unwrap();
    assert!(eng.check_fence("reactor-1", ui_lease.fence()).unwrap());
    assert!(
        !eng.check_fence("reactor-1", lease.fence()).unwrap(),
        "the driver rejects the old holder"
    );
}

#[test]
fn a_shared_instrument_has_observers_and_a_fifo_queue_of_controllers() {
    let eng = Handle::new(Config::default()).unwrap();
    let observers: Vec<Session> = (0..3)
        .map(|i| session(&eng, &format!("viewer-{i}"), serde_json::json!({})))
        .collect();
    let shared = AcquireOptions {
        mode: "observer".parse().unwrap(),
        ..Default::default()
    };
    let views: Vec<Lease> = observers
        .iter()
        .map(|o| o.acquire("scope-1", &shared).unwrap())
        .collect();
    assert_eq!(eng.status("scope-1").unwrap().holders.len(), 3);
    assert_eq!(eng.status("scope-1").unwrap().mode, Some(Mode::Shared));

    let ctl_a = session(&eng, "ControllerA", serde_json::json!({}));
    let ctl_b = session(&eng, "ControllerB", serde_json::json!({}));
    let late = session(&eng, "late-viewer", serde_json::json!({}));
    let ta = ctl_a
        .enqueue(&["scope-1"], &AcquireOptions::default())
        .unwrap();
    let tb = ctl_b
        .enqueue(&["scope-1"], &AcquireOptions::default())
        .unwrap();
    let tl = late.enqueue(&["scope-1"], &shared).unwrap();
    assert_eq!(
        (
            ta.position().unwrap(),
            tb.position().unwrap(),
            tl.position().unwrap()
        ),
        (Some(1), Some(2), Some(3))
    );
    let waiters: Vec<String> = eng
        .status("scope-1")
        .unwrap()
        .waiters
        .iter()
        .map(|w| w.session_name.to_string())
        .collect();
    assert_eq!(waiters, ["ControllerA", "ControllerB", "late-viewer"]);

    for v in &views {
        assert!(
            ta.poll(Some(Duration::ZERO)).unwrap().is_none(),
            "A waits for every observer"
        );
        v.release().unwrap();
    }
    let a = ta.wait(Some(secs(5))).unwrap();
    assert_eq!(tb.position().unwrap(), Some(1));
    a[0].release().unwrap();
    let b = tb.wait(Some(secs(5))).unwrap();
    b[0].release().unwrap();
    let l = tl.wait(Some(secs(5))).unwrap();
    assert_eq!(l[0].mode(), Mode::Shared);
    assert!(eng.check("scope-1", late.id(), Action::Observe).unwrap());
    assert!(!eng.check("scope-1", late.id(), Action::Control).unwrap());
}

#[test]
fn a_stale_heartbeat_lets_exactly_one_of_two_racing_users_take_over() {
    for round in 0..20 {
        let (eng, clock) = manual_engine(Config::default());
        let packer = eng
            .open_session(SessionSpec {
                ttl: Some(secs(30)),
                on_expire: Some(OnExpire::Keep),
                ..SessionSpec::named("packer")
            })
            .unwrap();
        let folder = "/data/run42";
        let old = packer.acquire(folder, &AcquireOptions::default()).unwrap();
        clock.advance(secs(20));
        packer.heartbeat().unwrap();
        clock.advance(secs(20));
        assert!(
            !eng.status(folder).unwrap().holders[0].stale,
            "heartbeats keep it live"
        );
        clock.advance(secs(11));
        assert!(
            eng.status(folder).unwrap().holders[0].stale,
            "no heartbeat for 30 s: stale"
        );
        assert!(old.is_valid(), "a stale lease is still held");

        let start = Arc::new(Barrier::new(2));
        let racers: Vec<_> = ["alice", "bob"]
            .into_iter()
            .map(|name| {
                let (eng, start) = (eng.clone(), start.clone());
                std::thread::spawn(move || {
                    let s = eng.open_session(SessionSpec::named(name)).unwrap();
                    start.wait();
                    let opts = AcquireOptions {
                        break_stale: true,
                        ..try_once()
                    };
                    s.acquire(folder, &opts)
                        .map(|l| l.fence())
                        .map_err(|e| e.kind())
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        assert!(results.contains(&Err(ErrorKind::LockTimeout)));
        assert_eq!(old.lost_reason(), Some(LostReason::SessionExpired));
        packer.heartbeat().unwrap();
        assert!(
            eng.sessions().unwrap().iter().all(|s| !s.stale),
            "the packer revives, without its lease"
        );
        assert!(eng
            .sessions()
            .unwrap()
            .iter()
            .find(|s| s.name.as_ref() == "packer")
            .unwrap()
            .leases
            .is_empty());
    }
}

#[test]
fn maintenance_preempts_a_running_plan_and_every_client_sees_it_live() {
    let eng = Handle::new(Config::default()).unwrap();
    let watch = eng
        .subscribe(Some(&["robot-arm".to_string()]), None)
        .unwrap();
    let (maintenance, executing, manual, queued) = (0, 1, 2, 3);
    let plan = session(&eng, "ExecutingPlan", serde_json::json!({}));
    let operator = session(&eng, "ManualOperator", serde_json::json!({}));
    let next_plan = session(&eng, "QueuedPlan", serde_json::json!({}));
    let maint = session(&eng, "Maintenance", serde_json::json!({}));

    let running = plan
        .acquire(
            "robot-arm",
            &AcquireOptions {
                priority: executing,
                ..Default::default()
            },
        )
        .unwrap();
    let op = AcquireOptions {
        priority: manual,
        preempt: true,
        ..try_once()
    };
    assert_eq!(
        operator.acquire("robot-arm", &op).unwrap_err().kind(),
        ErrorKind::LockTimeout,
        "2 cannot preempt 1"
    );
    let waiting = next_plan
        .enqueue(
            &["robot-arm"],
            &AcquireOptions {
                priority: queued,
                ..Default::default()
            },
        )
        .unwrap();

    let fix = AcquireOptions {
        priority: maintenance,
        preempt: true,
        reason: Some("gripper jam".into()),
        ..Default::default()
    };
    let m = maint.acquire("robot-arm", &fix).unwrap();
    assert_eq!(running.lost_reason(), Some(LostReason::Preempted));
    assert_eq!(
        waiting.position().unwrap(),
        Some(1),
        "the queued plan still waits its turn"
    );
    m.release().unwrap();
    let next = waiting.wait(Some(secs(5))).unwrap();
    // A last, known event: everything the watcher sees up to it is what happened.
    next[0].release().unwrap();

    let seen: Vec<(EventKind, String)> = (0..7)
        .map(|_| watch.recv_timeout(secs(5)).expect("an event within 5 s"))
        .map(|e| (e.kind, e.session_name().unwrap_or("").to_string()))
        .collect();
    use EventKind::*;
    let expect = [
        (Acquired, "ExecutingPlan"),
        (Queued, "QueuedPlan"),
        (Preempted, "ExecutingPlan"),
        (Acquired, "Maintenance"),
        (Released, "Maintenance"),
        (Acquired, "QueuedPlan"),
        (Released, "QueuedPlan"),
    ];
    let expect: Vec<(EventKind, String)> =
        expect.iter().map(|(k, n)| (*k, n.to_string())).collect();
    assert_eq!(seen, expect);
}

#[test]
fn folder_locks_expire_release_only_by_their_owner_and_leave_history() {
    let (eng, clock) = manual_engine(Config {
        lock_ttl: Some(secs(60)),
        ..Config::default()
    });
    let ana = session(&eng, "ana@packer", serde_json::json!({"pid": 4242}));
    let ben = session(&eng, "ben@packer", serde_json::json!({"pid": 5151}));
    let folder = "/lab/samples/2026-11-23";
    let lease = ana.acquire(folder, &AcquireOptions::default()).unwrap();
    assert_eq!(eng.status(folder).unwrap().holders[0].remaining, Some(60.0));

    // Ben cannot release Ana's lock without her token.
    let guess: Token = "6a1f1a9e-5b0a-4c55-9d44-0c6f4bb0c1de".parse().unwrap();
    assert_eq!(
        eng.release(folder, guess).unwrap_err().kind(),
        ErrorKind::InvalidToken
    );
    assert!(eng.check(folder, ana.id(), Action::Control).unwrap());

    clock.advance(secs(45));
    lease.renew(None).unwrap();
    clock.advance(secs(59));
    assert!(lease.is_valid());
    clock.advance(secs(1));
    let ben_lease = ben.acquire(folder, &try_once()).unwrap();
    assert_eq!(lease.lost_reason(), Some(LostReason::Expired));
    assert_eq!(lease.release().unwrap_err().kind(), ErrorKind::LockLost);
    ben_lease.release().unwrap();

    let history: Vec<(EventKind, String)> = eng
        .history(Some(folder), None, None)
        .unwrap()
        .iter()
        .map(|e| (e.kind, e.session_name().unwrap_or("").to_string()))
        .collect();
    use EventKind::*;
    let expect: Vec<(EventKind, String)> = [
        (Acquired, "ana@packer"),
        (Expired, "ana@packer"),
        (Acquired, "ben@packer"),
        (Released, "ben@packer"),
    ]
    .iter()
    .map(|(k, n)| (*k, n.to_string()))
    .collect();
    assert_eq!(history, expect);
    assert!(!eng.status(folder).unwrap().locked);
    assert_eq!(
        eng.history(Some(folder), Some(ana.id()), Some(1)).unwrap()[0].kind,
        Expired
    );
}
