//! Event subscriptions with a C callback, and what callbacks share: the user pointer and
//! knowing the dispatcher thread.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use interlock::{Error, Event, Result, Subscription};

use crate::args::{
    box_free, box_into_c, c_string, lock, null, opt_ref_arg, str_array_arg, BoxHandle, Out,
};
use crate::engine::engine_arg;
use crate::{interlock_engine, interlock_status};

/// A C caller's `void *user_data`, handed back to its callback on the dispatcher thread.
/// interlock never dereferences it; making what it points to thread-safe is the caller's
/// part of the contract (stated in the header).
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: the pointer is only ever passed back to C, never dereferenced in Rust, so moving
// it to another thread cannot race on anything in Rust; what it points to is the caller's.
unsafe impl Send for UserData {}
// SAFETY: as for `Send`: a shared `UserData` gives access to nothing but a copy of the
// pointer.
unsafe impl Sync for UserData {}

impl UserData {
    // A method, not field access, so that closures capture the whole `Send` wrapper.
    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

/// Called at the start of every callback: remembers which thread is the dispatcher.
pub(crate) fn on_dispatcher(dispatcher: &OnceLock<ThreadId>) {
    dispatcher.get_or_init(|| std::thread::current().id());
}

/// An event, as told to an `interlock_event_callback`. Every pointer is valid only
/// during the callback.
#[repr(C)]
pub struct interlock_event {
    /// Strictly increasing over the engine's events (0 for a `"lagged"` marker).
    pub seq: u64,
    /// `"session_opened"`, `"session_closed"`, `"session_expired"`, `"session_stale"`,
    /// `"session_revived"`, `"acquired"`, `"released"`, `"expired"`, `"force_released"`,
    /// `"preempted"`, `"queued"`, `"dequeued"`, or `"lagged"` (events were missed here:
    /// `position` in `json` says how many, `null` if unknown: the seqs begin again).
    pub kind: *const c_char,
    /// The resource, or NULL for session events.
    pub resource: *const c_char,
    /// The whole event as a JSON object: `{"seq", "at", "kind", "resource",
    /// "session_id", "session_name", "mode", "fence", "priority", "position", "reason"}`,
    /// `null` where a field does not apply. Never a token.
    pub json: *const c_char,
}

/// Called on the engine's dispatcher thread for each event of a subscription, in order.
/// `user_data` is the pointer given to `interlock_subscribe`; `event` and everything it
/// points to are valid only during the call. The callback must not block for long: a
/// subscriber that falls behind misses events (and gets a `"lagged"` marker), and the
/// engine's other callbacks wait for it. It may call any interlock function, including
/// `interlock_unsubscribe` on its own subscription.
pub type interlock_event_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const interlock_event)>;

/// A live subscription.
///
/// Opaque. Created by `interlock_subscribe`; ended and freed by `interlock_unsubscribe`.
pub struct interlock_subscription {
    _private: [u8; 0],
}

/// Lets `interlock_unsubscribe` promise that the callback has stopped when it returns.
#[derive(Default)]
struct Gate {
    stopped: AtomicBool,
    /// Held while the callback runs.
    running: Mutex<()>,
}

pub(crate) struct SubscriptionBox {
    subscription: Subscription,
    gate: Arc<Gate>,
    dispatcher: Arc<OnceLock<ThreadId>>,
}

impl BoxHandle for interlock_subscription {
    type Rust = SubscriptionBox;
}

fn deliver(
    f: unsafe extern "C" fn(*mut c_void, *const interlock_event),
    user: UserData,
    ev: &Event,
) -> Result<()> {
    let json = serde_json::to_string(ev).map_err(|e| Error::Internal(e.to_string()))?;
    let (kind, json) = (c_string(ev.kind.as_str())?, c_string(json)?);
    let resource = ev.resource.as_deref().map(c_string).transpose()?;
    let event = interlock_event {
        seq: ev.seq,
        kind: kind.as_ptr(),
        resource: resource.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
        json: json.as_ptr(),
    };
    // SAFETY: `f` is the caller's callback, which the header lets interlock call on the
    // dispatcher thread (this one) with its `user_data`, unread by Rust, and an event
    // whose pointers are valid for the call (they borrow `kind`, `json` and `resource`,
    // which live until this function returns).
    unsafe { f(user.get(), &event) };
    Ok(())
}

/// Calls `callback(user_data, event)` on the dispatcher thread for every event from now
/// on and writes the subscription to `*subscription_out`.
///
/// - `resources`: an array of `count` resource names to follow, or NULL (with `count`
///   0) for every event, session events included.
/// - `since`: NULL for live events only; otherwise first the events after `*since` (a
///   `seq`) that the engine's history still holds, with a `"lagged"` marker first if
///   some are gone, so a client that comes back misses nothing.
/// - `user_data` is passed to the callback as is. It must stay valid, and be safe to use
///   from the dispatcher thread, until `interlock_unsubscribe` returns or the engine is
///   freed.
///
/// The callback may run before this function returns. The caller owns the subscription
/// and ends it with `interlock_unsubscribe`, also after the engine was freed.
#[no_mangle]
pub unsafe extern "C" fn interlock_subscribe(
    engine: *const interlock_engine,
    resources: *const *const c_char,
    count: usize,
    since: *const u64,
    callback: interlock_event_callback,
    user_data: *mut c_void,
    subscription_out: *mut *mut interlock_subscription,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        let resources: Option<Vec<String>> = match (resources.is_null(), count) {
            (true, 0) => None,
            // SAFETY: `resources` is an array argument of `count` strings (pointer contract).
            _ => Some(unsafe { str_array_arg(resources, count, "resources") }?
                .into_iter()
                .map(Into::into)
                .collect()),
        };
        // SAFETY: `since` is NULL or a `uint64_t` read by this call (pointer contract).
        let since = unsafe { opt_ref_arg(since) }.copied();
        let f = callback.ok_or_else(|| null("callback"))?;
        // SAFETY: `subscription_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(subscription_out, "subscription_out") }?;
        let gate = Arc::new(Gate::default());
        let dispatcher = engine.dispatcher.clone();
        let user = UserData(user_data);
        let (g, d) = (gate.clone(), dispatcher.clone());
        let subscription = engine.handle.subscribe_callback(
            resources.as_deref(),
            since,
            move |ev: &Event| {
                on_dispatcher(&d);
                let _running = lock(&g.running);
                if !g.stopped.load(Ordering::Acquire) {
                    // An event that cannot be rendered (never expected) is skipped.
                    let _ = deliver(f, user, ev);
                }
            },
        )?;
        out.write(box_into_c(SubscriptionBox { subscription, gate, dispatcher }));
        Ok(())
    }
}

/// Ends a subscription and frees it. Accepts NULL.
///
/// When this returns, the callback is not running and will not be called again, so its
/// `user_data` may be freed. Called from the callback itself (on the dispatcher thread),
/// the callback is not called again after it returns.
#[no_mangle]
pub unsafe extern "C" fn interlock_unsubscribe(subscription: *mut interlock_subscription) {
    ffi_boundary! {
        // SAFETY: `subscription` is NULL or a subscription to free (pointer contract),
        // which `interlock_subscribe` made with `box_into_c`; no other call borrows one.
        if let Some(b) = unsafe { box_free(subscription) } {
            b.gate.stopped.store(true, Ordering::Release);
            b.subscription.close();
            if b.dispatcher.get() != Some(&std::thread::current().id()) {
                // Waits out a callback in progress on the dispatcher thread.
                drop(lock(&b.gate.running));
            }
        }
    }
}
