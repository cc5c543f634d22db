//! The one mapping from the core's [`interlock::Error`] to Python exceptions.
//!
//! `interlock.Error` is the base of every engine error. Some kinds also derive from the
//! builtin that a Python caller would catch for them (`LockTimeout` is a `TimeoutError`,
//! `InvalidToken` a `PermissionError`, `NotFound` a `KeyError`); `create_exception!` takes
//! one base only, so the subclasses are made with `type(name, bases, dict)` once.
//! Bad arguments are plain `ValueError`s.

use interlock::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyConnectionError, PyException, PyKeyError, PyPermissionError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    interlock,
    Error,
    PyException,
    "Base class of every error the engine reports."
);

/// The exception classes below `Error`, one per error kind.
struct Classes {
    lock_timeout: Py<PyType>,
    invalid_token: Py<PyType>,
    not_found: Py<PyType>,
    session_expired: Py<PyType>,
    lock_lost: Py<PyType>,
    deadlock: Py<PyType>,
    already_held: Py<PyType>,
    engine_closed: Py<PyType>,
    cancelled: Py<PyType>,
    connection_lost: Py<PyType>,
    permission_denied: Py<PyType>,
}

fn subclass(
    py: Python<'_>,
    name: &str,
    also: Option<Bound<'_, PyType>>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let base = py.get_type::<Error>().into_any();
    let bases = match also {
        Some(builtin) => PyTuple::new(py, [base, builtin.into_any()])?,
        None => PyTuple::new(py, [base])?,
    };
    let namespace = PyDict::new(py);
    namespace.set_item("__doc__", doc)?;
    namespace.set_item("__module__", "interlock")?;
    let class = py.get_type::<PyType>().call1((name, bases, namespace))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

impl Classes {
    fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(Classes {
            invalid_token: subclass(
                py,
                "InvalidToken",
                Some(py.get_type::<PyPermissionError>()),
                "The token does not name a current lease on the resource.",
            )?,
            lock_timeout: subclass(
                py,
                "LockTimeout",
                Some(py.get_type::<PyTimeoutError>()),
                "A wait ran out of time (or a timeout of 0 found the resource taken).",
            )?,
            not_found: subclass(
                py,
                "NotFound",
                Some(py.get_type::<PyKeyError>()),
                "No such session, lease or ticket.",
            )?,
            session_expired: subclass(
                py,
                "SessionExpired",
                None,
                "The session expired: its TTL ran out without activity.",
            )?,
            lock_lost: subclass(
                py,
                "LockLost",
                None,
                "The lease was lost: preempted, expired, force-released, its session expired \
                 or (a remote engine) its connection was lost.",
            )?,
            deadlock: subclass(
                py,
                "Deadlock",
                None,
                "The wait could never be granted: it closes a cycle of waiting sessions.",
            )?,
            already_held: subclass(
                py,
                "AlreadyHeld",
                None,
                "The session already holds, or already waits for, the resource.",
            )?,
            engine_closed: subclass(
                py,
                "EngineClosed",
                None,
                "The engine is closed, or was inherited across `os.fork()` (an engine does \
                 not cross a fork: make a new one in the child).",
            )?,
            cancelled: subclass(
                py,
                "Cancelled",
                None,
                "The wait was cancelled (its ticket was cancelled or its session closed).",
            )?,
            connection_lost: subclass(
                py,
                "ConnectionLost",
                Some(py.get_type::<PyConnectionError>()),
                "A remote engine cannot reach its server (it keeps trying to reconnect).",
            )?,
            permission_denied: subclass(
                py,
                "PermissionDenied",
                Some(py.get_type::<PyPermissionError>()),
                "The server refused the call: no token, a token whose role does not allow \
                 it, or a wrong session secret.",
            )?,
        })
    }

    fn get(py: Python<'_>) -> PyResult<&Classes> {
        static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();
        CLASSES.get_or_try_init(py, || Classes::new(py))
    }

    fn all(&self) -> [&Py<PyType>; 11] {
        [
            &self.lock_timeout,
            &self.invalid_token,
            &self.not_found,
            &self.session_expired,
            &self.lock_lost,
            &self.deadlock,
            &self.already_held,
            &self.engine_closed,
            &self.cancelled,
            &self.connection_lost,
            &self.permission_denied,
        ]
    }

    fn of(&self, kind: ErrorKind) -> Option<&Py<PyType>> {
        Some(match kind {
            ErrorKind::LockTimeout => &self.lock_timeout,
            ErrorKind::InvalidToken => &self.invalid_token,
            ErrorKind::NotFound => &self.not_found,
            ErrorKind::SessionExpired => &self.session_expired,
            ErrorKind::LockLost => &self.lock_lost,
            ErrorKind::Deadlock => &self.deadlock,
            ErrorKind::AlreadyHeld => &self.already_held,
            ErrorKind::EngineClosed => &self.engine_closed,
            ErrorKind::Cancelled => &self.cancelled,
            ErrorKind::ConnectionLost => &self.connection_lost,
            ErrorKind::PermissionDenied => &self.permission_denied,
            _ => return None,
        })
    }
}

/// The Python exception for an engine error: its kind's class, `ValueError` for bad
/// input, the base `Error` for anything else (an internal error).
pub(crate) fn to_py(err: interlock::Error) -> PyErr {
    let msg = err.to_string();
    if err.kind() == ErrorKind::InvalidArgument {
        return PyValueError::new_err(msg);
    }
    Python::attach(|py| match Classes::get(py) {
        Ok(classes) => match classes.of(err.kind()) {
            Some(class) => PyErr::from_type(class.bind(py).clone(), msg),
            None => Error::new_err(msg),
        },
        Err(e) => e,
    })
}

/// Adds `Error` and its subclasses to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    for class in Classes::get(py)?.all() {
        let class = class.bind(py);
        m.add(class.name()?, class)?;
    }
    Ok(())
}
