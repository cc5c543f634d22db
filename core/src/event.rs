//! Events: what happened, numbered by `seq`, as subscriptions, history and the wire show
//! them. No event ever carries a token or a secret.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::LostReason;
use crate::types::{LeaseState, Mode, SessionId};

/// What kind of thing an [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Only in subscriptions: `position` events were missed here (no `position`: an unknown
    /// number, and the seqs begin again, as after a restart without the journal).
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

    /// Kinds whose `number` is a position or a count, not a fence.
    fn counts(self) -> bool {
        matches!(self, EventKind::Queued | EventKind::Lagged)
    }
}

/// The reasons the engine gives a lease's `expired` event when the lease ended because
/// its session did: the session expired, or another session took the stale lease over.
pub(crate) const SESSION_EXPIRED: &str = "session_expired";
pub(crate) const STALE_TAKEN_OVER: &str = "stale_taken_over";

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
    /// An event of `kind` at `at` with nothing else set, to fill in.
    pub(crate) fn blank(at: f64, kind: EventKind) -> Self {
        Event {
            seq: 0,
            at,
            kind,
            resource: None,
            mode: None,
            priority: None,
            session: None,
            number: None,
            reason: None,
        }
    }

    /// The marker of `missed` events; `None`: an unknown number (another history).
    pub(crate) fn lagged(missed: Option<u64>) -> Self {
        Event {
            number: missed.and_then(NonZeroU64::new),
            ..Event::blank(0.0, EventKind::Lagged)
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
            .filter(|_| !self.kind.counts())
            .map(NonZeroU64::get)
    }

    /// The 1-based queue position of `queued`; the number of events missed for `lagged`.
    pub fn position(&self) -> Option<u64> {
        self.number
            .filter(|_| self.kind.counts())
            .map(NonZeroU64::get)
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// If this event ends a lease: its fence, and how its holder sees the end. The one
    /// place where events turn into `lease.valid` and `lost_reason`, for both links.
    pub fn lease_end(&self) -> Option<(u64, LeaseState)> {
        let end = match self.kind {
            EventKind::Released => LeaseState::Released,
            EventKind::Preempted => LeaseState::Lost(LostReason::Preempted),
            EventKind::ForceReleased => LeaseState::Lost(LostReason::ForceReleased),
            EventKind::Expired => match self.reason() {
                Some(SESSION_EXPIRED | STALE_TAKEN_OVER) => {
                    LeaseState::Lost(LostReason::SessionExpired)
                }
                _ => LeaseState::Lost(LostReason::Expired),
            },
            _ => return None,
        };
        Some((self.fence()?, end))
    }
}

/// Every field by name, as in the Python and C APIs and on the wire.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Event))]
struct Fields<'a> {
    seq: u64,
    /// Unix seconds.
    at: f64,
    kind: EventKind,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    resource: Option<Cow<'a, str>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    session_id: Option<SessionId>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    session_name: Option<Cow<'a, str>>,
    mode: Option<Mode>,
    fence: Option<u64>,
    priority: Option<u8>,
    /// The queue position of `queued`; the number of events missed for `lagged`.
    position: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    reason: Option<Cow<'a, str>>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Fields {
            seq: self.seq,
            at: self.at,
            kind: self.kind,
            resource: self.resource.as_deref().map(Cow::Borrowed),
            session_id: self.session_id(),
            session_name: self.session_name().map(Cow::Borrowed),
            mode: self.mode,
            fence: self.fence(),
            priority: self.priority,
            position: self.position(),
            reason: self.reason().map(Cow::Borrowed),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let f = Fields::deserialize(d)?;
        let arc = |c: Option<Cow<'_, str>>| c.map(|c| Arc::<str>::from(&*c));
        let session = f.session_id.map(|id| {
            Arc::new(SessionTag {
                id,
                name: arc(f.session_name.clone()).unwrap_or_else(|| Arc::from("")),
            })
        });
        let number = match f.kind.counts() {
            true => f.position,
            false => f.fence,
        };
        Ok(Event {
            seq: f.seq,
            at: f.at,
            kind: f.kind,
            resource: arc(f.resource),
            mode: f.mode,
            priority: f.priority,
            session,
            number: number.and_then(NonZeroU64::new),
            reason: arc(f.reason),
        })
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Event {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Fields<'static> as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Event {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Event")
    }
}
