//! [`RecordingWriter`]: interns tables, encodes and compresses chunks, and keeps the running
//! aggregates: the interval pyramid (written as it grows, see [`crate::Interval`]) and the
//! summary that goes into the trailer.

use std::io::Write;

use rustc_hash::FxHashMap;

use crate::addr_hash::AddressMap;
use crate::aggregate::{Aggregator, Key};
use crate::chunk::{encode_chunk, header_bytes, Codec, Tag, CHUNK_HEADER_LEN, MAX_CHUNK_RAW_LEN};
use crate::events::{quantize, AddressRef, EventEncoder};
use crate::intervals::encode_node;
use crate::live::{Block, LiveBlocks, Prior};
use crate::tables::{encode_frames, encode_stacks, encode_strings};
use crate::{
    AllocatorKind, BlockCount, CacheCensus, Census, Error, Event, Frame, FrameId, GcEvent,
    IndexEntry, Interval, Marker, MemorySample, Meta, Op, ProcessEnd, SpanEdge, SpanSide, StackId,
    StackNode, StringId, Summary, ThreadId, ThreadInfo, Trailer,
};

/// Samples kept waiting for events at most: 256 is 2.5 s at the default 10 ms interval.
const MAX_WAITING_SAMPLES: usize = 256;

/// Tuning knobs for [`RecordingWriter`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Compression for every chunk.
    pub codec: Codec,
    /// Events per event chunk (and so per base interval). Smaller chunks seek finer and lose
    /// less on a crash between flushes; larger ones compress slightly better.
    pub events_per_chunk: u64,
    /// Write the events themselves. Without them (`memlens run --aggregate`) a recording holds
    /// only the interval aggregates, cut into time slices instead of chunks, and grows with the
    /// number of stacks and slices rather than with the number of allocations.
    pub events: bool,
}

/// Aggregate-only recordings: base intervals of at least this length (ns)...
const SLICE_NS: u64 = 100_000_000;
/// ...and of at least a sixth of the time so far, so a run ten times longer has about 15 more
/// intervals (log base 7/6 of 10), not ten times as many.
const SLICE_GROWTH: u64 = 6;
/// Likewise, memory samples of an aggregate-only recording: one per gap of at least the
/// sample interval and a fortieth of the time so far (the gap's highest RSS is kept): about
/// 90 more samples for a run ten times longer.
const SAMPLE_GROWTH: u64 = 40;

/// A closed file gathers a copy of its directory (Tag::Gathered) when it has more than this
/// many chunks of it: fewer cost a reader few reads, and their copy would be a large share of
/// a small file (up to 40% of a program that only starts).
const GATHER_MIN_CHUNKS: usize = 64;

/// A Digest chunk's payload stays well below [`MAX_CHUNK_RAW_LEN`].
/// A stream's bytes go in chunks of at most this many.
const SUBSTREAM_PIECE_MAX: usize = (MAX_CHUNK_RAW_LEN / 4) as usize;

const DIGEST_CHUNK_BYTES: usize = (MAX_CHUNK_RAW_LEN / 4) as usize;

impl Default for WriterOptions {
    fn default() -> Self {
        // 64 Ki events is ~400 KiB raw: big enough for zstd to find repeats across loop
        // iterations, small enough to decode progressively in the browser.
        WriterOptions { codec: Codec::Zstd, events_per_chunk: 64 * 1024, events: true }
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
    pending_native: crate::NativeChunk,
    events: EventEncoder,
    last_event_time: u64,
    samples: Vec<MemorySample>,
    /// Samples newer than the last event: their heap is filled in when the events up to their
    /// time have arrived (the collector's events reach the writer a few ms after the samples).
    waiting_samples: std::collections::VecDeque<MemorySample>,
    markers: Vec<Marker>,
    spans: Vec<SpanEdge>,
    gcs: Vec<GcEvent>,
    censuses: Vec<Census>,
    caches: Vec<CacheCensus>,
    /// Heap blocks by address: the live ones, and tombstones of freed ones.
    live: LiveBlocks,
    /// Live blocks of allocators outside the heap (pymalloc arenas, reserved address space):
    /// few and large.
    others: AddressMap<(u64, Key, AllocatorKind)>,
    agg: Aggregator,
    /// What each heap block counts: 1, or in a sampled recording the blocks it stands for.
    blocks: BlockCount,
    /// Encoded Digest entries: every pyramid node above the base, and the heap figures of
    /// every base interval.
    digest: Vec<(u64, Vec<u8>)>,
    /// Aggregate-only recordings: the current time slice's end, and the samples with the
    /// highest RSS and the latest time in the current gap between kept samples.
    slice_end: u64,
    gap: Option<(MemorySample, MemorySample)>,
    /// The sampling interval the metadata states.
    meta_interval_ns: u64,
    /// In [`RecordingWriter::finish`]: everything buffered goes out now.
    finishing: bool,
    /// Chunks the Gathered chunks copy so far.
    gathered_count: usize,
    /// The Gathered chunks' payloads so far (each at most [`DIGEST_CHUNK_BYTES`] unless one
    /// entry is larger): every chunk read at open but the metadata, as its tag, raw length
    /// and raw bytes.
    gathered: Vec<Vec<u8>>,
    summary: Summary,
    scratch: Vec<u8>,
    /// The other processes' streams: the length of each so far, and where their pieces are.
    streams: FxHashMap<u32, u64>,
    pieces: Vec<crate::Piece>,
}

impl<W: Write> RecordingWriter<W> {
    /// Starts a recording with default options: writes the header and metadata.
    pub fn new(out: W, meta: &Meta) -> Result<Self, Error> {
        Self::with_options(out, meta, WriterOptions::default())
    }

    /// Starts a recording with the given options.
    pub fn with_options(mut out: W, meta: &Meta, options: WriterOptions) -> Result<Self, Error> {
        let meta_interval_ns = meta.capture.sample_interval_us.saturating_mul(1_000).max(1);
        let blocks = BlockCount::sampled(meta.sample_bytes().unwrap_or(0));
        let header = header_bytes();
        out.write_all(&header)?;
        let mut w = RecordingWriter {
            out,
            options,
            offset: header.len() as u64,
            index: Vec::new(),
            streams: FxHashMap::default(),
            pieces: Vec::new(),
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
            pending_native: crate::NativeChunk::default(),
            events: EventEncoder::default(),
            last_event_time: 0,
            samples: Vec::new(),
            waiting_samples: std::collections::VecDeque::new(),
            markers: Vec::new(),
            spans: Vec::new(),
            gcs: Vec::new(),
            censuses: Vec::new(),
            caches: Vec::new(),
            live: LiveBlocks::default(),
            others: AddressMap::default(),
            agg: Aggregator::counting(blocks),
            blocks,
            digest: Vec::new(),
            slice_end: SLICE_NS,
            gap: None,
            meta_interval_ns,
            finishing: false,
            gathered: Vec::new(),
            gathered_count: 0,
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

    /// Notes a module of the traced process that native frames are found in.
    pub fn native_module(&mut self, module: crate::NativeModule) {
        self.pending_native.modules.push(module);
    }

    /// Notes that `frame` (interned) is a native function, of the interpreter or the C
    /// library itself when `runtime`; once per frame.
    pub fn native_frame(&mut self, frame: FrameId, runtime: bool) {
        self.pending_native.frames.push(frame);
        if runtime {
            self.pending_native.runtime.push(frame);
        }
    }

    /// Declares a thread, or renames one declared before.
    pub fn add_thread(&mut self, thread: ThreadInfo) {
        self.pending_threads.push(thread);
    }

    /// Records an allocation. Times that go backwards are clamped to the previous event's.
    #[inline(always)]
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
        let key = self.agg.key(thread, stack, kind);
        let mut addr_ref = AddressRef::Explicit;
        // A live block at the address means a free we never saw (e.g. through an unhooked
        // path): it is written as freed here, so the heap never counts it twice.
        let replaced = if kind.counts_in_heap() {
            let chunk = self.events.chunk;
            let block = Block { size, key, kind, chunk, index: self.events.allocs() };
            match self.live.alloc(address, block) {
                Prior::Live(old) => Some((old.size, old.key, old.kind)),
                Prior::Freed { chunk: c, index } if c == chunk => {
                    addr_ref = AddressRef::Freed(index);
                    None
                }
                Prior::Freed { .. } | Prior::Vacant => None,
            }
        } else {
            self.others.insert(address, (size, key, kind))
        };
        if let Some((old, old_key, old_kind)) = replaced {
            addr_ref = AddressRef::Freed(self.events.frees());
            self.push_free(time_ns, old_kind, address, old, old_key, AddressRef::Explicit);
        }
        if kind.counts_in_heap() {
            // Exact recordings: one branch on a field set once, no float math.
            let count = self.blocks.of(size);
            self.agg.alloc(key, kind, size, count, time_ns, address);
            self.summary.alloc_count = self.summary.alloc_count.saturating_add(count);
            self.summary.alloc_bytes = self.summary.alloc_bytes.wrapping_add(size);
            if self.agg.heap() > self.summary.peak_heap {
                self.summary.peak_heap = self.agg.heap();
                self.summary.peak_heap_time_ns = time_ns;
            }
        } else {
            self.agg.outside(kind, size, true);
        }
        self.stored_at(kind, time_ns);
        if self.options.events {
            let event = Event { op: Op::Alloc, kind, time_ns, thread, address, size, stack };
            self.events.push(&event, addr_ref);
        }
        Ok(())
    }

    /// Records a free. Frees of blocks that are not live (allocated before tracing started, or
    /// freed twice) change nothing, so they are not written. A free is written with the
    /// thread, stack, size and allocator kind of the allocation it ends (`kind` says only
    /// whether the block is a heap block).
    #[inline(always)]
    pub fn free(
        &mut self,
        time_ns: u64,
        _thread: ThreadId,
        address: u64,
        kind: AllocatorKind,
    ) -> Result<(), Error> {
        let time_ns = self.event_time(time_ns)?;
        let (size, key, kind, addr_ref) = if kind.counts_in_heap() {
            let chunk = self.events.chunk;
            let Some(b) = self.live.free(address, chunk, self.events.frees()) else {
                return Ok(());
            };
            let recent = b.chunk == chunk;
            let addr_ref =
                if recent { AddressRef::Allocated(b.index) } else { AddressRef::Explicit };
            (b.size, b.key, b.kind, addr_ref)
        } else {
            let Some((size, key, kind)) = self.others.remove(&address) else { return Ok(()) };
            (size, key, kind, AddressRef::Explicit)
        };
        self.push_free(time_ns, kind, address, size, key, addr_ref);
        Ok(())
    }

    /// Records that a new object was made in the live heap block at `address` without an
    /// allocation (CPython re-creating an object from a free list): from now on the block is
    /// charged to `thread` and `stack`. Written as a free of the block as it was and an alloc
    /// of it by its new owner, both of kind [`AllocatorKind::Recreated`]; the heap, the counts
    /// and the block's own kind do not change. Nothing is written when no block is live there
    /// (allocated before tracing started), when it is already this thread's and stack's, or
    /// when it is not an object's block (of the object domain, which the aggregates charge
    /// re-created blocks to: the events of a re-creation do not say the block's kind).
    pub fn recreate(
        &mut self,
        time_ns: u64,
        thread: ThreadId,
        stack: StackId,
        address: u64,
    ) -> Result<(), Error> {
        let key = self.agg.key(thread, stack, crate::aggregate::RECREATED_BLOCKS);
        match self.live.get(address) {
            Some((_, held_by))
                if held_by != key
                    && self.agg.allocator(held_by) == Some(crate::aggregate::RECREATED_BLOCKS) => {}
            _ => return Ok(()),
        }
        let time_ns = self.event_time(time_ns)?;
        // After event_time, which may have ended the chunk: both halves go in this one.
        let chunk = self.events.chunk;
        let Some(old) = self.live.rekey(address, key, chunk, self.events.allocs()) else {
            return Ok(());
        };
        self.agg.recreate(old.key, key, old.size, time_ns);
        let kind = AllocatorKind::Recreated;
        self.stored_at(kind, time_ns);
        if self.options.events {
            let size = old.size;
            let addr_ref = if old.chunk == chunk {
                AddressRef::Allocated(old.index)
            } else {
                AddressRef::Explicit
            };
            let (t0, s0) = self.agg.pair(old.key);
            let free = Event { op: Op::Free, kind, time_ns, thread: t0, address, size, stack: s0 };
            self.events.push(&free, addr_ref);
            let alloc = Event { op: Op::Alloc, kind, time_ns, thread, address, size, stack };
            self.events.push(&alloc, AddressRef::Explicit);
        }
        Ok(())
    }

    /// Counts and writes the free of a block that was live.
    #[inline(always)]
    fn push_free(
        &mut self,
        time_ns: u64,
        kind: AllocatorKind,
        address: u64,
        size: u64,
        key: Key,
        addr_ref: AddressRef,
    ) {
        if kind.counts_in_heap() {
            let count = self.blocks.of(size);
            self.agg.free(key, kind, size, count, time_ns, address);
            self.summary.free_count = self.summary.free_count.saturating_add(count);
        } else {
            self.agg.outside(kind, size, false);
        }
        self.stored_at(kind, time_ns);
        if self.options.events {
            let (thread, stack) = self.agg.pair(key);
            let event = Event { op: Op::Free, kind, time_ns, thread, address, size, stack };
            self.events.push(&event, addr_ref);
        }
    }

    /// The recording lasts at least until an event it keeps: every event written, or in an
    /// aggregate-only recording every heap event (the others are not timed there), so that
    /// the duration read back from the file is the one in the trailer.
    #[inline]
    fn stored_at(&mut self, kind: AllocatorKind, time_ns: u64) {
        if self.options.events || kind.counts_in_heap() {
            self.summary.duration_ns = self.summary.duration_ns.max(time_ns);
        }
    }

    /// The traced heap right now, in bytes.
    pub fn heap(&self) -> u64 {
        self.agg.heap()
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
            s.heap = self.agg.heap();
            if self.options.events {
                self.samples.push(s);
            } else {
                self.thin_sample(s);
            }
            n += 1;
        }
        if self.samples.len() >= 4096 {
            self.write_samples()?;
        }
        Ok(())
    }

    /// Aggregate-only recordings keep one sample per gap that grows with the time so far: the
    /// one with the highest RSS (and, at the end, the last one: the recording lasts until it).
    fn thin_sample(&mut self, s: MemorySample) {
        let Some((highest, latest)) = &mut self.gap else {
            self.gap = Some((s, s));
            return;
        };
        let last = self.samples.last().map_or(0, |k| k.time_ns);
        let span = (self.meta_interval_ns).max(last / SAMPLE_GROWTH);
        if s.time_ns >= last.saturating_add(span) && highest.time_ns != s.time_ns {
            self.samples.push(*highest);
            self.gap = Some((s, s));
            return;
        }
        if s.rss > highest.rss {
            *highest = s;
        }
        *latest = s;
    }

    /// Records a user marker. Events recorded after it are placed after it in time, even
    /// once stored at the events' resolution ([`crate::EVENT_TIME_QUANTUM_NS`]): a span
    /// between two markers holds exactly the events recorded between them.
    pub fn marker(&mut self, time_ns: u64, thread: ThreadId, label: &str) {
        self.place_events_after(time_ns);
        self.markers.push(Marker { time_ns, thread, label: label.to_owned() });
    }

    /// Records where a span begins or ends. Like a marker, it orders the events around it.
    pub fn span_edge(&mut self, time_ns: u64, thread: ThreadId, side: SpanSide, name: &str) {
        self.place_events_after(time_ns);
        self.spans.push(SpanEdge { time_ns, thread, side, name: name.to_owned() });
    }

    /// Events recorded from now on are stored at a time after `time_ns`.
    fn place_events_after(&mut self, time_ns: u64) {
        let quantum = crate::EVENT_TIME_QUANTUM_NS;
        self.last_event_time = self.last_event_time.max((time_ns / quantum + 1) * quantum);
    }

    /// Records a garbage collector run.
    pub fn gc(&mut self, gc: GcEvent) {
        self.gcs.push(gc);
    }

    /// The size and stack of the live heap block at `address`, if there is one.
    pub fn live_block(&self, address: u64) -> Option<(u64, StackId)> {
        self.live.get(address).map(|(size, key)| (size, self.agg.pair(key).1))
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
        if !self.spans.is_empty() {
            let s = std::mem::take(&mut self.spans);
            self.write_postcard(Tag::Spans, &s, (s[0].time_ns, s[s.len() - 1].time_ns, s.len()))?;
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

    /// Ends the recording: writes what is buffered, the process end, the digest of the
    /// aggregates, the trailer and the footer. Returns the underlying writer.
    pub fn finish(mut self, end: ProcessEnd) -> Result<W, Error> {
        self.finishing = true;
        self.release_samples(u64::MAX, usize::MAX)?;
        if !self.options.events && self.agg.has_events() {
            // A slice spans its heap events (only heap events are kept).
            let nodes = self.agg.cut(u64::MAX, 0);
            self.write_intervals(nodes)?;
        }
        if let Some((highest, latest)) = self.gap.take() {
            self.samples.push(highest);
            if latest.time_ns > highest.time_ns {
                self.samples.push(latest);
            }
        }
        self.flush()?;
        self.write_postcard(Tag::End, &end, (end.time_ns, end.time_ns, 1))?;
        if !self.pieces.is_empty() {
            let pieces = std::mem::take(&mut self.pieces);
            self.write_postcard(Tag::Processes, &pieces, (0, 0, pieces.len()))?;
        }
        self.write_gathered()?;
        for (count, nodes) in std::mem::take(&mut self.digest) {
            let mut raw = Vec::with_capacity(nodes.len() + 10);
            crate::varint::put_u64(&mut raw, count);
            raw.extend_from_slice(&nodes);
            self.write_chunk(Tag::Digest, &raw, (0, 0, count as usize), self.options.codec)?;
        }
        self.summary.duration_ns = self.summary.duration_ns.max(end.time_ns);
        self.summary.end_heap = self.agg.heap();
        self.summary.end_live_count = self.live_count();
        let trailer = Trailer { summary: self.summary, index: std::mem::take(&mut self.index) };
        let trailer_offset = self.offset;
        self.write_postcard(Tag::Trailer, &trailer, (0, 0, 1))?;
        self.write_chunk(Tag::Footer, &trailer_offset.to_le_bytes(), (0, 0, 1), Codec::None)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Appends `bytes` to the stream of process `process` (1, 2, ...): the recording of
    /// another process, written by a [`RecordingWriter`] of its own, carried in this file (see
    /// FORMAT.md, "Processes"). A stream's bytes may come in any number of calls, each
    /// written at once as a chunk of its own (or a few, for large ones).
    pub fn substream(&mut self, process: u32, bytes: &[u8]) -> Result<(), Error> {
        debug_assert!(process != 0, "process 0 is this recording's own");
        for part in bytes.chunks(SUBSTREAM_PIECE_MAX) {
            let offset = *self.streams.get(&process).unwrap_or(&0);
            let mut raw = Vec::with_capacity(part.len() + 15);
            crate::processes::encode_piece(&mut raw, process, offset, &[]);
            let at = self.offset + (CHUNK_HEADER_LEN + raw.len()) as u64;
            raw.extend_from_slice(part);
            self.write_chunk(Tag::Substream, &raw, (0, 0, 0), Codec::None)?;
            let len = part.len() as u64;
            self.pieces.push(crate::Piece { process, offset, at, len });
            self.streams.insert(process, offset + len);
        }
        Ok(())
    }

    /// The aggregates so far.
    pub fn summary(&self) -> Summary {
        Summary { end_heap: self.agg.heap(), end_live_count: self.live_count(), ..self.summary }
    }

    /// The live heap blocks (in a sampled recording, the blocks the live ones stand for:
    /// every allocation's count less every free's).
    fn live_count(&self) -> u64 {
        if self.blocks.is_exact() {
            self.live.live() as u64
        } else {
            self.summary.alloc_count.wrapping_sub(self.summary.free_count)
        }
    }

    /// Clamps an event's time (to the previous event's, and to the resolution events are
    /// stored at), releases the samples taken before it, and ends the interval when it is full
    /// (a chunk of events) or over (a time slice of an aggregate-only recording).
    #[inline]
    fn event_time(&mut self, time_ns: u64) -> Result<u64, Error> {
        self.last_event_time = self.last_event_time.max(time_ns);
        let time_ns = quantize(self.last_event_time);
        let due = self.waiting_samples.front().is_some_and(|s| s.time_ns < self.last_event_time)
            || if self.options.events {
                self.events.count >= self.options.events_per_chunk
            } else {
                time_ns >= self.slice_end
            };
        if due {
            self.before_event(time_ns)?;
        }
        Ok(time_ns)
    }

    /// The rarer work before an event: samples to release, an interval to end.
    #[cold]
    fn before_event(&mut self, time_ns: u64) -> Result<(), Error> {
        if self.waiting_samples.front().is_some_and(|s| s.time_ns < self.last_event_time) {
            self.release_samples(self.last_event_time, usize::MAX)?;
        }
        if self.options.events {
            if self.events.count >= self.options.events_per_chunk {
                self.write_events()?;
            }
        } else if time_ns >= self.slice_end {
            if self.agg.has_events() {
                let nodes = self.agg.cut(u64::MAX, 0);
                self.write_intervals(nodes)?;
            }
            // The next slice starts here (slices without heap events are left out).
            let start = self.slice_end.max(time_ns / SLICE_NS * SLICE_NS);
            self.slice_end = start.saturating_add(SLICE_NS.max(start / SLICE_GROWTH));
        }
        Ok(())
    }

    /// Writes the base interval an interval cut gave, and keeps for the digest its heap
    /// figures and the nodes above the base it completed.
    fn write_intervals(&mut self, (base, upper): (Interval, Vec<Interval>)) -> Result<(), Error> {
        self.write_tables()?;
        let span = (base.t_first, base.t_last, 1);
        let raw = crate::intervals::encode_intervals(std::slice::from_ref(&base));
        self.write_chunk(Tag::Intervals, &raw, span, self.options.codec)?;
        let shape =
            Interval { entries: Vec::new(), since_max: Vec::new(), churn: Vec::new(), ..base };
        for node in std::iter::once(shape).chain(upper) {
            match self.digest.last_mut() {
                Some((_, bytes)) if bytes.len() < DIGEST_CHUNK_BYTES => {}
                _ => self.digest.push((0, Vec::new())),
            }
            let (count, bytes) = self.digest.last_mut().expect("a digest piece was just made");
            encode_node(bytes, &node);
            *count += 1;
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
        if !self.pending_native.is_empty() {
            let native = std::mem::take(&mut self.pending_native);
            self.write_postcard(Tag::Native, &native, (0, 0, native.frames.len()))?;
        }
        Ok(())
    }

    /// Writes the events buffered as a chunk, after the base interval they make (written
    /// first, so a file cut between the two still has the interval's figures).
    fn write_events(&mut self) -> Result<(), Error> {
        self.write_tables()?;
        if self.events.count == 0 {
            return Ok(());
        }
        let quantum = crate::EVENT_TIME_QUANTUM_NS;
        let span = (self.events.first_time * quantum, self.events.last_time * quantum);
        let nodes = self.agg.cut(span.0, span.1);
        self.write_intervals(nodes)?;
        let count = self.events.count;
        let raw = self.events.finish();
        self.write_chunk(Tag::Events, &raw, (span.0, span.1, count as usize), self.options.codec)
    }

    fn write_samples(&mut self) -> Result<(), Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        // An aggregate-only recording's thinned samples go out in batches, not a chunk of one
        // or two per flush: they may wait as long as a time slice (and at least a second).
        if !self.options.events && !self.finishing {
            let oldest = self.samples[0].time_ns;
            let waited = self.last_event_time.saturating_sub(oldest);
            if self.samples.len() < 64 && waited < (oldest / SLICE_GROWTH).max(1_000_000_000) {
                return Ok(());
            }
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

    /// Writes the copy of every chunk read at open, when there are more than
    /// [`GATHER_MIN_CHUNKS`] of them.
    fn write_gathered(&mut self) -> Result<(), Error> {
        let gathered = std::mem::take(&mut self.gathered);
        if self.gathered_count <= GATHER_MIN_CHUNKS {
            return Ok(());
        }
        for raw in gathered {
            self.write_chunk(Tag::Gathered, &raw, (0, 0, 0), self.options.codec)?;
        }
        Ok(())
    }

    fn write_chunk(
        &mut self,
        tag: Tag,
        raw: &[u8],
        (first_time_ns, last_time_ns, count): (u64, u64, usize),
        codec: Codec,
    ) -> Result<(), Error> {
        if tag != Tag::Meta && crate::recording::directory(Some(tag)) {
            let fits = |g: &Vec<u8>| g.len() + raw.len() + 11 <= DIGEST_CHUNK_BYTES;
            if !self.gathered.last().is_some_and(fits) {
                self.gathered.push(Vec::new());
            }
            self.gathered_count += 1;
            let g = self.gathered.last_mut().expect("pushed");
            g.push(tag as u8);
            crate::varint::put_u64(g, raw.len() as u64);
            g.extend_from_slice(raw);
        }
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
