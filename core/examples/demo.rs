//! A reactor controller, an optimizer, an observer and a maintenance task share one
//! engine from four threads; the event log prints as it happens.
//!
//! Run: `cargo run -p interlock --example demo`

use std::sync::Arc;
use std::thread::{sleep, spawn};
use std::time::{Duration, Instant};

use interlock::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn main() -> Result<()> {
    let eng = Handle::new(Config::default())?;
    let start = Instant::now();
    let _log = eng.subscribe_callback(None, None, move |e| {
        let who = e.session_name().unwrap_or("-");
        let what = e.resource.as_deref().unwrap_or("");
        let mut extra = String::new();
        if let Some(f) = e.fence() {
            extra += &format!(" fence={f}");
        }
        if let Some(p) = e.position() {
            extra += &format!(" position={p}");
        }
        if let Some(r) = e.reason() {
            extra += &format!(" reason={r}");
        }
        println!(
            "{:6.3}s  #{:<3} {:<16} {:<18} {what}{extra}",
            start.elapsed().as_secs_f64(),
            e.seq,
            e.kind.as_str(),
            who
        );
    })?;

    let controller = {
        let eng = eng.clone();
        spawn(move || -> Result<()> {
            let s = eng.open_session(SessionSpec::named("ReactorController"))?;
            let lease = s.acquire(
                "reactor-1",
                &AcquireOptions {
                    priority: 1,
                    reason: Some("heat-up".into()),
                    ..Default::default()
                },
            )?;
            sleep(ms(300));
            lease.release()?;
            s.close()?;
            Ok(())
        })
    };
    sleep(ms(50));

    let optimizer = {
        let eng = eng.clone();
        spawn(move || -> Result<()> {
            let s = eng.open_session(SessionSpec {
                metadata: serde_json::json!({"user": "ana", "app": "bayes-opt 2.1"}),
                ..SessionSpec::named("Optimizer")
            })?;
            let on_lost: LostCallback = Arc::new(|n: &LostNotice| {
                println!(
                    "        optimizer told: lease on {} lost ({})",
                    n.resource, n.reason
                )
            });
            let opts = AcquireOptions {
                priority: 3,
                on_lost: Some(on_lost),
                ..Default::default()
            };
            let lease = s.acquire("reactor-1", &opts)?;
            for step in 0.. {
                if !lease.is_valid() {
                    println!(
                        "        optimizer: step {step} stopped, the lock is gone ({:?})",
                        lease.lost_reason()
                    );
                    break;
                }
                sleep(ms(100));
            }
            match lease.release() {
                Err(Error::LockLost { reason, .. }) => {
                    println!("        optimizer: release says LockLost ({reason}); retrying later")
                }
                other => other?,
            }
            let lease = s.acquire("reactor-1", &opts)?;
            sleep(ms(100));
            lease.release()?;
            s.close()?;
            Ok(())
        })
    };

    let observer = {
        let eng = eng.clone();
        spawn(move || -> Result<()> {
            let s = eng.open_session(SessionSpec::named("Observer"))?;
            let view = s.acquire(
                "camera-1",
                &AcquireOptions {
                    mode: Mode::Shared,
                    ..Default::default()
                },
            )?;
            for _ in 0..4 {
                let st = eng.status("reactor-1")?;
                let who: Vec<&str> = st.holders.iter().map(|h| &*h.session_name).collect();
                println!(
                    "        observer: reactor-1 held by {who:?}, {} waiting (monitor mode)",
                    st.waiters.len()
                );
                sleep(ms(250));
            }
            view.release()?;
            s.close()?;
            Ok(())
        })
    };

    sleep(ms(600));
    let maintenance = {
        let eng = eng.clone();
        spawn(move || -> Result<()> {
            let s = eng.open_session(SessionSpec::named("Maintenance"))?;
            let opts = AcquireOptions {
                priority: 0,
                preempt: true,
                reason: Some("valve check".into()),
                ..Default::default()
            };
            let lease = s.acquire("reactor-1", &opts)?;
            sleep(ms(200));
            lease.release()?;
            s.close()?;
            Ok(())
        })
    };

    for t in [controller, optimizer, observer, maintenance] {
        t.join()
            .map_err(|_| Error::Internal("a demo thread panicked".into()))??;
    }
    sleep(ms(50));
    let history = eng.history(Some("reactor-1"), None, None)?;
    println!(
        "reactor-1 history: {} events, now locked: {}",
        history.len(),
        eng.status("reactor-1")?.locked
    );
    eng.close();
    Ok(())
}
