//! `with session.lock(...)`: the block's context manager, native so that entering and
//! leaving a block cost no more than the acquire and release they make.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::lease::Lease;

/// ``with session.lock(...) as lease:`` and ``with session.lock_many(...) as leases:``:
/// the acquire, made on entry, and what it returned.
#[pyclass(module = "interlock")]
pub(crate) struct Locked {
    /// `None` only once the garbage collector cleared the block.
    start: Option<Start>,
    held: Option<Py<PyAny>>,
}

/// The acquire a block makes, with its arguments.
struct Start {
    call: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
}

impl Start {
    fn clone_ref(&self, py: Python<'_>) -> Start {
        Start {
            call: self.call.clone_ref(py),
            args: self.args.clone_ref(py),
            kwargs: self.kwargs.as_ref().map(|k| k.clone_ref(py)),
        }
    }
}

impl Locked {
    /// A block that calls `start(*args, **kwargs)` on entry.
    pub(crate) fn new(
        start: Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        Locked {
            start: Some(Start {
                call: start.unbind(),
                args: args.clone().unbind(),
                kwargs: kwargs.map(|k| k.clone().unbind()),
            }),
            held: None,
        }
    }
}

#[pymethods]
impl Locked {
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        // No borrow of the block is kept while the acquire waits (without the GIL).
        let Some(start) = slf.borrow().start.as_ref().map(|s| s.clone_ref(py)) else {
            return Err(PyRuntimeError::new_err("lock block was cleared"));
        };
        let kwargs = start.kwargs.as_ref().map(|k| k.bind(py));
        let held = start.call.call(py, start.args.bind(py), kwargs)?;
        slf.borrow_mut().held = Some(held.clone_ref(py));
        Ok(held)
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        match self.held.take() {
            Some(held) => leave(held.bind(py), !exc_type.is_none()),
            None => Ok(()),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(start) = &self.start {
            visit.call(&start.call)?;
            visit.call(&start.args)?;
            visit.call(&start.kwargs)?;
        }
        visit.call(&self.held)
    }

    fn __clear__(&mut self) {
        self.start = None;
        self.held = None;
    }
}

/// Releases what a block held (a lease or a list of them). A lease lost inside the block
/// raises `LockLost` (the first such error, once every lease is released) -- unless
/// another exception is already on its way, which is then left alone.
#[pyfunction]
#[pyo3(name = "_leave")]
pub(crate) fn leave(held: &Bound<'_, PyAny>, propagating: bool) -> PyResult<()> {
    let leases: Vec<Bound<'_, Lease>> = match held.cast::<Lease>() {
        Ok(lease) => vec![lease.clone()],
        Err(_) => held.extract()?,
    };
    let mut failure = None;
    for lease in &leases {
        if let Err(e) = lease.get().release(held.py()) {
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) if !propagating => Err(e),
        _ => Ok(()),
    }
}
