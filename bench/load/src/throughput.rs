//! Grants per second from N concurrent sessions, each on its own connection and its own
//! resource, one async process: interlock's server beside redis-server on the
//! equivalent lock (`SET key token NX PX` to take it, a compare-and-delete script to
//! give it back), rounds alternating between the two.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::timing::median;
use crate::ws::{Conn, Result};

/// Deletes the key only if it still holds our token: the release of the lock recipe in
/// redis's documentation, and of redis-py's `Lock`.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// The peers of one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Interlock,
    /// The release is awaited before the next acquire (redis-py `Lock`'s way).
    Redis,
    /// The release goes out in one pipeline with the next acquire: one round trip a
    /// pair, as interlock's posted release.
    RedisPipelined,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Interlock => "interlock",
            Peer::Redis => "redis",
            Peer::RedisPipelined => "redis, release pipelined",
        }
    }
}

pub struct Target {
    pub url: String,
    pub redis_port: Option<u16>,
}

/// Runs `sessions` workers of `peer` for `secs` after a warm-up; grants per second.
pub async fn run(target: &Target, peer: Peer, sessions: usize, secs: f64) -> Result<f64> {
    let grants = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(tokio::sync::Barrier::new(sessions + 1));
    let mut workers = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (grants, stop, ready) = (grants.clone(), stop.clone(), ready.clone());
        let (url, port) = (target.url.clone(), target.redis_port);
        workers.push(tokio::spawn(async move {
            let mut worker = Worker::open(&url, port, peer, format!("bench-{i}")).await?;
            ready.wait().await;
            while !stop.load(Ordering::Relaxed) {
                worker.pair().await?;
                grants.fetch_add(1, Ordering::Relaxed);
            }
            worker.finish().await
        }));
    }
    ready.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c0, t0) = (grants.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (c1, t1) = (grants.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await??;
    }
    Ok((c1 - c0) as f64 / (t1 - t0).as_secs_f64())
}

/// One session's connection, of either peer.
enum Worker {
    // Boxed: a WebSocket stream is 1.4 KB, a redis connection a tenth of that.
    Interlock(Box<Conn>, Arc<[String]>),
    Redis(RedisLock, bool),
}

impl Worker {
    async fn open(url: &str, redis_port: Option<u16>, peer: Peer, name: String) -> Result<Worker> {
        Ok(match peer {
            Peer::Interlock => {
                let conn = Conn::open(url, &name, Duration::from_secs(30)).await?;
                Worker::Interlock(Box::new(conn), Arc::from([name]))
            }
            Peer::Redis | Peer::RedisPipelined => {
                let port = redis_port.ok_or("no redis port given")?;
                Worker::Redis(
                    RedisLock::connect(port, name).await?,
                    peer == Peer::RedisPipelined,
                )
            }
        })
    }

    async fn pair(&mut self) -> Result<()> {
        match self {
            Worker::Interlock(conn, resource) => conn.pair(resource).await,
            Worker::Redis(lock, pipelined) => lock.pair(*pipelined).await,
        }
    }

    /// Gives back what the last pair may still hold (a release not sent yet).
    async fn finish(self) -> Result<()> {
        match self {
            Worker::Interlock(conn, _) => (*conn).close().await,
            Worker::Redis(mut lock, _) => lock.finish().await,
        }
    }
}

/// One redis connection taking and giving back its own key.
struct RedisLock {
    con: redis::aio::MultiplexedConnection,
    key: String,
    release_sha: String,
    tokens: u64,
    /// A token whose release is still to be sent (pipelined mode).
    held: Option<u64>,
}

impl RedisLock {
    async fn connect(port: u16, key: String) -> Result<RedisLock> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut con = client.get_multiplexed_async_connection().await?;
        // EVALSHA, as redis-py's registered scripts do: the script is not sent each time.
        let release_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(RELEASE)
            .query_async(&mut con)
            .await?;
        Ok(RedisLock {
            con,
            key,
            release_sha,
            tokens: 0,
            held: None,
        })
    }

    fn release(&self, token: u64) -> redis::Cmd {
        let mut give = redis::cmd("EVALSHA");
        give.arg(&self.release_sha).arg(1).arg(&self.key).arg(token);
        give
    }

    async fn finish(&mut self) -> Result<()> {
        if let Some(token) = self.held.take() {
            let _: i64 = self.release(token).query_async(&mut self.con).await?;
        }
        Ok(())
    }

    async fn pair(&mut self, pipelined: bool) -> Result<()> {
        self.tokens += 1;
        let token = self.tokens;
        let mut take = redis::cmd("SET");
        take.arg(&self.key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(30_000);
        if pipelined {
            // The previous pair's release, then this pair's acquire: one round trip.
            let mut pipe = redis::pipe();
            if let Some(prev) = self.held.replace(token) {
                pipe.add_command(self.release(prev)).ignore();
            }
            let (taken,): (Option<String>,) =
                pipe.add_command(take).query_async(&mut self.con).await?;
            taken.ok_or("redis: SET NX found the key taken")?;
        } else {
            let taken: Option<String> = take.query_async(&mut self.con).await?;
            taken.ok_or("redis: SET NX found the key taken")?;
            let released: i64 = self.release(token).query_async(&mut self.con).await?;
            if released != 1 {
                return Err("redis: the release found another token".into());
            }
        }
        Ok(())
    }
}

/// Alternates the peers, `rounds` times each, for each session count, and prints every
/// round's figure, the medians and the ratios against interlock.
pub async fn rounds(
    target: &Target,
    peers: &[Peer],
    sessions: &[usize],
    rounds: usize,
    secs: f64,
) -> Result<()> {
    println!("| sessions | peer | grants/s, each round | median | interlock ÷ peer |");
    println!("| ---: | --- | --- | ---: | ---: |");
    for &n in sessions {
        let mut got: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
        for _ in 0..rounds {
            for (i, &peer) in peers.iter().enumerate() {
                got[i].push(run(target, peer, n, secs).await?);
            }
        }
        let medians: Vec<f64> = got.iter_mut().map(|g| median(&mut g.clone())).collect();
        let ours = peers
            .iter()
            .position(|&p| p == Peer::Interlock)
            .map(|i| medians[i]);
        for (i, peer) in peers.iter().enumerate() {
            let each: Vec<String> = got[i].iter().map(|g| format!("{g:.0}")).collect();
            let ratio = ours.map_or("".into(), |o| format!("{:.2}×", o / medians[i]));
            println!(
                "| {n} | {} | {} | {:.0} | {ratio} |",
                peer.name(),
                each.join(", "),
                medians[i]
            );
        }
    }
    Ok(())
}
