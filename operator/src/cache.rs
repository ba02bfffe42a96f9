//! What the reconcilers know without asking the API server: the reflector
//! caches of the children, and a memory of the operator's own recent writes
//! that the watches have not shown yet. Pure decisions, unit tested:
//!
//! - [`apply_needed`]: whether a server-side apply of a child would change
//!   anything. A no-op apply still costs the API server a full merge, and a
//!   reconcile runs again at every event of a child, so skipping them is
//!   most of what 100 clusters at once cost.
//! - [`known`]: the status the server has, when the cache may still show the
//!   object as it was before our last status write.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// A short stable hash of a value's JSON (FNV-1a), the same in every process.
pub fn fingerprint<T: Serialize>(value: &T) -> u64 {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Whether `observed` already says everything `desired` says: every field of
/// `desired` is present in `observed` with the same value, where lists must
/// have the same length and match element by element. Fields the API server
/// defaulted, or other managers own, may be added; nothing may differ. It
/// errs towards "no" (a list reordered, a quantity written another way),
/// which only costs an apply that changes nothing.
pub fn contains(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(o), Value::Object(d)) => d.iter().all(|(k, dv)| match o.get(k) {
            Some(ov) => contains(ov, dv),
            None => dv.is_null(),
        }),
        (Value::Array(o), Value::Array(d)) => o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| contains(ov, dv)),
        (o, d) => o == d,
    }
}

/// The last apply of one child by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// [`fingerprint`] of the object applied.
    pub hash: u64,
    /// The child's resourceVersion in the cache when we applied (none: the
    /// cache did not have it yet).
    pub before: Option<String>,
    /// The resourceVersion the apply returned.
    pub after: Option<String>,
}

/// Whether the child must be applied. Skipped only when the cache has the
/// child, this process applied exactly this object to it, and the cache
/// shows either our apply, a state from before it (the watch is behind), or
/// a later state that still holds every field we set. Anything else (first
/// apply since the process started, a changed spec, a field someone else
/// changed, a child deleted) applies: a field the desired object no longer
/// has is removed by the apply, which a comparison alone cannot see.
pub fn apply_needed(
    last: Option<&Applied>,
    hash: u64,
    desired: &Value,
    cached: Option<(Option<&str>, &Value)>,
) -> bool {
    let (Some(last), Some((version, observed))) = (last, cached) else { return true };
    if last.hash != hash {
        return true;
    }
    let seen = version.is_some() && (version == last.before.as_deref() || version == last.after.as_deref());
    !seen && !contains(observed, desired)
}

/// A status this process wrote, with the object's resourceVersion in the
/// cache when it did.
#[derive(Clone, Debug, PartialEq)]
pub struct Written<T> {
    pub before: Option<String>,
    pub status: T,
}

/// The status the server has: ours, while the cache still shows the object
/// at the version it had when we wrote (the watch has not delivered our
/// write yet); otherwise the cached one. Comparing resourceVersions only
/// for equality, as the API asks.
pub fn known<'a, T>(written: Option<&'a Written<T>>, version: Option<&str>, cached: Option<&'a T>) -> Option<&'a T> {
    match written {
        Some(w) if version.is_some() && w.before.as_deref() == version => Some(&w.status),
        _ => cached,
    }
}

/// A keyed memory shared by the reconciles (keys are `kind/namespace/name`).
#[derive(Debug)]
pub struct Memory<T> {
    entries: Mutex<HashMap<String, T>>,
}

impl<T> Default for Memory<T> {
    fn default() -> Self {
        Memory { entries: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> Memory<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, T>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, key: &str) -> Option<T> {
        self.lock().get(key).cloned()
    }

    pub fn insert(&self, key: String, value: T) {
        self.lock().insert(key, value);
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn contains_allows_added_fields_and_nothing_different() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 1}]}});
        let defaulted = json!({
            "metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "other": "2"}},
            "spec": {"ports": [{"port": 1, "protocol": "TCP"}], "clusterIP": "10.0.0.1"},
        });
        assert!(contains(&defaulted, &desired));
        let changed = json!({"metadata": {"name": "a", "labels": {"x": "2"}}, "spec": {"ports": [{"port": 1}]}});
        assert!(!contains(&changed, &desired));
        let missing = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        assert!(!contains(&missing, &desired));
        let longer =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 1}, {"port": 2}]}});
        assert!(!contains(&longer, &desired), "a list with an item we did not set");
        let reordered = json!([{"port": 2}, {"port": 1}]);
        assert!(!contains(&reordered, &json!([{"port": 1}, {"port": 2}])));
        assert!(contains(&json!({}), &json!({"absent": null})));
        assert!(!contains(&json!("1"), &json!(1)));
    }

    #[test]
    fn fingerprint_follows_the_content() {
        assert_eq!(fingerprint(&json!({"a": 1})), fingerprint(&json!({"a": 1})));
        assert_ne!(fingerprint(&json!({"a": 1})), fingerprint(&json!({"a": 2})));
    }

    #[test]
    fn an_apply_is_skipped_only_when_it_would_change_nothing() {
        let desired = json!({"spec": {"replicas": 1}});
        let hash = fingerprint(&desired);
        let last = Applied { hash, before: Some("5".into()), after: Some("7".into()) };
        let ours = json!({"spec": {"replicas": 1, "paused": false}});
        // Never applied by this process, or not in the cache: apply.
        assert!(apply_needed(None, hash, &desired, Some((Some("7"), &ours))));
        assert!(apply_needed(Some(&last), hash, &desired, None));
        // The cache shows our apply, or is still behind it: skip.
        assert!(!apply_needed(Some(&last), hash, &desired, Some((Some("7"), &ours))));
        let older = json!({"spec": {"replicas": 3}});
        assert!(!apply_needed(Some(&last), hash, &desired, Some((Some("5"), &older))));
        // A later version: skip while it still holds every field we set...
        assert!(!apply_needed(Some(&last), hash, &desired, Some((Some("9"), &ours))));
        // ...and apply when someone changed one of them.
        assert!(apply_needed(Some(&last), hash, &desired, Some((Some("9"), &older))));
        // The desired object changed (a field may have been dropped, which
        // no comparison sees): apply.
        let fewer = json!({"spec": {}});
        assert!(apply_needed(Some(&last), fingerprint(&fewer), &fewer, Some((Some("7"), &ours))));
        // A cached object without a version proves nothing.
        assert!(apply_needed(Some(&last), hash, &desired, Some((None, &older))));
    }

    #[test]
    fn our_written_status_counts_until_the_cache_moves_on() {
        let written = Written { before: Some("5".into()), status: "ours" };
        let cached = "stale";
        assert_eq!(known(Some(&written), Some("5"), Some(&cached)), Some(&"ours"));
        assert_eq!(known(Some(&written), Some("6"), Some(&cached)), Some(&"stale"));
        assert_eq!(known(None, Some("5"), Some(&cached)), Some(&"stale"));
        assert_eq!(known::<&str>(None, Some("5"), None), None);
        // The object had no status yet when we wrote: ours until it changes.
        assert_eq!(known(Some(&written), Some("5"), None), Some(&"ours"));
        assert_eq!(known(Some(&Written { before: None, status: "ours" }), None, None), None);
    }

    #[test]
    fn memory_keeps_and_forgets() {
        let m: Memory<u32> = Memory::default();
        assert!(m.is_empty());
        m.insert("a".into(), 1);
        assert_eq!(m.get("a"), Some(1));
        m.remove("a");
        assert_eq!(m.get("a"), None);
        assert_eq!(m.len(), 0);
    }
}
