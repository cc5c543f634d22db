//! Hints that start loading memory before it is needed. Data another thread wrote last
//! lives in that thread's cache; a load of it waits for the line to cross over. Asking
//! for several lines at once lets those waits overlap instead of adding up.
//!
//! A hint reads nothing into the program and never faults, whatever the address.

use std::sync::Arc;

/// A cache line, in bytes.
const LINE: usize = 64;

/// Hints given for one range at most: a longer one (an acquire of many resources) is
/// loaded as it is read.
const MAX_LINES: usize = 8;

/// Starts loading the `len` bytes from `start`, for writing where the CPU has a hint for
/// that (PREFETCHW): most of what the actor loads it then changes (reference counts, a
/// reply slot, the state of a task to wake), and a line loaded only for reading has to
/// cross over once more to be written.
#[inline]
pub(crate) fn bytes<T: ?Sized>(start: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // One hint a line's length apart from the first byte on: the last few bytes of a
        // range that ends early in a line may go without one. That line is often shared
        // with a neighbour another thread is writing; taking it too was measured 2 %
        // slower (pipelined).
        let start = start.cast::<i8>();
        let write = x86::has_prefetchw();
        for line in (0..len.clamp(1, MAX_LINES * LINE)).step_by(LINE) {
            let p = start.wrapping_add(line);
            match write {
                // SAFETY: this CPU has PREFETCHW (`has_prefetchw`); it reads and writes
                // nothing the program sees, and never faults.
                true => unsafe {
                    std::arch::asm!(
                        "prefetchw [{}]",
                        in(reg) p,
                        options(nostack, readonly, preserves_flags)
                    )
                },
                // SAFETY: a prefetch is only a hint, defined for any address.
                false => unsafe { _mm_prefetch::<_MM_HINT_T0>(p) },
            }
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    /// 0 until asked, then 1 without PREFETCHW, 2 with it.
    static PREFETCHW: AtomicU8 = AtomicU8::new(0);

    /// Whether the CPU has PREFETCHW: every AMD x86-64, and Intel since Broadwell.
    #[inline]
    pub(super) fn has_prefetchw() -> bool {
        match PREFETCHW.load(Relaxed) {
            0 => ask(),
            known => known == 2,
        }
    }

    /// CPUID leaf 0x8000_0001, ECX bit 8 (asking twice is harmless).
    #[cold]
    #[inline(never)]
    // `__cpuid` is safe from Rust 1.89 on, `unsafe` before (this crate builds with 1.85).
    #[allow(unused_unsafe)]
    fn ask() -> bool {
        use std::arch::x86_64::__cpuid;
        // SAFETY: every x86-64 CPU has CPUID and these two leaves.
        let top = unsafe { __cpuid(0x8000_0000) }.eax;
        let has = top >= 0x8000_0001 && unsafe { __cpuid(0x8000_0001) }.ecx & (1 << 8) != 0;
        PREFETCHW.store(1 + u8::from(has), Relaxed);
        has
    }
}

#[cfg(test)]
mod tests {
    /// A hint on any address, even one that was never allocated, is harmless.
    #[test]
    fn prefetching_any_address_never_faults() {
        let v = std::sync::Arc::new([0u8; 200]);
        super::arc(&v);
        super::bytes(std::ptr::null::<u8>(), 64);
        super::bytes(usize::MAX as *const u8, 1);
        assert_eq!(v[199], 0);
    }
}
