//! `interlock.Ticket`, and the one loop in which the package blocks on an acquire.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

use crate::callbacks::waker;
use crate::convert::wait_secs;
use crate::errors::to_py;
use crate::lease::{self, LostHook};
use crate::{helper, unlocked, Unattached};

/// How long a blocked call waits with the GIL released before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// Waits for a ticket's outcome in short slices with the GIL released, running signal
/// handlers between them so that Ctrl-C works. `Err` if a handler raised (the ticket is
/// left as it is); otherwise the outcome, `LockTimeout` once `timeout` has passed.
pub(crate) fn wait(
    py: Python<'_>,
    ticket: &interlock::Ticket,
    timeout: Option<Duration>,
) -> PyResult<interlock::Result<Vec<interlock::Lease>>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let slice = deadline.map_or(SLICE, |d| {
            d.saturating_duration_since(Instant::now()).min(SLICE)
        });
        match py.detach(|| ticket.poll(Some(slice))) {
            Ok(Some(leases)) => return Ok(Ok(leases)),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let what = ticket.resources().join(", ");
            return Ok(Err(interlock::Error::LockTimeout(what)));
        }
    }
}

/// A queued acquire: its live position, a wait (blocking or awaited), a cancel.
#[pyclass(module = "interlock", frozen)]
pub(crate) struct Ticket {
    inner: Unattached<interlock::Ticket>,
    /// Asked for one resource (the outcome is a `Lease`) rather than a list.
    single: bool,
    session_name: Arc<str>,
    hook: Option<Arc<LostHook>>,
    /// The outcome once granted, so that waiting again gives the same leases.
    granted: PyOnceLock<Py<PyAny>>,
}

impl Ticket {
    pub(crate) fn new(
        inner: interlock::Ticket,
        single: bool,
        session_name: Arc<str>,
        hook: Option<Arc<LostHook>>,
    ) -> Self {
        Ticket {
            inner: Unattached::new(inner),
            single,
            session_name,
            hook,
            granted: PyOnceLock::new(),
        }
    }

    fn settle(
        &self,
        py: Python<'_>,
        outcome: interlock::Result<Vec<interlock::Lease>>,
    ) -> PyResult<Py<PyAny>> {
        let leases = lease::wrap(
            py,
            outcome.map_err(to_py)?,
            &self.session_name,
            self.hook.as_deref(),
        )?;
        let granted = match (self.single, leases.as_slice()) {
            (true, [lease]) => lease.clone_ref(py).into_any(),
            _ => PyList::new(py, leases)?.into_any().unbind(),
        };
        Ok(self.granted.get_or_init(py, || granted).clone_ref(py))
    }
}

#[pymethods]
impl Ticket {
    /// The current 1-based place in the queue; `None` once granted, cancelled or failed.
    #[getter]
    fn position(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        unlocked(py, || self.inner.position())
    }

    /// The resources asked for, in order.
    #[getter]
    fn resources(&self) -> Vec<String> {
        self.inner.resources().to_vec()
    }

    /// Waits for the grant: the `Lease` (a list of them for a list of resources). After
    /// `timeout` seconds raises `LockTimeout` and stays queued; Ctrl-C cancels it.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        if let Some(granted) = self.granted.get(py) {
            return Ok(granted.clone_ref(py));
        }
        let timeout = wait_secs("timeout", timeout)?;
        match wait(py, &self.inner, timeout) {
            Ok(outcome) => self.settle(py, outcome),
            Err(interrupted) => {
                // An engine that closed meanwhile has nothing left to withdraw.
                let _ = self.cancel(py);
                Err(interrupted)
            }
        }
    }

    /// Withdraws the request: its queue entry goes, or a grant it was sent but never
    /// handed out is released. Later waits raise `Cancelled`.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        unlocked(py, || self.inner.cancel())
    }

    /// A coroutine that waits for the grant; cancelling it cancels the ticket.
    fn wait_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        helper(slf.py(), "wait")?.call1((slf,))
    }

    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::wait_async(slf)?.call_method0("__await__")
    }

    /// The outcome if it is there; otherwise `None`, and `wake()` will be called (on
    /// another thread) when it comes. For the asyncio helpers.
    fn _poll(&self, py: Python<'_>, wake: Py<PyAny>) -> PyResult<Option<Py<PyAny>>> {
        if let Some(granted) = self.granted.get(py) {
            return Ok(Some(granted.clone_ref(py)));
        }
        let waker = waker(py, wake)?;
        let mut cx = Context::from_waker(&waker);
        match pin!(self.inner.wait_async()).poll(&mut cx) {
            Poll::Ready(outcome) => self.settle(py, outcome).map(Some),
            Poll::Pending => Ok(None),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = match self.granted.get(py) {
            Some(_) => " granted",
            None => "",
        };
        format!(
            "<Ticket {} session={}{state}>",
            self.inner.resources().join(", "),
            self.session_name
        )
    }
}
