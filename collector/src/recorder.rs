//! Turns the tracer's raw records into a recording.
//!
//! [`Recorder`] is pure: bytes in (any chunking, as read from a pipe), calls on a
//! `memlens_format::RecordingWriter` out. It keeps, per traced thread, the stack the
//! tracer has described with `Push`/`Pop` records as a list of interned `StackId`s,
//! so an allocation costs one lookup. It has no knowledge of processes or pipes, so
//! the same code can serve any transport of raw records.

use rustc_hash::FxHashMap as HashMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use memlens_analysis::is_memlens_file;
use memlens_format::{
    AllocatorKind, CacheCensus, Census, DictUsage, FrameId, GcEvent, MemorySample, ProcessEnd,
    RecordingWriter, SpanSide, StackId, StringId, Summary, ThreadId, ThreadInfo, TypeCensus,
    TypeSite,
};
use memlens_wire::{
    decode_hot, AllocKind, CensusType, Decoder, Header, Hello, Hot, Record, PROTOCOL,
};

/// A code object as the tracer described it. Interned into the recording only when a
/// frame uses it: a session started mid-program receives every code object the
/// process has run so far.
struct Code {
    qualname: Vec<u8>,
    filename: Vec<u8>,
    /// memlens's own code ([`memlens_analysis::is_memlens_file`]): its frames are left out of
    /// the recorded stacks, and what they allocate goes to their caller.
    memlens: bool,
}

struct Thread {
    /// `info.id` is meaningful once declared: recordings number threads densely in the
    /// order they are declared, while tracer indices are process-wide (a recording of a
    /// later `memlens.record()` block may not see thread 0 at all).
    info: ThreadInfo,
    declared: bool,
    /// `stacks[i]` is the stack made of the first i+1 pushed frames, `codes[i]` the code
    /// id of frame i.
    stacks: Vec<StackId>,
    codes: Vec<u32>,
    /// The native stack of the thread's allocations (`--native-stacks`; 0: none).
    native: u32,
}

/// A census being received (between `CensusBegin` and `CensusEnd` on one thread).
#[derive(Default)]
struct CensusBuild {
    trigger: u8,
    label: String,
    /// The census looked at one object in this many: each linked address stands for this
    /// many objects.
    sample_every: u64,
    types: HashMap<(StringId, StringId), TypeBuild>,
    caches: Vec<CacheCensus>,
}

#[derive(Default)]
struct TypeBuild {
    census: TypeCensus,
    sites: HashMap<StackId, (u64, u64)>,
    dict: DictUsage,
}

fn addresses(blob: &[u8]) -> impl Iterator<Item = u64> + '_ {
    blob.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Replays raw records into a [`RecordingWriter`].
pub struct Recorder<W: Write> {
    writer: RecordingWriter<W>,
    /// CLOCK_MONOTONIC ns when the recording started; raw times are made relative to it.
    t0: u64,
    pending: Vec<u8>,
    decoder: Decoder,
    codes: HashMap<u32, Code>,
    frames: HashMap<(u32, u32), FrameId>,
    /// Indexed by the tracer's dense thread index.
    threads: Vec<Option<Thread>>,
    hello: Option<Hello>,
    stopped: bool,
    last_time: u64,
    /// Censuses in progress, by thread index.
    censuses: HashMap<u32, CensusBuild>,
    /// Threads declared to the writer so far (the next one's id).
    declared_threads: u32,
    /// Live mappings of kind `Reserved`, by address: where their resident part goes.
    mappings: HashMap<u64, Mapping>,
    /// The mean bytes between sampled allocations (`--sample`), 0 when every allocation is
    /// recorded; the tracer's [`Hello`] must say the same.
    sample_bytes: u64,
    /// The native stacks the tracer described (`--native-stacks`).
    native: crate::native_stacks::NativeStacks,
}

/// A mapping's thread and stack, and the bytes of it recorded as resident (heap memory of
/// kind `Mmap` at the mapping's address + 1; see FORMAT.md).
struct Mapping {
    thread: ThreadId,
    stack: StackId,
    resident: u64,
}

/// Upper bound on thread indices (threads ever started by the traced program).
const MAX_THREADS: u32 = 1 << 20;
/// Thread index of records that belong to no thread (Hello, Stop).
const NO_THREAD: u32 = u32::MAX;

fn kind(k: AllocKind) -> AllocatorKind {
    match k {
        AllocKind::PymallocObject => AllocatorKind::PymallocObject,
        AllocKind::PyMem => AllocatorKind::PyMem,
        AllocKind::PyRaw => AllocatorKind::PyRaw,
        AllocKind::Malloc => AllocatorKind::Malloc,
        AllocKind::Mmap => AllocatorKind::Mmap,
        AllocKind::PymallocArena => AllocatorKind::PymallocArena,
        AllocKind::Reserved => AllocatorKind::Reserved,
    }
}

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

impl<W: Write> Recorder<W> {
    /// `t0` is the CLOCK_MONOTONIC time (ns) taken as the recording's start.
    pub fn new(writer: RecordingWriter<W>, t0: u64) -> Self {
        Recorder {
            writer,
            t0,
            pending: Vec::new(),
            decoder: Decoder::default(),
            codes: HashMap::default(),
            frames: HashMap::default(),
            threads: Vec::new(),
            hello: None,
            stopped: false,
            last_time: 0,
            censuses: HashMap::default(),
            declared_threads: 0,
            mappings: HashMap::default(),
            sample_bytes: 0,
            native: Default::default(),
        }
    }

    /// The recording is sampled, one allocation every `bytes` on average (0: exact): each
    /// sampled block is written with the size it stands for
    /// ([`memlens_format::sample_weight`]).
    pub fn sampled(mut self, bytes: u64) -> Self {
        self.sample_bytes = bytes;
        self
    }

    /// The tracer's greeting, once received.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// True once the tracer said it stopped cleanly (everything was flushed).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Nanoseconds since the start for a CLOCK_MONOTONIC time.
    pub fn rel(&self, abs_ns: u64) -> u64 {
        abs_ns.saturating_sub(self.t0)
    }

    /// Feeds bytes read from the tracer; a record may be split across calls.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        // Decode straight from `bytes`; only a record split across reads is copied, and
        // only as far as it goes (copying whole reads cost a few % of the recorder).
        while !self.pending.is_empty() && !bytes.is_empty() {
            let mut buf = std::mem::take(&mut self.pending);
            let old = buf.len();
            // At least doubling, so a long record is copied a bounded number of times.
            let take = bytes.len().min(old.max(256));
            buf.extend_from_slice(&bytes[..take]);
            let (used, result) = self.consume(&buf);
            // `pending` starts with an incomplete record: either it is still incomplete
            // and nothing was used, or it completed and everything pending was used.
            if used >= old {
                bytes = &bytes[used - old..];
                buf.clear();
            } else {
                debug_assert_eq!(used, 0);
                bytes = &bytes[take..];
            }
            self.pending = buf;
            result?;
        }
        let (used, result) = self.consume(bytes);
        self.pending.extend_from_slice(&bytes[used..]);
        result
    }

    /// Applies the whole records at the start of `buf`; returns how many bytes they took.
    fn consume(&mut self, buf: &[u8]) -> (usize, Result<()>) {
        let mut pos = 0;
        loop {
            // Allocations, frees and stack changes (nearly all records) take a short path.
            if let Some((hot, used)) = decode_hot(&buf[pos..]) {
                pos += used;
                if let Err(e) = self.apply_hot(self.decoder.header(), hot) {
                    return (pos, Err(e));
                }
                continue;
            }
            match self.decoder.next(&buf[pos..]) {
                Ok(Some((header, record, used))) => {
                    pos += used;
                    if let Err(e) = self.apply(header, record) {
                        return (pos, Err(e));
                    }
                }
                Ok(None) => return (pos, Ok(())),
                Err(e) => return (pos, Err(e).context("corrupt data from the tracer")),
            }
        }
    }

    fn thread(&mut self, index: u32) -> &mut Thread {
        let i = index as usize;
        if i >= self.threads.len() {
            self.threads.resize_with(i + 1, || None);
        }
        self.threads[i].get_or_insert_with(|| Thread {
            info: ThreadInfo { id: ThreadId(index), os_tid: 0, name: format!("thread-{index}") },
            declared: false,
            stacks: Vec::new(),
            codes: Vec::new(),
            native: 0,
        })
    }

    /// The thread's current stack and recording id, declaring the thread to the writer on
    /// first use.
    #[inline]
    fn current_stack(&mut self, index: u32) -> (StackId, ThreadId) {
        match self.threads.get(index as usize) {
            Some(Some(t)) if t.declared => {
                (t.stacks.last().copied().unwrap_or(StackId::ROOT), t.info.id)
            }
            _ => self.declare_thread(index),
        }
    }

    /// [`Self::current_stack`] of a thread not yet declared to the writer.
    #[cold]
    fn declare_thread(&mut self, index: u32) -> (StackId, ThreadId) {
        let next_id = ThreadId(self.declared_threads);
        let t = self.thread(index);
        let stack = t.stacks.last().copied().unwrap_or(StackId::ROOT);
        if !t.declared {
            t.declared = true;
            t.info.id = next_id;
            let info = t.info.clone();
            self.declared_threads += 1;
            self.writer.add_thread(info);
        }
        (stack, self.thread(index).info.id)
    }

    /// The record's time relative to the start; checks its thread index.
    #[inline]
    fn time_of(&mut self, h: Header) -> Result<u64> {
        // The tracer numbers threads densely from 0; anything huge is corruption, and
        // must not make us allocate a huge table.
        if h.thread >= MAX_THREADS && h.thread != NO_THREAD {
            bail!("corrupt data from the tracer: thread index {}", h.thread);
        }
        let time = self.rel(h.time_ns);
        self.last_time = self.last_time.max(time);
        Ok(time)
    }

    #[inline(always)]
    fn apply_hot(&mut self, h: Header, hot: Hot) -> Result<()> {
        let time = self.time_of(h)?;
        match hot {
            Hot::Push { code, line } => self.push_frame(h.thread, code, line)?,
            Hot::Pop { n } => self.pop_frames(h.thread, n),
            Hot::Line { line } => {
                let Some(&code) = self.thread(h.thread).codes.last() else {
                    bail!("corrupt data from the tracer: a line change on an empty stack");
                };
                self.pop_frames(h.thread, 1);
                self.push_frame(h.thread, code, line)?;
            }
            Hot::Alloc { address, size, kind: k } => {
                let (stack, thread) = self.current_stack(h.thread);
                let stack = match self.native_node(h.thread, k) {
                    0 => stack,
                    node => self.native.merge(&mut self.writer, stack, node),
                };
                if k == AllocKind::Reserved {
                    self.end_mapping(time, address)?;
                    self.mappings.insert(address, Mapping { thread, stack, resident: 0 });
                }
                let size = if self.sample_bytes != 0 && k.sampled() {
                    memlens_format::sample_weight(size, self.sample_bytes)
                } else {
                    size
                };
                self.writer.alloc(time, thread, stack, address, size, kind(k))?;
            }
            Hot::Free { address, kind: k } => {
                let (_, thread) = self.current_stack(h.thread);
                if k == AllocKind::Reserved {
                    self.end_mapping(time, address)?;
                }
                self.writer.free(time, thread, address, kind(k))?;
            }
            Hot::Recreate { address } => {
                let (stack, thread) = self.current_stack(h.thread);
                self.writer.recreate(time, thread, stack, address)?;
            }
        }
        Ok(())
    }

    /// The native stack an allocation of kind `k` on the thread has (0: none).
    #[inline]
    fn native_node(&self, thread: u32, k: AllocKind) -> u32 {
        if !k.native_stack() {
            return 0;
        }
        self.threads.get(thread as usize).and_then(Option::as_ref).map_or(0, |t| t.native)
    }

    /// A mapping is gone: so is its resident part.
    fn end_mapping(&mut self, time: u64, address: u64) -> Result<()> {
        if let Some(m) = self.mappings.remove(&address) {
            if m.resident > 0 {
                self.writer.free(time, m.thread, address + 1, AllocatorKind::Mmap)?;
            }
        }
        Ok(())
    }

    /// `bytes` of the mapping at `address` are resident now: its resident part, a heap
    /// block at `address + 1`, takes that size.
    fn resident(&mut self, time: u64, address: u64, bytes: u64) -> Result<()> {
        let Some(m) = self.mappings.get_mut(&address) else { return Ok(()) };
        let (thread, stack, old) = (m.thread, m.stack, std::mem::replace(&mut m.resident, bytes));
        if old > 0 {
            self.writer.free(time, thread, address + 1, AllocatorKind::Mmap)?;
        }
        if bytes > 0 {
            self.writer.alloc(time, thread, stack, address + 1, bytes, AllocatorKind::Mmap)?;
        }
        Ok(())
    }

    fn pop_frames(&mut self, thread: u32, n: u32) {
        let t = self.thread(thread);
        let keep = t.stacks.len().saturating_sub(n as usize);
        t.stacks.truncate(keep);
        t.codes.truncate(keep);
    }

    fn push_frame(&mut self, thread: u32, code: u32, line: u32) -> Result<()> {
        let frame = match self.frames.get(&(code, line)) {
            Some(&f) => Some(f),
            None => {
                let Some(c) = self.codes.get(&code) else {
                    bail!("the tracer used code id {code} before describing it");
                };
                if c.memlens {
                    None
                } else {
                    let function = self.writer.intern_string(&text(&c.qualname));
                    let file = self.writer.intern_string(&text(&c.filename));
                    let frame = memlens_format::Frame { function, file, line };
                    let f = self.writer.intern_frame_ids(frame);
                    self.frames.insert((code, line), f);
                    Some(f)
                }
            }
        };
        let t = self.thread(thread);
        let parent = t.stacks.last().copied().unwrap_or(StackId::ROOT);
        // A memlens frame repeats its caller's stack, so pops stay in step.
        let stack = frame.map_or(parent, |f| self.writer.intern_stack(parent, f));
        let t = self.thread(thread);
        t.stacks.push(stack);
        t.codes.push(code);
        Ok(())
    }

    fn apply(&mut self, h: Header, record: Record<'_>) -> Result<()> {
        let time = self.time_of(h)?;
        match record {
            Record::Hello(hello) => {
                if hello.protocol != PROTOCOL {
                    bail!(
                        "the tracer speaks protocol {} but this memlens speaks {PROTOCOL}: \
                         libmemlens_tracer.so and the memlens binary come from different builds",
                        hello.protocol
                    );
                }
                if hello.sample_bytes != self.sample_bytes {
                    bail!(
                        "the tracer samples every {} bytes but the recording is of {} \
                         (0: every allocation)",
                        hello.sample_bytes,
                        self.sample_bytes
                    );
                }
                self.hello = Some(hello);
            }
            Record::ThreadStart { os_tid, name } => {
                let name = text(name).into_owned();
                let t = self.thread(h.thread);
                t.info.os_tid = os_tid;
                if !name.is_empty() {
                    t.info.name = name;
                }
            }
            Record::ThreadName { name } => {
                let t = self.thread(h.thread);
                t.info.name = text(name).into_owned();
                if t.declared {
                    let info = t.info.clone();
                    self.writer.add_thread(info);
                }
            }
            Record::Code { id, first_line: _, qualname, filename } => {
                let memlens = is_memlens_file(&text(filename));
                let code =
                    Code { qualname: qualname.to_vec(), filename: filename.to_vec(), memlens };
                self.codes.insert(id, code);
            }
            // After a stretch, the decoder hands hot records here too.
            Record::Push { code, line } => self.apply_hot(h, Hot::Push { code, line })?,
            Record::Pop { n } => self.apply_hot(h, Hot::Pop { n })?,
            Record::Line { line } => self.apply_hot(h, Hot::Line { line })?,
            Record::Alloc { address, size, kind } => {
                self.apply_hot(h, Hot::Alloc { address, size, kind })?
            }
            Record::Free { address, kind } => self.apply_hot(h, Hot::Free { address, kind })?,
            Record::Recreate { address } => self.apply_hot(h, Hot::Recreate { address })?,
            Record::Stretch(_) | Record::Seq { .. } => {
                unreachable!("the decoder consumes stretches and refuses ring records")
            }
            Record::Marker { label } => {
                let (_, thread) = self.current_stack(h.thread);
                self.writer.marker(time, thread, &text(label));
            }
            Record::Span { begin, name } => {
                let (_, thread) = self.current_stack(h.thread);
                let side = if begin { SpanSide::Begin } else { SpanSide::End };
                self.writer.span_edge(time, thread, side, &text(name));
            }
            Record::Gc { generation, duration_ns, collected, uncollectable } => {
                self.writer.gc(GcEvent {
                    time_ns: time.saturating_sub(duration_ns),
                    duration_ns,
                    generation,
                    collected,
                    uncollectable,
                });
            }
            Record::Stop => self.stopped = true,
            Record::Resident { address, bytes } => self.resident(time, address, bytes)?,
            Record::CensusBegin { trigger, label, sample_every } => {
                let label = text(label).into_owned();
                let sample_every = u64::from(sample_every.max(1));
                let b = CensusBuild { trigger, label, sample_every, ..Default::default() };
                self.censuses.insert(h.thread, b);
            }
            Record::CensusType(t) => self.census_type(h.thread, &t),
            Record::CensusCache(c) => {
                let module = self.writer.intern_string(&text(c.module));
                let qualname = self.writer.intern_string(&text(c.qualname));
                if let Some(b) = self.censuses.get_mut(&h.thread) {
                    b.caches.push(CacheCensus {
                        time_ns: time,
                        module,
                        qualname,
                        currsize: c.currsize,
                        maxsize: c.maxsize,
                        hits: c.hits,
                        misses: c.misses,
                        bytes: c.bytes,
                    });
                }
            }
            Record::NativeModule { bias, start, end, path, build_id } => {
                let path = text(path).into_owned();
                let build_id = build_id.to_vec();
                let module = memlens_format::NativeModule { path, build_id, bias, start, end };
                self.native.add_module(&mut self.writer, module);
            }
            Record::NativeFrame { id, parent, address } => {
                self.native.add_node(id, parent, address)
            }
            Record::NativeStack { node } => self.thread(h.thread).native = node,
            Record::CensusEnd { objects, duration_ns, recursion_limit } => {
                if let Some(b) = self.censuses.remove(&h.thread) {
                    self.finish_census(b, time, objects, duration_ns, recursion_limit);
                }
            }
        }
        Ok(())
    }

    /// Adds one type's objects to the census in progress, linking each address to the live
    /// allocation there (and so to the stack that made it).
    fn census_type(&mut self, thread: u32, t: &CensusType<'_>) {
        let module = self.writer.intern_string(&text(t.module));
        let qualname = self.writer.intern_string(&text(t.qualname));
        let Some(b) = self.censuses.get_mut(&thread) else { return };
        let every = b.sample_every;
        let tb = b.types.entry((module, qualname)).or_default();
        tb.census.count += t.count;
        tb.census.bytes += t.bytes;
        for a in addresses(t.addresses) {
            if let Some((size, stack)) = self.writer.live_block(a) {
                tb.census.linked_count += every;
                tb.census.linked_bytes += size * every;
                let site = tb.sites.entry(stack).or_default();
                site.0 += every;
                site.1 += size * every;
            }
        }
        tb.dict.sampled += t.dict_sampled;
        tb.dict.attrs += t.dict_attrs;
        tb.dict.slots_instance_bytes = tb.dict.slots_instance_bytes.max(t.slots_instance_bytes);
        for a in addresses(t.storage) {
            if let Some((size, _)) = self.writer.live_block(a) {
                tb.dict.storage_linked += 1;
                tb.dict.storage_bytes += size;
            }
        }
    }

    fn finish_census(
        &mut self,
        b: CensusBuild,
        time_ns: u64,
        objects: u64,
        duration_ns: u64,
        recursion_limit: u32,
    ) {
        let mut types: Vec<TypeCensus> = b
            .types
            .into_iter()
            .map(|((module, qualname), tb)| {
                let mut sites: Vec<TypeSite> = tb
                    .sites
                    .into_iter()
                    .map(|(stack, (count, bytes))| TypeSite { stack, count, bytes })
                    .collect();
                sites.sort_by_key(|s| (std::cmp::Reverse(s.bytes), s.stack));
                sites.truncate(TypeCensus::MAX_SITES);
                TypeCensus {
                    module,
                    qualname,
                    sites,
                    dict: (tb.dict.sampled > 0).then_some(tb.dict),
                    ..tb.census
                }
            })
            .collect();
        types.sort_by_key(|t| (std::cmp::Reverse(t.bytes), std::cmp::Reverse(t.count), t.qualname));
        self.writer.census(Census {
            time_ns,
            trigger: b.trigger,
            label: b.label,
            duration_ns,
            objects,
            recursion_limit,
            types,
        });
        self.writer.caches(b.caches);
    }

    /// Adds a process memory sample taken at CLOCK_MONOTONIC time `abs_ns`.
    pub fn sample(&mut self, abs_ns: u64, rss: u64, vms: u64) -> Result<()> {
        let time_ns = self.rel(abs_ns);
        self.writer.memory_sample(MemorySample { time_ns, rss, vms, heap: 0 })?;
        Ok(())
    }

    /// The writer, for what it carries besides this process's records (the streams of
    /// followed descendants).
    pub fn writer_mut(&mut self) -> &mut RecordingWriter<W> {
        &mut self.writer
    }

    /// Makes everything so far durable.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }

    /// The traced heap right now, in bytes.
    pub fn heap(&self) -> u64 {
        self.writer.heap()
    }

    /// Running aggregates (peak heap etc.).
    pub fn summary(&self) -> Summary {
        self.writer.summary()
    }

    /// Writes the end of the process and the trailer; returns the output.
    pub fn finish(
        mut self,
        abs_end_ns: u64,
        exit_code: Option<i32>,
        signal: Option<i32>,
    ) -> Result<W> {
        for i in 0..self.threads.len() as u32 {
            if self.threads[i as usize].is_some() {
                self.current_stack(i);
            }
        }
        let time_ns = self.rel(abs_end_ns).max(self.last_time);
        Ok(self.writer.finish(ProcessEnd { time_ns, exit_code, signal })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_analysis::{stack_totals, EventFilter, Snapshot};
    use memlens_format::{Meta, Recording};

    fn enc(out: &mut Vec<u8>, time_ns: u64, thread: u32, r: Record<'_>) {
        Record::Stretch(Header { time_ns, thread }).append_to(out);
        r.append_to(out);
    }

    fn hello(out: &mut Vec<u8>) {
        let hello = Hello {
            protocol: PROTOCOL,
            pid: 1,
            python_major: 3,
            python_minor: 11,
            native: true,
            sample_bytes: 0,
            native_stacks: false,
        };
        enc(out, 1_000, u32::MAX, Record::Hello(hello));
    }

    fn record_stream(bytes: &[u8], chunk: usize) -> Recording {
        let w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let mut rec = Recorder::new(w, 1_000);
        for piece in bytes.chunks(chunk) {
            rec.feed(piece).unwrap();
        }
        assert!(rec.stopped());
        let out = rec.finish(10_000, Some(0), None).unwrap();
        Recording::open(&out).unwrap()
    }

    #[test]
    fn replays_stacks_allocs_and_threads_in_any_chunking() {
        let mut s = Vec::new();
        hello(&mut s);
        enc(&mut s, 1_001, 0, Record::ThreadStart { os_tid: 7, name: b"python3" });
        enc(&mut s, 1_002, 0, Record::ThreadName { name: b"MainThread" });
        enc(
            &mut s,
            1_003,
            0,
            Record::Code { id: 0, first_line: 1, qualname: b"<module>", filename: b"a.py" },
        );
        enc(
            &mut s,
            1_004,
            0,
            Record::Code { id: 1, first_line: 5, qualname: b"f", filename: b"a.py" },
        );
        // A record far longer than a read, to be pieced together from many.
        let long_name = "g".repeat(3000);
        enc(
            &mut s,
            1_004,
            0,
            Record::Code {
                id: 2,
                first_line: 1,
                qualname: long_name.as_bytes(),
                filename: b"b.py",
            },
        );
        enc(&mut s, 1_005, 0, Record::Push { code: 0, line: 9 });
        enc(&mut s, 1_005, 0, Record::Push { code: 2, line: 2 });
        enc(&mut s, 1_005, 0, Record::Pop { n: 1 });
        enc(&mut s, 1_006, 0, Record::Push { code: 1, line: 5 });
        enc(&mut s, 1_006, 0, Record::Line { line: 6 });
        enc(&mut s, 1_007, 0, Record::Alloc { address: 0x10, size: 100, kind: AllocKind::Malloc });
        enc(&mut s, 1_008, 0, Record::Pop { n: 1 });
        enc(&mut s, 1_009, 0, Record::Alloc { address: 0x20, size: 5, kind: AllocKind::PyMem });
        enc(&mut s, 1_010, 0, Record::Free { address: 0x20, kind: AllocKind::PyMem });
        enc(&mut s, 1_011, 0, Record::Marker { label: b"done" });
        enc(&mut s, 1_012, u32::MAX, Record::Stop);
        for chunk in [1, 3, 7, 300, 4099, s.len()] {
            let rec = record_stream(&s, chunk);
            assert_eq!(rec.threads()[0].name, "MainThread");
            assert_eq!(rec.threads()[0].os_tid, 7);
            assert_eq!(rec.summary().peak_heap, 105);
            let end = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
            assert_eq!(end.total.bytes, 100);
            let (stack, _) = end.stacks[0];
            let names: Vec<(String, u32)> = rec
                .stack_frames(stack)
                .map(|f| {
                    let fr = rec.frame(f).unwrap();
                    (rec.string(fr.function).to_owned(), fr.line)
                })
                .collect();
            assert!(names.contains(&("f".to_owned(), 6)), "{names:?}");
            assert!(names.contains(&("<module>".to_owned(), 9)), "{names:?}");
            assert_eq!(rec.markers()[0].label, "done");
            let functions: Vec<&str> =
                rec.frames().iter().map(|f| rec.string(f.function)).collect();
            assert!(functions.contains(&long_name.as_str()), "chunk {chunk}: {functions:?}");
        }
    }

    /// Regression (issue 25): memlens's own frames (census, bootstrap, IPython helper) showed
    /// up as allocation sites.
    #[test]
    fn memlens_frames_are_left_out_of_stacks() {
        let mut s = Vec::new();
        hello(&mut s);
        for (id, qualname, filename) in [
            (0, &b"<module>"[..], &b"/srv/app.py"[..]),
            (1, b"census", b"/tmp/memlens-py-7-8/memlens/_census.py"),
            (2, b"_run", b"/venv/lib/python3.12/site-packages/memlens/ipython.py"),
        ] {
            enc(&mut s, 1_001, 0, Record::Code { id, first_line: 1, qualname, filename });
        }
        enc(&mut s, 1_002, 0, Record::Push { code: 0, line: 4 });
        enc(&mut s, 1_002, 0, Record::Push { code: 2, line: 87 });
        enc(&mut s, 1_002, 0, Record::Push { code: 1, line: 137 });
        enc(&mut s, 1_002, 0, Record::Line { line: 138 });
        enc(&mut s, 1_003, 0, Record::Alloc { address: 0x10, size: 64, kind: AllocKind::Malloc });
        enc(&mut s, 1_004, 0, Record::Pop { n: 2 });
        enc(&mut s, 1_005, 0, Record::Alloc { address: 0x20, size: 32, kind: AllocKind::Malloc });
        enc(&mut s, 1_006, u32::MAX, Record::Stop);
        let rec = record_stream(&s, s.len());
        let end = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        for (stack, _) in &end.stacks {
            let frames: Vec<String> = rec
                .stack_frames(*stack)
                .map(|f| rec.string(rec.frame(f).unwrap().function).to_owned())
                .collect();
            assert_eq!(frames, ["<module>"]);
        }
        assert_eq!(end.total.bytes, 96);
    }

    /// A `Recreate` charges a live block to the stack the thread has then, without
    /// changing the heap or the counts; one of a block not live changes nothing.
    #[test]
    fn a_recreated_object_moves_its_block_to_the_current_stack() {
        let mut s = Vec::new();
        let hello = Hello {
            protocol: PROTOCOL,
            pid: 1,
            python_major: 3,
            python_minor: 13,
            native: true,
            sample_bytes: 0,
            native_stacks: false,
        };
        enc(&mut s, 1_000, u32::MAX, Record::Hello(hello));
        enc(&mut s, 1_001, 0, Record::ThreadStart { os_tid: 7, name: b"MainThread" });
        for (id, name) in [(0, &b"rows"[..]), (1, b"cache")] {
            let code = Record::Code { id, first_line: 1, qualname: name, filename: b"a.py" };
            enc(&mut s, 1_002, 0, code);
        }
        enc(&mut s, 1_003, 0, Record::Push { code: 0, line: 3 });
        let k = AllocKind::PymallocObject;
        enc(&mut s, 1_004, 0, Record::Alloc { address: 0x40, size: 64, kind: k });
        enc(&mut s, 1_005, 0, Record::Pop { n: 1 });
        enc(&mut s, 1_006, 0, Record::Push { code: 1, line: 8 });
        enc(&mut s, 1_007, 0, Record::Recreate { address: 0x40 });
        enc(&mut s, 1_008, 0, Record::Recreate { address: 0x80 });
        enc(&mut s, 1_009, u32::MAX, Record::Stop);
        let rec = record_stream(&s, s.len());
        let end = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        assert_eq!(end.total.bytes, 64);
        let frame = rec.frame(rec.stack(end.stacks[0].0).unwrap().frame).unwrap();
        assert_eq!((rec.string(frame.function), frame.line), ("cache", 8));
        let summary = rec.summary();
        assert_eq!((summary.alloc_count, summary.peak_heap, summary.end_heap), (1, 64, 64));
    }

    #[test]
    fn push_of_unknown_code_is_an_error_not_a_panic() {
        let mut s = Vec::new();
        enc(&mut s, 1, 0, Record::Push { code: 42, line: 1 });
        let w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let mut rec = Recorder::new(w, 0);
        assert!(rec.feed(&s).is_err());
    }
}
