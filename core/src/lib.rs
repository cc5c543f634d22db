//! interlock: an embedded lock engine for lab and hardware-control software.
//!
//! One engine decides who may drive which instrument, session, folder or device, and
//! tells everyone what happened. A pure [`State`] holds every lock table and rule; a
//! [`Handle`] sends [`Command`]s to it through a link: an actor thread in this process,
//! or a server over the network. A dispatcher thread runs callbacks. See `DESIGN.md` for
//! the semantics.
//!
//! ```
//! use interlock::{AcquireOptions, Config, Handle, SessionSpec};
//! use std::time::Duration;
//!
//! let engine = Handle::new(Config::default())?;
//! let optimizer = engine.open_session(SessionSpec::named("Optimizer"))?;
//! let lease = optimizer.acquire("reactor-1", &AcquireOptions {
//!     timeout: Some(Duration::from_secs(5)),
//!     ..Default::default()
//! })?;
//! assert!(engine.check_fence("reactor-1", lease.fence())?);
//! lease.release()?;
//! engine.close();
//! # Ok::<(), interlock::Error>(())
//! ```

mod cell;
mod clock;
mod dispatch;
mod error;
mod event;
mod fork;
mod handle;
pub mod journal;
mod link;
mod protocol;
mod reply;
mod ring;
mod state;
mod subscription;
mod table;
mod types;
pub mod wire;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorKind, LostReason, Result};
pub use event::{Event, EventKind};
pub use handle::{Handle, Lease, Session, Ticket};
#[cfg(feature = "remote")]
pub use link::remote::ConnectOptions;
pub use protocol::{
    AcquireOptions, AcquireRequest, Command, Grant, Grants, LostCallback, LostNotice, Reply,
    SessionSpec, WaitId, WireError,
};
pub use state::{Config, Effects, State};
pub use subscription::{EventCallback, Subscription};
pub use types::*;
