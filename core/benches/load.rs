//! The engine under load: pipelined throughput, hand-off latency, a crowd of shared
//! waiters granted at once, a million held leases, and mass expiry beside an unrelated
//! worker. Prints one table.
//!
//! `cargo bench -p interlock --bench load` runs the full sizes; without `--bench`
//! (as under `cargo test --benches`) it runs a tiny smoke configuration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use interlock::{AcquireOptions, Config, Handle, Mode, SessionSpec};

struct Sizes {
    pipelined_tasks: usize,
    pipelined_pairs: usize,
    handoffs: usize,
    shared_waiters: usize,
    sessions: usize,
    leases_per_session: usize,
    expiring: usize,
}

const FULL: Sizes = Sizes {
    pipelined_tasks: 256,
    pipelined_pairs: 2_000_000,
    handoffs: 20_000,
    shared_waiters: 10_000,
    sessions: 10_000,
    leases_per_session: 100,
    expiring: 100_000,
};

const SMOKE: Sizes = Sizes {
    pipelined_tasks: 4,
    pipelined_pairs: 200,
    handoffs: 20,
    shared_waiters: 20,
    sessions: 10,
    leases_per_session: 10,
    expiring: 100,
};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1]
    )
}

/// Resident memory of this process, from /proc.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn engine(cfg: Config) -> Handle {
    Handle::new(cfg).expect("engine")
}

/// Many async callers, each keeping one acquire or release in flight, events and
/// history on (the default configuration).
fn pipelined(n: &Sizes) {
    let eng = engine(Config::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let per_task = n.pipelined_pairs / n.pipelined_tasks;
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..n.pipelined_tasks)
            .map(|i| {
                let eng = eng.clone();
                tokio::spawn(async move {
                    let s = eng.open_session(SessionSpec::named(format!("t{i}")))?;
                    let name = format!("res-{i}");
                    let opts = AcquireOptions::default();
                    for _ in 0..per_task {
                        s.acquire_async(&name, &opts).await?.release_async().await?;
                    }
                    Ok::<_, interlock::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("pairs");
        }
    });
    let pairs = per_task * n.pipelined_tasks;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "pipelined: {pairs} pairs from {} async tasks in {secs:.2} s = {:.0} pairs/s",
        n.pipelined_tasks,
        pairs as f64 / secs
    );
    eng.close();
}

/// A holder releases; a waiter on another thread wakes with its grant. Neither side
/// busy-waits on the other (that would take the core the woken thread needs).
fn handoff(n: &Sizes) {
    let eng = engine(Config::default());
    let barrier = Arc::new(Barrier::new(2));
    let (released_tx, released) = std::sync::mpsc::channel::<Instant>();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let rounds = n.handoffs;
    let waiter = {
        let (eng, barrier) = (eng.clone(), barrier.clone());
        std::thread::spawn(move || {
            let s = eng
                .open_session(SessionSpec::named("waiter"))
                .expect("session");
            let mut lat = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                barrier.wait();
                let lease = s
                    .acquire("ps", &AcquireOptions::default())
                    .expect("acquire");
                let woke = Instant::now();
                lat.push(woke - released.recv().expect("release time"));
                lease.release().expect("release");
                done_tx.send(()).expect("done");
            }
            lat
        })
    };
    let s = eng
        .open_session(SessionSpec::named("holder"))
        .expect("session");
    for _ in 0..rounds {
        let lease = s
            .acquire("ps", &AcquireOptions::default())
            .expect("acquire");
        barrier.wait();
        while eng.status("ps").expect("status").waiters.is_empty() {
            std::thread::sleep(Duration::from_micros(20));
        }
        let t0 = Instant::now();
        lease.release().expect("release");
        released_tx.send(t0).expect("send");
        done.recv().expect("waiter done");
    }
    let lat = waiter.join().expect("waiter");
    println!(
        "hand-off: release -> waiter holds, {} times: {}",
        n.handoffs,
        summary(lat)
    );
    eng.close();
}

/// One exclusive holder; ten thousand sessions queue a shared request each behind it. Its
/// release grants them all at once: the time from the release until every waiter holds
/// its lease.
fn shared_waiters(n: &Sizes) {
    let eng = engine(Config::default());
    let holder = eng
        .open_session(SessionSpec::named("holder"))
        .expect("session");
    let held = holder
        .acquire("crowd", &AcquireOptions::default())
        .expect("acquire");
    let shared = AcquireOptions {
        mode: Mode::Shared,
        ..Default::default()
    };
    let queued = Instant::now();
    let tickets: Vec<_> = (0..n.shared_waiters)
        .map(|i| {
            let s = eng
                .open_session(SessionSpec::named(format!("observer-{i}")))
                .expect("session");
            // `enqueue` returns once the request waits in the queue.
            s.enqueue(&["crowd"], &shared).expect("enqueue")
        })
        .collect();
    let queueing = queued.elapsed();
    assert_eq!(
        tickets.last().map(|t| t.position().expect("position")),
        Some(Some(n.shared_waiters as u64)),
        "every waiter queued behind the holder"
    );
    let t0 = Instant::now();
    held.release().expect("release");
    let leases: Vec<_> = tickets
        .iter()
        .map(|t| t.wait(None).expect("granted"))
        .collect();
    let all_granted = t0.elapsed();
    assert_eq!(leases.len(), n.shared_waiters);
    let status = eng.status("crowd").expect("status");
    assert_eq!(
        status.holders.len(),
        n.shared_waiters,
        "all hold it at once"
    );
    println!(
        "shared waiters: {} queued in {:.2} s; the holder's release -> all {} hold it: {:.2?} ({:.0} grants/s)",
        n.shared_waiters,
        queueing.as_secs_f64(),
        n.shared_waiters,
        all_granted,
        n.shared_waiters as f64 / all_granted.as_secs_f64()
    );
    eng.close();
}

/// A million leases held by ten thousand sessions.
fn scale(n: &Sizes) {
    let before = rss_bytes();
    let eng = engine(Config::default());
    let total = n.sessions * n.leases_per_session;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let start = Instant::now();
    // The client drops each `Lease` object as it comes (the lease stays held), so the
    // memory measured is the engine's.
    rt.block_on(async {
        let tasks: Vec<_> = (0..n.sessions)
            .map(|i| {
                let eng = eng.clone();
                let per = n.leases_per_session;
                tokio::spawn(async move {
                    let s = eng.open_session(SessionSpec::named(format!("client-{i}")))?;
                    for j in 0..per {
                        s.acquire_async(&format!("dev-{i}-{j}"), &AcquireOptions::default())
                            .await?;
                    }
                    Ok::<_, interlock::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("grants");
        }
    });
    let granted = start.elapsed();
    let after = rss_bytes();
    println!(
        "scale: {total} leases by {} sessions granted in {:.2} s ({:.0}/s); engine resident memory {:.0} bytes per lease, sessions included",
        n.sessions,
        granted.as_secs_f64(),
        total as f64 / granted.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / total as f64
    );
    let probe = eng
        .open_session(SessionSpec::named("probe"))
        .expect("session");
    let samples = 1000.min(total);
    let status: Vec<Duration> = (0..samples)
        .map(|k| {
            let name = format!("dev-{}-{}", k % n.sessions, k % n.leases_per_session);
            let t = Instant::now();
            eng.status(&name).expect("status");
            t.elapsed()
        })
        .collect();
    println!("scale: status while {total} are held: {}", summary(status));
    let pairs: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            probe
                .acquire("free-one", &AcquireOptions::default())
                .and_then(|l| l.release())
                .expect("pair");
            t.elapsed()
        })
        .collect();
    println!(
        "scale: acquire+release while {total} are held: {}",
        summary(pairs)
    );
    eng.close();
}

/// Many leases expire at one moment while another thread keeps working.
fn mass_expiry(n: &Sizes) {
    let eng = engine(Config::default());
    let s = eng
        .open_session(SessionSpec::named("batch"))
        .expect("session");
    let ttl = Duration::from_millis(500);
    let opts = AcquireOptions {
        ttl: Some(ttl),
        mode: Mode::Shared,
        ..Default::default()
    };
    let names: Vec<String> = (0..n.expiring).map(|i| format!("slot-{i}")).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let started = Instant::now();
    rt.block_on(async {
        let futs: Vec<_> = names.iter().map(|r| s.acquire_async(r, &opts)).collect();
        for f in futs {
            f.await.expect("acquire");
        }
    });
    let grant_time = started.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (eng, stop) = (eng.clone(), stop.clone());
        std::thread::spawn(move || {
            let w = eng
                .open_session(SessionSpec::named("worker"))
                .expect("session");
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                w.acquire("unrelated", &AcquireOptions::default())
                    .and_then(|l| l.release())
                    .expect("pair");
                lat.push(t.elapsed());
            }
            lat
        })
    };
    let deadline = started + ttl + Duration::from_millis(300);
    while Instant::now() < deadline || eng.locks().expect("locks").len() > 1 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let lat = worker.join().expect("worker");
    println!(
        "mass expiry: {} leases (granted in {:.2} s) expired together; unrelated worker, {} pairs: {}",
        n.expiring,
        grant_time.as_secs_f64(),
        lat.len(),
        summary(lat)
    );
    eng.close();
}

type Section = (&'static str, fn(&Sizes));

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let n = if full { &FULL } else { &SMOKE };
    // Names given on the command line pick sections (`cargo bench --bench load -- scale`).
    let picked: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    println!(
        "interlock load bench ({})",
        if full { "full" } else { "smoke" }
    );
    let sections: [Section; 5] = [
        ("pipelined", pipelined),
        ("handoff", handoff),
        ("shared", shared_waiters),
        ("expiry", mass_expiry),
        ("scale", scale),
    ];
    for (name, run) in sections {
        if picked.is_empty() || picked.contains(&name) {
            run(n);
        }
    }
}
