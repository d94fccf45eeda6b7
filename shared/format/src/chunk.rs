//! The file header and chunk framing: tag, codec, lengths and a checksum for every chunk.
//!
//! A chunk is written whole or not at all from the reader's point of view: a torn write at
//! the end of a file fails its length or checksum test and the reader stops there.

use crate::Error;

/// The first 8 bytes of every recording. Like PNG's signature, the non-ASCII first byte and the
/// CR LF / SUB bytes catch text-mode transfers and `cat` of a binary file.
pub const MAGIC: [u8; 8] = *b"\x89MLNS\r\n\x1a";

/// The format version written by this crate. Readers refuse files with a larger version.
///
/// Adding a chunk tag or changing the layout of an existing chunk bumps it (FORMAT.md,
/// "Compatibility policy").
pub const FORMAT_VERSION: u16 = 8;

/// Size of the file header: magic, version, flags, reserved.
pub const HEADER_LEN: usize = 16;

/// Size of a chunk header: tag, codec, reserved, stored length, raw length, CRC-32.
pub const CHUNK_HEADER_LEN: usize = 16;

/// The header bytes a chunk's CRC-32 covers, before its stored payload: tag, codec, reserved
/// and both lengths (format 4; earlier formats checked the payload only, so a damaged tag
/// went unnoticed and the chunk was skipped as one of an unknown kind).
const CHECKED_HEADER_LEN: usize = 12;

/// The first format whose chunk checksums cover the header.
const HEADER_CHECKSUM_VERSION: u16 = 4;

/// A chunk's CRC-32 in a file of `version`: of its header's first bytes and its payload.
fn checksum(head: &[u8], stored: &[u8], version: u16) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if version >= HEADER_CHECKSUM_VERSION {
        h.update(&head[..CHECKED_HEADER_LEN]);
    }
    h.update(stored);
    h.finalize()
}

/// The largest raw (decompressed) chunk a reader accepts, so corrupt lengths can't make it
/// allocate without bound. Writers cut chunks far below this (about 1 MiB).
pub const MAX_CHUNK_RAW_LEN: u32 = 64 << 20;

/// A compressed chunk may decompress to at most this many times its stored size, plus
/// [`MAX_EXPANSION_SLACK`]: the most regular event chunks seen compress about 400 times, and
/// a crafted chunk claiming more (a few KB "decompressing" to millions of events) is refused
/// before any work, so reading costs at most a bounded multiple of the file's size.
pub const MAX_EXPANSION: u32 = 1024;
/// See [`MAX_EXPANSION`]: room for small chunks, whose compression framing dominates.
pub const MAX_EXPANSION_SLACK: u32 = 64 << 10;

/// Chunk tags. Tags are only ever added; readers skip the ones they do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Tag {
    /// Recording metadata (first chunk).
    Meta = 1,
    /// New interned strings.
    Strings = 2,
    /// New frames.
    Frames = 3,
    /// New stack tree nodes.
    Stacks = 4,
    /// Threads seen (new or renamed).
    Threads = 5,
    /// Allocation and free events.
    Events = 6,
    /// Process memory samples over time.
    Samples = 7,
    /// User markers.
    Markers = 8,
    /// Garbage collector runs.
    Gc = 9,
    /// How and when the process ended.
    End = 10,
    /// Precomputed aggregates and the chunk index.
    Trailer = 11,
    /// Fixed-size last chunk pointing at the trailer.
    Footer = 12,
    /// Object censuses (live objects by type).
    Census = 13,
    /// `functools.lru_cache` wrappers seen by censuses.
    Caches = 14,
    /// Interval aggregates: a base interval and the pyramid nodes it completes (format 4).
    Intervals = 15,
    /// At the end of a closed file: every pyramid node above the base, and the heap figures
    /// of every base interval (format 4).
    Digest = 16,
    /// At the end of a closed file, before the digest: a copy of every chunk read at open
    /// (tables, samples, markers, gc runs, censuses, the process end) but the metadata, so
    /// that a reader with the trailer reads them at once instead of one chunk per flush
    /// (format 4).
    Gathered = 17,
    /// A piece of the recording of another process (a descendant of the traced program):
    /// its number, where the piece goes in that process's stream, the bytes (format 5).
    Substream = 18,
    /// At the end of a closed file that has Substream chunks: where every piece is
    /// (format 5).
    Processes = 19,
    /// Which frames are native functions, and the modules they are in (`--native-stacks`;
    /// added in format 5 without a version change: readers that skip it lose only that).
    Native = 20,
    /// Where spans begin and end (format 7).
    Spans = 21,
}

impl Tag {
    pub(crate) fn from_u8(v: u8) -> Option<Tag> {
        use Tag::*;
        [
            Meta, Strings, Frames, Stacks, Threads, Events, Samples, Markers, Gc, End, Trailer,
            Footer, Census, Caches, Intervals, Digest, Gathered, Substream, Processes, Native,
            Spans,
        ]
        .get(usize::from(v).wrapping_sub(1))
        .copied()
    }
}

/// How a chunk's payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// An LZ4 block (lz4_flex).
    Lz4 = 1,
    /// A zstd frame.
    #[default]
    Zstd = 2,
}

impl Codec {
    fn from_u8(v: u8) -> Option<Codec> {
        [Codec::None, Codec::Lz4, Codec::Zstd].get(usize::from(v)).copied()
    }
}

/// Writes the 16-byte file header.
pub(crate) fn header_bytes() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks the file header and returns the format version.
pub(crate) fn check_header(bytes: &[u8]) -> Result<u16, Error> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            Error::TooShort { len: bytes.len() }
        } else {
            Error::NotARecording
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(Error::TooShort { len: bytes.len() });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version > FORMAT_VERSION {
        return Err(Error::NewerVersion { found: version });
    }
    Ok(version)
}

#[cfg(feature = "native-zstd")]
fn zstd_compress(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        // One context per thread, reused: a new one costs its tables' set-up at every chunk.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        // Level 3 is zstd's default; on event chunks it is within a few percent of level 19's
        // size.
        let c = c.get_or_insert_with(|| {
            zstd::bulk::Compressor::new(3).expect("a zstd context at level 3")
        });
        c.compress(raw).expect("compressing to memory cannot fail")
    })
}

#[cfg(not(feature = "native-zstd"))]
fn zstd_compress(raw: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(raw, ruzstd::encoding::CompressionLevel::Fastest)
}

/// Compresses `raw` and frames it as a chunk, appending to `out`.
pub(crate) fn encode_chunk(out: &mut Vec<u8>, tag: Tag, codec: Codec, raw: &[u8]) {
    let stored: std::borrow::Cow<[u8]> = match codec {
        Codec::None => raw.into(),
        Codec::Lz4 => lz4_flex::block::compress(raw).into(),
        Codec::Zstd => zstd_compress(raw).into(),
    };
    // Incompressible payloads are stored raw, and so are those that compress past what readers
    // accept (MAX_EXPANSION: never seen in a real recording).
    let most = stored.len() as u64 * u64::from(MAX_EXPANSION) + u64::from(MAX_EXPANSION_SLACK);
    let (codec, stored) =
        if (stored.len() >= raw.len() || raw.len() as u64 > most) && codec != Codec::None {
            (Codec::None, std::borrow::Cow::Borrowed(raw))
        } else {
            (codec, stored)
        };
    let at = out.len();
    out.push(tag as u8);
    out.push(codec as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let crc = checksum(&out[at..], &stored, FORMAT_VERSION);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&stored);
}

/// A chunk located in a file, not yet decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawChunk<'a> {
    /// The tag byte (known or not).
    pub tag: u8,
    /// Byte offset of the chunk header in the file.
    pub offset: u64,
    codec: u8,
    raw_len: u32,
    stored: &'a [u8],
}

/// The fields of a chunk header that locate and check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub tag: u8,
    pub codec: u8,
    pub stored_len: u32,
    pub raw_len: u32,
    pub crc: u32,
}

impl ChunkHeader {
    /// Parses a 16-byte chunk header and checks its lengths against the limits.
    pub(crate) fn parse(head: &[u8]) -> Result<ChunkHeader, String> {
        let head = head.get(..CHUNK_HEADER_LEN).ok_or_else(|| {
            format!("{} bytes of a {CHUNK_HEADER_LEN}-byte chunk header", head.len())
        })?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let h = ChunkHeader {
            tag: head[0],
            codec: head[1],
            stored_len: word(4),
            raw_len: word(8),
            crc: word(12),
        };
        if h.raw_len > MAX_CHUNK_RAW_LEN || h.stored_len > MAX_CHUNK_RAW_LEN {
            return Err(format!(
                "chunk length {} is over the {MAX_CHUNK_RAW_LEN} limit",
                h.raw_len.max(h.stored_len)
            ));
        }
        let most =
            u64::from(h.stored_len) * u64::from(MAX_EXPANSION) + u64::from(MAX_EXPANSION_SLACK);
        if h.codec != Codec::None as u8 && u64::from(h.raw_len) > most {
            return Err(format!(
                "a chunk of {} compressed bytes claims to hold {}: more than any recording does",
                h.stored_len, h.raw_len
            ));
        }
        Ok(h)
    }

    /// The chunk's size, header included.
    pub(crate) fn total_len(&self) -> u64 {
        CHUNK_HEADER_LEN as u64 + u64::from(self.stored_len)
    }

    /// Whether the chunk `whole` (header and payload) of a file of `version` passes its
    /// checksum.
    pub(crate) fn intact(&self, whole: &[u8], version: u16) -> bool {
        whole.len() >= CHUNK_HEADER_LEN
            && checksum(whole, &whole[CHUNK_HEADER_LEN..], version) == self.crc
    }
}

/// Reads the chunk at `pos` of `bytes`, a buffer that starts at file offset `base`, in a
/// file of format `version`. `Ok(None)` at the exact end of the bytes.
pub(crate) fn read_chunk(
    bytes: &[u8],
    pos: usize,
    base: u64,
    version: u16,
) -> Result<Option<RawChunk<'_>>, String> {
    if pos == bytes.len() {
        return Ok(None);
    }
    let h = ChunkHeader::parse(bytes.get(pos..).unwrap_or_default())?;
    let start = pos + CHUNK_HEADER_LEN;
    let stored = bytes.get(start..start + h.stored_len as usize).ok_or_else(|| {
        format!("chunk of {} bytes but only {} remain", h.stored_len, bytes.len() - start)
    })?;
    if !h.intact(&bytes[pos..start + stored.len()], version) {
        return Err("chunk checksum mismatch".into());
    }
    Ok(Some(RawChunk {
        tag: h.tag,
        offset: base + pos as u64,
        codec: h.codec,
        raw_len: h.raw_len,
        stored,
    }))
}

impl RawChunk<'_> {
    /// The total size of the chunk, header included.
    pub fn len(&self) -> usize {
        CHUNK_HEADER_LEN + self.stored.len()
    }

    /// The known tag, if any.
    pub fn known_tag(&self) -> Option<Tag> {
        Tag::from_u8(self.tag)
    }

    /// Decompresses the payload.
    pub fn payload(&self) -> Result<Vec<u8>, Error> {
        let bad = |detail: String| Error::corrupt("chunk payload", self.offset, detail);
        let codec = Codec::from_u8(self.codec)
            .ok_or_else(|| bad(format!("unknown compression codec {}", self.codec)))?;
        let raw = match codec {
            Codec::None => self.stored.to_vec(),
            Codec::Lz4 => lz4_flex::block::decompress(self.stored, self.raw_len as usize)
                .map_err(|e| bad(e.to_string()))?,
            Codec::Zstd => {
                use std::io::Read;
                let mut dec = ruzstd::decoding::StreamingDecoder::new(self.stored)
                    .map_err(|e| bad(e.to_string()))?;
                let mut raw = Vec::with_capacity(self.raw_len as usize);
                // Read one byte past the promised length to detect lying headers without
                // allocating past the limit.
                (&mut dec)
                    .take(u64::from(self.raw_len) + 1)
                    .read_to_end(&mut raw)
                    .map_err(|e| bad(e.to_string()))?;
                raw
            }
        };
        if raw.len() != self.raw_len as usize {
            return Err(bad(format!("{} bytes decoded, header says {}", raw.len(), self.raw_len)));
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_bytes_are_exact() {
        let mut out = Vec::new();
        encode_chunk(&mut out, Tag::Strings, Codec::None, b"abc");
        let mut want = vec![2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0];
        let crc = crc32fast::hash(&[&want[..], b"abc"].concat()).to_le_bytes();
        want.extend_from_slice(&crc);
        want.extend_from_slice(b"abc");
        assert_eq!(out, want);
    }

    #[test]
    fn all_codecs_round_trip() {
        let raw: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
            let mut out = Vec::new();
            encode_chunk(&mut out, Tag::Events, codec, &raw);
            let chunk = read_chunk(&out, 0, 0, FORMAT_VERSION).unwrap().unwrap();
            assert_eq!(chunk.len(), out.len());
            assert_eq!(chunk.payload().unwrap(), raw, "{codec:?}");
            if codec != Codec::None {
                assert!(out.len() < raw.len() / 2, "{codec:?} did not compress");
            }
        }
    }

    /// A few bytes of zstd that claim (and would decompress to) 20 MB are refused at once.
    #[test]
    fn compression_bombs_are_refused() {
        let raw = vec![0u8; 20 << 20];
        let mut out = Vec::new();
        encode_chunk(&mut out, Tag::Events, Codec::Zstd, &raw);
        // (Written by hand: the writer stores such a payload uncompressed.)
        let mut bomb = out[..16].to_vec();
        bomb[1] = Codec::Zstd as u8;
        let stored = zstd_compress(&raw);
        bomb[4..8].copy_from_slice(&(stored.len() as u32).to_le_bytes());
        let crc = checksum(&bomb, &stored, FORMAT_VERSION);
        bomb[12..16].copy_from_slice(&crc.to_le_bytes());
        bomb.extend_from_slice(&stored);
        assert!(bomb.len() < 4096, "{} bytes", bomb.len());
        let err = read_chunk(&bomb, 0, 0, FORMAT_VERSION).unwrap_err();
        assert!(err.contains("more than any recording does"), "{err}");
        assert_eq!(out[1], Codec::None as u8);
        assert_eq!(
            read_chunk(&out, 0, 0, FORMAT_VERSION).unwrap().unwrap().payload().unwrap().len(),
            20 << 20
        );
    }

    #[test]
    fn damaged_chunks_are_reported() {
        let mut out = Vec::new();
        encode_chunk(&mut out, Tag::Events, Codec::Lz4, &[7u8; 4000]);
        for cut in 0..out.len() {
            assert!(read_chunk(&out[..cut], 0, 0, FORMAT_VERSION).is_err() || cut == 0);
        }
        // A damaged tag, codec or length is found like a damaged payload (format 4)...
        for at in [0, 1, 2, 8, out.len() - 1] {
            let mut bad = out.clone();
            bad[at] ^= 0x55;
            let err = read_chunk(&bad, 0, 0, FORMAT_VERSION).unwrap_err();
            assert!(err.contains("checksum"), "{at}: {err}");
        }
        // ...while a chunk of format 3 and earlier checks its payload only.
        let mut old = out.clone();
        old[12..16].copy_from_slice(&crc32fast::hash(&out[16..]).to_le_bytes());
        old[0] = Tag::Strings as u8;
        assert_eq!(read_chunk(&old, 0, 0, 3).unwrap().unwrap().known_tag(), Some(Tag::Strings));
        assert!(read_chunk(&old, 0, 0, FORMAT_VERSION).is_err());
    }

    #[test]
    fn header_checks() {
        let h = header_bytes();
        assert_eq!(check_header(&h).unwrap(), FORMAT_VERSION);
        assert!(matches!(check_header(b"PK\x03\x04 zip file"), Err(Error::NotARecording)));
        assert!(matches!(check_header(&h[..5]), Err(Error::TooShort { .. })));
        let mut newer = h;
        newer[8] = 0xff;
        assert!(matches!(check_header(&newer), Err(Error::NewerVersion { found: 0xff })));
    }
}
