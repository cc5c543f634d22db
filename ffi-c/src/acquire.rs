//! Acquire (one resource, several at once, or queued as a ticket) and the lease record
//! that C gets back.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use interlock::{AcquireOptions, Lease, LostCallback, LostNotice, Mode, Result, Ticket};

use crate::args::{
    box_arg, box_free, box_into_c, c_string, id_buf, invalid, opt_ref_arg, opt_str_arg,
    secs_or_inf, str_arg, str_array_arg, timeout_arg, BoxHandle, Out,
};
use crate::engine::{engine_arg, leases_for_c, Engine};
use crate::events::{on_dispatcher, UserData};
use crate::{interlock_engine, interlock_status, INTERLOCK_ID_SIZE};

/// A lease that was lost, as told to an `interlock_lost_callback`.
///
/// Every pointer is valid only during the callback.
#[repr(C)]
pub struct interlock_lost_notice {
    /// The resource the lease was on.
    pub resource: *const c_char,
    /// The session that held it.
    pub session_id: *const c_char,
    /// The lease's fence.
    pub fence: u64,
    /// Why: `"preempted"`, `"expired"`, `"force_released"`, `"session_expired"` or (for
    /// an engine reached through `interlock_engine_connect`) `"connection_lost"`.
    pub reason: *const c_char,
}

/// Called once, on the engine's dispatcher thread, when a lease is lost (not when it is
/// released normally). `user_data` is the pointer given in `interlock_acquire_options`;
/// `notice` and everything it points to are valid only during the call. The callback
/// must not block for long: the engine's other callbacks wait for it. It may call any
/// interlock function.
pub type interlock_lost_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, notice: *const interlock_lost_notice)>;

/// How to acquire. Fill it with `interlock_acquire_options_init`, then change fields.
/// Strings are read during the call only.
#[repr(C)]
pub struct interlock_acquire_options {
    /// `"exclusive"` (conflicts with everything; NULL means this too), `"shared"`
    /// (compatible with other shared holders) or its alias `"observer"`.
    pub mode: *const c_char,
    /// Seconds to wait: `INFINITY` waits forever, 0 tries once without queueing.
    pub timeout: f64,
    /// Seconds the lease lasts unless renewed; `INFINITY`: the engine's `lock_ttl`.
    pub ttl: f64,
    /// 0 is most important, 255 least; default 100. Orders the queue.
    pub priority: u32,
    /// Revoke conflicting holders if all of them have a strictly lower priority (a
    /// larger number); their leases are lost with reason `"preempted"`.
    pub preempt: bool,
    /// Shown in status, events and history; NULL: none.
    pub reason: *const c_char,
    /// Take over conflicting holders whose session is stale.
    pub break_stale: bool,
    /// Called if a lease granted by this request is lost; NULL: not told.
    pub on_lost: interlock_lost_callback,
    /// Passed to `on_lost`; interlock never dereferences it. It must stay valid until
    /// `on_lost` has been called, or the lease was released with `INTERLOCK_OK` (or by
    /// closing its session), or the engine is freed. (A release that says
    /// `INTERLOCK_LOCK_LOST` may come before the callback.)
    pub on_lost_user_data: *mut c_void,
}

impl interlock_acquire_options {
    /// # Safety
    /// The string fields are NULL or strings as the pointer contract says (the options
    /// are read during the call only).
    unsafe fn to_core(&self, engine: &Engine) -> Result<AcquireOptions> {
        // SAFETY: by this function's contract.
        let mode = unsafe { opt_str_arg(self.mode, "mode") }?
            .map(str::parse)
            .transpose()?
            .unwrap_or(Mode::Exclusive);
        let priority = u8::try_from(self.priority)
            .map_err(|_| invalid(format!("priority {} is not in 0..=255", self.priority)))?;
        // SAFETY: by this function's contract.
        let reason = unsafe { opt_str_arg(self.reason, "reason") }?;
        Ok(AcquireOptions {
            mode,
            timeout: timeout_arg(self.timeout)?,
            ttl: interlock::ttl_from_secs("ttl", self.ttl)?,
            priority,
            preempt: self.preempt,
            reason: reason.map(Into::into),
            break_stale: self.break_stale,
            on_lost: self
                .on_lost
                .map(|f| lost_callback(f, UserData(self.on_lost_user_data), engine)),
        })
    }
}

fn lost_callback(
    f: unsafe extern "C" fn(*mut c_void, *const interlock_lost_notice),
    user: UserData,
    engine: &Engine,
) -> LostCallback {
    let dispatcher = engine.dispatcher.clone();
    Arc::new(move |n: &LostNotice| {
        on_dispatcher(&dispatcher);
        // A notice that cannot be rendered (never expected) is skipped.
        let _ = notify_lost(f, user, n);
    })
}

fn notify_lost(
    f: unsafe extern "C" fn(*mut c_void, *const interlock_lost_notice),
    user: UserData,
    n: &LostNotice,
) -> Result<()> {
    let (resource, session_id) = (c_string(&*n.resource)?, c_string(n.session_id.to_string())?);
    let reason = c_string(n.reason.as_str())?;
    let notice = interlock_lost_notice {
        resource: resource.as_ptr(),
        session_id: session_id.as_ptr(),
        fence: n.fence,
        reason: reason.as_ptr(),
    };
    // SAFETY: `f` is the caller's `on_lost`, which the header lets interlock call on the
    // dispatcher thread (this one) with its `on_lost_user_data`, unread by Rust, and a
    // notice whose pointers are valid for the call (they borrow `resource`,
    // `session_id` and `reason`, which live until this function returns).
    unsafe { f(user.get(), &notice) };
    Ok(())
}

/// Reads optional acquire options: NULL is the defaults.
///
/// # Safety
/// `p` is NULL or a struct read by the call as the pointer contract says, whose string
/// fields are NULL or strings as it says.
unsafe fn options_arg(
    p: *const interlock_acquire_options,
    engine: &Engine,
) -> Result<AcquireOptions> {
    // SAFETY: by this function's contract.
    match unsafe { opt_ref_arg(p) } {
        // SAFETY: by this function's contract, `o`'s string fields are NULL or strings.
        Some(o) => unsafe { o.to_core(engine) },
        None => Ok(AcquireOptions::default()),
    }
}

/// A granted lease. Plain data owned by the caller; nothing in it needs freeing, and the
/// library keeps nothing of it: a lease that is lost need not be released.
#[repr(C)]
pub struct interlock_lease {
    /// The secret that releases or renews the lease (`interlock_release`,
    /// `interlock_renew`): a NUL-terminated UUID string. Never shown in status, listings,
    /// events or history.
    pub token: [c_char; INTERLOCK_ID_SIZE],
    /// `"exclusive"` or `"shared"`: a static string.
    pub mode: *const c_char,
    /// Strictly increasing over every grant of the engine; see `interlock_check_fence`.
    pub fence: u64,
    /// Unix seconds.
    pub acquired_at: f64,
    /// Unix seconds; `INFINITY` if the lease has no TTL.
    pub expires_at: f64,
    /// The priority it was granted at.
    pub priority: u32,
}

impl interlock_lease {
    pub(crate) fn of(l: &Lease) -> Self {
        interlock_lease {
            token: id_buf(l.token().expose()),
            mode: match l.mode() {
                Mode::Exclusive => c"exclusive".as_ptr(),
                Mode::Shared => c"shared".as_ptr(),
            },
            fence: l.fence(),
            acquired_at: l.acquired_at(),
            expires_at: secs_or_inf(l.expires_at()),
            priority: l.priority().into(),
        }
    }
}

/// Fills `options` with the defaults: exclusive, wait forever (`timeout = INFINITY`),
/// the engine's lock TTL (`ttl = INFINITY`), priority 100, no preemption, no reason, no
/// stale breaking, no lost callback. `options` must not be NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_acquire_options_init(
    options: *mut interlock_acquire_options,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `options` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(options, "options") }?;
        let d = AcquireOptions::default();
        out.write(interlock_acquire_options {
            mode: c"exclusive".as_ptr(),
            timeout: f64::INFINITY,
            ttl: f64::INFINITY,
            priority: d.priority.into(),
            preempt: d.preempt,
            reason: std::ptr::null(),
            break_stale: d.break_stale,
            on_lost: None,
            on_lost_user_data: std::ptr::null_mut(),
        });
        Ok(())
    }
}

/// Acquires `resource` for session `session_id`, waiting as `options->timeout` says, and
/// writes the lease to `*lease_out`.
///
/// `options` may be NULL for the defaults (exclusive, wait forever). Blocks the calling
/// thread; any number of threads may wait at once. `INTERLOCK_TIMEOUT` when the timeout
/// runs out (nothing stays queued), `INTERLOCK_ALREADY_HELD` if the session holds or
/// waits for the resource, `INTERLOCK_DEADLOCK`, `INTERLOCK_SESSION_EXPIRED`,
/// `INTERLOCK_NOT_FOUND` (session), `INTERLOCK_CLOSED` (also when the engine is freed
/// while waiting).
#[no_mangle]
pub unsafe extern "C" fn interlock_acquire(
    engine: *const interlock_engine,
    session_id: *const c_char,
    resource: *const c_char,
    options: *const interlock_acquire_options,
    lease_out: *mut interlock_lease,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `session_id` is a string argument (pointer contract).
        let id = unsafe { str_arg(session_id, "session_id") }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `options` is a struct argument read by this call, or NULL (pointer contract).
        let opts = unsafe { options_arg(options, &engine) }?;
        // SAFETY: `lease_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(lease_out, "lease_out") }?;
        let lease = engine.with_session(id, |s| s.acquire(resource, &opts))?;
        out.write_all(leases_for_c(vec![lease]));
        Ok(())
    }
}

/// Acquires all of the `count` resources in `resources` at once, or none of them: while
/// waiting it holds none. Writes one lease per resource, in the order given, to
/// `leases_out` (an array of `count`). Otherwise as `interlock_acquire`.
#[no_mangle]
pub unsafe extern "C" fn interlock_acquire_many(
    engine: *const interlock_engine,
    session_id: *const c_char,
    resources: *const *const c_char,
    count: usize,
    options: *const interlock_acquire_options,
    leases_out: *mut interlock_lease,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `session_id` is a string argument (pointer contract).
        let id = unsafe { str_arg(session_id, "session_id") }?;
        // SAFETY: `resources` is an array argument of `count` strings (pointer contract).
        let resources = unsafe { str_array_arg(resources, count, "resources") }?;
        // SAFETY: `options` is a struct argument read by this call, or NULL (pointer contract).
        let opts = unsafe { options_arg(options, &engine) }?;
        // SAFETY: `leases_out` is an out-pointer argument for `count` leases (pointer contract).
        let out = unsafe { Out::array(leases_out, count, "leases_out") }?;
        let leases = engine.with_session(id, |s| s.acquire_many(&resources, &opts))?;
        out.write_all(leases_for_c(leases));
        Ok(())
    }
}

/// A queued acquire.
///
/// Opaque. Created by `interlock_enqueue`, freed by `interlock_ticket_free`. Its
/// functions may be called from several threads at once (e.g. one waits, another
/// cancels), but not concurrently with `interlock_ticket_free`.
pub struct interlock_ticket {
    _private: [u8; 0],
}

pub(crate) struct TicketBox {
    ticket: Ticket,
}

impl BoxHandle for interlock_ticket {
    type Rust = TicketBox;
}

/// # Safety
/// `p` is NULL or a ticket from `interlock_enqueue` that is not freed during `'a` (the
/// call), as the header says.
unsafe fn ticket_arg<'a>(p: *const interlock_ticket) -> Result<&'a TicketBox> {
    // SAFETY: `interlock_enqueue` makes tickets with `box_into_c`; the rest is this
    // function's contract.
    unsafe { box_arg(p, "ticket") }
}

/// Queues an acquire of `resource` without waiting for it and writes a ticket to
/// `*ticket_out`, and its current 1-based position in the queue to `*position_out`
/// (0 if it was granted at once; may be NULL).
///
/// Errors that can be known at once come at once (bad input, `INTERLOCK_ALREADY_HELD`,
/// `INTERLOCK_DEADLOCK`, `INTERLOCK_TIMEOUT` for a timeout of 0); `options->timeout`
/// otherwise bounds how long the request stays queued. The caller owns the ticket and
/// frees it with `interlock_ticket_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_enqueue(
    engine: *const interlock_engine,
    session_id: *const c_char,
    resource: *const c_char,
    options: *const interlock_acquire_options,
    ticket_out: *mut *mut interlock_ticket,
    position_out: *mut u64,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `session_id` is a string argument (pointer contract).
        let id = unsafe { str_arg(session_id, "session_id") }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `options` is a struct argument read by this call, or NULL (pointer contract).
        let opts = unsafe { options_arg(options, &engine) }?;
        // SAFETY: `ticket_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(ticket_out, "ticket_out") }?;
        // SAFETY: `position_out` is an out-pointer argument or NULL (pointer contract).
        let position_out = unsafe { Out::optional(position_out) };
        let ticket = engine.with_session(id, |s| s.enqueue(&[resource], &opts))?;
        let position = ticket.position()?;
        if let Some(p) = position_out {
            p.write(position.unwrap_or(0));
        }
        out.write(box_into_c(TicketBox { ticket }));
        Ok(())
    }
}

/// Writes the ticket's current 1-based place in the queue to `*position_out`; 0 once it
/// was granted, cancelled or failed.
#[no_mangle]
pub unsafe extern "C" fn interlock_ticket_position(
    ticket: *const interlock_ticket,
    position_out: *mut u64,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `ticket` is a ticket argument (pointer contract).
        let t = unsafe { ticket_arg(ticket) }?;
        // SAFETY: `position_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(position_out, "position_out") }?;
        out.write(t.ticket.position()?.unwrap_or(0));
        Ok(())
    }
}

/// Waits up to `timeout` seconds (`INFINITY`: forever) for the ticket's outcome and, if
/// granted, writes the lease to `*lease_out`.
///
/// `INTERLOCK_TIMEOUT` if it is still queued (it stays queued: wait again or cancel),
/// `INTERLOCK_CANCELLED` after `interlock_ticket_cancel`, `INTERLOCK_NOT_FOUND` if its
/// grant was already taken, or the error that failed the request (again on every wait).
#[no_mangle]
pub unsafe extern "C" fn interlock_ticket_wait(
    ticket: *const interlock_ticket,
    timeout: f64,
    lease_out: *mut interlock_lease,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `ticket` is a ticket argument (pointer contract).
        let t = unsafe { ticket_arg(ticket) }?;
        let timeout = timeout_arg(timeout)?;
        // SAFETY: `lease_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(lease_out, "lease_out") }?;
        let leases = t.ticket.wait(timeout)?;
        out.write_all(leases_for_c(leases));
        Ok(())
    }
}

/// Withdraws the request: it leaves the queue (or a grant it was sent but never returned
/// is released). A wait on it, in progress or later, returns `INTERLOCK_CANCELLED`.
/// Cancelling a ticket that already completed does nothing.
#[no_mangle]
pub unsafe extern "C" fn interlock_ticket_cancel(
    ticket: *const interlock_ticket,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `ticket` is a ticket argument (pointer contract).
        unsafe { ticket_arg(ticket) }?.ticket.cancel()
    }
}

/// Frees a ticket; a request still queued is withdrawn. Accepts NULL. The ticket keeps
/// its engine's memory alive, so it may be freed after `interlock_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_ticket_free(ticket: *mut interlock_ticket) {
    ffi_boundary! {
        // SAFETY: `ticket` is NULL or a ticket to free that no other call is using
        // (pointer contract and the ticket's documentation); `interlock_enqueue` made it
        // with `box_into_c`.
        drop(unsafe { box_free(ticket) });
    }
}
