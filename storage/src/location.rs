//! Parsing storage URLs and matching glob patterns against object keys.
//! Pure functions: no IO, unit-tested below.

use std::path::PathBuf;

use crate::error::{Result, StorageError};

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local path (plain, or from a `file://` URL).
    Local(PathBuf),
    /// `s3://bucket/key`.
    S3 { bucket: String, key: String },
}

/// Whether a string names an S3 object or prefix.
pub fn is_s3(url: &str) -> bool {
    url.starts_with("s3://")
}

/// Whether a path or key has glob characters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Location {
    /// Parses `s3://bucket/key`, `file:///path` or a local path.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| StorageError::BadUrl { url: url.to_string(), reason: reason.to_string() };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("expected s3://bucket/key, found no bucket name"));
            }
            let valid = bucket.len() <= 255
                && bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !valid {
                return Err(bad("a bucket name has only letters, digits, '.', '-' and '_'"));
            }
            return Ok(Location::S3 { bucket: bucket.to_string(), key: key.to_string() });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            // file:///abs or file://localhost/abs; other hosts are not local.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path (file:///dir/file)"));
            }
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://")
            && !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(bad(&format!("unsupported scheme {scheme:?}; rask reads s3://, file:// and local paths")));
        }
        Ok(Location::Local(PathBuf::from(url)))
    }
}

/// The literal part of a key pattern before its first glob character: the
/// prefix to list.
pub fn literal_prefix(pattern: &str) -> &str {
    match pattern.find(['*', '?', '[']) {
        Some(i) => &pattern[..i],
        None => pattern,
    }
}

/// A compiled key pattern: `*` and `?` stay within one path segment, as a
/// shell's (and fsspec's) do; `**` crosses segments.
#[derive(Debug)]
pub struct KeyPattern {
    pattern: glob::Pattern,
}

impl KeyPattern {
    pub fn new(url: &str, key_pattern: &str) -> Result<Self> {
        let pattern = glob::Pattern::new(key_pattern)
            .map_err(|e| StorageError::BadUrl { url: url.to_string(), reason: format!("bad glob: {e}") })?;
        Ok(KeyPattern { pattern })
    }

    pub fn matches(&self, key: &str) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.pattern.matches_with(key, options)
    }
}

/// `base` joined with a relative name, for URLs and local paths alike.
pub fn join(base: &str, name: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), name.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            Location::parse("s3://bkt/a/b.csv").expect("s3"),
            Location::S3 { bucket: "bkt".into(), key: "a/b.csv".into() }
        );
        assert_eq!(Location::parse("s3://bkt").expect("s3"), Location::S3 { bucket: "bkt".into(), key: "".into() });
        assert_eq!(Location::parse("file:///tmp/x").expect("file"), Location::Local("/tmp/x".into()));
        assert_eq!(Location::parse("file://localhost/tmp/x").expect("file"), Location::Local("/tmp/x".into()));
        assert_eq!(Location::parse("data/x.csv").expect("local"), Location::Local("data/x.csv".into()));
        assert_eq!(Location::parse("C:x").expect("local"), Location::Local("C:x".into()));
    }

    #[test]
    fn refuses_bad_urls_with_reasons() {
        for (url, says) in [
            ("s3:///key", "no bucket"),
            ("s3://bad bucket/k", "bucket name"),
            ("gs://b/k", "unsupported scheme"),
            ("file://host/x", "absolute path"),
        ] {
            let e = Location::parse(url).expect_err(url).to_string();
            assert!(e.contains(url) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn patterns_stay_within_segments() {
        assert_eq!(literal_prefix("a/b*/c.csv"), "a/b");
        assert_eq!(literal_prefix("a/b.csv"), "a/b.csv");
        let p = KeyPattern::new("s3://b/x", "data/*.csv").expect("pattern");
        assert!(p.matches("data/1.csv"));
        assert!(!p.matches("data/sub/1.csv"));
        assert!(!p.matches("data/1.csv.bak"));
        let deep = KeyPattern::new("s3://b/x", "data/**/*.csv").expect("pattern");
        assert!(deep.matches("data/sub/1.csv"));
    }

    #[test]
    fn joins() {
        assert_eq!(join("s3://b/out/", "part.0.parquet"), "s3://b/out/part.0.parquet");
        assert_eq!(join("/tmp/out", "x"), "/tmp/out/x");
    }
}
