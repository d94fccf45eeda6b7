//! Typed ids for interned tables, and the allocator kinds.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl $name {
            /// The id as an index into its table.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// An interned string (function names, file names, labels).
    StringId
);
id_type!(
    /// An interned frame: function, file and line.
    FrameId
);
id_type!(
    /// A node of the stack prefix tree. [`StackId::ROOT`] is the empty stack.
    StackId
);
id_type!(
    /// A traced thread, numbered densely by the collector in order of appearance.
    ThreadId
);

impl StackId {
    /// The empty stack: allocations with no Python frame (threads created from C, start-up).
    pub const ROOT: StackId = StackId(0);
}

/// Which allocator produced an allocation.
///
/// Stored in 3 bits of the event header; new kinds may be added up to 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum AllocatorKind {
    /// CPython's object domain (`PyObject_Malloc`, pymalloc for small blocks).
    PymallocObject = 0,
    /// CPython's mem domain (`PyMem_Malloc`).
    PyMem = 1,
    /// CPython's raw domain (`PyMem_RawMalloc`).
    PyRaw = 2,
    /// Native `malloc`, `calloc`, `realloc`, `posix_memalign`, `aligned_alloc` from C code.
    Malloc = 3,
    /// Native `mmap` from C code. Since kind 6 exists: the resident pages of an anonymous
    /// mapping of kind 6, recorded at that mapping's address + 1 and re-recorded as they
    /// change (before: a whole anonymous mapping, touched or not).
    Mmap = 4,
    /// System memory that pymalloc maps for its arenas. Its blocks are already counted under
    /// [`AllocatorKind::PymallocObject`]/[`AllocatorKind::PyMem`], so it is not part of the heap.
    PymallocArena = 5,
    /// Address space mapped with `mmap` by C code (OpenBLAS's per-thread buffers, jemalloc's
    /// and mimalloc's regions, file mappings): reserved, not necessarily used, so not part of
    /// the heap. The part of an anonymous mapping that becomes resident is recorded as
    /// [`AllocatorKind::Mmap`].
    Reserved = 6,
    /// Not a kind of block but a kind of event: a new object was made in a live heap block
    /// without calling an allocator (CPython 3.13+ re-creating an object from a free list),
    /// so the block is charged to another (thread, stack) from then on. Written as a free of
    /// the block as it was, then an alloc of it by its new owner, both of this kind: the heap,
    /// the block's own kind and the allocation counts do not change. See
    /// [`crate::Event::is_recreation`].
    Recreated = 7,
}

impl AllocatorKind {
    /// All kinds, in code order.
    pub const ALL: [AllocatorKind; 8] = [
        AllocatorKind::PymallocObject,
        AllocatorKind::PyMem,
        AllocatorKind::PyRaw,
        AllocatorKind::Malloc,
        AllocatorKind::Mmap,
        AllocatorKind::PymallocArena,
        AllocatorKind::Reserved,
        AllocatorKind::Recreated,
    ];

    /// The kind for a 3-bit code, if it is known.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// Whether allocations of this kind count toward the traced heap.
    pub fn counts_in_heap(self) -> bool {
        !matches!(self, AllocatorKind::PymallocArena | AllocatorKind::Reserved)
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            AllocatorKind::PymallocObject => "pymalloc object",
            AllocatorKind::PyMem => "PyMem",
            AllocatorKind::PyRaw => "PyMem raw",
            AllocatorKind::Malloc => "malloc",
            AllocatorKind::Mmap => "resident (mmap, big blocks)",
            AllocatorKind::PymallocArena => "pymalloc arena",
            AllocatorKind::Reserved => "reserved (mmap, big blocks)",
            AllocatorKind::Recreated => "re-created object",
        }
    }
}
