//! The records the state keeps: sessions, resources with their holders and queues,
//! waiting requests, and the deadlines of all three.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::error::LostReason;
use crate::event::SessionTag;
use crate::protocol::WaitId;
use crate::ring::Ring;
use crate::table::{HashSet, Named};
use crate::types::{Mode, OnExpire, SecretHash, SessionId, Token};

#[derive(Debug)]
pub(super) struct SessionRec {
    pub(super) tag: Arc<SessionTag>,
    pub(super) secret: SecretHash,
    pub(super) metadata: Arc<serde_json::Value>,
    pub(super) ttl: Option<Duration>,
    pub(super) on_expire: OnExpire,
    /// Order of opening, for listings.
    pub(super) opened: u64,
    pub(super) created_at: f64,
    pub(super) last_seen: Duration,
    /// A session restored from a journal may not expire before this (its grace period).
    pub(super) not_before: Duration,
    pub(super) stale: bool,
    pub(super) leases: HashSet<Arc<str>>,
    pub(super) waits: HashSet<WaitId>,
    pub(super) history: Ring,
}

impl SessionRec {
    pub(super) fn expires(&self) -> Option<Duration> {
        match self.stale {
            true => None,
            false => self
                .ttl
                .and_then(|t| self.last_seen.checked_add(t))
                .map(|at| at.max(self.not_before)),
        }
    }
}

/// How a holder proves its token: the token itself, or (for a lease restored from a
/// journal, which keeps no secret) its hash.
#[derive(Debug, Clone, Copy)]
pub(super) enum TokenCheck {
    Plain(Token),
    Hashed(SecretHash),
}

impl TokenCheck {
    pub(super) fn matches(&self, token: Token) -> bool {
        match self {
            TokenCheck::Plain(t) => *t == token,
            TokenCheck::Hashed(h) => *h == token.hash(),
        }
    }

    pub(super) fn hash(&self) -> SecretHash {
        match self {
            TokenCheck::Plain(t) => t.hash(),
            TokenCheck::Hashed(h) => *h,
        }
    }
}

#[derive(Debug)]
pub(super) struct Holder {
    pub(super) session: SessionId,
    pub(super) mode: Mode,
    pub(super) token: TokenCheck,
    pub(super) fence: u64,
    pub(super) acquired_at: f64,
    pub(super) expires: Span,
    pub(super) ttl: Span,
    pub(super) priority: u8,
    pub(super) reason: Option<Arc<str>>,
}

/// An optional span of time in 8 bytes where `Option<Duration>` takes 16 (a million
/// holders then fit smaller allocations): nanoseconds, 0 for none. A lease's TTL and
/// expiry are never zero; one beyond `u64` nanoseconds is cut to that, 584 years.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span(u64);

impl Span {
    pub(super) fn new(d: Option<Duration>) -> Self {
        Span(d.map_or(0, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        }))
    }

    pub(super) fn get(self) -> Option<Duration> {
        (self.0 != 0).then(|| Duration::from_nanos(self.0))
    }

    /// The expiry of a lease with this TTL, granted or renewed at `now`.
    pub(super) fn after(self, now: Duration) -> Span {
        Span::new(self.get().and_then(|t| now.checked_add(t)))
    }
}

/// A resource's record lives while it is held or waited for, and after that while its
/// history still has events in the global ring.
#[derive(Debug)]
pub(super) struct ResourceRec {
    pub(super) name: Arc<str>,
    /// Inline: most resources have one holder at a time, and then it needs no allocation.
    /// Holders are compatible with each other: one exclusive, or any number shared.
    pub(super) holders: SmallVec<[Holder; 1]>,
    pub(super) queue: Queue,
    pub(super) history: Ring,
}

impl Named for ResourceRec {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
}

impl ResourceRec {
    pub(super) fn new(name: &Arc<str>) -> Self {
        ResourceRec {
            name: name.clone(),
            holders: SmallVec::new(),
            queue: Queue::default(),
            history: Ring::default(),
        }
    }

    /// Whether `settle` has work here once the holders changed: a queue to grant from,
    /// or (with no history kept) an idle record to forget. With history, the event about
    /// the change keeps the record.
    pub(super) fn needs_settling(&self, history_limit: usize) -> bool {
        !self.queue.is_empty() || history_limit == 0
    }

    pub(super) fn idle(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }

    /// The mode every holder shares, if any holds.
    pub(super) fn held_mode(&self) -> Option<Mode> {
        self.holders.first().map(|h| h.mode)
    }
}

pub(super) type QueueMap = BTreeMap<(u8, u64), WaitId>;

/// A resource's waiting requests by (priority, arrival). The map is made when the first
/// request waits: most resources never have a queue, and then it takes 8 bytes, not 24.
#[derive(Debug, Default)]
pub(super) struct Queue(Option<Box<QueueMap>>);

static NO_QUEUE: QueueMap = BTreeMap::new();

impl std::ops::Deref for Queue {
    type Target = QueueMap;

    fn deref(&self) -> &QueueMap {
        self.0.as_deref().unwrap_or(&NO_QUEUE)
    }
}

impl Queue {
    pub(super) fn insert(&mut self, key: (u8, u64), id: WaitId) {
        self.0.get_or_insert_default().insert(key, id);
    }

    pub(super) fn remove(&mut self, key: &(u8, u64)) {
        if let Some(q) = &mut self.0 {
            q.remove(key);
        }
    }

    pub(super) fn clear(&mut self) {
        self.0 = None;
    }
}

#[derive(Debug)]
pub(super) struct WaitRec {
    pub(super) session: SessionId,
    /// Inline for the common request of one resource.
    pub(super) resources: SmallVec<[Arc<str>; 1]>,
    pub(super) mode: Mode,
    pub(super) priority: u8,
    pub(super) arrival: u64,
    pub(super) ttl: Option<Duration>,
    pub(super) deadline: Option<Duration>,
    pub(super) reason: Option<Arc<str>>,
    pub(super) preempt: bool,
    pub(super) break_stale: bool,
    pub(super) queued_at: f64,
}

impl WaitRec {
    pub(super) fn key(&self) -> (u8, u64) {
        (self.priority, self.arrival)
    }

    pub(super) fn names(&self) -> String {
        self.resources.join(", ")
    }
}

/// What a deadline in the heap is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    Session(SessionId),
    Lease(Arc<str>, u64),
    Wait(WaitId),
}

/// A record a command changed, for a journal to write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Touch {
    Session(SessionId),
    Lease(Arc<str>, u64),
}

/// Why a session ended, kept so a late call can say `SessionExpired` or `NotFound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Ended {
    Closed,
    Expired,
}

/// How a lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Released,
    Lost(LostReason),
}
