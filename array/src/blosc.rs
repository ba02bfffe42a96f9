//! The Blosc 1 container format, as numcodecs' `Blosc` and zarr-python 3's
//! `BloscCodec` write it (c-blosc 1.x, format version 2).
//!
//! A Blosc buffer is a 16-byte header followed by the compressed blocks:
//!
//! ```text
//! byte 0     version     format version (1 or 2 for Blosc 1)
//! byte 1     versionlz   version of the inner compressor's format (1)
//! byte 2     flags       bit 0: byte shuffle, bit 1: memcpyed (stored raw),
//!                        bit 2: bit shuffle, bit 3: reserved (0),
//!                        bit 4: blocks are not split,
//!                        bits 5-7: compressor (0 blosclz, 1 lz4/lz4hc,
//!                        2 snappy, 3 zlib, 4 zstd)
//! byte 3     typesize    bytes per element, what the shuffles transpose
//! bytes 4-7  nbytes      decoded size (u32, little-endian)
//! bytes 8-11 blocksize   decoded size of every block but a shorter last one
//! bytes 12-15 cbytes     size of the whole buffer, header included
//! ```
//!
//! A memcpyed buffer holds the `nbytes` raw bytes right after the header.
//! Otherwise a table of one little-endian `i32` per block follows the
//! header: the offset of the block's data from the start of the buffer.
//! A block is one stream, or — when the "not split" flag is clear, the
//! element size is at most 16 bytes, the block holds at least 128 elements
//! and it is not the shorter last block — `typesize` streams, one per byte
//! position of the (shuffled) elements. Each stream is an `i32` size then
//! that many bytes: exactly the stream's decoded size means stored raw,
//! anything else is the inner compressor's output.
//!
//! Shuffles apply per block. The byte shuffle groups byte 0 of every
//! element, then byte 1, …; the bytes past the last whole element stay in
//! place. The bit shuffle (Kiyo Masui's bitshuffle) groups bit 0 of byte 0
//! of every element, then bit 1, …; it applies only when the block holds a
//! multiple of 8 elements, otherwise the block is left as it is.
//!
//! Decoding trusts nothing: every header field, offset and stream size is
//! checked against the buffer and against the size the caller expects, so
//! a truncated or corrupt buffer is an error naming what is wrong, never a
//! panic or an allocation larger than the expected chunk.

use serde::{Deserialize, Serialize};

/// The header's size; also Blosc's whole overhead for a memcpyed buffer.
const HEADER: usize = 16;
/// Blocks (and buffers) smaller than this are never split (or compressed).
const MIN_BUFFERSIZE: usize = 128;
/// Elements wider than this are never split into per-byte streams.
const MAX_SPLITS: usize = 16;
/// c-blosc's largest block: its temporaries must fit an `int`.
const MAX_BLOCKSIZE: usize = (i32::MAX as usize - 255 * 4) / 3;
/// c-blosc's largest buffer: sizes are `int32` with the header added.
const MAX_BUFFERSIZE: usize = i32::MAX as usize - HEADER;
/// The L1 cache size c-blosc sizes its blocks from.
const L1: usize = 32 * 1024;

const FLAG_SHUFFLE: u8 = 0x01;
const FLAG_MEMCPYED: u8 = 0x02;
const FLAG_BITSHUFFLE: u8 = 0x04;
const FLAG_RESERVED: u8 = 0x08;
const FLAG_DONT_SPLIT: u8 = 0x10;

/// Blosc's inner compressor, the `cname` of numcodecs and Zarr 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BloscCname {
    /// Blosc's own LZ77 variant; read only.
    BloscLz,
    Lz4,
    /// LZ4's high-compression encoder (LZ4 block format); read only.
    Lz4Hc,
    Zlib,
    Zstd,
}

impl BloscCname {
    /// The name numcodecs and Zarr 3 use.
    pub fn name(self) -> &'static str {
        match self {
            BloscCname::BloscLz => "blosclz",
            BloscCname::Lz4 => "lz4",
            BloscCname::Lz4Hc => "lz4hc",
            BloscCname::Zlib => "zlib",
            BloscCname::Zstd => "zstd",
        }
    }

    /// Parses a `cname`; snappy (which c-blosc may be built without) and
    /// unknown names are errors naming them.
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "blosclz" => BloscCname::BloscLz,
            "lz4" => BloscCname::Lz4,
            "lz4hc" => BloscCname::Lz4Hc,
            "zlib" => BloscCname::Zlib,
            "zstd" => BloscCname::Zstd,
            "snappy" => {
                return Err(
                    "blosc cname \"snappy\" is not supported: rask reads blosclz, lz4, lz4hc, zlib and zstd".into()
                );
            }
            other => {
                return Err(format!(
                    "unknown blosc cname {other:?} (blosclz, lz4, lz4hc, zlib and zstd are supported)"
                ));
            }
        })
    }

    /// Whether rask can write it (blosclz and lz4hc are decode-only).
    pub fn writable(self) -> bool {
        matches!(self, BloscCname::Lz4 | BloscCname::Zlib | BloscCname::Zstd)
    }

    /// The 3-bit compressor code in the header's flags.
    fn format_code(self) -> u8 {
        match self {
            BloscCname::BloscLz => 0,
            BloscCname::Lz4 | BloscCname::Lz4Hc => 1,
            BloscCname::Zlib => 3,
            BloscCname::Zstd => 4,
        }
    }

    /// c-blosc's "high compression ratio" codecs get larger blocks.
    fn high_ratio(self) -> bool {
        matches!(self, BloscCname::Lz4Hc | BloscCname::Zlib | BloscCname::Zstd)
    }
}

/// Blosc's shuffle filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BloscShuffle {
    NoShuffle,
    /// Byte shuffle (numcodecs `SHUFFLE`, 1).
    Byte,
    /// Bit shuffle (numcodecs `BITSHUFFLE`, 2).
    Bit,
}

impl BloscShuffle {
    /// numcodecs' integer: 0, 1 or 2 (`-1`, AUTOSHUFFLE, is resolved by the
    /// caller, who knows the element size).
    pub fn code(self) -> i64 {
        match self {
            BloscShuffle::NoShuffle => 0,
            BloscShuffle::Byte => 1,
            BloscShuffle::Bit => 2,
        }
    }

    /// Zarr 3's name.
    pub fn name(self) -> &'static str {
        match self {
            BloscShuffle::NoShuffle => "noshuffle",
            BloscShuffle::Byte => "shuffle",
            BloscShuffle::Bit => "bitshuffle",
        }
    }

    /// numcodecs' AUTOSHUFFLE: bit shuffle for bytes, byte shuffle otherwise.
    pub fn auto(itemsize: usize) -> Self {
        if itemsize == 1 { BloscShuffle::Bit } else { BloscShuffle::Byte }
    }
}

/// How [`encode`] compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    pub cname: BloscCname,
    /// 0 (stored raw) to 9.
    pub clevel: u8,
    pub shuffle: BloscShuffle,
    /// Bytes per element (the dtype's size); 1 when shuffling is moot.
    pub typesize: usize,
    /// 0 for c-blosc's automatic choice; otherwise a forced block size.
    pub blocksize: usize,
}

/// Whether blocks of `blocksize` bytes are split into per-byte streams
/// (c-blosc's default "forward compatible" rule, which the decoder's own
/// condition matches for every block but a shorter last one).
fn splits(cname: BloscCname, typesize: usize, blocksize: usize) -> bool {
    cname != BloscCname::Zstd && typesize <= MAX_SPLITS && blocksize / typesize >= MIN_BUFFERSIZE
}

/// c-blosc's block size: from the L1 size scaled by the level (doubled for
/// the high-ratio codecs), enlarged for split codecs, never more than the
/// buffer, and a multiple of the element size.
fn block_size(o: &EncodeOptions, nbytes: usize) -> usize {
    let typesize = o.typesize;
    if nbytes < typesize {
        return 1;
    }
    let hcr = o.cname.high_ratio();
    let mut size = nbytes;
    if o.blocksize > 0 {
        size = o.blocksize.clamp(MIN_BUFFERSIZE, MAX_BLOCKSIZE);
    } else if nbytes >= L1 {
        size = if hcr { 2 * L1 } else { L1 };
        size = match o.clevel {
            0 => size / 4,
            1 => size / 2,
            2 => size,
            3 => size * 2,
            4 | 5 => size * 4,
            6..=8 => size * 8,
            _ => size * if hcr { 16 } else { 8 },
        };
    }
    if o.clevel > 0 && splits(o.cname, typesize, size) {
        size = (size.min(1 << 18) * typesize).clamp(1 << 16, 1 << 20);
    }
    size = size.min(nbytes);
    if size > typesize {
        size = size / typesize * typesize;
    }
    size
}

/// Compresses `raw` into one Blosc buffer that numcodecs and c-blosc read.
pub fn encode(raw: &[u8], o: &EncodeOptions) -> Result<Vec<u8>, String> {
    if !o.cname.writable() {
        return Err(format!(
            "blosc cname {:?} can be read but not written by rask; write lz4, zstd or zlib",
            o.cname.name()
        ));
    }
    if o.clevel > 9 {
        return Err(format!("blosc clevel {} is out of range 0-9", o.clevel));
    }
    let nbytes = raw.len();
    if nbytes > MAX_BUFFERSIZE {
        return Err(format!("blosc buffers hold at most {MAX_BUFFERSIZE} bytes, this chunk has {nbytes}"));
    }
    // c-blosc treats elements wider than a header byte as bytes.
    let typesize = if (1..=255).contains(&o.typesize) { o.typesize } else { 1 };
    let o = EncodeOptions { typesize, ..*o };
    let blocksize = block_size(&o, nbytes);
    let split = splits(o.cname, typesize, blocksize);
    let mut flags = o.cname.format_code() << 5;
    if !split {
        flags |= FLAG_DONT_SPLIT;
    }
    match o.shuffle {
        BloscShuffle::NoShuffle => {}
        BloscShuffle::Byte => flags |= FLAG_SHUFFLE,
        BloscShuffle::Bit => flags |= FLAG_BITSHUFFLE,
    }
    let header = |flags: u8, cbytes: usize| -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER);
        h.extend_from_slice(&[2, 1, flags, typesize as u8]);
        for v in [nbytes, blocksize, cbytes] {
            h.extend_from_slice(&(v as u32).to_le_bytes());
        }
        h
    };
    let memcpyed = || {
        let mut out = header(flags | FLAG_MEMCPYED, nbytes + HEADER);
        out.extend_from_slice(raw);
        out
    };
    if o.clevel == 0 || nbytes < MIN_BUFFERSIZE {
        return Ok(memcpyed());
    }
    let nblocks = nbytes.div_ceil(blocksize);
    let mut out = header(flags, 0);
    out.resize(HEADER + 4 * nblocks, 0);
    let mut filtered = vec![0u8; blocksize];
    for (j, block) in raw.chunks(blocksize).enumerate() {
        let start = u32::try_from(out.len()).map_err(|_| "blosc buffer past 4 GiB".to_string())?;
        out[HEADER + 4 * j..HEADER + 4 * j + 4].copy_from_slice(&start.to_le_bytes());
        let bsize = block.len();
        let filtered = &mut filtered[..bsize];
        let data: &[u8] = match o.shuffle {
            BloscShuffle::Byte if typesize > 1 => {
                byte_shuffle(block, typesize, filtered);
                filtered
            }
            BloscShuffle::Bit if bsize >= typesize => {
                bit_shuffle(block, typesize, filtered);
                filtered
            }
            _ => block,
        };
        let nsplits = if split && bsize == blocksize { typesize } else { 1 };
        for stream in data.chunks_exact(bsize / nsplits) {
            let packed = compress(o.cname, o.clevel, stream)?;
            // A stream as long as its data reads as stored raw, so a
            // compressed one must be strictly shorter.
            let body = if packed.len() < stream.len() { &packed[..] } else { stream };
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
        }
        if out.len() > nbytes + HEADER {
            // Incompressible: c-blosc stores such buffers raw.
            return Ok(memcpyed());
        }
    }
    let cbytes = out.len() as u32;
    out[12..16].copy_from_slice(&cbytes.to_le_bytes());
    Ok(out)
}

/// Compresses one stream with the inner compressor.
fn compress(cname: BloscCname, clevel: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    match cname {
        BloscCname::Lz4 => {
            let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(data.len())];
            let n = lz4_flex::block::compress_into(data, &mut out).map_err(|e| format!("blosc lz4: {e}"))?;
            out.truncate(n);
            Ok(out)
        }
        BloscCname::Zlib => {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(u32::from(clevel)));
            e.write_all(data).and_then(|()| e.finish()).map_err(|e| format!("blosc zlib: {e}"))
        }
        BloscCname::Zstd => {
            // c-blosc's mapping of its levels 1-9 onto zstd's 1-22.
            let level = match clevel {
                0..=7 => 2 * i32::from(clevel) - 1,
                8 => 20,
                _ => 22,
            };
            zstd::bulk::compress(data, level).map_err(|e| format!("blosc zstd: {e}"))
        }
        BloscCname::BloscLz | BloscCname::Lz4Hc => Err(format!("blosc cname {:?} cannot be written", cname.name())),
    }
}

/// The header fields, as read.
struct Header {
    flags: u8,
    typesize: usize,
    nbytes: usize,
    blocksize: usize,
    cbytes: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

fn read_header(stored: &[u8]) -> Result<Header, String> {
    if stored.len() < HEADER {
        return Err(format!("blosc: {} bytes is shorter than the 16-byte header", stored.len()));
    }
    let field = |at| u32_at(stored, at).ok_or_else(|| "blosc: header cut short".to_string());
    let h = Header {
        flags: stored[2],
        typesize: usize::from(stored[3]),
        nbytes: field(4)?,
        blocksize: field(8)?,
        cbytes: field(12)?,
    };
    let version = stored[0];
    if !(1..=2).contains(&version) {
        return Err(format!("blosc: format version {version} is not supported (Blosc 1 writes 1 or 2)"));
    }
    if h.flags & FLAG_RESERVED != 0 {
        return Err("blosc: reserved flag bit 3 is set".into());
    }
    if h.cbytes < HEADER || h.cbytes > stored.len() {
        return Err(format!(
            "blosc: header says the buffer holds {} bytes, but {} bytes were stored",
            h.cbytes,
            stored.len()
        ));
    }
    Ok(h)
}

/// Decompresses one Blosc buffer that must decode to exactly `want` bytes;
/// never allocates more than `want` (plus a block of scratch no larger).
pub fn decode(stored: &[u8], want: usize) -> Result<Vec<u8>, String> {
    let h = read_header(stored)?;
    if h.nbytes != want {
        return Err(format!("blosc: header says {} bytes once decoded, expected {want}", h.nbytes));
    }
    // Only the first `cbytes` belong to the buffer.
    let buf = &stored[..h.cbytes];
    if want == 0 {
        return Ok(Vec::new());
    }
    if h.typesize == 0 {
        return Err("blosc: typesize is 0".into());
    }
    if h.blocksize == 0 || h.blocksize > want {
        return Err(format!("blosc: block size {} does not fit a {want}-byte buffer", h.blocksize));
    }
    if h.flags & FLAG_MEMCPYED != 0 {
        if h.cbytes != want + HEADER {
            return Err(format!(
                "blosc: stored raw, but {} bytes follow the header, expected {want}",
                h.cbytes - HEADER
            ));
        }
        return Ok(buf[HEADER..].to_vec());
    }
    let inner = match h.flags >> 5 {
        0 => Inner::BloscLz,
        1 => Inner::Lz4,
        2 => return Err("blosc: chunk is compressed with snappy, which is not supported".into()),
        3 => Inner::Zlib,
        4 => Inner::Zstd,
        code => return Err(format!("blosc: unknown compressor code {code}")),
    };
    let nblocks = want.div_ceil(h.blocksize);
    if nblocks > (h.cbytes - HEADER) / 4 {
        return Err(format!("blosc: {} bytes cannot hold the offsets of {nblocks} blocks", h.cbytes));
    }
    let mut out = vec![0u8; want];
    let mut scratch = vec![0u8; h.blocksize];
    for (j, dest) in out.chunks_mut(h.blocksize).enumerate() {
        let start = u32_at(buf, HEADER + 4 * j).ok_or("blosc: block offsets cut short")?;
        decode_block(buf, &h, inner, start, dest, &mut scratch).map_err(|e| format!("blosc: block {j}: {e}"))?;
    }
    Ok(out)
}

/// Blosc's inner decoders, by the header's compressor code.
#[derive(Clone, Copy)]
enum Inner {
    BloscLz,
    Lz4,
    Zlib,
    Zstd,
}

/// Decodes the block whose streams start at `start` into `dest` (its
/// decoded length), undoing the shuffle.
fn decode_block(
    buf: &[u8],
    h: &Header,
    inner: Inner,
    start: usize,
    dest: &mut [u8],
    scratch: &mut [u8],
) -> Result<(), String> {
    let bsize = dest.len();
    let typesize = h.typesize;
    let last_short = bsize < h.blocksize;
    let byte = h.flags & FLAG_SHUFFLE != 0 && typesize > 1;
    let bit = !byte && h.flags & FLAG_BITSHUFFLE != 0 && bsize >= typesize;
    let split =
        h.flags & FLAG_DONT_SPLIT == 0 && typesize <= MAX_SPLITS && bsize / typesize >= MIN_BUFFERSIZE && !last_short;
    let nsplits = if split { typesize } else { 1 };
    if !bsize.is_multiple_of(nsplits) {
        return Err(format!("{bsize} bytes do not split into {nsplits} streams"));
    }
    let target: &mut [u8] = if byte || bit { &mut scratch[..bsize] } else { &mut *dest };
    let mut at = start;
    for (k, part) in target.chunks_exact_mut(bsize / nsplits).enumerate() {
        let size =
            u32_at(buf, at).ok_or_else(|| format!("stream {k}: size at offset {at} is past the buffer's end"))?;
        let size = i32::try_from(size).map_err(|_| format!("stream {k}: negative size"))?;
        let size = usize::try_from(size).map_err(|_| format!("stream {k}: negative size"))?;
        let body = buf
            .get(at + 4..)
            .and_then(|rest| rest.get(..size))
            .ok_or_else(|| format!("stream {k}: {size} bytes at offset {} run past the buffer's end", at + 4))?;
        at += 4 + size;
        if size == part.len() {
            part.copy_from_slice(body);
            continue;
        }
        match inner {
            Inner::BloscLz => blosclz_decode(body, part),
            Inner::Lz4 => lz4_decode(body, part),
            Inner::Zlib => zlib_decode(body, part),
            Inner::Zstd => zstd_decode(body, part),
        }
        .map_err(|e| format!("stream {k}: {e}"))?;
    }
    if byte {
        byte_unshuffle(&scratch[..bsize], typesize, dest);
    } else if bit {
        bit_unshuffle(&scratch[..bsize], typesize, dest);
    }
    Ok(())
}

fn lz4_decode(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let n = lz4_flex::block::decompress_into(src, dst).map_err(|e| format!("lz4: {e}"))?;
    if n != dst.len() {
        return Err(format!("lz4: {n} bytes decoded, expected {}", dst.len()));
    }
    Ok(())
}

fn zlib_decode(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let mut z = flate2::Decompress::new(true);
    match z.decompress(src, dst, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if z.total_out() == dst.len() as u64 => Ok(()),
        Ok(flate2::Status::StreamEnd) => Err(format!("zlib: {} bytes decoded, expected {}", z.total_out(), dst.len())),
        Ok(_) => Err(format!("zlib: stream truncated or longer than {} bytes", dst.len())),
        Err(e) => Err(format!("zlib: {e}")),
    }
}

fn zstd_decode(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let n = zstd::bulk::decompress_to_buffer(src, dst).map_err(|e| format!("zstd: {e}"))?;
    if n != dst.len() {
        return Err(format!("zstd: {n} bytes decoded, expected {}", dst.len()));
    }
    Ok(())
}

/// Distances past this one use BloscLZ's 16-bit "far" encoding.
const BLOSCLZ_MAX_DISTANCE: usize = 8191;

/// Decodes one BloscLZ stream (FastLZ level 1's format, as c-blosc extends
/// it) into `dst`, which it must fill exactly.
///
/// The stream is a list of instructions, each starting with a control
/// byte; the first instruction is a literal run and only the low 5 bits of
/// its control byte count:
/// - control < 32: a literal run of `control + 1` bytes follows.
/// - otherwise a match: the top 3 bits give the length minus 2 (7 means
///   "more": bytes follow, each added, until one below 255), then one byte
///   `code` completes the distance: `(control & 31) * 256 + code + 1`.
///   When the high part is 31 and `code` is 255, two big-endian bytes give
///   a far distance: their value + 8192. The match copies `length + 2`
///   bytes from `distance` back in the output, overlapping forward.
fn blosclz_decode(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let Some((&first, _)) = src.split_first() else {
        return Err("blosclz: empty stream".into());
    };
    let mut ip = 1;
    let mut op = 0;
    let mut ctrl = usize::from(first & 31);
    let next = |ip: &mut usize| -> Result<usize, String> {
        let b = src.get(*ip).ok_or("blosclz: stream ends inside a match")?;
        *ip += 1;
        Ok(usize::from(*b))
    };
    loop {
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = src.get(ip..ip + run).ok_or("blosclz: literal run past the stream's end")?;
            let to = dst.get_mut(op..op + run).ok_or("blosclz: literal run past the expected size")?;
            to.copy_from_slice(lit);
            ip += run;
            op += run;
        } else {
            let mut len = (ctrl >> 5) - 1;
            if len == 6 {
                loop {
                    let more = next(&mut ip)?;
                    len = len.saturating_add(more);
                    if more != 255 {
                        break;
                    }
                }
            }
            len += 3;
            let high = (ctrl & 31) << 8;
            let code = next(&mut ip)?;
            let distance = if code == 255 && high == 31 << 8 {
                let far = (next(&mut ip)? << 8) | next(&mut ip)?;
                far + BLOSCLZ_MAX_DISTANCE + 1
            } else {
                high + code + 1
            };
            if distance > op {
                return Err(format!("blosclz: match {distance} bytes back at output offset {op}"));
            }
            if len > dst.len() - op {
                return Err("blosclz: match past the expected size".into());
            }
            copy_match(dst, op, distance, len);
            op += len;
        }
        match src.get(ip) {
            Some(&c) => {
                ctrl = usize::from(c);
                ip += 1;
            }
            None => break,
        }
    }
    if op != dst.len() {
        return Err(format!("blosclz: {op} bytes decoded, expected {}", dst.len()));
    }
    Ok(())
}

/// Copies `len` bytes from `distance` back to `op`; when they overlap, the
/// copy repeats the last `distance` bytes, as LZ77 means. The caller has
/// checked `distance <= op` and `op + len <= buf.len()`.
fn copy_match(buf: &mut [u8], op: usize, distance: usize, len: usize) {
    let from = op - distance;
    let mut done = 0;
    while done < len {
        // [from, op + done) repeats with period `distance`, and its length
        // is a multiple of it, so it can be copied onward as one piece.
        let n = (len - done).min(op + done - from);
        buf.copy_within(from..from + n, op + done);
        done += n;
    }
}

/// Byte shuffle: byte `j` of element `i` goes to `j * n + i`; trailing bytes
/// past the last whole element are copied as they are.
fn byte_shuffle(src: &[u8], typesize: usize, dst: &mut [u8]) {
    let n = src.len() / typesize;
    for (i, elem) in src.chunks_exact(typesize).enumerate() {
        for (j, &b) in elem.iter().enumerate() {
            dst[j * n + i] = b;
        }
    }
    dst[n * typesize..].copy_from_slice(&src[n * typesize..]);
}

/// Inverse of [`byte_shuffle`].
fn byte_unshuffle(src: &[u8], typesize: usize, dst: &mut [u8]) {
    let n = src.len() / typesize;
    for (i, elem) in dst.chunks_exact_mut(typesize).enumerate() {
        for (j, b) in elem.iter_mut().enumerate() {
            *b = src[j * n + i];
        }
    }
    dst[n * typesize..].copy_from_slice(&src[n * typesize..]);
}

/// Transposes an 8×8 bit matrix held in a u64 (byte `r` is row `r`, bit
/// `c` of it column `c`): bit `c` of byte `r` moves to bit `r` of byte `c`.
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Bit shuffle of a block of `n` elements: bit `k` of byte `j` of element
/// `8g + m` goes to bit `m` of byte `(8j + k) * n/8 + g`. Only blocks of a
/// multiple of 8 elements are shuffled (trailing bytes past the last whole
/// element stay in place); other blocks are copied unchanged.
fn bit_shuffle(src: &[u8], typesize: usize, dst: &mut [u8]) {
    bit_transpose(src, typesize, dst, false);
}

/// Inverse of [`bit_shuffle`].
fn bit_unshuffle(src: &[u8], typesize: usize, dst: &mut [u8]) {
    bit_transpose(src, typesize, dst, true);
}

fn bit_transpose(src: &[u8], typesize: usize, dst: &mut [u8], inverse: bool) {
    let n = src.len() / typesize;
    if !n.is_multiple_of(8) {
        dst.copy_from_slice(src);
        return;
    }
    let rows = n / 8;
    for g in 0..rows {
        for j in 0..typesize {
            let mut x = [0u8; 8];
            for (m, b) in x.iter_mut().enumerate() {
                *b = if inverse { src[(8 * j + m) * rows + g] } else { src[(8 * g + m) * typesize + j] };
            }
            let y = transpose8(u64::from_le_bytes(x)).to_le_bytes();
            for (k, &b) in y.iter().enumerate() {
                if inverse {
                    dst[(8 * g + k) * typesize + j] = b;
                } else {
                    dst[(8 * j + k) * rows + g] = b;
                }
            }
        }
    }
    dst[n * typesize..].copy_from_slice(&src[n * typesize..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WRITABLE: [BloscCname; 3] = [BloscCname::Lz4, BloscCname::Zlib, BloscCname::Zstd];
    const SHUFFLES: [BloscShuffle; 3] = [BloscShuffle::NoShuffle, BloscShuffle::Byte, BloscShuffle::Bit];

    fn options(cname: BloscCname, shuffle: BloscShuffle, typesize: usize) -> EncodeOptions {
        EncodeOptions { cname, clevel: 5, shuffle, typesize, blocksize: 0 }
    }

    /// Compressible but not trivial: a slow ramp of `typesize`-byte values
    /// with a noisy low byte.
    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| if i % 4 == 0 { (i.wrapping_mul(2_654_435_761) >> 13) as u8 } else { (i / 4096) as u8 })
            .collect()
    }

    fn set_u32(buf: &mut [u8], at: usize, v: u32) {
        buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// A test-only BloscLZ encoder: greedy, trying a fixed set of
    /// distances (near and far), so the decoder's every instruction kind
    /// can be exercised without c-blosc.
    fn blosclz_encode(data: &[u8]) -> Vec<u8> {
        fn flush(out: &mut Vec<u8>, lit: &[u8]) {
            for run in lit.chunks(32) {
                out.push(run.len() as u8 - 1);
                out.extend_from_slice(run);
            }
        }
        let mut out = Vec::new();
        let (mut i, mut lit_start) = (0, 0);
        while i < data.len() {
            let best = [1usize, 2, 3, 4, 7, 8, 16, 255, 256, 257, 8191, 8192, 8193, 9000, 70_000, 73_726]
                .into_iter()
                .filter(|&d| d <= i)
                .map(|d| (d, (0..data.len() - i).take_while(|&k| data[i + k] == data[i + k - d]).count()))
                .max_by_key(|&(_, len)| len);
            // The first instruction must be a literal run.
            let Some((d, len)) = best.filter(|&(_, len)| len >= 3 && i > 0) else {
                i += 1;
                continue;
            };
            flush(&mut out, &data[lit_start..i]);
            let top = if len <= 8 { len - 2 } else { 7 };
            let far = d > BLOSCLZ_MAX_DISTANCE;
            let high = if far { 31 } else { (d - 1) >> 8 };
            out.push((top << 5 | high) as u8);
            if top == 7 {
                let mut rest = len - 9;
                while rest >= 255 {
                    out.push(255);
                    rest -= 255;
                }
                out.push(rest as u8);
            }
            if far {
                let f = d - BLOSCLZ_MAX_DISTANCE - 1;
                out.extend_from_slice(&[255, (f >> 8) as u8, f as u8]);
            } else {
                out.push(((d - 1) & 255) as u8);
            }
            i += len;
            lit_start = i;
        }
        flush(&mut out, &data[lit_start..]);
        out
    }

    #[test]
    fn transpose8_moves_each_bit() {
        for seed in [0u64, 1, 0x8000_0000_0000_0000, 0x0123_4567_89AB_CDEF, u64::MAX, 0xDEAD_BEEF_F00D_CAFE] {
            let t = transpose8(seed);
            for r in 0..8 {
                for c in 0..8 {
                    assert_eq!((seed >> (8 * r + c)) & 1, (t >> (8 * c + r)) & 1, "{seed:#x} r{r} c{c}");
                }
            }
        }
    }

    #[test]
    fn shuffles_follow_the_layout_and_invert() {
        // Byte shuffle: byte j of element i at j*n + i, the tail in place.
        let src: Vec<u8> = (0..11).collect();
        let mut dst = vec![0; 11];
        byte_shuffle(&src, 3, &mut dst);
        assert_eq!(dst, [0, 3, 6, 1, 4, 7, 2, 5, 8, 9, 10]);
        let mut back = vec![0; 11];
        byte_unshuffle(&dst, 3, &mut back);
        assert_eq!(back, src);
        // Bit shuffle: bit k of byte j of element 8g+m at bit m of byte
        // (8j+k)*n/8 + g, checked bit by bit; the bytes past the last whole
        // element stay in place.
        for typesize in [1usize, 2, 3, 4, 8] {
            let n = 24;
            let src = sample(n * typesize + typesize - 1);
            let mut dst = vec![0; src.len()];
            bit_shuffle(&src, typesize, &mut dst);
            for e in 0..n {
                for j in 0..typesize {
                    for k in 0..8 {
                        let bit = (src[e * typesize + j] >> k) & 1;
                        let at = (8 * j + k) * (n / 8) + e / 8;
                        assert_eq!((dst[at] >> (e % 8)) & 1, bit, "typesize {typesize} element {e} byte {j} bit {k}");
                    }
                }
            }
            assert_eq!(dst[n * typesize..], src[n * typesize..]);
            let mut back = vec![0; src.len()];
            bit_unshuffle(&dst, typesize, &mut back);
            assert_eq!(back, src);
        }
        // Not a multiple of 8 elements: left as it is.
        let src = sample(20);
        let mut dst = vec![0; 20];
        bit_shuffle(&src, 2, &mut dst);
        assert_eq!(dst, src);
    }

    #[test]
    fn round_trips_every_writable_cname_shuffle_and_typesize() {
        for n in [0usize, 1, 100, 127, 128, 1000, 70_001, 300_000] {
            let raw = sample(n);
            for cname in WRITABLE {
                for shuffle in SHUFFLES {
                    for typesize in [1usize, 2, 3, 4, 8, 16, 17] {
                        let o = options(cname, shuffle, typesize);
                        let stored = encode(&raw, &o).expect("encode");
                        assert_eq!(u32_at(&stored, 12), Some(stored.len()), "cbytes");
                        assert_eq!(decode(&stored, n).expect("decode"), raw, "{o:?} n={n}");
                    }
                }
            }
        }
    }

    #[test]
    fn header_records_what_c_blosc_would() {
        // lz4 at level 5 on 1 MB of 4-byte elements: 128 KiB blocks scaled
        // by the element size (split), i.e. 512 KiB, shuffled, lz4 code 1.
        let raw = sample(1 << 20);
        let stored = encode(&raw, &options(BloscCname::Lz4, BloscShuffle::Byte, 4)).expect("encode");
        assert_eq!(&stored[..4], &[2, 1, 0x20 | FLAG_SHUFFLE, 4]);
        assert_eq!(u32_at(&stored, 4), Some(1 << 20));
        assert_eq!(u32_at(&stored, 8), Some(512 * 1024));
        // zstd never splits and doubles the L1-based size: 256 KiB.
        let stored = encode(&raw, &options(BloscCname::Zstd, BloscShuffle::Bit, 8)).expect("encode");
        assert_eq!(stored[2], 0x80 | FLAG_DONT_SPLIT | FLAG_BITSHUFFLE);
        assert_eq!(u32_at(&stored, 8), Some(256 * 1024));
        // A forced block size is kept (as a multiple of the element size).
        let o = EncodeOptions { blocksize: 1000, ..options(BloscCname::Zstd, BloscShuffle::Byte, 3) };
        let stored = encode(&raw, &o).expect("encode");
        assert_eq!(u32_at(&stored, 8), Some(999));
        assert_eq!(decode(&stored, raw.len()).expect("decode"), raw);
        // Level 0, tiny buffers and incompressible data are stored raw.
        let o = EncodeOptions { clevel: 0, ..options(BloscCname::Lz4, BloscShuffle::Byte, 4) };
        let stored = encode(&raw, &o).expect("encode");
        assert_eq!(stored[2] & FLAG_MEMCPYED, FLAG_MEMCPYED);
        assert_eq!(stored.len(), raw.len() + HEADER);
        let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let stored = encode(&noise, &options(BloscCname::Lz4, BloscShuffle::NoShuffle, 1)).expect("encode");
        assert!(stored.len() <= noise.len() + HEADER);
        assert_eq!(decode(&stored, noise.len()).expect("decode"), noise);
    }

    #[test]
    fn read_only_cnames_and_bad_levels_are_refused_on_write() {
        for cname in [BloscCname::BloscLz, BloscCname::Lz4Hc] {
            let e = encode(&[0; 1000], &options(cname, BloscShuffle::Byte, 4)).expect_err("read only");
            assert!(e.contains(cname.name()), "{e}");
        }
        let e = encode(&[0; 1000], &EncodeOptions { clevel: 10, ..options(BloscCname::Lz4, BloscShuffle::Byte, 4) });
        assert!(e.expect_err("level").contains("clevel"));
        assert!(BloscCname::parse("snappy").expect_err("snappy").contains("snappy"));
        assert!(BloscCname::parse("brotli").expect_err("brotli").contains("brotli"));
        assert_eq!(BloscCname::parse("lz4hc"), Ok(BloscCname::Lz4Hc));
    }

    #[test]
    fn corrupt_and_truncated_buffers_are_named_errors() {
        let raw = sample(50_000);
        // zstd keeps the forced block size (split codecs enlarge it): 13 blocks.
        let o = EncodeOptions { blocksize: 4096, ..options(BloscCname::Zstd, BloscShuffle::Byte, 4) };
        let good = encode(&raw, &o).expect("encode");
        assert_eq!(u32_at(&good, 8), Some(4096));
        assert_eq!(decode(&good, raw.len()).expect("decode"), raw);
        let err = |buf: &[u8], want: usize| decode(buf, want).expect_err("corrupt");
        // Every truncation fails; a few say why.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], raw.len()).is_err(), "cut at {cut}");
        }
        assert!(err(&good[..10], raw.len()).contains("16-byte header"));
        assert!(err(&good[..good.len() - 1], raw.len()).contains("header says the buffer holds"));
        // The chunk's expected size bounds everything.
        assert!(err(&good, raw.len() - 1).contains(&format!("expected {}", raw.len() - 1)));
        let tamper = |at: usize, value: u8| {
            let mut b = good.clone();
            b[at] = value;
            b
        };
        assert!(err(&tamper(0, 3), raw.len()).contains("version 3"));
        assert!(err(&tamper(2, good[2] | FLAG_RESERVED), raw.len()).contains("reserved"));
        assert!(err(&tamper(2, (good[2] & 0x1f) | 2 << 5), raw.len()).contains("snappy"));
        assert!(err(&tamper(2, (good[2] & 0x1f) | 7 << 5), raw.len()).contains("compressor code 7"));
        assert!(err(&tamper(3, 0), raw.len()).contains("typesize"));
        let mut b = good.clone();
        set_u32(&mut b, 8, 0);
        assert!(err(&b, raw.len()).contains("block size 0"));
        set_u32(&mut b, 8, raw.len() as u32 + 1);
        assert!(err(&b, raw.len()).contains("block size"));
        // Too few bytes for the offsets of 1-byte blocks.
        set_u32(&mut b, 8, 1);
        assert!(err(&b, raw.len()).contains("offsets"));
        // A block offset past the end, a negative or overlong stream size.
        let mut b = good.clone();
        set_u32(&mut b, HEADER + 4, good.len() as u32 - 2);
        assert!(err(&b, raw.len()).contains("block 1"), "{}", err(&b, raw.len()));
        let first = u32_at(&good, HEADER).expect("offset");
        let mut b = good.clone();
        set_u32(&mut b, first, u32::MAX);
        assert!(err(&b, raw.len()).contains("negative"));
        set_u32(&mut b, first, good.len() as u32);
        assert!(err(&b, raw.len()).contains("past the buffer"));
        // A compressed stream that decodes short is refused.
        let mut b = good.clone();
        set_u32(&mut b, first, 5);
        assert!(decode(&b, raw.len()).is_err());
        // Stored raw, but with the wrong size.
        let mut b = encode(&raw[..100], &o).expect("memcpy");
        assert_eq!(b[2] & FLAG_MEMCPYED, FLAG_MEMCPYED);
        b.push(0);
        set_u32(&mut b, 12, 117);
        assert!(err(&b, 100).contains("stored raw"));
        // An empty buffer decodes only to nothing.
        let empty = encode(&[], &o).expect("empty");
        assert_eq!(decode(&empty, 0).expect("empty"), Vec::<u8>::new());
        assert!(decode(&empty, 1).is_err());
    }

    #[test]
    fn blosclz_decodes_every_instruction_kind() {
        // Literals, a run (distance 1), an overlapping match, a near match
        // with a length extension, and a far match.
        let noise = |n: u32| (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 23) as u8).collect::<Vec<_>>();
        let copy = |data: &mut Vec<u8>, distance: usize, len: usize| {
            for _ in 0..len {
                data.push(data[data.len() - distance]);
            }
        };
        let mut data = b"abcdefgh".to_vec();
        data.extend(std::iter::repeat_n(b'h', 40));
        data.extend_from_slice(b"xyxyxyxyxy");
        data.extend(noise(9000));
        copy(&mut data, 8193, 600);
        copy(&mut data, 256, 300);
        data.extend(noise(70_000));
        copy(&mut data, 70_000, 5);
        copy(&mut data, 8191, 1000);
        let stream = blosclz_encode(&data);
        let literals_only = data.len() + data.len().div_ceil(32);
        assert!(stream.len() + 1500 < literals_only, "the test encoder found the matches");
        let mut out = vec![0; data.len()];
        blosclz_decode(&stream, &mut out).expect("decode");
        assert_eq!(out, data);
        // Hand-made: "ab" then a match of 5 at distance 2 gives "abababa".
        let mut out = [0; 7];
        blosclz_decode(&[1, b'a', b'b', 3 << 5, 1], &mut out).expect("decode");
        assert_eq!(&out, b"abababa");
        // Errors: too far back, past the expected size, cut short, empty,
        // or ending early.
        let mut out = [0; 7];
        assert!(blosclz_decode(&[1, b'a', b'b', 3 << 5, 2], &mut out).expect_err("far").contains("back"));
        let mut out = [0; 6];
        assert!(blosclz_decode(&[1, b'a', b'b', 3 << 5, 1], &mut out).expect_err("long").contains("expected size"));
        let mut out = [0; 7];
        assert!(blosclz_decode(&[1, b'a', b'b', 3 << 5], &mut out).expect_err("cut").contains("ends inside"));
        assert!(blosclz_decode(&[1, b'a'], &mut out).expect_err("literal").contains("literal"));
        assert!(blosclz_decode(&[], &mut out).expect_err("empty").contains("empty"));
        assert!(blosclz_decode(&[1, b'a', b'b'], &mut out).expect_err("short").contains("2 bytes decoded"));
    }

    #[test]
    fn blosclz_blocks_read_inside_the_container() {
        // A hand-built split container (typesize 2, 512-byte blocks): two
        // full blocks of two BloscLZ streams each, and a short last block.
        let raw = sample(1100);
        let (typesize, blocksize) = (2usize, 512usize);
        let mut buf = vec![2, 1, FLAG_SHUFFLE, typesize as u8];
        for v in [raw.len(), blocksize, 0] {
            buf.extend_from_slice(&(v as u32).to_le_bytes());
        }
        buf.resize(HEADER + 3 * 4, 0);
        for (j, block) in raw.chunks(blocksize).enumerate() {
            let start = buf.len() as u32;
            set_u32(&mut buf, HEADER + 4 * j, start);
            let mut shuffled = vec![0; block.len()];
            byte_shuffle(block, typesize, &mut shuffled);
            let nsplits = if block.len() == blocksize { typesize } else { 1 };
            for stream in shuffled.chunks(block.len() / nsplits) {
                let packed = blosclz_encode(stream);
                let body = if packed.len() < stream.len() { &packed } else { stream };
                buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
                buf.extend_from_slice(body);
            }
        }
        let cbytes = buf.len() as u32;
        set_u32(&mut buf, 12, cbytes);
        assert_eq!(decode(&buf, raw.len()).expect("decode"), raw);
    }

    fn cname() -> impl Strategy<Value = BloscCname> {
        prop::sample::select(WRITABLE.to_vec())
    }

    fn shuffle() -> impl Strategy<Value = BloscShuffle> {
        prop::sample::select(SHUFFLES.to_vec())
    }

    /// Bytes from runs of repeated and random values, so both compressed
    /// and raw streams occur.
    fn data() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec((any::<u8>(), 1usize..300, any::<bool>()), 0..40).prop_map(|runs| {
            let mut v = Vec::new();
            for (b, n, repeat) in runs {
                v.extend((0..n).map(|i| if repeat { b } else { b.wrapping_mul(i as u8).wrapping_add(i as u8 >> 3) }));
            }
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn encode_decode_round_trips(
            raw in data(), cname in cname(), shuffle in shuffle(),
            typesize in prop::sample::select(vec![1usize, 2, 3, 4, 8, 16, 17]),
            blocksize in prop::sample::select(vec![0usize, 128, 200, 1024]), clevel in 0u8..=9,
        ) {
            let o = EncodeOptions { cname, clevel, shuffle, typesize, blocksize };
            let stored = encode(&raw, &o).expect("encode");
            prop_assert_eq!(decode(&stored, raw.len()).expect("decode"), raw);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), want in 0usize..3000) {
            let _ = decode(&bytes, want);
        }

        #[test]
        fn random_bodies_behind_a_plausible_header_never_panic(
            flags in any::<u8>(), typesize in 0u8..20, want in 1usize..2000, blocksize in 1usize..2100,
            body in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut buf = vec![2, 1, flags & !FLAG_RESERVED, typesize];
            for v in [want, blocksize, HEADER + body.len()] {
                buf.extend_from_slice(&(v as u32).to_le_bytes());
            }
            buf.extend_from_slice(&body);
            if let Ok(out) = decode(&buf, want) {
                prop_assert_eq!(out.len(), want);
            }
        }

        #[test]
        fn damaged_buffers_never_panic(
            raw in data(), cname in cname(), shuffle in shuffle(),
            hits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let o = EncodeOptions { blocksize: 256, ..options(cname, shuffle, 4) };
            let mut stored = encode(&raw, &o).expect("encode");
            for (at, value) in hits {
                let i = at.index(stored.len());
                stored[i] = value;
            }
            if let Ok(out) = decode(&stored, raw.len()) {
                prop_assert_eq!(out.len(), raw.len());
            }
            let end = cut.index(stored.len());
            let _ = decode(&stored[..end], raw.len());
        }

        #[test]
        fn blosclz_round_trips_and_never_panics(raw in data(), junk in prop::collection::vec(any::<u8>(), 0..300)) {
            let stream = blosclz_encode(&raw);
            let mut out = vec![0; raw.len()];
            if raw.is_empty() {
                prop_assert!(blosclz_decode(&stream, &mut out).is_err());
            } else {
                blosclz_decode(&stream, &mut out).expect("decode");
                prop_assert_eq!(&out, &raw);
            }
            let mut out = vec![0; raw.len()];
            let _ = blosclz_decode(&junk, &mut out);
        }
    }
}
