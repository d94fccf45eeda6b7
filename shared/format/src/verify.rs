//! [`Recording::verify_chunks`]: every chunk's framing and checksum, checked in one pass over
//! the file without decompressing or decoding anything.
//!
//! Opening a closed file reads its trailer, tables and aggregates, and an analysis then reads
//! at most a few event chunks: the checksums of the others are never computed, so damage in
//! the middle of a file (a bad disk block, a botched copy) would go unseen by a command that
//! only reads aggregates. This pass is what gates and exports run before trusting a file; its
//! cost is reading the file once (a CRC-32 runs at several GB/s), not decoding its events.
//!
//! A closed file's trailer lists every chunk, so a damaged chunk is reported and the pass goes
//! on with the next one the index names; in a file without a trailer nothing after a damaged
//! chunk can be located, and the pass stops there (where opening stopped too).

use crate::chunk::{ChunkHeader, Tag, CHUNK_HEADER_LEN, HEADER_LEN};
use crate::source::ByteSource;
use crate::{Error, IndexEntry, Recording};

/// Bytes read at once: large enough that the pass costs few reads, small enough that a block
/// is still in the CPU's cache when its checksums are computed.
const VERIFY_READ: usize = 2 << 20;

/// A chunk whose bytes fail their check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedChunk {
    /// Byte offset of its header in the file.
    pub offset: u64,
    /// What the chunk is, as the trailer's index says (or its own header, without a trailer),
    /// when that is known.
    pub tag: Option<Tag>,
    /// Of an event chunk: its number among the file's event chunks (from 0), as the trailer's
    /// index counts them.
    pub event_chunk: Option<usize>,
    /// What is wrong with it.
    pub reason: String,
}

impl DamagedChunk {
    /// What the chunk is, in words: "event chunk 12", "intervals chunk", "chunk".
    pub fn what(&self) -> String {
        match (self.tag, self.event_chunk) {
            (Some(Tag::Events), Some(i)) => format!("event chunk {i}"),
            (Some(tag), _) => format!("{} chunk", tag_name(tag)),
            (None, _) => "chunk".to_owned(),
        }
    }
}

/// A chunk's kind in words.
fn tag_name(tag: Tag) -> &'static str {
    match tag {
        Tag::Meta => "metadata",
        Tag::Strings => "string table",
        Tag::Frames => "frame table",
        Tag::Stacks => "stack table",
        Tag::Threads => "thread table",
        Tag::Events => "event",
        Tag::Samples => "memory samples",
        Tag::Markers => "markers",
        Tag::Gc => "gc runs",
        Tag::End => "process end",
        Tag::Trailer => "trailer",
        Tag::Footer => "footer",
        Tag::Census => "census",
        Tag::Caches => "caches",
        Tag::Intervals => "intervals",
        Tag::Digest => "digest",
        Tag::Gathered => "gathered directory",
        Tag::Substream => "substream",
        Tag::Processes => "processes",
        Tag::Native => "native frames",
        Tag::Spans => "spans",
    }
}

/// What [`Recording::verify_chunks`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkVerification {
    /// Chunks whose framing and checksum were checked and hold.
    pub intact: u64,
    /// Bytes read.
    pub bytes: u64,
    /// The chunks that fail, in file order.
    pub damaged: Vec<DamagedChunk>,
}

impl ChunkVerification {
    /// Whether every chunk holds.
    pub fn is_intact(&self) -> bool {
        self.damaged.is_empty()
    }
}

impl Recording {
    /// Checks the framing and the CRC-32 of every chunk of the file, decompressing and
    /// decoding nothing: one sequential read of the file. The trailer and footer of a closed
    /// file were checked when it was opened, and are not read again.
    ///
    /// A closed file is checked chunk by chunk as its trailer's index lists them (each must
    /// fill its place in the index exactly), so every damaged chunk is found; a file without a
    /// trailer (or whose index does not describe it) is walked chunk header by chunk header,
    /// and the walk stops at the first damaged chunk, past which nothing can be located.
    ///
    /// Errors only when the source fails to give bytes it has.
    pub fn verify_chunks(&self) -> Result<ChunkVerification, Error> {
        let src = self.src.as_deref().ok_or(Error::NoSource)?;
        let len = src.len();
        let indexed = self.trailer(len).filter(|(t, at)| index_is_ordered(&t.index, *at));
        match indexed {
            Some((trailer, at)) => verify_indexed(src, self.format_version(), &trailer.index, at),
            None => verify_walk(src, self.format_version(), len),
        }
    }
}

/// Whether a trailer's index starts at the first chunk and goes forward to the trailer at
/// `trailer_at` (what opening a file from its index requires too).
fn index_is_ordered(index: &[IndexEntry], trailer_at: u64) -> bool {
    index.windows(2).all(|w| w[0].offset < w[1].offset)
        && index.first().is_some_and(|e| e.offset == HEADER_LEN as u64)
        && index.last().is_none_or(|e| e.offset < trailer_at)
}

/// Sequential reads of a source in large blocks.
struct Reader<'a> {
    src: &'a dyn ByteSource,
    base: u64,
    bytes: Vec<u8>,
    read: u64,
}

impl<'a> Reader<'a> {
    fn new(src: &'a dyn ByteSource) -> Self {
        Reader { src, base: 0, bytes: Vec::new(), read: 0 }
    }

    /// The bytes `[at, at + n)`, fewer where the source ends.
    fn get(&mut self, at: u64, n: usize) -> Result<&[u8], Error> {
        let end = self.base + self.bytes.len() as u64;
        if at < self.base || at + n as u64 > end {
            self.src.read_into(at, n.max(VERIFY_READ), &mut self.bytes)?;
            self.base = at;
            self.read += self.bytes.len() as u64;
        }
        let start = (at - self.base) as usize;
        Ok(&self.bytes[start.min(self.bytes.len())..(start + n).min(self.bytes.len())])
    }
}

/// Checks the chunk at `at`, which must end exactly at `end` when that is given (the next
/// chunk's offset in the index) and at or before `limit`. Its length, or why it fails.
fn check_chunk(
    reader: &mut Reader,
    version: u16,
    at: u64,
    end: Option<u64>,
    limit: u64,
) -> Result<Result<(ChunkHeader, u64), String>, Error> {
    let head = reader.get(at, CHUNK_HEADER_LEN)?;
    let header = match ChunkHeader::parse(head) {
        Ok(h) => h,
        Err(reason) => return Ok(Err(reason)),
    };
    let total = header.total_len();
    if at + total > limit {
        let left = limit.saturating_sub(at + CHUNK_HEADER_LEN as u64);
        return Ok(Err(format!("chunk of {} bytes but only {left} remain", header.stored_len)));
    }
    if let Some(end) = end.filter(|&e| e != at + total) {
        return Ok(Err(format!(
            "chunk of {total} bytes where the trailer's index has {} (its header is damaged)",
            end - at
        )));
    }
    let whole = reader.get(at, total as usize)?;
    if whole.len() as u64 != total {
        return Ok(Err(format!(
            "the file ends inside the chunk ({} of {total} bytes)",
            whole.len()
        )));
    }
    if !header.intact(whole, version) {
        return Ok(Err("chunk checksum mismatch".into()));
    }
    Ok(Ok((header, total)))
}

/// Checks every chunk the index of a closed file lists, up to its trailer at `trailer_at`.
fn verify_indexed(
    src: &dyn ByteSource,
    version: u16,
    index: &[IndexEntry],
    trailer_at: u64,
) -> Result<ChunkVerification, Error> {
    let mut reader = Reader::new(src);
    let mut out = ChunkVerification::default();
    let mut events = 0;
    for (i, entry) in index.iter().enumerate() {
        let end = index.get(i + 1).map_or(trailer_at, |n| n.offset);
        let tag = Tag::from_u8(entry.tag);
        let event_chunk = (tag == Some(Tag::Events)).then_some(events);
        events += usize::from(tag == Some(Tag::Events));
        match check_chunk(&mut reader, version, entry.offset, Some(end), trailer_at)? {
            Ok((header, _)) if header.tag == entry.tag => out.intact += 1,
            Ok((header, _)) => out.damaged.push(DamagedChunk {
                offset: entry.offset,
                tag,
                event_chunk,
                reason: format!(
                    "its header says tag {} where the trailer's index says {}",
                    header.tag, entry.tag
                ),
            }),
            Err(reason) => {
                out.damaged.push(DamagedChunk { offset: entry.offset, tag, event_chunk, reason })
            }
        }
    }
    out.bytes = reader.read;
    Ok(out)
}

/// Walks the chunks of a file without a (usable) trailer from the first to `len`, stopping at
/// the first that fails.
fn verify_walk(src: &dyn ByteSource, version: u16, len: u64) -> Result<ChunkVerification, Error> {
    let mut reader = Reader::new(src);
    let mut out = ChunkVerification::default();
    let (mut at, mut events) = (HEADER_LEN as u64, 0);
    while at < len {
        match check_chunk(&mut reader, version, at, None, len)? {
            Ok((header, total)) => {
                out.intact += 1;
                events += usize::from(Tag::from_u8(header.tag) == Some(Tag::Events));
                at += total;
            }
            Err(reason) => {
                let tag = reader.get(at, 1)?.first().and_then(|&t| Tag::from_u8(t));
                let event_chunk = (tag == Some(Tag::Events)).then_some(events);
                out.damaged.push(DamagedChunk { offset: at, tag, event_chunk, reason });
                break;
            }
        }
    }
    out.bytes = reader.read;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AllocatorKind, Codec, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
        WriterOptions,
    };

    /// A closed recording of 4,000 allocations in event chunks of 500.
    fn recording() -> Vec<u8> {
        let options = WriterOptions { events_per_chunk: 500, ..WriterOptions::default() };
        let mut w = RecordingWriter::with_options(Vec::new(), &Meta::default(), options).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let f = w.intern_frame("work", "app.py", 3);
        let s = w.intern_stack(StackId::ROOT, f);
        for i in 0..4_000u64 {
            let address = 0x1000 + i * 0x40 * (i % 7 + 1);
            w.alloc(1_000 + i * 10, ThreadId(0), s, address, 48 + i % 90, AllocatorKind::Malloc)
                .unwrap();
            if i % 3 == 0 {
                w.free(1_001 + i * 10, ThreadId(0), address, AllocatorKind::Malloc).unwrap();
            }
        }
        w.finish(ProcessEnd { time_ns: 100_000, exit_code: Some(0), signal: None }).unwrap()
    }

    fn event_chunk_offsets(rec: &Recording) -> Vec<u64> {
        (0..rec.event_chunk_count()).map(|i| rec.event_chunk(i).unwrap().offset).collect()
    }

    #[test]
    fn an_intact_file_verifies_and_every_byte_is_read_once() {
        let bytes = recording();
        let rec = Recording::open(&bytes).unwrap();
        assert!(rec.event_chunk_count() >= 8, "{}", rec.event_chunk_count());
        let v = rec.verify_chunks().unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert!(v.intact > rec.event_chunk_count() as u64);
        // Everything up to the trailer, read once (one block: the file is small).
        assert!(v.bytes <= bytes.len() as u64, "{} of {}", v.bytes, bytes.len());
    }

    /// The damage the CLI's tester made: 8 bytes overwritten inside an event chunk that opening
    /// the closed file never reads. Every damaged chunk is listed, by offset and number.
    #[test]
    fn damaged_event_chunks_the_open_does_not_read_are_found() {
        let mut bytes = recording();
        let clean = Recording::open(&bytes).unwrap();
        let chunks = event_chunk_offsets(&clean);
        for &k in &[2usize, 5] {
            let at = chunks[k] as usize + CHUNK_HEADER_LEN + 20;
            bytes[at..at + 8].copy_from_slice(&[0xff; 8]);
        }
        let rec = Recording::open(&bytes).unwrap();
        assert!(rec.truncation().is_none(), "opening does not read event chunks");
        let v = rec.verify_chunks().unwrap();
        let found: Vec<(u64, Option<usize>)> =
            v.damaged.iter().map(|d| (d.offset, d.event_chunk)).collect();
        assert_eq!(found, [(chunks[2], Some(2)), (chunks[5], Some(5))]);
        assert_eq!(v.damaged[0].reason, "chunk checksum mismatch");
        assert_eq!(v.damaged[0].what(), "event chunk 2");
    }

    /// A damaged length cannot send the check astray in a closed file: the index says where
    /// the next chunk is.
    #[test]
    fn a_damaged_chunk_header_is_found_and_the_check_goes_on() {
        let mut bytes = recording();
        let chunks = event_chunk_offsets(&Recording::open(&bytes).unwrap());
        let at = chunks[1] as usize + 4;
        bytes[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
        let last = *chunks.last().unwrap() as usize + CHUNK_HEADER_LEN + 3;
        bytes[last] ^= 1;
        let rec = Recording::open(&bytes).unwrap();
        let v = rec.verify_chunks().unwrap();
        let offsets: Vec<u64> = v.damaged.iter().map(|d| d.offset).collect();
        assert_eq!(offsets, [chunks[1], *chunks.last().unwrap()], "{v:?}");
        assert!(v.damaged[0].reason.contains("where the trailer's index has"), "{v:?}");
    }

    /// Without a trailer, the walk stops at the first damaged chunk, as opening does.
    #[test]
    fn a_file_without_a_trailer_is_walked_up_to_its_first_damage() {
        let bytes = recording();
        let clean = Recording::open(&bytes).unwrap();
        let chunks = event_chunk_offsets(&clean);
        let cut = &bytes[..chunks[6] as usize + 10];
        let rec = Recording::open(cut).unwrap();
        let v = rec.verify_chunks().unwrap();
        assert_eq!(v.damaged.len(), 1, "{v:?}");
        assert_eq!(v.damaged[0].offset, chunks[6]);
        assert_eq!(v.damaged[0].event_chunk, Some(6));
        assert_eq!(Some(chunks[6]), rec.truncation().map(|t| t.offset));
        let mut damaged = bytes[..chunks[6] as usize].to_vec();
        damaged[chunks[3] as usize + CHUNK_HEADER_LEN + 1] ^= 0x40;
        let v = Recording::open(&damaged).unwrap().verify_chunks().unwrap();
        assert_eq!(v.damaged.iter().map(|d| d.offset).collect::<Vec<_>>(), [chunks[3]]);
        let whole = Recording::open(&bytes[..chunks[6] as usize]).unwrap();
        assert!(whole.verify_chunks().unwrap().is_intact());
    }

    /// Stored and compressed chunks alike: the check never decompresses.
    #[test]
    fn every_codec_verifies() {
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
            let options = WriterOptions { codec, events_per_chunk: 100, ..Default::default() };
            let mut w =
                RecordingWriter::with_options(Vec::new(), &Meta::default(), options).unwrap();
            w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "t".into() });
            let f = w.intern_frame("f", "a.py", 1);
            let s = w.intern_stack(StackId::ROOT, f);
            for i in 0..1_000u64 {
                w.alloc(i * 10, ThreadId(0), s, 0x100 + i * 64, 32, AllocatorKind::PymallocObject)
                    .unwrap();
            }
            let bytes =
                w.finish(ProcessEnd { time_ns: 20_000, exit_code: Some(0), signal: None }).unwrap();
            let v = Recording::open(&bytes).unwrap().verify_chunks().unwrap();
            assert!(v.is_intact(), "{codec:?}: {v:?}");
        }
    }
}
