//! Arguments in, results out: seconds, bounded integers, JSON values.

use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyList};
use serde::Serialize;

use crate::errors::to_py;

/// A wait in seconds: `None` (or infinity) waits forever; NaN and negatives are rejected.
pub(crate) fn wait_secs(what: &str, secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) => interlock::duration_from_secs(what, s).map_err(to_py),
    }
}

/// A TTL in seconds: like [`wait_secs`], and zero is rejected too.
pub(crate) fn ttl_secs(what: &str, secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) => interlock::ttl_from_secs(what, s).map_err(to_py),
    }
}

/// A Python `int` between 0 and `max`: `TypeError` if it is no int, `ValueError` if it
/// is out of range.
pub(crate) fn bounded(what: &str, value: &Bound<'_, PyAny>, max: u64) -> PyResult<u64> {
    let int = value
        .cast::<PyInt>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be an int")))?;
    int.extract::<u64>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| PyValueError::new_err(format!("{what} must be between 0 and {max}")))
}

/// Like [`bounded`] for a value that may be `None`.
pub(crate) fn bounded_opt(
    what: &str,
    value: Option<&Bound<'_, PyAny>>,
    max: u64,
) -> PyResult<Option<u64>> {
    value.map(|v| bounded(what, v, max)).transpose()
}

/// A `usize` argument (a limit, a buffer size).
pub(crate) fn size(what: &str, value: &Bound<'_, PyAny>) -> PyResult<usize> {
    let n = bounded(what, value, usize::MAX as u64)?;
    usize::try_from(n).map_err(|_| PyValueError::new_err(format!("{what} is too large")))
}

/// A callback argument: `None` or something callable.
pub(crate) fn callable(
    py: Python<'_>,
    what: &str,
    f: Option<Py<PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    match f {
        Some(f) if !f.bind(py).is_callable() => {
            Err(PyTypeError::new_err(format!("{what} must be callable")))
        }
        f => Ok(f),
    }
}

fn json_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    Ok(JSON
        .get_or_try_init(py, || py.import("json").map(Bound::unbind))?
        .bind(py))
}

/// Session metadata: `None`, or a dict that JSON can encode.
pub(crate) fn metadata(value: Option<&Bound<'_, PyAny>>) -> PyResult<serde_json::Value> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(serde_json::Value::Null);
    };
    if !value.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "metadata must be a dict, not {}",
            value.get_type().name()?
        )));
    }
    let kwargs = PyDict::new(value.py());
    kwargs.set_item("allow_nan", false)?;
    let text = json_module(value.py())?.call_method("dumps", (value,), Some(&kwargs))?;
    serde_json::from_str(&text.extract::<String>()?)
        .map_err(|e| PyValueError::new_err(format!("metadata: {e}")))
}

/// A JSON value as plain Python objects.
pub(crate) fn json_to_py<'py>(
    py: Python<'py>,
    value: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            (None, None) => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// A core record (status, listing, event) as plain Python objects, through its serde
/// form: the field names are the contract's, and no record has a token to leak.
pub(crate) fn to_py_value<'py, T: Serialize>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(value)
        .map_err(|e| to_py(interlock::Error::Internal(format!("serialize: {e}"))))?;
    json_to_py(py, &json)
}
