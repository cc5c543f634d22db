//! Long random sequences of commands and clock moves against `State`, with every
//! invariant checked after every step.

use proptest::prelude::*;

use super::*;

const RESOURCES: [&str; 4] = ["r0", "r1", "r2", "r3"];

#[derive(Debug, Clone)]
enum Op {
    Open {
        ttl: Option<u8>,
        keep: bool,
    },
    Close(usize),
    Heartbeat(usize),
    Acquire {
        session: usize,
        resources: Vec<usize>,
        shared: bool,
        timeout: Option<u8>,
        ttl: Option<u8>,
        priority: u8,
        preempt: bool,
        break_stale: bool,
    },
    Cancel(usize),
    Release(usize),
    Renew {
        grant: usize,
        ttl: Option<u8>,
    },
    ForceRelease(usize),
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let acquire = (
        0..8usize,
        proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=3),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(0u8)), (1..6u8).prop_map(Some)],
        prop_oneof![Just(None), (1..8u8).prop_map(Some)],
        prop_oneof![Just(0u8), Just(1), Just(2), Just(100)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(session, resources, shared, timeout, ttl, priority, preempt, break_stale)| {
                Op::Acquire {
                    session,
                    resources,
                    shared,
                    timeout,
                    ttl,
                    priority,
                    preempt,
                    break_stale,
                }
            },
        );
    prop_oneof![
        2 => (prop_oneof![Just(None), (1..10u8).prop_map(Some)], any::<bool>()).prop_map(|(ttl, keep)| Op::Open { ttl, keep }),
        1 => (0..8usize).prop_map(Op::Close),
        2 => (0..8usize).prop_map(Op::Heartbeat),
        8 => acquire,
        1 => (0..64usize).prop_map(Op::Cancel),
        3 => (0..64usize).prop_map(Op::Release),
        1 => ((0..64usize), prop_oneof![Just(None), (1..8u8).prop_map(Some)]).prop_map(|(grant, ttl)| Op::Renew { grant, ttl }),
        1 => (0..4usize).prop_map(Op::ForceRelease),
        3 => (0..4u8).prop_map(Op::Advance),
    ]
}

struct Model {
    st: State,
    now: Duration,
    sessions: Vec<SessionId>,
    waits: Vec<(WaitId, Vec<String>)>,
    grants: Vec<Grant>,
    tokens: Vec<String>,
    last_fence: u64,
    next_wait: WaitId,
}

impl Model {
    fn apply(&mut self, cmd: Command) -> Result<Reply> {
        let (reply, fx) = self.st.apply(self.now, cmd);
        let mut new: Vec<Grant> = Vec::new();
        if let Ok(Reply::Granted(g)) = &reply {
            new.extend(g.iter().cloned());
        }
        for (_, outcome) in &fx.completions {
            if let Ok(g) = outcome {
                new.extend(g.iter().cloned());
            }
        }
        for g in new {
            assert!(
                g.fence > self.last_fence,
                "fence {} after {}",
                g.fence,
                self.last_fence
            );
            self.last_fence = g.fence;
            self.tokens.push(g.token.to_string());
            self.grants.push(g);
        }
        for e in &fx.events {
            self.assert_no_token(&serde_json::to_string(&**e).unwrap());
        }
        reply
    }

    fn step(&mut self, op: Op) {
        let pick = |v: &[SessionId], i: usize| v.get(i % v.len().max(1)).copied();
        match op {
            Op::Open { ttl, keep } => {
                let spec = SessionSpec {
                    ttl: ttl.map(|t| Duration::from_secs(t.into())),
                    on_expire: Some(if keep {
                        OnExpire::Keep
                    } else {
                        OnExpire::Release
                    }),
                    ..SessionSpec::named(format!("s{}", self.sessions.len()))
                };
                if let Ok(Reply::Session(info)) = self.apply(Command::OpenSession(spec)) {
                    self.sessions.push(info.id);
                }
            }
            Op::Close(i) => {
                if let Some(s) = pick(&self.sessions, i) {
                    let _ = self.apply(Command::CloseSession(s));
                }
            }
            Op::Heartbeat(i) => {
                if let Some(s) = pick(&self.sessions, i) {
                    let _ = self.apply(Command::Heartbeat(s));
                }
            }
            Op::Acquire {
                session,
                resources,
                shared,
                timeout,
                ttl,
                priority,
                preempt,
                break_stale,
            } => {
                let Some(s) = pick(&self.sessions, session) else {
                    return;
                };
                let names: Vec<String> = resources
                    .iter()
                    .map(|&i| RESOURCES[i].to_string())
                    .collect();
                let wait = self.next_wait;
                self.next_wait += 1;
                let req = AcquireRequest {
                    mode: if shared {
                        Mode::Shared
                    } else {
                        Mode::Exclusive
                    },
                    timeout: timeout.map(|t| Duration::from_secs(t.into())),
                    ttl: ttl.map(|t| Duration::from_secs(t.into())),
                    priority,
                    preempt,
                    break_stale,
                    ..AcquireRequest::new(wait, s, names.clone())
                };
                if let Ok(Reply::Queued { .. }) = self.apply(Command::Acquire(req)) {
                    self.waits.push((wait, names));
                }
            }
            Op::Cancel(i) => {
                if let Some((wait, resources)) =
                    self.waits.get(i % self.waits.len().max(1)).cloned()
                {
                    let _ = self.apply(Command::Cancel {
                        wait,
                        resources: resources.into(),
                    });
                }
            }
            Op::Release(i) => {
                if let Some(g) = self.grants.get(i % self.grants.len().max(1)).cloned() {
                    let r = self.apply(Command::Release {
                        resource: g.resource.as_ref().into(),
                        token: g.token,
                    });
                    let after = g.cell.get();
                    match r {
                        Ok(_) => assert_eq!(after, LeaseState::Released),
                        Err(_) => assert_ne!(after, LeaseState::Held, "a held lease's token works"),
                    }
                }
            }
            Op::Renew { grant, ttl } => {
                if let Some(g) = self.grants.get(grant % self.grants.len().max(1)).cloned() {
                    let ttl = ttl.map(|t| Duration::from_secs(t.into()));
                    let r = self.apply(Command::Renew {
                        resource: g.resource.to_string(),
                        token: g.token,
                        ttl,
                    });
                    assert_eq!(
                        r.is_ok(),
                        g.cell.get() == LeaseState::Held,
                        "renew works exactly on held leases"
                    );
                }
            }
            Op::ForceRelease(i) => {
                let _ = self.apply(Command::ForceRelease {
                    resource: RESOURCES[i].into(),
                    reason: None,
                });
            }
            Op::Advance(s) => {
                self.now += Duration::from_millis(u64::from(s) * 700);
                let _ = self.apply(Command::Tick);
            }
        }
    }

    fn assert_no_token(&self, text: &str) {
        for t in &self.tokens {
            assert!(!text.contains(t.as_str()), "token leaked: {text}");
        }
    }

    fn check(&mut self) {
        let st = &self.st;
        for rec in st.resources.values() {
            let name = &rec.name;
            if rec.idle() {
                let oldest = st.global.iter().next().map_or(u64::MAX, |e| e.seq);
                let newest = rec.history.newest().map(|e| e.seq);
                assert!(
                    newest >= Some(oldest),
                    "idle resource {name} kept without history"
                );
            }
            if rec.holders.iter().any(|h| h.mode == Mode::Exclusive) {
                assert_eq!(rec.holders.len(), 1, "conflicting holders on {name}");
            }
            let mut fences: Vec<u64> = rec.holders.iter().map(|h| h.fence).collect();
            fences.dedup();
            assert_eq!(fences.len(), rec.holders.len());
            for h in &rec.holders {
                assert_eq!(h.cell().get(), LeaseState::Held);
                let s = st
                    .sessions
                    .get(&h.session)
                    .expect("a holder's session is open");
                assert!(s.leases.contains(name));
            }
            for (key, id) in rec.queue.iter() {
                let w = &st.waits[id];
                assert_eq!(*key, w.key(), "queue key is (priority, arrival)");
                assert!(w.resources.iter().any(|r| r == name));
            }
        }
        for (id, w) in &st.waits {
            for r in &w.resources {
                assert_eq!(st.resources.get(r).unwrap().queue.get(&w.key()), Some(id));
            }
            assert!(st.sessions[&w.session].waits.contains(id));
            assert!(!st.can_grant(w), "wait {id} could be granted but waits");
        }
        for (id, s) in &st.sessions {
            for r in &s.leases {
                assert!(st
                    .resources
                    .get(r)
                    .unwrap()
                    .holders
                    .iter()
                    .any(|h| h.session == *id));
            }
        }
        for g in &self.grants {
            let current = st
                .resources
                .get(&g.resource)
                .is_some_and(|r| r.holders.iter().any(|h| h.fence == g.fence));
            assert_eq!(
                current,
                g.cell.get() == LeaseState::Held,
                "cell of fence {} is exact",
                g.fence
            );
        }
        let limit = st.cfg.history_limit;
        assert!(st.global.iter().count() <= st.cfg.global_history);
        assert!(st
            .resources
            .values()
            .map(|r| &r.history)
            .chain(st.sessions.values().map(|s| &s.history))
            .chain(st.ended_history.values())
            .all(|r| r.iter().count() <= limit
                && r.iter().zip(r.iter().skip(1)).all(|(a, b)| a.seq < b.seq)));
        assert!(st
            .global
            .iter()
            .zip(st.global.iter().skip(1))
            .all(|(a, b)| a.seq < b.seq));
        let Reply::Locks(locks) = self.apply(Command::Locks).unwrap() else {
            panic!()
        };
        let Reply::Sessions(sessions) = self.apply(Command::Sessions).unwrap() else {
            panic!()
        };
        let Reply::History(history) = self
            .apply(Command::History {
                resource: None,
                session: None,
                limit: None,
            })
            .unwrap()
        else {
            panic!()
        };
        let text = format!(
            "{}{}{}",
            serde_json::to_string(&locks).unwrap(),
            serde_json::to_string(&sessions).unwrap(),
            serde_json::to_string(&history).unwrap()
        );
        self.assert_no_token(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(
        ops in proptest::collection::vec(op(), 1..300),
        history_limit in prop_oneof![Just(0), Just(5)],
    ) {
        let cfg = Config { history_limit, global_history: 40, ..Config::default() };
        let mut m = Model {
            st: State::new(cfg, 0.0),
            now: Duration::ZERO,
            sessions: Vec::new(),
            waits: Vec::new(),
            grants: Vec::new(),
            tokens: Vec::new(),
            last_fence: 0,
            next_wait: 1,
        };
        for op in ops {
            m.step(op);
            m.check();
        }
    }
}
