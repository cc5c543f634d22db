//! `interlock.Event` and `interlock.Subscription`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pyo3::exceptions::{PyStopAsyncIteration, PyTypeError};
use pyo3::prelude::*;

use crate::callbacks::waker;
use crate::convert::to_py_value;
use crate::helper;

/// How long `next()` waits with the GIL released before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// Something that happened. Fields that do not apply are `None`; there is never a token.
/// For `lagged`, `position` is the number of events missed (`None`: unknown, and the seqs
/// begin again: another history).
#[pyclass(module = "interlock", frozen, eq)]
#[derive(PartialEq)]
pub(crate) struct Event(Arc<interlock::Event>);

impl From<Arc<interlock::Event>> for Event {
    fn from(ev: Arc<interlock::Event>) -> Self {
        Event(ev)
    }
}

#[pymethods]
impl Event {
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn at(&self) -> f64 {
        self.0.at
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind.as_str()
    }
    #[getter]
    fn resource(&self) -> Option<&str> {
        self.0.resource.as_deref()
    }
    #[getter]
    fn session_id(&self) -> Option<String> {
        self.0.session_id().map(|id| id.to_string())
    }
    #[getter]
    fn session_name(&self) -> Option<&str> {
        self.0.session_name()
    }
    #[getter]
    fn mode(&self) -> Option<&'static str> {
        self.0.mode.map(|m| m.as_str())
    }
    #[getter]
    fn fence(&self) -> Option<u64> {
        self.0.fence()
    }
    #[getter]
    fn priority(&self) -> Option<u8> {
        self.0.priority
    }
    #[getter]
    fn position(&self) -> Option<u64> {
        self.0.position()
    }
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.0.reason()
    }

    /// Every field, by name.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py_value(py, &*self.0)
    }

    fn __repr__(&self) -> String {
        let ev = &self.0;
        let mut out = format!("<Event {} {}", ev.seq, ev.kind.as_str());
        if let Some(r) = &ev.resource {
            out.push_str(&format!(" {r}"));
        }
        if let Some(s) = ev.session_name() {
            out.push_str(&format!(" session={s}"));
        }
        if let Some(m) = ev.mode {
            out.push_str(&format!(" {m}"));
        }
        if let Some(f) = ev.fence() {
            out.push_str(&format!(" fence={f}"));
        }
        if let Some(p) = ev.position() {
            out.push_str(&format!(" position={p}"));
        }
        if let Some(why) = ev.reason() {
            out.push_str(&format!(" reason={why}"));
        }
        out.push('>');
        out
    }
}

/// A stream of events: an iterator and an async iterator. It ends when the engine closes
/// or `close()` is called. A callback subscription delivers to its callback instead, until
/// it is closed or dropped.
#[pyclass(module = "interlock", frozen)]
pub(crate) struct Subscription {
    inner: interlock::Subscription,
    /// Delivers to a callback, so there is nothing to iterate.
    delivers: bool,
}

impl Subscription {
    pub(crate) fn new(inner: interlock::Subscription, delivers: bool) -> Self {
        Subscription { inner, delivers }
    }

    fn iterable(&self) -> PyResult<()> {
        match self.delivers {
            true => Err(PyTypeError::new_err(
                "a callback subscription delivers to its callback and cannot be iterated",
            )),
            false => Ok(()),
        }
    }
}

#[pymethods]
impl Subscription {
    /// True once closed (by `close` or the engine closing); events still queued can be read.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Stops the stream.
    fn close(&self) {
        self.inner.close();
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        slf.iterable()?;
        Ok(slf)
    }

    /// The next event, waiting with the GIL released; the end once closed and drained.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        self.iterable()?;
        loop {
            let sub = &self.inner;
            if let Some(ev) = py.detach(|| sub.recv_timeout(SLICE)) {
                return Ok(Some(ev.into()));
            }
            if self.inner.is_closed() {
                return Ok(self.inner.try_recv().map(Event::from));
            }
            py.check_signals()?;
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        slf.iterable()?;
        Ok(slf)
    }

    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.get().iterable()?;
        helper(slf.py(), "next_event")?.call1((slf,))
    }

    /// The next event if there is one; otherwise `None`, and `wake()` will be called (on
    /// another thread) when one comes. Raises `StopAsyncIteration` at the end. For the
    /// asyncio helpers.
    fn _poll(&self, py: Python<'_>, wake: Py<PyAny>) -> PyResult<Option<Event>> {
        let waker = waker(py, wake)?;
        let mut cx = Context::from_waker(&waker);
        match pin!(self.inner.next_async()).poll(&mut cx) {
            Poll::Ready(Some(ev)) => Ok(Some(ev.into())),
            Poll::Ready(None) => Err(PyStopAsyncIteration::new_err(())),
            Poll::Pending => Ok(None),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) {
        self.close();
    }

    fn __repr__(&self) -> &'static str {
        match (self.inner.is_closed(), self.delivers) {
            (true, _) => "<Subscription closed>",
            (false, true) => "<Subscription to a callback>",
            (false, false) => "<Subscription>",
        }
    }
}
