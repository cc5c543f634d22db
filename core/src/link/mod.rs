//! The seam under [`crate::Handle`]: how its calls reach an engine. A [`Link`] is either
//! the actor in this process (`local`) or a server over the network (`remote`);
//! `Handle`, `Session`, `Lease`, `Ticket` and `Subscription` do not know which. How a
//! link waits (spinning before it parks, holding back wake-ups, batching) is its own
//! business.

pub(crate) mod local;
#[cfg(feature = "remote")]
pub(crate) mod remote;

use std::sync::Arc;

use smallvec::SmallVec;

use crate::cell::LeaseCell;
use crate::error::Result;
use crate::protocol::{AcquireRequest, Command, Grant, Reply};
use crate::reply;
use crate::subscription::{EventCallback, SubQueue};

/// A granted lease as its link hands it over: with the cell that the link keeps exact.
pub(crate) struct Held {
    pub(crate) grant: Grant,
    pub(crate) cell: LeaseCell,
}

/// The outcome of an acquire: every lease asked for, or why not.
pub(crate) type Outcome = Result<SmallVec<[Held; 1]>>;

/// An acquire on its way.
pub(crate) struct Started {
    /// Names the request to its link, for `position` and `cancel`.
    pub(crate) key: u64,
    pub(crate) done: reply::Receiver<Outcome>,
    /// If asked for: whether the request waits (`Some(position)`), was settled at once
    /// (`None`: the outcome is in `done`), or failed.
    pub(crate) ack: Option<reply::Receiver<Result<Option<u64>>>>,
}

pub(crate) trait Link: Send + Sync {
    /// Whether the engine keeps a journal: then a release, too, is done only once the
    /// engine says it is (written).
    fn durable(&self) -> bool;

    /// The id of the engine's history (see [`crate::Handle::engine_id`]); `None` from a
    /// server that does not say it.
    fn engine_id(&self) -> Option<u64>;

    /// Sends `cmd`; its reply comes to the receiver.
    fn request(&self, cmd: Command) -> Result<reply::Receiver<Result<Reply>>>;

    /// Sends the release `cmd` of the lease `fence` without waiting for its reply: its
    /// holder has let go, and a remote link need not hear of that lease again.
    fn release(&self, cmd: Command, fence: u64) -> Result<()>;

    /// Sends an acquire (its `on_lost` stays with the link).
    fn acquire(&self, req: AcquireRequest, ack: bool) -> Result<Started>;

    /// Withdraws the request `key` if it still waits; the reply comes once the engine has
    /// (`Reply::Unit`).
    fn cancel(&self, key: u64) -> Result<reply::Receiver<Result<Reply>>>;

    /// The current place of the request `key` in its queues, if it still waits
    /// (`Reply::Position`).
    fn position(&self, key: u64) -> Result<reply::Receiver<Result<Reply>>>;

    /// A live stream of events (of `resources` only, if given); with `since`, first the
    /// events after that seq that the engine still has. Also the seq of the newest event
    /// before the stream begins.
    fn subscribe(
        &self,
        resources: Option<&[String]>,
        since: Option<u64>,
        callback: Option<EventCallback>,
    ) -> Result<(Arc<SubQueue>, u64)>;

    /// A reply that comes once every callback (`on_lost`, callback subscriptions) queued
    /// before this call has run on the dispatcher.
    fn callbacks_done(&self) -> Result<reply::Receiver<()>>;

    /// Closes the engine (a local one) or the connection (a remote one): pending waits
    /// fail, subscriptions end, later calls fail with `EngineClosed`.
    fn close(&self);
}
