//! [`Recording`]: a recording opened through a [`ByteSource`]. Opening reads the metadata, the
//! tables, the small records (samples, markers, gc runs, censuses) and the aggregates' digest;
//! event chunks and base intervals stay in the source and are read when an analysis asks for
//! them, so opening costs the same for a recording of a second or of an hour.
//!
//! A cleanly closed file is opened from its trailer's index: a few reads. A file without one
//! (the recorder was killed, or it is still being written) is scanned chunk header by chunk
//! header, and [`Recording::refresh`] picks up what was appended since.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::aggregate::PyramidBuilder;
use crate::chunk::{check_header, read_chunk, ChunkHeader, RawChunk, Tag, HEADER_LEN};
use crate::events::decode_events;
use crate::intervals::{decode_intervals, Interval, ALLOCATOR_ENTRIES_VERSION};
use crate::source::{read_exact, ByteSource};
use crate::tables::{decode_frames, decode_stacks, decode_strings};
use crate::EntryAllocators;
use crate::{
    BlockCount, CacheCensus, Census, Error, Event, Frame, FrameId, GcEvent, Marker, MemorySample,
    Meta, ProcessEnd, SpanEdge, SpanSide, StackId, StackNode, Summary, ThreadId, ThreadInfo,
    Totals, Trailer,
};

/// The first format with a chunk of span edges (older ones wrote spans as markers).
const SPAN_CHUNK_VERSION: u16 = 7;

/// The first format whose sampled recordings count each sampled block as the blocks it
/// stands for (older ones counted it once, aggregates included: see [`BlockCount`]).
const SAMPLED_COUNTS_VERSION: u16 = 8;

/// Where and why reading stopped early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// Byte offset of the first chunk that could not be read.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
}

/// Event chunks of fewer bytes than this in all (compressed: a few hundred thousand events)
/// are decoded on the thread that replays them: a thread of their own, handed one chunk at a
/// time, costs more than it saves there.
#[cfg(not(target_arch = "wasm32"))]
const DECODE_AHEAD_BYTES: u64 = 64 * 1024;

/// A chunk located in the file, not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Offset of its header.
    pub offset: u64,
    /// Its size, header included.
    pub len: u64,
    /// First event time in it (ns), when known.
    pub first_time_ns: u64,
    /// Last event time in it (ns), when known.
    pub last_time_ns: u64,
    /// Events (or nodes) in it, when known.
    pub count: u64,
}

/// Decoded base intervals kept for reuse, at most this many.
const NODE_CACHE: usize = 4096;
/// Reads of the index path merge chunks less than [`ByteSource::merge_gap`] apart into one
/// read, up to this many bytes.
const MERGED_READ_MAX: u64 = 16 << 20;
/// Reads of the scan path fetch at least this much, so that small chunks come in batches.
const SCAN_READ: usize = 64 << 10;

/// An opened recording: its directory (metadata, tables, small records, where everything else
/// is) and the source its events and intervals are read from.
#[derive(Serialize, Deserialize)]
pub struct Recording {
    version: u16,
    meta: Meta,
    strings: Vec<String>,
    frames: Vec<Frame>,
    /// `stacks[i]` is `StackId(i + 1)`; `StackId::ROOT` has no node.
    stacks: Vec<StackNode>,
    threads: Vec<ThreadInfo>,
    samples: Vec<MemorySample>,
    markers: Vec<Marker>,
    spans: Vec<SpanEdge>,
    gcs: Vec<GcEvent>,
    censuses: Vec<Census>,
    caches: Vec<CacheCensus>,
    native: crate::native::NativeTable,
    end: Option<ProcessEnd>,
    summary: Summary,
    has_trailer: bool,
    truncation: Option<Truncation>,
    unknown_chunks: usize,
    /// Why the interval aggregates cannot be used (analyses then replay the events).
    aggregates_missing: Option<String>,
    /// A damaged Intervals or Digest chunk, when one was found.
    #[serde(skip)]
    aggregates_damaged: Option<String>,
    #[serde(skip)]
    events: Vec<ChunkRef>,
    #[serde(skip)]
    intervals: Vec<ChunkRef>,
    /// The heap figures of each base interval (entries are read from its chunk).
    #[serde(skip)]
    shapes: Vec<Interval>,
    /// `upper[j - 1][i]`: the pyramid node of level `j` and index `i`.
    #[serde(skip)]
    upper: Vec<Vec<Arc<Interval>>>,
    /// Where a scan goes on from: the end of the last whole chunk (no trailer seen).
    #[serde(skip)]
    scan_from: Option<u64>,
    #[serde(skip)]
    pub(crate) src: Option<Arc<dyn ByteSource>>,
    /// Where the streams of the other processes the file holds are (format 5).
    #[serde(skip)]
    pub(crate) pieces: Vec<crate::Piece>,
    #[serde(skip)]
    cache: Mutex<FxHashMap<usize, Arc<Interval>>>,
    #[serde(skip)]
    read_meta: bool,
    #[serde(skip)]
    digest_len: u64,
    /// Scanning a file without a digest: the nodes above the base, folded from the base.
    #[serde(skip)]
    pyramid: PyramidBuilder,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("version", &self.version)
            .field("meta", &self.meta)
            .field("event_chunks", &self.events.len())
            .field("intervals", &self.intervals.len())
            .field("truncation", &self.truncation)
            .finish_non_exhaustive()
    }
}

/// The chunks a trailer's `index` lists, each with its tag and extent (up to the next one, or
/// to the trailer at `trailer_at`).
fn index_refs(index: &[crate::IndexEntry], trailer_at: u64) -> Vec<(Option<Tag>, ChunkRef)> {
    (0..index.len())
        .map(|i| {
            let e = index[i];
            let end = index.get(i + 1).map_or(trailer_at, |n| n.offset);
            let chunk = ChunkRef {
                offset: e.offset,
                len: end.saturating_sub(e.offset),
                first_time_ns: e.first_time_ns,
                last_time_ns: e.last_time_ns,
                count: e.count,
            };
            (Tag::from_u8(e.tag), chunk)
        })
        .collect()
}

/// The entries of a Gathered chunk's payload: each chunk's tag and raw payload.
fn gathered_entries(raw: &[u8]) -> Result<Vec<(u8, &[u8])>, &'static str> {
    let mut c = crate::varint::Cursor::new(raw);
    let mut entries = Vec::new();
    while !c.is_empty() {
        let tag = c.u8()?;
        let len = usize::try_from(c.u64()?).map_err(|_| "entry too long")?;
        entries.push((tag, c.bytes(len)?));
    }
    Ok(entries)
}

/// The chunks every reader reads at open: all but the events, the aggregates, their copy
/// and the end of file (and tags it does not know).
pub(crate) fn directory(tag: Option<Tag>) -> bool {
    !matches!(
        tag,
        Some(
            Tag::Events
                | Tag::Intervals
                | Tag::Digest
                | Tag::Gathered
                | Tag::Trailer
                | Tag::Footer
                | Tag::Substream
                | Tag::Processes
        ) | None
    )
}

impl Recording {
    /// Opens a recording from a copy of `bytes`.
    pub fn open(bytes: &[u8]) -> Result<Recording, Error> {
        Recording::from_vec(bytes.to_vec())
    }

    /// Opens a recording, taking ownership of its bytes.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Recording, Error> {
        Recording::open_source(Arc::new(bytes))
    }

    /// A recording of format `version` with nothing read yet.
    fn empty(version: u16, src: Option<Arc<dyn ByteSource>>) -> Recording {
        Recording {
            version,
            meta: Meta::default(),
            strings: Vec::new(),
            frames: Vec::new(),
            stacks: Vec::new(),
            threads: Vec::new(),
            samples: Vec::new(),
            markers: Vec::new(),
            spans: Vec::new(),
            gcs: Vec::new(),
            censuses: Vec::new(),
            caches: Vec::new(),
            native: Default::default(),
            end: None,
            summary: Summary::default(),
            has_trailer: false,
            truncation: None,
            unknown_chunks: 0,
            aggregates_missing: None,
            aggregates_damaged: None,
            events: Vec::new(),
            intervals: Vec::new(),
            shapes: Vec::new(),
            upper: Vec::new(),
            scan_from: None,
            src,
            pieces: Vec::new(),
            cache: Mutex::default(),
            read_meta: false,
            digest_len: 0,
            pyramid: PyramidBuilder::default(),
        }
    }

    /// Opens a recording read through `src`.
    ///
    /// A file cut short (crash, full disk, partial download) opens with everything up to the
    /// last whole chunk, and [`Recording::truncation`] says where it stopped. Errors are only
    /// returned when not even the header and metadata can be read.
    pub fn open_source(src: Arc<dyn ByteSource>) -> Result<Recording, Error> {
        let len = src.len();
        let head = src.read_at(0, HEADER_LEN)?;
        let version = check_header(&head)?;
        let mut rec = Recording::empty(version, Some(src));
        match rec.trailer(len) {
            Some((trailer, at)) => rec.read_indexed(trailer, at)?,
            None => rec.scan(HEADER_LEN as u64, len)?,
        }
        if !rec.read_meta {
            return Err(if len <= HEADER_LEN as u64 {
                Error::TooShort { len: len as usize }
            } else {
                Error::NoMetadata { len }
            });
        }
        rec.settle()?;
        Ok(rec)
    }

    fn source(&self) -> Result<&dyn ByteSource, Error> {
        self.src.as_deref().ok_or(Error::NoSource)
    }

    /// The trailer of a cleanly closed file and its offset; `None` for anything else.
    pub(crate) fn trailer(&self, len: u64) -> Option<(Trailer, u64)> {
        let src = self.source().ok()?;
        let footer_len = (crate::CHUNK_HEADER_LEN + 8) as u64;
        let footer_at = len.checked_sub(footer_len).filter(|&a| a >= HEADER_LEN as u64)?;
        let footer = read_exact(src, footer_at, footer_len as usize).ok()?;
        let chunk = read_chunk(&footer, 0, footer_at, self.version).ok()??;
        if chunk.known_tag() != Some(Tag::Footer) {
            return None;
        }
        let at = u64::from_le_bytes(chunk.payload().ok()?.try_into().ok()?);
        let trailer_len = footer_at.checked_sub(at).filter(|_| at >= HEADER_LEN as u64)?;
        let bytes = read_exact(src, at, usize::try_from(trailer_len).ok()?).ok()?;
        let chunk = read_chunk(&bytes, 0, at, self.version).ok()??;
        if chunk.known_tag() != Some(Tag::Trailer) || chunk.len() as u64 != trailer_len {
            return None;
        }
        Some((postcard::from_bytes(&chunk.payload().ok()?).ok()?, at))
    }

    /// Opens a closed file from its trailer's index: reads the chunks needed now in a few
    /// merged reads, and notes where the events and base intervals are. An index that does
    /// not describe the file is ignored and the file scanned instead.
    fn read_indexed(&mut self, trailer: Trailer, trailer_at: u64) -> Result<(), Error> {
        let index = &trailer.index;
        let ordered = index.windows(2).all(|w| w[0].offset < w[1].offset)
            && index.first().is_some_and(|e| e.offset == HEADER_LEN as u64)
            && index.last().is_none_or(|e| e.offset < trailer_at);
        if !ordered {
            return self.scan(HEADER_LEN as u64, trailer_at);
        }
        let refs = index_refs(index, trailer_at);
        for &(tag, chunk) in &refs {
            match tag {
                Some(Tag::Events) => self.events.push(chunk),
                Some(Tag::Intervals) => self.intervals.push(chunk),
                None => self.unknown_chunks += 1,
                _ => {}
            }
        }
        let src = Arc::clone(self.src.as_ref().ok_or(Error::NoSource)?);
        let gathered: Vec<ChunkRef> =
            refs.iter().filter(|(tag, _)| *tag == Some(Tag::Gathered)).map(|&(_, c)| c).collect();
        // With the directory gathered at the end, the chunks of every flush are not read.
        let gathered = !gathered.is_empty() && self.gather(&*src, &gathered);
        let read_now = |tag| {
            tag == Some(Tag::Digest)
                || tag == Some(Tag::Processes)
                || if gathered { tag == Some(Tag::Meta) } else { directory(tag) }
        };
        let wanted: Vec<usize> = (0..refs.len()).filter(|&i| read_now(refs[i].0)).collect();
        let merge_gap = src.merge_gap();
        let mut at = 0;
        while at < wanted.len() {
            // One read for the next chunks read at open while the gaps between them are small.
            let first = refs[wanted[at]].1;
            let mut last = at;
            while last + 1 < wanted.len() {
                let (prev, next) = (refs[wanted[last]].1, refs[wanted[last + 1]].1);
                let gap = next.offset - (prev.offset + prev.len);
                if gap >= merge_gap || next.offset + next.len - first.offset > MERGED_READ_MAX {
                    break;
                }
                last += 1;
            }
            let end = refs[wanted[last]].1;
            let span = end.offset + end.len - first.offset;
            let bytes = read_exact(&*src, first.offset, span as usize).map_err(|d| {
                Error::corrupt("recording", first.offset, format!("cannot be read: {d}"))
            })?;
            for &i in &wanted[at..=last] {
                let pos = (refs[i].1.offset - first.offset) as usize;
                let bytes = &bytes[..pos + refs[i].1.len as usize];
                if !self.take_at(bytes, pos, first.offset)? {
                    return Ok(());
                }
            }
            at = last + 1;
        }
        self.summary = trailer.summary;
        self.has_trailer = true;
        Ok(())
    }

    /// Reads the directory (but the metadata) from the Gathered chunks `chunks`, in one read,
    /// instead of from the chunks of every flush. False, with nothing changed, when they
    /// cannot be read: the file is then read as if they were not there.
    fn gather(&mut self, src: &dyn ByteSource, chunks: &[ChunkRef]) -> bool {
        let Some(copy) = self.gathered(src, chunks) else { return false };
        self.adopt_directory(copy);
        true
    }

    /// The directory (but the metadata) that the Gathered chunks `chunks` hold, if they can
    /// be read.
    fn gathered(&self, src: &dyn ByteSource, chunks: &[ChunkRef]) -> Option<Recording> {
        let (first, last) = (chunks.first()?.offset, chunks.last()?);
        let span = usize::try_from(last.offset + last.len - first).ok()?;
        let bytes = read_exact(src, first, span).ok()?;
        let mut copy = Recording::empty(self.version, None);
        let mut take = |c: &ChunkRef| -> Option<()> {
            let pos = usize::try_from(c.offset - first).ok()?;
            let end = pos.checked_add(usize::try_from(c.len).ok()?)?;
            let chunk = read_chunk(bytes.get(..end)?, pos, first, self.version).ok()??;
            let raw = chunk.payload().ok()?;
            for (tag, payload) in gathered_entries(&raw).ok()? {
                match Tag::from_u8(tag) {
                    Some(tag) if tag != Tag::Meta && directory(Some(tag)) => {
                        copy.take_payload(tag, payload, c.offset, c.len).ok()?;
                    }
                    // A kind of chunk this reader does not know, or has no use for here.
                    _ => {}
                }
            }
            Some(())
        };
        chunks.iter().all(|c| take(c).is_some()).then_some(copy)
    }

    /// Takes the directory (but the metadata) of `copy`.
    fn adopt_directory(&mut self, copy: Recording) {
        self.strings = copy.strings;
        self.frames = copy.frames;
        self.stacks = copy.stacks;
        self.threads = copy.threads;
        self.samples = copy.samples;
        self.markers = copy.markers;
        self.spans = copy.spans;
        self.gcs = copy.gcs;
        self.censuses = copy.censuses;
        self.caches = copy.caches;
        self.end = copy.end;
    }

    /// Whether the directory of `other` is this one's (the metadata aside).
    fn same_directory(&self, other: &Recording) -> bool {
        self.strings == other.strings
            && self.frames == other.frames
            && self.stacks == other.stacks
            && self.threads == other.threads
            && self.samples == other.samples
            && self.markers == other.markers
            && self.spans == other.spans
            && self.gcs == other.gcs
            && self.censuses == other.censuses
            && self.caches == other.caches
            && self.end == other.end
    }

    /// For `memlens check`: whether the Gathered chunks of a closed file copy the chunks of
    /// every flush exactly (`None` when the file has no trailer or no Gathered chunk). Reads
    /// every chunk of the directory one by one.
    pub fn gathered_agrees(&self) -> Result<Option<bool>, Error> {
        let src = self.source()?;
        let Some((trailer, trailer_at)) = self.trailer(src.len()) else { return Ok(None) };
        let refs = index_refs(&trailer.index, trailer_at);
        let gathered: Vec<ChunkRef> =
            refs.iter().filter(|(tag, _)| *tag == Some(Tag::Gathered)).map(|&(_, c)| c).collect();
        if gathered.is_empty() {
            return Ok(None);
        }
        let Some(copy) = self.gathered(src, &gathered) else { return Ok(Some(false)) };
        let mut flushed = Recording::empty(self.version, None);
        for &(_, c) in refs.iter().filter(|(tag, _)| *tag != Some(Tag::Meta) && directory(*tag)) {
            let bytes = read_exact(src, c.offset, usize::try_from(c.len).unwrap_or(usize::MAX))
                .map_err(Error::Read)?;
            match read_chunk(&bytes, 0, c.offset, self.version) {
                Ok(Some(raw)) => flushed.take_chunk(&raw)?,
                _ => return Ok(Some(false)),
            }
        }
        Ok(Some(copy.same_directory(&flushed)))
    }

    /// Reads and applies the chunk at `pos` of `bytes` (which start at file offset `base`);
    /// false when it was damaged (reading stops there, see [`Recording::truncation`]).
    fn take_at(&mut self, bytes: &[u8], pos: usize, base: u64) -> Result<bool, Error> {
        let offset = base + pos as u64;
        let chunk = match read_chunk(bytes, pos, base, self.version) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(true),
            Err(reason) => {
                self.stop_at(offset, reason)?;
                return Ok(false);
            }
        };
        let first = offset == HEADER_LEN as u64;
        let result = if first != (chunk.known_tag() == Some(Tag::Meta)) {
            Err(Error::corrupt("metadata", offset, "the first chunk must be the metadata"))
        } else {
            self.take_chunk(&chunk)
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if first => Err(e),
            Err(e) => {
                self.stop_at(offset, e.to_string())?;
                Ok(false)
            }
        }
    }

    /// Notes that reading stopped at `offset`, and forgets the chunks found after it.
    fn stop_at(&mut self, offset: u64, reason: String) -> Result<(), Error> {
        if offset <= HEADER_LEN as u64 {
            let len = self.source()?.len();
            return Err(Error::NoMetadata { len });
        }
        self.events.retain(|c| c.offset < offset);
        self.intervals.retain(|c| c.offset < offset);
        self.pieces.retain(|p| p.at + p.len <= offset);
        self.truncation = Some(Truncation { offset, reason });
        Ok(())
    }

    /// Walks the chunks from `from` to `len`: checks each one, reads and applies those read at
    /// open and the base intervals (their figures and the nodes above them), and notes where
    /// the event chunks are. (It reads the whole file once, as a file without a trailer must.)
    fn scan(&mut self, from: u64, len: u64) -> Result<(), Error> {
        let src = Arc::clone(self.src.as_ref().ok_or(Error::NoSource)?);
        let mut window = Window { src: &*src, len, base: from, bytes: Vec::new() };
        let mut pos = from;
        let stop = loop {
            if pos >= len {
                break None;
            }
            let head = window.get(pos, crate::CHUNK_HEADER_LEN)?;
            let header = match ChunkHeader::parse(head) {
                Ok(h) => h,
                Err(reason) => break Some(reason),
            };
            let total = header.total_len();
            if pos + total > len {
                let left = (len - pos).saturating_sub(crate::CHUNK_HEADER_LEN as u64);
                break Some(format!("chunk of {} bytes but only {left} remain", header.stored_len));
            }
            let tag = Tag::from_u8(header.tag);
            let chunk = ChunkRef { offset: pos, len: total, ..ChunkRef::default() };
            // Every chunk's checksum is checked (not its contents, for events): a damaged
            // length would send the walk astray.
            let whole = window.get(pos, total as usize)?;
            if !header.intact(whole, self.version) {
                break Some("chunk checksum mismatch".into());
            }
            match tag {
                Some(Tag::Events) => self.events.push(chunk),
                Some(Tag::Substream) => self.note_piece(whole, pos),
                None => self.unknown_chunks += 1,
                _ => {}
            }
            if tag == Some(Tag::Trailer) {
                // A recording being followed was closed: its summary is final.
                let bytes = window.get(pos, total as usize)?.to_vec();
                if let Ok(Some(chunk)) = read_chunk(&bytes, 0, pos, self.version) {
                    let trailer = chunk
                        .payload()
                        .ok()
                        .and_then(|raw| postcard::from_bytes::<Trailer>(&raw).ok());
                    if let Some(trailer) = trailer {
                        self.summary = trailer.summary;
                        self.has_trailer = true;
                    }
                }
            }
            if directory(tag) || tag == Some(Tag::Intervals) {
                let bytes = window.get(pos, total as usize)?.to_vec();
                if !self.take_at(&bytes, 0, pos)? {
                    self.scan_from = self.truncation.as_ref().map(|t| t.offset);
                    return Ok(());
                }
                if tag == Some(Tag::Intervals) {
                    self.intervals.push(chunk);
                }
            }
            pos += total;
        };
        if let Some(reason) = stop {
            self.stop_at(pos, reason)?;
        }
        self.scan_from = (!self.has_trailer).then_some(pos);
        Ok(())
    }

    /// Applies one chunk read at open (or a base interval's, while scanning). Gathered
    /// chunks are not: they copy chunks the file has anyway (see [`Recording::gather`]).
    /// Notes the piece of another process's stream that the Substream chunk `whole` (its
    /// header and stored bytes, checked) found at `pos` carries. Only stored pieces can be
    /// read in place; a compressed one, or one that does not decode, is left out (its
    /// stream then ends before it).
    fn note_piece(&mut self, whole: &[u8], pos: u64) {
        let header = crate::CHUNK_HEADER_LEN;
        if whole.get(1) != Some(&0) || whole.len() < header {
            return;
        }
        if let Ok((process, offset, start)) = crate::processes::decode_piece(&whole[header..]) {
            let at = pos + (header + start) as u64;
            let len = (whole.len() - header - start) as u64;
            self.pieces.push(crate::Piece { process, offset, at, len });
        }
    }

    fn take_chunk(&mut self, chunk: &RawChunk) -> Result<(), Error> {
        let Some(tag) = chunk.known_tag() else { return Ok(()) };
        if matches!(tag, Tag::Events | Tag::Footer | Tag::Trailer | Tag::Gathered) {
            return Ok(());
        }
        self.take_payload(tag, &chunk.payload()?, chunk.offset, chunk.len() as u64)
    }

    /// Applies the raw payload of a chunk of `tag` and `len` bytes found at `at`.
    fn take_payload(&mut self, tag: Tag, raw: &[u8], at: u64, len: u64) -> Result<(), Error> {
        let bad = |what: &'static str| move |d: String| Error::corrupt(what, at, d);
        let postcard_err =
            |what: &'static str| move |e: postcard::Error| Error::corrupt(what, at, e.to_string());
        match tag {
            Tag::Meta => {
                self.meta = postcard::from_bytes(raw).map_err(postcard_err("metadata"))?;
                self.read_meta = true;
            }
            Tag::Strings => decode_strings(raw, &mut self.strings).map_err(bad("string table"))?,
            Tag::Frames => decode_frames(raw, &mut self.frames, self.strings.len(), self.version)
                .map_err(bad("frame table"))?,
            Tag::Stacks => decode_stacks(raw, &mut self.stacks, self.frames.len(), self.version)
                .map_err(bad("stack table"))?,
            Tag::Threads => {
                let threads: Vec<ThreadInfo> =
                    postcard::from_bytes(raw).map_err(postcard_err("thread table"))?;
                for t in threads {
                    let i = t.id.index();
                    if i < self.threads.len() {
                        self.threads[i] = t;
                    } else if i == self.threads.len() {
                        self.threads.push(t);
                    } else {
                        return Err(Error::corrupt("thread table", at, "thread ids skip"));
                    }
                }
            }
            Tag::Samples => self.samples.extend(
                postcard::from_bytes::<Vec<MemorySample>>(raw).map_err(postcard_err("samples"))?,
            ),
            Tag::Markers => {
                let markers: Vec<Marker> =
                    postcard::from_bytes(raw).map_err(postcard_err("markers"))?;
                if self.version < SPAN_CHUNK_VERSION {
                    self.take_legacy_markers(markers);
                } else {
                    self.markers.extend(markers);
                }
            }
            Tag::Spans => self
                .spans
                .extend(postcard::from_bytes::<Vec<SpanEdge>>(raw).map_err(postcard_err("spans"))?),
            Tag::Gc => self
                .gcs
                .extend(postcard::from_bytes::<Vec<GcEvent>>(raw).map_err(postcard_err("gc"))?),
            Tag::Census => {
                let censuses: Vec<Census> =
                    postcard::from_bytes(raw).map_err(postcard_err("census"))?;
                let (strings, stacks) = (self.strings.len(), self.stack_count());
                for c in &censuses {
                    let bad_type = c.types.iter().any(|t| {
                        t.module.index() >= strings
                            || t.qualname.index() >= strings
                            || t.sites.iter().any(|s| s.stack.index() >= stacks)
                    });
                    if bad_type {
                        return Err(Error::corrupt("census", at, "undefined string or stack"));
                    }
                }
                self.censuses.extend(censuses);
            }
            Tag::Caches => {
                let caches: Vec<CacheCensus> =
                    postcard::from_bytes(raw).map_err(postcard_err("caches"))?;
                let strings = self.strings.len();
                if caches
                    .iter()
                    .any(|c| c.module.index() >= strings || c.qualname.index() >= strings)
                {
                    return Err(Error::corrupt("caches", at, "undefined string"));
                }
                self.caches.extend(caches);
            }
            Tag::Native => {
                self.native
                    .add(raw, self.frames.len(), self.version)
                    .map_err(bad("native frames"))?;
            }
            Tag::End => self.end = Some(postcard::from_bytes(raw).map_err(postcard_err("end"))?),
            Tag::Intervals => {
                let nodes =
                    decode_intervals(raw, self.threads.len(), self.stack_count(), self.version)
                        .map_err(bad("intervals"))?;
                let upper = match nodes.as_slice() {
                    [base] if base.level == 0 => self.pyramid.add(base),
                    _ => Vec::new(),
                };
                if let Err(why) = self.add_nodes(nodes, true).and(self.add_nodes(upper, false)) {
                    self.aggregates_damaged.get_or_insert(format!("{why} (at byte {at})"));
                }
            }
            Tag::Digest => {
                self.digest_len += len;
                let nodes =
                    decode_intervals(raw, self.threads.len(), self.stack_count(), self.version)
                        .map_err(bad("digest"))?;
                if let Err(why) = self.add_nodes(nodes, false) {
                    self.aggregates_damaged.get_or_insert(format!("{why} (at byte {at})"));
                }
            }
            Tag::Processes => {
                let pieces: Vec<crate::Piece> =
                    postcard::from_bytes(raw).map_err(postcard_err("processes"))?;
                crate::processes::check_pieces(&pieces, at).map_err(bad("processes"))?;
                self.pieces = pieces;
            }
            Tag::Events | Tag::Footer | Tag::Trailer | Tag::Gathered | Tag::Substream => {}
        }
        Ok(())
    }

    /// Markers of a file older than format 7, where spans were markers labelled
    /// `begin: NAME` and `end: NAME`: those become span edges, the others stay markers.
    fn take_legacy_markers(&mut self, markers: Vec<Marker>) {
        for m in markers {
            let edge = |side, name: &str| SpanEdge {
                time_ns: m.time_ns,
                thread: m.thread,
                side,
                name: name.to_owned(),
            };
            if let Some(name) = m.label.strip_prefix("begin: ") {
                self.spans.push(edge(SpanSide::Begin, name));
            } else if let Some(name) = m.label.strip_prefix("end: ") {
                self.spans.push(edge(SpanSide::End, name));
            } else {
                self.markers.push(m);
            }
        }
    }

    /// Files nodes read from an Intervals chunk (`base`: exactly one base interval) or the
    /// Digest (base intervals by their figures, nodes above whole). Each must come in order,
    /// and whole nodes must agree with their entries.
    fn add_nodes(&mut self, nodes: Vec<Interval>, base: bool) -> Result<(), String> {
        if base && (nodes.len() != 1 || nodes[0].level != 0) {
            return Err("an intervals chunk that is not one base interval".into());
        }
        for node in nodes {
            let whole = node.level > 0 || base;
            if whole && !node.is_consistent() {
                return Err(format!(
                    "interval {} of level {} disagrees with its own entries",
                    node.index, node.level
                ));
            }
            if node.level == 0 {
                if node.index as usize != self.shapes.len() {
                    return Err(format!("base interval {} out of order", node.index));
                }
                self.shapes.push(node.figures());
            } else {
                let j = usize::from(node.level) - 1;
                if self.upper.len() <= j {
                    self.upper.resize_with(j + 1, Vec::new);
                }
                if node.index as usize != self.upper[j].len() {
                    return Err(format!("interval of level {} out of order", node.level));
                }
                self.upper[j].push(Arc::new(node));
            }
        }
        Ok(())
    }

    /// After reading: checks that the aggregates describe the events, gives event chunks
    /// their times, and computes the summary of a file without a trailer.
    fn settle(&mut self) -> Result<(), Error> {
        self.aggregates_missing = self.aggregates_damaged.clone();
        if self.version < 4 {
            self.aggregates_missing = Some(format!(
                "it was written by an older memlens (format {}), without aggregates",
                self.version
            ));
        } else if self.aggregates_missing.is_none() {
            let n = self.intervals.len() as u64;
            let complete_levels = (1..self.upper.len() + 1)
                .all(|j| self.upper[j - 1].len() as u64 == n / Interval::span(j as u8))
                && n / Interval::span(self.upper.len() as u8 + 1) == 0;
            if self.shapes.len() as u64 != n || !complete_levels {
                self.aggregates_missing = Some(format!(
                    "its aggregates are incomplete ({} base intervals, {} with figures)",
                    n,
                    self.shapes.len()
                ));
            } else if self.events.len() > self.intervals.len() {
                self.aggregates_missing = Some(format!(
                    "it has {} event chunks but {} intervals",
                    self.events.len(),
                    self.intervals.len()
                ));
            }
        }
        if self.aggregates_missing.is_none() {
            for (c, s) in self.events.iter_mut().zip(&self.shapes) {
                (c.first_time_ns, c.last_time_ns) = (s.t_first, s.t_last);
            }
        }
        if !self.has_trailer {
            self.summary = match self.aggregates_missing {
                None => self.aggregates_summary()?,
                Some(_) => self.replay_summary()?,
            };
        }
        Ok(())
    }

    /// The summary computed from the interval aggregates: what a file without a trailer gets,
    /// and what `memlens check` compares the trailer against.
    pub fn aggregates_summary(&self) -> Result<Summary, Error> {
        let mut s = self.summary_of_samples();
        let (mut alloc, mut freed) = (Totals::default(), Totals::default());
        for (level, index) in self.cover(0, self.base_count() as u64) {
            for e in &self.node(level, index)?.entries {
                alloc.merge(e.alloc);
                freed.merge(e.freed);
            }
        }
        for shape in &self.shapes {
            if shape.heap_max > s.peak_heap {
                (s.peak_heap, s.peak_heap_time_ns) = (shape.heap_max, shape.t_max);
            }
            s.duration_ns = s.duration_ns.max(shape.t_last);
        }
        s.end_heap = self.shapes.last().map_or(0, |n| n.heap_end);
        s.end_live_count = alloc.count.wrapping_sub(freed.count);
        (s.alloc_count, s.alloc_bytes, s.free_count) = (alloc.count, alloc.bytes, freed.count);
        Ok(s)
    }

    /// Peak RSS and the duration from the samples and the process end.
    fn summary_of_samples(&self) -> Summary {
        let mut s = Summary::default();
        for sample in &self.samples {
            if sample.rss > s.peak_rss {
                (s.peak_rss, s.peak_rss_time_ns) = (sample.rss, sample.time_ns);
            }
            s.duration_ns = s.duration_ns.max(sample.time_ns);
        }
        if let Some(end) = &self.end {
            s.duration_ns = s.duration_ns.max(end.time_ns);
        }
        s
    }

    /// The summary computed by replaying every event: what a file with neither trailer nor
    /// aggregates gets, and what `memlens check` compares the trailer against.
    pub fn replay_summary(&self) -> Result<Summary, Error> {
        let mut s = self.summary_of_samples();
        let mut live: crate::addr_hash::AddressMap<u64> = Default::default();
        let mut heap = 0u64;
        let blocks = self.block_count();
        let mut live_count = 0u64;
        self.for_each_event_chunk(|events| {
            for e in events {
                s.duration_ns = s.duration_ns.max(e.time_ns);
                // A re-created object's block stays live, with its size: nothing changes.
                if !e.kind.counts_in_heap() || e.is_recreation() {
                    continue;
                }
                match e.op {
                    crate::Op::Alloc => {
                        if let Some(old) = live.insert(e.address, e.size) {
                            heap = heap.wrapping_sub(old);
                            live_count = live_count.wrapping_sub(blocks.of(old));
                        }
                        heap = heap.wrapping_add(e.size);
                        // Saturating: a crafted file may state any rate.
                        s.alloc_count = s.alloc_count.saturating_add(blocks.of(e.size));
                        live_count = live_count.wrapping_add(blocks.of(e.size));
                        s.alloc_bytes = s.alloc_bytes.wrapping_add(e.size);
                        if heap > s.peak_heap {
                            (s.peak_heap, s.peak_heap_time_ns) = (heap, e.time_ns);
                        }
                    }
                    crate::Op::Free => {
                        if let Some(size) = live.remove(&e.address) {
                            heap = heap.wrapping_sub(size);
                            s.free_count = s.free_count.saturating_add(blocks.of(size));
                            live_count = live_count.wrapping_sub(blocks.of(size));
                        }
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        })?;
        s.end_heap = heap;
        s.end_live_count = live_count;
        Ok(s)
    }

    /// Reads what was appended to a file without a trailer since it was opened or last
    /// refreshed (a recording being written). Returns whether anything new was read.
    pub fn refresh(&mut self) -> Result<bool, Error> {
        let Some(from) = self.scan_from else { return Ok(false) };
        let len = self.source()?.len();
        let (events, intervals) = (self.events.len(), self.intervals.len());
        let (markers, spans, samples) = (self.markers.len(), self.spans.len(), self.samples.len());
        self.truncation = None;
        self.scan(from, len)?;
        self.settle()?;
        Ok(self.events.len() != events
            || self.intervals.len() != intervals
            || self.markers.len() != markers
            || self.spans.len() != spans
            || self.samples.len() != samples
            || self.end.is_some())
    }

    /// Reads nothing from `offset` on: forgets the event chunks and base intervals there and
    /// after, as if the file were cut short there ([`Recording::truncation`] says so, with
    /// `reason`), and stops using the aggregates, which would disagree with the events left.
    /// For a reader that replays every event and found a damaged chunk at `offset`
    /// ([`Recording::verify_chunks`]): a replay cannot go past it. Nothing changes for an
    /// offset within the header.
    pub fn stop_before(&mut self, offset: u64, reason: impl Into<String>) {
        if offset <= HEADER_LEN as u64 {
            return;
        }
        self.events.retain(|c| c.offset < offset);
        self.intervals.retain(|c| c.offset < offset);
        self.pieces.retain(|p| p.at + p.len <= offset);
        self.truncation = Some(Truncation { offset, reason: reason.into() });
        self.aggregates_missing = Some(format!("the file is damaged at byte {offset}"));
    }
}

/// What a recording holds, for readers.
impl Recording {
    /// The format version of the file.
    pub fn format_version(&self) -> u16 {
        self.version
    }

    /// Recording metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// What each heap block counts in this recording's counts of allocations and blocks,
    /// which every reader that counts blocks itself must use to agree with the aggregates:
    /// in a sampled recording of format 8 or later the blocks it stands for, else 1.
    pub fn block_count(&self) -> BlockCount {
        match self.meta.sample_bytes() {
            Some(rate) if self.version >= SAMPLED_COUNTS_VERSION => BlockCount::sampled(rate),
            _ => BlockCount::EXACT,
        }
    }

    /// The allocators this recording's aggregates charge blocks to (kept apart from format
    /// 8 on): what readers that replay events use, to agree with the aggregates.
    pub fn entry_allocators(&self) -> EntryAllocators {
        if self.version >= ALLOCATOR_ENTRIES_VERSION {
            EntryAllocators::APART
        } else {
            EntryAllocators::NONE
        }
    }

    /// Whole-recording figures: from the trailer, or computed from the aggregates (or by a
    /// replay of the events, for older files) when the file has none.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Whether the file was closed cleanly with a trailer.
    pub fn has_trailer(&self) -> bool {
        self.has_trailer
    }

    /// Set when the file ended early or had a damaged chunk: everything before it was read.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }

    /// Whether the recording is whole: closed cleanly with a trailer, and read to its end
    /// (no [`Self::truncation`]). What gates and exports require.
    pub fn is_complete(&self) -> bool {
        self.truncation.is_none() && self.has_trailer
    }

    /// How the process ended, when the recording says.
    pub fn end(&self) -> Option<&ProcessEnd> {
        self.end.as_ref()
    }

    /// Chunks with tags this reader does not know (written by a newer memlens) that were skipped.
    pub fn unknown_chunks(&self) -> usize {
        self.unknown_chunks
    }

    /// Whether the recording holds only aggregates, no events (`memlens run --aggregate`).
    pub fn aggregate_only(&self) -> bool {
        self.version >= 4 && self.events.is_empty() && !self.intervals.is_empty()
    }

    /// `None` when analyses can use the interval aggregates; otherwise why not (they then
    /// replay the events).
    pub fn aggregates_missing(&self) -> Option<&str> {
        self.aggregates_missing.as_deref()
    }

    /// Interned string by id (`""` for an unknown id).
    pub fn string(&self, id: crate::StringId) -> &str {
        self.strings.get(id.index()).map_or("", String::as_str)
    }

    /// All frames.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// A frame by id.
    pub fn frame(&self, id: FrameId) -> Option<&Frame> {
        self.frames.get(id.index())
    }

    /// Whether a frame is a native (C, C++, Rust) function rather than a Python one
    /// (`memlens run --native-stacks`).
    pub fn is_native_frame(&self, id: FrameId) -> bool {
        self.native.is_native(id)
    }

    /// Whether a frame is a native function of the interpreter itself (the python
    /// executable, libpython) or of the C library: CPython's internals, which views hide
    /// with the import system's frames (format 7; before, the collector left them out).
    pub fn is_runtime_frame(&self, id: FrameId) -> bool {
        self.native.is_runtime(id)
    }

    /// The modules of the traced process that native frames were found in.
    pub fn native_modules(&self) -> &[crate::NativeModule] {
        &self.native.modules
    }

    /// Number of stack ids, the root included.
    pub fn stack_count(&self) -> usize {
        self.stacks.len() + 1
    }

    /// The node of a stack (`None` for the root or an unknown id).
    pub fn stack(&self, id: StackId) -> Option<&StackNode> {
        id.index().checked_sub(1).and_then(|i| self.stacks.get(i))
    }

    /// Frames of a stack, innermost first.
    pub fn stack_frames(&self, id: StackId) -> impl Iterator<Item = FrameId> + '_ {
        let mut at = id;
        std::iter::from_fn(move || {
            let node = self.stack(at)?;
            at = node.parent;
            Some(node.frame)
        })
    }

    /// Threads, indexed by [`ThreadId`].
    pub fn threads(&self) -> &[ThreadInfo] {
        &self.threads
    }

    /// A thread by id.
    pub fn thread(&self, id: ThreadId) -> Option<&ThreadInfo> {
        self.threads.get(id.index())
    }

    /// Process memory samples, in time order.
    pub fn samples(&self) -> &[MemorySample] {
        &self.samples
    }

    /// User markers, in time order.
    pub fn markers(&self) -> &[Marker] {
        &self.markers
    }

    /// Where spans begin and end, in time order (see `memlens_analysis::spans` for them
    /// paired).
    pub fn span_edges(&self) -> &[SpanEdge] {
        &self.spans
    }

    /// Garbage collector runs, in time order.
    pub fn gc_events(&self) -> &[GcEvent] {
        &self.gcs
    }

    /// Object censuses, in time order.
    pub fn censuses(&self) -> &[Census] {
        &self.censuses
    }

    /// `functools.lru_cache` wrappers seen by the censuses, in time order.
    pub fn caches(&self) -> &[CacheCensus] {
        &self.caches
    }
}

/// Events and intervals, read from the source on demand.
impl Recording {
    /// Number of event chunks.
    pub fn event_chunk_count(&self) -> usize {
        self.events.len()
    }

    /// Where event chunk `i` is, and its time span when known (always for files with
    /// aggregates).
    pub fn event_chunk(&self, i: usize) -> Option<&ChunkRef> {
        self.events.get(i)
    }

    /// Whether [`Recording::event_chunk`] gives each chunk's time span: from the trailer's
    /// index or the aggregates.
    pub fn event_times_known(&self) -> bool {
        self.has_trailer || self.aggregates_missing.is_none()
    }

    /// Number of events, when the trailer or the aggregates say (0 otherwise).
    pub fn indexed_event_count(&self) -> u64 {
        self.events.iter().map(|c| c.count).sum()
    }

    /// Reads and decompresses the chunk `c`.
    fn payload(&self, c: &ChunkRef, what: &'static str) -> Result<Vec<u8>, Error> {
        let bad = |d: String| Error::corrupt(what, c.offset, d);
        let len = usize::try_from(c.len).map_err(|_| bad("too large".into()))?;
        let bytes = read_exact(self.source()?, c.offset, len).map_err(Error::Read)?;
        match read_chunk(&bytes, 0, c.offset, self.version).map_err(bad)? {
            Some(chunk) => chunk.payload(),
            None => Err(bad("empty".into())),
        }
    }

    /// Decodes event chunk `i`, appending its events to `out`.
    pub fn decode_event_chunk(&self, i: usize, out: &mut Vec<Event>) -> Result<(), Error> {
        let Some(chunk) = self.events.get(i) else { return Ok(()) };
        let raw = self.payload(chunk, "event chunk")?;
        decode_events(&raw, out, self.threads.len(), self.stack_count(), self.version)
            .map_err(|d| Error::corrupt("event chunk", chunk.offset, d))
    }

    /// Calls `f` with every event in order, one decoded chunk at a time. Natively, the chunks
    /// of a recording of some size are read and decoded on a second thread while `f` runs (a
    /// full replay then takes about the time of the slower of the two).
    pub fn for_each_event_chunk(
        &self,
        mut f: impl FnMut(&[Event]) -> std::ops::ControlFlow<()>,
    ) -> Result<(), Error> {
        #[cfg(not(target_arch = "wasm32"))]
        if self.events.len() > 1
            && self.events.iter().map(|c| c.len).sum::<u64>() >= DECODE_AHEAD_BYTES
        {
            return std::thread::scope(|s| {
                // A few decoded chunks ahead at most: memory stays bounded.
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                s.spawn(move || {
                    for i in 0..self.events.len() {
                        let mut buf = Vec::new();
                        let decoded = self.decode_event_chunk(i, &mut buf).map(|()| buf);
                        if tx.send(decoded).is_err() {
                            break;
                        }
                    }
                });
                for events in rx {
                    if f(&events?).is_break() {
                        break;
                    }
                }
                Ok(())
            });
        }
        let mut buf = Vec::new();
        for i in 0..self.events.len() {
            buf.clear();
            self.decode_event_chunk(i, &mut buf)?;
            if f(&buf).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Where base interval `i`'s chunk is.
    pub fn interval_chunk(&self, i: usize) -> Option<&ChunkRef> {
        self.intervals.get(i)
    }

    /// Bytes of the Digest chunks (0 when the file has none).
    pub fn digest_len(&self) -> u64 {
        self.digest_len
    }

    /// Number of base intervals.
    pub fn base_count(&self) -> usize {
        self.shapes.len()
    }

    /// The heap figures of base interval `i` (no entries: see [`Recording::node`]).
    pub fn base_shape(&self, i: usize) -> Option<&Interval> {
        self.shapes.get(i)
    }

    /// The heap figures of every base interval, in order.
    pub fn base_shapes(&self) -> &[Interval] {
        &self.shapes
    }

    /// The pyramid nodes of `level` (1 and up) held in memory.
    pub fn level(&self, level: u8) -> &[Arc<Interval>] {
        usize::from(level).checked_sub(1).and_then(|j| self.upper.get(j)).map_or(&[], Vec::as_slice)
    }

    /// The pyramid node of `level` and `index`, entries included: nodes above the base are in
    /// memory, base intervals are read from their chunks (and kept for a while).
    pub fn node(&self, level: u8, index: u32) -> Result<Arc<Interval>, Error> {
        if level > 0 {
            return self.level(level).get(index as usize).cloned().ok_or_else(|| {
                Error::corrupt("intervals", 0, format!("no node {index} at level {level}"))
            });
        }
        let i = index as usize;
        if let Some(n) = self.cache.lock().map_err(|_| Error::NoSource)?.get(&i) {
            return Ok(Arc::clone(n));
        }
        let chunk = self
            .intervals
            .get(i)
            .ok_or_else(|| Error::corrupt("intervals", 0, format!("no base interval {index}")))?;
        let raw = self.payload(chunk, "intervals")?;
        let bad = |d: String| Error::corrupt("intervals", chunk.offset, d);
        let node = decode_intervals(&raw, self.threads.len(), self.stack_count(), self.version)
            .map_err(bad)?
            .into_iter()
            .next()
            .filter(|n| n.level == 0 && n.index == index && n.is_consistent())
            .ok_or_else(|| bad(format!("base interval {index} is not where the index says")))?;
        let node = Arc::new(node);
        let mut cache = self.cache.lock().map_err(|_| Error::NoSource)?;
        if cache.len() >= NODE_CACHE {
            cache.clear();
        }
        cache.insert(i, Arc::clone(&node));
        Ok(node)
    }

    /// The fewest pyramid nodes that together cover base intervals `a..b`, in order, as
    /// (level, index): at most 7 of each level.
    pub fn cover(&self, a: u64, b: u64) -> Vec<(u8, u32)> {
        let b = b.min(self.shapes.len() as u64);
        let mut out = Vec::new();
        let mut at = a;
        while at < b {
            let mut level = 0u8;
            loop {
                let up = level + 1;
                let span = Interval::span(up);
                let exists = (at / span) < self.level(up).len() as u64;
                if at % span != 0 || at + span > b || !exists {
                    break;
                }
                level = up;
            }
            out.push((level, (at / Interval::span(level)) as u32));
            at += Interval::span(level);
        }
        out
    }
}

/// A read-ahead window over a source, for walking chunk headers with few reads.
struct Window<'a> {
    src: &'a dyn ByteSource,
    len: u64,
    base: u64,
    bytes: Vec<u8>,
}

impl Window<'_> {
    /// The bytes `[at, at + n)`, fewer where the source ends.
    fn get(&mut self, at: u64, n: usize) -> Result<&[u8], Error> {
        let end = self.base + self.bytes.len() as u64;
        if at < self.base || at + n as u64 > end {
            let left = usize::try_from(self.len.saturating_sub(at)).unwrap_or(usize::MAX);
            self.bytes = self.src.read_at(at, n.max(SCAN_READ).min(left.max(n)))?;
            self.base = at;
        }
        let start = (at - self.base) as usize;
        Ok(&self.bytes[start.min(self.bytes.len())..(start + n).min(self.bytes.len())])
    }
}
