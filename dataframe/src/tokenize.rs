//! Splitting CSV bytes into records and fields.
//!
//! Most lines of real files hold no quote character. For those one pass
//! over the bytes finds separators and the newline. A line with a quote
//! anywhere goes through `csv-core`'s full state machine, which
//! handles quoted separators, doubled quotes and newlines inside fields, and
//! may consume several lines. The two paths give the same fields; a property
//! test checks that against the `csv` crate.

use crate::error::{FrameError, Result};

/// A record's fields, as ranges into `base`.
#[derive(Debug)]
pub struct Record<'a> {
    pub base: &'a [u8],
    pub fields: &'a [(usize, usize)],
    /// 1-based line number where the record starts.
    pub line: u64,
}

impl Record<'_> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.fields.get(i).map(|&(a, b)| &self.base[a..b])
    }
}

/// Calls `f` for every record of `bytes`; blank lines are skipped, as
/// pandas does. Stops at the first error `f` returns.
pub fn for_each_record(
    bytes: &[u8],
    sep: u8,
    first_line: u64,
    mut f: impl FnMut(&Record<'_>) -> Result<()>,
) -> Result<()> {
    if sep == b'"' || sep == b'\n' || sep == b'\r' {
        return Err(FrameError::Read(format!("{:?} cannot separate fields", sep as char)));
    }
    let mut line = first_line;
    let mut fields: Vec<(usize, usize)> = Vec::with_capacity(32);
    let mut core = csv_core::ReaderBuilder::new().delimiter(sep).build();
    let mut out: Vec<u8> = vec![0; 1024];
    let mut ends: Vec<usize> = vec![0; 64];
    // One vectorised pass finds every separator, newline and quote; a
    // quote hands the record to the state machine and the pass restarts
    // after it.
    // Which bytes end a field: separators, newlines and quotes. Fields are
    // short, so a table lookup per byte beats a vector search restarted at
    // every hit.
    let mut special = [false; 256];
    for b in [sep, b'\n', b'"'] {
        special[usize::from(b)] = true;
    }
    let mut cursor = 0usize;
    let mut record_start = 0usize;
    let mut field_start = 0usize;
    loop {
        while cursor < bytes.len() && !special[usize::from(bytes[cursor])] {
            cursor += 1;
        }
        let hit = (cursor < bytes.len()).then_some(cursor);
        cursor += 1;
        let Some(i) = hit else {
            if record_start < bytes.len() {
                let mut end = bytes.len();
                if bytes[end - 1] == b'\r' {
                    end -= 1;
                }
                fields.push((field_start, end));
                if !(fields.len() == 1 && field_start == end) {
                    f(&Record { base: bytes, fields: &fields, line })?;
                }
            }
            return Ok(());
        };
        match bytes[i] {
            b'\n' => {
                let end = if i > field_start && bytes[i - 1] == b'\r' { i - 1 } else { i };
                fields.push((field_start, end));
                // A blank line is skipped, as pandas does.
                if !(fields.len() == 1 && field_start == end) {
                    f(&Record { base: bytes, fields: &fields, line })?;
                }
                fields.clear();
                line += 1;
                record_start = i + 1;
                field_start = i + 1;
            }
            b'"' => {
                let rest = &bytes[record_start..];
                let (consumed, nfields) = quoted_record(&mut core, rest, &mut out, &mut ends)?;
                fields.clear();
                let mut start = 0;
                for &e in &ends[..nfields] {
                    fields.push((start, e));
                    start = e;
                }
                if !(nfields == 1 && fields[0].0 == fields[0].1) {
                    f(&Record { base: &out, fields: &fields, line })?;
                }
                fields.clear();
                line += memchr::memchr_iter(b'\n', &rest[..consumed]).count() as u64;
                if consumed == rest.len() && rest.last() != Some(&b'\n') {
                    line += 1;
                }
                record_start += consumed.max(1);
                field_start = record_start;
                cursor = record_start;
            }
            _ => {
                fields.push((field_start, i));
                field_start = i + 1;
            }
        }
    }
}

/// Reads one record starting at the beginning of `input` with `csv-core`,
/// growing the buffers as needed: `(bytes consumed, fields)`.
fn quoted_record(
    core: &mut csv_core::Reader,
    input: &[u8],
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(usize, usize)> {
    use csv_core::ReadRecordResult as R;
    let (mut nin, mut nout, mut nend) = (0usize, 0usize, 0usize);
    loop {
        // Field ends count from the start of the record, across calls.
        let (res, i, o, e) = core.read_record(&input[nin..], &mut out[nout..], &mut ends[nend..]);
        nin += i;
        nout += o;
        nend += e;
        match res {
            R::InputEmpty => {
                if nin >= input.len() {
                    // End of input inside a record: finish it.
                    let (res, _, _, e) = core.read_record(&[], &mut out[nout..], &mut ends[nend..]);
                    nend += e;
                    if matches!(res, R::Record) {
                        return Ok((nin, nend));
                    }
                    return Err(FrameError::Read("unexpected end of data inside a record".into()));
                }
            }
            R::OutputFull => out.resize(out.len() * 2, 0),
            R::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            R::Record | R::End => return Ok((nin, nend)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(records: Vec<(u64, Vec<Vec<u8>>)>) -> Vec<Vec<Vec<u8>>> {
        records.into_iter().map(|r| r.1).collect()
    }

    fn ours(bytes: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        for_each_record(bytes, b',', 1, |r| {
            out.push((r.line, (0..r.len()).map(|i| r.get(i).unwrap_or_default().to_vec()).collect()));
            Ok(())
        })
        .expect("tokenizes");
        out
    }

    fn reference(bytes: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
        let mut out = Vec::new();
        for rec in rdr.byte_records() {
            let rec = rec.expect("valid");
            if rec.len() == 1 && rec.get(0).is_some_and(<[u8]>::is_empty) {
                continue;
            }
            let line = rec.position().map_or(0, csv::Position::line);
            out.push((line, rec.iter().map(<[u8]>::to_vec).collect()));
        }
        out
    }

    #[test]
    fn plain_and_quoted() {
        let text = b"a,b,c\n1,\"x,y\",3\r\n\n4,\"multi\nline\",\"q\"\"uote\"\n5,,6";
        assert_eq!(fields(ours(text)), fields(reference(text)));
        let got = ours(text);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 4, 6]);
        assert_eq!(got[1].1[1], b"x,y");
    }

    proptest! {
        #[test]
        fn matches_the_csv_crate(rows in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                "[a-z0-9 ]{0,6}",
                "\"[a-z,\\n ]{0,6}\"",
                "\"[a-z]{0,3}\"\"[a-z]{0,3}\"",
            ], 1..5), 0..12),
            crlf in any::<bool>(),
            trailing in any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = rows.iter().map(|r| r.join(",")).collect::<Vec<_>>().join(nl);
            if trailing {
                text.push_str(nl);
            }
            prop_assert_eq!(fields(ours(text.as_bytes())), fields(reference(text.as_bytes())));
        }
    }
}
