//! Keys name what a task computes.
//!
//! A key is a name plus an optional chunk index, like Dask's
//! `("randint-1f2e", 0, 3)`. The name is shared between all chunks of one
//! collection (cloning it is a reference-count bump), and its prefix before
//! the final `-<token>` is the task *group* used for progress bars, learned
//! durations and metrics labels.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "KeyRepr", into = "KeyRepr")]
pub struct Key {
    name: Arc<str>,
    index: Box<[u32]>,
    /// Computed once: schedulers hash and compare keys millions of times.
    hash: u64,
}

/// The wire form of a key: the cached hash is recomputed on arrival rather
/// than trusted.
#[derive(Serialize, Deserialize)]
struct KeyRepr {
    name: Arc<str>,
    index: Box<[u32]>,
}

impl From<KeyRepr> for Key {
    fn from(r: KeyRepr) -> Self {
        Key::from_parts(r.name, r.index)
    }
}

impl From<Key> for KeyRepr {
    fn from(k: Key) -> Self {
        KeyRepr { name: k.name, index: k.index }
    }
}

impl PartialEq for Key {
    /// Keys are compared on every hash-map probe of the scheduler, the
    /// workers' stores and the client's graph, nearly always against a clone
    /// of the same key. The cached hash and the shared name settle most
    /// comparisons; the index is compared element by element, as a
    /// byte-slice comparison would call `memcmp` even for empty indices,
    /// which profiles showed as a third of a worker's time on tiny tasks.
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.index.len() == other.index.len()
            && (Arc::ptr_eq(&self.name, &other.name) || *self.name == *other.name)
            && self.index.iter().zip(other.index.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.name, &self.index).cmp(&(&other.name, &other.index))
    }
}

impl Key {
    fn from_parts(name: Arc<str>, index: Box<[u32]>) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        name.hash(&mut h);
        index.hash(&mut h);
        Self { name, index, hash: h.finish() }
    }

    /// A key without a chunk index.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::from_parts(name.into(), Box::default())
    }

    /// A chunk key: the collection's name and the chunk's position.
    pub fn chunk(name: Arc<str>, index: &[u32]) -> Self {
        Self::from_parts(name, index.into())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    pub fn index(&self) -> &[u32] {
        &self.index
    }

    /// The task prefix, e.g. `inc` for `inc-8f2a11c0`: the name without its
    /// trailing hexadecimal token. Dask calls this `key_split`.
    pub fn prefix(&self) -> &str {
        prefix_of(&self.name)
    }
}

/// Strips trailing `-<token>` parts made of hex digits or digits, so that
/// `sum-aggregate-3f2e` gives `sum-aggregate` and `inc-1` gives `inc`.
/// Schedulers call this for every task they take in: one backward pass over
/// the bytes, which stops at the first part that is not a token.
pub fn prefix_of(name: &str) -> &str {
    let bytes = name.as_bytes();
    let mut end = bytes.len();
    loop {
        // The part after the last '-' before `end`.
        let mut start = end;
        let (mut hex, mut digits) = (true, true);
        while start > 0 && bytes[start - 1] != b'-' {
            let b = bytes[start - 1];
            digits &= b.is_ascii_digit();
            hex &= b.is_ascii_hexdigit();
            if !hex {
                // Not a token (digits are hex digits too): this part stays.
                return &name[..end];
            }
            start -= 1;
        }
        let len = end - start;
        let is_token = len > 0 && (digits || len >= 4);
        // `start - 1` is the '-'; a name starting with it keeps it.
        if !is_token || start <= 1 {
            return &name[..end];
        }
        end = start - 1;
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.index.is_empty() {
            return f.write_str(&self.name);
        }
        write!(f, "('{}'", self.name)?;
        for i in self.index.iter() {
            write!(f, ", {i}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::new(s)
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::new(s)
    }
}

/// A short, stable token for naming keys after their content, like Dask's
/// `tokenize`: FNV-1a over the bytes, printed as 16 hex digits.
pub fn token(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_dask_tuple_keys() {
        assert_eq!(Key::new("inc-ab12").to_string(), "inc-ab12");
        assert_eq!(Key::chunk("randint-ff00".into(), &[0, 3]).to_string(), "('randint-ff00', 0, 3)");
    }

    #[test]
    fn prefix_strips_tokens_only() {
        assert_eq!(prefix_of("inc-8f2a11c0"), "inc");
        assert_eq!(prefix_of("sum-aggregate-3f2e"), "sum-aggregate");
        assert_eq!(prefix_of("inc-1"), "inc");
        assert_eq!(prefix_of("add"), "add");
        assert_eq!(prefix_of("read-csv"), "read-csv");
        assert_eq!(prefix_of("-1"), "-1");
        assert_eq!(prefix_of("x-12-abcd"), "x");
        assert_eq!(prefix_of("x-abc"), "x-abc");
        assert_eq!(prefix_of("x--1"), "x-");
        assert_eq!(prefix_of("x-"), "x-");
        assert_eq!(prefix_of("1234"), "1234");
        assert_eq!(prefix_of("a-1234-z-ff00"), "a-1234-z");
        assert_eq!(prefix_of(""), "");
    }

    #[test]
    fn equal_keys_hash_alike_and_round_trip() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let a = Key::chunk("x".into(), &[1, 2]);
        let b = Key::chunk(Arc::from("x".to_string()), &[1, 2]);
        assert_eq!(a, b);
        let s = BuildHasherDefault::<rustc_hash::FxHasher>::default();
        assert_eq!(s.hash_one(&a), s.hash_one(&b));
        assert_ne!(a, Key::chunk("x".into(), &[2, 1]));
        let bytes = postcard::to_stdvec(&a).unwrap();
        assert_eq!(postcard::from_bytes::<Key>(&bytes).unwrap(), a);
        assert!(Key::new("a") < Key::new("b"));
    }

    #[test]
    fn token_is_stable() {
        assert_eq!(token(b"abc"), token(b"abc"));
        assert_ne!(token(b"abc"), token(b"abd"));
        assert_eq!(token(b"").len(), 16);
    }
}
