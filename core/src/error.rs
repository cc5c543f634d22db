//! The one error type of the engine, and why a lease can be lost (which
//! [`Error::LockLost`] carries). Each binding maps [`ErrorKind`] in one place. This module
//! depends on nothing else in the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Everything an engine call can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A wait ran out of time (`timeout` elapsed, or `0` and not free at once).
    #[error("timed out waiting for {0}")]
    LockTimeout(String),
    /// The token does not name a current lease on the resource.
    #[error("invalid token for {0}")]
    InvalidToken(String),
    /// No such session, lease or ticket.
    #[error("not found: {0}")]
    NotFound(String),
    /// The session expired (its TTL ran out without activity).
    #[error("session {0} expired")]
    SessionExpired(String),
    /// The lease was lost (preempted, expired, force-released, session expired,
    /// connection lost).
    #[error("lock on {resource} was lost: {reason}")]
    LockLost {
        resource: String,
        reason: LostReason,
    },
    /// The wait could never be granted: it closes a cycle in the waits-for graph.
    #[error("deadlock: {0}")]
    Deadlock(String),
    /// The session already holds, or already waits for, the resource.
    #[error("session already holds or waits for {0}")]
    AlreadyHeld(String),
    /// The engine is closed.
    #[error("engine closed")]
    EngineClosed,
    /// This process was forked from the one that made the engine (kind `EngineClosed`).
    #[error("engine closed: an engine does not cross a fork; make a new one in the child")]
    Forked,
    /// The wait was cancelled (a ticket's `cancel`, or its session closed).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Bad input; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A remote engine cannot reach its server (it keeps trying to reconnect).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// A remote engine's server refused the call: no token, or a token whose role does
    /// not allow it, or a session secret that does not match.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A bug in interlock.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The kind of an [`Error`], for bindings that map errors to codes or classes, and the
/// name of it that crosses the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorKind {
    LockTimeout,
    InvalidToken,
    NotFound,
    SessionExpired,
    LockLost,
    Deadlock,
    AlreadyHeld,
    EngineClosed,
    Cancelled,
    InvalidArgument,
    ConnectionLost,
    PermissionDenied,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::LockTimeout(_) => ErrorKind::LockTimeout,
            Error::InvalidToken(_) => ErrorKind::InvalidToken,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::SessionExpired(_) => ErrorKind::SessionExpired,
            Error::LockLost { .. } => ErrorKind::LockLost,
            Error::Deadlock(_) => ErrorKind::Deadlock,
            Error::AlreadyHeld(_) => ErrorKind::AlreadyHeld,
            Error::EngineClosed | Error::Forked => ErrorKind::EngineClosed,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::ConnectionLost(_) => ErrorKind::ConnectionLost,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LostReason {
    Preempted,
    Expired,
    ForceReleased,
    SessionExpired,
    /// A remote engine could not renew its session with the server in time: the holder
    /// stops trusting the lease before the server may hand it to anyone else.
    ConnectionLost,
}

impl LostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Preempted => "preempted",
            LostReason::Expired => "expired",
            LostReason::ForceReleased => "force_released",
            LostReason::SessionExpired => "session_expired",
            LostReason::ConnectionLost => "connection_lost",
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
