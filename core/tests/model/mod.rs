//! A reference model of interlock's lock semantics (DESIGN.md, "Semantics (v1)"), and a
//! harness that drives `interlock::State` and the model side by side.
//!
//! The model is deliberately naive: plain vectors scanned linearly, every queue recomputed
//! from the list of waiting requests, the waits-for graph rebuilt and searched depth-first
//! for every new wait. It shares no code with `State`; it is written from the design and
//! from the rules `State` documents, so that the two can only agree by being right.
//!
//! What the model does not decide on its own:
//! - Random values: session ids, secrets and tokens come from `State`'s seeded generator,
//!   and wait ids from its counter. The model learns each from `State`'s reply to the
//!   command that made it (a placeholder if `State` did not make one, and then the
//!   comparison fails on the reply anyway).
//! - The order of simultaneous grants. When one change lets several queued requests be
//!   granted, DESIGN.md says nothing about which goes first, yet the order decides fences,
//!   seqs, and which of two shared requests takes a stale or preemptible holder away. The
//!   model grants, one at a time, any request that is grantable at that moment: the one
//!   `State` granted next (its next `acquired` event names it), if that one is grantable,
//!   else the first in queue order (and then the comparison shows the difference).
//!
//! Conventions where DESIGN.md is silent, taken from `State`'s documented behaviour:
//! - Deadlines that fall due in one command are processed in time order, ties broken by
//!   kind (session TTL, then lease TTL, then wait timeout) and then by id; each one's
//!   grants are made before the next deadline (a lock freed at the same instant as a
//!   timeout goes to the waiter).
//! - A holder that may be both preempted and broken as stale is preempted.
//! - An acquire that could be granted at once, by a session that waits for something
//!   else, is refused with `Deadlock` if holding it would close a cycle of waits (its
//!   priority put it ahead of queued requests that would then wait for it): it is the
//!   request that closed the cycle.
//! - `release` and `resume` count as activity of the session, like acquire and renew.
//! - Why a lost lease was lost is remembered for the last `global_history` lost leases;
//!   how an ended session ended for the last `global_history` ended sessions.
//! - A resource's history is forgotten once it is idle and its newest event has left the
//!   global ring; an ended session's history likewise.
//!
//! The module is used by `tests/replay.rs` and, through `#[path]`, by the fuzz target in
//! `fuzz/`, so it depends on nothing but `interlock` and `serde_json`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use interlock::{
    AcquireOptions, AcquireRequest, Action, Command, Config, Effects, Error, ErrorKind, Event,
    EventKind, Grant, HolderInfo, LostReason, Mode, OnExpire, Reply, ResourceStatus, Secret,
    SessionId, SessionInfo, SessionSpec, State, Token, WaitId, WaiterInfo,
};

type Outcome<T> = std::result::Result<T, Failure>;

// ---------------------------------------------------------------------------------------
// What is compared.
// ---------------------------------------------------------------------------------------

/// An event, every public field of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub seq: u64,
    pub at: f64,
    pub kind: EventKind,
    pub resource: Option<Arc<str>>,
    pub session: Option<SessionId>,
    pub session_name: Option<Arc<str>>,
    pub mode: Option<Mode>,
    pub fence: Option<u64>,
    pub priority: Option<u8>,
    pub position: Option<u64>,
    pub reason: Option<Arc<str>>,
}

impl Ev {
    pub fn of(e: &Event) -> Ev {
        Ev {
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            resource: e.resource.clone(),
            session: e.session_id(),
            session_name: e.session_name().map(Arc::from),
            mode: e.mode,
            fence: e.fence(),
            priority: e.priority,
            position: e.position(),
            reason: e.reason().map(Arc::from),
        }
    }
}

/// An error as far as the model predicts it: its kind, and why for `LockLost`. (Messages
/// are prose for people.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub lost: Option<LostReason>,
}

impl Failure {
    fn of(e: &Error) -> Failure {
        Failure {
            kind: e.kind(),
            lost: match e {
                Error::LockLost { reason, .. } => Some(*reason),
                _ => None,
            },
        }
    }
}

fn fail<T>(kind: ErrorKind) -> Outcome<T> {
    Err(Failure { kind, lost: None })
}

/// A reply, with what the model cannot know taken out (the secret of `Opened`) and events
/// in their comparable form.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Unit,
    Opened {
        session: SessionInfo,
        ttl: Option<Duration>,
    },
    Session(SessionInfo),
    Count(usize),
    Granted(Vec<Grant>),
    Queued {
        wait: WaitId,
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
    History(Vec<Ev>),
    Replay {
        events: Vec<Ev>,
        missed: Option<u64>,
    },
}

impl Answer {
    fn of(r: &Reply) -> Answer {
        let evs = |v: &[Arc<Event>]| v.iter().map(|e| Ev::of(e)).collect();
        match r {
            Reply::Unit => Answer::Unit,
            Reply::Opened { session, ttl, .. } => Answer::Opened {
                session: session.clone(),
                ttl: *ttl,
            },
            Reply::Session(s) => Answer::Session(s.clone()),
            Reply::Count(n) => Answer::Count(*n),
            Reply::Granted(g) => Answer::Granted(g.to_vec()),
            Reply::Queued { wait, position } => Answer::Queued {
                wait: *wait,
                position: *position,
            },
            Reply::Position(p) => Answer::Position(*p),
            Reply::Renewed { expires_at } => Answer::Renewed {
                expires_at: *expires_at,
            },
            Reply::Status(s) => Answer::Status(s.clone()),
            Reply::Locks(l) => Answer::Locks(l.clone()),
            Reply::Sessions(s) => Answer::Sessions(s.clone()),
            Reply::Bool(b) => Answer::Bool(*b),
            Reply::History(h) => Answer::History(evs(h)),
            Reply::Replay { events, missed } => Answer::Replay {
                events: evs(events),
                missed: *missed,
            },
        }
    }
}

/// Everything one command did that can be seen from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub reply: Outcome<Answer>,
    pub completions: Vec<(WaitId, Outcome<Vec<Grant>>)>,
    pub events: Vec<Ev>,
}

/// What `State` did, in the form the model predicts.
pub fn observe(reply: &interlock::Result<Reply>, fx: &Effects) -> Observation {
    Observation {
        reply: reply.as_ref().map(Answer::of).map_err(Failure::of),
        completions: fx
            .completions
            .iter()
            .map(|(id, r)| {
                let r = r.as_ref().map(|g| g.to_vec()).map_err(Failure::of);
                (*id, r)
            })
            .collect(),
        events: fx.events.iter().map(|e| Ev::of(e)).collect(),
    }
}

/// Where two observations first differ, for a failure message that can be read.
pub fn difference(expected: &Observation, actual: &Observation) -> String {
    if expected.reply != actual.reply {
        return format!(
            "reply differs:\n  model: {:?}\n  state: {:?}",
            expected.reply, actual.reply
        );
    }
    if expected.completions != actual.completions {
        return format!(
            "completions differ:\n  model: {:?}\n  state: {:?}",
            expected.completions, actual.completions
        );
    }
    let n = expected.events.len().max(actual.events.len());
    for i in 0..n {
        let (e, a) = (expected.events.get(i), actual.events.get(i));
        if e != a {
            return format!(
                "event {i} of {}/{} differs:\n  model: {e:?}\n  state: {a:?}",
                expected.events.len(),
                actual.events.len()
            );
        }
    }
    "no difference".into()
}

// ---------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------

const MAX_RESOURCE: usize = 1024;
const MAX_SESSION_NAME: usize = 256;
const MAX_METADATA: usize = 64 * 1024;
const STALE_TAKEN_OVER: &str = "stale_taken_over";

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.contains('\0')
}

/// A reason may be empty, but not longer than a resource name, and has no NUL.
fn valid_reason(s: &str) -> bool {
    s.len() <= MAX_RESOURCE && !s.contains('\0')
}

fn compatible(a: Mode, b: Mode) -> bool {
    a == Mode::Shared && b == Mode::Shared
}

#[derive(Debug, Clone)]
struct Session {
    id: SessionId,
    secret: Secret,
    name: Arc<str>,
    metadata: Arc<serde_json::Value>,
    ttl: Option<Duration>,
    on_expire: OnExpire,
    created_at: f64,
    last_seen: Duration,
    stale: bool,
    history: VecDeque<Ev>,
}

impl Session {
    /// A stale session has already expired: nothing more happens to it by time.
    fn expires(&self) -> Option<Duration> {
        match self.stale {
            true => None,
            false => self.ttl.map(|t| self.last_seen + t),
        }
    }
}

#[derive(Debug, Clone)]
struct Lease {
    resource: Arc<str>,
    session: SessionId,
    mode: Mode,
    token: Token,
    fence: u64,
    acquired_at: f64,
    ttl: Option<Duration>,
    expires: Option<Duration>,
    priority: u8,
    reason: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Wait {
    id: WaitId,
    session: SessionId,
    resources: Vec<Arc<str>>,
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

impl Wait {
    /// Queue order: priority first (0 most important), then arrival.
    fn key(&self) -> (u8, u64) {
        (self.priority, self.arrival)
    }

    fn wants(&self, r: &str) -> bool {
        self.resources.iter().any(|x| &**x == r)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Something that falls due at a time. The derived order (sessions, then leases, then
/// waits, each by id) breaks ties between deadlines at the same instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Session(SessionId),
    Lease(Arc<str>, u64),
    Wait(WaitId),
}

/// The reference model of one engine.
pub struct Model {
    cfg: Config,
    unix_base: f64,
    now: Duration,
    /// Open sessions, in the order they were opened.
    sessions: Vec<Session>,
    /// How recently ended sessions ended, oldest first.
    ended: VecDeque<(SessionId, Ended)>,
    ended_history: Vec<(SessionId, VecDeque<Ev>)>,
    /// Every current lease, in the order granted.
    leases: Vec<Lease>,
    /// Every waiting request; a resource's queue is those that want it, in key order.
    waits: Vec<Wait>,
    /// Why recently lost leases were lost, oldest first.
    lost: VecDeque<(Token, LostReason)>,
    global: VecDeque<Ev>,
    histories: Vec<(Arc<str>, VecDeque<Ev>)>,
    next_seq: u64,
    next_fence: u64,
    next_arrival: u64,
    placeholders: u64,
    // The command being checked: what `State` did (where learned values come from), and
    // what the model expects.
    seen_reply: Option<Reply>,
    seen_events: Vec<Ev>,
    seen_completions: Vec<(WaitId, Vec<Grant>)>,
    events: Vec<Ev>,
    completions: Vec<(WaitId, Outcome<Vec<Grant>>)>,
}

impl Model {
    pub fn new(cfg: Config, unix_base: f64) -> Model {
        Model {
            cfg,
            unix_base,
            now: Duration::ZERO,
            sessions: Vec::new(),
            ended: VecDeque::new(),
            ended_history: Vec::new(),
            leases: Vec::new(),
            waits: Vec::new(),
            lost: VecDeque::new(),
            global: VecDeque::new(),
            histories: Vec::new(),
            next_seq: 1,
            next_fence: 1,
            next_arrival: 0,
            placeholders: 0,
            seen_reply: None,
            seen_events: Vec::new(),
            seen_completions: Vec::new(),
            events: Vec::new(),
            completions: Vec::new(),
        }
    }

    /// What `cmd` at `now` should do, given what `State` answered to it (`reply`, `fx`),
    /// from which only random values and the choice among simultaneous grants are taken.
    pub fn apply(
        &mut self,
        now: Duration,
        cmd: &Command,
        reply: &interlock::Result<Reply>,
        fx: &Effects,
    ) -> Observation {
        assert!(now >= self.now, "time never runs backwards");
        self.now = now;
        self.seen_reply = reply.as_ref().ok().cloned();
        self.seen_events = fx.events.iter().map(|e| Ev::of(e)).collect();
        self.seen_completions = fx
            .completions
            .iter()
            .filter_map(|(id, r)| Some((*id, r.as_ref().ok()?.to_vec())))
            .collect();
        self.run_deadlines();
        let reply = self.execute(cmd);
        self.settle();
        Observation {
            reply,
            completions: std::mem::take(&mut self.completions),
            events: std::mem::take(&mut self.events),
        }
    }

    /// The earliest moment at which something expires or times out.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.next_due().map(|(at, _)| at)
    }

    /// A resource's holders and queue, as `State`'s `status` shows them.
    pub fn status(&self, resource: &str) -> ResourceStatus {
        let holders: Vec<HolderInfo> = self
            .holders_of(resource)
            .into_iter()
            .map(|h| {
                let s = self.session(h.session).expect("a holder's session is open");
                HolderInfo {
                    session_id: h.session,
                    session_name: s.name.clone(),
                    metadata: s.metadata.clone(),
                    mode: h.mode,
                    fence: h.fence,
                    priority: h.priority,
                    acquired_at: h.acquired_at,
                    expires_at: h.expires.map(|d| self.unix(d)),
                    remaining: h.expires.map(|d| d.saturating_sub(self.now).as_secs_f64()),
                    stale: s.stale,
                    reason: h.reason.clone(),
                }
            })
            .collect();
        let waiters = self
            .queue_of(resource)
            .into_iter()
            .enumerate()
            .map(|(i, w)| WaiterInfo {
                session_id: w.session,
                session_name: self
                    .session(w.session)
                    .expect("a waiter's session is open")
                    .name
                    .clone(),
                mode: w.mode,
                priority: w.priority,
                position: i as u64 + 1,
                queued_at: w.queued_at,
            })
            .collect();
        ResourceStatus {
            resource: Arc::from(resource),
            locked: !holders.is_empty(),
            mode: holders.first().map(|h| h.mode),
            holders,
            waiters,
        }
    }

    /// Every open session, in the order opened.
    pub fn session_list(&self) -> Vec<SessionInfo> {
        self.sessions.iter().map(|s| self.info(s)).collect()
    }

    /// Sessions, holders and queues, short, for a failure message.
    pub fn dump(&self) -> String {
        let name = |id: SessionId| {
            let s = id.to_string();
            match self.session(id) {
                Some(x) => format!("{}({})", x.name, &s[..4]),
                None => format!("?({})", &s[..4]),
            }
        };
        let mut out = String::new();
        for s in &self.sessions {
            let stale = if s.stale { " stale" } else { "" };
            out.push_str(&format!("\n  session {}{stale}", name(s.id)));
        }
        for r in RESOURCES {
            out.push_str(&format!("\n  {r}: held by"));
            for h in self.holders_of(r) {
                out.push_str(&format!(
                    " {} {:?} p{} f{};",
                    name(h.session),
                    h.mode,
                    h.priority,
                    h.fence
                ));
            }
            out.push_str(" queue");
            for w in self.queue_of(r) {
                let what = format!(
                    "{:?} p{} a{} {:?}",
                    w.mode, w.priority, w.arrival, w.resources
                );
                let flags = format!(
                    "{}{}",
                    if w.preempt { " preempt" } else { "" },
                    if w.break_stale { " break_stale" } else { "" }
                );
                out.push_str(&format!(" [w{} {} {what}{flags}]", w.id, name(w.session)));
            }
        }
        out
    }

    /// Checks what must hold between commands; `Err` says what does not.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        for h in &self.leases {
            let others: Vec<&Lease> = self
                .holders_of(&h.resource)
                .into_iter()
                .filter(|o| o.fence != h.fence)
                .collect();
            if others.iter().any(|o| !compatible(o.mode, h.mode)) {
                return Err(format!("conflicting holders of {}", h.resource));
            }
            if others.iter().any(|o| o.session == h.session) {
                return Err(format!("a session holds {} twice", h.resource));
            }
        }
        for w in &self.waits {
            if self.grantable(w) {
                return Err(format!("wait {} could be granted but waits", w.id));
            }
            if self.waits.iter().any(|v| {
                v.id != w.id && v.session == w.session && w.resources.iter().any(|r| v.wants(r))
            }) {
                return Err(format!(
                    "a session waits twice for a resource of wait {}",
                    w.id
                ));
            }
        }
        let graph = self.waits_for();
        if let Some((s, _)) = graph.iter().find(|(s, _)| Self::reaches_itself(&graph, *s)) {
            return Err(format!("session {s} is on a cycle of waits"));
        }
        Ok(())
    }

    // --- Commands --------------------------------------------------------------------

    fn execute(&mut self, cmd: &Command) -> Outcome<Answer> {
        match cmd {
            Command::OpenSession(spec) => self.open(spec),
            Command::Resume { session, secret } => {
                let s = self.open_session(*session)?;
                if s.secret != *secret {
                    return fail(ErrorKind::PermissionDenied);
                }
                self.touch(*session);
                Ok(Answer::Session(self.info(self.session(*session).unwrap())))
            }
            Command::CloseSession { session } => match self.session(*session) {
                Some(_) => Ok(Answer::Count(self.end_session(*session, Ended::Closed))),
                None if self.ended.iter().any(|(id, _)| id == session) => Ok(Answer::Count(0)),
                None => fail(ErrorKind::NotFound),
            },
            Command::Session { session } => {
                let s = self.open_session(*session)?;
                Ok(Answer::Session(self.info(s)))
            }
            Command::Heartbeat { session } => {
                self.open_session(*session)?;
                self.touch(*session);
                Ok(Answer::Unit)
            }
            Command::Acquire(req) => self.acquire(req),
            Command::Cancel { wait } => {
                if let Some(w) = self.take_wait(*wait) {
                    self.withdraw(w, "cancelled", ErrorKind::Cancelled);
                }
                Ok(Answer::Unit)
            }
            Command::Position { wait } => Ok(Answer::Position(
                self.waits
                    .iter()
                    .find(|w| w.id == *wait)
                    .map(|w| self.position(w)),
            )),
            Command::Release { resource, token } => {
                let i = self.find_token(resource, *token)?;
                self.touch(self.leases[i].session);
                self.end_lease(i, End::Released, None);
                Ok(Answer::Unit)
            }
            Command::Renew {
                resource,
                token,
                ttl,
            } => {
                if *ttl == Some(Duration::ZERO) {
                    return fail(ErrorKind::InvalidArgument);
                }
                let i = self.find_token(resource, *token)?;
                self.touch(self.leases[i].session);
                let now = self.now;
                let h = &mut self.leases[i];
                h.ttl = ttl.or(h.ttl);
                h.expires = h.ttl.map(|t| now + t);
                let expires = h.expires;
                Ok(Answer::Renewed {
                    expires_at: expires.map(|d| self.unix(d)),
                })
            }
            Command::ForceRelease {
                resource,
                reason,
                fence,
            } => {
                if !valid_name(resource, MAX_RESOURCE)
                    || reason.as_deref().is_some_and(|r| !valid_reason(r))
                {
                    return fail(ErrorKind::InvalidArgument);
                }
                let fences: Vec<u64> = self
                    .holders_of(resource)
                    .iter()
                    .map(|h| h.fence)
                    .filter(|f| fence.is_none_or(|only| only == *f))
                    .collect();
                let reason: Option<Arc<str>> = reason.as_deref().map(Arc::from);
                for f in &fences {
                    let i = self.lease_index(resource, *f).unwrap();
                    self.end_lease(i, End::Lost(LostReason::ForceReleased), reason.clone());
                }
                Ok(Answer::Count(fences.len()))
            }
            Command::Status { resource } => {
                Self::check_resource(resource)?;
                Ok(Answer::Status(self.status(resource)))
            }
            Command::Locks => {
                let mut names: Vec<Arc<str>> =
                    self.leases.iter().map(|h| h.resource.clone()).collect();
                names.sort();
                names.dedup();
                Ok(Answer::Locks(
                    names.iter().map(|r| self.status(r)).collect(),
                ))
            }
            Command::Sessions => Ok(Answer::Sessions(self.session_list())),
            Command::Check {
                resource,
                session,
                action,
            } => {
                Self::check_resource(resource)?;
                Ok(Answer::Bool(self.holders_of(resource).iter().any(|h| {
                    h.session == *session
                        && (*action == Action::Observe || h.mode == Mode::Exclusive)
                })))
            }
            Command::CheckFence { resource, fence } => {
                Self::check_resource(resource)?;
                Ok(Answer::Bool(self.lease_index(resource, *fence).is_some()))
            }
            Command::History {
                resource,
                session,
                limit,
            } => {
                if let Some(r) = resource {
                    Self::check_resource(r)?;
                }
                let ring: Option<&VecDeque<Ev>> = match (resource, session) {
                    (Some(r), _) => self
                        .histories
                        .iter()
                        .find(|(n, _)| **n == **r)
                        .map(|(_, h)| h),
                    (None, Some(s)) => match self.session(*s) {
                        Some(open) => Some(&open.history),
                        None => self
                            .ended_history
                            .iter()
                            .find(|(id, _)| id == s)
                            .map(|(_, h)| h),
                    },
                    (None, None) => Some(&self.global),
                };
                let mut events: Vec<Ev> = ring
                    .into_iter()
                    .flatten()
                    .filter(|e| session.is_none() || e.session == *session)
                    .cloned()
                    .collect();
                if let Some(n) = limit {
                    events.drain(..events.len().saturating_sub(*n));
                }
                Ok(Answer::History(events))
            }
            Command::Replay { since } => {
                // A seq not reached yet is another history's: the whole ring, and an
                // unknown number missed.
                let ahead = *since >= self.next_seq;
                let after = if ahead { 0 } else { *since };
                let oldest = self.global.front().map_or(self.next_seq, |e| e.seq);
                Ok(Answer::Replay {
                    events: self
                        .global
                        .iter()
                        .filter(|e| e.seq > after)
                        .cloned()
                        .collect(),
                    missed: (!ahead).then(|| oldest.saturating_sub(after.saturating_add(1))),
                })
            }
            Command::Close => {
                let mut ids: Vec<WaitId> = self.waits.iter().map(|w| w.id).collect();
                ids.sort_unstable();
                for id in ids {
                    self.completions.push((id, fail(ErrorKind::EngineClosed)));
                }
                // Closing ends every wait and lease at once, without an event for each.
                self.waits.clear();
                self.leases.clear();
                Ok(Answer::Unit)
            }
            Command::Tick => Ok(Answer::Unit),
        }
    }

    fn check_resource(r: &str) -> Outcome<()> {
        match valid_name(r, MAX_RESOURCE) {
            true => Ok(()),
            false => fail(ErrorKind::InvalidArgument),
        }
    }

    fn open(&mut self, spec: &SessionSpec) -> Outcome<Answer> {
        let metadata = match &spec.metadata {
            serde_json::Value::Null => serde_json::json!({}),
            m => m.clone(),
        };
        let metadata_ok = metadata.is_object()
            && serde_json::to_vec(&metadata).is_ok_and(|v| v.len() <= MAX_METADATA);
        if !valid_name(&spec.name, MAX_SESSION_NAME)
            || spec.ttl == Some(Duration::ZERO)
            || !metadata_ok
        {
            return fail(ErrorKind::InvalidArgument);
        }
        let (id, secret) = match &self.seen_reply {
            Some(Reply::Opened {
                session, secret, ..
            }) => (session.id, *secret),
            _ => (self.placeholder(), self.placeholder()),
        };
        let s = Session {
            id,
            secret,
            name: Arc::from(spec.name.as_str()),
            metadata: Arc::new(metadata),
            ttl: spec.ttl.or(self.cfg.session_ttl),
            on_expire: spec.on_expire.unwrap_or(self.cfg.on_session_expire),
            created_at: self.unix(self.now),
            last_seen: self.now,
            stale: false,
            history: VecDeque::new(),
        };
        let ttl = s.ttl;
        self.sessions.push(s);
        self.emit(self.event(EventKind::SessionOpened, id));
        Ok(Answer::Opened {
            session: self.info(self.session(id).unwrap()),
            ttl,
        })
    }

    fn acquire(&mut self, req: &AcquireRequest) -> Outcome<Answer> {
        let AcquireRequest {
            session,
            resources,
            options: o,
        } = req;
        let session = *session;
        let twice = resources
            .iter()
            .enumerate()
            .any(|(i, r)| resources[..i].contains(r));
        if resources.is_empty()
            || resources.iter().any(|r| !valid_name(r, MAX_RESOURCE))
            || twice
            || o.reason.as_deref().is_some_and(|r| !valid_reason(r))
            || o.ttl == Some(Duration::ZERO)
        {
            return fail(ErrorKind::InvalidArgument);
        }
        self.open_session(session)?;
        let busy = |r: &String| {
            self.leases
                .iter()
                .any(|h| h.session == session && *h.resource == **r)
                || self
                    .waits
                    .iter()
                    .any(|w| w.session == session && w.wants(r))
        };
        if resources.iter().any(busy) {
            return fail(ErrorKind::AlreadyHeld);
        }
        self.touch(session);
        let AcquireOptions {
            mode,
            timeout,
            ttl,
            priority,
            preempt,
            reason,
            break_stale,
            ..
        } = o.clone();
        let mut w = Wait {
            id: 0,
            session,
            resources: resources.iter().map(|r| Arc::from(r.as_str())).collect(),
            mode,
            priority,
            arrival: self.next_arrival,
            ttl: ttl.or(self.cfg.lock_ttl),
            deadline: timeout.filter(|t| !t.is_zero()).map(|t| self.now + t),
            reason: reason.as_deref().map(Arc::from),
            preempt,
            break_stale,
            queued_at: self.unix(self.now),
        };
        self.next_arrival += 1;
        if self.grantable(&w) {
            // A session that waits for something else may close a cycle by holding more:
            // its priority can put it ahead of a queued request that then waits for it.
            let waits = self.waits.iter().any(|v| v.session == session);
            if waits && self.grant_closes_cycle(&w) {
                return fail(ErrorKind::Deadlock);
            }
            return Ok(Answer::Granted(self.grant(&w, None)));
        }
        if timeout == Some(Duration::ZERO) {
            return fail(ErrorKind::LockTimeout);
        }
        w.id = match &self.seen_reply {
            Some(Reply::Queued { wait, .. }) => *wait,
            _ => self.placeholder_wait(),
        };
        self.waits.push(w.clone());
        if self.on_cycle(session) {
            // Refused as it arrives: nobody saw it queued, so no event tells of it.
            self.waits.pop();
            return fail(ErrorKind::Deadlock);
        }
        let mut position = 0;
        for r in &w.resources {
            let p = self.position_in(r, &w);
            position = position.max(p);
            let ev = Ev {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                priority: Some(w.priority),
                position: Some(p),
                reason: w.reason.clone(),
                ..self.event(EventKind::Queued, session)
            };
            self.emit(ev);
        }
        Ok(Answer::Queued {
            wait: w.id,
            position,
        })
    }

    /// The index of the current lease `token` on `resource`, or why there is none.
    fn find_token(&self, resource: &str, token: Token) -> Outcome<usize> {
        Self::check_resource(resource)?;
        if let Some(i) = self
            .leases
            .iter()
            .position(|h| *h.resource == *resource && h.token == token)
        {
            return Ok(i);
        }
        match self.lost.iter().find(|(t, _)| *t == token) {
            Some((_, why)) => Err(Failure {
                kind: ErrorKind::LockLost,
                lost: Some(*why),
            }),
            None => fail(ErrorKind::InvalidToken),
        }
    }

    // --- Sessions --------------------------------------------------------------------

    fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.iter().find(|s| s.id == id)
    }

    /// An open session, or the error a call naming a missing one gets.
    fn open_session(&self, id: SessionId) -> Outcome<&Session> {
        if let Some(s) = self.session(id) {
            return Ok(s);
        }
        match self.ended.iter().find(|(e, _)| *e == id) {
            Some((_, Ended::Expired)) => fail(ErrorKind::SessionExpired),
            _ => fail(ErrorKind::NotFound),
        }
    }

    fn info(&self, s: &Session) -> SessionInfo {
        let mut leases: Vec<Arc<str>> = self
            .leases
            .iter()
            .filter(|h| h.session == s.id)
            .map(|h| h.resource.clone())
            .collect();
        leases.sort();
        SessionInfo {
            id: s.id,
            name: s.name.clone(),
            metadata: s.metadata.clone(),
            created_at: s.created_at,
            last_seen: self.unix(s.last_seen),
            expires_at: s.expires().map(|d| self.unix(d)),
            stale: s.stale,
            leases,
        }
    }

    /// Activity of a session: its TTL starts again, and a stale session is live again.
    fn touch(&mut self, id: SessionId) {
        let now = self.now;
        let s = self.sessions.iter_mut().find(|s| s.id == id).unwrap();
        s.last_seen = now;
        if s.stale {
            s.stale = false;
            self.emit(self.event(EventKind::SessionRevived, id));
        }
    }

    fn expire_session(&mut self, id: SessionId) {
        let s = self.session(id).unwrap();
        match s.on_expire {
            OnExpire::Release => {
                self.end_session(id, Ended::Expired);
            }
            OnExpire::Keep => {
                self.fail_waits_of(id, Ended::Expired);
                self.sessions.iter_mut().find(|s| s.id == id).unwrap().stale = true;
                self.emit(self.event(EventKind::SessionStale, id));
            }
        }
    }

    fn fail_waits_of(&mut self, id: SessionId, how: Ended) {
        let mut ids: Vec<WaitId> = self
            .waits
            .iter()
            .filter(|w| w.session == id)
            .map(|w| w.id)
            .collect();
        ids.sort_unstable();
        for w in ids {
            let w = self.take_wait(w).unwrap();
            match how {
                Ended::Expired => self.withdraw(w, "session_expired", ErrorKind::SessionExpired),
                Ended::Closed => self.withdraw(w, "session_closed", ErrorKind::Cancelled),
            }
        }
    }

    /// Ends a session: its waits fail, its leases end (in name order), it is gone. Returns
    /// how many leases it held.
    fn end_session(&mut self, id: SessionId, how: Ended) -> usize {
        self.fail_waits_of(id, how);
        let (end, reason, kind) = match how {
            Ended::Closed => (End::Released, "session_closed", EventKind::SessionClosed),
            Ended::Expired => (
                End::Lost(LostReason::SessionExpired),
                "session_expired",
                EventKind::SessionExpired,
            ),
        };
        let mut held: Vec<Arc<str>> = self
            .leases
            .iter()
            .filter(|h| h.session == id)
            .map(|h| h.resource.clone())
            .collect();
        held.sort();
        for r in &held {
            let i = self
                .leases
                .iter()
                .position(|h| h.session == id && h.resource == *r)
                .unwrap();
            self.end_lease(i, end, Some(Arc::from(reason)));
        }
        self.emit(self.event(kind, id));
        let i = self.sessions.iter().position(|s| s.id == id).unwrap();
        let s = self.sessions.remove(i);
        if !s.history.is_empty() {
            self.ended_history.push((id, s.history));
        }
        self.ended.push_back((id, how));
        if self.ended.len() > self.cfg.global_history {
            self.ended.pop_front();
        }
        held.len()
    }

    // --- Queues and grants -----------------------------------------------------------

    fn holders_of(&self, r: &str) -> Vec<&Lease> {
        // Leases are kept in grant order, which is fence order.
        self.leases.iter().filter(|h| *h.resource == *r).collect()
    }

    fn lease_index(&self, r: &str, fence: u64) -> Option<usize> {
        self.leases
            .iter()
            .position(|h| *h.resource == *r && h.fence == fence)
    }

    fn queue_of(&self, r: &str) -> Vec<&Wait> {
        let mut q: Vec<&Wait> = self.waits.iter().filter(|w| w.wants(r)).collect();
        q.sort_by_key(|w| w.key());
        q
    }

    /// The 1-based place of `w` in the queue of `r`.
    fn position_in(&self, r: &str, w: &Wait) -> u64 {
        let ahead = self
            .waits
            .iter()
            .filter(|v| v.wants(r) && v.key() <= w.key());
        ahead.count() as u64
    }

    /// A request's position: its furthest place over the resources it waits for.
    fn position(&self, w: &Wait) -> u64 {
        w.resources
            .iter()
            .map(|r| self.position_in(r, w))
            .max()
            .unwrap_or(0)
    }

    /// May `w` take holder `h` away: preempt a strictly less important holder, or break
    /// the lease of a stale session?
    fn removable(&self, w: &Wait, h: &Lease) -> bool {
        (w.preempt && h.priority > w.priority)
            || (w.break_stale && self.session(h.session).is_some_and(|s| s.stale))
    }

    /// DESIGN.md: granted iff, on every resource it names, compatible with every holder
    /// (or allowed to take that holder away) and no conflicting request is queued ahead.
    fn grantable(&self, w: &Wait) -> bool {
        w.resources.iter().all(|r| {
            let holders_ok = self
                .holders_of(r)
                .iter()
                .all(|h| compatible(h.mode, w.mode) || self.removable(w, h));
            let queue_ok = self
                .waits
                .iter()
                .filter(|v| v.wants(r) && v.key() < w.key())
                .all(|v| compatible(v.mode, w.mode));
            holders_ok && queue_ok
        })
    }

    /// Grants every request that has become grantable, one at a time.
    fn settle(&mut self) {
        loop {
            let mut ready: Vec<&Wait> = self.waits.iter().filter(|w| self.grantable(w)).collect();
            if ready.is_empty() {
                return;
            }
            ready.sort_by_key(|w| w.key());
            // Which of them `State` granted next: its next `acquired` event names the
            // request's session and first resource (its preempted or taken-over holders,
            // if any, come first).
            let next = self
                .seen_events
                .iter()
                .skip(self.events.len())
                .find(|e| e.kind == EventKind::Acquired);
            let chosen = next
                .and_then(|e| {
                    ready.iter().find(|w| {
                        Some(w.session) == e.session && Some(&w.resources[0]) == e.resource.as_ref()
                    })
                })
                .unwrap_or(&ready[0])
                .id;
            let w = self.take_wait(chosen).unwrap();
            let grants = self.grant(&w, Some(w.id));
            self.completions.push((w.id, Ok(grants)));
        }
    }

    /// Grants `w` on each of its resources, in order, first taking away the holders it
    /// conflicts with (it may remove them all, or it would not be grantable). `wait` is
    /// the id it waited under, if it did: where its tokens are learned.
    fn grant(&mut self, w: &Wait, wait: Option<WaitId>) -> Vec<Grant> {
        let mut grants = Vec::new();
        for r in &w.resources {
            let victims: Vec<u64> = self
                .holders_of(r)
                .iter()
                .filter(|h| !compatible(h.mode, w.mode))
                .map(|h| h.fence)
                .collect();
            for f in victims {
                let i = self.lease_index(r, f).unwrap();
                let h = &self.leases[i];
                let (why, reason) = match w.preempt && h.priority > w.priority {
                    true => (LostReason::Preempted, w.reason.clone()),
                    false => (
                        LostReason::SessionExpired,
                        Some(Arc::from(STALE_TAKEN_OVER)),
                    ),
                };
                self.end_lease(i, End::Lost(why), reason);
            }
            let fence = self.next_fence;
            self.next_fence += 1;
            let expires = w.ttl.map(|t| self.now + t);
            let token = self.seen_token(wait, r);
            let lease = Lease {
                resource: r.clone(),
                session: w.session,
                mode: w.mode,
                token,
                fence,
                acquired_at: self.unix(self.now),
                ttl: w.ttl,
                expires,
                priority: w.priority,
                reason: w.reason.clone(),
            };
            grants.push(Grant {
                resource: r.clone(),
                mode: w.mode,
                session_id: w.session,
                token,
                fence,
                acquired_at: lease.acquired_at,
                expires_at: expires.map(|d| self.unix(d)),
                ttl: w.ttl,
                priority: w.priority,
            });
            self.leases.push(lease);
            let ev = Ev {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                fence: Some(fence),
                priority: Some(w.priority),
                reason: w.reason.clone(),
                ..self.event(EventKind::Acquired, w.session)
            };
            self.emit(ev);
        }
        grants
    }

    /// The token `State` gave the lease on `r` of the grant it answered (`wait` None) or
    /// completed (`wait`).
    fn seen_token(&mut self, wait: Option<WaitId>, r: &str) -> Token {
        let seen = match wait {
            None => match &self.seen_reply {
                Some(Reply::Granted(g)) => g.iter().find(|g| *g.resource == *r).map(|g| g.token),
                _ => None,
            },
            Some(id) => self
                .seen_completions
                .iter()
                .filter(|(w, _)| *w == id)
                .flat_map(|(_, g)| g)
                .find(|g| *g.resource == *r)
                .map(|g| g.token),
        };
        seen.unwrap_or_else(|| self.placeholder())
    }

    fn take_wait(&mut self, id: WaitId) -> Option<Wait> {
        let i = self.waits.iter().position(|w| w.id == id)?;
        Some(self.waits.remove(i))
    }

    /// A wait leaves its queues unfulfilled: `dequeued` on each resource, and its waiter
    /// is told `kind`.
    fn withdraw(&mut self, w: Wait, reason: &str, kind: ErrorKind) {
        for r in &w.resources {
            let ev = Ev {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                priority: Some(w.priority),
                reason: Some(Arc::from(reason)),
                ..self.event(EventKind::Dequeued, w.session)
            };
            self.emit(ev);
        }
        self.completions.push((w.id, fail(kind)));
    }

    fn end_lease(&mut self, i: usize, end: End, reason: Option<Arc<str>>) {
        let h = self.leases.remove(i);
        let kind = match end {
            End::Released => EventKind::Released,
            End::Lost(why) => {
                self.lost.push_back((h.token, why));
                if self.lost.len() > self.cfg.global_history {
                    self.lost.pop_front();
                }
                match why {
                    LostReason::Preempted => EventKind::Preempted,
                    LostReason::ForceReleased => EventKind::ForceReleased,
                    _ => EventKind::Expired,
                }
            }
        };
        let ev = Ev {
            resource: Some(h.resource.clone()),
            mode: Some(h.mode),
            fence: Some(h.fence),
            priority: Some(h.priority),
            reason,
            ..self.event(kind, h.session)
        };
        self.emit(ev);
    }

    /// Would granting `w` now put its session on a cycle of waits?
    fn grant_closes_cycle(&self, w: &Wait) -> bool {
        let mut trial = self.sketch();
        trial.grant(w, None);
        trial.on_cycle(w.session)
    }

    /// A copy to try something on: all but the history (costly to copy, not needed).
    fn sketch(&self) -> Model {
        let sessions = self.sessions.iter().map(|s| Session {
            history: VecDeque::new(),
            ..s.clone()
        });
        Model {
            cfg: self.cfg.clone(),
            unix_base: self.unix_base,
            now: self.now,
            sessions: sessions.collect(),
            ended: self.ended.clone(),
            ended_history: Vec::new(),
            leases: self.leases.clone(),
            waits: self.waits.clone(),
            lost: self.lost.clone(),
            global: VecDeque::new(),
            histories: Vec::new(),
            next_seq: self.next_seq,
            next_fence: self.next_fence,
            next_arrival: self.next_arrival,
            placeholders: self.placeholders,
            seen_reply: None,
            seen_events: Vec::new(),
            seen_completions: Vec::new(),
            events: Vec::new(),
            completions: Vec::new(),
        }
    }

    /// The waits-for graph: for each session that waits, the sessions it waits for. An
    /// edge runs from a waiting request's session to each session that holds one of its
    /// resources in a conflicting mode (and may not be taken away by it), and to each
    /// session with a conflicting request queued ahead of it.
    fn waits_for(&self) -> Vec<(SessionId, Vec<SessionId>)> {
        let mut graph: Vec<(SessionId, Vec<SessionId>)> = Vec::new();
        for w in &self.waits {
            let mut out = Vec::new();
            for r in &w.resources {
                for h in self.holders_of(r) {
                    if !compatible(h.mode, w.mode) && !self.removable(w, h) {
                        out.push(h.session);
                    }
                }
                for v in self
                    .waits
                    .iter()
                    .filter(|v| v.wants(r) && v.key() < w.key())
                {
                    if !compatible(v.mode, w.mode) {
                        out.push(v.session);
                    }
                }
            }
            match graph.iter_mut().find(|(s, _)| *s == w.session) {
                Some((_, edges)) => edges.extend(out),
                None => graph.push((w.session, out)),
            }
        }
        graph
    }

    /// Does `s` wait, through a chain of waits-for edges, for itself?
    fn on_cycle(&self, s: SessionId) -> bool {
        Self::reaches_itself(&self.waits_for(), s)
    }

    fn reaches_itself(graph: &[(SessionId, Vec<SessionId>)], s: SessionId) -> bool {
        let next = |x: SessionId| {
            graph
                .iter()
                .filter(move |(y, _)| *y == x)
                .flat_map(|(_, e)| e)
        };
        let mut seen = Vec::new();
        let mut stack: Vec<SessionId> = next(s).copied().collect();
        while let Some(x) = stack.pop() {
            if x == s {
                return true;
            }
            if !seen.contains(&x) {
                seen.push(x);
                stack.extend(next(x));
            }
        }
        false
    }

    // --- Time ------------------------------------------------------------------------

    fn next_due(&self) -> Option<(Duration, Due)> {
        let sessions = self
            .sessions
            .iter()
            .filter_map(|s| Some((s.expires()?, Due::Session(s.id))));
        let leases = self
            .leases
            .iter()
            .filter_map(|h| Some((h.expires?, Due::Lease(h.resource.clone(), h.fence))));
        let waits = self
            .waits
            .iter()
            .filter_map(|w| Some((w.deadline?, Due::Wait(w.id))));
        sessions.chain(leases).chain(waits).min()
    }

    /// Everything that fell due by now, in the order it fell due, each followed by the
    /// grants it made possible.
    fn run_deadlines(&mut self) {
        while let Some((at, due)) = self.next_due() {
            if at > self.now {
                break;
            }
            match due {
                Due::Session(id) => self.expire_session(id),
                Due::Lease(r, fence) => {
                    let i = self.lease_index(&r, fence).unwrap();
                    self.end_lease(i, End::Lost(LostReason::Expired), None);
                }
                Due::Wait(id) => {
                    let w = self.take_wait(id).unwrap();
                    self.withdraw(w, "timeout", ErrorKind::LockTimeout);
                }
            }
            self.settle();
        }
    }

    // --- Events and history ----------------------------------------------------------

    fn unix(&self, d: Duration) -> f64 {
        self.unix_base + d.as_secs_f64()
    }

    /// An event of `kind` about session `id` (open), other fields to fill in.
    fn event(&self, kind: EventKind, id: SessionId) -> Ev {
        Ev {
            seq: 0,
            at: self.unix(self.now),
            kind,
            resource: None,
            session: Some(id),
            session_name: self.session(id).map(|s| s.name.clone()),
            mode: None,
            fence: None,
            priority: None,
            position: None,
            reason: None,
        }
    }

    /// Numbers an event and keeps it in the history of its resource, its session and the
    /// engine.
    fn emit(&mut self, mut ev: Ev) {
        ev.seq = self.next_seq;
        self.next_seq += 1;
        let limit = self.cfg.history_limit;
        let push = |ring: &mut VecDeque<Ev>, ev: &Ev| {
            ring.push_back(ev.clone());
            if ring.len() > limit {
                ring.pop_front();
            }
        };
        if limit > 0 {
            if let Some(r) = &ev.resource {
                match self.histories.iter_mut().find(|(n, _)| n == r) {
                    Some((_, ring)) => push(ring, &ev),
                    None => self
                        .histories
                        .push((r.clone(), VecDeque::from([ev.clone()]))),
                }
            }
            if let Some(id) = ev.session {
                if let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) {
                    push(&mut s.history, &ev);
                } else if let Some((_, ring)) =
                    self.ended_history.iter_mut().find(|(s, _)| *s == id)
                {
                    push(ring, &ev);
                }
            }
        }
        self.global.push_back(ev.clone());
        if self.global.len() > self.cfg.global_history {
            let old = self.global.pop_front().unwrap();
            self.forget(&old);
        }
        self.events.push(ev);
    }

    /// An idle resource's history, and an ended session's, last as long as their newest
    /// event is in the global ring.
    fn forget(&mut self, old: &Ev) {
        let gone = |ring: &VecDeque<Ev>| ring.back().is_none_or(|e| e.seq <= old.seq);
        if let Some(r) = &old.resource {
            let idle = self.holders_of(r).is_empty() && self.queue_of(r).is_empty();
            if idle {
                self.histories.retain(|(n, ring)| n != r || !gone(ring));
            }
        }
        if let Some(id) = old.session {
            self.ended_history
                .retain(|(s, ring)| *s != id || !gone(ring));
        }
    }

    // --- Placeholders ----------------------------------------------------------------

    /// A value of a UUID type that `State` never hands out, for a value the model expects
    /// but `State` did not give (the comparison then fails on that command).
    fn placeholder<T: std::str::FromStr>(&mut self) -> T
    where
        T::Err: std::fmt::Debug,
    {
        self.placeholders += 1;
        format!("ffffffff-ffff-4fff-bfff-{:012x}", self.placeholders)
            .parse()
            .unwrap()
    }

    fn placeholder_wait(&mut self) -> WaitId {
        self.placeholders += 1;
        u64::MAX - self.placeholders
    }
}

// ---------------------------------------------------------------------------------------
// Random runs: operations, and a driver that turns them into concrete commands.
// ---------------------------------------------------------------------------------------

/// The resources of a run. An index past the end names the invalid (empty) resource.
pub const RESOURCES: [&str; 4] = ["r0", "r1", "r2", "r3"];

fn resource(i: u8) -> &'static str {
    RESOURCES.get(usize::from(i)).copied().unwrap_or("")
}

/// One step of a random run, in terms of what is known when it runs. Indexes pick among
/// things the run has seen: below 128 the live ones (open sessions, pending waits, current
/// leases), from 128 to 249 any ever seen, from 250 on one that never existed. Durations
/// are milliseconds.
#[derive(Debug, Clone)]
pub enum Op {
    Open {
        ttl: Option<u16>,
        /// `None`: the engine's default; `Some(true)`: keep.
        keep: Option<bool>,
        /// 0: none, 1: an object, 2: not an object (refused).
        metadata: u8,
        bad_name: bool,
    },
    Close(u8),
    Heartbeat(u8),
    Resume {
        session: u8,
        right_secret: bool,
    },
    Session(u8),
    Acquire(Acquire),
    Cancel(u8),
    Position(u8),
    Release {
        lease: u8,
        other_resource: bool,
    },
    Renew {
        lease: u8,
        ttl: Option<u16>,
    },
    ForceRelease {
        resource: u8,
        reason: u8,
    },
    Status(u8),
    Locks,
    Sessions,
    Check {
        resource: u8,
        session: u8,
        control: bool,
    },
    CheckFence {
        resource: u8,
        /// How far below the newest fence.
        back: u8,
    },
    History {
        resource: Option<u8>,
        session: Option<u8>,
        limit: Option<u8>,
    },
    Replay {
        /// How far below two past the newest seq (0 and 1: a seq not reached yet).
        back: u8,
    },
    Tick,
    /// Closes the engine (State goes on taking commands after it).
    CloseEngine,
}

#[derive(Debug, Clone)]
pub struct Acquire {
    pub session: u8,
    pub resources: Vec<u8>,
    pub shared: bool,
    pub timeout: Option<u16>,
    pub ttl: Option<u16>,
    pub priority: u8,
    pub preempt: bool,
    pub break_stale: bool,
    /// 0: none, 1: a reason, 2: empty, 3: with a NUL (refused).
    pub reason: u8,
}

fn ms(v: u16) -> Duration {
    Duration::from_millis(u64::from(v))
}

fn reason(i: u8) -> Option<String> {
    match i % 4 {
        0 => None,
        1 => Some("maintenance".into()),
        2 => Some(String::new()),
        _ => Some("bad\0reason".into()),
    }
}

/// Turns operations into commands, naming sessions, waits and leases the run has seen:
/// it learns them from `State`'s replies and effects.
#[derive(Debug, Default)]
pub struct Driver {
    /// Every session opened, with its secret.
    sessions: Vec<(SessionId, Secret)>,
    open: Vec<SessionId>,
    waits: Vec<WaitId>,
    pending: Vec<WaitId>,
    /// Every grant: resource, token, fence.
    grants: Vec<(Arc<str>, Token, u64)>,
    current: Vec<u64>,
    newest_seq: u64,
    newest_fence: u64,
    opened: usize,
}

fn unknown_session() -> SessionId {
    "2f1e8a55-6a4e-4a5b-9d2c-3f0c5a7d9e11".parse().unwrap()
}

fn unknown_token() -> Token {
    "00000000-0000-4000-8000-000000000000".parse().unwrap()
}

fn pick<T: Copy>(live: &[T], all: &[T], i: u8, none: T) -> T {
    let from = |v: &[T], i: usize| v.get(i % v.len().max(1)).copied().unwrap_or(none);
    match i {
        0..128 => from(live, usize::from(i)),
        128..250 => from(all, usize::from(i - 128)),
        _ => none,
    }
}

impl Driver {
    fn session(&self, i: u8) -> SessionId {
        let all: Vec<SessionId> = self.sessions.iter().map(|(id, _)| *id).collect();
        pick(&self.open, &all, i, unknown_session())
    }

    /// A grant: resource, token, fence.
    fn lease(&self, i: u8) -> (Arc<str>, Token, u64) {
        let current: Vec<usize> = (0..self.grants.len())
            .filter(|&g| self.current.contains(&self.grants[g].2))
            .collect();
        let all: Vec<usize> = (0..self.grants.len()).collect();
        match pick(&current, &all, i, usize::MAX) {
            usize::MAX => (Arc::from("r0"), unknown_token(), 0),
            g => self.grants[g].clone(),
        }
    }

    /// The concrete command for `op`, given what the run has seen so far.
    pub fn command(&mut self, op: &Op) -> Command {
        match op {
            Op::Open {
                ttl,
                keep,
                metadata,
                bad_name,
            } => {
                self.opened += 1;
                let name = match bad_name {
                    true => String::new(),
                    false => format!("s{}", self.opened),
                };
                Command::OpenSession(SessionSpec {
                    ttl: ttl.map(ms),
                    on_expire: keep.map(|k| if k { OnExpire::Keep } else { OnExpire::Release }),
                    metadata: match metadata % 3 {
                        0 => serde_json::Value::Null,
                        1 => serde_json::json!({"user": "ana", "pid": 42}),
                        _ => serde_json::json!([1, 2]),
                    },
                    ..SessionSpec::named(name)
                })
            }
            Op::Close(i) => Command::CloseSession {
                session: self.session(*i),
            },
            Op::Heartbeat(i) => Command::Heartbeat {
                session: self.session(*i),
            },
            Op::Resume {
                session,
                right_secret,
            } => {
                let id = self.session(*session);
                let secret = match self.sessions.iter().find(|(s, _)| *s == id) {
                    Some((_, secret)) if *right_secret => *secret,
                    _ => "11111111-1111-4111-8111-111111111111".parse().unwrap(),
                };
                Command::Resume {
                    session: id,
                    secret,
                }
            }
            Op::Session(i) => Command::Session {
                session: self.session(*i),
            },
            Op::Acquire(a) => Command::Acquire(AcquireRequest {
                session: self.session(a.session),
                resources: a
                    .resources
                    .iter()
                    .map(|&r| resource(r).to_string())
                    .collect(),
                options: AcquireOptions {
                    mode: if a.shared {
                        Mode::Shared
                    } else {
                        Mode::Exclusive
                    },
                    timeout: a.timeout.map(ms),
                    ttl: a.ttl.map(ms),
                    priority: a.priority,
                    preempt: a.preempt,
                    reason: reason(a.reason),
                    break_stale: a.break_stale,
                    on_lost: None,
                },
            }),
            Op::Cancel(i) => Command::Cancel {
                wait: pick(&self.pending, &self.waits, *i, 999_999),
            },
            Op::Position(i) => Command::Position {
                wait: pick(&self.pending, &self.waits, *i, 999_999),
            },
            Op::Release {
                lease,
                other_resource,
            } => {
                let (r, token, _) = self.lease(*lease);
                let resource: Arc<str> = match other_resource {
                    true => Arc::from(if &*r == "r1" { "r2" } else { "r1" }),
                    false => r,
                };
                Command::Release { resource, token }
            }
            Op::Renew { lease, ttl } => {
                let (r, token, _) = self.lease(*lease);
                Command::Renew {
                    resource: r.to_string(),
                    token,
                    ttl: ttl.map(ms),
                }
            }
            Op::ForceRelease {
                resource: r,
                reason: why,
            } => Command::ForceRelease {
                resource: resource(*r).into(),
                reason: reason(*why),
                fence: None,
            },
            Op::Status(r) => Command::Status {
                resource: resource(*r).into(),
            },
            Op::Locks => Command::Locks,
            Op::Sessions => Command::Sessions,
            Op::Check {
                resource: r,
                session,
                control,
            } => Command::Check {
                resource: resource(*r).into(),
                session: self.session(*session),
                action: if *control {
                    Action::Control
                } else {
                    Action::Observe
                },
            },
            Op::CheckFence { resource: r, back } => Command::CheckFence {
                resource: resource(*r).into(),
                fence: self.newest_fence.saturating_sub(u64::from(*back)),
            },
            Op::History {
                resource: r,
                session,
                limit,
            } => Command::History {
                resource: r.map(|r| resource(r).into()),
                session: session.map(|s| self.session(s)),
                limit: limit.map(usize::from),
            },
            Op::Replay { back } => Command::Replay {
                since: (self.newest_seq + 2).saturating_sub(u64::from(*back)),
            },
            Op::Tick => Command::Tick,
            Op::CloseEngine => Command::Close,
        }
    }

    /// Learns what a command made: sessions, waits, leases, and what ended.
    pub fn learn(&mut self, reply: &interlock::Result<Reply>, fx: &Effects) {
        let mut grants: Vec<&Grant> = Vec::new();
        match reply {
            Ok(Reply::Opened {
                session, secret, ..
            }) => {
                self.sessions.push((session.id, *secret));
                self.open.push(session.id);
            }
            Ok(Reply::Queued { wait, .. }) => {
                self.waits.push(*wait);
                self.pending.push(*wait);
            }
            Ok(Reply::Granted(g)) => grants.extend(g),
            _ => {}
        }
        for (id, outcome) in &fx.completions {
            self.pending.retain(|w| w != id);
            if let Ok(g) = outcome {
                grants.extend(g);
            }
        }
        for g in grants {
            self.grants.push((g.resource.clone(), g.token, g.fence));
            self.current.push(g.fence);
            self.newest_fence = self.newest_fence.max(g.fence);
        }
        for e in &fx.events {
            self.newest_seq = self.newest_seq.max(e.seq);
            if let Some((fence, _)) = e.lease_end() {
                self.current.retain(|f| *f != fence);
            }
            if matches!(e.kind, EventKind::SessionClosed | EventKind::SessionExpired) {
                self.open.retain(|s| Some(*s) != e.session_id());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The differential harness.
// ---------------------------------------------------------------------------------------

/// The unix time at which a run's monotonic clock reads zero.
pub const UNIX_BASE: f64 = 1_700_000_000.0;

/// `State` and the model, fed the same commands at the same times, compared after each.
pub struct Harness {
    pub state: State,
    pub model: Model,
    pub driver: Driver,
    pub now: Duration,
    /// Apply a `Tick` at every deadline that falls between two commands, as the actor
    /// does (it sleeps until `State::next_deadline`). Without, one command may find
    /// several deadlines due at once.
    pub tick_at_deadlines: bool,
    /// Every command applied, at its time: the reproducer of a failure.
    pub trace: Vec<(Duration, Command)>,
}

impl Harness {
    pub fn new(cfg: Config, seed: [u8; 32], tick_at_deadlines: bool) -> Harness {
        Harness {
            state: State::new(cfg.clone(), UNIX_BASE, seed),
            model: Model::new(cfg, UNIX_BASE),
            driver: Driver::default(),
            now: Duration::ZERO,
            tick_at_deadlines,
            trace: Vec::new(),
        }
    }

    /// Moves the clock on by `advance`, then runs `op`; `Err` tells the first difference
    /// between `State` and the model, with the commands that led to it.
    pub fn step(&mut self, advance: Duration, op: &Op) -> std::result::Result<(), String> {
        let target = self.now + advance;
        if self.tick_at_deadlines {
            loop {
                let next = [self.state.next_deadline(), self.model.next_deadline()]
                    .into_iter()
                    .flatten()
                    .filter(|d| *d > self.now && *d < target)
                    .min();
                let Some(at) = next else { break };
                self.now = at;
                self.run(Command::Tick)?;
            }
        }
        self.now = target;
        let cmd = self.driver.command(op);
        self.run(cmd)
    }

    /// Applies `cmd` to both and compares everything.
    pub fn run(&mut self, cmd: Command) -> std::result::Result<(), String> {
        self.trace.push((self.now, cmd.clone()));
        let (reply, fx) = self.state.apply(self.now, cmd.clone());
        let actual = observe(&reply, &fx);
        let expected = self.model.apply(self.now, &cmd, &reply, &fx);
        self.driver.learn(&reply, &fx);
        if expected != actual {
            return Err(self.failure(&difference(&expected, &actual)));
        }
        self.compare_state()
            .and_then(|()| self.model.check_invariants())
            .map_err(|e| self.failure(&e))
    }

    /// Holders, queues and sessions, as `State` lists them, against the model's.
    fn compare_state(&mut self) -> std::result::Result<(), String> {
        let mut ask = |cmd: Command| {
            let (reply, fx) = self.state.apply(self.now, cmd);
            match fx.events.is_empty() && fx.completions.is_empty() {
                true => Ok(reply),
                false => Err(format!("a query changed something: {fx:?}")),
            }
        };
        for r in RESOURCES {
            let seen = ask(Command::Status { resource: r.into() })?;
            let expected = Ok(Reply::Status(self.model.status(r)));
            if seen != expected {
                return Err(format!(
                    "status of {r} differs:\n  model: {expected:?}\n  state: {seen:?}"
                ));
            }
        }
        let seen = ask(Command::Sessions)?;
        let expected = Ok(Reply::Sessions(self.model.session_list()));
        if seen != expected {
            return Err(format!(
                "sessions differ:\n  model: {expected:?}\n  state: {seen:?}"
            ));
        }
        // The actor sleeps until `next_deadline`: it must not be later than the first
        // thing really due (an earlier, stale one only wakes it for nothing).
        if let Some(due) = self.model.next_deadline() {
            if self.state.next_deadline().is_none_or(|d| d > due) {
                return Err(format!(
                    "State's next deadline {:?} is after the next thing due at {due:?}",
                    self.state.next_deadline()
                ));
            }
        }
        Ok(())
    }

    fn failure(&self, what: &str) -> String {
        let skip = self.trace.len().saturating_sub(60);
        let mut out = format!(
            "{what}\nafter {} commands; the last ones:\n",
            self.trace.len()
        );
        for (i, (at, cmd)) in self.trace.iter().enumerate().skip(skip) {
            out.push_str(&format!("  {i:5} {at:?} {cmd:?}\n"));
        }
        out.push_str(&format!("the model then: {}", self.model.dump()));
        out
    }
}
