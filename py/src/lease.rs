//! `interlock.Lease`, and the `on_lost` hook that hands a lost lease to its callback.

use std::sync::{Arc, Mutex, MutexGuard};

use interlock::{LeaseState, LostCallback, LostNotice};
use pyo3::prelude::*;

use crate::callbacks::{call_logged, with_python};
use crate::convert::ttl_secs;
use crate::{unlocked, Unattached};

/// One session's hold on one resource. Dropping it does not release it.
#[pyclass(module = "interlock", frozen)]
pub(crate) struct Lease {
    inner: Unattached<interlock::Lease>,
    session_name: Arc<str>,
}

#[pymethods]
impl Lease {
    #[getter]
    fn resource(&self) -> &str {
        self.inner.resource()
    }

    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode().as_str()
    }

    /// The secret that releases this lease (see `Engine.release`).
    #[getter]
    fn token(&self) -> String {
        self.inner.token().expose()
    }

    #[getter]
    fn fence(&self) -> u64 {
        self.inner.fence()
    }

    #[getter]
    fn session_id(&self) -> String {
        self.inner.session_id().to_string()
    }

    #[getter]
    fn acquired_at(&self) -> f64 {
        self.inner.acquired_at()
    }

    #[getter]
    fn expires_at(&self) -> Option<f64> {
        self.inner.expires_at()
    }

    #[getter]
    fn priority(&self) -> u8 {
        self.inner.priority()
    }

    /// True exactly while the lease is held.
    #[getter]
    fn valid(&self) -> bool {
        self.inner.is_valid()
    }

    /// Why the lease was lost, or `None` if it was not.
    #[getter]
    fn lost_reason(&self) -> Option<&'static str> {
        self.inner.lost_reason().map(|r| r.as_str())
    }

    /// Extends the lease by `ttl` seconds from now, which becomes its TTL (by its TTL if
    /// `None`); returns the new expiry.
    #[pyo3(signature = (ttl = None))]
    fn renew(&self, py: Python<'_>, ttl: Option<f64>) -> PyResult<Option<f64>> {
        let ttl = ttl_secs("ttl", ttl)?;
        unlocked(py, || self.inner.renew(ttl))
    }

    /// Releases the lease. Releasing twice is harmless; a lost lease raises `LockLost`.
    /// Without the GIL: on an engine with a journal, and over a link to one, it waits
    /// until the release is written (see `Lease::release`).
    pub(crate) fn release(&self, py: Python<'_>) -> PyResult<()> {
        unlocked(py, || self.inner.release())
    }

    fn __repr__(&self) -> String {
        let state = match self.inner.state() {
            LeaseState::Held => String::new(),
            LeaseState::Released => " released".into(),
            LeaseState::Closed => " closed".into(),
            LeaseState::Lost(why) => format!(" lost={why}"),
        };
        format!(
            "<Lease {} {} fence={} session={}{state}>",
            self.inner.resource(),
            self.inner.mode(),
            self.inner.fence(),
            self.session_name,
        )
    }
}

/// Wraps granted leases for Python, and hands them to the acquire's `on_lost` hook.
pub(crate) fn wrap(
    py: Python<'_>,
    leases: Vec<interlock::Lease>,
    session_name: &Arc<str>,
    hook: Option<&LostHook>,
) -> PyResult<Vec<Py<Lease>>> {
    let leases = leases
        .into_iter()
        .map(|lease| {
            let lease = Lease {
                inner: Unattached::new(lease),
                session_name: session_name.clone(),
            };
            Py::new(py, lease)
        })
        .collect::<PyResult<Vec<_>>>()?;
    if let Some(hook) = hook {
        hook.deliver(py, &leases);
    }
    Ok(leases)
}

/// The `on_lost(lease, why)` of one acquire. The engine reports a loss by fence on its
/// dispatcher thread; the hook finds the `Lease` object that was handed out for it.
pub(crate) struct LostHook {
    callback: Py<PyAny>,
    state: Mutex<Delivery>,
}

#[derive(Default)]
struct Delivery {
    /// The leases, once the acquirer has them.
    leases: Option<Vec<Py<Lease>>>,
    /// Losses that came before that (the lease was lost between its grant and the moment
    /// the acquirer took it, e.g. a ticket granted but not yet waited on): reported when
    /// it takes it, on its thread, since the dispatcher had no `Lease` object to pass.
    early: Vec<LostNotice>,
}

impl LostHook {
    pub(crate) fn new(callback: Py<PyAny>) -> Arc<Self> {
        Arc::new(LostHook {
            callback,
            state: Mutex::default(),
        })
    }

    /// The callback the engine runs on its dispatcher thread.
    pub(crate) fn engine_callback(self: &Arc<Self>) -> LostCallback {
        let hook = self.clone();
        Arc::new(move |notice: &LostNotice| with_python(|py| hook.lost(py, notice)))
    }

    fn lock(&self) -> MutexGuard<'_, Delivery> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lost(&self, py: Python<'_>, notice: &LostNotice) {
        let lease = {
            let mut state = self.lock();
            match &state.leases {
                Some(leases) => find(py, leases, notice),
                None => {
                    state.early.push(notice.clone());
                    return;
                }
            }
        };
        if let Some(lease) = lease {
            self.call(py, lease, notice);
        }
    }

    fn deliver(&self, py: Python<'_>, leases: &[Py<Lease>]) {
        let early = {
            let mut state = self.lock();
            state.leases = Some(leases.iter().map(|l| l.clone_ref(py)).collect());
            std::mem::take(&mut state.early)
        };
        for notice in &early {
            if let Some(lease) = find(py, leases, notice) {
                self.call(py, lease, notice);
            }
        }
    }

    fn call(&self, py: Python<'_>, lease: Py<Lease>, notice: &LostNotice) {
        let args = (lease, notice.reason.as_str());
        call_logged(py, "on_lost callback", self.callback.bind(py), args);
    }
}

fn find(py: Python<'_>, leases: &[Py<Lease>], notice: &LostNotice) -> Option<Py<Lease>> {
    leases
        .iter()
        .find(|l| l.get().inner.fence() == notice.fence)
        .map(|l| l.clone_ref(py))
}
