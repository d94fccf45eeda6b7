//! The records of the pipe protocol: what the tracer tells the recorder. How they are
//! laid out in bytes is in `layout.rs` (every field) and `codec.rs` (the hot packed forms,
//! lengths, streams).

use crate::WireError;

/// Protocol number sent in [`Hello`]; bumped whenever a record's layout changes so
/// a parent and a tracer from different builds fail loudly instead of misreading.
pub const PROTOCOL: u32 = 9;

/// Upper bound on one variable-length record's `len` field. Strings (qualnames, paths,
/// labels) are truncated by the tracer well below this; anything longer is corruption.
pub const MAX_RECORD_LEN: u32 = 1 << 20;

/// Longest string the encoder writes; longer ones are cut (at a byte boundary, so a
/// multi-byte UTF-8 character may be split; the decoder side uses lossy UTF-8).
pub const MAX_STR_LEN: usize = 4096;

/// Longest binary blob (census address lists) one record carries; the sender splits
/// longer lists over several records. 512 KiB = 65,536 addresses, half of
/// [`MAX_RECORD_LEN`], so a record with two full blobs still fits.
pub const MAX_BLOB_LEN: usize = 512 * 1024 - 64;

/// What a record is stamped with: the [`Record::Stretch`] before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// CLOCK_MONOTONIC nanoseconds, absolute (the parent subtracts its start time).
    pub time_ns: u64,
    /// Tracer-assigned thread index, announced by [`Record::ThreadStart`].
    pub thread: u32,
}

/// Which allocator an allocation went through. Mirrors the format crate's kinds. At most
/// 8 (the packed records hold a kind in 3 bits; the full ones in 6 tags each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AllocKind {
    /// `PyObject_Malloc` & co (the object domain).
    PymallocObject = 0,
    /// `PyMem_Malloc` & co (the mem domain).
    PyMem = 1,
    /// `PyMem_RawMalloc` & co (the raw domain).
    PyRaw = 2,
    /// Native malloc/calloc/realloc/memalign family.
    Malloc = 3,
    /// Native mmap.
    Mmap = 4,
    /// mmap done by pymalloc for its arenas (not counted in the heap).
    PymallocArena = 5,
    /// Address space mapped with mmap by C code: not counted in the heap. The part of an
    /// anonymous mapping that is resident comes in [`Record::Resident`].
    Reserved = 6,
}

/// Number of allocator kinds.
pub(crate) const KINDS: u8 = 7;

impl AllocKind {
    /// Whether `memlens run --sample` samples allocations of this kind: heap blocks.
    /// Mappings (reserved address space, pymalloc's arenas) are few and large, and their
    /// resident pages are followed by the drain: they are always recorded.
    #[inline(always)]
    pub fn sampled(self) -> bool {
        (self as u8) <= AllocKind::Malloc as u8
    }

    /// Whether `memlens run --native-stacks` records the native stack of allocations of this
    /// kind: the blocks C code asks for itself (malloc and its family, mmap, Python's raw
    /// domain), not Python's objects and buffers (pymalloc's object and mem domains). Those
    /// are most allocations of a Python program and nearly all are made by the interpreter
    /// itself, so unwinding each of them (to find out) made `bench/`'s churn 19 times slower
    /// than the plain run (1.8 times without native stacks); the objects a C extension makes
    /// keep the Python line that called it. The tracer unwinds these kinds only, and the
    /// recorder gives the thread's last native stack ([`Record::NativeStack`]) to these only.
    #[inline(always)]
    pub fn native_stack(self) -> bool {
        matches!(self, AllocKind::Malloc | AllocKind::Mmap | AllocKind::Reserved | AllocKind::PyRaw)
    }

    pub(crate) fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0 => AllocKind::PymallocObject,
            1 => AllocKind::PyMem,
            2 => AllocKind::PyRaw,
            3 => AllocKind::Malloc,
            4 => AllocKind::Mmap,
            5 => AllocKind::PymallocArena,
            6 => AllocKind::Reserved,
            _ => return Err(WireError::UnknownKind(b)),
        })
    }
}

/// First record on the pipe, sent when tracing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hello {
    pub protocol: u32,
    pub pid: u32,
    pub python_major: u8,
    pub python_minor: u8,
    /// Native (malloc/mmap) hooks are recording.
    pub native: bool,
    /// Allocations of the [`AllocKind::sampled`] kinds are sampled, one every this many
    /// bytes on average (Poisson byte sampling); 0: every allocation is recorded.
    pub sample_bytes: u64,
    /// Each recorded allocation is preceded by its native stack ([`Record::NativeStack`]).
    pub native_stacks: bool,
}

/// One raw record. Strings are raw bytes (normally UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// Tracing started.
    Hello(Hello),
    /// Pipe only: the records up to the next `Stretch` are this thread's, at this time.
    Stretch(Header),
    /// Ring only: the thread's records from here on come after every record stamped with
    /// a lower `seq` (on any thread); `ticks` is the time-stamp counter when it was taken.
    /// The drain turns it into a [`Record::Stretch`].
    Seq { seq: u64, ticks: u64, thread: u32 },
    /// A thread's first record; the stretch's thread is its new index.
    ThreadStart { os_tid: u64, name: &'a [u8] },
    /// The thread got (or changed) its name.
    ThreadName { name: &'a [u8] },
    /// A code object's id, sent before the first `Push` that uses it.
    Code { id: u32, first_line: u32, qualname: &'a [u8], filename: &'a [u8] },
    /// The thread's stack gained a frame.
    Push { code: u32, line: u32 },
    /// The thread's stack lost `n` frames.
    Pop { n: u32 },
    /// The thread's top frame moved to `line`: `Pop { n: 1 }` and a `Push` of the same code
    /// at `line`, in a third of the bytes (most stack changes before an allocation).
    Line { line: u32 },
    /// An allocation, attributed to the thread's current stack.
    Alloc { address: u64, size: u64, kind: AllocKind },
    /// A deallocation.
    Free { address: u64, kind: AllocKind },
    /// A new object was made in the block at `address` without an allocation (CPython 3.13+
    /// re-creating it from a free list): the block is now the thread's current stack's.
    Recreate { address: u64 },
    /// `memlens.mark(label)`.
    Marker { label: &'a [u8] },
    /// A span (`with memlens.span(name):`) begins (`begin`) or ends on this thread.
    Span { begin: bool, name: &'a [u8] },
    /// A garbage collection finished.
    Gc { generation: u8, duration_ns: u64, collected: u64, uncollectable: u64 },
    /// Tracing stopped cleanly (interpreter exit or `_exit`).
    Stop,
    /// `bytes` of the anonymous mapping recorded (as [`AllocKind::Reserved`]) at `address`
    /// are resident now; sent by the drain, of no thread.
    Resident { address: u64, bytes: u64 },
    /// An object census starts on this thread. `trigger`: why, as the number of a
    /// `memlens_format::CensusTrigger`; `label` is the mark's label. A census of many objects looks at
    /// one object in `sample_every` (1: all of them): its types' counts and sizes are
    /// estimates, already scaled up, and their address lists hold the objects looked at.
    CensusBegin { trigger: u8, label: &'a [u8], sample_every: u32 },
    /// Live gc-tracked objects of one type. A type may come in several records
    /// (long address lists are split); counts and sizes add up.
    CensusType(CensusType<'a>),
    /// A `functools.lru_cache` wrapper alive at census time.
    CensusCache(CensusCache<'a>),
    /// The census on this thread is complete.
    CensusEnd { objects: u64, duration_ns: u64, recursion_limit: u32 },
    /// A loaded module (executable or shared library) the native stacks point into:
    /// its load bias (what is added to its ELF addresses), the range `[start, end)` its
    /// segments occupy, its path and its GNU build id (empty: none).
    NativeModule { bias: u64, start: u64, end: u64, path: &'a [u8], build_id: &'a [u8] },
    /// A node of the thread's native-stack prefix tree: return `address`, called from the
    /// stack of node `parent` (0: the outermost frame). Node ids are process-wide, from 1.
    NativeFrame { id: u32, parent: u32, address: u64 },
    /// The thread's allocations from here on of the kinds that have native stacks
    /// ([`AllocKind::native_stack`]) have that of node `node` (0: none).
    NativeStack { node: u32 },
}

/// Payload of [`Record::CensusType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CensusType<'a> {
    /// Objects of this type in this record.
    pub count: u64,
    /// Sum of their `sys.getsizeof`.
    pub bytes: u64,
    /// Instances sampled for their attribute storage (types without `__slots__`).
    pub dict_sampled: u64,
    /// Attributes found on the sampled instances, in total.
    pub dict_attrs: u64,
    /// Bytes one instance would take with `__slots__` for the attributes it has
    /// (header, slots, GC header), as computed by the census; 0 when not applicable.
    pub slots_instance_bytes: u64,
    pub module: &'a [u8],
    pub qualname: &'a [u8],
    /// Allocation addresses of the objects, u64 little-endian each.
    pub addresses: &'a [u8],
    /// Allocation addresses of the sampled instances' attribute storage, u64 LE each.
    pub storage: &'a [u8],
}

/// Payload of [`Record::CensusCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CensusCache<'a> {
    pub currsize: u64,
    /// `None` for an unbounded cache (`maxsize=None`).
    pub maxsize: Option<u64>,
    pub hits: u64,
    pub misses: u64,
    /// Shallow bytes of the cached keys and values (see the census for what is counted).
    pub bytes: u64,
    pub module: &'a [u8],
    pub qualname: &'a [u8],
}

/// Record tags (the first byte of every record).
pub(crate) mod tags {
    use super::KINDS;

    pub const TAG_HELLO: u8 = 1;
    pub const TAG_STRETCH: u8 = 2;
    pub const TAG_SEQ: u8 = 3;
    pub const TAG_PUSH: u8 = 4;
    pub const TAG_POP: u8 = 5;
    pub const TAG_GC: u8 = 6;
    pub const TAG_STOP: u8 = 7;
    pub const TAG_CENSUS_END: u8 = 8;
    pub const TAG_LINE: u8 = 9;
    pub const TAG_RESIDENT: u8 = 12;
    /// An allocation in 9 bytes: a `u64` of address (48 bits), size (13) and kind (3), for the
    /// usual block below 8 KiB at an address below 2^48 (all of user space on x86-64).
    pub const TAG_ALLOC_PACKED: u8 = 10;
    /// A free in 8 bytes: a 7-byte `u56` of address (48 bits) and kind.
    pub const TAG_FREE_PACKED: u8 = 11;
    /// `Record::Recreate`: a `u64` address.
    pub const TAG_RECREATE: u8 = 13;
    pub const TAG_NATIVE_FRAME: u8 = 14;
    pub const TAG_NATIVE_STACK: u8 = 15;
    /// `TAG_ALLOC + kind` (kinds 0..KINDS).
    pub const TAG_ALLOC: u8 = 16;
    /// `TAG_FREE + kind` (kinds 0..KINDS).
    pub const TAG_FREE: u8 = 24;
    /// Tags from here on are followed by a `u32` payload length.
    pub const FIRST_VARIABLE: u8 = 32;
    pub const TAG_THREAD_START: u8 = 32;
    pub const TAG_THREAD_NAME: u8 = 33;
    pub const TAG_CODE: u8 = 34;
    pub const TAG_MARKER: u8 = 35;
    pub const TAG_CENSUS_BEGIN: u8 = 36;
    pub const TAG_CENSUS_TYPE: u8 = 37;
    pub const TAG_CENSUS_CACHE: u8 = 38;
    pub const TAG_NATIVE_MODULE: u8 = 39;
    pub const TAG_SPAN: u8 = 40;
    /// The last variable-size tag.
    pub const LAST_VARIABLE: u8 = TAG_SPAN;
    const _: () = assert!(TAG_ALLOC + KINDS <= TAG_FREE && TAG_FREE + KINDS <= FIRST_VARIABLE);
}
