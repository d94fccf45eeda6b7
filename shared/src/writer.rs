//! [`RecordingWriter`]: interns tables, encodes and compresses chunks, and keeps the running
//! aggregates that go into the trailer.

use std::io::Write;

use rustc_hash::FxHashMap;

use crate::chunk::{encode_chunk, header_bytes, Codec, Tag};
use crate::live::{Block, LiveBlocks, Prior};
use crate::tables::{encode_frames, encode_stacks, encode_strings, AddressRef, EventEncoder};
use crate::{
    AllocatorKind, CacheCensus, Census, Error, Event, Frame, FrameId, GcEvent, IndexEntry, Marker,
    MemorySample, Meta, Op, ProcessEnd, StackId, StackNode, StringId, Summary, ThreadId,
    ThreadInfo, Trailer,
};

/// Samples kept waiting for events at most: 256 is 2.5 s at the default 10 ms interval.
const MAX_WAITING_SAMPLES: usize = 256;

/// Tuning knobs for [`RecordingWriter`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Compression for every chunk.
    pub codec: Codec,
    /// Events per event chunk. Smaller chunks seek finer and lose less on a crash between
    /// flushes; larger ones compress slightly better.
    pub events_per_chunk: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        // 64 Ki events is ~400 KiB raw: big enough for zstd to find repeats across loop
        // iterations, small enough to decode progressively in the browser.
        WriterOptions { codec: Codec::Zstd, events_per_chunk: 64 * 1024 }
    }
}

/// Writes a recording to any [`Write`].
///
/// Interning calls return ids right away; the table entries are written before the first
/// chunk that can refer to them, so a file cut after any chunk is self-consistent.
/// Call [`RecordingWriter::flush`] periodically to make everything so far durable, and
/// [`RecordingWriter::finish`] at the end to add the trailer.
///
/// ```
/// use memlens_format::*;
/// let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
/// let f = w.intern_frame("main", "app.py", 3);
/// let stack = w.intern_stack(StackId::ROOT, f);
/// w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
/// w.alloc(1_000, ThreadId(0), stack, 0x1000, 64, AllocatorKind::PymallocObject).unwrap();
/// let bytes = w.finish(ProcessEnd { time_ns: 2_000, exit_code: Some(0), signal: None }).unwrap();
/// let rec = Recording::open(&bytes).unwrap();
/// assert_eq!(rec.summary().peak_heap, 64);
/// ```
pub struct RecordingWriter<W: Write> {
    out: W,
    options: WriterOptions,
    offset: u64,
    index: Vec<IndexEntry>,
    strings: FxHashMap<String, StringId>,
    string_count: u32,
    pending_strings: Vec<String>,
    frames: FxHashMap<Frame, FrameId>,
    pending_frames: Vec<Frame>,
    frame_count: u32,
    stacks: FxHashMap<StackNode, StackId>,
    pending_stacks: Vec<StackNode>,
    stack_count: u32,
    pending_threads: Vec<ThreadInfo>,
    events: EventEncoder,
    last_event_time: u64,
    samples: Vec<MemorySample>,
    /// Samples newer than the last event: their heap is filled in when the events up to their
    /// time have arrived (the collector's events reach the writer a few ms after the samples).
    waiting_samples: std::collections::VecDeque<MemorySample>,
    markers: Vec<Marker>,
    gcs: Vec<GcEvent>,
    censuses: Vec<Census>,
    caches: Vec<CacheCensus>,
    /// Heap blocks by address: the live ones, and tombstones of freed ones.
    live: LiveBlocks,
    heap: u64,
    summary: Summary,
    scratch: Vec<u8>,
}

impl<W: Write> RecordingWriter<W> {
    /// Starts a recording with default options: writes the header and metadata.
    pub fn new(out: W, meta: &Meta) -> Result<Self, Error> {
        Self::with_options(out, meta, WriterOptions::default())
    }

    /// Starts a recording with the given options.
    pub fn with_options(mut out: W, meta: &Meta, options: WriterOptions) -> Result<Self, Error> {
        let header = header_bytes();
        out.write_all(&header)?;
        let mut w = RecordingWriter {
            out,
            options,
            offset: header.len() as u64,
            index: Vec::new(),
            strings: FxHashMap::default(),
            string_count: 0,
            pending_strings: Vec::new(),
            frames: FxHashMap::default(),
            pending_frames: Vec::new(),
            frame_count: 0,
            stacks: FxHashMap::default(),
            pending_stacks: Vec::new(),
            stack_count: 1,
            pending_threads: Vec::new(),
            events: EventEncoder::default(),
            last_event_time: 0,
            samples: Vec::new(),
            waiting_samples: std::collections::VecDeque::new(),
            markers: Vec::new(),
            gcs: Vec::new(),
            censuses: Vec::new(),
            caches: Vec::new(),
            live: LiveBlocks::default(),
            heap: 0,
            summary: Summary::default(),
            scratch: Vec::new(),
        };
        w.write_postcard(Tag::Meta, meta, (0, 0, 1))?;
        w.out.flush()?;
        Ok(w)
    }

    /// Interns a string.
    pub fn intern_string(&mut self, s: &str) -> StringId {
        if let Some(&id) = self.strings.get(s) {
            return id;
        }
        let id = StringId(self.string_count);
        self.string_count += 1;
        self.strings.insert(s.to_owned(), id);
        self.pending_strings.push(s.to_owned());
        id
    }

    /// Interns a frame from its parts.
    pub fn intern_frame(&mut self, function: &str, file: &str, line: u32) -> FrameId {
        let frame =
            Frame { function: self.intern_string(function), file: self.intern_string(file), line };
        self.intern_frame_ids(frame)
    }

    /// Interns a frame whose strings are already interned.
    pub fn intern_frame_ids(&mut self, frame: Frame) -> FrameId {
        debug_assert!(frame.function.0 < self.string_count && frame.file.0 < self.string_count);
        *self.frames.entry(frame).or_insert_with(|| {
            self.pending_frames.push(frame);
            self.frame_count += 1;
            FrameId(self.frame_count - 1)
        })
    }

    /// Interns the stack `parent` + `frame`.
    pub fn intern_stack(&mut self, parent: StackId, frame: FrameId) -> StackId {
        debug_assert!(parent.0 < self.stack_count && frame.0 < self.frame_count);
        let node = StackNode { parent, frame };
        *self.stacks.entry(node).or_insert_with(|| {
            self.pending_stacks.push(node);
            self.stack_count += 1;
            StackId(self.stack_count - 1)
        })
    }

    /// Declares a thread, or renames one declared before.
    pub fn add_thread(&mut self, thread: ThreadInfo) {
        self.pending_threads.push(thread);
    }

    /// Records an allocation. Times that go backwards are clamped to the previous event's.
    pub fn alloc(
        &mut self,
        time_ns: u64,
        thread: ThreadId,
        stack: StackId,
        address: u64,
        size: u64,
        kind: AllocatorKind,
    ) -> Result<(), Error> {
        let time_ns = self.event_time(time_ns)?;
        let mut addr_ref = AddressRef::Explicit;
        if kind.counts_in_heap() {
            let chunk = self.events.chunk;
            let block = Block { size, stack, chunk, index: self.events.allocs() };
            match self.live.alloc(address, block) {
                // A free we never saw (e.g. through an unhooked path): replace, don't leak.
                Prior::Live(old) => self.heap -= old,
                Prior::Freed { chunk: c, index } if c == chunk => {
                    addr_ref = AddressRef::Freed(index)
                }
                Prior::Freed { .. } | Prior::Vacant => {}
            }
            self.heap += size;
            self.summary.alloc_count += 1;
            self.summary.alloc_bytes += size;
            if self.heap > self.summary.peak_heap {
                self.summary.peak_heap = self.heap;
                self.summary.peak_heap_time_ns = time_ns;
            }
        }
        let event = Event { op: Op::Alloc, kind, time_ns, thread, address, size, stack };
        self.push_event(event, addr_ref)
    }

    /// Records a free. Frees of heap blocks that are not live (allocated before tracing
    /// started, or freed twice) change nothing, so they are not written.
    pub fn free(
        &mut self,
        time_ns: u64,
        thread: ThreadId,
        address: u64,
        kind: AllocatorKind,
    ) -> Result<(), Error> {
        let time_ns = self.event_time(time_ns)?;
        let mut addr_ref = AddressRef::Explicit;
        if kind.counts_in_heap() {
            let chunk = self.events.chunk;
            let Some(b) = self.live.free(address, chunk, self.events.frees()) else {
                return Ok(());
            };
            self.heap -= b.size;
            self.summary.free_count += 1;
            if b.chunk == chunk {
                addr_ref = AddressRef::Allocated(b.index);
            }
        }
        let stack = StackId::ROOT;
        let event = Event { op: Op::Free, kind, time_ns, thread, address, size: 0, stack };
        self.push_event(event, addr_ref)
    }

    /// Records that a new object was made in the live block at `address` without an
    /// allocation (an object re-created from a free list): from now on the block is charged
    /// to `stack` and `thread` (an [`AllocatorKind::Recreated`] event). The heap and the
    /// allocation counts do not change. Nothing is written when no block is live there
    /// (allocated before tracing started) or when it is already charged to `stack`.
    pub fn recreate(
        &mut self,
        time_ns: u64,
        thread: ThreadId,
        stack: StackId,
        address: u64,
    ) -> Result<(), Error> {
        let Some((size, old)) = self.live.set_stack(address, stack) else { return Ok(()) };
        if old == stack {
            return Ok(());
        }
        let time_ns = self.event_time(time_ns)?;
        let kind = AllocatorKind::Recreated;
        let event = Event { op: Op::Alloc, kind, time_ns, thread, address, size, stack };
        self.push_event(event, AddressRef::Explicit)
    }

    /// The traced heap right now, in bytes.
    pub fn heap(&self) -> u64 {
        self.heap
    }

    /// Records a memory sample. Its `heap` field is set to the traced heap at the sample's
    /// time: right away if events have already reached that time, else when they do.
    pub fn memory_sample(&mut self, sample: MemorySample) -> Result<(), Error> {
        if sample.rss > self.summary.peak_rss {
            self.summary.peak_rss = sample.rss;
            self.summary.peak_rss_time_ns = sample.time_ns;
        }
        self.summary.duration_ns = self.summary.duration_ns.max(sample.time_ns);
        self.waiting_samples.push_back(sample);
        // Bound the wait: with no events for a while (an idle program) the heap is unchanged.
        if self.waiting_samples.len() > MAX_WAITING_SAMPLES {
            self.release_samples(u64::MAX, MAX_WAITING_SAMPLES / 2)?;
        }
        Ok(())
    }

    /// Gives the current heap to waiting samples older than `before_ns` (at most `limit`).
    fn release_samples(&mut self, before_ns: u64, limit: usize) -> Result<(), Error> {
        let mut n = 0;
        while let Some(s) = self.waiting_samples.front() {
            if s.time_ns >= before_ns || n >= limit {
                break;
            }
            let mut s = self.waiting_samples.pop_front().expect("front exists");
            s.heap = self.heap;
            self.samples.push(s);
            n += 1;
        }
        if self.samples.len() >= 4096 {
            self.write_samples()?;
        }
        Ok(())
    }

    /// Records a user marker. Events recorded after it are placed after it in time, even
    /// once stored at the events' resolution ([`crate::tables::EVENT_TIME_QUANTUM_NS`]): a
    /// span between two markers holds exactly the events recorded between them.
    pub fn marker(&mut self, time_ns: u64, thread: ThreadId, label: &str) {
        let quantum = crate::tables::EVENT_TIME_QUANTUM_NS;
        self.last_event_time = self.last_event_time.max((time_ns / quantum + 1) * quantum);
        self.markers.push(Marker { time_ns, thread, label: label.to_owned() });
    }

    /// Records a garbage collector run.
    pub fn gc(&mut self, gc: GcEvent) {
        self.gcs.push(gc);
    }

    /// The size and stack of the live heap block at `address`, if there is one.
    pub fn live_block(&self, address: u64) -> Option<(u64, StackId)> {
        self.live.get(address)
    }

    /// Records an object census. Its string and stack ids must be interned already.
    pub fn census(&mut self, census: Census) {
        self.censuses.push(census);
    }

    /// Records the `functools.lru_cache` wrappers seen by a census.
    pub fn caches(&mut self, caches: impl IntoIterator<Item = CacheCensus>) {
        self.caches.extend(caches);
    }

    /// Writes everything buffered as chunks and flushes the underlying writer, so a crash
    /// after this loses nothing recorded before it.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.write_events()?;
        self.write_samples()?;
        if !self.markers.is_empty() {
            let markers = std::mem::take(&mut self.markers);
            let span = (markers[0].time_ns, markers[markers.len() - 1].time_ns, markers.len());
            self.write_postcard(Tag::Markers, &markers, span)?;
        }
        if !self.gcs.is_empty() {
            let gcs = std::mem::take(&mut self.gcs);
            self.write_postcard(
                Tag::Gc,
                &gcs,
                (gcs[0].time_ns, gcs[gcs.len() - 1].time_ns, gcs.len()),
            )?;
        }
        if !self.censuses.is_empty() {
            let c = std::mem::take(&mut self.censuses);
            self.write_postcard(Tag::Census, &c, (c[0].time_ns, c[c.len() - 1].time_ns, c.len()))?;
        }
        if !self.caches.is_empty() {
            let c = std::mem::take(&mut self.caches);
            self.write_postcard(Tag::Caches, &c, (c[0].time_ns, c[c.len() - 1].time_ns, c.len()))?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Ends the recording: writes what is buffered, the process end, the trailer and the footer.
    /// Returns the underlying writer.
    pub fn finish(mut self, end: ProcessEnd) -> Result<W, Error> {
        self.release_samples(u64::MAX, usize::MAX)?;
        self.flush()?;
        self.write_postcard(Tag::End, &end, (end.time_ns, end.time_ns, 1))?;
        self.summary.duration_ns = self.summary.duration_ns.max(end.time_ns);
        self.summary.end_heap = self.heap;
        self.summary.end_live_count = self.live.live() as u64;
        let trailer = Trailer { summary: self.summary, index: std::mem::take(&mut self.index) };
        let trailer_offset = self.offset;
        self.write_postcard(Tag::Trailer, &trailer, (0, 0, 1))?;
        self.write_chunk(Tag::Footer, &trailer_offset.to_le_bytes(), (0, 0, 1), Codec::None)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The aggregates so far.
    pub fn summary(&self) -> Summary {
        Summary { end_heap: self.heap, end_live_count: self.live.live() as u64, ..self.summary }
    }

    /// Clamps an event's time and releases the samples taken before it.
    fn event_time(&mut self, time_ns: u64) -> Result<u64, Error> {
        self.last_event_time = self.last_event_time.max(time_ns);
        self.summary.duration_ns = self.summary.duration_ns.max(self.last_event_time);
        if self.waiting_samples.front().is_some_and(|s| s.time_ns < self.last_event_time) {
            self.release_samples(self.last_event_time, usize::MAX)?;
        }
        Ok(self.last_event_time)
    }

    fn push_event(&mut self, e: Event, address: AddressRef) -> Result<(), Error> {
        self.events.push(&e, address);
        if self.events.count >= self.options.events_per_chunk {
            self.write_events()?;
        }
        Ok(())
    }

    /// Writes pending table entries, in dependency order.
    fn write_tables(&mut self) -> Result<(), Error> {
        if !self.pending_strings.is_empty() {
            let first = self.string_count - self.pending_strings.len() as u32;
            let raw = encode_strings(first, &std::mem::take(&mut self.pending_strings));
            self.write_chunk(Tag::Strings, &raw, (0, 0, 0), self.options.codec)?;
        }
        if !self.pending_frames.is_empty() {
            let first = self.frame_count - self.pending_frames.len() as u32;
            let raw = encode_frames(first, &std::mem::take(&mut self.pending_frames));
            self.write_chunk(Tag::Frames, &raw, (0, 0, 0), self.options.codec)?;
        }
        if !self.pending_stacks.is_empty() {
            let first = self.stack_count - self.pending_stacks.len() as u32;
            let raw = encode_stacks(first, &std::mem::take(&mut self.pending_stacks));
            self.write_chunk(Tag::Stacks, &raw, (0, 0, 0), self.options.codec)?;
        }
        if !self.pending_threads.is_empty() {
            let threads = std::mem::take(&mut self.pending_threads);
            self.write_postcard(Tag::Threads, &threads, (0, 0, threads.len()))?;
        }
        Ok(())
    }

    fn write_events(&mut self) -> Result<(), Error> {
        self.write_tables()?;
        if self.events.count == 0 {
            return Ok(());
        }
        let quantum = crate::tables::EVENT_TIME_QUANTUM_NS;
        let span = (self.events.first_time * quantum, self.events.last_time * quantum);
        let count = self.events.count;
        let raw = self.events.finish();
        self.write_chunk(Tag::Events, &raw, (span.0, span.1, count as usize), self.options.codec)
    }

    fn write_samples(&mut self) -> Result<(), Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let samples = std::mem::take(&mut self.samples);
        let span = (samples[0].time_ns, samples[samples.len() - 1].time_ns, samples.len());
        self.write_postcard(Tag::Samples, &samples, span)
    }

    fn write_postcard<T: serde::Serialize + ?Sized>(
        &mut self,
        tag: Tag,
        value: &T,
        span: (u64, u64, usize),
    ) -> Result<(), Error> {
        let raw = postcard::to_allocvec(value)
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        self.write_chunk(tag, &raw, span, self.options.codec)
    }

    fn write_chunk(
        &mut self,
        tag: Tag,
        raw: &[u8],
        (first_time_ns, last_time_ns, count): (u64, u64, usize),
        codec: Codec,
    ) -> Result<(), Error> {
        self.scratch.clear();
        encode_chunk(&mut self.scratch, tag, codec, raw);
        self.out.write_all(&self.scratch)?;
        self.index.push(IndexEntry {
            tag: tag as u8,
            offset: self.offset,
            first_time_ns,
            last_time_ns,
            count: count as u64,
        });
        self.offset += self.scratch.len() as u64;
        Ok(())
    }
}
