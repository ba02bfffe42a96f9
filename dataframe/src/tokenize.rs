//! Splitting CSV bytes into records and fields.
//!
//! Most lines of real files hold no quote character. For those one pass
//! over the bytes, eight at a time with word arithmetic, finds separators
//! and the newline. A line with a quote
//! anywhere goes through `csv-core`'s full state machine, which
//! handles quoted separators, doubled quotes and newlines inside fields, and
//! may consume several lines. The two paths give the same fields; a property
//! test checks that against the `csv` crate.

use crate::error::{FrameError, Result};

/// A record's fields, as ranges into `base`.
#[derive(Debug)]
pub struct Record<'a> {
    pub base: &'a [u8],
    /// The leading fields that were split out (at least the number asked
    /// for, when the record has that many).
    pub fields: &'a [(usize, usize)],
    /// How many fields the record has in all.
    pub total: usize,
    /// 1-based line number where the record starts.
    pub line: u64,
}

impl Record<'_> {
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.fields.get(i).map(|&(a, b)| &self.base[a..b])
    }
}

/// Calls `f` for every record of `bytes`; blank lines are skipped, as
/// pandas does. Only the first `wanted` fields of a record are split out;
/// the separators after them are only counted, which is much cheaper when a
/// reader needs few columns. Stops at the first error `f` returns.
pub fn for_each_record(
    bytes: &[u8],
    sep: u8,
    first_line: u64,
    wanted: usize,
    mut f: impl FnMut(&Record<'_>) -> Result<()>,
) -> Result<()> {
    if sep == b'"' || sep == b'\n' || sep == b'\r' {
        return Err(FrameError::Read(format!("{:?} cannot separate fields", sep as char)));
    }
    let mut line = first_line;
    let mut fields: Vec<(usize, usize)> = Vec::with_capacity(wanted.min(1024) + 1);
    let mut core = csv_core::ReaderBuilder::new().delimiter(sep).build();
    let mut out: Vec<u8> = vec![0; 1024];
    let mut ends: Vec<usize> = vec![0; 64];
    let mut start = 0usize;
    while start < bytes.len() {
        fields.clear();
        match plain_record(bytes, start, sep, wanted, &mut fields) {
            Some(Plain { end, seps, last }) => {
                let trimmed = if end > last && bytes[end - 1] == b'\r' { end - 1 } else { end };
                if fields.len() < wanted {
                    fields.push((last, trimmed));
                }
                // A blank line is skipped, as pandas does.
                if seps > 0 || trimmed > start {
                    f(&Record { base: bytes, fields: &fields, total: seps + 1, line })?;
                }
                line += 1;
                start = end + 1;
            }
            None => {
                let rest = &bytes[start..];
                let (consumed, nfields) = quoted_record(&mut core, rest, &mut out, &mut ends)?;
                fields.clear();
                let mut from = 0;
                for &e in &ends[..nfields] {
                    fields.push((from, e));
                    from = e;
                }
                if !(nfields == 1 && fields[0].0 == fields[0].1) {
                    f(&Record { base: &out, fields: &fields, total: nfields, line })?;
                }
                line += memchr::memchr_iter(b'\n', &rest[..consumed]).count() as u64;
                if consumed == rest.len() && rest.last() != Some(&b'\n') {
                    line += 1;
                }
                start += consumed.max(1);
            }
        }
    }
    Ok(())
}

/// A record with no quote character, found by [`plain_record`].
struct Plain {
    /// Where its line ends: the newline, or the end of the bytes.
    end: usize,
    /// Separators in the record: it has one field more.
    seps: usize,
    /// Where its last field split out (or the field in progress) starts.
    last: usize,
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of every byte of `w` that equals the byte repeated in `c`
/// (exact: no false positives from carries).
#[inline(always)]
fn bytes_equal(w: u64, c: u64) -> u64 {
    let x = w ^ c;
    !(((x & LOW7).wrapping_add(LOW7)) | x) & HIGH
}

/// The number of bytes flagged in `flags` (high bits only).
#[inline(always)]
fn flagged(flags: u64) -> usize {
    ((flags >> 7).wrapping_mul(ONES) >> 56) as usize
}

/// Splits the record at `start` if its line holds no quote: pushes the
/// `(start, end)` of its separator-ended fields onto `fields` until there
/// are `wanted`, and counts the other separators. Eight bytes at a time:
/// separators, newlines and quotes are found with word arithmetic, and the
/// field boundaries are read off the flag bits. `None` when a quote comes
/// before the line's end; the caller then uses the full state machine.
#[inline]
fn plain_record(bytes: &[u8], start: usize, sep: u8, wanted: usize, fields: &mut Vec<(usize, usize)>) -> Option<Plain> {
    let s_rep = u64::from(sep).wrapping_mul(ONES);
    let n_rep = u64::from(b'\n').wrapping_mul(ONES);
    let q_rep = u64::from(b'"').wrapping_mul(ONES);
    let mut seps = 0usize;
    let mut last = start;
    let mut i = start;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let mut s = bytes_equal(w, s_rep);
        let stop = bytes_equal(w, n_rep) | bytes_equal(w, q_rep);
        if stop != 0 {
            // Only the separators before the newline or quote count.
            s &= (stop & stop.wrapping_neg()) - 1;
        }
        while s != 0 && fields.len() < wanted {
            let at = i + (s.trailing_zeros() / 8) as usize;
            fields.push((last, at));
            last = at + 1;
            seps += 1;
            s &= s - 1;
        }
        seps += flagged(s);
        if stop != 0 {
            let at = i + (stop.trailing_zeros() / 8) as usize;
            return (bytes[at] == b'\n').then_some(Plain { end: at, seps, last });
        }
        i += 8;
    }
    // The last few bytes, one at a time.
    for (at, &b) in bytes.iter().enumerate().skip(i) {
        if b == b'\n' {
            return Some(Plain { end: at, seps, last });
        }
        if b == b'"' {
            return None;
        }
        if b == sep {
            if fields.len() < wanted {
                fields.push((last, at));
                last = at + 1;
            }
            seps += 1;
        }
    }
    Some(Plain { end: bytes.len(), seps, last })
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
        ours_wanting(bytes, usize::MAX)
    }

    /// Records split as far as `wanted` fields, with the total count as
    /// empty placeholders beyond that.
    fn ours_wanting(bytes: &[u8], wanted: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        for_each_record(bytes, b',', 1, wanted, |r| {
            let shown = r.len().min(wanted);
            let mut v: Vec<Vec<u8>> = (0..shown).map(|i| r.get(i).unwrap_or_default().to_vec()).collect();
            v.resize(r.len(), b"?".to_vec());
            out.push((r.line, v));
            Ok(())
        })
        .expect("tokenizes");
        out
    }

    /// The reference with fields beyond `wanted` replaced by placeholders.
    fn reference_wanting(bytes: &[u8], wanted: usize) -> Vec<Vec<Vec<u8>>> {
        fields(reference(bytes))
            .into_iter()
            .map(|r| r.into_iter().enumerate().map(|(i, f)| if i < wanted { f } else { b"?".to_vec() }).collect())
            .collect()
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
        for wanted in 0..4 {
            assert_eq!(fields(ours_wanting(text, wanted)), reference_wanting(text, wanted), "wanted {wanted}");
        }
        let got = ours(text);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 4, 6]);
        assert_eq!(got[1].1[1], b"x,y");
    }

    proptest! {
        /// Any bytes at all tokenize without a panic, and every field lies
        /// inside its buffer.
        #[test]
        fn arbitrary_bytes_never_panic(
            data in prop::collection::vec(prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300),
            wanted in 0usize..6,
        ) {
            let mut n = 0;
            for_each_record(&data, b',', 1, wanted, |r| {
                for i in 0..r.len() {
                    let _ = r.get(i);
                }
                n += 1;
                Ok(())
            })
            .expect("tokenizing never fails on content");
            prop_assert!(n <= data.len() + 1);
        }

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
            for wanted in 0..4 {
                prop_assert_eq!(
                    fields(ours_wanting(text.as_bytes(), wanted)),
                    reference_wanting(text.as_bytes(), wanted)
                );
                let lines: Vec<u64> = ours_wanting(text.as_bytes(), wanted).iter().map(|r| r.0).collect();
                let all: Vec<u64> = ours(text.as_bytes()).iter().map(|r| r.0).collect();
                prop_assert_eq!(lines, all);
            }
        }
    }
}
