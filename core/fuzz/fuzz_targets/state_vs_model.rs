//! Decodes arbitrary bytes into an engine configuration and a run of commands, drives
//! `interlock::State` and the reference model side by side, and fails on the first
//! difference: the check of `tests/replay.rs` ("differential"), with libFuzzer choosing
//! the runs, and whether the harness ticks at every deadline or lets them pile up.

#![no_main]

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use interlock::{Config, OnExpire};
use libfuzzer_sys::fuzz_target;

// The model module also serves `tests/replay.rs`, which uses a little more of it.
#[allow(dead_code)]
#[path = "../../tests/model/mod.rs"]
mod model;

use model::{Acquire, Harness, Op};

/// Long enough to reach deep states, short enough to keep executions fast.
const MAX_STEPS: usize = 400;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((cfg, tick)) = setup(&mut u) else {
        return;
    };
    let mut h = Harness::new(cfg, [7; 32], tick);
    for _ in 0..MAX_STEPS {
        // Past the end of the input, `Unstructured` gives zeros: stop there instead.
        if u.is_empty() {
            break;
        }
        let Ok((advance, op)) = step(&mut u) else {
            break;
        };
        if let Err(e) = h.step(advance, &op) {
            panic!("{e}");
        }
    }
});

fn setup(u: &mut Unstructured) -> Result<(Config, bool)> {
    let secs = |s| Some(Duration::from_secs(s));
    let cfg = Config {
        lock_ttl: *u.choose(&[None, None, secs(3)])?,
        session_ttl: *u.choose(&[None, None, secs(5)])?,
        history_limit: *u.choose(&[0, 3, 100])?,
        global_history: *u.choose(&[12, 10_000])?,
        on_session_expire: *u.choose(&[OnExpire::Release, OnExpire::Keep])?,
        ..Config::default()
    };
    Ok((cfg, u.arbitrary()?))
}

/// Milliseconds, often round, so that deadlines fall at the same instant.
fn ms(u: &mut Unstructured) -> Result<u16> {
    match u.int_in_range(0..=5u8)? {
        0 => Ok(500),
        1 => Ok(1000),
        2 => Ok(2000),
        3 => Ok(5000),
        _ => u.int_in_range(1..=10_000),
    }
}

fn opt_ms(u: &mut Unstructured, none: u8, zero: u8) -> Result<Option<u16>> {
    let roll = u.int_in_range(0..=99u8)?;
    Ok(match roll {
        r if r < none => None,
        r if r < none + zero => Some(0),
        _ => Some(ms(u)?),
    })
}

/// An index as `model::Op` reads it: mostly live things, sometimes any, rarely unknown.
fn pick(u: &mut Unstructured) -> Result<u8> {
    match u.int_in_range(0..=44u8)? {
        0..40 => u.int_in_range(0..=7),
        40..44 => u.int_in_range(128..=249),
        _ => Ok(255),
    }
}

fn resource(u: &mut Unstructured) -> Result<u8> {
    match u.ratio(1, 50)? {
        true => Ok(4),
        false => u.int_in_range(0..=3),
    }
}

fn step(u: &mut Unstructured) -> Result<(Duration, Op)> {
    let advance = match u.int_in_range(0..=21u8)? {
        0..12 => 0,
        12..15 => 250,
        15..18 => 500,
        18..20 => 1000,
        20 => 3000,
        _ => u.int_in_range(1..=10_000)?,
    };
    Ok((Duration::from_millis(advance), op(u)?))
}

/// One operation, about as often as the proptest strategy of `tests/replay.rs` makes it.
fn op(u: &mut Unstructured) -> Result<Op> {
    Ok(match u.int_in_range(0..=155u8)? {
        0..8 => Op::Open {
            ttl: opt_ms(u, 48, 2)?,
            keep: u.arbitrary()?,
            metadata: u.int_in_range(0..=2)?,
            bad_name: u.ratio(1, 50)?,
        },
        8..12 => Op::Close(pick(u)?),
        12..24 => Op::Heartbeat(pick(u)?),
        24..26 => Op::Resume {
            session: pick(u)?,
            right_secret: u.ratio(4, 5)?,
        },
        26..28 => Op::Session(pick(u)?),
        28..88 => acquire(u)?,
        88..96 => Op::Cancel(pick(u)?),
        96..100 => Op::Position(pick(u)?),
        100..122 => Op::Release {
            lease: pick(u)?,
            other_resource: u.ratio(1, 10)?,
        },
        122..130 => Op::Renew {
            lease: pick(u)?,
            ttl: opt_ms(u, 40, 3)?,
        },
        130..134 => Op::ForceRelease {
            resource: resource(u)?,
            reason: u.int_in_range(0..=3)?,
        },
        134..136 => Op::Status(resource(u)?),
        136..138 => Op::Locks,
        138..140 => Op::Sessions,
        140..142 => Op::Check {
            resource: resource(u)?,
            session: pick(u)?,
            control: u.arbitrary()?,
        },
        142..144 => Op::CheckFence {
            resource: resource(u)?,
            back: u.int_in_range(0..=3)?,
        },
        144..148 => Op::History {
            resource: if u.arbitrary()? {
                Some(resource(u)?)
            } else {
                None
            },
            session: if u.arbitrary()? { Some(pick(u)?) } else { None },
            limit: if u.arbitrary()? {
                Some(u.int_in_range(0..=5)?)
            } else {
                None
            },
        },
        148..150 => Op::Replay {
            back: u.int_in_range(0..=29)?,
        },
        150..155 => Op::Tick,
        _ => match u.ratio(1, 4)? {
            true => Op::CloseEngine,
            false => Op::Tick,
        },
    })
}

fn acquire(u: &mut Unstructured) -> Result<Op> {
    let resources = match u.int_in_range(0..=99u8)? {
        0 => vec![],
        1 => vec![1, 1],
        2 => vec![0, 4],
        _ => {
            // One to three distinct resources, in any order.
            let mut all = vec![0u8, 1, 2, 3];
            let n = u.int_in_range(1..=3)?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let i = u.choose_index(all.len())?;
                out.push(all.remove(i));
            }
            out
        }
    };
    Ok(Op::Acquire(Acquire {
        session: pick(u)?,
        resources,
        shared: u.arbitrary()?,
        timeout: opt_ms(u, 42, 16)?,
        ttl: opt_ms(u, 65, 1)?,
        priority: *u.choose(&[0, 1, 2, 100, 100, 255])?,
        preempt: u.ratio(1, 5)?,
        break_stale: u.ratio(1, 5)?,
        reason: *u.choose(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3])?,
    }))
}
