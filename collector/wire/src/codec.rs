//! Encoding and decoding records: the packed forms of the hot records (allocations, frees,
//! stack changes) written and read by hand, the others through their layouts
//! ([`crate::layout`]); record lengths from the tag alone; a stream [`Decoder`].

use crate::layout;
use crate::record::tags::*;
use crate::record::{AllocKind, Header, Record, KINDS, MAX_RECORD_LEN};
use crate::WireError;

const PACKED_ADDRESS: u64 = (1 << 48) - 1;
const PACKED_SIZE_LIMIT: u64 = 1 << 13;
const _: () = assert!(KINDS <= 8, "kinds fit in 3 bits");

/// Whether an allocation of `size` bytes (0 for a free) at `address` takes a packed record.
#[inline(always)]
fn packs(address: u64, size: u64) -> bool {
    address <= PACKED_ADDRESS && size < PACKED_SIZE_LIMIT
}

/// Payload bytes of a fixed-size record, by tag (`None`: unknown or variable-size).
const fn fixed_payload(tag: u8) -> Option<usize> {
    Some(match tag {
        TAG_HELLO => 4 + 4 + 1 + 1 + 1 + 8 + 1,
        TAG_STRETCH => 12,
        TAG_SEQ => 20,
        TAG_PUSH => 8,
        TAG_POP => 4,
        TAG_LINE => 4,
        TAG_GC => 25,
        TAG_STOP => 0,
        TAG_CENSUS_END => 20,
        TAG_ALLOC_PACKED => 8,
        TAG_FREE_PACKED => 7,
        t if t >= TAG_ALLOC && t < TAG_ALLOC + KINDS => 16,
        t if t >= TAG_FREE && t < TAG_FREE + KINDS => 8,
        TAG_RESIDENT => 16,
        TAG_RECREATE => 8,
        TAG_NATIVE_FRAME => 16,
        TAG_NATIVE_STACK => 4,
        _ => return None,
    })
}

/// Whole length of each fixed-size record by tag, 0 for the others: the drain finds where
/// each of tens of millions of records ends with one load, not a branch on the tag.
const FIXED_LEN: [u8; 256] = {
    let mut lens = [0u8; 256];
    let mut tag = 0;
    while tag < 256 {
        if let Some(n) = fixed_payload(tag as u8) {
            lens[tag] = 1 + n as u8;
        }
        tag += 1;
    }
    lens
};

impl Record<'_> {
    #[inline]
    fn tag(&self) -> u8 {
        match self {
            Record::Hello(_) => TAG_HELLO,
            Record::Stretch(_) => TAG_STRETCH,
            Record::Seq { .. } => TAG_SEQ,
            Record::ThreadStart { .. } => TAG_THREAD_START,
            Record::ThreadName { .. } => TAG_THREAD_NAME,
            Record::Code { .. } => TAG_CODE,
            Record::Push { .. } => TAG_PUSH,
            Record::Pop { .. } => TAG_POP,
            Record::Line { .. } => TAG_LINE,
            Record::Alloc { kind, .. } => TAG_ALLOC + *kind as u8,
            Record::Free { kind, .. } => TAG_FREE + *kind as u8,
            Record::Recreate { .. } => TAG_RECREATE,
            Record::Marker { .. } => TAG_MARKER,
            Record::Span { .. } => TAG_SPAN,
            Record::Gc { .. } => TAG_GC,
            Record::Stop => TAG_STOP,
            Record::Resident { .. } => TAG_RESIDENT,
            Record::CensusBegin { .. } => TAG_CENSUS_BEGIN,
            Record::CensusType(_) => TAG_CENSUS_TYPE,
            Record::CensusCache(_) => TAG_CENSUS_CACHE,
            Record::CensusEnd { .. } => TAG_CENSUS_END,
            Record::NativeModule { .. } => TAG_NATIVE_MODULE,
            Record::NativeFrame { .. } => TAG_NATIVE_FRAME,
            Record::NativeStack { .. } => TAG_NATIVE_STACK,
        }
    }

    /// Total encoded size of this record.
    #[inline(always)]
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::Push { .. } => 9,
            Record::Pop { .. } | Record::Line { .. } => 5,
            Record::Alloc { address, size, .. } => {
                if packs(*address, *size) {
                    9
                } else {
                    17
                }
            }
            Record::Free { address, .. } => {
                if packs(*address, 0) {
                    8
                } else {
                    9
                }
            }
            r => match fixed_payload(r.tag()) {
                Some(n) => 1 + n,
                None => 1 + 4 + layout::payload_len(r),
            },
        }
    }

    /// Appends the encoded record to `out` (which may grow: not for inside a hook).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoded_len(), 0);
        self.encode_into(&mut out[start..]);
    }

    /// Encodes into `out`, returning the number of bytes written, or `None` if `out`
    /// is shorter than [`Record::encoded_len`]. Never allocates. Inlined, so that a
    /// hook encoding a record it just built writes its bytes directly.
    #[inline(always)]
    pub fn encode_into(&self, out: &mut [u8]) -> Option<usize> {
        // The hot records are written without a cursor.
        match *self {
            Record::Alloc { address, size, kind } if packs(address, size) => {
                let out = out.get_mut(..9)?;
                out[0] = TAG_ALLOC_PACKED;
                let packed = address | size << 48 | (kind as u64) << 61;
                out[1..9].copy_from_slice(&packed.to_le_bytes());
                Some(9)
            }
            Record::Free { address, kind } if packs(address, 0) => {
                let out = out.get_mut(..8)?;
                let packed = (address | (kind as u64) << 48) << 8 | TAG_FREE_PACKED as u64;
                out.copy_from_slice(&packed.to_le_bytes());
                Some(8)
            }
            Record::Alloc { address, size, kind } => {
                let out = out.get_mut(..17)?;
                out[0] = TAG_ALLOC + kind as u8;
                out[1..9].copy_from_slice(&address.to_le_bytes());
                out[9..17].copy_from_slice(&size.to_le_bytes());
                Some(17)
            }
            // (Recreate: on 3.13+ at every object made again from a free list.)
            Record::Free { address, .. } | Record::Recreate { address } => {
                let out = out.get_mut(..9)?;
                out[0] = self.tag();
                out[1..9].copy_from_slice(&address.to_le_bytes());
                Some(9)
            }
            Record::Push { code, line } => {
                let out = out.get_mut(..9)?;
                out[0] = TAG_PUSH;
                out[1..5].copy_from_slice(&code.to_le_bytes());
                out[5..9].copy_from_slice(&line.to_le_bytes());
                Some(9)
            }
            Record::Line { line: v } | Record::Pop { n: v } => {
                let out = out.get_mut(..5)?;
                out[0] = self.tag();
                out[1..5].copy_from_slice(&v.to_le_bytes());
                Some(5)
            }
            _ => self.encode_other(out),
        }
    }

    fn encode_other(&self, out: &mut [u8]) -> Option<usize> {
        let total = self.encoded_len();
        let out = out.get_mut(..total)?;
        let tag = self.tag();
        out[0] = tag;
        let start = if tag >= FIRST_VARIABLE {
            out[1..5].copy_from_slice(&((total - 5) as u32).to_le_bytes());
            5
        } else {
            1
        };
        let written = layout::write_payload(self, &mut out[start..]);
        debug_assert_eq!(start + written, total);
        Some(total)
    }
}

/// The size of the record starting at `buf[0]`, read from its tag (and length field)
/// without decoding it: `Ok(None)` when `buf` is too short to tell.
#[inline]
pub fn record_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(&tag) = buf.first() else { return Ok(None) };
    let fixed = FIXED_LEN[tag as usize];
    if fixed != 0 {
        return Ok(Some(fixed as usize));
    }
    if !(FIRST_VARIABLE..=LAST_VARIABLE).contains(&tag) {
        return Err(WireError::UnknownTag(tag));
    }
    let Some(len) = buf.get(1..5) else { return Ok(None) };
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
    if len > MAX_RECORD_LEN {
        return Err(WireError::TooLong(len));
    }
    Ok(Some(5 + len as usize))
}

/// The `(seq, ticks, thread)` of a [`Record::Seq`] starting at `buf[0]`, if it is one.
#[inline]
pub fn peek_seq(buf: &[u8]) -> Option<(u64, u64, u32)> {
    if *buf.first()? != TAG_SEQ {
        return None;
    }
    let b = buf.get(1..21)?;
    Some((
        u64::from_le_bytes(b[..8].try_into().ok()?),
        u64::from_le_bytes(b[8..16].try_into().ok()?),
        u32::from_le_bytes(b[16..].try_into().ok()?),
    ))
}

/// Decodes the record at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a record (read more and retry),
/// `Ok(Some((record, bytes_used)))` otherwise.
#[inline]
pub fn decode(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, WireError> {
    let Some(total) = record_len(buf)? else { return Ok(None) };
    let Some(rec) = buf.get(..total) else { return Ok(None) };
    if let Some((hot, used)) = decode_hot(rec) {
        return Ok(Some((hot.into(), used)));
    }
    let tag = rec[0];
    // Complete, so decode_hot turned it down for its kind.
    if tag == TAG_ALLOC_PACKED {
        return Err(WireError::UnknownKind(rec[8] >> 5));
    }
    if tag == TAG_FREE_PACKED {
        return Err(WireError::UnknownKind(rec[7]));
    }
    let start = if tag >= FIRST_VARIABLE { 5 } else { 1 };
    let bad = WireError::BadLength { tag, len: (total - start) as u32 };
    let record = layout::read_payload(tag, &rec[start..]).ok_or(bad)?;
    Ok(Some((record, total)))
}

/// The records that make up nearly all of a stream, as [`decode_hot`] gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot {
    Alloc { address: u64, size: u64, kind: AllocKind },
    Free { address: u64, kind: AllocKind },
    Push { code: u32, line: u32 },
    Pop { n: u32 },
    Line { line: u32 },
    Recreate { address: u64 },
}

impl From<Hot> for Record<'_> {
    fn from(h: Hot) -> Self {
        match h {
            Hot::Alloc { address, size, kind } => Record::Alloc { address, size, kind },
            Hot::Free { address, kind } => Record::Free { address, kind },
            Hot::Push { code, line } => Record::Push { code, line },
            Hot::Pop { n } => Record::Pop { n },
            Hot::Line { line } => Record::Line { line },
            Hot::Recreate { address } => Record::Recreate { address },
        }
    }
}

/// Decodes the record at the start of `buf` if it is an allocation, a free, a push, a
/// pop, a line or a re-creation, and complete; `None` for anything else (use [`decode`] or [`Decoder`]).
/// A small value with no borrowed strings: the tight loop that replays tens of
/// millions of events keeps it in registers.
#[inline(always)]
pub fn decode_hot(buf: &[u8]) -> Option<(Hot, usize)> {
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    let tag = *buf.first()?;
    if tag == TAG_ALLOC_PACKED && buf.len() >= 9 {
        let w = word(1);
        let kind = AllocKind::from_u8((w >> 61) as u8).ok()?;
        let size = (w >> 48) & (PACKED_SIZE_LIMIT - 1);
        return Some((Hot::Alloc { address: w & PACKED_ADDRESS, size, kind }, 9));
    }
    if tag == TAG_FREE_PACKED && buf.len() >= 8 {
        let w = word(0) >> 8;
        let kind = AllocKind::from_u8((w >> 48) as u8).ok()?;
        return Some((Hot::Free { address: w & PACKED_ADDRESS, kind }, 8));
    }
    if tag.wrapping_sub(TAG_ALLOC) < KINDS && buf.len() >= 17 {
        let kind = AllocKind::from_u8(tag - TAG_ALLOC).ok()?;
        return Some((Hot::Alloc { address: word(1), size: word(9), kind }, 17));
    }
    if tag.wrapping_sub(TAG_FREE) < KINDS && buf.len() >= 9 {
        let kind = AllocKind::from_u8(tag - TAG_FREE).ok()?;
        return Some((Hot::Free { address: word(1), kind }, 9));
    }
    if tag == TAG_PUSH && buf.len() >= 9 {
        return Some((Hot::Push { code: half(1), line: half(5) }, 9));
    }
    if tag == TAG_POP && buf.len() >= 5 {
        return Some((Hot::Pop { n: half(1) }, 5));
    }
    if tag == TAG_LINE && buf.len() >= 5 {
        return Some((Hot::Line { line: half(1) }, 5));
    }
    if tag == TAG_RECREATE && buf.len() >= 9 {
        return Some((Hot::Recreate { address: word(1) }, 9));
    }
    None
}

/// Decodes a pipe stream: gives each record the time and thread of the
/// [`Record::Stretch`] before it (stretches themselves are consumed).
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    header: Header,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { header: Header { time_ns: 0, thread: u32::MAX } }
    }
}

impl Decoder {
    /// Time and thread of the records that follow (the last stretch's).
    #[inline]
    pub fn header(&self) -> Header {
        self.header
    }

    /// The next record in `buf` with its header, and the bytes used up to its end
    /// (stretches before it included); `Ok(None)` when `buf` ends inside a record.
    #[inline]
    pub fn next<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(Header, Record<'a>, usize)>, WireError> {
        let mut pos = 0;
        loop {
            let Some((rec, used)) = decode(&buf[pos..])? else { return Ok(None) };
            pos += used;
            match rec {
                Record::Stretch(h) => self.header = h,
                Record::Seq { .. } => return Err(WireError::UnknownTag(TAG_SEQ)),
                rec => return Ok(Some((self.header, rec, pos))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CensusCache, CensusType, Hello, MAX_STR_LEN, PROTOCOL};

    fn all_records() -> Vec<Record<'static>> {
        vec![
            Record::Hello(Hello {
                protocol: PROTOCOL,
                pid: 42,
                python_major: 3,
                python_minor: 11,
                native: true,
                sample_bytes: 512 * 1024,
                native_stacks: true,
            }),
            Record::Stretch(Header { time_ns: 77, thread: 3 }),
            Record::Seq { seq: 9, ticks: 123_456, thread: 2 },
            Record::ThreadStart { os_tid: 1234, name: b"MainThread" },
            Record::ThreadName { name: b"worker-1" },
            Record::Code { id: 7, first_line: 3, qualname: b"C.f", filename: b"/x/y.py" },
            Record::Push { code: 7, line: 12 },
            Record::Pop { n: 3 },
            Record::Line { line: 41 },
            Record::Alloc { address: 0xdead_beef, size: 100 << 20, kind: AllocKind::PyRaw },
            Record::Alloc { address: 1, size: 2, kind: AllocKind::PymallocArena },
            Record::Free { address: 0xdead_beef, kind: AllocKind::PymallocArena },
            Record::Free { address: 8, kind: AllocKind::PymallocObject },
            Record::Recreate { address: 0x7f00_dead_0010 },
            // Just inside and just outside the packed forms.
            Record::Alloc { address: PACKED_ADDRESS, size: 8191, kind: AllocKind::PymallocArena },
            Record::Alloc { address: PACKED_ADDRESS + 1, size: 16, kind: AllocKind::PyMem },
            Record::Alloc { address: 0x7f00_0000_0010, size: 8192, kind: AllocKind::PyMem },
            Record::Free { address: PACKED_ADDRESS, kind: AllocKind::PymallocArena },
            Record::Alloc { address: 0x7f00_0000_0000, size: 32 << 20, kind: AllocKind::Reserved },
            Record::Alloc { address: 0x7f00_0000_1000, size: 4096, kind: AllocKind::Reserved },
            Record::Free { address: 0x7f00_0000_0000, kind: AllocKind::Reserved },
            Record::Resident { address: 0x7f00_0000_0000, bytes: 1 << 20 },
            Record::Free { address: u64::MAX, kind: AllocKind::PymallocObject },
            Record::Marker { label: "é".as_bytes() },
            Record::Span { begin: true, name: b"load" },
            Record::Span { begin: false, name: b"" },
            Record::Gc { generation: 2, duration_ns: 99, collected: 5, uncollectable: 1 },
            Record::Stop,
            Record::CensusBegin { trigger: 1, label: b"loaded", sample_every: 1 },
            Record::CensusType(CensusType {
                count: 3,
                bytes: 168,
                dict_sampled: 1,
                dict_attrs: 3,
                slots_instance_bytes: 56,
                module: b"__main__",
                qualname: b"Point",
                addresses: &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
                storage: &[3, 0, 0, 0, 0, 0, 0, 0],
            }),
            Record::CensusCache(CensusCache {
                currsize: 10,
                maxsize: None,
                hits: 1,
                misses: 10,
                bytes: 640,
                module: b"m",
                qualname: b"f",
            }),
            Record::CensusCache(CensusCache { maxsize: Some(0), ..Default::default() }),
            Record::CensusEnd { objects: 1000, duration_ns: 5, recursion_limit: 1000 },
            Record::NativeModule {
                bias: 0x7f00_0000_0000,
                start: 0x7f00_0000_0000,
                end: 0x7f00_0010_0000,
                path: b"/usr/lib/libx.so",
                build_id: &[0xab, 0xcd],
            },
            Record::NativeFrame { id: 2, parent: 1, address: 0x7f00_0000_1234 },
            Record::NativeStack { node: 2 },
        ]
    }

    fn encoded(rec: &Record<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; rec.encoded_len()];
        assert_eq!(rec.encode_into(&mut buf), Some(buf.len()), "{rec:?}");
        buf
    }

    #[test]
    fn round_trips_every_record() {
        for rec in all_records() {
            let buf = encoded(&rec);
            assert_eq!(record_len(&buf), Ok(Some(buf.len())), "{rec:?}");
            assert_eq!(decode(&buf).unwrap(), Some((rec, buf.len())), "{rec:?}");
            // The hot records' own paths write what the layouts say (the packed forms aside,
            // which have no layout).
            if 1 + crate::layout::payload_len(&rec) == buf.len() {
                let mut laid_out = vec![0u8; buf.len()];
                assert_eq!(rec.encode_other(&mut laid_out), Some(buf.len()), "{rec:?}");
                assert_eq!(laid_out, buf, "{rec:?}");
            }
        }
    }

    /// The drain's table of fixed sizes and the layouts say the same.
    #[test]
    fn fixed_sizes_agree_with_the_layouts() {
        for rec in all_records() {
            let tag = rec.tag();
            match fixed_payload(tag) {
                Some(n) => assert_eq!(n, crate::layout::payload_len(&rec), "{rec:?}"),
                None => assert!(tag >= FIRST_VARIABLE, "{rec:?}"),
            }
        }
    }

    /// Layouts declared once keep the bytes of protocol 6 (and protocol 7's sampling rate
    /// and protocol 8's native-stacks flag in Hello).
    #[test]
    fn other_records_are_byte_exact() {
        let hello = Hello {
            protocol: 7,
            pid: 0x0102,
            python_major: 3,
            python_minor: 13,
            native: true,
            sample_bytes: 0x0203,
            native_stacks: true,
        };
        assert_eq!(
            encoded(&Record::Hello(hello)),
            [TAG_HELLO, 7, 0, 0, 0, 2, 1, 0, 0, 3, 13, 1, 3, 2, 0, 0, 0, 0, 0, 0, 1]
        );
        let cache = Record::CensusCache(CensusCache {
            currsize: 1,
            maxsize: Some(2),
            hits: 3,
            misses: 4,
            bytes: 5,
            module: b"m",
            qualname: b"fn",
        });
        let mut want = vec![TAG_CENSUS_CACHE, 52, 0, 0, 0];
        for v in 1u64..=5 {
            want.extend(v.to_le_bytes());
        }
        want.extend([1, 1, 0, 0, 0, b'm', 2, 0, 0, 0, b'f', b'n']);
        assert_eq!(encoded(&cache), want);
    }

    #[test]
    fn hot_records_are_byte_exact() {
        let high = 0x1234_5678_9abc_def0;
        let alloc = encoded(&Record::Alloc { address: high, size: 0x20, kind: AllocKind::Malloc });
        #[rustfmt::skip]
        let want = [
            TAG_ALLOC + 3,
            0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12,
            0x20, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(alloc, want);
        let free = encoded(&Record::Free { address: high, kind: AllocKind::PyMem });
        assert_eq!(free, [TAG_FREE + 1, 0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12]);
        // Packed: address in 48 bits, then 13 bits of size and 3 of kind.
        let alloc = encoded(&Record::Alloc {
            address: 0x7f01_0203_0405,
            size: 0x1abc,
            kind: AllocKind::Malloc,
        });
        assert_eq!(alloc, [TAG_ALLOC_PACKED, 0x05, 0x04, 0x03, 0x02, 0x01, 0x7f, 0xbc, 0x7a]);
        let free = encoded(&Record::Free { address: 0x7f01_0203_0405, kind: AllocKind::PyMem });
        assert_eq!(free, [TAG_FREE_PACKED, 0x05, 0x04, 0x03, 0x02, 0x01, 0x7f, 1]);
        assert_eq!(encoded(&Record::Push { code: 1, line: 2 }), [TAG_PUSH, 1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(encoded(&Record::Pop { n: 2 }), [TAG_POP, 2, 0, 0, 0]);
    }

    #[test]
    fn hot_records_decode_alike_on_both_paths() {
        for rec in all_records() {
            let buf = encoded(&rec);
            let hot = decode_hot(&buf).map(|(h, used)| {
                assert_eq!(used, buf.len());
                Record::from(h)
            });
            let hot_kind = matches!(
                rec,
                Record::Alloc { .. }
                    | Record::Free { .. }
                    | Record::Push { .. }
                    | Record::Pop { .. }
                    | Record::Line { .. }
                    | Record::Recreate { .. }
            );
            assert_eq!(hot, hot_kind.then_some(rec), "{rec:?}");
            assert_eq!(decode_hot(&buf[..buf.len() - 1]), None, "{rec:?} cut short");
        }
    }

    #[test]
    fn seq_is_read_without_decoding() {
        let buf = encoded(&Record::Seq { seq: 5, ticks: 6, thread: 7 });
        assert_eq!(peek_seq(&buf), Some((5, 6, 7)));
        assert_eq!(peek_seq(&buf[..10]), None);
        assert_eq!(peek_seq(&encoded(&Record::Pop { n: 1 })), None);
    }

    #[test]
    fn the_decoder_stamps_records_with_the_stretch_before_them() {
        let mut stream = Vec::new();
        for rec in [
            Record::Stretch(Header { time_ns: 5, thread: 1 }),
            Record::Pop { n: 1 },
            Record::Free { address: 8, kind: AllocKind::Malloc },
            Record::Stretch(Header { time_ns: 9, thread: 0 }),
            Record::Stretch(Header { time_ns: 10, thread: 2 }),
            Record::Stop,
        ] {
            stream.extend(encoded(&rec));
        }
        let mut d = Decoder::default();
        let mut got = Vec::new();
        let mut pos = 0;
        while let Some((h, r, used)) = d.next(&stream[pos..]).unwrap() {
            got.push((h.time_ns, h.thread, r));
            pos += used;
        }
        assert_eq!(pos, stream.len());
        assert_eq!(
            got,
            [
                (5, 1, Record::Pop { n: 1 }),
                (5, 1, Record::Free { address: 8, kind: AllocKind::Malloc }),
                (10, 2, Record::Stop)
            ]
        );
        let seq = encoded(&Record::Seq { seq: 1, ticks: 1, thread: 1 });
        assert!(Decoder::default().next(&seq).is_err(), "a ring-only record in a pipe");
    }

    #[test]
    fn short_output_buffer_is_refused() {
        assert_eq!(Record::Pop { n: 1 }.encode_into(&mut [0u8; 4]), None);
        for rec in all_records() {
            let n = rec.encoded_len();
            assert_eq!(rec.encode_into(&mut vec![0u8; n - 1]), None, "{rec:?}");
        }
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let stream: Vec<u8> = all_records().iter().flat_map(encoded).collect();
        let mut pos = 0;
        let mut n = 0;
        while let Some((_, used)) = decode(&stream[pos..]).unwrap() {
            for cut in 0..used {
                assert_eq!(decode(&stream[pos..pos + cut]).unwrap(), None);
            }
            pos += used;
            n += 1;
        }
        assert_eq!((pos, n), (stream.len(), all_records().len()));
    }

    #[test]
    fn long_strings_are_truncated() {
        let long = vec![b'a'; MAX_STR_LEN + 100];
        let buf = encoded(&Record::Marker { label: &long });
        let (got, _) = decode(&buf).unwrap().unwrap();
        assert_eq!(got, Record::Marker { label: &long[..MAX_STR_LEN] });
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: every byte pattern from a tiny LCG, at many lengths.
        let mut x: u32 = 12345;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = decode(&buf);
            let _ = Decoder::default().next(&buf);
        }
        assert_eq!(decode(&[200]), Err(WireError::UnknownTag(200)));
        let bad_kind = [TAG_ALLOC + 7, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&bad_kind), Err(WireError::UnknownTag(TAG_ALLOC + 7)));
        let bad_kind = [TAG_ALLOC_PACKED, 0, 0, 0, 0, 0, 0, 0, 7 << 5];
        assert_eq!(decode(&bad_kind), Err(WireError::UnknownKind(7)));
        let bad_kind = [TAG_FREE_PACKED, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(decode(&bad_kind), Err(WireError::UnknownKind(7)));
        assert!(matches!(decode(&[TAG_MARKER, 255, 255, 255, 255]), Err(WireError::TooLong(_))));
        let short = [TAG_MARKER, 4, 0, 0, 0, 9, 0, 0, 0];
        assert!(matches!(decode(&short), Err(WireError::BadLength { .. })));
    }
}
