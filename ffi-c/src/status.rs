//! Status codes, the mapping from core errors to them, this thread's last error message,
//! and the settling of the panic boundary.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};

use interlock::{Error, ErrorKind, Result};

/// What a call did. `INTERLOCK_OK` is success; any other code is a failure whose message
/// `interlock_last_error()` returns on the same thread. The numbers are fixed and never
/// reused: new codes are only added at the end.
/// cbindgen:prefix-with-name=false
// The variants carry their C names (`INTERLOCK_OK`, not `INTERLOCK_STATUS_OK`: the
// contract fixes them), so they share a prefix.
#[allow(clippy::enum_variant_names)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum interlock_status {
    /// Success: the out-pointers were written.
    INTERLOCK_OK = 0,
    /// A wait ran out of time (the timeout elapsed, or a timeout of 0 found the resource
    /// taken). A timed-out acquire leaves nothing queued.
    INTERLOCK_TIMEOUT = 1,
    /// The token is not current for the resource (never was, is malformed, or was already
    /// released).
    INTERLOCK_INVALID_TOKEN = 2,
    /// No such session (unknown or closed), or a ticket that already completed.
    INTERLOCK_NOT_FOUND = 3,
    /// The session expired: its TTL ran out without activity.
    INTERLOCK_SESSION_EXPIRED = 4,
    /// The lease was lost (preempted, expired, force-released, or its session expired).
    INTERLOCK_LOCK_LOST = 5,
    /// The wait could never be granted: it would close a cycle of waiting sessions.
    INTERLOCK_DEADLOCK = 6,
    /// The session already holds, or already waits for, the resource.
    INTERLOCK_ALREADY_HELD = 7,
    /// The engine is closed (or was freed while the call was blocked).
    INTERLOCK_CLOSED = 8,
    /// A bad argument: NULL where a pointer is required, invalid UTF-8, an empty or too
    /// long name, a NaN or negative number of seconds, an unknown mode or action, metadata
    /// that is not a JSON object. Nothing was changed.
    INTERLOCK_INVALID_ARGUMENT = 9,
    /// A bug in interlock caused a panic; it was caught at the boundary.
    INTERLOCK_PANIC = 10,
    /// A bug in interlock that did not panic.
    INTERLOCK_INTERNAL = 11,
    /// The wait was cancelled (`interlock_ticket_cancel`).
    INTERLOCK_CANCELLED = 12,
    /// An engine reached through `interlock_engine_connect` cannot reach its server; it
    /// keeps trying to reconnect (waits in flight fail with this).
    INTERLOCK_CONNECTION_LOST = 13,
    /// The server refused the call: no token, or one whose role does not allow it.
    INTERLOCK_PERMISSION_DENIED = 14,
}

use interlock_status::*;

/// The one mapping from core errors to status codes.
pub(crate) fn status_of(e: &Error) -> interlock_status {
    match e.kind() {
        ErrorKind::LockTimeout => INTERLOCK_TIMEOUT,
        ErrorKind::InvalidToken => INTERLOCK_INVALID_TOKEN,
        ErrorKind::NotFound => INTERLOCK_NOT_FOUND,
        ErrorKind::SessionExpired => INTERLOCK_SESSION_EXPIRED,
        ErrorKind::LockLost => INTERLOCK_LOCK_LOST,
        ErrorKind::Deadlock => INTERLOCK_DEADLOCK,
        ErrorKind::AlreadyHeld => INTERLOCK_ALREADY_HELD,
        ErrorKind::EngineClosed => INTERLOCK_CLOSED,
        ErrorKind::Cancelled => INTERLOCK_CANCELLED,
        ErrorKind::InvalidArgument => INTERLOCK_INVALID_ARGUMENT,
        ErrorKind::ConnectionLost => INTERLOCK_CONNECTION_LOST,
        ErrorKind::PermissionDenied => INTERLOCK_PERMISSION_DENIED,
        _ => INTERLOCK_INTERNAL,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // During thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = message);
}

fn record_panic(payload: Box<dyn Any + Send>) {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    set_last_error(&format!("panic in interlock: {what}"));
}

/// What an exported body yields, and how the boundary turns it (or a panic) into the
/// value returned to C.
pub(crate) trait Boundary: Sized {
    type Out;
    fn settle(result: std::thread::Result<Self>) -> Self::Out;
}

impl Boundary for Result<()> {
    type Out = interlock_status;
    fn settle(result: std::thread::Result<Self>) -> interlock_status {
        match result {
            Ok(Ok(())) => INTERLOCK_OK,
            Ok(Err(e)) => {
                set_last_error(&e.to_string());
                status_of(&e)
            }
            Err(payload) => {
                record_panic(payload);
                INTERLOCK_PANIC
            }
        }
    }
}

impl Boundary for () {
    type Out = ();
    fn settle(result: std::thread::Result<()>) {
        if let Err(payload) = result {
            record_panic(payload);
        }
    }
}

impl Boundary for *const c_char {
    type Out = *const c_char;
    fn settle(result: std::thread::Result<Self>) -> *const c_char {
        result.unwrap_or_else(|payload| {
            record_panic(payload);
            c"".as_ptr()
        })
    }
}

/// The message of the last call on this thread that failed: a NUL-terminated UTF-8
/// string, `""` if no call on this thread has failed yet. Never NULL.
///
/// The pointer belongs to interlock: do not free it. It stays valid until the next call
/// on this thread that fails, or until the thread exits; copy the text to keep it.
#[no_mangle]
pub extern "C" fn interlock_last_error() -> *const c_char {
    ffi_boundary! {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    }
}

/// The name of a status code, e.g. `"INTERLOCK_TIMEOUT"`; `"INTERLOCK_UNKNOWN"` for a
/// number that is not a code. A static string: never NULL, never freed.
#[no_mangle]
pub extern "C" fn interlock_status_name(status: u32) -> *const c_char {
    ffi_boundary! {
        let name = match status {
            0 => c"INTERLOCK_OK",
            1 => c"INTERLOCK_TIMEOUT",
            2 => c"INTERLOCK_INVALID_TOKEN",
            3 => c"INTERLOCK_NOT_FOUND",
            4 => c"INTERLOCK_SESSION_EXPIRED",
            5 => c"INTERLOCK_LOCK_LOST",
            6 => c"INTERLOCK_DEADLOCK",
            7 => c"INTERLOCK_ALREADY_HELD",
            8 => c"INTERLOCK_CLOSED",
            9 => c"INTERLOCK_INVALID_ARGUMENT",
            10 => c"INTERLOCK_PANIC",
            11 => c"INTERLOCK_INTERNAL",
            12 => c"INTERLOCK_CANCELLED",
            13 => c"INTERLOCK_CONNECTION_LOST",
            14 => c"INTERLOCK_PERMISSION_DENIED",
            _ => c"INTERLOCK_UNKNOWN",
        };
        name.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_code_has_its_own_name() {
        let all = [
            INTERLOCK_OK,
            INTERLOCK_TIMEOUT,
            INTERLOCK_INVALID_TOKEN,
            INTERLOCK_NOT_FOUND,
            INTERLOCK_SESSION_EXPIRED,
            INTERLOCK_LOCK_LOST,
            INTERLOCK_DEADLOCK,
            INTERLOCK_ALREADY_HELD,
            INTERLOCK_CLOSED,
            INTERLOCK_INVALID_ARGUMENT,
            INTERLOCK_PANIC,
            INTERLOCK_INTERNAL,
            INTERLOCK_CANCELLED,
            INTERLOCK_CONNECTION_LOST,
            INTERLOCK_PERMISSION_DENIED,
        ];
        for code in all {
            // SAFETY: `interlock_status_name` returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(interlock_status_name(code as u32)) };
            assert_eq!(name.to_str().unwrap(), format!("{code:?}"));
        }
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status: interlock_status = ffi_boundary! {
            if true {
                panic!("boom");
            }
            Ok(())
        };
        assert_eq!(status, INTERLOCK_PANIC);
        // SAFETY: `interlock_last_error` returns a NUL-terminated string that stays valid
        // until the next failing call on this thread (there is none before `msg` goes).
        let msg = unsafe { CStr::from_ptr(interlock_last_error()) };
        assert_eq!(msg.to_str().unwrap(), "panic in interlock: boom");
    }
}
