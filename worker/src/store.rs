//! Results held by one worker, with their size in bytes, and spilling to
//! disk under a memory limit.
//!
//! With a limit, the store follows Dask's thresholds: when the values held
//! in memory pass `target` (60 %) of the limit, the least recently used ones
//! are written to the spill directory until they are back under it; the
//! worker's memory monitor also spills when the whole process passes
//! `spill` (70 %), and pauses new tasks above `pause` (80 %). A spilled value
//! comes back transparently the next time it is read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rask_core::{Key, Value};
use rustc_hash::FxHashMap;

/// Memory thresholds as fractions of `limit`, with Dask's defaults.
#[derive(Clone, Debug)]
pub struct SpillConfig {
    pub limit: u64,
    pub dir: PathBuf,
    pub target: f64,
    pub spill: f64,
    pub pause: f64,
}

impl SpillConfig {
    pub fn new(limit: u64, dir: PathBuf) -> Self {
        Self { limit, dir, target: 0.6, spill: 0.7, pause: 0.8 }
    }

    fn target_bytes(&self) -> u64 {
        (self.limit as f64 * self.target) as u64
    }
}

struct InMemory {
    value: Value,
    nbytes: u64,
    tick: u64,
}

struct OnDisk {
    path: PathBuf,
    nbytes: u64,
}

#[derive(Default)]
struct Inner {
    memory: FxHashMap<Key, InMemory>,
    disk: FxHashMap<Key, OnDisk>,
    /// Least recently used first.
    lru: BTreeMap<u64, Key>,
    tick: u64,
    files: u64,
}

/// Without a memory limit there is no eviction order to keep, and the store
/// is split by key into shards, each behind its own lock on its own cache
/// line: a worker's threads storing and reading tiny results at a million
/// a second no longer queue for one lock (measured as most of their thread
/// switches). With a limit, one lock keeps one exact LRU order.
const SHARDS: usize = 32;

#[derive(Default)]
#[repr(align(64))]
struct Shard {
    memory: Mutex<FxHashMap<Key, Value>>,
    nbytes: AtomicU64,
}

pub struct DataStore {
    /// Used when `spill` is set.
    inner: Mutex<Inner>,
    /// Used when `spill` is not set.
    shards: Box<[Shard]>,
    /// Bytes in memory under `inner` (the shards count their own).
    nbytes: AtomicU64,
    spilled: AtomicU64,
    spilled_total: AtomicU64,
    /// Process memory not held as values, as last measured by the monitor.
    unmanaged: AtomicU64,
    spill: Option<SpillConfig>,
}

impl std::fmt::Debug for DataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStore")
            .field("memory_bytes", &self.nbytes())
            .field("spilled_bytes", &self.spilled_bytes())
            .field("spill", &self.spill)
            .finish()
    }
}

impl Default for DataStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            nbytes: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            spilled_total: AtomicU64::new(0),
            unmanaged: AtomicU64::new(0),
            spill: None,
        }
    }
}

impl DataStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shard of `key`, when the store is sharded (no spill).
    fn shard(&self, key: &Key) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        // The high half of the Fx hash picks the shard; the map inside
        // indexes by the low bits of its own hash.
        let h = std::hash::BuildHasher::hash_one(&rustc_hash::FxBuildHasher, key);
        Some(&self.shards[(h >> 32) as usize % self.shards.len()])
    }

    fn lock_shard(shard: &Shard) -> std::sync::MutexGuard<'_, FxHashMap<Key, Value>> {
        // Each critical section is one map operation: never half done.
        shard.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A store that spills to `config.dir` (created if missing).
    pub fn with_spill(config: SpillConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        Ok(Self {
            inner: Mutex::default(),
            shards: Box::default(),
            nbytes: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            spilled_total: AtomicU64::new(0),
            unmanaged: AtomicU64::new(0),
            spill: Some(config),
        })
    }

    pub fn spill_config(&self) -> Option<&SpillConfig> {
        self.spill.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent before it can
        // fail, so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value of `key`, read back from disk if it was spilled.
    pub fn get(&self, key: &Key) -> Option<Value> {
        if let Some(shard) = self.shard(key) {
            return Self::lock_shard(shard).get(key).cloned();
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(entry) = inner.memory.get_mut(key) {
            let old = std::mem::replace(&mut entry.tick, tick);
            let value = entry.value.clone();
            inner.lru.remove(&old);
            inner.lru.insert(tick, key.clone());
            return Some(value);
        }
        let disk = inner.disk.remove(key)?;
        let value = match std::fs::read(&disk.path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| rask_proto::decode_value(&bytes).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(key = %key, path = %disk.path.display(), error = %e, "cannot read a spilled value back");
                inner.disk.insert(key.clone(), disk);
                return None;
            }
        };
        let _ = std::fs::remove_file(&disk.path);
        self.spilled.fetch_sub(disk.nbytes, Ordering::Relaxed);
        self.nbytes.fetch_add(disk.nbytes, Ordering::Relaxed);
        inner.memory.insert(key.clone(), InMemory { value: value.clone(), nbytes: disk.nbytes, tick });
        inner.lru.insert(tick, key.clone());
        self.spill_to_target(&mut inner, Some(key));
        Some(value)
    }

    pub fn contains(&self, key: &Key) -> bool {
        if let Some(shard) = self.shard(key) {
            return Self::lock_shard(shard).contains_key(key);
        }
        let inner = self.lock();
        inner.memory.contains_key(key) || inner.disk.contains_key(key)
    }

    /// Stores a value and returns its size.
    pub fn insert(&self, key: Key, value: Value) -> u64 {
        let size = value.nbytes() as u64;
        if let Some(shard) = self.shard(&key) {
            // Counted under the shard's lock, so its count never dips below zero.
            let mut memory = Self::lock_shard(shard);
            let old = memory.insert(key, value);
            shard.nbytes.fetch_add(size, Ordering::Relaxed);
            if let Some(old) = &old {
                shard.nbytes.fetch_sub(old.nbytes() as u64, Ordering::Relaxed);
            }
            drop(memory);
            return size;
        }
        let mut inner = self.lock();
        self.remove_locked(&mut inner, &key);
        inner.tick += 1;
        let tick = inner.tick;
        self.nbytes.fetch_add(size, Ordering::Relaxed);
        inner.memory.insert(key.clone(), InMemory { value, nbytes: size, tick });
        inner.lru.insert(tick, key.clone());
        self.spill_to_target(&mut inner, Some(&key));
        size
    }

    fn remove_locked(&self, inner: &mut Inner, key: &Key) -> Option<Value> {
        if let Some(old) = inner.memory.remove(key) {
            inner.lru.remove(&old.tick);
            self.nbytes.fetch_sub(old.nbytes, Ordering::Relaxed);
            return Some(old.value);
        }
        if let Some(d) = inner.disk.remove(key) {
            let _ = std::fs::remove_file(&d.path);
            self.spilled.fetch_sub(d.nbytes, Ordering::Relaxed);
            // The caller wanted it gone, not read: no need to decode it.
            return Some(Value::None);
        }
        None
    }

    pub fn remove(&self, key: &Key) -> Option<Value> {
        if let Some(shard) = self.shard(key) {
            let mut memory = Self::lock_shard(shard);
            let old = memory.remove(key);
            if let Some(v) = &old {
                shard.nbytes.fetch_sub(v.nbytes() as u64, Ordering::Relaxed);
            }
            return old;
        }
        let mut inner = self.lock();
        self.remove_locked(&mut inner, key)
    }

    /// Removes many keys under one lock; `absent` is called with each key
    /// that was not held. The values are freed after the lock is let go.
    pub fn remove_many<'k>(&self, keys: &'k [Key], mut absent: impl FnMut(&'k Key)) {
        let mut freed = Vec::with_capacity(keys.len());
        if !self.shards.is_empty() {
            // One short lock per key: the worker's threads keep going.
            for key in keys {
                match self.remove(key) {
                    Some(v) => freed.push(v),
                    None => absent(key),
                }
            }
        } else {
            let mut inner = self.lock();
            for key in keys {
                match self.remove_locked(&mut inner, key) {
                    Some(v) => freed.push(v),
                    None => absent(key),
                }
            }
        }
        drop(freed);
    }

    /// Records how much of the process's memory is not values (runtime,
    /// buffers, the allocator's reserve), so that values are spilled to keep
    /// the whole process, not only the values, under the target.
    pub fn set_unmanaged(&self, bytes: u64) {
        self.unmanaged.store(bytes, Ordering::Relaxed);
    }

    /// Spills least recently used values until the values plus the
    /// unmanaged memory are under `target`.
    fn spill_to_target(&self, inner: &mut Inner, keep: Option<&Key>) {
        let Some(cfg) = &self.spill else { return };
        let target = cfg.target_bytes().saturating_sub(self.unmanaged.load(Ordering::Relaxed));
        while self.nbytes.load(Ordering::Relaxed) > target {
            if !self.spill_one(inner, keep) {
                break;
            }
        }
    }

    /// Spills until `bytes` more are on disk (the memory monitor's call when
    /// the process as a whole is over the spill threshold). Returns what moved.
    pub fn spill_bytes(&self, bytes: u64) -> u64 {
        let mut inner = self.lock();
        let start = self.nbytes.load(Ordering::Relaxed);
        while start.saturating_sub(self.nbytes.load(Ordering::Relaxed)) < bytes {
            if !self.spill_one(&mut inner, None) {
                break;
            }
        }
        start.saturating_sub(self.nbytes.load(Ordering::Relaxed))
    }

    /// Writes the least recently used value (other than `keep`) to disk.
    fn spill_one(&self, inner: &mut Inner, keep: Option<&Key>) -> bool {
        let Some(cfg) = &self.spill else { return false };
        let victim = inner.lru.iter().map(|(t, k)| (*t, k.clone())).find(|(_, k)| Some(k) != keep);
        let Some((tick, key)) = victim else { return false };
        let Some(entry) = inner.memory.get(&key) else {
            inner.lru.remove(&tick);
            return true;
        };
        inner.files += 1;
        let path = cfg.dir.join(format!("{}.bin", inner.files));
        // Streamed to the file: spilling must not need a second copy of the
        // value in memory, which is short by definition.
        let written = std::fs::File::create(&path).map_err(|e| e.to_string()).and_then(|f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            postcard::to_io(&entry.value, &mut w).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut w).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            // A full disk must not lose data: the value stays in memory.
            tracing::error!(key = %key, path = %path.display(), error = %e, "cannot spill to disk");
            return false;
        }
        let nbytes = entry.nbytes;
        inner.memory.remove(&key);
        inner.lru.remove(&tick);
        inner.disk.insert(key, OnDisk { path, nbytes });
        self.nbytes.fetch_sub(nbytes, Ordering::Relaxed);
        self.spilled.fetch_add(nbytes, Ordering::Relaxed);
        self.spilled_total.fetch_add(nbytes, Ordering::Relaxed);
        true
    }

    /// Keys held, in memory or spilled.
    pub fn len(&self) -> usize {
        let sharded: usize = self.shards.iter().map(|s| Self::lock_shard(s).len()).sum();
        let inner = self.lock();
        sharded + inner.memory.len() + inner.disk.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of values held in memory.
    pub fn nbytes(&self) -> u64 {
        let sharded: u64 = self.shards.iter().map(|s| s.nbytes.load(Ordering::Relaxed)).sum();
        sharded + self.nbytes.load(Ordering::Relaxed)
    }

    /// Bytes of values on disk.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// Bytes ever written to disk.
    pub fn spilled_bytes_total(&self) -> u64 {
        self.spilled_total.load(Ordering::Relaxed)
    }

    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        for s in self.shards.iter() {
            keys.extend(Self::lock_shard(s).keys().cloned());
        }
        let inner = self.lock();
        keys.extend(inner.memory.keys().chain(inner.disk.keys()).cloned());
        keys
    }
}

impl Drop for DataStore {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, d) in inner.disk.drain() {
            let _ = std::fs::remove_file(&d.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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

    #[test]
    fn shards_keep_every_value_and_count_bytes_under_concurrent_use() {
        let s = Arc::new(DataStore::new());
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..5000u32 {
                        let key = Key::chunk("x".into(), &[t, i]);
                        s.insert(key.clone(), Value::Int(i64::from(i)));
                        assert_eq!(s.get(&key), Some(Value::Int(i64::from(i))));
                        // Replacing a value counts only the new one.
                        s.insert(key.clone(), blob(3, 1));
                        if i % 2 == 0 {
                            assert_eq!(s.remove(&key), Some(blob(3, 1)));
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(s.len(), 4 * 2500);
        assert_eq!(s.keys().len(), 4 * 2500);
        assert_eq!(s.nbytes(), 4 * 2500 * blob(3, 1).nbytes() as u64);
        assert!(s.contains(&Key::chunk("x".into(), &[3, 4999])));
        assert!(!s.contains(&Key::chunk("x".into(), &[3, 4998])));
        let keys = s.keys();
        let mut absent = 0;
        s.remove_many(&keys[..100], |_| absent += 1);
        s.remove_many(&keys[..100], |_| absent += 1);
        assert_eq!(absent, 100, "the second removal finds none of them");
        assert_eq!(s.len(), 4 * 2500 - 100);
    }

    fn blob(n: usize, fill: u8) -> Value {
        Value::Bytes(vec![fill; n].into())
    }

    #[test]
    fn spills_least_recently_used_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("rask-spill-test-{}", std::process::id()));
        let s = DataStore::with_spill(SpillConfig::new(10_000, dir.clone())).unwrap();
        // Target is 6,000 bytes: the fourth 2,000-byte value pushes the oldest out.
        for i in 0..4u8 {
            s.insert(Key::new(format!("k{i}")), blob(2000, i));
        }
        assert!(s.nbytes() <= 6000, "{}", s.nbytes());
        assert!(s.spilled_bytes() >= 2000);
        // Touch k1 so k2 is older; reading k0 back spills the least recent.
        assert_eq!(s.get(&"k1".into()), Some(blob(2000, 1)));
        assert_eq!(s.get(&"k0".into()), Some(blob(2000, 0)));
        assert!(s.nbytes() <= 6000);
        for i in 0..4u8 {
            assert_eq!(s.get(&Key::new(format!("k{i}"))), Some(blob(2000, i)), "k{i}");
        }
        assert_eq!(s.len(), 4);
        // Removing spilled keys removes their files.
        for k in s.keys() {
            s.remove(&k);
        }
        assert_eq!((s.nbytes(), s.spilled_bytes()), (0, 0));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn spill_bytes_moves_what_the_monitor_asks() {
        let dir = std::env::temp_dir().join(format!("rask-spill-test2-{}", std::process::id()));
        let s = DataStore::with_spill(SpillConfig::new(1 << 30, dir.clone())).unwrap();
        for i in 0..10u8 {
            s.insert(Key::new(format!("k{i}")), blob(1000, i));
        }
        assert_eq!(s.spilled_bytes(), 0);
        let moved = s.spill_bytes(3500);
        assert!(moved >= 3500, "{moved}");
        assert_eq!(s.get(&"k0".into()), Some(blob(1000, 0)));
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }
}
