//! `interlock.Engine`: one embedded engine, its introspection and its event streams.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use std::collections::HashMap;
use std::path::PathBuf;

use interlock::journal::JournalConfig;
use interlock::{
    Action, Config, ConnectOptions, Handle, OnExpire, Secret, SessionId, SessionSpec, Token,
};
use interlock_server::{Role, ServerConfig, TlsFiles, Tokens};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::callbacks::{call_logged, with_python};
use crate::convert::{bounded, bounded_opt, callable, size, to_py_value, ttl_secs};
use crate::errors::to_py;
use crate::events::{Event, Subscription};
use crate::session::Session;
use crate::{unlocked, Unattached};

/// Engines whose `Engine` object is alive, so that `close_all` can close them at exit,
/// before the interpreter shuts down under their dispatcher threads.
static OPEN: Mutex<Vec<Weak<Handle>>> = Mutex::new(Vec::new());

/// Closes every engine whose `Engine` object is still alive (registered with `atexit`).
#[pyfunction]
#[pyo3(name = "_close_all")]
pub(crate) fn close_all(py: Python<'_>) {
    let open: Vec<Arc<Handle>> =
        std::mem::take(&mut *OPEN.lock().unwrap_or_else(|e| e.into_inner()))
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
    py.detach(move || open.iter().for_each(|h| h.close()));
}

/// A session id from Python: a string that is not one is bad input (`ValueError`), as in
/// every binding.
fn parse_session_id(id: &str) -> PyResult<SessionId> {
    SessionId::from_str(id).map_err(to_py)
}

/// One embedded lock engine; a context manager that closes it. It does not cross
/// `os.fork()`: in a forked child, every call on it (or on its sessions and leases) raises
/// `EngineClosed` at once, and closing it returns at once.
#[pyclass(module = "interlock", frozen)]
pub(crate) struct Engine {
    handle: Unattached<Arc<Handle>>,
    closed: AtomicBool,
}

impl Engine {
    /// An `Engine` object for a started engine; closed at exit if still open then.
    fn of(handle: Handle) -> Self {
        let handle = Arc::new(handle);
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|h| h.strong_count() > 0);
        open.push(Arc::downgrade(&handle));
        Engine {
            handle: Unattached::new(handle),
            closed: AtomicBool::new(false),
        }
    }
}

/// Connects to the engine an interlock server serves at `url`: the `Engine` it returns
/// works as an embedded one. Its sessions always have a TTL (`session_ttl` unless they
/// give one), heartbeated by the library on its own thread; it reconnects by itself.
#[pyfunction]
#[pyo3(signature = (
    url, token = None, session_ttl = 15.0, *, ca_file = None, subscriber_buffer = 1024,
    keepalive = true, idle_timeout = 15.0,
))]
#[allow(clippy::too_many_arguments)] // Python's keyword arguments
pub(crate) fn connect(
    py: Python<'_>,
    url: &str,
    token: Option<String>,
    session_ttl: f64,
    ca_file: Option<PathBuf>,
    #[pyo3(from_py_with = buffer_size)] subscriber_buffer: usize,
    keepalive: bool,
    idle_timeout: f64,
) -> PyResult<Engine> {
    let finite = |what: &str, secs: f64| {
        ttl_secs(what, Some(secs))?
            .ok_or_else(|| PyValueError::new_err(format!("{what} must be finite")))
    };
    let options = ConnectOptions {
        token,
        session_ttl: finite("session_ttl", session_ttl)?,
        ca_file,
        subscriber_buffer,
        keepalive,
        idle_timeout: finite("idle_timeout", idle_timeout)?,
        ..ConnectOptions::default()
    };
    Ok(Engine::of(unlocked(py, || Handle::connect(url, options))?))
}

/// A running server of an engine: `server.url`, `server.close()`; a context manager.
#[pyclass(module = "interlock", frozen)]
pub(crate) struct Server {
    inner: Mutex<Option<interlock_server::Server>>,
    url: String,
}

impl Server {
    fn new(server: interlock_server::Server) -> Self {
        Server {
            url: server.url().to_string(),
            inner: Mutex::new(Some(server)),
        }
    }
}

#[pymethods]
impl Server {
    /// `http://HOST:PORT` (or `https://`).
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving: lets the answers in flight finish, then stops. Twice is harmless.
    fn close(&self, py: Python<'_>) {
        let server = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(move || drop(server));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        match self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            true => format!("<Server {}>", self.url),
            false => format!("<Server {} closed>", self.url),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let server = self.inner.get_mut().ok().and_then(Option::take);
        Python::attach(|py| py.detach(move || drop(server)));
    }
}

/// The `interlock` command (its console script): runs `argv` and returns the exit code.
#[pyfunction]
pub(crate) fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(move || interlock_cli::run(argv))
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (
        lock_ttl = None,
        session_ttl = None,
        history_limit = 100,
        on_session_expire = "release",
        *,
        global_history = 10000,
        subscriber_buffer = 1024,
        journal = None,
        keep_rows = 1_000_000,
        keep_days = None,
        grace = 15.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        lock_ttl: Option<f64>,
        session_ttl: Option<f64>,
        #[pyo3(from_py_with = history_size)] history_limit: usize,
        on_session_expire: &str,
        #[pyo3(from_py_with = history_size)] global_history: usize,
        #[pyo3(from_py_with = buffer_size)] subscriber_buffer: usize,
        journal: Option<PathBuf>,
        keep_rows: Option<u64>,
        keep_days: Option<f64>,
        grace: f64,
    ) -> PyResult<Self> {
        let journal = match journal {
            Some(path) => Some(JournalConfig {
                path,
                keep_rows,
                keep_for: ttl_secs("keep_days", keep_days.map(|d| d * 86_400.0))?,
                grace: ttl_secs("grace", Some(grace))?
                    .ok_or_else(|| PyValueError::new_err("grace must be finite"))?,
            }),
            None => None,
        };
        let config = Config {
            lock_ttl: ttl_secs("lock_ttl", lock_ttl)?,
            session_ttl: ttl_secs("session_ttl", session_ttl)?,
            history_limit,
            global_history,
            on_session_expire: OnExpire::from_str(on_session_expire).map_err(to_py)?,
            subscriber_buffer,
            journal,
        };
        Ok(Engine::of(unlocked(py, || Handle::new(config))?))
    }

    /// Serves this engine to other processes and PCs (see `interlock.Server`): the HTTP
    /// API, the WebSocket protocol of `interlock.connect`, events and the dashboard.
    #[pyo3(signature = (
        addr = "127.0.0.1:7411", tokens = None, *, tls_cert = None, tls_key = None,
        max_wait = 300.0, session_ttl = 15.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &self,
        py: Python<'_>,
        addr: &str,
        tokens: Option<HashMap<String, String>>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        max_wait: f64,
        session_ttl: f64,
    ) -> PyResult<Server> {
        let pairs = tokens
            .unwrap_or_default()
            .into_iter()
            .map(|(token, role)| Ok((token, role.parse::<Role>()?)))
            .collect::<interlock::Result<Vec<_>>>()
            .map_err(to_py)?;
        let tokens = Tokens::new(pairs.iter().map(|(t, r)| (t.as_str(), *r))).map_err(to_py)?;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("tls_cert and tls_key go together")),
        };
        let secs = |what: &str, v: f64| -> PyResult<std::time::Duration> {
            ttl_secs(what, Some(v))?
                .ok_or_else(|| PyValueError::new_err(format!("{what} must be finite")))
        };
        let config = ServerConfig {
            bind: addr.to_string(),
            tokens,
            tls,
            max_wait: secs("max_wait", max_wait)?,
            session_ttl: secs("session_ttl", session_ttl)?,
            ..ServerConfig::default()
        };
        let handle = (**self.handle).clone();
        let server = unlocked(py, || interlock_server::Server::start(handle, config))?;
        Ok(Server::new(server))
    }

    /// Opens a session.
    #[pyo3(signature = (name, metadata = None, ttl = None, on_expire = None))]
    fn session(
        &self,
        py: Python<'_>,
        name: String,
        metadata: Option<&Bound<'_, PyAny>>,
        ttl: Option<f64>,
        on_expire: Option<&str>,
    ) -> PyResult<Session> {
        let spec = SessionSpec {
            name,
            metadata: crate::convert::metadata(metadata)?,
            ttl: ttl_secs("ttl", ttl)?,
            on_expire: on_expire
                .map(OnExpire::from_str)
                .transpose()
                .map_err(to_py)?,
        };
        Ok(Session::new(unlocked(py, || {
            self.handle.open_session(spec)
        })?))
    }

    /// Releases the lease `token` on `resource`. `LockLost` if that lease was lost;
    /// `InvalidToken` for any other token that is not current (malformed included), as C's
    /// `interlock_release`.
    fn release(&self, py: Python<'_>, resource: &str, token: &str) -> PyResult<()> {
        interlock::validate_resource(resource).map_err(to_py)?;
        let token = Token::from_str(token).map_err(to_py)?;
        unlocked(py, || self.handle.release(resource, token))
    }

    /// Extends the lease `token` on `resource` by `ttl` seconds from now, which becomes its
    /// TTL (by its TTL if `None`); returns the new expiry. For a holder that kept only the
    /// token. Errors as `release`.
    #[pyo3(signature = (resource, token, ttl = None))]
    fn renew(
        &self,
        py: Python<'_>,
        resource: &str,
        token: &str,
        ttl: Option<f64>,
    ) -> PyResult<Option<f64>> {
        interlock::validate_resource(resource).map_err(to_py)?;
        let token = Token::from_str(token).map_err(to_py)?;
        let ttl = ttl_secs("ttl", ttl)?;
        unlocked(py, || self.handle.renew(resource, token, ttl))
    }

    /// Takes up the session `session_id` with its `secret` (see `Session.secret`): after
    /// a restart of a durable engine, or from another program. `PermissionDenied` for a
    /// wrong secret, `NotFound` for an unknown or closed session.
    fn resume(&self, py: Python<'_>, session_id: &str, secret: &str) -> PyResult<Session> {
        let id = parse_session_id(session_id)?;
        let secret = Secret::from_str(secret).map_err(to_py)?;
        Ok(Session::new(unlocked(py, || {
            self.handle.resume_session(id, secret)
        })?))
    }

    /// Releases every holder of `resource` (with `fence`: only the lease that carries
    /// it, if still current); returns how many there were.
    #[pyo3(signature = (resource, reason = None, fence = None))]
    fn force_release(
        &self,
        py: Python<'_>,
        resource: &str,
        reason: Option<&str>,
        #[pyo3(from_py_with = fence_opt)] fence: Option<u64>,
    ) -> PyResult<usize> {
        unlocked(py, || match fence {
            Some(fence) => self.handle.force_release_fence(resource, fence, reason),
            None => self.handle.force_release(resource, reason),
        })
    }

    fn status<'py>(&self, py: Python<'py>, resource: &str) -> PyResult<Bound<'py, PyAny>> {
        let status = unlocked(py, || self.handle.status(resource))?;
        to_py_value(py, &status)
    }

    fn locks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let locks = unlocked(py, || self.handle.locks())?;
        to_py_value(py, &locks)
    }

    fn sessions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let sessions = unlocked(py, || self.handle.sessions())?;
        to_py_value(py, &sessions)
    }

    /// `"control"`: does the session hold `resource` exclusively? `"observe"`: in any mode?
    #[pyo3(signature = (resource, session_id, action = "control"))]
    fn check(
        &self,
        py: Python<'_>,
        resource: &str,
        session_id: &str,
        action: &str,
    ) -> PyResult<bool> {
        let action = Action::from_str(action).map_err(to_py)?;
        let id = parse_session_id(session_id)?;
        unlocked(py, || self.handle.check(resource, id, action))
    }

    /// Is `fence` the fence of a current lease on `resource`?
    fn check_fence(
        &self,
        py: Python<'_>,
        resource: &str,
        #[pyo3(from_py_with = fence_arg)] fence: u64,
    ) -> PyResult<bool> {
        unlocked(py, || self.handle.check_fence(resource, fence))
    }

    /// Recorded events, oldest first.
    #[pyo3(signature = (resource = None, session_id = None, limit = None))]
    fn history(
        &self,
        py: Python<'_>,
        resource: Option<&str>,
        session_id: Option<&str>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Event>> {
        let limit = limit.map(|l| size("limit", l)).transpose()?;
        let session = session_id.map(parse_session_id).transpose()?;
        let events = unlocked(py, || self.handle.history(resource, session, limit))?;
        Ok(events.into_iter().map(Event::from).collect())
    }

    /// A stream of events (of `resources` only, if given); with `since`, first the events
    /// after that `seq`. With `callback`, each event is passed to it on the dispatcher
    /// thread instead, until the subscription is closed or dropped.
    #[pyo3(signature = (resources = None, since = None, callback = None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        resources: Option<Vec<String>>,
        since: Option<&Bound<'_, PyAny>>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<Subscription> {
        let since = bounded_opt("since", since, u64::MAX)?;
        let resources = resources.as_deref();
        let callback = callable(py, "callback", callback)?;
        let delivers = callback.is_some();
        let sub = match callback {
            None => unlocked(py, || self.handle.subscribe(resources, since))?,
            Some(callback) => unlocked(py, || {
                self.handle.subscribe_callback(resources, since, move |ev| {
                    with_python(|py| {
                        let event = Event::from(Arc::new(ev.clone()));
                        call_logged(py, "subscription callback", callback.bind(py), (event,));
                    })
                })
            })?,
        };
        Ok(Subscription::new(sub, delivers))
    }

    /// Closes the engine: pending waits fail with `EngineClosed`, subscriptions end, and
    /// later calls raise `EngineClosed`. Closing twice is harmless.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Release);
        py.detach(|| self.handle.close());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) {
        self.close(py);
    }

    fn __repr__(&self) -> &'static str {
        match self.closed.load(Ordering::Acquire) {
            true => "<Engine closed>",
            false => "<Engine>",
        }
    }
}

fn history_size(v: &Bound<'_, PyAny>) -> PyResult<usize> {
    size("history size", v)
}

fn buffer_size(v: &Bound<'_, PyAny>) -> PyResult<usize> {
    size("subscriber_buffer", v)
}

fn fence_arg(v: &Bound<'_, PyAny>) -> PyResult<u64> {
    bounded("fence", v, u64::MAX)
}

fn fence_opt(v: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    match v.is_none() {
        true => Ok(None),
        false => fence_arg(v).map(Some),
    }
}
