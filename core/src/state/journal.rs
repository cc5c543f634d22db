//! The state's side of durability: which records a batch of commands changed (for a
//! journal to write in one transaction), and a state restored from what a journal kept.
//! Waits and subscriptions are not kept: their callers are gone after a restart.

use std::sync::Arc;
use std::time::Duration;

use super::records::{Due, Ended, Holder, ResourceRec, SessionRec, Span, TokenCheck, Touch};
use super::{Config, State};
use crate::event::{Event, EventKind, SessionTag};
use crate::ring::Ring;
use crate::table::HashSet;
use crate::types::{Mode, OnExpire, SecretHash, SessionId};

/// A session as a journal keeps it: its secret only as a hash, times as unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: SessionId,
    pub name: String,
    pub metadata: serde_json::Value,
    pub secret_hash: SecretHash,
    pub ttl: Option<f64>,
    pub on_expire: OnExpire,
    pub created_at: f64,
    pub last_seen: f64,
    pub stale: bool,
    /// Order of opening.
    pub opened: u64,
}

/// A lease as a journal keeps it: its token only as a hash.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    pub resource: String,
    pub fence: u64,
    pub session: SessionId,
    pub mode: Mode,
    pub token_hash: SecretHash,
    pub acquired_at: f64,
    pub expires_at: Option<f64>,
    pub ttl: Option<f64>,
    pub priority: u8,
    pub reason: Option<String>,
}

/// One record to write (`Some`) or delete (`None`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Session(SessionId, Option<SessionRow>),
    Lease(u64, Option<LeaseRow>),
}

/// What a journal holds: enough to restore every session and lease, the counters, and
/// the newest history (oldest first).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sessions: Vec<SessionRow>,
    pub leases: Vec<LeaseRow>,
    pub next_fence: u64,
    pub next_seq: u64,
    pub history: Vec<Arc<Event>>,
}

impl Snapshot {
    /// The earliest time (unix seconds) a restored state must be able to express.
    pub fn earliest(&self) -> Option<f64> {
        let times = self
            .sessions
            .iter()
            .flat_map(|s| [s.created_at, s.last_seen]);
        let times = times.chain(self.leases.iter().map(|l| l.acquired_at));
        times.reduce(f64::min)
    }
}

impl State {
    /// Records a change for the journal, if there is one.
    pub(super) fn touched(&mut self, touch: Touch) {
        if let Some(t) = &mut self.touches {
            t.push(touch);
        }
    }

    /// Whether changes wait for a journal (commands since the last `take_changes`
    /// changed a record).
    pub fn has_changes(&self) -> bool {
        self.touches.as_ref().is_some_and(|t| !t.is_empty())
    }

    /// The records changed since the last call, as they are now; in the order they were
    /// first changed. For a journal (tracking starts with [`State::journaled`]).
    pub fn take_changes(&mut self) -> Vec<Change> {
        let touches = match &mut self.touches {
            Some(t) => std::mem::take(t),
            None => return Vec::new(),
        };
        let mut seen = HashSet::default();
        touches
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .map(|t| match t {
                Touch::Session(id) => Change::Session(id, self.session_row(id)),
                Touch::Lease(resource, fence) => {
                    Change::Lease(fence, self.lease_row(&resource, fence))
                }
            })
            .collect()
    }

    /// The next fence and the next seq the state will hand out.
    pub fn counters(&self) -> (u64, u64) {
        (self.next_fence, self.next_seq)
    }

    /// From now on, records what commands change (see [`State::take_changes`]).
    pub fn journaled(mut self) -> Self {
        self.touches = Some(Vec::new());
        self
    }

    fn session_row(&self, id: SessionId) -> Option<SessionRow> {
        let s = self.sessions.get(&id)?;
        Some(SessionRow {
            id,
            name: s.tag.name.to_string(),
            metadata: (*s.metadata).clone(),
            secret_hash: s.secret,
            ttl: s.ttl.map(|t| t.as_secs_f64()),
            on_expire: s.on_expire,
            created_at: s.created_at,
            last_seen: self.unix(s.last_seen),
            stale: s.stale,
            opened: s.opened,
        })
    }

    fn lease_row(&self, resource: &str, fence: u64) -> Option<LeaseRow> {
        let r = self.resources.get(resource)?;
        let h = r.holders.iter().find(|h| h.fence == fence)?;
        Some(LeaseRow {
            resource: r.name.to_string(),
            fence,
            session: h.session,
            mode: h.mode,
            token_hash: h.token.hash(),
            acquired_at: h.acquired_at,
            expires_at: h.expires.get().map(|d| self.unix(d)),
            ttl: h.ttl.get().map(|t| t.as_secs_f64()),
            priority: h.priority,
            reason: h.reason.as_deref().map(str::to_string),
        })
    }

    /// A state restored from `snap` at time `now`. Every session gets a grace period (its
    /// TTL, at least `grace`) to heartbeat or resume before its own expiry rule applies;
    /// leases keep their expiry; fences and seqs go on from where they were. Its times
    /// are counted from `unix_base`, which must be no later than `snap.earliest()`.
    pub fn restore(
        cfg: Config,
        unix_base: f64,
        seed: [u8; 32],
        snap: Snapshot,
        now: Duration,
        grace: Duration,
    ) -> State {
        let mut st = State::new(cfg, unix_base, seed).journaled();
        // A time too far ahead to count is as good as never (as a TTL too long to add).
        let mono = |unix: f64| {
            Duration::try_from_secs_f64((unix - unix_base).max(0.0)).unwrap_or(Duration::MAX)
        };
        st.next_fence = st.next_fence.max(snap.next_fence);
        st.next_seq = st.next_seq.max(snap.next_seq);
        let mut sessions = snap.sessions;
        sessions.sort_by_key(|s| s.opened);
        for s in sessions {
            let ttl = s.ttl.and_then(|t| Duration::try_from_secs_f64(t).ok());
            let rec = SessionRec {
                tag: Arc::new(SessionTag {
                    id: s.id,
                    name: s.name.into(),
                }),
                secret: s.secret_hash,
                metadata: Arc::new(s.metadata),
                ttl,
                on_expire: s.on_expire,
                opened: s.opened,
                created_at: s.created_at,
                last_seen: mono(s.last_seen),
                not_before: now.saturating_add(ttl.unwrap_or_default().max(grace)),
                stale: s.stale,
                leases: HashSet::default(),
                waits: HashSet::default(),
                history: Ring::default(),
            };
            st.next_opened = st.next_opened.max(s.opened + 1);
            if let Some(at) = rec.expires() {
                st.push_deadline(at, Due::Session(s.id));
            }
            st.sessions.insert(s.id, rec);
        }
        for l in snap.leases {
            let Some(session) = st.sessions.get_mut(&l.session) else {
                continue;
            };
            let name: Arc<str> = l.resource.into();
            session.leases.insert(name.clone());
            let expires = Span::new(l.expires_at.map(mono));
            let ttl = l.ttl.and_then(|t| Duration::try_from_secs_f64(t).ok());
            let holder = Holder {
                session: l.session,
                mode: l.mode,
                token: TokenCheck::Hashed(l.token_hash),
                fence: l.fence,
                acquired_at: l.acquired_at,
                expires,
                ttl: Span::new(ttl),
                priority: l.priority,
                reason: l.reason.map(Arc::from),
            };
            st.next_fence = st.next_fence.max(l.fence + 1);
            if let Some(at) = expires.get() {
                st.push_deadline(at, Due::Lease(name.clone(), l.fence));
            }
            st.resources
                .get_or_insert_with(&name, || ResourceRec::new(&name))
                .holders
                .push(holder);
        }
        let limit = st.cfg.history_limit;
        for ev in snap.history {
            st.next_seq = st.next_seq.max(ev.seq + 1);
            if let (Some(r), true) = (&ev.resource, limit > 0) {
                let rec = st.resources.get_or_insert_with(r, || ResourceRec::new(r));
                rec.history.push(ev.clone(), limit);
            }
            if let Some(id) = ev.session_id() {
                match st.sessions.get_mut(&id) {
                    Some(s) => {
                        s.history.push(ev.clone(), limit);
                    }
                    // A session that ended before the restart: its history and why it
                    // ended are kept as they were before it.
                    None => {
                        if limit > 0 {
                            let ring = st.ended_history.entry(id).or_default();
                            ring.push(ev.clone(), limit);
                        }
                        match ev.kind {
                            EventKind::SessionExpired => st.note_ended(id, Ended::Expired),
                            EventKind::SessionClosed => st.note_ended(id, Ended::Closed),
                            _ => {}
                        }
                    }
                }
            }
            st.global.push(ev, st.cfg.global_history);
        }
        st
    }
}
