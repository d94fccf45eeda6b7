//! [`Recording`]: a recording opened from bytes. Tables are decoded at open; event chunks stay
//! compressed and are decoded one at a time by the analyses, so memory stays near the file size.

use crate::chunk::{check_header, read_chunk, RawChunk, Tag};
use crate::tables::{decode_events, decode_frames, decode_stacks, decode_strings};
use crate::{
    CacheCensus, Census, Error, Event, Frame, FrameId, GcEvent, Marker, MemorySample, Meta,
    ProcessEnd, StackId, StackNode, Summary, ThreadId, ThreadInfo, Trailer,
};

/// Where and why reading stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Byte offset of the first chunk that could not be read.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
}

/// One event chunk, still compressed.
#[derive(Debug, Clone, Copy)]
struct EventChunk {
    /// Offset of the chunk header in `bytes`.
    offset: usize,
    count: u64,
}

/// A decoded recording.
#[derive(Debug, Clone)]
pub struct Recording {
    bytes: Vec<u8>,
    version: u16,
    meta: Meta,
    strings: Vec<String>,
    frames: Vec<Frame>,
    /// `stacks[i]` is `StackId(i + 1)`; `StackId::ROOT` has no node.
    stacks: Vec<StackNode>,
    threads: Vec<ThreadInfo>,
    samples: Vec<MemorySample>,
    markers: Vec<Marker>,
    gcs: Vec<GcEvent>,
    censuses: Vec<Census>,
    caches: Vec<CacheCensus>,
    end: Option<ProcessEnd>,
    event_chunks: Vec<EventChunk>,
    summary: Summary,
    has_trailer: bool,
    truncation: Option<Truncation>,
    unknown_chunks: usize,
}

impl Recording {
    /// Opens a recording from a copy of `bytes`. See [`Recording::from_vec`].
    pub fn open(bytes: &[u8]) -> Result<Recording, Error> {
        Recording::from_vec(bytes.to_vec())
    }

    /// Opens a recording, taking ownership of its bytes.
    ///
    /// A file cut short (crash, full disk, partial download) opens with everything up to the
    /// last whole chunk, and [`Recording::truncation`] says where it stopped. Errors are only
    /// returned when not even the header and metadata can be read.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Recording, Error> {
        let version = check_header(&bytes)?;
        let mut rec = Recording {
            bytes: Vec::new(),
            version,
            meta: Meta::default(),
            strings: Vec::new(),
            frames: Vec::new(),
            stacks: Vec::new(),
            threads: Vec::new(),
            samples: Vec::new(),
            markers: Vec::new(),
            gcs: Vec::new(),
            censuses: Vec::new(),
            caches: Vec::new(),
            end: None,
            event_chunks: Vec::new(),
            summary: Summary::default(),
            has_trailer: false,
            truncation: None,
            unknown_chunks: 0,
        };
        let mut offset = crate::chunk::HEADER_LEN;
        let mut saw_meta = false;
        loop {
            let chunk = match read_chunk(&bytes, offset) {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(reason) => {
                    rec.truncation = Some(Truncation { offset: offset as u64, reason });
                    break;
                }
            };
            if !saw_meta {
                if chunk.known_tag() != Some(Tag::Meta) {
                    return Err(Error::corrupt(
                        "metadata",
                        offset as u64,
                        "first chunk is not metadata",
                    ));
                }
                saw_meta = true;
            }
            if let Err(e) = rec.take_chunk(&chunk) {
                rec.truncation = Some(Truncation { offset: offset as u64, reason: e.to_string() });
                if rec.strings.is_empty() && chunk.known_tag() == Some(Tag::Meta) {
                    return Err(e);
                }
                break;
            }
            offset += chunk.len();
        }
        if !saw_meta {
            return Err(Error::TooShort { len: bytes.len() });
        }
        rec.bytes = bytes;
        if !rec.has_trailer {
            rec.summary = crate::analysis::summarize(&rec)?;
        }
        Ok(rec)
    }

    fn take_chunk(&mut self, chunk: &RawChunk) -> Result<(), Error> {
        let Some(tag) = chunk.known_tag() else {
            self.unknown_chunks += 1;
            return Ok(());
        };
        let at = chunk.offset;
        let bad = |what: &'static str| move |d: String| Error::corrupt(what, at, d);
        let postcard_err =
            |what: &'static str| move |e: postcard::Error| Error::corrupt(what, at, e.to_string());
        match tag {
            Tag::Events => {
                self.event_chunks.push(EventChunk { offset: at as usize, count: 0 });
                return Ok(());
            }
            Tag::Footer => return Ok(()),
            _ => {}
        }
        let raw = chunk.payload()?;
        match tag {
            Tag::Meta => {
                self.meta = postcard::from_bytes(&raw).map_err(postcard_err("metadata"))?
            }
            Tag::Strings => decode_strings(&raw, &mut self.strings).map_err(bad("string table"))?,
            Tag::Frames => decode_frames(&raw, &mut self.frames, self.strings.len(), self.version)
                .map_err(bad("frame table"))?,
            Tag::Stacks => decode_stacks(&raw, &mut self.stacks, self.frames.len(), self.version)
                .map_err(bad("stack table"))?,
            Tag::Threads => {
                let threads: Vec<ThreadInfo> =
                    postcard::from_bytes(&raw).map_err(postcard_err("thread table"))?;
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
                postcard::from_bytes::<Vec<MemorySample>>(&raw).map_err(postcard_err("samples"))?,
            ),
            Tag::Markers => self.markers.extend(
                postcard::from_bytes::<Vec<Marker>>(&raw).map_err(postcard_err("markers"))?,
            ),
            Tag::Gc => self
                .gcs
                .extend(postcard::from_bytes::<Vec<GcEvent>>(&raw).map_err(postcard_err("gc"))?),
            Tag::Census => {
                let censuses: Vec<Census> =
                    postcard::from_bytes(&raw).map_err(postcard_err("census"))?;
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
                    postcard::from_bytes(&raw).map_err(postcard_err("caches"))?;
                let strings = self.strings.len();
                if caches
                    .iter()
                    .any(|c| c.module.index() >= strings || c.qualname.index() >= strings)
                {
                    return Err(Error::corrupt("caches", at, "undefined string"));
                }
                self.caches.extend(caches);
            }
            Tag::End => self.end = Some(postcard::from_bytes(&raw).map_err(postcard_err("end"))?),
            Tag::Trailer => {
                let trailer: Trailer =
                    postcard::from_bytes(&raw).map_err(postcard_err("trailer"))?;
                self.summary = trailer.summary;
                for entry in trailer.index.iter().filter(|e| e.tag == Tag::Events as u8) {
                    if let Some(c) =
                        self.event_chunks.iter_mut().find(|c| c.offset as u64 == entry.offset)
                    {
                        c.count = entry.count;
                    }
                }
                self.has_trailer = true;
            }
            Tag::Events | Tag::Footer => unreachable!("handled above"),
        }
        Ok(())
    }

    /// The format version of the file.
    pub fn format_version(&self) -> u16 {
        self.version
    }

    /// Recording metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Whole-recording aggregates: from the trailer, or computed by replay when the file has
    /// none (it was cut short).
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

    /// How the process ended, when the recording says.
    pub fn end(&self) -> Option<&ProcessEnd> {
        self.end.as_ref()
    }

    /// Chunks with tags this reader does not know (written by a newer memlens) that were skipped.
    pub fn unknown_chunks(&self) -> usize {
        self.unknown_chunks
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

    /// Number of event chunks.
    pub fn event_chunk_count(&self) -> usize {
        self.event_chunks.len()
    }

    /// Number of events, when the trailer says (0 otherwise).
    pub fn indexed_event_count(&self) -> u64 {
        self.event_chunks.iter().map(|c| c.count).sum()
    }

    /// Decodes event chunk `i`, appending its events to `out`.
    pub fn decode_event_chunk(&self, i: usize, out: &mut Vec<Event>) -> Result<(), Error> {
        let Some(chunk) = self.event_chunks.get(i) else { return Ok(()) };
        let raw = read_chunk(&self.bytes, chunk.offset)
            .ok()
            .flatten()
            .expect("event chunk was checked when the recording was opened")
            .payload()?;
        decode_events(&raw, out, self.threads.len(), self.stack_count(), self.version)
            .map_err(|d| Error::corrupt("event chunk", chunk.offset as u64, d))
    }

    /// Calls `f` with every event in order, one decoded chunk at a time.
    pub fn for_each_event_chunk(
        &self,
        mut f: impl FnMut(&[Event]) -> std::ops::ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut buf = Vec::new();
        for i in 0..self.event_chunks.len() {
            buf.clear();
            self.decode_event_chunk(i, &mut buf)?;
            if f(&buf).is_break() {
                break;
            }
        }
        Ok(())
    }
}
