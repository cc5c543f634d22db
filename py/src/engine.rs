//! `interlock.Engine`: one embedded engine, its introspection and its event streams.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use interlock::{Action, Config, Handle, OnExpire, SessionId, SessionSpec, Token};
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

/// A session id from Python; `None` if the string is not one (then there is no such
/// session either).
fn parse_session_id(id: &str) -> Option<SessionId> {
    SessionId::from_str(id).ok()
}

#[pyclass(module = "interlock", frozen)]
pub(crate) struct Engine {
    handle: Unattached<Arc<Handle>>,
    closed: AtomicBool,
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
    ))]
    fn new(
        py: Python<'_>,
        lock_ttl: Option<f64>,
        session_ttl: Option<f64>,
        #[pyo3(from_py_with = history_size)] history_limit: usize,
        on_session_expire: &str,
        #[pyo3(from_py_with = history_size)] global_history: usize,
        #[pyo3(from_py_with = buffer_size)] subscriber_buffer: usize,
    ) -> PyResult<Self> {
        let config = Config {
            lock_ttl: ttl_secs("lock_ttl", lock_ttl)?,
            session_ttl: ttl_secs("session_ttl", session_ttl)?,
            history_limit,
            global_history,
            on_session_expire: OnExpire::from_str(on_session_expire).map_err(to_py)?,
            subscriber_buffer,
        };
        let handle = Arc::new(unlocked(py, || Handle::new(config))?);
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|h| h.strong_count() > 0);
        open.push(Arc::downgrade(&handle));
        Ok(Engine {
            handle: Unattached::new(handle),
            closed: AtomicBool::new(false),
        })
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

    /// Releases the lease `token` on `resource`.
    fn release(&self, py: Python<'_>, resource: &str, token: &str) -> PyResult<()> {
        interlock::validate_resource(resource).map_err(to_py)?;
        // A string that is no token at all is not a current token either.
        let token = Token::from_str(token)
            .map_err(|_| to_py(interlock::Error::InvalidToken(resource.to_owned())))?;
        unlocked(py, || self.handle.release(resource, token))
    }

    /// Releases every holder of `resource`; returns how many there were.
    #[pyo3(signature = (resource, reason = None))]
    fn force_release(
        &self,
        py: Python<'_>,
        resource: &str,
        reason: Option<&str>,
    ) -> PyResult<usize> {
        unlocked(py, || self.handle.force_release(resource, reason))
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
        match parse_session_id(session_id) {
            Some(id) => unlocked(py, || self.handle.check(resource, id, action)),
            None => interlock::validate_resource(resource)
                .map(|_| false)
                .map_err(to_py),
        }
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
        let session = match session_id.map(parse_session_id) {
            Some(None) => {
                resource
                    .map(interlock::validate_resource)
                    .transpose()
                    .map_err(to_py)?;
                return Ok(Vec::new());
            }
            Some(id) => id,
            None => None,
        };
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
