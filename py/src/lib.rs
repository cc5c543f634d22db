//! `interlock._interlock`: the compiled half of the Python package. It translates
//! arguments, results and errors and holds no lock logic of its own. The `with` block is
//! native (`locked.rs`) for speed; the asyncio glue lives in the pure-Python half
//! (`interlock/_helpers.py`).
//!
//! Threads: every call that waits on the engine releases the GIL. Python callbacks run on
//! the engine's dispatcher thread and asyncio wake-ups on a relay thread, never on the
//! actor thread, so the actor never waits for the GIL.

mod callbacks;
mod convert;
mod engine;
mod errors;
mod events;
mod lease;
mod locked;
mod session;
mod ticket;

use std::mem::ManuallyDrop;
use std::ops::Deref;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// Holds a value that keeps an engine alive and drops it with the GIL released: dropping
/// an engine's last handle joins its threads, and its dispatcher may be waiting for the
/// GIL to run a callback.
pub(crate) struct Unattached<T: Send>(ManuallyDrop<T>);

impl<T: Send> Unattached<T> {
    pub(crate) fn new(value: T) -> Self {
        Unattached(ManuallyDrop::new(value))
    }
}

impl<T: Send> Deref for Unattached<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send> Drop for Unattached<T> {
    fn drop(&mut self) {
        // SAFETY: the value is taken once, here, and `self.0` is not used again.
        let value = unsafe { ManuallyDrop::take(&mut self.0) };
        Python::attach(|py| py.detach(move || drop(value)));
    }
}

/// Runs an engine call with the GIL released (it may wait for the engine) and raises its
/// error as the matching Python exception.
pub(crate) fn unlocked<T: Send>(
    py: Python<'_>,
    call: impl FnOnce() -> interlock::Result<T> + Send,
) -> PyResult<T> {
    py.detach(call).map_err(errors::to_py)
}

/// A name from the pure-Python half of the package.
pub(crate) fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    HELPERS
        .get_or_try_init(py, || py.import("interlock._helpers").map(Bound::unbind))?
        .bind(py)
        .getattr(name)
}

#[pymodule]
fn _interlock(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<session::Session>()?;
    m.add_class::<lease::Lease>()?;
    m.add_class::<locked::Locked>()?;
    m.add_class::<ticket::Ticket>()?;
    m.add_class::<events::Event>()?;
    m.add_class::<events::Subscription>()?;
    m.add_class::<engine::Server>()?;
    m.add_function(wrap_pyfunction!(engine::connect, m)?)?;
    m.add_function(wrap_pyfunction!(engine::cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(engine::close_all, m)?)?;
    m.add_function(wrap_pyfunction!(locked::leave, m)?)?;
    Ok(())
}
