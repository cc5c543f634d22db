//! The engine object, sessions, release / renew / force release, checks, and the JSON
//! queries.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use interlock::{
    ttl_from_secs, validate_resource, Config, Error, ErrorKind, Handle, Lease, OnExpire, Result,
    Session, SessionId, SessionSpec, Token,
};
use serde::Serialize;

use crate::args::{
    c_string, id_buf, invalid, lock, opt_ref_arg, opt_str_arg, required, secs_or_inf, str_arg, Out,
};
use crate::interlock_status;

/// Bytes of a session id or lease token as a C string: 36 characters of a hyphenated
/// UUID and the terminating NUL.
pub const INTERLOCK_ID_SIZE: usize = 37;

/// An engine: one lock table, its actor thread and its dispatcher thread.
///
/// Opaque. Created by `interlock_engine_new`, freed by `interlock_engine_free`. Every
/// function taking an engine may be called from any number of threads at once.
pub struct interlock_engine {
    _private: [u8; 0],
}

/// What an engine starts with. Fill it with `interlock_config_init`, then change fields.
#[repr(C)]
pub struct interlock_config {
    /// TTL in seconds of a lease whose acquire gives none; `INFINITY`: no TTL.
    pub lock_ttl: f64,
    /// TTL in seconds of a session opened without one; `INFINITY`: no TTL.
    pub session_ttl: f64,
    /// Events kept in the history of each resource and each session.
    pub history_limit: usize,
    /// What happens to a session whose TTL runs out, unless it says otherwise:
    /// `"release"` (it ends and its leases are released) or `"keep"` (it turns stale and
    /// its leases stay until broken or revived). Read during `interlock_engine_new` only.
    pub on_session_expire: *const c_char,
}

impl interlock_config {
    /// # Safety
    /// `on_session_expire` is NULL or a valid C string.
    unsafe fn to_core(&self) -> Result<Config> {
        let on_expire = unsafe { str_arg(self.on_session_expire, "on_session_expire") }?;
        Ok(Config {
            lock_ttl: ttl_from_secs("lock_ttl", self.lock_ttl)?,
            session_ttl: ttl_from_secs("session_ttl", self.session_ttl)?,
            history_limit: self.history_limit,
            on_session_expire: on_expire.parse()?,
            ..Config::default()
        })
    }
}

/// The Rust value behind an `interlock_engine *` (an `Arc` turned into a raw pointer).
pub(crate) struct Engine {
    pub(crate) handle: Handle,
    /// Session values by id, so that a call by id needs no extra round trip to the actor.
    sessions: Mutex<HashMap<SessionId, Session>>,
    /// Every lease granted through this API and not yet released, by token, so that
    /// release and renew of a lost lease can say `LOCK_LOST` rather than `INVALID_TOKEN`.
    /// An entry goes when its lease is released (or reported lost by release / renew),
    /// when its session is closed, or with the engine.
    leases: Mutex<HashMap<Token, Arc<Lease>>>,
    /// The dispatcher thread, recorded by the first callback that runs on it.
    pub(crate) dispatcher: Arc<OnceLock<ThreadId>>,
}

impl Engine {
    /// The session `id` names, from the cache or (once) from the engine.
    fn session(&self, id: &str) -> Result<Session> {
        let id: SessionId = id.parse()?;
        if let Some(s) = lock(&self.sessions).get(&id) {
            return Ok(s.clone());
        }
        let s = self.handle.session(id)?;
        lock(&self.sessions).insert(id, s.clone());
        Ok(s)
    }

    /// Runs `f` on the session `id` names; forgets the session if it turns out to be gone.
    pub(crate) fn with_session<T>(
        &self,
        id: &str,
        f: impl FnOnce(&Session) -> Result<T>,
    ) -> Result<T> {
        let s = self.session(id)?;
        let result = f(&s);
        if let Err(e) = &result {
            if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::SessionExpired) {
                lock(&self.sessions).remove(&s.id());
            }
        }
        result
    }

    /// Remembers granted leases (see `leases`) and describes them for C.
    pub(crate) fn keep(&self, leases: Vec<Lease>) -> Vec<crate::interlock_lease> {
        let mut map = lock(&self.leases);
        leases
            .into_iter()
            .map(|l| {
                let c = crate::interlock_lease::of(&l);
                map.insert(l.token(), Arc::new(l));
                c
            })
            .collect()
    }

    /// The remembered lease `token` names, if it is on `resource`.
    fn lease(&self, resource: &str, token: Token) -> Option<Arc<Lease>> {
        lock(&self.leases)
            .get(&token)
            .filter(|l| l.resource() == resource)
            .cloned()
    }

    /// Takes the remembered lease `token` names out, if it is on `resource`: of two
    /// racing releases, one gets it.
    fn take_lease(&self, resource: &str, token: Token) -> Option<Arc<Lease>> {
        let mut map = lock(&self.leases);
        match map.get(&token) {
            Some(l) if l.resource() == resource => map.remove(&token),
            _ => None,
        }
    }

    fn forget(&self, token: Token) {
        lock(&self.leases).remove(&token);
    }
}

/// Borrows the engine behind a pointer: the call holds its own reference, so a blocked
/// call outlives `interlock_engine_free` and returns `INTERLOCK_CLOSED`.
///
/// # Safety
/// `p` is NULL or a pointer from `interlock_engine_new` that was not freed before this
/// call began.
pub(crate) unsafe fn engine_arg(p: *const interlock_engine) -> Result<Arc<Engine>> {
    let p = required(p, "engine")?.as_ptr().cast::<Engine>();
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

/// Hands a JSON rendering of `value` to C, to be freed with `interlock_string_free`.
fn write_json(value: &impl Serialize, out: Out<*mut c_char>) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    out.write(c_string(text)?.into_raw());
    Ok(())
}

/// Fills `config` with the defaults: no lock TTL, no session TTL (`INFINITY`), a history
/// of 100 events, `on_session_expire = "release"` (a static string).
///
/// `config` must not be NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_config_init(config: *mut interlock_config) -> interlock_status {
    ffi_boundary! {
        let out = unsafe { Out::new(config, "config") }?;
        let d = Config::default();
        out.write(interlock_config {
            lock_ttl: secs_or_inf(d.lock_ttl.map(|t| t.as_secs_f64())),
            session_ttl: secs_or_inf(d.session_ttl.map(|t| t.as_secs_f64())),
            history_limit: d.history_limit,
            on_session_expire: match d.on_session_expire {
                OnExpire::Release => c"release".as_ptr(),
                OnExpire::Keep => c"keep".as_ptr(),
            },
        });
        Ok(())
    }
}

/// Starts an engine and writes it to `*engine_out`.
///
/// `config` may be NULL for the defaults (see `interlock_config_init`); it is read during
/// the call only. `engine_out` must not be NULL. The caller owns the engine and frees it
/// with `interlock_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_engine_new(
    config: *const interlock_config,
    engine_out: *mut *mut interlock_engine,
) -> interlock_status {
    ffi_boundary! {
        let out = unsafe { Out::new(engine_out, "engine_out") }?;
        let config = match unsafe { opt_ref_arg(config) } {
            Some(c) => unsafe { c.to_core() }?,
            None => Config::default(),
        };
        let engine = Engine {
            handle: Handle::new(config)?,
            sessions: Mutex::default(),
            leases: Mutex::default(),
            dispatcher: Arc::default(),
        };
        out.write(Arc::into_raw(Arc::new(engine)).cast_mut().cast());
        Ok(())
    }
}

/// Closes the engine without freeing it: pending waits (in any thread) return
/// `INTERLOCK_CLOSED`, subscriptions stop, the engine's threads are joined, and later
/// calls return `INTERLOCK_CLOSED`. Closing twice is harmless.
///
/// `engine` must not be NULL. When called from a callback, the dispatcher thread (the
/// caller) is not joined.
#[no_mangle]
pub unsafe extern "C" fn interlock_engine_close(
    engine: *const interlock_engine,
) -> interlock_status {
    ffi_boundary! {
        unsafe { engine_arg(engine) }?.handle.close();
        Ok(())
    }
}

/// Closes the engine (as `interlock_engine_close`) and releases the caller's reference to
/// it. Accepts NULL.
///
/// Threads blocked in calls on this engine (e.g. `interlock_acquire`) return
/// `INTERLOCK_CLOSED`; they hold their own reference, so the memory goes when the last
/// of them returns. After this returns no callback of the engine runs any more (unless
/// it is called from a callback). Calls that *start* after this one are a use after
/// free. Tickets and subscriptions of the engine must still be freed.
#[no_mangle]
pub unsafe extern "C" fn interlock_engine_free(engine: *mut interlock_engine) {
    ffi_boundary! {
        if let Some(p) = std::ptr::NonNull::new(engine) {
            let engine = unsafe { Arc::from_raw(p.as_ptr().cast::<Engine>()) };
            engine.handle.close();
        }
    }
}

/// Opens a session and writes its id (a NUL-terminated string) to `session_id_out`, a
/// buffer of at least `INTERLOCK_ID_SIZE` bytes.
///
/// - `name`: non-empty UTF-8, at most 256 bytes. Required.
/// - `metadata_json`: a JSON object of at most 64 KiB (user, host, pid, ...); NULL: `{}`.
/// - `ttl`: seconds without activity (acquire, renew, heartbeat) before the session
///   expires; `INFINITY`: the engine's `session_ttl`.
/// - `on_expire`: `"release"` or `"keep"` (see `interlock_config`); NULL: the engine's.
///
/// A session ends by `interlock_session_close`, by TTL, or with the engine. Strings are
/// read during the call only.
#[no_mangle]
pub unsafe extern "C" fn interlock_session_open(
    engine: *const interlock_engine,
    name: *const c_char,
    metadata_json: *const c_char,
    ttl: f64,
    on_expire: *const c_char,
    session_id_out: *mut c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let metadata = match unsafe { opt_str_arg(metadata_json, "metadata_json") }? {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| invalid(format!("metadata_json is not JSON: {e}")))?,
            None => serde_json::Value::Null,
        };
        let on_expire = unsafe { opt_str_arg(on_expire, "on_expire") }?
            .map(str::parse)
            .transpose()?;
        let out = unsafe { Out::new(session_id_out.cast::<[c_char; INTERLOCK_ID_SIZE]>(), "session_id_out") }?;
        let session = engine.handle.open_session(SessionSpec {
            name: name.into(),
            metadata,
            ttl: ttl_from_secs("ttl", ttl)?,
            on_expire,
        })?;
        lock(&engine.sessions).insert(session.id(), session.clone());
        out.write(id_buf(session.id()));
        Ok(())
    }
}

/// Records activity of a session (and revives it if it was stale).
/// `INTERLOCK_NOT_FOUND` for an unknown or closed session, `INTERLOCK_SESSION_EXPIRED`
/// for one that expired.
#[no_mangle]
pub unsafe extern "C" fn interlock_session_heartbeat(
    engine: *const interlock_engine,
    session_id: *const c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let id = unsafe { str_arg(session_id, "session_id") }?;
        engine.with_session(id, Session::heartbeat)
    }
}

/// Closes a session: releases its leases (their tokens stop working) and fails its waits.
/// Writes how many leases were released to `*released_out`, which may be NULL. Closing a
/// session that already ended writes 0; `INTERLOCK_NOT_FOUND` for an id never seen.
#[no_mangle]
pub unsafe extern "C" fn interlock_session_close(
    engine: *const interlock_engine,
    session_id: *const c_char,
    released_out: *mut usize,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let id = unsafe { str_arg(session_id, "session_id") }?;
        let out = unsafe { Out::optional(released_out) };
        let id: SessionId = id.parse()?;
        let released = engine.handle.close_session(id)?;
        lock(&engine.sessions).remove(&id);
        lock(&engine.leases).retain(|_, l| l.session_id() != id);
        if let Some(out) = out {
            out.write(released);
        }
        Ok(())
    }
}

/// Releases the lease `token` holds on `resource`.
///
/// `INTERLOCK_LOCK_LOST` if that lease was lost (preempted, expired, force-released, or
/// its session expired); the token is forgotten then, so a second release says
/// `INTERLOCK_INVALID_TOKEN`, as for any token that is not current (wrong, already
/// released, or for another resource). `INTERLOCK_INVALID_ARGUMENT` if `token` is not a
/// UUID string.
///
/// A lease that this library handed out is released without waiting for the engine; any
/// call made after this returns, from any thread, still sees the lease gone.
#[no_mangle]
pub unsafe extern "C" fn interlock_release(
    engine: *const interlock_engine,
    resource: *const c_char,
    token: *const c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { str_arg(resource, "resource") }?;
        let token: Token = unsafe { str_arg(token, "token") }?.parse()?;
        match engine.take_lease(resource, token) {
            Some(lease) => lease.release(),
            None => engine.handle.release(resource, token),
        }
    }
}

/// Extends a lease by `ttl` seconds from now (`INFINITY`: by the lease's own TTL; a lease
/// without one stays without one) and writes the new expiry (unix seconds, `INFINITY` if
/// none) to `*expires_at_out`, which may be NULL.
///
/// Errors as for `interlock_release`: `INTERLOCK_LOCK_LOST` for a lost lease (then
/// forgotten), `INTERLOCK_INVALID_TOKEN` for a token that is not current.
#[no_mangle]
pub unsafe extern "C" fn interlock_renew(
    engine: *const interlock_engine,
    resource: *const c_char,
    token: *const c_char,
    ttl: f64,
    expires_at_out: *mut f64,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { str_arg(resource, "resource") }?;
        let token: Token = unsafe { str_arg(token, "token") }?.parse()?;
        let ttl = ttl_from_secs("ttl", ttl)?;
        let out = unsafe { Out::optional(expires_at_out) };
        validate_resource(resource)?;
        let lease = engine
            .lease(resource, token)
            .ok_or_else(|| Error::InvalidToken(resource.into()))?;
        let expires_at = lease.renew(ttl).inspect_err(|e| {
            if e.kind() == ErrorKind::LockLost {
                engine.forget(token);
            }
        })?;
        if let Some(out) = out {
            out.write(secs_or_inf(expires_at));
        }
        Ok(())
    }
}

/// Releases every holder of `resource` (their leases are lost, with reason
/// `force_released`) and writes how many there were to `*count_out`, which may be NULL.
/// `reason` may be NULL; it shows in events and history.
#[no_mangle]
pub unsafe extern "C" fn interlock_force_release(
    engine: *const interlock_engine,
    resource: *const c_char,
    reason: *const c_char,
    count_out: *mut usize,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { str_arg(resource, "resource") }?;
        let reason = unsafe { opt_str_arg(reason, "reason") }?;
        let out = unsafe { Out::optional(count_out) };
        let n = engine.handle.force_release(resource, reason)?;
        if let Some(out) = out {
            out.write(n);
        }
        Ok(())
    }
}

/// Writes to `*result_out` whether session `session_id` may act on `resource`:
/// `action` `"control"` (or NULL): it holds the resource exclusively; `"observe"`: it
/// holds it in any mode. An unknown session gives false.
#[no_mangle]
pub unsafe extern "C" fn interlock_check(
    engine: *const interlock_engine,
    resource: *const c_char,
    session_id: *const c_char,
    action: *const c_char,
    result_out: *mut bool,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { str_arg(resource, "resource") }?;
        let session: SessionId = unsafe { str_arg(session_id, "session_id") }?.parse()?;
        let action = unsafe { opt_str_arg(action, "action") }?.unwrap_or("control").parse()?;
        let out = unsafe { Out::new(result_out, "result_out") }?;
        out.write(engine.handle.check(resource, session, action)?);
        Ok(())
    }
}

/// Writes to `*result_out` whether a current lease on `resource` carries `fence`: a
/// device driver can refuse a command from a holder that has lost its lock.
#[no_mangle]
pub unsafe extern "C" fn interlock_check_fence(
    engine: *const interlock_engine,
    resource: *const c_char,
    fence: u64,
    result_out: *mut bool,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { str_arg(resource, "resource") }?;
        let out = unsafe { Out::new(result_out, "result_out") }?;
        out.write(engine.handle.check_fence(resource, fence)?);
        Ok(())
    }
}

/// Writes the status of `resource` as a JSON object to `*json_out`: `{"resource",
/// "locked", "mode", "holders": [...], "waiters": [...]}` (never a token; an unknown
/// resource is not locked and has empty lists). Free it with `interlock_string_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_resource_status(
    engine: *const interlock_engine,
    resource: *const c_char,
    json_out: *mut *mut c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { str_arg(resource, "resource") }?;
        let out = unsafe { Out::new(json_out, "json_out") }?;
        write_json(&engine.handle.status(resource)?, out)
    }
}

/// Writes a JSON array with the status (as `interlock_resource_status`) of every held
/// resource, by name, to `*json_out`. Free it with `interlock_string_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_locks(
    engine: *const interlock_engine,
    json_out: *mut *mut c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let out = unsafe { Out::new(json_out, "json_out") }?;
        write_json(&engine.handle.locks()?, out)
    }
}

/// Writes a JSON array of the open sessions, oldest first, to `*json_out`: `{"id",
/// "name", "metadata", "created_at", "last_seen", "expires_at", "stale", "leases"}`.
/// Free it with `interlock_string_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_sessions(
    engine: *const interlock_engine,
    json_out: *mut *mut c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let out = unsafe { Out::new(json_out, "json_out") }?;
        write_json(&engine.handle.sessions()?, out)
    }
}

/// Writes recorded events, oldest first, as a JSON array to `*json_out`: those of
/// `resource`, of `session_id`, of both, or (both NULL) of the whole engine; the last
/// `limit` of them (0: all that are kept). Each event is `{"seq", "at", "kind",
/// "resource", "session_id", "session_name", "mode", "fence", "priority", "position",
/// "reason"}` with `null` where a field does not apply. Free it with
/// `interlock_string_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_history(
    engine: *const interlock_engine,
    resource: *const c_char,
    session_id: *const c_char,
    limit: usize,
    json_out: *mut *mut c_char,
) -> interlock_status {
    ffi_boundary! {
        let engine = unsafe { engine_arg(engine) }?;
        let resource = unsafe { opt_str_arg(resource, "resource") }?;
        let session = unsafe { opt_str_arg(session_id, "session_id") }?
            .map(str::parse::<SessionId>)
            .transpose()?;
        let out = unsafe { Out::new(json_out, "json_out") }?;
        let limit = (limit > 0).then_some(limit);
        write_json(&engine.handle.history(resource, session, limit)?, out)
    }
}

/// Frees a string returned by interlock (`*json_out` of the JSON queries). Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_string_free(string: *mut c_char) {
    ffi_boundary! {
        if !string.is_null() {
            drop(unsafe { CString::from_raw(string) });
        }
    }
}
