//! The result slot a future shares with the cluster that resolves it.
//!
//! Its own module so that the clusters (local driver, remote client) depend
//! on it without depending back on the client that calls them.

use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use rask_core::Value;

use crate::Result;

/// The result slot shared by a future and the cluster.
pub(crate) struct FutureState {
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
struct Slot {
    result: Option<Result<Value>>,
    wakers: Vec<Waker>,
}

impl FutureState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { slot: Mutex::new(Slot::default()), ready: Condvar::new() })
    }

    pub(crate) fn done(result: Result<Value>) -> Arc<Self> {
        let s = Self::new();
        s.resolve(result);
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the result once; later calls are ignored (a recomputed key is
    /// reported twice, a cancel may race a completion).
    pub(crate) fn resolve(&self, result: Result<Value>) {
        let wakers = {
            let mut slot = self.lock();
            if slot.result.is_some() {
                return;
            }
            slot.result = Some(result);
            std::mem::take(&mut slot.wakers)
        };
        self.ready.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn peek(&self) -> Option<Result<Value>> {
        self.lock().result.clone()
    }

    /// The result if there is one; otherwise `waker` is woken when it comes.
    pub(crate) fn poll_with(&self, waker: &Waker) -> Poll<Result<Value>> {
        let mut slot = self.lock();
        match &slot.result {
            Some(r) => Poll::Ready(r.clone()),
            None => {
                if !slot.wakers.iter().any(|w| w.will_wake(waker)) {
                    slot.wakers.push(waker.clone());
                }
                Poll::Pending
            }
        }
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Option<Result<Value>> {
        let mut slot = self.lock();
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if let Some(r) = &slot.result {
                return Some(r.clone());
            }
            slot = match deadline {
                None => self.ready.wait(slot).unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.ready.wait_timeout(slot, left).unwrap_or_else(std::sync::PoisonError::into_inner).0
                }
            };
        }
    }
}
