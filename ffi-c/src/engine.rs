//! The engine object, sessions, release / renew / force release, checks, and the JSON
//! queries.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use interlock::journal::JournalConfig;
use interlock::{
    ttl_from_secs, Config, Error, ErrorKind, Handle, Lease, OnExpire, Result, Session, SessionId,
    SessionSpec, Token,
};
use serde::Serialize;

use crate::args::{
    arc_arg, arc_free, arc_into_c, c_string, c_string_free, c_string_into_c, id_buf, invalid, lock,
    opt_ref_arg, opt_str_arg, secs_or_inf, str_arg, try_lock, ArcHandle, Out,
};
use crate::interlock_status;

/// Bytes of a session id or lease token as a C string: 36 characters of a hyphenated
/// UUID and the terminating NUL.
pub const INTERLOCK_ID_SIZE: usize = 37;

/// An engine: one lock table, its actor thread and its dispatcher thread; or, from
/// `interlock_engine_connect`, a connection to the engine a server serves, with the same
/// functions and results.
///
/// Opaque. Created by `interlock_engine_new` or `interlock_engine_connect`, freed by
/// `interlock_engine_free`. Every function taking an engine may be called from any number
/// of threads at once.
pub struct interlock_engine {
    _private: [u8; 0],
}

impl ArcHandle for interlock_engine {
    type Rust = Engine;
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
    /// A SQLite file for the engine's journal, or NULL for none. With one, a restart on
    /// the same file loses no acknowledged lock (and `interlock_release` returns once the
    /// release is written); the history is a table `sqlite3 FILE` can query. Read during
    /// `interlock_engine_new` only; a file another engine holds, of a newer schema, or
    /// damaged, is `INTERLOCK_INVALID_ARGUMENT`.
    pub journal: *const c_char,
    /// After a restart on a journal, seconds every session has (at least; its TTL if
    /// longer) to heartbeat or resume before it expires.
    pub journal_grace: f64,
    /// History rows the journal keeps (older ones are deleted); `UINT64_MAX`: no limit by
    /// count.
    pub journal_keep_rows: u64,
    /// Days of history the journal keeps; `INFINITY`: no limit by age.
    pub journal_keep_days: f64,
}

impl interlock_config {
    /// # Safety
    /// `on_session_expire` and `journal` are NULL or strings as the pointer contract says
    /// (the config is read during the call only).
    unsafe fn to_core(&self) -> Result<Config> {
        // SAFETY: by this function's contract.
        let on_expire = unsafe { str_arg(self.on_session_expire, "on_session_expire") }?;
        // SAFETY: by this function's contract.
        let journal = match unsafe { opt_str_arg(self.journal, "journal") }? {
            Some(path) => Some(JournalConfig {
                grace: ttl_from_secs("journal_grace", self.journal_grace)?
                    .ok_or_else(|| invalid("journal_grace must be finite"))?,
                keep_rows: (self.journal_keep_rows != u64::MAX).then_some(self.journal_keep_rows),
                keep_for: ttl_from_secs("journal_keep_days", self.journal_keep_days * 86_400.0)?,
                ..JournalConfig::at(path)
            }),
            None => None,
        };
        Ok(Config {
            lock_ttl: ttl_from_secs("lock_ttl", self.lock_ttl)?,
            session_ttl: ttl_from_secs("session_ttl", self.session_ttl)?,
            history_limit: self.history_limit,
            on_session_expire: on_expire.parse()?,
            journal,
            ..Config::default()
        })
    }
}

/// Session values kept by id, at most: past that the cache starts afresh, so that sessions
/// that end by expiry, which nobody tells the cache, cannot grow it without bound.
const SESSIONS_CACHED: usize = 4096;

/// The Rust value behind an `interlock_engine *` (an `Arc` turned into a raw pointer).
pub(crate) struct Engine {
    pub(crate) handle: Handle,
    /// Session values by id, so that a call by id needs no extra round trip to the actor.
    /// Calls only try its lock, and ask the engine when another thread holds it: no call
    /// waits for the cache, so in a child forked while a thread of the parent held it (it
    /// then stays locked forever) a call still reaches the core and is refused at once.
    sessions: Mutex<HashMap<SessionId, Session>>,
    /// The dispatcher thread, recorded by the first callback that runs on it.
    pub(crate) dispatcher: Arc<OnceLock<ThreadId>>,
}

impl Engine {
    pub(crate) fn new(handle: Handle) -> Self {
        Engine {
            handle,
            sessions: Mutex::default(),
            dispatcher: Arc::default(),
        }
    }

    /// Remembers `s`, unless another thread is using the cache.
    fn cache(&self, s: &Session) {
        if let Some(mut sessions) = try_lock(&self.sessions) {
            if sessions.len() >= SESSIONS_CACHED {
                sessions.clear();
            }
            sessions.insert(s.id(), s.clone());
        }
    }

    /// The session `id` names, from the cache or (once) from the engine.
    fn session(&self, id: &str) -> Result<Session> {
        let id: SessionId = id.parse()?;
        if let Some(s) = try_lock(&self.sessions).and_then(|c| c.get(&id).cloned()) {
            return Ok(s);
        }
        let s = self.handle.session(id)?;
        self.cache(&s);
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
                // A value left behind is harmless: the engine answers for the session.
                if let Some(mut sessions) = try_lock(&self.sessions) {
                    sessions.remove(&s.id());
                }
            }
        }
        result
    }
}

/// Describes granted leases for C.
pub(crate) fn leases_for_c(leases: Vec<Lease>) -> Vec<crate::interlock_lease> {
    leases.iter().map(crate::interlock_lease::of).collect()
}

/// Borrows the engine behind a pointer: the call holds its own reference, so a blocked
/// call outlives `interlock_engine_free` and returns `INTERLOCK_CLOSED`.
///
/// # Safety
/// `p` is NULL or a pointer from `interlock_engine_new` or `interlock_engine_connect`
/// that was not freed before this call began.
pub(crate) unsafe fn engine_arg(p: *const interlock_engine) -> Result<Arc<Engine>> {
    // SAFETY: `interlock_engine_new` and `interlock_engine_connect` make engines with
    // `arc_into_c`; the rest is this function's contract.
    unsafe { arc_arg(p, "engine") }
}

/// Hands a JSON rendering of `value` to C, to be freed with `interlock_string_free`.
fn write_json(value: &impl Serialize, out: Out<*mut c_char>) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    out.write(c_string_into_c(c_string(text)?));
    Ok(())
}

/// Fills `config` with the defaults: no lock TTL, no session TTL (`INFINITY`), a history
/// of 100 events, `on_session_expire = "release"` (a static string), no journal, a
/// journal grace of 15 s, the newest million history rows kept, for no limit of days.
///
/// `config` must not be NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_config_init(config: *mut interlock_config) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `config` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(config, "config") }?;
        let d = Config::default();
        let j = JournalConfig::at("");
        out.write(interlock_config {
            lock_ttl: secs_or_inf(d.lock_ttl.map(|t| t.as_secs_f64())),
            session_ttl: secs_or_inf(d.session_ttl.map(|t| t.as_secs_f64())),
            history_limit: d.history_limit,
            on_session_expire: match d.on_session_expire {
                OnExpire::Release => c"release".as_ptr(),
                OnExpire::Keep => c"keep".as_ptr(),
            },
            journal: std::ptr::null(),
            journal_grace: j.grace.as_secs_f64(),
            journal_keep_rows: j.keep_rows.unwrap_or(u64::MAX),
            journal_keep_days: secs_or_inf(j.keep_for.map(|d| d.as_secs_f64() / 86_400.0)),
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
        // SAFETY: `engine_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(engine_out, "engine_out") }?;
        // SAFETY: `config` is a struct argument read by this call, or NULL (pointer contract).
        let config = match unsafe { opt_ref_arg(config) } {
            // SAFETY: `c.on_session_expire` is a string argument (pointer contract).
            Some(c) => unsafe { c.to_core() }?,
            None => Config::default(),
        };
        let engine = Engine::new(Handle::new(config)?);
        out.write(arc_into_c(Arc::new(engine)));
        Ok(())
    }
}

/// Closes the engine without freeing it: pending waits (in any thread) return
/// `INTERLOCK_CLOSED`, subscriptions stop, the engine's threads are joined, and later
/// calls return `INTERLOCK_CLOSED`. Closing twice is harmless.
///
/// For an engine from `interlock_engine_connect` this closes the sessions opened through
/// it first (their locks go at once, not after their TTL; this waits at most about 2 s per
/// session for a server that does not answer, and not at all for one that cannot be
/// reached), then the connection; the server and its engine go on.
///
/// `engine` must not be NULL. When called from a callback, the dispatcher thread (the
/// caller) is not joined.
#[no_mangle]
pub unsafe extern "C" fn interlock_engine_close(
    engine: *const interlock_engine,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
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
        // SAFETY: `engine` is NULL or an engine to free (pointer contract), which
        // `interlock_engine_new` or `_connect` made with `arc_into_c`.
        if let Some(engine) = unsafe { arc_free(engine) } {
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
///   expires; `INFINITY`: the engine's `session_ttl` (for an engine from
///   `interlock_engine_connect`, its options' `session_ttl`: a remote session always has
///   one, and the library heartbeats it).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `name` is a string argument (pointer contract).
        let name = unsafe { str_arg(name, "name") }?;
        // SAFETY: `metadata_json` is a string argument or NULL (pointer contract).
        let metadata = match unsafe { opt_str_arg(metadata_json, "metadata_json") }? {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| invalid(format!("metadata_json is not JSON: {e}")))?,
            None => serde_json::Value::Null,
        };
        // SAFETY: `on_expire` is a string argument or NULL (pointer contract).
        let on_expire = unsafe { opt_str_arg(on_expire, "on_expire") }?
            .map(str::parse)
            .transpose()?;
        let id_out = session_id_out.cast::<[c_char; INTERLOCK_ID_SIZE]>();
        // SAFETY: `session_id_out` is an out-pointer argument for `INTERLOCK_ID_SIZE`
        // bytes (pointer contract): one `[c_char; INTERLOCK_ID_SIZE]`, of alignment 1.
        let out = unsafe { Out::new(id_out, "session_id_out") }?;
        let session = engine.handle.open_session(SessionSpec {
            name: name.into(),
            metadata,
            ttl: ttl_from_secs("ttl", ttl)?,
            on_expire,
        })?;
        engine.cache(&session);
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `session_id` is a string argument (pointer contract).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `session_id` is a string argument (pointer contract).
        let id = unsafe { str_arg(session_id, "session_id") }?;
        // SAFETY: `released_out` is an out-pointer argument or NULL (pointer contract).
        let out = unsafe { Out::optional(released_out) };
        let id: SessionId = id.parse()?;
        let released = engine.handle.close_session(id)?;
        lock(&engine.sessions).remove(&id);
        if let Some(out) = out {
            out.write(released);
        }
        Ok(())
    }
}

/// Releases the lease `token` holds on `resource`.
///
/// `INTERLOCK_LOCK_LOST` if that lease was lost (preempted, expired, force-released, or
/// its session expired; the engine remembers this for as many leases as its global
/// history holds events); `INTERLOCK_INVALID_TOKEN` for any other token that is not
/// current (wrong, malformed, already released, or for another resource).
#[no_mangle]
pub unsafe extern "C" fn interlock_release(
    engine: *const interlock_engine,
    resource: *const c_char,
    token: *const c_char,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `token` is a string argument (pointer contract).
        let token: Token = unsafe { str_arg(token, "token") }?.parse()?;
        engine.handle.release(resource, token)
    }
}

/// Extends a lease by `ttl` seconds from now (`INFINITY`: by the lease's own TTL; a lease
/// without one stays without one) and writes the new expiry (unix seconds, `INFINITY` if
/// none) to `*expires_at_out`, which may be NULL.
///
/// Errors as for `interlock_release`: `INTERLOCK_LOCK_LOST` for a lost lease,
/// `INTERLOCK_INVALID_TOKEN` for a token that is not current.
#[no_mangle]
pub unsafe extern "C" fn interlock_renew(
    engine: *const interlock_engine,
    resource: *const c_char,
    token: *const c_char,
    ttl: f64,
    expires_at_out: *mut f64,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `token` is a string argument (pointer contract).
        let token: Token = unsafe { str_arg(token, "token") }?.parse()?;
        let ttl = ttl_from_secs("ttl", ttl)?;
        // SAFETY: `expires_at_out` is an out-pointer argument or NULL (pointer contract).
        let out = unsafe { Out::optional(expires_at_out) };
        let expires_at = engine.handle.renew(resource, token, ttl)?;
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
    // SAFETY: the same contract as this function's.
    unsafe { force_release(engine, resource, None, reason, count_out) }
}

/// As `interlock_force_release`, but releases only the lease on `resource` that carries
/// `fence`, if it is still current: `*count_out` is 1 if it was, 0 if not (for a tool
/// that shows leases by fence and must not take away one granted after it looked).
#[no_mangle]
pub unsafe extern "C" fn interlock_force_release_fence(
    engine: *const interlock_engine,
    resource: *const c_char,
    fence: u64,
    reason: *const c_char,
    count_out: *mut usize,
) -> interlock_status {
    // SAFETY: the same contract as this function's.
    unsafe { force_release(engine, resource, Some(fence), reason, count_out) }
}

/// The body of both force releases.
///
/// # Safety
/// The pointers are as `interlock_force_release` documents them.
unsafe fn force_release(
    engine: *const interlock_engine,
    resource: *const c_char,
    fence: Option<u64>,
    reason: *const c_char,
    count_out: *mut usize,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `reason` is a string argument or NULL (pointer contract).
        let reason = unsafe { opt_str_arg(reason, "reason") }?;
        // SAFETY: `count_out` is an out-pointer argument or NULL (pointer contract).
        let out = unsafe { Out::optional(count_out) };
        let n = match fence {
            Some(fence) => engine.handle.force_release_fence(resource, fence, reason)?,
            None => engine.handle.force_release(resource, reason)?,
        };
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `session_id` is a string argument (pointer contract).
        let session: SessionId = unsafe { str_arg(session_id, "session_id") }?.parse()?;
        // SAFETY: `action` is a string argument or NULL (pointer contract).
        let action = unsafe { opt_str_arg(action, "action") }?.unwrap_or("control").parse()?;
        // SAFETY: `result_out` is an out-pointer argument (pointer contract).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `result_out` is an out-pointer argument (pointer contract).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument (pointer contract).
        let resource = unsafe { str_arg(resource, "resource") }?;
        // SAFETY: `json_out` is an out-pointer argument (pointer contract).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `json_out` is an out-pointer argument (pointer contract).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `json_out` is an out-pointer argument (pointer contract).
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
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `resource` is a string argument or NULL (pointer contract).
        let resource = unsafe { opt_str_arg(resource, "resource") }?;
        // SAFETY: `session_id` is a string argument or NULL (pointer contract).
        let session = unsafe { opt_str_arg(session_id, "session_id") }?
            .map(str::parse::<SessionId>)
            .transpose()?;
        // SAFETY: `json_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(json_out, "json_out") }?;
        let limit = (limit > 0).then_some(limit);
        write_json(&engine.handle.history(resource, session, limit)?, out)
    }
}

/// Frees a string returned by interlock (`*json_out` of the JSON queries, `*url_out` of
/// `interlock_server_url`), which must not have been written to. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_string_free(string: *mut c_char) {
    ffi_boundary! {
        // SAFETY: `string` is NULL or a string to free (pointer contract), which
        // `write_json` or `interlock_server_url` made with `c_string_into_c`.
        unsafe { c_string_free(string) }
    }
}
