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

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    name: Arc<str>,
    index: Box<[u32]>,
}

impl Key {
    /// A key without a chunk index.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), index: Box::default() }
    }

    /// A chunk key: the collection's name and the chunk's position.
    pub fn chunk(name: Arc<str>, index: &[u32]) -> Self {
        Self { name, index: index.into() }
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
pub fn prefix_of(name: &str) -> &str {
    let mut end = name.len();
    while let Some(pos) = name[..end].rfind('-') {
        let token = &name[pos + 1..end];
        let is_token = !token.is_empty() && token.len() >= 4 && token.bytes().all(|b| b.is_ascii_hexdigit())
            || !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
        if is_token && pos > 0 {
            end = pos;
        } else {
            break;
        }
    }
    &name[..end]
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
    }

    #[test]
    fn token_is_stable() {
        assert_eq!(token(b"abc"), token(b"abc"));
        assert_ne!(token(b"abc"), token(b"abd"));
        assert_eq!(token(b"").len(), 16);
    }
}
