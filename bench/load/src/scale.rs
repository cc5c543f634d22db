//! Scale: N sessions, each on its own connection, heartbeating every TTL/3 (as the
//! client library does), while another client (`Handle::connect`) times its pairs; the
//! server's resident memory from /proc.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::{AcquireOptions, ConnectOptions, Handle, SessionSpec};

use crate::timing::quantile;
use crate::ws::{Conn, Result};

const TTL: Duration = Duration::from_secs(15);
/// Connections opened at once: more would only overflow the server's accept backlog.
const OPENING: usize = 128;

/// A field of /proc/PID/status in MiB (`VmRSS`, `VmHWM`).
fn memory_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("a status line without a value")?
        .parse()?;
    Ok(kib / 1024.0)
}

pub async fn run(url: &str, sessions: usize, secs: f64, server_pid: u32) -> Result<()> {
    let idle_mib = memory_mib(server_pid, "VmRSS")?;
    let beats = Arc::new(AtomicU64::new(0));
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel::<Result<()>>();
    let t0 = Instant::now();
    let period = TTL / 3;
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (url, beats, opening, opened_tx) = (
            url.to_string(),
            beats.clone(),
            opening.clone(),
            opened_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await.expect("semaphore open");
            let conn = Conn::open(&url, &format!("idle-{i}"), TTL).await;
            drop(permit);
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => return opened_tx.send(Err(e)).expect("main waits"),
            };
            opened_tx.send(Ok(())).expect("main waits");
            // Spread the beats evenly over the period.
            let first = period.mul_f64(i as f64 / sessions as f64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
            loop {
                tick.tick().await;
                if let Err(e) = conn.heartbeat().await {
                    eprintln!("session {i}: heartbeat failed: {e}");
                    return;
                }
                beats.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    drop(opened_tx);
    for _ in 0..sessions {
        opened.recv().await.ok_or("an opening task vanished")??;
    }
    let open_time = t0.elapsed();
    let loaded_mib = memory_mib(server_pid, "VmRSS")?;

    let (url_probe, beats_probe) = (url.to_string(), beats.clone());
    let (lat, beat_rate) = tokio::task::spawn_blocking(move || -> Result<_> {
        let handle = Handle::connect(&url_probe, ConnectOptions::default())?;
        let session = handle.open_session(SessionSpec::named("probe"))?;
        let opts = AcquireOptions::default();
        let (b0, start) = (beats_probe.load(Ordering::Relaxed), Instant::now());
        let mut lat = Vec::new();
        while start.elapsed().as_secs_f64() < secs {
            let t = Instant::now();
            session.acquire("probe", &opts)?.release()?;
            lat.push(t.elapsed());
        }
        let rate =
            (beats_probe.load(Ordering::Relaxed) - b0) as f64 / start.elapsed().as_secs_f64();
        handle.close();
        Ok((lat, rate))
    })
    .await??;
    let mut lat = lat;
    lat.sort();
    let after_mib = memory_mib(server_pid, "VmRSS")?;
    let peak_mib = memory_mib(server_pid, "VmHWM")?;
    for t in &tasks {
        t.abort();
    }
    println!("| what | value |");
    println!("| --- | ---: |");
    println!("| sessions connected and heartbeating (every {period:?}) | {sessions} |");
    println!(
        "| time to connect them and open their sessions | {:.2} s |",
        open_time.as_secs_f64()
    );
    println!("| heartbeats acknowledged per second during the probe | {beat_rate:.0} |");
    println!("| server RSS: idle / all connected / after the probe / peak | {idle_mib:.1} / {loaded_mib:.1} / {after_mib:.1} / {peak_mib:.1} MiB |");
    println!(
        "| probe pairs ({} in {secs} s): p50 / p99 / max | {:.0} / {:.0} / {:.0} µs |",
        lat.len(),
        quantile(&lat, 0.5).as_secs_f64() * 1e6,
        quantile(&lat, 0.99).as_secs_f64() * 1e6,
        lat.last().ok_or("no probe pair")?.as_secs_f64() * 1e6
    );
    Ok(())
}
