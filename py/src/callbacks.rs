//! Python code that the engine calls: `on_lost` and subscription callbacks (on its
//! dispatcher thread), and asyncio wake-ups (on a relay thread of this module). Neither
//! ever runs on the actor thread, which must not wait for the GIL.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use pyo3::call::PyCallArgs;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Calls `f(*args)`; an exception is logged on the `interlock` logger and goes no
/// further, so that one failing callback does not stop later ones.
pub(crate) fn call_logged<'py>(
    py: Python<'py>,
    what: &str,
    f: &Bound<'py, PyAny>,
    args: impl PyCallArgs<'py>,
) {
    if let Err(err) = f.call1(args) {
        let logged = log_error(py, what, &err);
        if let Err(e) = logged {
            e.write_unraisable(py, Some(f));
        }
    }
}

fn log_error(py: Python<'_>, what: &str, err: &PyErr) -> PyResult<()> {
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("interlock",))?;
    let kwargs = PyDict::new(py);
    let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
    kwargs.set_item("exc_info", exc_info)?;
    logger.call_method("error", ("%s raised an exception", what), Some(&kwargs))?;
    Ok(())
}

/// Runs `f` attached to the interpreter unless it is shutting down (then the callback
/// is skipped: there is nobody left to tell).
pub(crate) fn with_python(f: impl for<'py> FnOnce(Python<'py>)) {
    let _ = Python::try_attach(f);
}

/// A waker for the engine's futures that an asyncio loop is waiting on. Waking it only
/// hands `wake` (a thread-safe Python callable) to the relay thread, which calls it with
/// the GIL; the thread that wakes (the actor) never touches Python.
pub(crate) fn waker(py: Python<'_>, wake: Py<PyAny>) -> PyResult<Waker> {
    let relay = relay(py)?;
    Ok(Waker::from(Arc::new(Relay {
        relay,
        wake: Mutex::new(Some(wake)),
    })))
}

struct Relay {
    relay: mpsc::Sender<Py<PyAny>>,
    wake: Mutex<Option<Py<PyAny>>>,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wake = self.wake.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(wake) = wake {
            let _ = self.relay.send(wake);
        }
    }
}

/// The relay thread's inbox, started on first use in this process. A child forked after
/// that has no relay thread (fork copies only the forking thread), so it starts its own,
/// with a new channel: the old one may be locked by a thread the child does not have, and
/// is left alone (its sender is never dropped here, so nothing in the child touches it).
///
/// Called attached to the interpreter, as `os.fork()` is, so no thread of this process
/// holds `RELAY` at a fork.
fn relay(_attached: Python<'_>) -> PyResult<mpsc::Sender<Py<PyAny>>> {
    static RELAY: Mutex<Option<(u32, mpsc::Sender<Py<PyAny>>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut relay = RELAY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((started_in, tx)) = relay.as_ref() {
        if *started_in == pid {
            return Ok(tx.clone());
        }
    }
    let (tx, rx) = mpsc::channel::<Py<PyAny>>();
    std::thread::Builder::new()
        .name("interlock-py-wake".into())
        .spawn(move || {
            for wake in rx {
                with_python(|py| {
                    if let Err(e) = wake.call0(py) {
                        e.write_unraisable(py, None);
                    }
                });
            }
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    if let Some(inherited) = relay.replace((pid, tx.clone())) {
        std::mem::forget(inherited);
    }
    Ok(tx)
}
