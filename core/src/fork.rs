//! Engines do not cross a `fork()`: the child has none of the parent's threads, so an
//! engine it inherited can neither answer nor be joined. A child handler registered with
//! `pthread_atfork` counts forks; a link made before the last fork of its process refuses
//! every call at once, and lets go of its threads without joining or touching them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORKS: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// How many forks made this process, counted from the first engine's start.
pub(crate) fn generation() -> u64 {
    REGISTER.call_once(|| {
        #[cfg(unix)]
        // SAFETY: `in_child` is an `extern "C"` function that only touches an atomic,
        // which is async-signal-safe as a child handler must be; the handler stays valid
        // for the life of the process.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
    FORKS.load(Ordering::Relaxed)
}

/// The generation a link was born in; it is useless once the process has forked since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Birth(u64);

impl Birth {
    pub(crate) fn now() -> Self {
        Birth(generation())
    }

    /// True in a child forked after the link was made.
    pub(crate) fn forked(self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.0
    }

    pub(crate) fn check(self) -> crate::Result<()> {
        match self.forked() {
            true => Err(crate::Error::Forked),
            false => Ok(()),
        }
    }
}
