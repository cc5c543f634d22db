//! The Rust remote pair: `Session::acquire` + `Lease::release` through the client
//! library (`Handle::connect`) to a server on loopback, beside the floor (a raw TCP
//! round trip to another process), rounds alternating so that both see the same VM.

use std::time::Duration;

use interlock::{AcquireOptions, ConnectOptions, Handle, SessionSpec};

use crate::floor::Echo;
use crate::timing::{median, median_block, us, Block};
use crate::ws::Result;

pub fn run(url: &str, rounds: usize, secs: f64, spin_us: Option<u64>) -> Result<()> {
    let mut echo = Echo::start()?;
    let connect = |spin: Duration| -> Result<_> {
        let handle = Handle::connect(
            url,
            ConnectOptions {
                spin,
                ..ConnectOptions::default()
            },
        )?;
        let session = handle.open_session(SessionSpec::named(format!("pair-spin-{spin:?}")))?;
        Ok((handle, session))
    };
    let mut remotes = vec![(Duration::ZERO, connect(Duration::ZERO)?)];
    if let Some(spin) = spin_us {
        let spin = Duration::from_micros(spin);
        remotes.push((spin, connect(spin)?));
    }
    let opts = AcquireOptions::default();
    let mut names = vec!["TCP round trip between two processes (floor)".to_string()];
    let mut blocks: Vec<Vec<Block>> = vec![Vec::new(); remotes.len() + 1];
    for (spin, _) in &remotes {
        names.push(match spin.is_zero() {
            true => "remote pair (Handle::connect), parks at once".into(),
            false => format!("remote pair, spins {spin:?} before parking"),
        });
    }
    for _ in 0..rounds {
        blocks[0].push(median_block(secs, || echo.round_trip()));
        for (i, (_, (_, session))) in remotes.iter().enumerate() {
            let resource = format!("pair-{i}");
            blocks[i + 1].push(median_block(secs, || {
                let lease = session.acquire(&resource, &opts).expect("acquire");
                lease.release().expect("release");
            }));
        }
    }
    let floor = median(&mut blocks[0].iter().map(|b| b.median_ns).collect::<Vec<_>>());
    println!("| row | median, each round | median | ÷ floor | this process's CPU per op |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (name, row) in names.iter().zip(&blocks) {
        let mut ns: Vec<f64> = row.iter().map(|b| b.median_ns).collect();
        let each: Vec<String> = ns.iter().map(|&n| us(n)).collect();
        let mid = median(&mut ns);
        let cpu = median(&mut row.iter().map(|b| b.cpu_ns).collect::<Vec<_>>());
        println!(
            "| {name} | {} | {} | {:.2}× | {} |",
            each.join(", "),
            us(mid),
            mid / floor,
            us(cpu)
        );
    }
    for (handle, _) in remotes.into_iter().map(|(_, r)| r) {
        handle.close();
    }
    Ok(())
}
