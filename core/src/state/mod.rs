//! The pure lock state machine: every table, queue, session and counter of an engine,
//! changed only by [`State::apply`]. No I/O, no clock, no threads, nothing shared with
//! callers: time comes in as `now` (a monotonic duration since the engine's clock
//! started), and the ids and secrets it hands out come from its own seeded generator, so
//! that the same commands at the same times give the same replies and events.
//!
//! By concern: `records` (what is kept), `sessions`, `acquire` (the queue and granting),
//! `deadlock`, `leases` (release, renew, expiry, force release), `history` (the one event
//! path, history and replay), `deadlines`, `status` (listings).

mod acquire;
mod deadlines;
mod deadlock;
mod history;
mod journal;
mod leases;
mod records;
mod sessions;
mod status;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, LostReason, Result};
use crate::event::Event;
use crate::protocol::{Command, Grants, Reply, WaitId};
use crate::ring::Ring;
use crate::table::{HashMap, Recent, Table};
use crate::types::{validate_resource, OnExpire, Secret, SecretHash, SessionId, Token};

pub use journal::{Change, Snapshot};
#[cfg(feature = "journal")]
pub use journal::{LeaseRow, SessionRow};
use records::{Due, Ended, ResourceRec, SessionRec, Touch, WaitRec};

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// TTL of a lease whose acquire gives none.
    pub lock_ttl: Option<Duration>,
    /// TTL of a session that opens without one.
    pub session_ttl: Option<Duration>,
    /// Events kept per resource and per session.
    pub history_limit: usize,
    /// Events kept in the global ring (for `history` and `subscribe(since)`).
    pub global_history: usize,
    /// `on_expire` of a session that opens without one.
    pub on_session_expire: OnExpire,
    /// Events a subscriber may have unread before the oldest are dropped for a `lagged`
    /// marker.
    pub subscriber_buffer: usize,
    /// Where to keep a journal, if anywhere: then a restart loses no acknowledged lock.
    pub journal: Option<crate::journal::JournalConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lock_ttl: None,
            session_ttl: None,
            history_limit: 100,
            global_history: 10_000,
            on_session_expire: OnExpire::Release,
            subscriber_buffer: 1024,
            journal: None,
        }
    }
}

/// What a command caused besides its reply.
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<Arc<Event>>,
    /// Outcomes of earlier queued requests (granted, timed out, failed).
    pub completions: Vec<(WaitId, Result<Grants>)>,
}

/// The whole lock state of one engine.
#[derive(Debug)]
pub struct State {
    cfg: Config,
    unix_base: f64,
    /// Where session ids, secrets and tokens come from.
    rng: StdRng,
    sessions: HashMap<SessionId, SessionRec>,
    /// Ended sessions, so a late call can say `SessionExpired` rather than `NotFound`.
    ended: Recent<SessionId, Ended>,
    resources: Table<ResourceRec>,
    waits: HashMap<WaitId, WaitRec>,
    deadlines: BinaryHeap<Reverse<(Duration, Due)>>,
    deadlines_compacted: usize,
    next_fence: u64,
    next_seq: u64,
    next_wait: WaitId,
    next_arrival: u64,
    next_opened: u64,
    global: Ring,
    /// Why recent leases were lost, by their token's hash.
    lost: Recent<SecretHash, LostReason>,
    /// History of ended sessions, kept while the global ring has their events.
    ended_history: HashMap<SessionId, Ring>,
    /// Resources whose queue may have become grantable during this command.
    dirty: Vec<Arc<str>>,
    /// The records changed since a journal last took them (`None`: no journal).
    touches: Option<Vec<Touch>>,
}

impl State {
    /// A new state. `unix_base` is the unix time at which the monotonic clock read zero;
    /// `seed` seeds the generator of ids, secrets and tokens (give it fresh randomness,
    /// or a fixed value to replay a run).
    pub fn new(cfg: Config, unix_base: f64, seed: [u8; 32]) -> Self {
        let keep = cfg.global_history;
        State {
            cfg,
            unix_base,
            rng: StdRng::from_seed(seed),
            sessions: HashMap::default(),
            ended: Recent::new(keep),
            resources: Table::default(),
            waits: HashMap::default(),
            deadlines: BinaryHeap::new(),
            deadlines_compacted: 0,
            next_fence: 1,
            next_seq: 1,
            next_wait: 1,
            next_arrival: 0,
            next_opened: 0,
            global: Ring::default(),
            lost: Recent::new(keep),
            ended_history: HashMap::default(),
            dirty: Vec::new(),
            touches: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Applies one command at time `now`: first every deadline that is due, then the
    /// command, then every grant that the change made possible.
    pub fn apply(&mut self, now: Duration, cmd: Command) -> (Result<Reply>, Effects) {
        let mut fx = Effects::default();
        let reply = self.apply_into(now, cmd, &mut fx);
        (reply, fx)
    }

    /// [`State::apply`] that appends the effects to `fx`, so that a caller can reuse
    /// its buffers from one command to the next.
    pub fn apply_into(&mut self, now: Duration, cmd: Command, fx: &mut Effects) -> Result<Reply> {
        self.expire_due(now, fx);
        let reply = self.execute(now, cmd, fx);
        self.settle(now, fx);
        reply
    }

    fn execute(&mut self, now: Duration, cmd: Command, fx: &mut Effects) -> Result<Reply> {
        match cmd {
            Command::OpenSession(spec) => self.open_session(now, spec, fx),
            Command::Resume { session, secret } => self.resume(now, session, secret, fx),
            Command::Session { session } => match self.sessions.get(&session) {
                Some(s) => Ok(Reply::Session(self.session_info(session, s))),
                None => Err(self.missing_session(session)),
            },
            Command::CloseSession { session } => {
                self.close_session(now, session, fx).map(Reply::Count)
            }
            Command::Heartbeat { session } => self.touch(now, session, fx).map(|_| Reply::Unit),
            Command::Acquire(req) => self.acquire(now, req, fx),
            Command::Cancel { wait } => {
                self.cancel(now, wait, fx);
                Ok(Reply::Unit)
            }
            Command::Position { wait } => Ok(Reply::Position(self.position(wait))),
            Command::Release { resource, token } => {
                self.release(now, &resource, token, fx).map(|_| Reply::Unit)
            }
            Command::Renew {
                resource,
                token,
                ttl,
            } => self.renew(now, &resource, token, ttl, fx),
            Command::ForceRelease {
                resource,
                reason,
                fence,
            } => self
                .force_release(now, &resource, reason, fence, fx)
                .map(Reply::Count),
            Command::Status { resource } => {
                validate_resource(&resource)?;
                Ok(Reply::Status(self.status(now, &resource)))
            }
            Command::Locks => Ok(Reply::Locks(self.locks(now))),
            Command::Sessions => Ok(Reply::Sessions(self.session_list())),
            Command::Check {
                resource,
                session,
                action,
            } => {
                validate_resource(&resource)?;
                Ok(Reply::Bool(self.check(&resource, session, action)))
            }
            Command::CheckFence { resource, fence } => {
                validate_resource(&resource)?;
                Ok(Reply::Bool(self.check_fence(&resource, fence)))
            }
            Command::History {
                resource,
                session,
                limit,
            } => self.history(resource, session, limit).map(Reply::History),
            Command::Replay { since } => Ok(self.replay(since)),
            Command::Close => {
                self.close(fx);
                Ok(Reply::Unit)
            }
            Command::Tick => Ok(Reply::Unit),
        }
    }

    /// Fails every pending wait with `EngineClosed` and forgets every lease and queue.
    fn close(&mut self, fx: &mut Effects) {
        let mut waits: Vec<WaitId> = self.waits.drain().map(|(id, _)| id).collect();
        waits.sort_unstable();
        fx.completions
            .extend(waits.into_iter().map(|id| (id, Err(Error::EngineClosed))));
        for s in self.sessions.values_mut() {
            s.waits.clear();
            s.leases.clear();
        }
        for rec in self.resources.values_mut() {
            rec.queue.clear();
            rec.holders.clear();
        }
    }

    fn unix(&self, now: Duration) -> f64 {
        self.unix_base + now.as_secs_f64()
    }

    fn random_bytes(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b
    }

    fn fresh_token(&mut self) -> Token {
        Token::from_random(self.random_bytes())
    }

    fn fresh_secret(&mut self) -> Secret {
        Secret::from_random(self.random_bytes())
    }

    fn fresh_session_id(&mut self) -> SessionId {
        SessionId::from_random(self.random_bytes())
    }
}

impl State {
    /// A fingerprint of the whole state (every session, lease, queue, wait, deadline,
    /// counter and history ring, in a canonical order), for tests that replay a run and
    /// check that they end in the same place. Two states with the same digest answer
    /// every command alike.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        use std::fmt::Write;
        let mut out = String::new();
        let seqs = |ring: &Ring| ring.iter().map(|e| e.seq).collect::<Vec<_>>();
        let _ = write!(
            out,
            "fence {} seq {} wait {} arrival {} opened {} global {:?};",
            self.next_fence,
            self.next_seq,
            self.next_wait,
            self.next_arrival,
            self.next_opened,
            seqs(&self.global)
        );
        let mut sessions: Vec<_> = self.sessions.iter().collect();
        sessions.sort_by_key(|(id, _)| **id);
        for (id, s) in sessions {
            let mut leases: Vec<_> = s.leases.iter().collect();
            leases.sort();
            let mut waits: Vec<_> = s.waits.iter().collect();
            waits.sort();
            let _ = write!(
                out,
                "session {id} {:?} {} {:?} {:?} {} {:?} {:?} {} {:?} {:?} {:?};",
                s.tag.name,
                s.metadata,
                s.ttl,
                s.on_expire,
                s.created_at,
                s.last_seen,
                s.not_before,
                s.stale,
                leases,
                waits,
                seqs(&s.history)
            );
        }
        let mut resources: Vec<_> = self.resources.values().collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        for r in resources {
            let _ = write!(out, "resource {:?} {:?}", r.name, seqs(&r.history));
            for h in &r.holders {
                let _ = write!(
                    out,
                    " holder {} {:?} {} {} {} {:?} {:?} {} {:?}",
                    h.session,
                    h.mode,
                    h.token.hash().to_hex(),
                    h.fence,
                    h.acquired_at,
                    h.expires.get(),
                    h.ttl.get(),
                    h.priority,
                    h.reason
                );
            }
            let _ = write!(out, " queue {:?};", r.queue.iter().collect::<Vec<_>>());
        }
        let mut waits: Vec<_> = self.waits.iter().collect();
        waits.sort_by_key(|(id, _)| **id);
        for (id, w) in waits {
            let _ = write!(out, "wait {id} {w:?};");
        }
        let mut deadlines: Vec<_> = self.deadlines.iter().map(|Reverse(d)| d).collect();
        deadlines.sort();
        let _ = write!(out, "deadlines {deadlines:?};");
        let mut ended: Vec<_> = self.ended.iter().collect();
        ended.sort();
        let mut lost: Vec<_> = self.lost.order().map(|h| h.to_hex()).collect();
        lost.sort();
        let ended_order: Vec<_> = self.ended.order().collect();
        let _ = write!(out, "ended {ended:?} {ended_order:?} lost {lost:?}");
        Sha256::digest(out.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
