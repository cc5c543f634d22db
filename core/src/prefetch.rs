//! Hints that start loading memory before it is needed. Data another thread wrote last
//! lives in that thread's cache; a load of it waits for the line to cross over. Asking
//! for several lines at once lets those waits overlap instead of adding up.
//!
//! A hint reads nothing into the program and never faults, whatever the address.

use std::sync::Arc;

/// Starts loading the `len` bytes from `start`.
#[inline]
pub(crate) fn bytes<T: ?Sized>(start: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = start.cast::<i8>();
        for line in (0..len.max(1)).step_by(64) {
            // SAFETY: a prefetch is only a hint, defined for any address, valid or not.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

/// Starts loading an `Arc`'s allocation: its two counts, then the value.
#[inline]
pub(crate) fn arc<T: ?Sized>(p: &Arc<T>) {
    const COUNTS: usize = 2 * std::mem::size_of::<usize>();
    let value = Arc::as_ptr(p);
    bytes(
        value.cast::<u8>().wrapping_sub(COUNTS),
        COUNTS + std::mem::size_of_val::<T>(p),
    );
}
