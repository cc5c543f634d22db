//! `interlock.Session`: a client of the engine, and every way it acquires.

use std::str::FromStr;
use std::sync::Arc;

use interlock::{AcquireOptions, Mode};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::convert::{bounded, callable, json_to_py, ttl_secs, wait_secs};
use crate::errors::to_py;
use crate::lease::{self, Lease, LostHook};
use crate::locked::Locked;
use crate::ticket::{self, Ticket};
use crate::{helper, unlocked, Unattached};

/// The keyword arguments every acquire takes (see `Session.acquire`). pyo3 has no way to
/// share one signature between methods, so each spells them out and hands them over here
/// by name (no two of the same type can be swapped) for the one conversion.
struct AcquireArgs<'a> {
    mode: &'a str,
    timeout: Option<f64>,
    ttl: Option<f64>,
    priority: u8,
    preempt: bool,
    reason: Option<String>,
    break_stale: bool,
    on_lost: Option<Py<PyAny>>,
}

impl AcquireArgs<'_> {
    /// The engine's one options type, and the `on_lost` hook that the granted leases are
    /// handed to.
    fn convert(self, py: Python<'_>) -> PyResult<(AcquireOptions, Option<Arc<LostHook>>)> {
        let hook = callable(py, "on_lost", self.on_lost)?.map(LostHook::new);
        let options = AcquireOptions {
            mode: Mode::from_str(self.mode).map_err(to_py)?,
            timeout: wait_secs("timeout", self.timeout)?,
            ttl: ttl_secs("ttl", self.ttl)?,
            priority: self.priority,
            preempt: self.preempt,
            reason: self.reason,
            break_stale: self.break_stale,
            on_lost: hook.as_ref().map(LostHook::engine_callback),
        };
        Ok((options, hook))
    }
}

fn priority_arg(v: &Bound<'_, PyAny>) -> PyResult<u8> {
    let p = bounded("priority", v, u8::MAX.into())?;
    u8::try_from(p).map_err(|_| PyValueError::new_err("priority must be between 0 and 255"))
}

/// The resources of an `enqueue`: one name, or a list of names (then the ticket gives a
/// list of leases).
fn names(resource: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, bool)> {
    match resource.is_instance_of::<PyString>() {
        true => Ok((vec![resource.extract()?], true)),
        false => Ok((resource.extract()?, false)),
    }
}

/// A client of the engine. Dropping it does not end the session: sessions end by
/// `close`, by TTL, or with the engine.
#[pyclass(module = "interlock", frozen)]
pub(crate) struct Session {
    inner: Unattached<interlock::Session>,
    name: Arc<str>,
}

impl Session {
    pub(crate) fn new(inner: interlock::Session) -> Self {
        let name = Arc::from(inner.name());
        Session {
            inner: Unattached::new(inner),
            name,
        }
    }

    /// Acquires `resources` and waits as the request says. Ctrl-C (any exception from a
    /// signal handler) drops the request's ticket, which withdraws it from the engine.
    fn acquire_all(
        &self,
        py: Python<'_>,
        names: &[&str],
        (options, hook): (AcquireOptions, Option<Arc<LostHook>>),
    ) -> PyResult<Vec<Py<Lease>>> {
        // Sending never blocks (the channel is unbounded): only the wait releases the GIL.
        let pending = self.inner.request(names, &options).map_err(to_py)?;
        let granted = ticket::wait(py, &pending, None)?.map_err(to_py)?;
        lease::wrap(py, granted, &self.name, hook.as_deref())
    }

    /// Calls the pure-Python helper `name` with this session's method `method` and the
    /// caller's arguments.
    fn sugar<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        method: &str,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        helper(slf.py(), name)?.call1((slf.getattr(method)?, args, kwargs))
    }
}

#[pymethods]
impl Session {
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, self.inner.metadata())
    }

    /// The secret that resumes this session (see `Engine.resume`), if this value opened
    /// or resumed it.
    #[getter]
    fn secret(&self) -> Option<String> {
        self.inner.secret().map(|s| s.expose())
    }

    /// Records activity (and revives a stale session).
    fn heartbeat(&self, py: Python<'_>) -> PyResult<()> {
        unlocked(py, || self.inner.heartbeat())
    }

    /// Ends the session: releases its leases (returns how many) and cancels its waits.
    /// Closing a closed session returns 0.
    fn close(&self, py: Python<'_>) -> PyResult<usize> {
        unlocked(py, || self.inner.close())
    }

    /// Acquires one resource; waits up to `timeout` seconds (`None`: forever, `0`: not at
    /// all).
    #[pyo3(signature = (
        resource, mode = "exclusive", timeout = None, ttl = None, priority = 100,
        preempt = false, reason = None, break_stale = false, on_lost = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn acquire(
        &self,
        py: Python<'_>,
        resource: String,
        mode: &str,
        timeout: Option<f64>,
        ttl: Option<f64>,
        #[pyo3(from_py_with = priority_arg)] priority: u8,
        preempt: bool,
        reason: Option<String>,
        break_stale: bool,
        on_lost: Option<Py<PyAny>>,
    ) -> PyResult<Py<Lease>> {
        let request = AcquireArgs {
            mode,
            timeout,
            ttl,
            priority,
            preempt,
            reason,
            break_stale,
            on_lost,
        }
        .convert(py)?;
        let mut leases = self.acquire_all(py, &[&resource], request)?;
        leases
            .pop()
            .ok_or_else(|| to_py(interlock::Error::Internal("a grant without a lease".into())))
    }

    /// Acquires all of `resources` at once or none; the leases in the order given.
    #[pyo3(signature = (
        resources, mode = "exclusive", timeout = None, ttl = None, priority = 100,
        preempt = false, reason = None, break_stale = false, on_lost = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn acquire_many(
        &self,
        py: Python<'_>,
        resources: Vec<String>,
        mode: &str,
        timeout: Option<f64>,
        ttl: Option<f64>,
        #[pyo3(from_py_with = priority_arg)] priority: u8,
        preempt: bool,
        reason: Option<String>,
        break_stale: bool,
        on_lost: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Py<Lease>>> {
        let request = AcquireArgs {
            mode,
            timeout,
            ttl,
            priority,
            preempt,
            reason,
            break_stale,
            on_lost,
        }
        .convert(py)?;
        let names: Vec<&str> = resources.iter().map(String::as_str).collect();
        self.acquire_all(py, &names, request)
    }

    /// Queues an acquire without waiting for it; errors that are known at once (bad
    /// input, `AlreadyHeld`, `Deadlock`, a `timeout` of 0 that failed) are raised here.
    #[pyo3(signature = (
        resource, mode = "exclusive", timeout = None, ttl = None, priority = 100,
        preempt = false, reason = None, break_stale = false, on_lost = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        py: Python<'_>,
        resource: &Bound<'_, PyAny>,
        mode: &str,
        timeout: Option<f64>,
        ttl: Option<f64>,
        #[pyo3(from_py_with = priority_arg)] priority: u8,
        preempt: bool,
        reason: Option<String>,
        break_stale: bool,
        on_lost: Option<Py<PyAny>>,
    ) -> PyResult<Ticket> {
        let (resources, single) = names(resource)?;
        let (options, hook) = AcquireArgs {
            mode,
            timeout,
            ttl,
            priority,
            preempt,
            reason,
            break_stale,
            on_lost,
        }
        .convert(py)?;
        let names: Vec<&str> = resources.iter().map(String::as_str).collect();
        let pending = unlocked(py, || self.inner.enqueue(&names, &options))?;
        Ok(Ticket::new(pending, single, self.name.clone(), hook))
    }

    /// `with session.lock(resource, ...) as lease:` (the arguments of `acquire`).
    #[pyo3(signature = (*args, **kwargs))]
    fn lock<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Locked> {
        Ok(Locked::new(
            slf.getattr(intern!(slf.py(), "acquire"))?,
            args,
            kwargs,
        ))
    }

    /// `with session.lock_many(resources, ...) as leases:` (the arguments of `acquire_many`).
    #[pyo3(signature = (*args, **kwargs))]
    fn lock_many<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Locked> {
        Ok(Locked::new(
            slf.getattr(intern!(slf.py(), "acquire_many"))?,
            args,
            kwargs,
        ))
    }

    /// `await session.acquire_async(resource, ...)` (the arguments of `acquire`).
    #[pyo3(signature = (*args, **kwargs))]
    fn acquire_async<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::sugar(slf, "acquire_async", "enqueue", args, kwargs)
    }

    /// `async with session.lock_async(resource, ...) as lease:` (the arguments of `acquire`).
    #[pyo3(signature = (*args, **kwargs))]
    fn lock_async<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::sugar(slf, "AsyncLocked", "enqueue", args, kwargs)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the session; an engine closed meanwhile has ended it already.
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        match py.detach(|| self.inner.close()) {
            Ok(_) | Err(interlock::Error::EngineClosed) => Ok(()),
            Err(e) => Err(to_py(e)),
        }
    }

    fn __repr__(&self) -> String {
        format!("<Session {} id={}>", self.name, self.inner.id())
    }
}
