//! Arguments from C: the one NULL check, strings (which must be UTF-8), arrays,
//! out-pointers that are written only once a call has succeeded, and the opaque objects
//! C holds pointers to. Every raw pointer an exported function reads, writes, or takes
//! ownership of goes through a helper here.
//!
//! # The pointer contract
//!
//! The header states it once for every function: each pointer argument is NULL or valid
//! as the function's documentation says. In detail, a non-NULL
//! - string (`const char *`) points to a NUL-terminated string that stays readable and
//!   unchanged for the whole call;
//! - array of `count` items points to `count` initialized, aligned, readable items;
//! - struct read by the call (`const interlock_config *`, ...) points to an initialized,
//!   aligned one that stays readable and unchanged for the call;
//! - out-pointer (`*_out`, or a struct the call fills) points to aligned memory writable
//!   for the documented number of items, which the call may overwrite (it need not be
//!   initialized);
//! - object (`interlock_engine *`, `interlock_ticket *`, `interlock_subscription *`,
//!   `interlock_server *`) is one that interlock handed out and that was not freed before
//!   the call began (and, as documented per type, is not freed while the call runs,
//!   except an engine);
//! - pointer to free is one interlock handed out and that was not freed yet (a string
//!   not written to).
//!
//! The `unsafe fn`s below ask exactly this of their pointer arguments (and NULL is always
//! allowed: it becomes `INTERLOCK_INVALID_ARGUMENT`, or `None` where NULL is optional).
//! So a call site is sound when it passes an argument of its exported function in the
//! role the function's documentation gives it; its `// SAFETY:` line says which.

use std::ffi::{c_char, CStr, CString};
use std::fmt::Display;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use interlock::{duration_from_secs, Error, Result};

use crate::INTERLOCK_ID_SIZE;

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// The error for a NULL where a pointer (or callback) is required.
pub(crate) fn null(what: &str) -> Error {
    invalid(format!("{what} is NULL"))
}

/// The one NULL check: every required pointer argument passes through here.
pub(crate) fn required<T>(p: *const T, what: &str) -> Result<NonNull<T>> {
    NonNull::new(p.cast_mut()).ok_or_else(|| null(what))
}

/// A required string argument.
///
/// # Safety
/// `p` is NULL or a string as the pointer contract says, readable for `'a` (the call).
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    let p = required(p, what)?;
    // SAFETY: `p` is not NULL (checked above), so by this function's contract it points to
    // a NUL-terminated string that stays readable and unchanged for `'a`.
    unsafe { CStr::from_ptr(p.as_ptr()) }
        .to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    match p.is_null() {
        true => Ok(None),
        // SAFETY: this function's contract is that of `str_arg`.
        false => unsafe { str_arg(p, what) }.map(Some),
    }
}

/// A required array of `count` strings.
///
/// # Safety
/// `p` is NULL or an array of `count` pointers as the pointer contract says, each of
/// them NULL or a string as for [`str_arg`], all readable for `'a` (the call).
pub(crate) unsafe fn str_array_arg<'a>(
    p: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>> {
    let p = required(p, what)?;
    // SAFETY: `p` is not NULL (checked above), so by this function's contract it points
    // to `count` initialized, aligned pointers (one allocation, hence at most
    // `isize::MAX` bytes) that nothing changes during `'a`.
    let items = unsafe { std::slice::from_raw_parts(p.as_ptr(), count) };
    items
        .iter()
        .enumerate()
        // SAFETY: each item is NULL or a string readable for `'a`, by this contract.
        .map(|(i, &s)| unsafe { str_arg(s, &format!("{what}[{i}]")) })
        .collect()
}

/// An optional struct argument: NULL is `None`.
///
/// # Safety
/// `p` is NULL or points to an initialized, aligned `T` that stays readable and
/// unchanged for `'a` (the call), as the pointer contract says of a struct read.
pub(crate) unsafe fn opt_ref_arg<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: NULL gives `None`; anything else is a valid `T` for `'a` by this contract.
    unsafe { p.as_ref() }
}

/// Where a result goes: checked up front, written once the call has succeeded. Writing
/// never reads or drops what was there (C memory may be uninitialized).
pub(crate) struct Out<T> {
    p: NonNull<T>,
    len: usize,
}

impl<T> Out<T> {
    /// A required out-pointer to one `T`.
    ///
    /// # Safety
    /// `p` is NULL or an out-pointer as the pointer contract says: aligned memory for one
    /// `T`, writable (and written by nothing else) until the returned value is dropped.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> Result<Self> {
        // SAFETY: `Out::array` with `len` 1 asks exactly this function's contract.
        unsafe { Self::array(p, 1, what) }
    }

    /// An optional out-pointer: NULL means the caller does not want the value.
    ///
    /// # Safety
    /// As for [`Out::new`].
    pub(crate) unsafe fn optional(p: *mut T) -> Option<Self> {
        NonNull::new(p).map(|p| Out { p, len: 1 })
    }

    /// A required out-pointer to `len` consecutive `T`s.
    ///
    /// # Safety
    /// `p` is NULL or an out-pointer as the pointer contract says: aligned memory for
    /// `len` consecutive `T`s, writable (and written by nothing else) until the returned
    /// value is dropped.
    pub(crate) unsafe fn array(p: *mut T, len: usize, what: &str) -> Result<Self> {
        Ok(Out {
            p: required(p, what)?,
            len,
        })
    }

    pub(crate) fn write(self, value: T) {
        self.write_all(std::iter::once(value));
    }

    /// Writes at most `len` values, in order.
    pub(crate) fn write_all(self, values: impl IntoIterator<Item = T>) {
        for (i, v) in values.into_iter().take(self.len).enumerate() {
            // SAFETY: `i < len` by `take`, so `p + i` stays inside the `len` writable,
            // aligned `T`s the constructor's contract promises; `write` neither reads nor
            // drops the old contents, which may be uninitialized C memory.
            unsafe { self.p.as_ptr().add(i).write(v) };
        }
    }
}

/// An opaque C type whose pointers stand for an `Arc<Self::Rust>` (`interlock_engine`):
/// [`arc_into_c`] hands one to C, [`arc_arg`] borrows it for a call, [`arc_free`] takes
/// it back. Implemented once per type, so a pointer of type `*C` can only ever have come
/// from `arc_into_c::<C>`, never from a value of another type.
pub(crate) trait ArcHandle {
    type Rust: Send + Sync;
}

/// An opaque C type whose pointers stand for a `Box<Self::Rust>` (`interlock_ticket`,
/// `interlock_subscription`, `interlock_server`): [`box_into_c`], [`box_arg`],
/// [`box_free`].
pub(crate) trait BoxHandle {
    type Rust: Send + Sync;
}

/// Gives C a reference to `value`, to come back through [`arc_arg`] and [`arc_free`].
pub(crate) fn arc_into_c<C: ArcHandle>(value: Arc<C::Rust>) -> *mut C {
    Arc::into_raw(value).cast_mut().cast()
}

/// The value behind an object argument, with a reference of the call's own: the value
/// lives while the call runs even if another thread frees the object meanwhile.
///
/// # Safety
/// `p` is NULL or an object as the pointer contract says: from `arc_into_c::<C>`, and
/// not given to [`arc_free`] before this call began (a free that races with the start of
/// the call is the caller's use after free).
pub(crate) unsafe fn arc_arg<C: ArcHandle>(p: *const C, what: &str) -> Result<Arc<C::Rust>> {
    let p = required(p, what)?.as_ptr().cast::<C::Rust>();
    // SAFETY: `p` came from `Arc::into_raw` of an `Arc<C::Rust>` (`arc_into_c`; the
    // trait fixes the type), and C still holds the reference it stands for, so the
    // count is at least 1 while this adds the call's own reference and takes it.
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

/// Takes back C's reference to an object; `None` for NULL.
///
/// # Safety
/// `p` is NULL or from `arc_into_c::<C>` and not given to `arc_free` before; C gives it
/// up here and must not use it again.
pub(crate) unsafe fn arc_free<C: ArcHandle>(p: *mut C) -> Option<Arc<C::Rust>> {
    let p = NonNull::new(p)?.as_ptr().cast::<C::Rust>();
    // SAFETY: `p` came from `Arc::into_raw` of an `Arc<C::Rust>`, and the reference it
    // stands for is taken back exactly once (this function's contract).
    Some(unsafe { Arc::from_raw(p) })
}

/// Moves `value` to the heap and gives C the only pointer to it, to come back through
/// [`box_arg`] and [`box_free`].
pub(crate) fn box_into_c<C: BoxHandle>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind an object argument (other threads may borrow it at once:
/// the value is `Sync`).
///
/// # Safety
/// `p` is NULL or an object as the pointer contract says: from `box_into_c::<C>`, and not
/// given to [`box_free`] until `'a` (the call) ends.
pub(crate) unsafe fn box_arg<'a, C: BoxHandle>(p: *const C, what: &str) -> Result<&'a C::Rust> {
    let p = required(p, what)?.cast::<C::Rust>();
    // SAFETY: `p` came from `Box::into_raw` of a `Box<C::Rust>` (`box_into_c`; the trait
    // fixes the type), so it is aligned and initialized, and it is not freed during
    // `'a`; only shared references to it are ever made.
    Ok(unsafe { p.as_ref() })
}

/// Takes back an object from C; `None` for NULL.
///
/// # Safety
/// `p` is NULL or from `box_into_c::<C>` and not given to `box_free` before, and no
/// call that borrowed it through [`box_arg`] is still running; C gives it up here.
pub(crate) unsafe fn box_free<C: BoxHandle>(p: *mut C) -> Option<Box<C::Rust>> {
    let p = NonNull::new(p)?.as_ptr().cast::<C::Rust>();
    // SAFETY: `p` came from `Box::into_raw` of a `Box<C::Rust>`, is taken back exactly
    // once, and nothing borrows it any more (this function's contract).
    Some(unsafe { Box::from_raw(p) })
}

/// Gives C a string it frees with `interlock_string_free` (through [`c_string_free`]).
pub(crate) fn c_string_into_c(text: CString) -> *mut c_char {
    text.into_raw()
}

/// Frees a string given to C by [`c_string_into_c`]; NULL does nothing.
///
/// # Safety
/// `p` is NULL or from `c_string_into_c`, not freed before, and not written to; C gives
/// it up here.
pub(crate) unsafe fn c_string_free(p: *mut c_char) {
    if !p.is_null() {
        // SAFETY: `p` came from `CString::into_raw` and is taken back exactly once, with
        // its bytes as they were handed out (this function's contract; the header asks C
        // not to write into the string), so its length is the one it was allocated with.
        drop(unsafe { CString::from_raw(p) });
    }
}

/// A string for C. Names and JSON never hold a NUL byte; if one did, that is a bug.
pub(crate) fn c_string(text: impl Into<Vec<u8>>) -> Result<CString> {
    CString::new(text).map_err(|e| Error::Internal(e.to_string()))
}

/// A session id or token as a NUL-terminated C string in a fixed buffer.
pub(crate) fn id_buf(id: impl Display) -> [c_char; INTERLOCK_ID_SIZE] {
    let mut buf = [0; INTERLOCK_ID_SIZE];
    let text = id.to_string();
    for (dst, &src) in buf
        .iter_mut()
        .zip(text.as_bytes().iter().take(INTERLOCK_ID_SIZE - 1))
    {
        *dst = src as c_char;
    }
    buf
}

/// Locks a mutex of this crate; a panic elsewhere cannot leave its data inconsistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Locks a mutex of this crate if no other thread holds it (see [`lock`]).
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Seconds as C sees them: `INFINITY` for "none".
pub(crate) fn secs_or_inf(t: Option<f64>) -> f64 {
    t.unwrap_or(f64::INFINITY)
}

/// Seconds as a timeout: `INFINITY` waits forever, 0 tries once.
pub(crate) fn timeout_arg(secs: f64) -> Result<Option<std::time::Duration>> {
    duration_from_secs("timeout", secs)
}
