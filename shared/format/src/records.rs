//! The records a recording holds, as plain structs (postcard-encoded where the table is small).

use serde::{Deserialize, Serialize};

use crate::{AllocatorKind, FrameId, StackId, StringId, ThreadId};

/// Facts about the recorded run, written once at the start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Meta {
    /// Version of the memlens that wrote the file.
    pub memlens_version: String,
    /// Python version string, e.g. `3.11.7`.
    pub python_version: String,
    /// Python implementation, e.g. `CPython`.
    pub python_implementation: String,
    /// The traced program's command line.
    pub command_line: Vec<String>,
    /// Working directory of the traced program.
    pub cwd: String,
    /// Process id of the traced program.
    pub pid: u32,
    /// Host name.
    pub hostname: String,
    /// Platform, e.g. `linux-x86_64`.
    pub platform: String,
    /// Wall-clock start time, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// What was captured.
    pub capture: CaptureOptions,
    /// Room for more: key/value pairs a later writer may add without a format change.
    pub extra: Vec<(String, String)>,
}

/// The `Meta.extra` key of a sampled recording's rate (`memlens run --sample`): the mean
/// bytes between sampled allocations, as a decimal integer. Its allocation sizes are then
/// estimates (see [`Meta::sample_bytes`]).
pub const META_SAMPLE_BYTES: &str = "sample_bytes";
/// `Meta.extra` key: `on` when each allocation's stack goes on below its Python frames into
/// the native (C, C++, Rust) functions that made it (`memlens run --native-stacks`).
pub const META_NATIVE_STACKS: &str = "native_stacks";

/// The `Meta.extra` key of a descendant's recording (format 5, FORMAT.md "Processes"): the
/// pid of its parent, as a decimal integer.
pub const META_PPID: &str = "ppid";

/// The `Meta.extra` key of a descendant's recording: its number in the file.
pub const META_PROCESS: &str = "process";

impl Meta {
    /// The value of `extra` key `key`, if there is one.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A descendant's recording: its parent's pid.
    pub fn ppid(&self) -> Option<u32> {
        self.extra(META_PPID)?.parse().ok()
    }

    /// For a sampled recording, the mean bytes between sampled allocations: each heap block
    /// in it stands for the blocks of its size that were not sampled, and its recorded size
    /// is the estimate of their bytes ([`crate::sample_weight`]), so every byte figure read
    /// from it is an estimate, and so is every count from format 8 on
    /// ([`crate::Recording::block_count`], [`crate::sampled_blocks`]). `None`: every
    /// allocation was recorded.
    pub fn sample_bytes(&self) -> Option<u64> {
        self.extra(META_SAMPLE_BYTES).and_then(|v| v.parse().ok()).filter(|&b| b > 0)
    }

    /// Whether the stacks go on into native frames ([`META_NATIVE_STACKS`]).
    pub fn native_stacks(&self) -> bool {
        self.extra(META_NATIVE_STACKS) == Some("on")
    }
}

/// What the collector traced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CaptureOptions {
    /// CPython's allocator domains were traced.
    pub python_allocators: bool,
    /// Native malloc/mmap were traced.
    pub native: bool,
    /// Only process memory was sampled, with no allocation tracing.
    pub rss_only: bool,
    /// Interval between memory samples, in microseconds.
    pub sample_interval_us: u64,
}

/// One interned frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// Qualified function name.
    pub function: StringId,
    /// Source file.
    pub file: StringId,
    /// Line executing in this frame (1-based; 0 when unknown).
    pub line: u32,
}

/// A node of the stack prefix tree: the stack `parent` with `frame` called on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StackNode {
    /// The caller's stack.
    pub parent: StackId,
    /// The innermost frame of this stack.
    pub frame: FrameId,
}

/// A thread of the traced program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// Dense id used by events.
    pub id: ThreadId,
    /// The operating system's thread id.
    pub os_tid: u64,
    /// Thread name (Python's `threading` name when known).
    pub name: String,
}

/// A sample of process memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemorySample {
    /// Nanoseconds since the start of the recording.
    pub time_ns: u64,
    /// Resident set size in bytes (the process and its children).
    pub rss: u64,
    /// Virtual memory size in bytes.
    pub vms: u64,
    /// Traced heap in bytes at the time of the sample (filled in by the writer).
    pub heap: u64,
}

/// A label the program put on its timeline (`memlens.mark("...")`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Nanoseconds since the start of the recording.
    pub time_ns: u64,
    /// The thread that set it.
    pub thread: ThreadId,
    /// The label.
    pub label: String,
}

/// Which end of a span a [`SpanEdge`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanSide {
    /// The span begins.
    Begin,
    /// The span ends.
    End,
}

/// Where a span begins or ends: `with memlens.span(name)`, a test under the pytest plugin,
/// a notebook cell (format 7; older files wrote them as markers labelled `begin: NAME` and
/// `end: NAME`, which readers turn into these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanEdge {
    /// Nanoseconds since the start of the recording.
    pub time_ns: u64,
    /// The thread that began or ended it: a span ends on the thread it began on.
    pub thread: ThreadId,
    /// Whether the span begins or ends here.
    pub side: SpanSide,
    /// The span's name.
    pub name: String,
}

/// One run of Python's garbage collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GcEvent {
    /// Start, in nanoseconds since the start of the recording.
    pub time_ns: u64,
    /// How long it took; 0 if unknown (a collection under way when tracing began).
    pub duration_ns: u64,
    /// The generation collected (0, 1 or 2).
    pub generation: u8,
    /// Objects collected.
    pub collected: u64,
    /// Objects found uncollectable.
    pub uncollectable: u64,
}

/// Why a census was taken. The numbers are what the tracer sends and recordings store
/// ([`Census::trigger`] is a u8, so that triggers newer than a reader do not break it); the
/// `memlens` Python package's `_census.TRIGGERS` has the same (a test checks they agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CensusTrigger {
    /// When tracing started.
    Start = 0,
    /// At `memlens.mark(label)`.
    Mark = 1,
    /// Every `--census-interval` seconds.
    Interval = 2,
    /// At interpreter exit.
    Exit = 3,
}

impl CensusTrigger {
    /// Every trigger, in number order.
    pub const ALL: [CensusTrigger; 4] =
        [CensusTrigger::Start, CensusTrigger::Mark, CensusTrigger::Interval, CensusTrigger::Exit];

    /// The trigger numbered `n`, if this reader knows it.
    pub fn from_u8(n: u8) -> Option<CensusTrigger> {
        CensusTrigger::ALL.into_iter().find(|t| *t as u8 == n)
    }

    /// Its stable name (used in JSON and URLs): `start`, `mark`, `interval` or `exit`.
    pub fn name(self) -> &'static str {
        match self {
            CensusTrigger::Start => "start",
            CensusTrigger::Mark => "mark",
            CensusTrigger::Interval => "interval",
            CensusTrigger::Exit => "exit",
        }
    }
}

/// [`CensusTrigger`]s as the u8 that [`Census::trigger`] holds.
pub mod census_trigger {
    use super::CensusTrigger;

    /// [`CensusTrigger::Start`].
    pub const START: u8 = CensusTrigger::Start as u8;
    /// [`CensusTrigger::Mark`].
    pub const MARK: u8 = CensusTrigger::Mark as u8;
    /// [`CensusTrigger::Interval`].
    pub const INTERVAL: u8 = CensusTrigger::Interval as u8;
    /// [`CensusTrigger::Exit`].
    pub const EXIT: u8 = CensusTrigger::Exit as u8;

    /// The stable name of trigger number `trigger` ([`CensusTrigger::name`]), or `other`
    /// for triggers newer than this reader.
    pub fn name(trigger: u8) -> &'static str {
        CensusTrigger::from_u8(trigger).map_or("other", CensusTrigger::name)
    }
}

/// A count of the live gc-tracked Python objects, by type, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Census {
    /// When the census finished, in nanoseconds since the start of the recording.
    pub time_ns: u64,
    /// Why it was taken: a [`CensusTrigger`] (a u8, so new triggers do not break readers).
    pub trigger: u8,
    /// The mark's label for [`census_trigger::MARK`], else empty.
    pub label: String,
    /// How long the census took in the traced program.
    pub duration_ns: u64,
    /// All gc-tracked objects counted.
    pub objects: u64,
    /// `sys.getrecursionlimit()` at census time.
    pub recursion_limit: u32,
    /// Per type, largest shallow size first.
    pub types: Vec<TypeCensus>,
}

/// Live objects of one type in a [`Census`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TypeCensus {
    /// `type.__module__`.
    pub module: StringId,
    /// `type.__qualname__`.
    pub qualname: StringId,
    /// Live objects.
    pub count: u64,
    /// Sum of their `sys.getsizeof` (shallow: the object itself, not what it refers to).
    pub bytes: u64,
    /// Objects whose allocation is a live traced allocation (the rest were allocated
    /// before tracing started or are static).
    pub linked_count: u64,
    /// Recorded size of those allocations.
    pub linked_bytes: u64,
    /// Where the linked objects were allocated: the top stacks by bytes (at most
    /// [`TypeCensus::MAX_SITES`]).
    pub sites: Vec<TypeSite>,
    /// For instances with a `__dict__` (no `__slots__`): what their attributes cost.
    pub dict: Option<DictUsage>,
}

impl TypeCensus {
    /// Sites kept per type.
    pub const MAX_SITES: usize = 8;
}

/// Objects of one type allocated at one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TypeSite {
    /// The allocation stack.
    pub stack: StackId,
    /// Objects.
    pub count: u64,
    /// Their recorded allocation sizes.
    pub bytes: u64,
}

/// Attribute storage of the instances of a class without `__slots__`, measured on a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DictUsage {
    /// Instances sampled.
    pub sampled: u64,
    /// Attributes found on them, in total.
    pub attrs: u64,
    /// Sampled instances whose attribute storage (CPython 3.11: the inline values array or
    /// the materialized `__dict__`) is a live traced allocation.
    pub storage_linked: u64,
    /// Recorded size of that storage.
    pub storage_bytes: u64,
    /// What one instance would take with `__slots__` for its attributes (object header,
    /// one pointer per slot, GC header), in bytes.
    pub slots_instance_bytes: u64,
}

/// A `functools.lru_cache` wrapper alive at a census.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheCensus {
    /// The census time.
    pub time_ns: u64,
    /// The wrapped function's `__module__`.
    pub module: StringId,
    /// The wrapped function's `__qualname__`.
    pub qualname: StringId,
    /// Entries held (`cache_info().currsize`).
    pub currsize: u64,
    /// `maxsize`, `None` when unbounded.
    pub maxsize: Option<u64>,
    /// `cache_info().hits`.
    pub hits: u64,
    /// `cache_info().misses`.
    pub misses: u64,
    /// Shallow bytes of the cached keys and results (see FORMAT.md for what is counted).
    pub bytes: u64,
}

/// How the traced process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessEnd {
    /// Nanoseconds since the start of the recording.
    pub time_ns: u64,
    /// Exit status, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when it was killed.
    pub signal: Option<i32>,
}

/// What happened in one allocation event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A block of `size` bytes was allocated at `address`.
    Alloc,
    /// The block at `address` was freed.
    Free,
}

/// One allocation event, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// Alloc or free.
    pub op: Op,
    /// Which allocator.
    pub kind: AllocatorKind,
    /// Nanoseconds since the start of the recording, at microsecond resolution.
    pub time_ns: u64,
    /// The thread that made the call.
    pub thread: ThreadId,
    /// The block's address.
    pub address: u64,
    /// Size in bytes. For a free (format 4): the size of the block it ends.
    pub size: u64,
    /// Python stack of the allocation. For a free (format 4): the stack that allocated the
    /// block, and [`Event::thread`] is the thread that did. Before format 4, frees carry the
    /// freeing thread, no size (0) and [`StackId::ROOT`].
    pub stack: StackId,
}

impl Event {
    /// Half of an object's re-creation ([`AllocatorKind::Recreated`]): the free (the block
    /// leaving the thread and stack that held it) or the alloc (the block joining the thread
    /// and stack that re-created an object in it) of a live block that stays live. The two
    /// come together, free first, at one time, with the block's address and size. Replays
    /// that follow blocks apply them as a free and an alloc; those that count allocations,
    /// frees or what was allocated leave them out; the heap does not change.
    #[inline]
    pub fn is_recreation(&self) -> bool {
        self.kind == AllocatorKind::Recreated
    }
}

/// Bytes and number of allocations.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Totals {
    /// Bytes.
    pub bytes: u64,
    /// Allocations.
    pub count: u64,
}

impl Totals {
    /// Adds one allocation of `bytes`.
    pub fn add(&mut self, bytes: u64) {
        self.add_blocks(bytes, 1);
    }

    /// Adds `count` blocks of `bytes` in all: one heap block of a recording, which stands for
    /// [`crate::Recording::block_count`] blocks.
    #[inline]
    pub fn add_blocks(&mut self, bytes: u64, count: u64) {
        // Saturating: sizes come from untrusted files.
        self.bytes = self.bytes.saturating_add(bytes);
        self.count = self.count.saturating_add(count);
    }

    /// Adds other totals.
    pub fn merge(&mut self, other: Totals) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.count = self.count.saturating_add(other.count);
    }
}

/// Whole-recording aggregates the writer computes while recording, stored in the trailer so a
/// reader can show them without replaying the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Time of the last event or sample, in nanoseconds.
    pub duration_ns: u64,
    /// The traced heap's high-water mark in bytes.
    pub peak_heap: u64,
    /// When it was reached.
    pub peak_heap_time_ns: u64,
    /// Highest sampled RSS in bytes.
    pub peak_rss: u64,
    /// When it was sampled.
    pub peak_rss_time_ns: u64,
    /// Traced heap still allocated at the end, in bytes.
    pub end_heap: u64,
    /// Allocations still live at the end.
    pub end_live_count: u64,
    /// Number of allocations.
    pub alloc_count: u64,
    /// Bytes allocated in total.
    pub alloc_bytes: u64,
    /// Number of frees.
    pub free_count: u64,
}

/// Where a chunk is, for readers that seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The chunk's tag.
    pub tag: u8,
    /// Offset of its header in the file.
    pub offset: u64,
    /// First event or sample time in it (0 for tables).
    pub first_time_ns: u64,
    /// Last event or sample time in it.
    pub last_time_ns: u64,
    /// Number of items in it.
    pub count: u64,
}

/// The last content chunk of a cleanly closed recording.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Trailer {
    /// Precomputed aggregates.
    pub summary: Summary,
    /// Every chunk before the trailer, in file order.
    pub index: Vec<IndexEntry>,
}
