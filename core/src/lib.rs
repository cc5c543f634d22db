//! interlock: an embedded lock engine for lab and hardware-control software.
//!
//! One engine decides who may drive which instrument, session, folder or device, and
//! tells everyone what happened. A pure [`State`] holds every lock table and rule; one
//! actor thread owns it and applies commands sent through a [`Handle`]; a dispatcher
//! thread runs callbacks. See `DESIGN.md` for the semantics.
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

mod actor;
mod clock;
mod error;
mod handle;
mod prefetch;
mod reply;
mod state;
mod subscription;
mod table;
mod types;

pub use actor::{LostCallback, LostNotice};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorKind, Result};
pub use handle::{AcquireOptions, Handle, Lease, Session, Ticket};
pub use state::{
    AcquireRequest, Command, Config, Effects, Grant, Grants, Reply, SessionSpec, State, WaitId,
};
pub use subscription::{EventCallback, Subscription};
pub use types::*;
