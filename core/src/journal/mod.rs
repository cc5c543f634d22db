//! Durability: a journal under the actor. After each batch of commands the actor writes
//! what they changed (sessions, leases, the counters, the new events) in one transaction,
//! and only then answers them (group commit): an answer a caller saw survives a crash of
//! the process or the machine. On start the engine restores what its journal kept.
//!
//! The journal sits behind [`Journal`], so that a store on a replicated engine (etcd,
//! see `docs/high-availability.md`) can take SQLite's place.

#[cfg(feature = "journal")]
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::event::Event;
use crate::state::{Change, Config, Snapshot, State};

#[cfg(feature = "journal")]
pub use sqlite::SqliteJournal;

/// Where an engine keeps its journal, and for how long it keeps its history.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The SQLite file (made if missing; its directory must be writable).
    pub path: PathBuf,
    /// History rows kept; older ones are deleted. `None`: no limit by count.
    pub keep_rows: Option<u64>,
    /// History kept for this long. `None`: no limit by age.
    pub keep_for: Option<Duration>,
    /// After a restart, every session has at least this long (and at least its TTL) to
    /// heartbeat or resume before its own expiry rule applies.
    pub grace: Duration,
}

impl JournalConfig {
    /// A journal at `path` with the defaults: the newest million history rows, a grace
    /// of 15 s.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        JournalConfig {
            path: path.into(),
            keep_rows: Some(1_000_000),
            keep_for: None,
            grace: Duration::from_secs(15),
        }
    }
}

/// What an engine starts with: its state, the clock it counts time on, its journal, and
/// the id of its history.
pub(crate) struct Start {
    pub(crate) state: State,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) journal: Option<Box<dyn Journal>>,
    pub(crate) engine_id: u64,
}

/// A new engine's id: 53 random bits, a JSON number that every client reads exactly.
pub(crate) fn new_engine_id() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| crate::Error::Internal(format!("no randomness for an engine id: {e}")))?;
    Ok(u64::from_le_bytes(bytes) >> 11)
}

/// The state an engine starts with, the clock it counts time on, and its journal: with
/// `config.journal`, the state the journal kept (on a clock that reaches back to its
/// oldest time), restored now.
pub(crate) fn open(config: Config, clock: Arc<dyn Clock>, seed: [u8; 32]) -> Result<Start> {
    let Some(jc) = config.journal.clone() else {
        let state = State::new(config, clock.unix_base(), seed);
        return Ok(Start {
            state,
            clock,
            journal: None,
            engine_id: new_engine_id()?,
        });
    };
    #[cfg(feature = "journal")]
    {
        let mut journal = SqliteJournal::open(&jc)?;
        let snap = journal.load(config.global_history)?;
        // Times before this start are restored too: count from the oldest of them (never
        // one before 1970: interlock writes none).
        let earliest = snap.earliest().unwrap_or(f64::INFINITY);
        if earliest < 0.0 {
            return Err(crate::Error::InvalidArgument(format!(
                "journal {}: it holds a time before 1970 ({earliest}), which interlock does \
                 not write; nothing was changed",
                jc.path.display()
            )));
        }
        let back = (clock.unix_base() - earliest).max(0.0);
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::Since {
            inner: clock,
            back: Duration::from_secs_f64(back),
        });
        let state = State::restore(config, clock.unix_base(), seed, snap, clock.now(), jc.grace);
        Ok(Start {
            state,
            clock,
            engine_id: journal.engine_id(),
            journal: Some(Box::new(journal)),
        })
    }
    #[cfg(not(feature = "journal"))]
    {
        let _ = (seed, jc);
        Err(crate::Error::InvalidArgument(
            "this build of interlock has no journal (feature \"journal\")".into(),
        ))
    }
}

/// What one batch of commands changed.
#[derive(Debug)]
pub struct Batch<'a> {
    pub changes: &'a [Change],
    /// The events of the batch, in order.
    pub events: &'a [Arc<Event>],
    pub next_fence: u64,
    pub next_seq: u64,
}

/// A durable store of an engine's state. `load` comes first, then `append` for each
/// batch; an `append` that returns has made its batch durable.
pub trait Journal: Send {
    /// What the store holds (an empty snapshot for a new one), with at most
    /// `history` of the newest events.
    fn load(&mut self, history: usize) -> Result<Snapshot>;

    /// Writes one batch durably, all of it or nothing.
    fn append(&mut self, batch: &Batch<'_>) -> Result<()>;
    /// The id of the engine whose history the store keeps, made with the store: every
    /// engine restored from it counts seqs on from the last one, under this id.
    fn engine_id(&self) -> u64;
}
