//! Engines over the network: connecting to a server (an `interlock_engine *` whose calls
//! go to it), and serving an engine of this process to others (`interlock_server *`).

use std::ffi::c_char;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use interlock::{ttl_from_secs, ConnectOptions, Handle, Result};
// `::`: this crate has a type named `interlock_server` too (the C one).
use ::interlock_server::{Server, ServerConfig, TlsFiles, Tokens};

use crate::args::{
    arc_into_c, box_arg, box_free, box_into_c, c_string, c_string_into_c, invalid, opt_ref_arg,
    opt_str_arg, str_arg, BoxHandle, Out,
};
use crate::engine::{engine_arg, Engine};
use crate::{interlock_engine, interlock_status};

/// Seconds that must be a finite, positive duration.
fn finite_secs(what: &str, secs: f64) -> Result<Duration> {
    ttl_from_secs(what, secs)?
        .ok_or_else(|| invalid(format!("{what} must be a finite number of seconds")))
}

/// How to reach a server. Fill it with `interlock_connect_options_init`, then change
/// fields. Strings are read during `interlock_engine_connect` only.
#[repr(C)]
pub struct interlock_connect_options {
    /// The bearer token the server gave this client (a line of its tokens file), or NULL
    /// for a server without tokens.
    pub token: *const c_char,
    /// TTL in seconds of a session opened through this engine without one (its
    /// `interlock_session_open` passes `INFINITY`). A remote session always has a TTL: the
    /// library heartbeats it every TTL/3 on a thread of its own, and if the server cannot
    /// be reached for a TTL the session's leases are lost (`"connection_lost"`) before
    /// the server gives them to anyone else. Finite, more than 0.
    pub session_ttl: f64,
    /// A PEM file of certificates to trust for an `https://` server besides the public
    /// roots (a lab's own CA, or the server's self-signed certificate); NULL: none.
    pub ca_file: *const c_char,
    /// Seconds `interlock_engine_connect` may take to reach the server. Finite, more
    /// than 0.
    pub connect_timeout: f64,
    /// Whether the library heartbeats the engine's sessions by itself (default true).
    /// false, for a gateway acting for clients of its own: a session opened with a TTL
    /// then lives by the calls made for it (`interlock_session_heartbeat`, acquires), as
    /// an embedded one; one opened without (`INFINITY`) is heartbeated either way.
    pub keepalive: bool,
}

impl interlock_connect_options {
    /// # Safety
    /// The string fields are NULL or strings as the pointer contract says (the options
    /// are read during the call only).
    unsafe fn to_core(&self) -> Result<ConnectOptions> {
        // SAFETY: by this function's contract.
        let token = unsafe { opt_str_arg(self.token, "token") }?;
        // SAFETY: by this function's contract.
        let ca_file = unsafe { opt_str_arg(self.ca_file, "ca_file") }?;
        Ok(ConnectOptions {
            token: token.map(Into::into),
            session_ttl: finite_secs("session_ttl", self.session_ttl)?,
            ca_file: ca_file.map(PathBuf::from),
            connect_timeout: finite_secs("connect_timeout", self.connect_timeout)?,
            keepalive: self.keepalive,
            ..ConnectOptions::default()
        })
    }
}

/// Fills `options` with the defaults: no token, sessions with a TTL of 15 s heartbeated
/// by the library, no CA file, 5 s to connect. `options` must not be NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_connect_options_init(
    options: *mut interlock_connect_options,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `options` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(options, "options") }?;
        let d = ConnectOptions::default();
        out.write(interlock_connect_options {
            token: std::ptr::null(),
            session_ttl: d.session_ttl.as_secs_f64(),
            ca_file: std::ptr::null(),
            connect_timeout: d.connect_timeout.as_secs_f64(),
            keepalive: d.keepalive,
        });
        Ok(())
    }
}

/// Connects to the engine an interlock server serves at `url` (`"http://HOST:PORT"` or
/// `"https://HOST:PORT"`, as `interlock_server_url` or `interlock serve` print it) and
/// writes an engine to `*engine_out` that every function taking an `interlock_engine *`
/// accepts, with the same results as an engine of this process. Blocks until the
/// connection is up, at most `options->connect_timeout`.
///
/// `url` is required; `options` may be NULL for the defaults (see
/// `interlock_connect_options_init`); both are read during the call only. `engine_out`
/// must not be NULL. The caller owns the engine and frees it with `interlock_engine_free`
/// (which closes the sessions it opened, so their locks go at once, and closes the
/// connection); `interlock_engine_serve` may serve it again.
///
/// A connected engine runs two threads of its own: one for the connection (it heartbeats
/// the sessions opened through it and, when the connection drops, reconnects with
/// backoff and resumes them), and the dispatcher thread that runs its callbacks. While
/// the server cannot be reached, calls return `INTERLOCK_CONNECTION_LOST` and waits in
/// flight fail with it (the server drops them); a lease whose session's TTL runs out
/// meanwhile is lost, its `on_lost` callback runs with reason `"connection_lost"`.
///
/// Errors: `INTERLOCK_INVALID_ARGUMENT` (a malformed URL or option, an unreadable CA
/// file), `INTERLOCK_CONNECTION_LOST` (the server could not be reached in time),
/// `INTERLOCK_PERMISSION_DENIED` (the server refused the token, or wanted one).
#[no_mangle]
pub unsafe extern "C" fn interlock_engine_connect(
    url: *const c_char,
    options: *const interlock_connect_options,
    engine_out: *mut *mut interlock_engine,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `url` is a string argument (pointer contract).
        let url = unsafe { str_arg(url, "url") }?;
        // SAFETY: `engine_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(engine_out, "engine_out") }?;
        // SAFETY: `options` is a struct argument read by this call, or NULL (pointer contract).
        let options = match unsafe { opt_ref_arg(options) } {
            // SAFETY: `o.token` and `o.ca_file` are string arguments or NULL (pointer
            // contract).
            Some(o) => unsafe { o.to_core() }?,
            None => ConnectOptions::default(),
        };
        let engine = Engine::new(Handle::connect(url, options)?);
        out.write(arc_into_c(Arc::new(engine)));
        Ok(())
    }
}

/// How to serve an engine. Fill it with `interlock_serve_options_init`, then change
/// fields. Strings are read during `interlock_engine_serve` only (files too: a tokens
/// file changed later takes effect with the next server).
#[repr(C)]
pub struct interlock_serve_options {
    /// `"HOST:PORT"` to listen on, e.g. `"127.0.0.1:7411"` or `"0.0.0.0:7411"`; port 0
    /// picks a free port (`interlock_server_url` tells which). Required.
    pub bind: *const c_char,
    /// The path of a tokens file: one `ROLE TOKEN` a line, roles `read`, `client` and
    /// `admin`, tokens of at least 16 characters without spaces; blank lines and `#`
    /// comments are skipped. Clients send a token as `Authorization: Bearer TOKEN`
    /// (`interlock_connect_options.token`). NULL: no authentication, every caller is an
    /// admin, and only a loopback address may be bound.
    pub tokens: *const c_char,
    /// A PEM certificate chain for HTTPS and WSS; NULL: plain HTTP. Needs `tls_key`.
    pub tls_cert: *const c_char,
    /// The PEM private key of `tls_cert`; NULL if `tls_cert` is NULL.
    pub tls_key: *const c_char,
    /// The longest one HTTP acquire waits, in seconds, whatever its `timeout` asks.
    /// Finite, more than 0.
    pub max_wait: f64,
    /// TTL in seconds of a session opened over the network without one. Finite, more
    /// than 0.
    pub session_ttl: f64,
}

impl interlock_serve_options {
    /// # Safety
    /// The string fields are NULL or strings as the pointer contract says (the options
    /// are read during the call only).
    unsafe fn to_core(&self) -> Result<ServerConfig> {
        // SAFETY: by this function's contract.
        let bind = unsafe { str_arg(self.bind, "bind") }?;
        // SAFETY: by this function's contract.
        let tokens = unsafe { opt_str_arg(self.tokens, "tokens") }?;
        // SAFETY: by this function's contract.
        let tls_cert = unsafe { opt_str_arg(self.tls_cert, "tls_cert") }?;
        // SAFETY: by this function's contract.
        let tls_key = unsafe { opt_str_arg(self.tls_key, "tls_key") }?;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "tls_cert and tls_key go together: give both or neither",
                ))
            }
        };
        let tokens = match tokens {
            Some(path) => {
                let tokens = Tokens::from_file(path.as_ref())?;
                if tokens.is_empty() {
                    return Err(invalid(format!(
                        "the tokens file {path} holds no token (one \"ROLE TOKEN\" a line); \
                         for a server without authentication set tokens to NULL"
                    )));
                }
                tokens
            }
            None => {
                refuse_open_bind(bind)?;
                Tokens::default()
            }
        };
        Ok(ServerConfig {
            bind: bind.into(),
            tokens,
            tls,
            max_wait: finite_secs("max_wait", self.max_wait)?,
            session_ttl: finite_secs("session_ttl", self.session_ttl)?,
            ..ServerConfig::default()
        })
    }
}

/// Without tokens anyone who can reach the server may take every lock, so only a
/// loopback address may be bound. (The server checks this too; this says it in C terms.
/// An address that does not resolve is left to the server's own message.)
fn refuse_open_bind(bind: &str) -> Result<()> {
    match bind.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(addr) if !addr.ip().is_loopback() => Err(invalid(format!(
            "refusing to serve {addr} without tokens: anyone who can reach it could take \
             every lock. Set interlock_serve_options.tokens to the path of a tokens file \
             (one \"ROLE TOKEN\" a line, roles read, client, admin; tokens of at least 16 \
             characters), or bind a loopback address such as 127.0.0.1"
        ))),
        _ => Ok(()),
    }
}

/// `ServerConfig::default().bind`, as a static C string (a test checks they agree).
const DEFAULT_BIND: &std::ffi::CStr = c"127.0.0.1:7411";

/// Fills `options` with the defaults: bind `"127.0.0.1:7411"` (a static string), no
/// tokens, no TLS, `max_wait` 300 s, `session_ttl` 15 s. `options` must not be NULL.
#[no_mangle]
pub unsafe extern "C" fn interlock_serve_options_init(
    options: *mut interlock_serve_options,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `options` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(options, "options") }?;
        let d = ServerConfig::default();
        out.write(interlock_serve_options {
            bind: DEFAULT_BIND.as_ptr(),
            tokens: std::ptr::null(),
            tls_cert: std::ptr::null(),
            tls_key: std::ptr::null(),
            max_wait: d.max_wait.as_secs_f64(),
            session_ttl: d.session_ttl.as_secs_f64(),
        });
        Ok(())
    }
}

/// A running server of an engine.
///
/// Opaque. Created by `interlock_engine_serve`, stopped and freed by
/// `interlock_server_free`. `interlock_server_url` may be called from any thread, but not
/// concurrently with `interlock_server_free`.
pub struct interlock_server {
    _private: [u8; 0],
}

pub(crate) struct ServerBox {
    server: Server,
}

impl BoxHandle for interlock_server {
    type Rust = ServerBox;
}

/// Serves `engine` to other processes and machines and writes the server to
/// `*server_out`: the HTTP API under `/v1` (for curl, MATLAB `webwrite`, scripts), the
/// WebSocket protocol that `interlock_engine_connect` speaks, Server-Sent Events, metrics
/// and the dashboard. Returns once the address is bound and the server accepts
/// connections.
///
/// `engine` is any engine (one of this process, or itself a connected one); the server
/// holds a reference of its own, so the engine's memory stays while it serves, but
/// `interlock_engine_free` still closes the engine (the server then answers every call
/// with `engine_closed`): free the server first. `options` may be NULL for the defaults
/// (see `interlock_serve_options_init`); it is read during the call only. `server_out`
/// must not be NULL. The caller owns the server and frees it with `interlock_server_free`.
///
/// The server runs on threads of its own; remote callers' requests become calls on the
/// engine like those of this process, so the engine's callbacks still run on its
/// dispatcher thread.
///
/// Errors: `INTERLOCK_INVALID_ARGUMENT` for bad options, an address that does not resolve
/// or cannot be bound (e.g. in use), an unreadable or malformed tokens file, TLS files
/// that are not a usable PEM certificate and key, or a non-loopback `bind` without
/// `tokens`; `INTERLOCK_CLOSED` if the engine is closed. Nothing is served then.
#[no_mangle]
pub unsafe extern "C" fn interlock_engine_serve(
    engine: *const interlock_engine,
    options: *const interlock_serve_options,
    server_out: *mut *mut interlock_server,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `engine` is an engine argument (pointer contract).
        let engine = unsafe { engine_arg(engine) }?;
        // SAFETY: `server_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(server_out, "server_out") }?;
        // SAFETY: `options` is a struct argument read by this call, or NULL (pointer contract).
        let config = match unsafe { opt_ref_arg(options) } {
            // SAFETY: the string fields of `o` are string arguments or NULL (pointer
            // contract).
            Some(o) => unsafe { o.to_core() }?,
            None => ServerConfig::default(),
        };
        let server = Server::start(engine.handle.clone(), config)?;
        out.write(box_into_c(ServerBox { server }));
        Ok(())
    }
}

/// Writes the server's URL to `*url_out`: `"http://HOST:PORT"` (`"https://"` with TLS),
/// with the port it actually bound, for `interlock_engine_connect` and HTTP clients.
/// The caller owns the string and frees it with `interlock_string_free`.
#[no_mangle]
pub unsafe extern "C" fn interlock_server_url(
    server: *const interlock_server,
    url_out: *mut *mut c_char,
) -> interlock_status {
    ffi_boundary! {
        // SAFETY: `server` is a server argument, not freed during the call (pointer
        // contract and the server's documentation); `interlock_engine_serve` made it
        // with `box_into_c`.
        let s = unsafe { box_arg(server, "server") }?;
        // SAFETY: `url_out` is an out-pointer argument (pointer contract).
        let out = unsafe { Out::new(url_out, "url_out") }?;
        out.write(c_string_into_c(c_string(s.server.url())?));
        Ok(())
    }
}

/// Stops the server and frees it. Accepts NULL.
///
/// Graceful: the server stops accepting connections, lets the answers in flight finish
/// (waiting for them at most about 3 s), then closes every connection; this blocks until
/// its threads have stopped. Remote engines connected to it then get
/// `INTERLOCK_CONNECTION_LOST` (and keep trying to reconnect); the sessions they opened
/// stay in the engine until their TTL runs out. The engine itself is not closed. Do not
/// call this from an interlock callback: it would hold up the engine's dispatcher thread
/// while the server stops.
#[no_mangle]
pub unsafe extern "C" fn interlock_server_free(server: *mut interlock_server) {
    ffi_boundary! {
        // SAFETY: `server` is NULL or a server to free that no other call is using
        // (pointer contract and the server's documentation); `interlock_engine_serve`
        // made it with `box_into_c`.
        drop(unsafe { box_free(server) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bind_is_the_servers() {
        assert_eq!(DEFAULT_BIND.to_str().unwrap(), ServerConfig::default().bind);
    }
}
