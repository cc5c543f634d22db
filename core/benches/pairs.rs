//! One uncontended acquire + release pair, blocking and async, beside reference rows
//! measured in the same run: a bare actor round trip and a `std::sync::Mutex` pair.
//!
//! `cargo bench -p interlock --bench pairs`; under `cargo test --benches` each runs once.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

use interlock::{
    AcquireOptions, AcquireRequest, Command, Config, Handle, Reply, SessionSpec, State,
};

fn pairs(c: &mut Criterion) {
    let eng = Handle::new(Config::default()).expect("engine");
    let s = eng
        .open_session(SessionSpec::named("bench"))
        .expect("session");
    let opts = AcquireOptions::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("uncontended_pair");
    g.bench_function("interlock_blocking", |b| {
        b.iter(|| {
            s.acquire("reactor-1", &opts)
                .and_then(|l| l.release())
                .expect("pair")
        })
    });
    g.bench_function("interlock_async", |b| {
        b.iter(|| {
            rt.block_on(async {
                let l = s.acquire_async("reactor-1", &opts).await?;
                l.release_async().await
            })
            .expect("pair")
        })
    });
    g.bench_function("reference_actor_round_trip", |b| {
        b.iter(|| {
            eng.check_fence(black_box("reactor-1"), 1)
                .expect("round trip")
        })
    });
    g.bench_function("state_apply_pair", |b| {
        let mut st = State::new(Config::default(), 0.0, [7; 32]);
        let Ok(Reply::Opened { session, .. }) = st
            .apply(
                Duration::ZERO,
                Command::OpenSession(SessionSpec::named("s")),
            )
            .0
        else {
            panic!("session")
        };
        let resources: Arc<[String]> = Arc::from(["reactor-1".to_string()]);
        b.iter(|| {
            let req = AcquireRequest {
                session: session.id,
                resources: resources.clone(),
                options: AcquireOptions::default(),
            };
            let Ok(Reply::Granted(g)) = st.apply(Duration::ZERO, Command::Acquire(req)).0 else {
                panic!("grant")
            };
            let release = Command::Release {
                resource: g[0].resource.clone(),
                token: g[0].token,
            };
            st.apply(Duration::ZERO, release).0.expect("release")
        })
    });
    let m = std::sync::Mutex::new(0u64);
    g.bench_function("reference_std_mutex", |b| {
        b.iter(|| *m.lock().expect("mutex") += 1)
    });
    g.finish();
    eng.close();
}

criterion_group!(benches, pairs);
criterion_main!(benches);
