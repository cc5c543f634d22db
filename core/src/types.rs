//! Plain data types shared by the state machine, the handle and the bindings.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_LEN: usize = 1024;
/// Longest session name, in bytes.
pub const MAX_SESSION_NAME_LEN: usize = 256;
/// Largest session metadata, as compact JSON, in bytes.
pub const MAX_METADATA_LEN: usize = 64 * 1024;
/// Priority of a request that does not say (0 is most important, 255 least).
pub const DEFAULT_PRIORITY: u8 = 100;

/// How a lease holds its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Conflicts with everything.
    Exclusive,
    /// Compatible with other shared holders (alias `observer`).
    Shared,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }

    pub fn compatible(self, other: Mode) -> bool {
        self == Mode::Shared && other == Mode::Shared
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exclusive" => Ok(Mode::Exclusive),
            "shared" | "observer" => Ok(Mode::Shared),
            _ => Err(Error::invalid(format!(
                "unknown mode {s:?} (expected \"exclusive\", \"shared\" or \"observer\")"
            ))),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `check` asks about a session and a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// True iff the session holds the resource exclusively.
    Control,
    /// True iff the session holds the resource in any mode.
    Observe,
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "control" => Ok(Action::Control),
            "observe" => Ok(Action::Observe),
            _ => Err(Error::invalid(format!(
                "unknown action {s:?} (expected \"control\" or \"observe\")"
            ))),
        }
    }
}

/// What happens to a session whose TTL runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpire {
    /// The session ends and its leases are released.
    #[default]
    Release,
    /// The session turns stale; its leases stay held until broken or revived.
    Keep,
}

impl FromStr for OnExpire {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "release" => Ok(OnExpire::Release),
            "keep" => Ok(OnExpire::Keep),
            _ => Err(Error::invalid(format!(
                "unknown on_expire {s:?} (expected \"release\" or \"keep\")"
            ))),
        }
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    Preempted,
    Expired,
    ForceReleased,
    SessionExpired,
}

impl LostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Preempted => "preempted",
            LostReason::Expired => "expired",
            LostReason::ForceReleased => "force_released",
            LostReason::SessionExpired => "session_expired",
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session's public id: a UUIDv4, shown as its hyphenated string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    pub(crate) fn random() -> Self {
        SessionId(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(SessionId)
            .map_err(|_| Error::invalid(format!("{s:?} is not a session id")))
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A lease's secret token (UUIDv4). Never shown in status, listings, events or history;
/// its `Debug` output is redacted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(uuid::Uuid);

impl Token {
    pub(crate) fn random() -> Self {
        Token(uuid::Uuid::new_v4())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The token as a string, for the holder to keep and hand back on release.
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for Token {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(Token)
            .map_err(|_| Error::invalid("token is not a UUID string"))
    }
}

/// The one cell shared between a [`crate::Lease`] and the engine's record of it: the
/// actor sets it at the moment the lease ends, so `valid` and `lost_reason` are exact.
///
/// Cells come in pages of 64, one allocation for 64 leases. A cell is never reused: a page
/// is freed when the last lease and `Lease` on it are gone.
#[derive(Debug, Clone)]
pub struct LeaseCell {
    page: Arc<CellPage>,
    slot: u8,
}

pub(crate) const CELLS_PER_PAGE: usize = 64;

#[derive(Debug)]
pub(crate) struct CellPage([AtomicU8; CELLS_PER_PAGE]);

impl Default for CellPage {
    fn default() -> Self {
        CellPage(std::array::from_fn(|_| AtomicU8::new(CellPage::HELD)))
    }
}

/// Hands out fresh cells (each held) as a page and a slot in it.
#[derive(Debug, Default)]
pub(crate) struct Cells {
    page: Arc<CellPage>,
    used: usize,
}

impl Cells {
    pub(crate) fn fresh(&mut self) -> (Arc<CellPage>, u8) {
        if self.used == CELLS_PER_PAGE {
            *self = Cells::default();
        }
        self.used += 1;
        (self.page.clone(), (self.used - 1) as u8)
    }
}

/// Where a lease stands, as its [`LeaseCell`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Held,
    Released,
    Lost(LostReason),
    /// The engine closed while it was held.
    Closed,
}

impl LeaseCell {
    pub(crate) fn new(page: Arc<CellPage>, slot: u8) -> Self {
        LeaseCell { page, slot }
    }

    pub fn get(&self) -> LeaseState {
        self.page.get(self.slot)
    }

    /// Moves a held lease to `to`; returns where it stood before (`Held` iff it moved).
    pub(crate) fn leave_held(&self, to: LeaseState) -> LeaseState {
        self.page.leave_held(self.slot, to)
    }
}

impl CellPage {
    const HELD: u8 = 0;
    const RELEASED: u8 = 1;

    fn decode(v: u8) -> LeaseState {
        match v {
            Self::HELD => LeaseState::Held,
            Self::RELEASED => LeaseState::Released,
            2 => LeaseState::Lost(LostReason::Preempted),
            3 => LeaseState::Lost(LostReason::Expired),
            4 => LeaseState::Lost(LostReason::ForceReleased),
            5 => LeaseState::Lost(LostReason::SessionExpired),
            _ => LeaseState::Closed,
        }
    }

    fn encode(state: LeaseState) -> u8 {
        match state {
            LeaseState::Held => Self::HELD,
            LeaseState::Released => Self::RELEASED,
            LeaseState::Lost(LostReason::Preempted) => 2,
            LeaseState::Lost(LostReason::Expired) => 3,
            LeaseState::Lost(LostReason::ForceReleased) => 4,
            LeaseState::Lost(LostReason::SessionExpired) => 5,
            LeaseState::Closed => 6,
        }
    }

    pub(crate) fn get(&self, slot: u8) -> LeaseState {
        Self::decode(self.0[usize::from(slot)].load(Ordering::Acquire))
    }

    /// A cell leaves `Held` once, to whichever end comes first: the holder's release
    /// (which does not wait for the actor) or the actor's. Returns the state before.
    pub(crate) fn leave_held(&self, slot: u8, to: LeaseState) -> LeaseState {
        let cell = &self.0[usize::from(slot)];
        match cell.compare_exchange(
            Self::HELD,
            Self::encode(to),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => LeaseState::Held,
            Err(v) => Self::decode(v),
        }
    }
}

/// What kind of thing an [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SessionOpened,
    SessionClosed,
    SessionExpired,
    SessionStale,
    SessionRevived,
    Acquired,
    Released,
    Expired,
    ForceReleased,
    Preempted,
    Queued,
    Dequeued,
    /// Only in subscriptions: `position` events were missed here.
    Lagged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionOpened => "session_opened",
            EventKind::SessionClosed => "session_closed",
            EventKind::SessionExpired => "session_expired",
            EventKind::SessionStale => "session_stale",
            EventKind::SessionRevived => "session_revived",
            EventKind::Acquired => "acquired",
            EventKind::Released => "released",
            EventKind::Expired => "expired",
            EventKind::ForceReleased => "force_released",
            EventKind::Preempted => "preempted",
            EventKind::Queued => "queued",
            EventKind::Dequeued => "dequeued",
            EventKind::Lagged => "lagged",
        }
    }
}

/// Something that happened; there is never a token. Fields that do not apply are `None`,
/// the same for the accessors. For `lagged`, `position` holds the number of events missed.
///
/// Kept small (72 bytes), since the engine holds an event for each held lease in that
/// resource's history: a session's id and name are one shared pointer, and a fence and a
/// position share one slot (no kind of event has both).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    /// Unix seconds.
    pub at: f64,
    pub kind: EventKind,
    pub resource: Option<Arc<str>>,
    pub mode: Option<Mode>,
    pub priority: Option<u8>,
    pub(crate) session: Option<Arc<SessionTag>>,
    /// The fence of a lease's event, the position of `queued`, the count of `lagged`.
    pub(crate) number: Option<NonZeroU64>,
    pub(crate) reason: Option<Arc<str>>,
}

/// A session's id and name, shared by its record and all its events.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SessionTag {
    pub(crate) id: SessionId,
    pub(crate) name: Arc<str>,
}

impl Event {
    pub(crate) fn lagged(missed: u64) -> Self {
        Event {
            seq: 0,
            at: 0.0,
            kind: EventKind::Lagged,
            resource: None,
            mode: None,
            priority: None,
            session: None,
            number: NonZeroU64::new(missed),
            reason: None,
        }
    }

    pub fn session_id(&self) -> Option<SessionId> {
        self.session.as_ref().map(|s| s.id)
    }

    pub fn session_name(&self) -> Option<&str> {
        self.session.as_ref().map(|s| &*s.name)
    }

    /// The fence of the lease that the event is about.
    pub fn fence(&self) -> Option<u64> {
        self.number
            .filter(|_| !matches!(self.kind, EventKind::Queued | EventKind::Lagged))
            .map(NonZeroU64::get)
    }

    /// The 1-based queue position of `queued`; the number of events missed for `lagged`.
    pub fn position(&self) -> Option<u64> {
        self.number
            .filter(|_| matches!(self.kind, EventKind::Queued | EventKind::Lagged))
            .map(NonZeroU64::get)
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// Every field by name, as in the Python and C APIs.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Fields<'a> {
            seq: u64,
            at: f64,
            kind: EventKind,
            resource: Option<&'a str>,
            session_id: Option<SessionId>,
            session_name: Option<&'a str>,
            mode: Option<Mode>,
            fence: Option<u64>,
            priority: Option<u8>,
            position: Option<u64>,
            reason: Option<&'a str>,
        }
        Fields {
            seq: self.seq,
            at: self.at,
            kind: self.kind,
            resource: self.resource.as_deref(),
            session_id: self.session_id(),
            session_name: self.session_name(),
            mode: self.mode,
            fence: self.fence(),
            priority: self.priority,
            position: self.position(),
            reason: self.reason(),
        }
        .serialize(s)
    }
}

/// One holder of a resource, as `status` shows it (no token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HolderInfo {
    pub session_id: SessionId,
    pub session_name: Arc<str>,
    pub metadata: Arc<serde_json::Value>,
    pub mode: Mode,
    pub fence: u64,
    pub priority: u8,
    pub acquired_at: f64,
    pub expires_at: Option<f64>,
    /// Seconds left before the lease expires, if it has a TTL.
    pub remaining: Option<f64>,
    /// True while the holder's session is stale.
    pub stale: bool,
    pub reason: Option<Arc<str>>,
}

/// One waiter on a resource, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaiterInfo {
    pub session_id: SessionId,
    pub session_name: Arc<str>,
    pub mode: Mode,
    pub priority: u8,
    /// 1-based place in this resource's queue.
    pub position: u64,
    pub queued_at: f64,
}

/// A resource's holders and queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceStatus {
    pub resource: Arc<str>,
    pub locked: bool,
    pub mode: Option<Mode>,
    pub holders: Vec<HolderInfo>,
    pub waiters: Vec<WaiterInfo>,
}

/// A session, as `sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub name: Arc<str>,
    pub metadata: Arc<serde_json::Value>,
    pub created_at: f64,
    pub last_seen: f64,
    pub expires_at: Option<f64>,
    pub stale: bool,
    pub leases: Vec<Arc<str>>,
}

/// Checks a resource name: non-empty UTF-8, at most [`MAX_RESOURCE_LEN`] bytes, no NUL.
pub fn validate_resource(name: &str) -> Result<()> {
    validate_name("resource name", name, MAX_RESOURCE_LEN)
}

/// Checks a session name: non-empty, at most [`MAX_SESSION_NAME_LEN`] bytes, no NUL.
pub fn validate_session_name(name: &str) -> Result<()> {
    validate_name("session name", name, MAX_SESSION_NAME_LEN)
}

fn validate_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    if name.len() > max {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long (at most {max})",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(Error::invalid(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// Checks session metadata: a JSON object of at most [`MAX_METADATA_LEN`] bytes.
pub fn validate_metadata(metadata: &serde_json::Value) -> Result<()> {
    if !metadata.is_object() {
        return Err(Error::invalid("metadata must be a JSON object"));
    }
    let len = serde_json::to_vec(metadata)
        .map_err(|e| Error::invalid(format!("metadata: {e}")))?
        .len();
    if len > MAX_METADATA_LEN {
        return Err(Error::invalid(format!(
            "metadata is {len} bytes of JSON (at most {MAX_METADATA_LEN})"
        )));
    }
    Ok(())
}

/// Turns seconds from a binding (float) into a duration: NaN and negative numbers are
/// errors, infinity means "no limit" (`None`). The one conversion every binding uses.
pub fn duration_from_secs(what: &str, secs: f64) -> Result<Option<Duration>> {
    if secs.is_nan() || secs < 0.0 {
        return Err(Error::invalid(format!(
            "{what} must be a non-negative number of seconds, not {secs}"
        )));
    }
    if secs.is_infinite() {
        return Ok(None);
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|e| Error::invalid(format!("{what}: {e}")))
}

/// Like [`duration_from_secs`] for a TTL, which must also be more than zero.
pub fn ttl_from_secs(what: &str, secs: f64) -> Result<Option<Duration>> {
    match duration_from_secs(what, secs)? {
        Some(d) if d.is_zero() => Err(Error::invalid(format!("{what} must be more than zero"))),
        d => Ok(d),
    }
}
