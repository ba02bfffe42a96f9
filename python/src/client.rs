//! Clients, futures and the embedded local cluster, for Python.
//!
//! Every call that waits on the engine (connecting, submitting, waiting for
//! a result, stopping a cluster) releases the GIL, so worker threads of the
//! local cluster can run Python functions meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use rask::Delayed;
use rask_core::Value;

use crate::errors::{guarded, to_pyerr};
use crate::graph::Node;
use crate::values::to_py;

/// A worker as Python sees it: `(name, nthreads, memory_limit, keys, nbytes)`.
type WorkerRow = (String, usize, u64, usize, u64);

/// An in-process cluster: the scheduler and the workers' threads run in
/// this process (Dask's `LocalCluster`).
#[derive(Debug)]
#[pyclass(frozen, name = "LocalCluster", module = "rask._rask")]
pub struct PyLocalCluster {
    inner: Mutex<Option<rask::LocalCluster>>,
}

#[pymethods]
impl PyLocalCluster {
    #[new]
    #[pyo3(signature = (n_workers, threads_per_worker, memory_limit = 0))]
    fn new(py: Python<'_>, n_workers: usize, threads_per_worker: usize, memory_limit: u64) -> PyResult<Self> {
        let config = rask::LocalClusterConfig {
            n_workers,
            threads_per_worker: threads_per_worker.max(1),
            memory_limit,
            ..rask::LocalClusterConfig::default()
        };
        let cluster =
            py.detach(|| guarded(|| rask::LocalCluster::with_config(config)))?.map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner: Mutex::new(Some(cluster)) })
    }

    /// `(name, nthreads, memory_limit, keys, nbytes)` per worker.
    fn workers(&self, py: Python<'_>) -> PyResult<Vec<WorkerRow>> {
        py.detach(|| {
            guarded(|| {
                let guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(cluster) = guard.as_ref() else { return Vec::new() };
                let limit = cluster.config().memory_limit;
                cluster.workers().into_iter().map(|w| (w.name, w.nthreads, limit, w.keys, w.nbytes)).collect()
            })
        })
    }

    /// Tasks the cluster has finished since it started (for progress bars).
    fn completed_tasks(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| {
            guarded(|| {
                let guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                guard.as_ref().and_then(|c| c.snapshot().ok()).map_or(0, |s| s.completed_total)
            })
        })
    }

    /// Adds a worker with `nthreads` threads.
    fn add_worker(&self, py: Python<'_>, nthreads: usize) -> PyResult<()> {
        py.detach(|| {
            guarded(|| {
                let guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                guard.as_ref().map(|c| c.add_worker(nthreads).map(|_| ())).unwrap_or(Err(rask::Error::ClusterClosed))
            })
        })?
        .map_err(|e| to_pyerr(py, e))
    }

    /// Stops the scheduler and the workers after their current tasks.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let cluster = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        py.detach(|| guarded(move || drop(cluster)))
    }

    fn is_closed(&self) -> bool {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_none()
    }
}

/// A connection to a cluster.
#[derive(Debug)]
#[pyclass(frozen, name = "Client", module = "rask._rask")]
pub struct PyClient {
    pub(crate) inner: rask::Client,
}

#[pymethods]
impl PyClient {
    /// A client of an in-process cluster.
    #[staticmethod]
    fn local(py: Python<'_>, cluster: &PyLocalCluster) -> PyResult<Self> {
        let guard = cluster.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            Some(c) => Ok(Self { inner: rask::Client::new(c) }),
            None => Err(to_pyerr(py, rask::Error::ClusterClosed)),
        }
    }

    /// A client of a running `rask scheduler` (`tcp://host:8786`).
    #[staticmethod]
    #[pyo3(signature = (address, token = None))]
    fn connect(py: Python<'_>, address: String, token: Option<String>) -> PyResult<Self> {
        let client = py.detach(|| guarded(|| rask::Client::connect_with_token(&address, token.as_deref())))?;
        client.map(|inner| Self { inner }).map_err(|e| to_pyerr(py, e))
    }

    /// Starts computing the nodes together (shared inputs run once) and
    /// returns a future per node at once.
    fn compute(&self, py: Python<'_>, nodes: Vec<Bound<'_, Node>>) -> PyResult<Vec<PyFuture>> {
        let values: Vec<Delayed<Value>> = nodes.iter().map(|n| n.get().inner.clone()).collect();
        let futures = py.detach(|| {
            guarded(|| {
                let refs: Vec<&Delayed<Value>> = values.iter().collect();
                self.inner.compute_many(&refs)
            })
        })?;
        Ok(futures.into_iter().map(|f| PyFuture { inner: Arc::new(f) }).collect())
    }

    /// Cancels the futures' computations.
    fn cancel(&self, py: Python<'_>, futures: Vec<Bound<'_, PyFuture>>) -> PyResult<()> {
        let futures: Vec<Arc<rask::Future<Value>>> = futures.iter().map(|f| f.get().inner.clone()).collect();
        py.detach(|| guarded(|| futures.iter().for_each(|f| self.inner.cancel(f))))
    }

    /// Disconnects: the cluster releases what this client holds.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| guarded(|| self.inner.close()))
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

/// A value being computed on a cluster.
#[derive(Debug)]
#[pyclass(frozen, name = "Future", module = "rask._rask")]
pub struct PyFuture {
    pub(crate) inner: Arc<rask::Future<Value>>,
}

#[pymethods]
impl PyFuture {
    #[getter]
    fn key(&self) -> String {
        self.inner.key().to_string()
    }

    fn done(&self) -> bool {
        self.inner.done()
    }

    /// Waits (without the GIL) and returns the value, or raises the task's
    /// error; `timeout` in seconds raises `TimeoutError` when it passes.
    #[pyo3(signature = (timeout = None))]
    fn result<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let f = self.inner.clone();
        let r = py.detach(move || {
            guarded(move || match timeout {
                None => f.result(),
                Some(t) => f.result_timeout(Duration::from_secs_f64(t.max(0.0))),
            })
        })?;
        match r {
            // An array result is the caller's own, writable numpy array (a
            // copy only while the cluster still shares the block).
            Ok(Value::Array(a)) => crate::array::to_numpy(py, a, true),
            Ok(v) => to_py(py, &v),
            Err(e) => Err(to_pyerr(py, e)),
        }
    }

    /// Waits (without the GIL) until the future is done or `timeout` passes;
    /// true if done.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let f = self.inner.clone();
        py.detach(move || {
            guarded(move || match timeout {
                None => {
                    let _ = f.result();
                    true
                }
                Some(t) => {
                    !matches!(f.result_timeout(Duration::from_secs_f64(t.max(0.0))), Err(rask::Error::Timeout(_)))
                }
            })
        })
    }

    /// The future's key as a lazy value, for graphs that use its result.
    fn node(&self) -> Node {
        Node { inner: Delayed::from_future(self.inner.clone()) }
    }

    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.inner.clone();
        py.detach(move || guarded(move || f.cancel()))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLocalCluster>()?;
    m.add_class::<PyClient>()?;
    m.add_class::<PyFuture>()?;
    Ok(())
}
