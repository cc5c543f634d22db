//! How every row is timed: the median of ~2 ms batches (as `bench/python/bench.py`), the
//! process's CPU time beside it, percentiles of single samples.

use std::time::{Duration, Instant};

/// One timed block: the median time of an operation, and the CPU time this process spent
/// per operation over the whole block (all its threads: the remote link's too).
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub median_ns: f64,
    pub cpu_ns: f64,
}

/// This process's CPU time so far, all threads.
pub fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Times `op` for about `secs`: batches are doubled until one takes 2 ms (so that the
/// clock's cost vanishes), then repeated; the median per operation over the batches.
pub fn median_block(secs: f64, mut op: impl FnMut()) -> Block {
    let mut batch: u32 = 1;
    loop {
        let t = Instant::now();
        (0..batch).for_each(|_| op());
        if t.elapsed() > Duration::from_millis(2) || batch >= 1 << 16 {
            break;
        }
        batch *= 2;
    }
    let mut samples = Vec::new();
    let (cpu0, mut ops) = (cpu_time(), 0u64);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end || samples.len() < 5 {
        let t = Instant::now();
        (0..batch).for_each(|_| op());
        samples.push(t.elapsed().as_nanos() as f64 / f64::from(batch));
        ops += u64::from(batch);
    }
    Block {
        median_ns: median(&mut samples),
        cpu_ns: (cpu_time() - cpu0).as_nanos() as f64 / ops as f64,
    }
}

pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The `q`-quantile (0..1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

pub fn us(ns: f64) -> String {
    format!("{:.1} µs", ns / 1000.0)
}
