//! What crosses between a caller and an engine: commands, their replies, the options of
//! an acquire, and the errors. The same serde types go to the local actor, over the
//! network (see `docs/protocol.md`) and into tests that replay a run.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::error::{Error, ErrorKind, LostReason};
use crate::event::Event;
use crate::types::{
    secs, Action, Mode, OnExpire, ResourceStatus, Secret, SessionId, SessionInfo, Token,
    DEFAULT_PRIORITY,
};

/// Identifies one waiting acquire request; the engine's `State` hands it out.
pub type WaitId = u64;

/// Called once, on the dispatcher thread, if a lease is lost (not on a normal release).
pub type LostCallback = Arc<dyn Fn(&LostNotice) + Send + Sync>;

/// Told to an acquirer's `on_lost` callback.
#[derive(Debug, Clone, PartialEq)]
pub struct LostNotice {
    pub resource: Arc<str>,
    pub fence: u64,
    pub session_id: SessionId,
    pub reason: LostReason,
}

/// What a session is opened with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSpec {
    pub name: String,
    /// A JSON object; `null` (or absent) is taken as `{}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    /// `None`: the engine's `session_ttl`.
    #[serde(default, with = "secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub ttl: Option<Duration>,
    /// `None`: the engine's `on_session_expire`.
    #[serde(default)]
    pub on_expire: Option<OnExpire>,
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

/// The options of an acquire: the one type that Rust, C, Python and the wire build.
/// `AcquireOptions::default()` is an exclusive request that waits forever at priority
/// 100 with the engine's lock TTL.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcquireOptions {
    pub mode: Mode,
    /// `None` waits forever; zero tries once without queueing.
    #[serde(with = "secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub timeout: Option<Duration>,
    /// `None`: the engine's `lock_ttl`.
    #[serde(with = "secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub ttl: Option<Duration>,
    /// 0 is most important, 255 least.
    #[cfg_attr(feature = "openapi", schema(maximum = 255))]
    pub priority: u8,
    /// Revoke conflicting holders of strictly lower priority.
    pub preempt: bool,
    pub reason: Option<String>,
    /// Take over conflicting holders whose session is stale.
    pub break_stale: bool,
    /// Called on the dispatcher thread if a granted lease is lost. Not part of the
    /// request the engine sees: its link keeps it.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub on_lost: Option<LostCallback>,
}

impl Default for AcquireOptions {
    fn default() -> Self {
        AcquireOptions {
            mode: Mode::Exclusive,
            timeout: None,
            ttl: None,
            priority: DEFAULT_PRIORITY,
            preempt: false,
            reason: None,
            break_stale: false,
            on_lost: None,
        }
    }
}

impl std::fmt::Debug for AcquireOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireOptions")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("priority", &self.priority)
            .field("preempt", &self.preempt)
            .field("reason", &self.reason)
            .field("break_stale", &self.break_stale)
            .field("on_lost", &self.on_lost.is_some())
            .finish()
    }
}

/// Options are equal when they ask for the same (the callback is not compared).
impl PartialEq for AcquireOptions {
    fn eq(&self, o: &Self) -> bool {
        (
            self.mode,
            self.timeout,
            self.ttl,
            self.priority,
            self.preempt,
        ) == (o.mode, o.timeout, o.ttl, o.priority, o.preempt)
            && (&self.reason, self.break_stale) == (&o.reason, o.break_stale)
    }
}

/// One acquire request of a session, for one or several resources (all or nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    pub session: SessionId,
    /// Shared with the caller's ticket, which names them in errors.
    pub resources: Arc<[String]>,
    #[serde(default)]
    pub options: AcquireOptions,
}

/// A request to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    OpenSession(SessionSpec),
    /// Proves a session's secret and counts as its activity (a heartbeat): how a client
    /// takes a session up again after a reconnect or a restart.
    Resume {
        session: SessionId,
        secret: Secret,
    },
    CloseSession {
        session: SessionId,
    },
    /// One open session's listing entry.
    Session {
        session: SessionId,
    },
    Heartbeat {
        session: SessionId,
    },
    Acquire(AcquireRequest),
    /// Withdraws a waiting request (one that was granted meanwhile is not affected: its
    /// grant is in its caller's hands, and the caller releases it).
    Cancel {
        wait: WaitId,
    },
    Position {
        wait: WaitId,
    },
    Release {
        /// A `Lease` passes back the name its grant came with: no copy, and the engine
        /// finds the record by address.
        resource: Arc<str>,
        token: Token,
    },
    Renew {
        resource: String,
        token: Token,
        #[serde(default, with = "secs")]
        ttl: Option<Duration>,
    },
    /// Releases every holder of `resource`, or only the lease that carries `fence`.
    ForceRelease {
        resource: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        fence: Option<u64>,
    },
    Status {
        resource: String,
    },
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
        #[serde(default)]
        resource: Option<String>,
        #[serde(default)]
        session: Option<SessionId>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The global ring's events after `since`, and how many of them are already gone. A
    /// `since` beyond the newest seq is another history's (an engine restarted without
    /// its journal counts from 1 again): then the whole ring, and an unknown number gone.
    Replay {
        since: u64,
    },
    /// Fails every pending wait with `EngineClosed` and ends every lease.
    Close,
    /// Does nothing but what every command does first: process due deadlines.
    Tick,
}

impl Command {
    /// Does this command only read? Such a command changes nothing but what its time
    /// makes due (expiries), and a durable engine need not wait for the disk to answer it.
    pub fn reads_only(&self) -> bool {
        matches!(
            self,
            Command::Session { .. }
                | Command::Position { .. }
                | Command::Status { .. }
                | Command::Locks
                | Command::Sessions
                | Command::Check { .. }
                | Command::CheckFence { .. }
                | Command::History { .. }
                | Command::Replay { .. }
                | Command::Tick
        )
    }
}

/// A granted lease, as handed to its holder (the only place a token appears).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub resource: Arc<str>,
    pub mode: Mode,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub token: Token,
    pub fence: u64,
    pub acquired_at: f64,
    pub expires_at: Option<f64>,
    #[serde(with = "secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub ttl: Option<Duration>,
    #[cfg_attr(feature = "openapi", schema(maximum = 255))]
    pub priority: u8,
}

/// The leases of one grant: inline for the common request of one resource, so that a
/// grant crosses to its caller without an allocation.
pub type Grants = SmallVec<[Grant; 1]>;

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "snake_case")]
pub enum Reply {
    Unit,
    /// A session was opened: its secret is told here, once.
    Opened {
        session: SessionInfo,
        secret: Secret,
        #[serde(with = "secs")]
        ttl: Option<Duration>,
    },
    Session(SessionInfo),
    Count(usize),
    Granted(Grants),
    /// The request waits; its outcome comes later as a completion of `wait`.
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
    History(Vec<Arc<Event>>),
    Replay {
        events: Vec<Arc<Event>>,
        /// How many events after `since` are gone; `None`: unknown (another history).
        missed: Option<u64>,
    },
}

/// An error as it crosses the wire: its kind, its message, and what it is about, so the
/// other side rebuilds the same [`Error`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LostReason>,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        let (detail, reason) = match e {
            Error::LockLost { resource, reason } => (Some(resource.clone()), Some(*reason)),
            Error::EngineClosed | Error::Forked => (None, None),
            Error::LockTimeout(d)
            | Error::InvalidToken(d)
            | Error::NotFound(d)
            | Error::SessionExpired(d)
            | Error::Deadlock(d)
            | Error::AlreadyHeld(d)
            | Error::Cancelled(d)
            | Error::InvalidArgument(d)
            | Error::ConnectionLost(d)
            | Error::PermissionDenied(d)
            | Error::Internal(d) => (Some(d.clone()), None),
        };
        WireError {
            kind: e.kind(),
            message: e.to_string(),
            detail,
            reason,
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        let d = w.detail.unwrap_or(w.message);
        match w.kind {
            ErrorKind::LockTimeout => Error::LockTimeout(d),
            ErrorKind::InvalidToken => Error::InvalidToken(d),
            ErrorKind::NotFound => Error::NotFound(d),
            ErrorKind::SessionExpired => Error::SessionExpired(d),
            ErrorKind::LockLost => Error::LockLost {
                resource: d,
                reason: w.reason.unwrap_or(LostReason::Expired),
            },
            ErrorKind::Deadlock => Error::Deadlock(d),
            ErrorKind::AlreadyHeld => Error::AlreadyHeld(d),
            ErrorKind::EngineClosed => Error::EngineClosed,
            ErrorKind::Cancelled => Error::Cancelled(d),
            ErrorKind::InvalidArgument => Error::InvalidArgument(d),
            ErrorKind::ConnectionLost => Error::ConnectionLost(d),
            ErrorKind::PermissionDenied => Error::PermissionDenied(d),
            ErrorKind::Internal => Error::Internal(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_errors_survive_the_wire() {
        let session: SessionId = "2f1e8a55-6a4e-4a5b-9d2c-3f0c5a7d9e11".parse().unwrap();
        let cmds = [
            Command::Acquire(AcquireRequest {
                session,
                resources: vec!["a".to_string(), "b/c".to_string()].into(),
                options: AcquireOptions {
                    mode: Mode::Shared,
                    timeout: Some(Duration::from_millis(1500)),
                    reason: Some("scan".into()),
                    ..AcquireOptions::default()
                },
            }),
            Command::OpenSession(SessionSpec {
                ttl: Some(Duration::from_secs(3)),
                ..SessionSpec::named("x")
            }),
            Command::Locks,
            Command::History {
                resource: None,
                session: Some(session),
                limit: Some(3),
            },
        ];
        for cmd in cmds {
            let text = serde_json::to_string(&cmd).unwrap();
            assert_eq!(
                serde_json::from_str::<Command>(&text).unwrap(),
                cmd,
                "{text}"
            );
        }
        let errors = [
            Error::LockLost {
                resource: "r".into(),
                reason: LostReason::Preempted,
            },
            Error::EngineClosed,
            Error::LockTimeout("r".into()),
        ];
        for e in errors {
            let w: WireError =
                serde_json::from_str(&serde_json::to_string(&WireError::from(&e)).unwrap())
                    .unwrap();
            assert_eq!(Error::from(w), e);
        }
    }

    #[test]
    fn options_refuse_unknown_fields_and_negative_times() {
        let bad = [
            "{\"timout\": 3}",
            "{\"timeout\": -1}",
            "{\"mode\": \"both\"}",
        ];
        for text in bad {
            assert!(
                serde_json::from_str::<AcquireOptions>(text).is_err(),
                "{text}"
            );
        }
        let o: AcquireOptions = serde_json::from_str("{\"mode\": \"observer\"}").unwrap();
        assert_eq!(o.mode, Mode::Shared);
        assert_eq!(o.timeout, None);
    }
}
