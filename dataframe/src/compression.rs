//! Compressed inputs, as pandas' `compression=` reads them.
//!
//! A compressed stream cannot be entered in the middle, so a compressed
//! file is one partition (as in Dask): its task streams the object through
//! the decoder from the start. Every codec here is a streaming decoder over
//! `std::io::Read`, so local files and `s3://` objects decode the same way.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{FrameError, Result};

/// How a CSV input is compressed (pandas' `compression=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// From the file name's suffix: `.gz`, `.zst`, `.bz2`, `.xz`; anything
    /// else is read as it is (pandas' default, `"infer"`).
    #[default]
    Infer,
    /// Not compressed, whatever the name says.
    None,
    Gzip,
    Zstd,
    Bz2,
    Xz,
}

impl Compression {
    /// The codec a file of this name is read with: `Infer` resolved by the
    /// suffix, never `Infer` itself.
    pub fn for_path(self, path: &str) -> Compression {
        if self != Compression::Infer {
            return self;
        }
        // A URL's query (none today, but cheap to allow) is not its name.
        let name = path.split(['?', '#']).next().unwrap_or(path).to_ascii_lowercase();
        if name.ends_with(".gz") || name.ends_with(".gzip") {
            Compression::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Compression::Zstd
        } else if name.ends_with(".bz2") {
            Compression::Bz2
        } else if name.ends_with(".xz") {
            Compression::Xz
        } else {
            Compression::None
        }
    }

    /// Whether data read this way must be decoded (so is one partition).
    pub fn is_compressed(self) -> bool {
        !matches!(self, Compression::None | Compression::Infer)
    }

    /// pandas' name of the codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Infer => "infer",
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bz2 => "bz2",
            Compression::Xz => "xz",
        }
    }

    /// Decodes `input`. Concatenated members or frames (what `cat a.gz b.gz`
    /// makes, and parallel compressors write) are read as one stream, as
    /// the command-line tools and pandas do.
    pub(crate) fn decoder<'a>(self, input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Infer | Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(input)
                    .map_err(|e| FrameError::Read(format!("starting the zstd decoder: {e}")))?,
            ),
            Compression::Bz2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
            Compression::Xz => Box::new(lzma_rust2::XzReader::new(std::io::BufReader::new(input), true)),
        })
    }
}

impl std::str::FromStr for Compression {
    type Err = FrameError;

    /// pandas' names: `infer`, `gzip`, `zstd`, `bz2`, `xz`, or `none`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "infer" => Compression::Infer,
            "none" | "" => Compression::None,
            "gzip" | "gz" => Compression::Gzip,
            "zstd" | "zst" => Compression::Zstd,
            "bz2" | "bzip2" => Compression::Bz2,
            "xz" => Compression::Xz,
            other => {
                return Err(FrameError::Schema(format!(
                    "compression {other:?} is not one of infer, gzip, zstd, bz2, xz, none"
                )));
            }
        })
    }
}

/// Reads all of `path` (local or `s3://`, `size` bytes as stored) through
/// the decoder into `out`, replacing its contents.
pub(crate) fn read_all_into(
    path: &str,
    size: u64,
    codec: Compression,
    storage: &rask_storage::StorageOptions,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    let input = rask_storage::Reader::open(path, size, storage)?;
    codec
        .decoder(input)?
        .read_to_end(out)
        .map_err(|e| FrameError::Read(format!("{path}: decompressing as {}: {e}", codec.name())))?;
    Ok(())
}

/// Up to `limit` decoded bytes from the start of `path`, and whether they
/// are the whole of it.
pub(crate) fn read_prefix(
    path: &str,
    size: u64,
    codec: Compression,
    limit: usize,
    storage: &rask_storage::StorageOptions,
) -> Result<(Vec<u8>, bool)> {
    let input = rask_storage::Reader::open(path, size, storage)?;
    let mut out = Vec::new();
    // One byte past the limit tells whether anything is left.
    codec
        .decoder(input)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FrameError::Read(format!("{path}: decompressing as {}: {e}", codec.name())))?;
    let whole = out.len() <= limit;
    out.truncate(limit);
    Ok((out, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_from_the_suffix() {
        let c = Compression::Infer;
        assert_eq!(c.for_path("data/Birthdays.csv.xz"), Compression::Xz);
        assert_eq!(c.for_path("s3://b/k/part.CSV.GZ"), Compression::Gzip);
        assert_eq!(c.for_path("a.csv.zst"), Compression::Zstd);
        assert_eq!(c.for_path("a.csv.bz2"), Compression::Bz2);
        assert_eq!(c.for_path("a.csv"), Compression::None);
        assert_eq!(c.for_path("gz"), Compression::None);
        assert_eq!(Compression::None.for_path("a.csv.gz"), Compression::None);
        assert_eq!(Compression::Zstd.for_path("a.csv"), Compression::Zstd);
        assert_eq!("bz2".parse::<Compression>().ok(), Some(Compression::Bz2));
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn concatenated_gzip_members_read_as_one() {
        use std::io::Write;
        let mut all = Vec::new();
        for part in ["a,b\n1,2\n", "3,4\n"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part.as_bytes()).expect("encodes");
            all.extend(e.finish().expect("finishes"));
        }
        let mut out = String::new();
        Compression::Gzip.decoder(all.as_slice()).expect("decoder").read_to_string(&mut out).expect("decodes");
        assert_eq!(out, "a,b\n1,2\n3,4\n");
    }

    #[test]
    fn corrupt_input_is_an_error_naming_the_codec() {
        let dir = std::env::temp_dir().join(format!("rask-compression-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("bad.csv.xz");
        std::fs::write(&p, b"this is not xz at all\n").expect("write");
        let path = p.to_string_lossy().into_owned();
        let mut out = Vec::new();
        let err = read_all_into(&path, 22, Compression::Xz, &Default::default(), &mut out).expect_err("not xz");
        assert!(err.to_string().contains("bad.csv.xz") && err.to_string().contains("xz"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
