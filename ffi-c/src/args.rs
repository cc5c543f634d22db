//! Arguments from C: the one NULL check, strings (which must be UTF-8), arrays, and
//! out-pointers that are written only once a call has succeeded.

use std::ffi::{c_char, CStr, CString};
use std::fmt::Display;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

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
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    let p = required(p, what)?;
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
        false => unsafe { str_arg(p, what) }.map(Some),
    }
}

/// A required array of `count` strings.
///
/// # Safety
/// `p` is NULL or points to `count` pointers, each as for [`str_arg`].
pub(crate) unsafe fn str_array_arg<'a>(
    p: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>> {
    let p = required(p, what)?;
    let items = unsafe { std::slice::from_raw_parts(p.as_ptr(), count) };
    items
        .iter()
        .enumerate()
        .map(|(i, &s)| unsafe { str_arg(s, &format!("{what}[{i}]")) })
        .collect()
}

/// An optional struct argument: NULL is `None`.
///
/// # Safety
/// `p` is NULL or points to a valid `T` that outlives `'a`.
pub(crate) unsafe fn opt_ref_arg<'a, T>(p: *const T) -> Option<&'a T> {
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
    /// `p` is NULL or points to writable memory for one `T`.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> Result<Self> {
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
    /// `p` is NULL or points to writable memory for `len` `T`s.
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
            // In bounds by `take`; valid for writes by the constructor's contract.
            unsafe { self.p.as_ptr().add(i).write(v) };
        }
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

/// Seconds as C sees them: `INFINITY` for "none".
pub(crate) fn secs_or_inf(t: Option<f64>) -> f64 {
    t.unwrap_or(f64::INFINITY)
}

/// Seconds as a timeout: `INFINITY` waits forever, 0 tries once.
pub(crate) fn timeout_arg(secs: f64) -> Result<Option<std::time::Duration>> {
    duration_from_secs("timeout", secs)
}
