//! The pure lock state machine: every table, queue, session and counter of an engine,
//! changed only by [`State::apply`]. No I/O, no clock, no threads: time comes in as
//! `now`, a monotonic duration since the engine's clock started.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::table::{HashMap, HashSet, Named, Table};
use crate::types::*;

/// Identifies one acquire request, chosen by the caller and unique per engine.
pub type WaitId = u64;

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
    /// Events a subscriber may have unread before it is sent a `lagged` marker.
    pub subscriber_buffer: usize,
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
        }
    }
}

/// What a session is opened with.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub name: String,
    /// A JSON object; `Value::Null` is taken as `{}`.
    pub metadata: serde_json::Value,
    /// `None`: the engine's `session_ttl`.
    pub ttl: Option<Duration>,
    /// `None`: the engine's `on_session_expire`.
    pub on_expire: Option<OnExpire>,
}

/// One acquire request, for one or several resources (all or nothing).
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub wait: WaitId,
    pub session: SessionId,
    /// Shared with the caller's ticket, which names them in errors and cancels.
    pub resources: Arc<[String]>,
    pub mode: Mode,
    /// `None` waits forever, zero tries once without queueing.
    pub timeout: Option<Duration>,
    /// `None`: the engine's `lock_ttl`.
    pub ttl: Option<Duration>,
    pub priority: u8,
    pub preempt: bool,
    pub reason: Option<String>,
    pub break_stale: bool,
}

/// A request to the state machine.
#[derive(Debug, Clone)]
pub enum Command {
    OpenSession(SessionSpec),
    CloseSession(SessionId),
    /// One open session's listing entry.
    Session(SessionId),
    Heartbeat(SessionId),
    Acquire(AcquireRequest),
    /// Withdraws a request: removes its queue entry or, if it was granted meanwhile,
    /// releases what it was granted (its caller is gone and never saw the grant).
    Cancel {
        wait: WaitId,
        resources: Arc<[String]>,
    },
    Position(WaitId),
    Release {
        /// A `Lease` passes back the name its grant came with: no copy, and the engine
        /// finds the record by address.
        resource: Arc<str>,
        token: Token,
    },
    Renew {
        resource: String,
        token: Token,
        ttl: Option<Duration>,
    },
    ForceRelease {
        resource: String,
        reason: Option<String>,
    },
    Status(String),
    Locks,
    Sessions,
    Check {
        resource: String,
        session: SessionId,
        action: Action,
    },
    CheckFence {
        resource: String,
        fence: u64,
    },
    History {
        resource: Option<String>,
        session: Option<SessionId>,
        limit: Option<usize>,
    },
    /// The global ring's events after `since`, and how many of them are already gone.
    Replay {
        since: u64,
    },
    /// Fails every pending wait with `EngineClosed`.
    Close,
    /// Does nothing but what every command does first: process due deadlines.
    Tick,
}

/// A granted lease, as handed to its holder (the only place a token appears).
#[derive(Debug, Clone)]
pub struct Grant {
    pub resource: Arc<str>,
    pub mode: Mode,
    pub session_id: SessionId,
    pub token: Token,
    pub fence: u64,
    pub acquired_at: f64,
    pub expires_at: Option<f64>,
    pub ttl: Option<Duration>,
    pub priority: u8,
    pub cell: LeaseCell,
}

/// The leases of one grant: inline for the common request of one resource, so that a
/// grant crosses to its caller without an allocation.
pub type Grants = SmallVec<[Grant; 1]>;

/// The answer to a command.
#[derive(Debug, Clone)]
pub enum Reply {
    Unit,
    Session(SessionInfo),
    Count(usize),
    Granted(Grants),
    /// The request waits; its outcome comes later as a completion.
    Queued {
        position: u64,
    },
    Position(Option<u64>),
    Renewed {
        expires_at: Option<f64>,
    },
    Status(ResourceStatus),
    Locks(Vec<ResourceStatus>),
    Sessions(Vec<SessionInfo>),
    Bool(bool),
    History(Vec<Arc<Event>>),
    Replay {
        events: Vec<Arc<Event>>,
        missed: u64,
    },
}

/// What a command caused besides its reply.
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<Arc<Event>>,
    /// Outcomes of earlier queued requests (granted, timed out, failed).
    pub completions: Vec<(WaitId, Result<Grants>)>,
}

#[derive(Debug)]
struct SessionRec {
    tag: Arc<SessionTag>,
    metadata: Arc<serde_json::Value>,
    ttl: Option<Duration>,
    on_expire: OnExpire,
    opened: u64,
    created_at: f64,
    last_seen: Duration,
    stale: bool,
    leases: HashSet<Arc<str>>,
    waits: HashSet<WaitId>,
    history: Ring,
}

impl SessionRec {
    fn expires(&self) -> Option<Duration> {
        match self.stale {
            true => None,
            false => self.ttl.and_then(|t| self.last_seen.checked_add(t)),
        }
    }
}

#[derive(Debug)]
struct Holder {
    session: SessionId,
    mode: Mode,
    token: Token,
    fence: u64,
    acquired_at: f64,
    expires: Span,
    ttl: Span,
    priority: u8,
    reason: Option<Arc<str>>,
    wait: WaitId,
    /// The lease's cell, as a page and a slot in it (a `LeaseCell` would take 8 bytes
    /// more: a holder then no longer fits its allocation size).
    page: Arc<CellPage>,
    slot: u8,
}

impl Holder {
    fn cell(&self) -> LeaseCell {
        LeaseCell::new(self.page.clone(), self.slot)
    }

    /// Ends the lease's cell as `state`; returns where it stood before (`Released` if
    /// its holder released it first and the release is still on its way).
    fn end(&self, state: LeaseState) -> LeaseState {
        self.page.leave_held(self.slot, state)
    }
}

/// An optional span of time in 8 bytes where `Option<Duration>` takes 16 (a million
/// holders then fit smaller allocations): nanoseconds, 0 for none. A lease's TTL and
/// expiry are never zero; one beyond `u64` nanoseconds is cut to that, 584 years.
#[derive(Debug, Clone, Copy)]
struct Span(u64);

impl Span {
    fn new(d: Option<Duration>) -> Self {
        Span(d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    fn get(self) -> Option<Duration> {
        (self.0 != 0).then(|| Duration::from_nanos(self.0))
    }

    /// The expiry of a lease with this TTL, granted or renewed at `now`.
    fn after(self, now: Duration) -> Span {
        Span::new(self.get().and_then(|t| now.checked_add(t)))
    }
}

/// A resource's record lives while it is held or waited for, and after that while its
/// history still has events in the global ring.
#[derive(Debug)]
struct ResourceRec {
    name: Arc<str>,
    /// Inline: most resources have one holder at a time, and then it needs no allocation.
    holders: SmallVec<[Holder; 1]>,
    queue: Queue,
    history: Ring,
}

type QueueMap = BTreeMap<(u8, u64), WaitId>;

/// A resource's waiting requests by (priority, arrival). The map is made when the first
/// request waits: most resources never have a queue, and then it takes 8 bytes, not 24.
#[derive(Debug, Default)]
struct Queue(Option<Box<QueueMap>>);

static NO_QUEUE: QueueMap = BTreeMap::new();

impl std::ops::Deref for Queue {
    type Target = QueueMap;

    fn deref(&self) -> &QueueMap {
        self.0.as_deref().unwrap_or(&NO_QUEUE)
    }
}

impl Queue {
    fn insert(&mut self, key: (u8, u64), id: WaitId) {
        self.0.get_or_insert_default().insert(key, id);
    }

    fn remove(&mut self, key: &(u8, u64)) {
        if let Some(q) = &mut self.0 {
            q.remove(key);
        }
    }

    fn clear(&mut self) {
        if let Some(q) = &mut self.0 {
            q.clear();
        }
    }
}

impl Named for ResourceRec {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
}

impl ResourceRec {
    fn new(name: &Arc<str>) -> Self {
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
    fn needs_settling(&self, history_limit: usize) -> bool {
        !self.queue.is_empty() || history_limit == 0
    }

    fn idle(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }
}

#[derive(Debug)]
struct WaitRec {
    session: SessionId,
    /// Inline for the common request of one resource.
    resources: SmallVec<[Arc<str>; 1]>,
    mode: Mode,
    priority: u8,
    arrival: u64,
    ttl: Option<Duration>,
    deadline: Option<Duration>,
    reason: Option<Arc<str>>,
    preempt: bool,
    break_stale: bool,
    queued_at: f64,
}

impl WaitRec {
    fn key(&self) -> (u8, u64) {
        (self.priority, self.arrival)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Session(SessionId),
    Lease(Arc<str>, u64),
    Wait(WaitId),
}

#[derive(Debug, Clone, Copy)]
enum Ended {
    Closed,
    Expired,
}

/// How a lease ends.
#[derive(Debug, Clone, Copy)]
enum End {
    Released,
    Lost(LostReason),
}

/// The whole lock state of one engine.
#[derive(Debug)]
pub struct State {
    cfg: Config,
    unix_base: f64,
    sessions: HashMap<SessionId, SessionRec>,
    /// Ended sessions, so a late call can say `SessionExpired` rather than `NotFound`.
    ended: HashMap<SessionId, Ended>,
    ended_order: VecDeque<SessionId>,
    resources: Table<ResourceRec>,
    waits: HashMap<WaitId, WaitRec>,
    deadlines: BinaryHeap<Reverse<(Duration, Due)>>,
    deadlines_compacted: usize,
    next_fence: u64,
    next_seq: u64,
    next_arrival: u64,
    next_opened: u64,
    global: Ring,
    cells: Cells,
    /// History of ended sessions, kept while the global ring has their events.
    ended_history: HashMap<SessionId, Ring>,
    /// Resources whose queue may have become grantable during this command.
    dirty: Vec<Arc<str>>,
}

impl State {
    /// A new state; `unix_base` is the unix time at which the monotonic clock read zero.
    pub fn new(cfg: Config, unix_base: f64) -> Self {
        State {
            cfg,
            unix_base,
            sessions: HashMap::default(),
            ended: HashMap::default(),
            ended_order: VecDeque::new(),
            resources: Table::default(),
            waits: HashMap::default(),
            deadlines: BinaryHeap::new(),
            deadlines_compacted: 0,
            next_fence: 1,
            next_seq: 1,
            next_arrival: 0,
            next_opened: 0,
            global: Ring::default(),
            cells: Cells::default(),
            ended_history: HashMap::default(),
            dirty: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The earliest moment at which something may expire or time out.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
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
            Command::OpenSession(spec) => self.open_session(now, spec, fx).map(Reply::Session),
            Command::Session(id) => match self.sessions.get(&id) {
                Some(s) => Ok(Reply::Session(self.session_info(id, s))),
                None => Err(self.missing_session(id)),
            },
            Command::CloseSession(id) => self.close_session(now, id, fx).map(Reply::Count),
            Command::Heartbeat(id) => self.touch(now, id, fx).map(|_| Reply::Unit),
            Command::Acquire(req) => self.acquire(now, req, fx),
            Command::Cancel { wait, resources } => {
                self.cancel(now, wait, &resources, fx);
                Ok(Reply::Unit)
            }
            Command::Position(wait) => Ok(Reply::Position(self.position(wait))),
            Command::Release { resource, token } => {
                self.release(now, &resource, token, fx).map(|_| Reply::Unit)
            }
            Command::Renew {
                resource,
                token,
                ttl,
            } => self.renew(now, &resource, token, ttl, fx),
            Command::ForceRelease { resource, reason } => self
                .force_release(now, &resource, reason, fx)
                .map(Reply::Count),
            Command::Status(resource) => {
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
                let held = self
                    .resources
                    .get(resource.as_str())
                    .is_some_and(|r| r.holders.iter().any(|h| h.fence == fence));
                Ok(Reply::Bool(held))
            }
            Command::History {
                resource,
                session,
                limit,
            } => self.history(resource, session, limit).map(Reply::History),
            Command::Replay { since } => Ok(self.replay(since)),
            Command::Close => {
                for (id, _) in std::mem::take(&mut self.waits) {
                    fx.completions.push((id, Err(Error::EngineClosed)));
                }
                for s in self.sessions.values_mut() {
                    s.waits.clear();
                    s.leases.clear();
                }
                for rec in self.resources.values_mut() {
                    rec.queue.clear();
                    for h in rec.holders.drain(..) {
                        h.end(LeaseState::Closed);
                    }
                }
                Ok(Reply::Unit)
            }
            Command::Tick => Ok(Reply::Unit),
        }
    }

    // ----- time -------------------------------------------------------------------

    fn unix(&self, now: Duration) -> f64 {
        self.unix_base + now.as_secs_f64()
    }

    fn push_deadline(&mut self, at: Duration, due: Due) {
        self.deadlines.push(Reverse((at, due)));
    }

    fn expire_due(&mut self, now: Duration, fx: &mut Effects) {
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, due))) = self.deadlines.pop() else {
                break;
            };
            match due {
                Due::Session(id) => match self.sessions.get(&id).and_then(SessionRec::expires) {
                    Some(at) if at <= now => self.expire_session(now, id, fx),
                    Some(at) => self.push_deadline(at, Due::Session(id)),
                    None => {}
                },
                Due::Lease(resource, fence) => {
                    let expires = self.resources.get(&resource).and_then(|r| {
                        r.holders
                            .iter()
                            .find(|h| h.fence == fence)
                            .and_then(|h| h.expires.get())
                    });
                    match expires {
                        Some(at) if at <= now => {
                            let lost = End::Lost(LostReason::Expired);
                            self.end_lease(now, &resource, fence, lost, None, fx);
                        }
                        Some(at) => self.push_deadline(at, Due::Lease(resource, fence)),
                        None => {}
                    }
                }
                Due::Wait(id) => {
                    if self
                        .waits
                        .get(&id)
                        .and_then(|w| w.deadline)
                        .is_some_and(|d| d <= now)
                    {
                        let what = self.waits[&id].resources.join(", ");
                        self.fail_wait(now, id, Error::LockTimeout(what), "timeout", fx);
                    }
                }
            }
            // In deadline order: a lock freed by an earlier deadline goes to its waiters
            // before a later deadline times them out.
            self.settle(now, fx);
        }
        self.compact_deadlines();
    }

    /// Drops heap entries of leases and waits that ended early, once the heap has doubled
    /// since the last compaction, so that churn does not grow it without bound.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.deadlines_compacted + 1024 {
            return;
        }
        let heap = std::mem::take(&mut self.deadlines);
        let live: Vec<_> = heap
            .into_vec()
            .into_iter()
            .filter(|Reverse((_, due))| match due {
                Due::Session(id) => self.sessions.contains_key(id),
                Due::Lease(r, fence) => self
                    .resources
                    .get(r)
                    .is_some_and(|r| r.holders.iter().any(|h| h.fence == *fence)),
                Due::Wait(id) => self.waits.contains_key(id),
            })
            .collect();
        self.deadlines_compacted = live.len();
        self.deadlines = BinaryHeap::from(live);
    }

    // ----- events and history -----------------------------------------------------

    fn blank(&self, now: Duration, kind: EventKind) -> Event {
        Event {
            seq: 0,
            at: self.unix(now),
            kind,
            resource: None,
            mode: None,
            priority: None,
            session: None,
            number: None,
            reason: None,
        }
    }

    /// An event about a session (every event emitted about one finds it still open).
    fn session_event(&self, now: Duration, kind: EventKind, id: SessionId) -> Event {
        Event {
            session: self.sessions.get(&id).map(|s| s.tag.clone()),
            ..self.blank(now, kind)
        }
    }

    /// Numbers an event, keeps it in the history of its resource and its session, and
    /// publishes it.
    fn emit(&mut self, ev: Event, fx: &mut Effects) {
        let limit = self.cfg.history_limit;
        let (mut resource, mut session) = (None, None);
        if limit > 0 {
            if let Some(r) = &ev.resource {
                resource = Some(
                    &mut self
                        .resources
                        .get_or_insert_with(r, || ResourceRec::new(r))
                        .history,
                );
            }
            if let Some(s) = ev.session_id() {
                session = match self.sessions.get_mut(&s) {
                    Some(rec) => Some(&mut rec.history),
                    None => self.ended_history.get_mut(&s),
                };
            }
        }
        let ev = numbered(&mut self.next_seq, limit, [resource, session], ev);
        self.publish(ev, fx);
    }

    /// Puts a numbered event in the global ring and the command's effects.
    fn publish(&mut self, ev: Arc<Event>, fx: &mut Effects) {
        if let Some(old) = self.global.push(ev.clone(), self.cfg.global_history) {
            self.forget_history_of(&old);
        }
        fx.events.push(ev);
    }

    /// Forgets idle resources and ended sessions once their newest event has left the
    /// global ring.
    fn forget_history_of(&mut self, old: &Event) {
        let gone = |ring: &Ring| ring.newest().is_none_or(|e| e.seq <= old.seq);
        if let Some(r) = &old.resource {
            if self
                .resources
                .get(r)
                .is_some_and(|rec| rec.idle() && gone(&rec.history))
            {
                self.resources.remove(r);
            }
        }
        if let Some(s) = old.session_id().filter(|_| !self.ended_history.is_empty()) {
            if self.ended_history.get(&s).is_some_and(gone) {
                self.ended_history.remove(&s);
            }
        }
    }

    fn history(
        &self,
        resource: Option<String>,
        session: Option<SessionId>,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Event>>> {
        if let Some(r) = &resource {
            validate_resource(r)?;
        }
        let ring = match (&resource, session) {
            (Some(r), _) => self.resources.get(r.as_str()).map(|rec| &rec.history),
            (None, Some(s)) => match self.sessions.get(&s) {
                Some(rec) => Some(&rec.history),
                None => self.ended_history.get(&s),
            },
            (None, None) => Some(&self.global),
        };
        let mut events: Vec<Arc<Event>> = ring
            .into_iter()
            .flat_map(Ring::iter)
            .filter(|e| session.is_none() || e.session_id() == session)
            .cloned()
            .collect();
        if let Some(n) = limit {
            events.drain(..events.len().saturating_sub(n));
        }
        Ok(events)
    }

    fn replay(&self, since: u64) -> Reply {
        let oldest = self.global.iter().next().map_or(self.next_seq, |e| e.seq);
        Reply::Replay {
            events: self
                .global
                .iter()
                .filter(|e| e.seq > since)
                .cloned()
                .collect(),
            missed: oldest.saturating_sub(since.saturating_add(1)),
        }
    }

    // ----- sessions ---------------------------------------------------------------

    fn open_session(
        &mut self,
        now: Duration,
        spec: SessionSpec,
        fx: &mut Effects,
    ) -> Result<SessionInfo> {
        validate_session_name(&spec.name)?;
        if spec.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("session ttl must be more than zero"));
        }
        let metadata = match spec.metadata {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            m => m,
        };
        validate_metadata(&metadata)?;
        let id = SessionId::random();
        let rec = SessionRec {
            tag: Arc::new(SessionTag {
                id,
                name: spec.name.into(),
            }),
            metadata: Arc::new(metadata),
            ttl: spec.ttl.or(self.cfg.session_ttl),
            on_expire: spec.on_expire.unwrap_or(self.cfg.on_session_expire),
            opened: self.next_opened,
            created_at: self.unix(now),
            last_seen: now,
            stale: false,
            leases: HashSet::default(),
            waits: HashSet::default(),
            history: Ring::default(),
        };
        self.next_opened += 1;
        if let Some(at) = rec.expires() {
            self.push_deadline(at, Due::Session(id));
        }
        self.sessions.insert(id, rec);
        let ev = self.session_event(now, EventKind::SessionOpened, id);
        self.emit(ev, fx);
        Ok(self.session_info(id, &self.sessions[&id]))
    }

    fn session_info(&self, id: SessionId, s: &SessionRec) -> SessionInfo {
        SessionInfo {
            id,
            name: s.tag.name.clone(),
            metadata: s.metadata.clone(),
            created_at: s.created_at,
            last_seen: self.unix(s.last_seen),
            expires_at: s.expires().map(|d| self.unix(d)),
            stale: s.stale,
            leases: {
                let mut l: Vec<Arc<str>> = s.leases.iter().cloned().collect();
                l.sort();
                l
            },
        }
    }

    fn session_list(&self) -> Vec<SessionInfo> {
        let mut list: Vec<_> = self.sessions.iter().collect();
        list.sort_by_key(|(_, s)| s.opened);
        list.into_iter()
            .map(|(id, s)| self.session_info(*id, s))
            .collect()
    }

    fn missing_session(&self, id: SessionId) -> Error {
        match self.ended.get(&id) {
            Some(Ended::Expired) => Error::SessionExpired(id.to_string()),
            Some(Ended::Closed) => Error::NotFound(format!("session {id} is closed")),
            None => Error::NotFound(format!("no session {id}")),
        }
    }

    /// Records activity of a session, reviving it if it was stale.
    fn touch(&mut self, now: Duration, id: SessionId, fx: &mut Effects) -> Result<()> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(self.missing_session(id));
        };
        s.last_seen = now;
        if s.stale {
            s.stale = false;
            if let Some(at) = s.expires() {
                self.push_deadline(at, Due::Session(id));
            }
            let ev = self.session_event(now, EventKind::SessionRevived, id);
            self.emit(ev, fx);
        }
        Ok(())
    }

    fn close_session(&mut self, now: Duration, id: SessionId, fx: &mut Effects) -> Result<usize> {
        if !self.sessions.contains_key(&id) {
            return match self.ended.get(&id) {
                Some(_) => Ok(0),
                None => Err(self.missing_session(id)),
            };
        }
        let n = self.end_session(now, id, Ended::Closed, fx);
        Ok(n)
    }

    fn expire_session(&mut self, now: Duration, id: SessionId, fx: &mut Effects) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        match s.on_expire {
            OnExpire::Release => {
                self.end_session(now, id, Ended::Expired, fx);
            }
            OnExpire::Keep => {
                self.fail_session_waits(now, id, Ended::Expired, fx);
                let Some(s) = self.sessions.get_mut(&id) else {
                    return;
                };
                s.stale = true;
                let held: Vec<Arc<str>> = s.leases.iter().cloned().collect();
                self.dirty.extend(held);
                let ev = self.session_event(now, EventKind::SessionStale, id);
                self.emit(ev, fx);
            }
        }
    }

    fn fail_session_waits(&mut self, now: Duration, id: SessionId, why: Ended, fx: &mut Effects) {
        let waits: Vec<WaitId> = self.sessions[&id].waits.iter().copied().collect();
        for w in waits {
            let (err, reason) = match why {
                Ended::Expired => (Error::SessionExpired(id.to_string()), "session_expired"),
                Ended::Closed => (
                    Error::Cancelled(format!("session {id} closed")),
                    "session_closed",
                ),
            };
            self.fail_wait(now, w, err, reason, fx);
        }
    }

    /// Ends a session: fails its waits, ends its leases, records why. Returns how many
    /// leases it held.
    fn end_session(&mut self, now: Duration, id: SessionId, why: Ended, fx: &mut Effects) -> usize {
        self.fail_session_waits(now, id, why, fx);
        let leases: Vec<Arc<str>> = self.sessions[&id].leases.iter().cloned().collect();
        let (end, reason) = match why {
            Ended::Closed => (End::Released, "session_closed"),
            Ended::Expired => (End::Lost(LostReason::SessionExpired), "session_expired"),
        };
        let mut ended = 0;
        for r in &leases {
            let fence = self.resources.get(r).and_then(|rec| {
                rec.holders
                    .iter()
                    .find(|h| h.session == id)
                    .map(|h| h.fence)
            });
            if let Some(fence) = fence {
                ended += usize::from(self.end_lease(now, r, fence, end, Some(reason.into()), fx));
            }
        }
        let kind = match why {
            Ended::Closed => EventKind::SessionClosed,
            Ended::Expired => EventKind::SessionExpired,
        };
        let ev = self.session_event(now, kind, id);
        self.emit(ev, fx);
        if let Some(rec) = self.sessions.remove(&id) {
            if !rec.history.is_empty() {
                self.ended_history.insert(id, rec.history);
            }
        }
        self.ended.insert(id, why);
        self.ended_order.push_back(id);
        if self.ended_order.len() > self.cfg.global_history {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
        ended
    }

    // ----- acquiring --------------------------------------------------------------

    fn acquire(&mut self, now: Duration, req: AcquireRequest, fx: &mut Effects) -> Result<Reply> {
        if req.resources.is_empty() {
            return Err(Error::invalid("no resource given"));
        }
        for (i, r) in req.resources.iter().enumerate() {
            validate_resource(r)?;
            if req.resources[..i].contains(r) {
                return Err(Error::invalid(format!("resource {r:?} is named twice")));
            }
        }
        if let Some(reason) = &req.reason {
            validate_reason(reason)?;
        }
        if req.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("ttl must be more than zero"));
        }
        if self.waits.contains_key(&req.wait) {
            return Err(Error::invalid(format!("wait id {} is in use", req.wait)));
        }
        let s = self
            .sessions
            .get(&req.session)
            .ok_or_else(|| self.missing_session(req.session))?;
        for r in req.resources.iter() {
            let busy = s.leases.contains(r.as_str())
                || s.waits
                    .iter()
                    .any(|w| self.waits[w].resources.iter().any(|x| **x == **r));
            if busy {
                return Err(Error::AlreadyHeld(r.clone()));
            }
        }
        self.touch(now, req.session, fx)?;
        let resources: SmallVec<[Arc<str>; 1]> = req
            .resources
            .iter()
            .map(|r| match self.resources.get(r) {
                Some(rec) => rec.name.clone(),
                None => Arc::from(r.as_str()),
            })
            .collect();
        let w = WaitRec {
            session: req.session,
            resources,
            mode: req.mode,
            priority: req.priority,
            arrival: self.next_arrival,
            ttl: req.ttl.or(self.cfg.lock_ttl),
            deadline: req
                .timeout
                .filter(|t| !t.is_zero())
                .and_then(|t| now.checked_add(t)),
            reason: req.reason.map(Arc::from),
            preempt: req.preempt,
            break_stale: req.break_stale,
            queued_at: self.unix(now),
        };
        self.next_arrival += 1;
        if self.can_grant(&w) {
            return Ok(Reply::Granted(self.grant(now, req.wait, w, fx)));
        }
        if req.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::LockTimeout(req.resources.join(", ")));
        }
        self.enqueue(now, req.wait, w, fx)
    }

    fn enqueue(
        &mut self,
        now: Duration,
        id: WaitId,
        w: WaitRec,
        fx: &mut Effects,
    ) -> Result<Reply> {
        for r in &w.resources {
            self.resources
                .get_or_insert_with(r, || ResourceRec::new(r))
                .queue
                .insert(w.key(), id);
        }
        let session = w.session;
        self.waits.insert(id, w);
        if self.closes_cycle(session, id) {
            let names = self
                .withdraw(now, id, "deadlock", fx)
                .map(|w| w.resources.join(", "))
                .unwrap_or_default();
            return Err(Error::Deadlock(format!(
                "waiting for {names} would close a cycle of waiting sessions"
            )));
        }
        let w = &self.waits[&id];
        if let Some(at) = w.deadline {
            self.push_deadline(at, Due::Wait(id));
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.waits.insert(id);
        }
        let w = &self.waits[&id];
        let base = Event {
            mode: Some(w.mode),
            priority: Some(w.priority),
            reason: w.reason.clone(),
            ..self.session_event(now, EventKind::Queued, session)
        };
        let placed: Vec<(Arc<str>, u64)> = w
            .resources
            .iter()
            .map(|r| (r.clone(), self.queue_position(r, w.key())))
            .collect();
        for (r, pos) in &placed {
            self.emit(
                Event {
                    resource: Some(r.clone()),
                    number: NonZeroU64::new(*pos),
                    ..base.clone()
                },
                fx,
            );
        }
        let position = placed.iter().map(|(_, p)| *p).max().unwrap_or(1);
        Ok(Reply::Queued { position })
    }

    fn queue_position(&self, resource: &str, key: (u8, u64)) -> u64 {
        self.resources
            .get(resource)
            .map_or(0, |r| r.queue.range(..=key).count() as u64)
    }

    fn position(&self, id: WaitId) -> Option<u64> {
        let w = self.waits.get(&id)?;
        w.resources
            .iter()
            .map(|r| self.queue_position(r, w.key()))
            .max()
    }

    /// May holder `h` be taken away for request `w` (preemption or stale takeover)?
    fn removable(&self, w: &WaitRec, h: &Holder) -> bool {
        (w.preempt && h.priority > w.priority)
            || (w.break_stale && self.sessions.get(&h.session).is_some_and(|s| s.stale))
    }

    /// Could `w` be granted now: on every resource, compatible with every holder it may
    /// not remove, and nothing conflicting is queued ahead of it.
    fn can_grant(&self, w: &WaitRec) -> bool {
        w.resources.iter().all(|r| {
            let Some(rec) = self.resources.get(r) else {
                return true;
            };
            rec.queue
                .range(..w.key())
                .all(|(_, id)| self.waits[id].mode.compatible(w.mode))
                && rec
                    .holders
                    .iter()
                    .all(|h| h.mode.compatible(w.mode) || self.removable(w, h))
        })
    }

    fn grant(&mut self, now: Duration, id: WaitId, w: WaitRec, fx: &mut Effects) -> Grants {
        let mut grants = Grants::with_capacity(w.resources.len());
        for r in &w.resources {
            let revoke: Vec<(u64, LostReason)> = self.resources.get(r).map_or(Vec::new(), |rec| {
                rec.holders
                    .iter()
                    .filter(|h| !h.mode.compatible(w.mode))
                    .map(|h| {
                        let why = match w.preempt && h.priority > w.priority {
                            true => LostReason::Preempted,
                            false => LostReason::SessionExpired,
                        };
                        (h.fence, why)
                    })
                    .collect()
            });
            for (fence, why) in revoke {
                let reason = match why {
                    LostReason::Preempted => w.reason.clone(),
                    _ => Some("stale_taken_over".into()),
                };
                self.end_lease(now, r, fence, End::Lost(why), reason, fx);
            }
            let fence = self.next_fence;
            self.next_fence += 1;
            let ttl = Span::new(w.ttl);
            let expires = ttl.after(now);
            let expires_at = expires.get().map(|d| self.unix(d));
            let (page, slot) = self.cells.fresh();
            let holder = Holder {
                session: w.session,
                mode: w.mode,
                token: Token::random(),
                fence,
                acquired_at: self.unix(now),
                expires,
                ttl,
                priority: w.priority,
                reason: w.reason.clone(),
                wait: id,
                page,
                slot,
            };
            grants.push(Grant {
                resource: r.clone(),
                mode: w.mode,
                session_id: w.session,
                token: holder.token,
                fence,
                acquired_at: holder.acquired_at,
                expires_at,
                ttl: ttl.get(),
                priority: w.priority,
                cell: holder.cell(),
            });
            let limit = self.cfg.history_limit;
            let blank = self.blank(now, EventKind::Acquired);
            // The record and the session are looked up once, for the lease and its event.
            let rec = self.resources.get_or_insert_with(r, || ResourceRec::new(r));
            rec.queue.remove(&w.key());
            rec.holders.push(holder);
            let settle = rec.needs_settling(limit);
            let mut session = self.sessions.get_mut(&w.session);
            if let Some(s) = session.as_deref_mut() {
                s.leases.insert(r.clone());
                s.waits.remove(&id);
            }
            let ev = Event {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                number: NonZeroU64::new(fence),
                priority: Some(w.priority),
                reason: w.reason.clone(),
                session: session.as_ref().map(|s| s.tag.clone()),
                ..blank
            };
            let rings = [Some(&mut rec.history), session.map(|s| &mut s.history)];
            let ev = numbered(&mut self.next_seq, limit, rings, ev);
            if let Some(at) = expires.get() {
                self.push_deadline(at, Due::Lease(r.clone(), fence));
            }
            self.publish(ev, fx);
            if settle {
                self.dirty.push(r.clone());
            }
        }
        grants
    }

    /// Grants every queued request that has become grantable, until none is.
    fn settle(&mut self, now: Duration, fx: &mut Effects) {
        while let Some(r) = self.dirty.pop() {
            let Some(rec) = self.resources.get(&r) else {
                continue;
            };
            if rec.queue.is_empty() {
                if rec.idle() && rec.history.is_empty() {
                    self.resources.remove(&r);
                }
                continue;
            }
            let queued: Vec<WaitId> = rec.queue.values().copied().collect();
            for id in queued {
                let w = &self.waits[&id];
                if self.can_grant(w) {
                    if let Some(w) = self.remove_wait(id) {
                        let grants = self.grant(now, id, w, fx);
                        fx.completions.push((id, Ok(grants)));
                    }
                    break;
                }
                if w.mode == Mode::Exclusive {
                    break;
                }
            }
            self.drop_if_idle(&r);
        }
    }

    /// Takes a wait out of the table and every queue it stands in.
    fn remove_wait(&mut self, id: WaitId) -> Option<WaitRec> {
        let w = self.waits.remove(&id)?;
        for r in &w.resources {
            if let Some(rec) = self.resources.get_mut(r) {
                rec.queue.remove(&w.key());
            }
            self.dirty.push(r.clone());
        }
        if let Some(s) = self.sessions.get_mut(&w.session) {
            s.waits.remove(&id);
        }
        Some(w)
    }

    /// Takes a wait out and records `dequeued` with `reason` on each of its resources.
    fn withdraw(
        &mut self,
        now: Duration,
        id: WaitId,
        reason: &str,
        fx: &mut Effects,
    ) -> Option<WaitRec> {
        let w = self.remove_wait(id)?;
        let reason: Arc<str> = reason.into();
        for r in &w.resources {
            let ev = Event {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                priority: Some(w.priority),
                reason: Some(reason.clone()),
                ..self.session_event(now, EventKind::Dequeued, w.session)
            };
            self.emit(ev, fx);
        }
        Some(w)
    }

    /// Withdraws a wait and tells its waiter `err`.
    fn fail_wait(&mut self, now: Duration, id: WaitId, err: Error, reason: &str, fx: &mut Effects) {
        if self.withdraw(now, id, reason, fx).is_some() {
            fx.completions.push((id, Err(err)));
        }
    }

    fn cancel(&mut self, now: Duration, id: WaitId, resources: &[String], fx: &mut Effects) {
        if self.waits.contains_key(&id) {
            self.fail_wait(
                now,
                id,
                Error::Cancelled("wait cancelled".into()),
                "cancelled",
                fx,
            );
            return;
        }
        for r in resources {
            let found = self.resources.get(r).and_then(|rec| {
                let h = rec.holders.iter().find(|h| h.wait == id)?;
                Some((rec.name.clone(), h.fence))
            });
            if let Some((r, fence)) = found {
                self.end_lease(now, &r, fence, End::Released, Some("cancelled".into()), fx);
            }
        }
    }

    // ----- deadlock detection -------------------------------------------------------

    /// Sessions that wait `w` waits for: holders it conflicts with and may not remove,
    /// and conflicting requests queued ahead of it.
    fn blockers(&self, w: &WaitRec) -> Vec<SessionId> {
        let mut out = Vec::new();
        for r in &w.resources {
            let Some(rec) = self.resources.get(r) else {
                continue;
            };
            for h in &rec.holders {
                if !h.mode.compatible(w.mode) && !self.removable(w, h) {
                    out.push(h.session);
                }
            }
            for (_, id) in rec.queue.range(..w.key()) {
                let ahead = &self.waits[id];
                if !ahead.mode.compatible(w.mode) {
                    out.push(ahead.session);
                }
            }
        }
        out
    }

    /// Does the new wait `id` of `session` close a cycle in the waits-for graph? Every
    /// edge it adds touches `session` (its own, and those of waits it was queued ahead
    /// of), so any new cycle runs through `session`: search from all of its waits.
    fn closes_cycle(&self, session: SessionId, id: WaitId) -> bool {
        let mut stack = self.blockers(&self.waits[&id]);
        if let Some(rec) = self.sessions.get(&session) {
            for w in &rec.waits {
                stack.extend(self.blockers(&self.waits[w]));
            }
        }
        let mut seen = HashSet::default();
        while let Some(s) = stack.pop() {
            if s == session {
                return true;
            }
            if !seen.insert(s) {
                continue;
            }
            if let Some(rec) = self.sessions.get(&s) {
                for w in &rec.waits {
                    stack.extend(self.blockers(&self.waits[w]));
                }
            }
        }
        false
    }

    // ----- leases -----------------------------------------------------------------

    /// Ends the lease `fence` on `resource`, records the event and frees the queue. False
    /// if there was no such lease, or if its holder had released it first (see
    /// `Lease::release`): then it counts as that release, not as one this call made.
    fn end_lease(
        &mut self,
        now: Duration,
        resource: &Arc<str>,
        fence: u64,
        end: End,
        reason: Option<Arc<str>>,
        fx: &mut Effects,
    ) -> bool {
        let limit = self.cfg.history_limit;
        let blank = self.blank(now, EventKind::Released);
        // The record and the session are looked up once, for the lease and its event.
        let Some(rec) = self.resources.get_mut(resource) else {
            return false;
        };
        let Some(i) = rec.holders.iter().position(|h| h.fence == fence) else {
            return false;
        };
        let h = rec.holders.remove(i);
        let settle = rec.needs_settling(limit);
        let state = match end {
            End::Released => LeaseState::Released,
            End::Lost(why) => LeaseState::Lost(why),
        };
        // A holder whose release is queued but not yet here marked the cell first: that
        // release took effect then, so the lease was released, not lost.
        let before = h.end(state);
        let (kind, reason) = match (before, end) {
            (LeaseState::Released, _) => (EventKind::Released, None),
            (_, End::Released) => (EventKind::Released, reason),
            (_, End::Lost(LostReason::Preempted)) => (EventKind::Preempted, reason),
            (_, End::Lost(LostReason::ForceReleased)) => (EventKind::ForceReleased, reason),
            (_, End::Lost(_)) => (EventKind::Expired, reason),
        };
        let mut session = self.sessions.get_mut(&h.session);
        if let Some(s) = session.as_deref_mut() {
            s.leases.remove(resource);
        }
        let ev = Event {
            kind,
            resource: Some(resource.clone()),
            mode: Some(h.mode),
            number: NonZeroU64::new(h.fence),
            priority: Some(h.priority),
            reason,
            session: session.as_ref().map(|s| s.tag.clone()),
            ..blank
        };
        let rings = [Some(&mut rec.history), session.map(|s| &mut s.history)];
        let ev = numbered(&mut self.next_seq, limit, rings, ev);
        self.publish(ev, fx);
        if settle {
            self.dirty.push(resource.clone());
        }
        before == LeaseState::Held
    }

    /// Forgets an idle resource that has no history to keep.
    fn drop_if_idle(&mut self, resource: &str) {
        if self
            .resources
            .get(resource)
            .is_some_and(|r| r.idle() && r.history.is_empty())
        {
            self.resources.remove(resource);
        }
    }

    /// The resource's own name and the holder with `token`.
    fn find_token(&self, resource: &str, token: Token) -> Result<(Arc<str>, &Holder)> {
        // A name with a record was valid when it was made: only a miss needs the check.
        let rec = self.resources.get(resource);
        if rec.is_none() {
            validate_resource(resource)?;
        }
        rec.and_then(|r| Some((r.name.clone(), r.holders.iter().find(|h| h.token == token)?)))
            .ok_or_else(|| Error::InvalidToken(resource.to_string()))
    }

    fn release(
        &mut self,
        now: Duration,
        resource: &str,
        token: Token,
        fx: &mut Effects,
    ) -> Result<()> {
        let (r, h) = self.find_token(resource, token)?;
        let (session, fence) = (h.session, h.fence);
        self.touch(now, session, fx)?;
        self.end_lease(now, &r, fence, End::Released, None, fx);
        Ok(())
    }

    fn renew(
        &mut self,
        now: Duration,
        resource: &str,
        token: Token,
        ttl: Option<Duration>,
        fx: &mut Effects,
    ) -> Result<Reply> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("ttl must be more than zero"));
        }
        let (key, h) = self.find_token(resource, token)?;
        let session = h.session;
        self.touch(now, session, fx)?;
        let rec = self
            .resources
            .get_mut(resource)
            .ok_or_else(|| Error::InvalidToken(resource.into()))?;
        let h = rec
            .holders
            .iter_mut()
            .find(|h| h.token == token)
            .ok_or_else(|| Error::InvalidToken(resource.into()))?;
        let before = h.expires.get();
        h.ttl = Span::new(ttl.or(h.ttl.get()));
        h.expires = h.ttl.after(now);
        let (expires, fence) = (h.expires.get(), h.fence);
        // The heap holds this lease at `before`; a later expiry is found when that entry
        // pops, an earlier one needs its own entry.
        if let Some(at) = expires.filter(|at| before.is_none_or(|b| *at < b)) {
            self.push_deadline(at, Due::Lease(key, fence));
        }
        Ok(Reply::Renewed {
            expires_at: expires.map(|d| self.unix(d)),
        })
    }

    fn force_release(
        &mut self,
        now: Duration,
        resource: &str,
        reason: Option<String>,
        fx: &mut Effects,
    ) -> Result<usize> {
        validate_resource(resource)?;
        if let Some(reason) = &reason {
            validate_reason(reason)?;
        }
        let Some(rec) = self.resources.get(resource) else {
            return Ok(0);
        };
        let r = rec.name.clone();
        let fences: Vec<u64> = rec.holders.iter().map(|h| h.fence).collect();
        let reason: Option<Arc<str>> = reason.map(Arc::from);
        let lost = End::Lost(LostReason::ForceReleased);
        let ended = fences
            .into_iter()
            .filter(|&fence| self.end_lease(now, &r, fence, lost, reason.clone(), fx))
            .count();
        Ok(ended)
    }

    fn check(&self, resource: &str, session: SessionId, action: Action) -> bool {
        self.resources.get(resource).is_some_and(|r| {
            r.holders.iter().any(|h| {
                h.session == session && (action == Action::Observe || h.mode == Mode::Exclusive)
            })
        })
    }

    // ----- introspection ----------------------------------------------------------

    fn status(&self, now: Duration, resource: &str) -> ResourceStatus {
        let Some(rec) = self.resources.get(resource) else {
            return ResourceStatus {
                resource: Arc::from(resource),
                locked: false,
                mode: None,
                holders: Vec::new(),
                waiters: Vec::new(),
            };
        };
        let holders = rec
            .holders
            .iter()
            .map(|h| {
                let s = self.sessions.get(&h.session);
                HolderInfo {
                    session_id: h.session,
                    session_name: s.map_or_else(|| Arc::from(""), |s| s.tag.name.clone()),
                    metadata: s.map_or_else(Default::default, |s| s.metadata.clone()),
                    mode: h.mode,
                    fence: h.fence,
                    priority: h.priority,
                    acquired_at: h.acquired_at,
                    expires_at: h.expires.get().map(|d| self.unix(d)),
                    remaining: h.expires.get().map(|d| d.saturating_sub(now).as_secs_f64()),
                    stale: s.is_some_and(|s| s.stale),
                    reason: h.reason.clone(),
                }
            })
            .collect();
        let waiters = rec
            .queue
            .values()
            .enumerate()
            .map(|(i, id)| {
                let w = &self.waits[id];
                WaiterInfo {
                    session_id: w.session,
                    session_name: self
                        .sessions
                        .get(&w.session)
                        .map_or_else(|| Arc::from(""), |s| s.tag.name.clone()),
                    mode: w.mode,
                    priority: w.priority,
                    position: i as u64 + 1,
                    queued_at: w.queued_at,
                }
            })
            .collect();
        ResourceStatus {
            resource: rec.name.clone(),
            locked: !rec.holders.is_empty(),
            mode: rec.holders.first().map(|h| h.mode),
            holders,
            waiters,
        }
    }

    fn locks(&self, now: Duration) -> Vec<ResourceStatus> {
        let mut names: Vec<&Arc<str>> = self
            .resources
            .values()
            .filter(|r| !r.holders.is_empty())
            .map(|r| &r.name)
            .collect();
        names.sort();
        names.into_iter().map(|r| self.status(now, r)).collect()
    }
}

/// Gives `ev` the next sequence number and keeps it in the history rings given (none
/// when no history is kept).
fn numbered(
    next_seq: &mut u64,
    limit: usize,
    rings: [Option<&mut Ring>; 2],
    ev: Event,
) -> Arc<Event> {
    let ev = Arc::new(Event {
        seq: *next_seq,
        ..ev
    });
    *next_seq += 1;
    if limit > 0 {
        for ring in rings.into_iter().flatten() {
            ring.push(ev.clone(), limit);
        }
    }
    ev
}

/// A history ring: the newest `limit` events of one resource, one session or the engine,
/// in 16 bytes. Most resources have a single event, kept without an allocation of its
/// own; from the second on, the events move to a deque that grows up to `limit`.
#[derive(Debug, Default)]
enum Ring {
    #[default]
    Empty,
    One(Arc<Event>),
    #[expect(
        clippy::box_collection,
        reason = "boxed, the ring takes 16 bytes, not 40"
    )]
    Many(Box<VecDeque<Arc<Event>>>),
}

impl Ring {
    /// Appends `ev` to a ring of at most `limit` events; returns the event that fell out.
    fn push(&mut self, ev: Arc<Event>, limit: usize) -> Option<Arc<Event>> {
        match self {
            _ if limit == 0 => Some(ev),
            Ring::Empty => {
                *self = Ring::One(ev);
                None
            }
            Ring::One(old) if limit == 1 => Some(std::mem::replace(old, ev)),
            Ring::One(_) => {
                let Ring::One(first) = std::mem::take(self) else {
                    unreachable!("matched One")
                };
                *self = Ring::Many(Box::new(VecDeque::from([first, ev])));
                None
            }
            Ring::Many(q) if q.len() < limit => {
                if q.len() == q.capacity() {
                    q.reserve_exact(q.len().min(limit - q.len()));
                }
                q.push_back(ev);
                None
            }
            Ring::Many(q) => {
                let old = q.pop_front();
                q.push_back(ev);
                // The next event to fall out was written long ago and is likely out of
                // the cache: start loading it now, so that dropping it later does not
                // wait for memory.
                if let Some(next) = q.front() {
                    crate::prefetch::arc(next);
                }
                old
            }
        }
    }

    /// Oldest first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Event>> {
        let (older, newer) = match self {
            Ring::Empty => (&[][..], &[][..]),
            Ring::One(ev) => (std::slice::from_ref(ev), &[][..]),
            Ring::Many(q) => q.as_slices(),
        };
        older.iter().chain(newer)
    }

    fn newest(&self) -> Option<&Arc<Event>> {
        self.iter().next_back()
    }

    fn is_empty(&self) -> bool {
        matches!(self, Ring::Empty)
    }
}

fn validate_reason(reason: &str) -> Result<()> {
    if reason.len() > MAX_RESOURCE_LEN || reason.contains('\0') {
        return Err(Error::invalid(format!(
            "reason must be at most {MAX_RESOURCE_LEN} bytes without NUL"
        )));
    }
    Ok(())
}

impl AcquireRequest {
    /// An exclusive request for `resources` that waits forever at the default priority
    /// with the engine's lock TTL; set other fields with struct update syntax.
    pub fn new(wait: WaitId, session: SessionId, resources: Vec<String>) -> Self {
        AcquireRequest {
            wait,
            session,
            resources: resources.into(),
            mode: Mode::Exclusive,
            timeout: None,
            ttl: None,
            priority: DEFAULT_PRIORITY,
            preempt: false,
            reason: None,
            break_stale: false,
        }
    }
}

impl SessionSpec {
    /// A session with this name, empty metadata and the engine's TTL and `on_expire`.
    pub fn named(name: impl Into<String>) -> Self {
        SessionSpec {
            name: name.into(),
            metadata: serde_json::Value::Null,
            ttl: None,
            on_expire: None,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "state_props.rs"]
mod props;
