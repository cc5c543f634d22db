//! The one error type of the engine. Each binding maps [`ErrorKind`] in one place.

use crate::types::LostReason;

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
    /// The lease was lost (preempted, expired, force-released, session expired).
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
    /// The wait was cancelled (a ticket's `cancel`).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Bad input; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bug in interlock.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The kind of an [`Error`], for bindings that map errors to codes or classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
            Error::EngineClosed => ErrorKind::EngineClosed,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
