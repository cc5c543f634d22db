//! `interlock-bench`: the Rust rows of the server benchmarks (`bench/remote.sh` runs
//! them against real `interlock serve` and `redis-server` processes on loopback and
//! prints the tables of bench/RESULTS.md).

mod floor;
mod pair;
mod scale;
mod throughput;
mod timing;
mod ws;

use clap::{Parser, Subcommand};

use throughput::{Peer, Target};

#[derive(Parser)]
#[command(about = "Load generator of interlock's server benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The other process of the floor: echoes one TCP connection (prints its port).
    Echo,
    /// One remote pair through the client library, beside the TCP floor.
    Pair {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds each row is timed, each round.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Adds a row whose link spins this long for a reply before it parks.
        #[arg(long)]
        spin_us: Option<u64>,
    },
    /// Grants per second from concurrent sessions: interlock, then redis (if given).
    Throughput {
        #[arg(long)]
        url: String,
        #[arg(long)]
        redis_port: Option<u16>,
        /// Session counts, each its own table rows (`1,8,64`).
        #[arg(long, value_delimiter = ',', default_value = "64")]
        sessions: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Many sessions heartbeating; another client's pairs; the server's memory.
    Scale {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// The server process, for its resident memory.
        #[arg(long)]
        server_pid: u32,
    },
}

fn main() -> ws::Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match Cli::parse().cmd {
        Cmd::Echo => floor::serve_echo()?,
        Cmd::Pair {
            url,
            rounds,
            secs,
            spin_us,
        } => pair::run(&url, rounds, secs, spin_us)?,
        Cmd::Throughput {
            url,
            redis_port,
            sessions,
            rounds,
            secs,
        } => {
            let mut peers = vec![Peer::Interlock];
            if redis_port.is_some() {
                peers.extend([Peer::Redis, Peer::RedisPipelined]);
            }
            let target = Target { url, redis_port };
            runtime()?.block_on(throughput::rounds(&target, &peers, &sessions, rounds, secs))?
        }
        Cmd::Scale {
            url,
            sessions,
            secs,
            server_pid,
        } => runtime()?.block_on(scale::run(&url, sessions, secs, server_pid))?,
    }
    Ok(())
}
