//! Where the engine's time comes from: the system's monotonic clock, or a manual one
//! for tests.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock and the unix time at which it read zero.
pub trait Clock: Send + Sync + Debug {
    /// Time since the clock's start; never goes backwards.
    fn now(&self) -> Duration;
    /// Unix seconds at the clock's start, for the times the engine reports.
    fn unix_base(&self) -> f64;
}

/// The system's monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
    unix_base: f64,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
            unix_base: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn unix_base(&self) -> f64 {
        self.unix_base
    }
}

/// A clock that moves only when told to. The engine notices the new time at its next
/// command (every command first processes what is due).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Duration>,
    unix_base: f64,
}

impl ManualClock {
    pub fn new(unix_base: f64) -> Self {
        ManualClock {
            now: Mutex::new(Duration::ZERO),
            unix_base,
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn unix_base(&self) -> f64 {
        self.unix_base
    }
}

/// A clock that reads `back` more than `inner`: its zero lies that much earlier, so that
/// times restored from before the engine started are still positive durations.
#[cfg(feature = "journal")]
#[derive(Debug)]
pub(crate) struct Since {
    pub(crate) inner: std::sync::Arc<dyn Clock>,
    pub(crate) back: Duration,
}

#[cfg(feature = "journal")]
impl Clock for Since {
    fn now(&self) -> Duration {
        self.inner.now() + self.back
    }
    fn unix_base(&self) -> f64 {
        self.inner.unix_base() - self.back.as_secs_f64()
    }
}
