//! Results held by one worker, with their total size in bytes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rask_core::{Key, Value};
use rustc_hash::FxHashMap;

#[derive(Debug, Default)]
pub struct DataStore {
    data: Mutex<FxHashMap<Key, Value>>,
    nbytes: AtomicU64,
}

impl DataStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<Key, Value>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every critical section is a single map operation), so a poisoned
        // lock is safe to keep using.
        self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock().get(key).cloned()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.lock().contains_key(key)
    }

    /// Stores a value and returns its size.
    pub fn insert(&self, key: Key, value: Value) -> u64 {
        let size = value.nbytes() as u64;
        if let Some(old) = self.lock().insert(key, value) {
            self.nbytes.fetch_sub(old.nbytes() as u64, Ordering::Relaxed);
        }
        self.nbytes.fetch_add(size, Ordering::Relaxed);
        size
    }

    pub fn remove(&self, key: &Key) -> Option<Value> {
        let old = self.lock().remove(key);
        if let Some(v) = &old {
            self.nbytes.fetch_sub(v.nbytes() as u64, Ordering::Relaxed);
        }
        old
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn nbytes(&self) -> u64 {
        self.nbytes.load(Ordering::Relaxed)
    }

    pub fn keys(&self) -> Vec<Key> {
        self.lock().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_bytes() {
        let s = DataStore::new();
        let a = s.insert("a".into(), Value::Str("hello".into()));
        assert_eq!(s.nbytes(), a);
        s.insert("a".into(), Value::Int(1));
        assert_eq!(s.nbytes(), Value::Int(1).nbytes() as u64);
        s.remove(&"a".into());
        assert_eq!(s.nbytes(), 0);
        assert!(s.is_empty());
    }
}
