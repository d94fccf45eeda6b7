//! pprof's `profile.proto` (github.com/google/pprof, proto/profile.proto), encoded by hand:
//! the message is small, and writing its few fields directly keeps this crate free of a
//! protobuf code generator. The output is the uncompressed message; pprof files are usually
//! gzipped, which the caller does.
//!
//! A heap profile as Go writes one: four sample types, `alloc_objects`/`alloc_space` (what
//! was allocated) and `inuse_objects`/`inuse_space` (what was live at the view's moment),
//! one sample per (thread, stack, allocator) with the thread's name and id and the allocator
//! as labels, a Location per (function, file, line) and a Function per (function, file).

use rustc_hash::FxHashMap;

use super::{export_frames, frame_parts, ExportView, NO_PYTHON_FRAME};
use crate::{AllocatorKind, Recording, StackId, ThreadId, ThreadStackTotals, Totals};

/// Field numbers of profile.proto's messages.
mod field {
    pub const PROFILE_SAMPLE_TYPE: u32 = 1;
    pub const PROFILE_SAMPLE: u32 = 2;
    pub const PROFILE_LOCATION: u32 = 4;
    pub const PROFILE_FUNCTION: u32 = 5;
    pub const PROFILE_STRING_TABLE: u32 = 6;
    pub const PROFILE_TIME_NANOS: u32 = 9;
    pub const PROFILE_DURATION_NANOS: u32 = 10;
    pub const PROFILE_PERIOD_TYPE: u32 = 11;
    pub const PROFILE_PERIOD: u32 = 12;
    pub const PROFILE_COMMENT: u32 = 13;
    pub const PROFILE_DEFAULT_SAMPLE_TYPE: u32 = 14;
    pub const VALUE_TYPE_TYPE: u32 = 1;
    pub const VALUE_TYPE_UNIT: u32 = 2;
    pub const SAMPLE_LOCATION_ID: u32 = 1;
    pub const SAMPLE_VALUE: u32 = 2;
    pub const SAMPLE_LABEL: u32 = 3;
    pub const LABEL_KEY: u32 = 1;
    pub const LABEL_STR: u32 = 2;
    pub const LABEL_NUM: u32 = 3;
    pub const LOCATION_ID: u32 = 1;
    pub const LOCATION_LINE: u32 = 4;
    pub const LINE_FUNCTION_ID: u32 = 1;
    pub const LINE_LINE: u32 = 2;
    pub const FUNCTION_ID: u32 = 1;
    pub const FUNCTION_NAME: u32 = 2;
    pub const FUNCTION_FILENAME: u32 = 4;
}

/// Protobuf wire types.
const VARINT: u32 = 0;
const LEN: u32 = 2;

/// A message being written: protobuf's encoding of fields, in the order written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// An integer field (uint64, or an int64 that is never negative here). Zero is
    /// protobuf's default and is left out, as protobuf encoders do.
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }

    /// A repeated integer field, packed (proto3's default for repeated scalars).
    fn packed(&mut self, field: u32, values: &[u64]) {
        let mut m = Message::default();
        for &v in values {
            m.varint(v);
        }
        self.message(field, m);
    }
}

/// The string table: index 0 is the empty string, as profile.proto requires.
struct Strings {
    index: FxHashMap<String, u64>,
    table: Vec<String>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings { index: FxHashMap::default(), table: Vec::new() };
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as u64;
        self.index.insert(s.to_owned(), i);
        self.table.push(s.to_owned());
        i
    }
}

/// What goes into the profile besides the samples.
#[derive(Debug, Clone, Default)]
pub struct PprofOptions {
    /// When the profiled run started (ns since the Unix epoch; 0 when unknown).
    pub time_nanos: u64,
    /// How long it ran (ns).
    pub duration_nanos: u64,
    /// Lines for the profile's comments (the command, the view).
    pub comments: Vec<String>,
}

/// Builds the profile: the samples of `allocated` (alloc_objects, alloc_space) and `in_use`
/// (inuse_objects, inuse_space) for the same (thread, stack, allocator) share one sample.
/// `view` picks the default sample type (inuse_space, or alloc_space for
/// [`ExportView::Total`]).
///
/// ```
/// # use memlens_format::*;
/// # use memlens_analysis::*;
/// # let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
/// # w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
/// # let f = w.intern_frame("load", "app.py", 10);
/// # let s = w.intern_stack(StackId::ROOT, f);
/// # w.alloc(1_000, ThreadId(0), s, 0x10, 4096, AllocatorKind::Malloc).unwrap();
/// # let rec = Recording::open(&w.finish(ProcessEnd::default()).unwrap()).unwrap();
/// let view = ExportView::Peak;
/// let in_use = thread_stack_totals(&rec, view.in_use()).unwrap();
/// let allocated = thread_stack_totals(&rec, view.allocated()).unwrap();
/// let proto = pprof(&rec, &in_use, &allocated, view, &PprofOptions::default());
/// assert!(proto.windows(11).any(|w| w == b"inuse_space"));
/// ```
pub fn pprof(
    rec: &Recording,
    in_use: &ThreadStackTotals,
    allocated: &ThreadStackTotals,
    view: ExportView,
    options: &PprofOptions,
) -> Vec<u8> {
    let mut strings = Strings::new();
    let mut profile = Message::default();
    let value_type = |strings: &mut Strings, kind: &str, unit: &str| {
        let mut m = Message::default();
        m.uint(field::VALUE_TYPE_TYPE, strings.id(kind));
        m.uint(field::VALUE_TYPE_UNIT, strings.id(unit));
        m
    };
    for (kind, unit) in [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ] {
        let m = value_type(&mut strings, kind, unit);
        profile.message(field::PROFILE_SAMPLE_TYPE, m);
    }

    // (alloc, inuse) per (thread, stack), in a stable order: allocated first (it holds every
    // stack that is live too), then anything live that the allocated view does not have
    // (a range's peak can hold blocks allocated before the range).
    type Key = (ThreadId, StackId, Option<AllocatorKind>);
    let mut order: Vec<Key> = Vec::new();
    let mut values: FxHashMap<Key, (Totals, Totals)> = FxHashMap::default();
    for &(thread, stack, allocator, t) in &allocated.entries {
        order.push((thread, stack, allocator));
        values.entry((thread, stack, allocator)).or_default().0 = t;
    }
    for &(thread, stack, allocator, t) in &in_use.entries {
        let v = values.entry((thread, stack, allocator)).or_insert_with(|| {
            order.push((thread, stack, allocator));
            Default::default()
        });
        v.1 = t;
    }

    let mut locations = Locations::default();
    let (thread_key, tid_key) = (strings.id("thread"), strings.id("thread_id"));
    let allocator_key = strings.id("allocator");
    for key in order {
        let (alloc, live) = values[&key];
        let (thread, stack, allocator) = key;
        let mut sample = Message::default();
        let frames = export_frames(rec, stack);
        let ids: Vec<u64> = if frames.is_empty() {
            vec![locations.id(&mut strings, NO_PYTHON_FRAME, "", 0)]
        } else {
            // Leaf first, as profile.proto orders a sample's locations.
            frames
                .iter()
                .rev()
                .map(|&f| {
                    let (function, file, line) = frame_parts(rec, f);
                    locations.id(&mut strings, function, file, line)
                })
                .collect()
        };
        sample.packed(field::SAMPLE_LOCATION_ID, &ids);
        sample.packed(
            field::SAMPLE_VALUE,
            &[alloc.count, alloc.bytes, live.count, live.bytes].map(|v| v.min(i64::MAX as u64)),
        );
        if let Some(info) = rec.thread(thread) {
            let mut name = Message::default();
            name.uint(field::LABEL_KEY, thread_key);
            name.uint(field::LABEL_STR, strings.id(&info.name));
            sample.message(field::SAMPLE_LABEL, name);
            let mut tid = Message::default();
            tid.uint(field::LABEL_KEY, tid_key);
            // An OS thread id fits an int64 (Linux's are at most 2^22).
            tid.uint(field::LABEL_NUM, info.os_tid.min(i64::MAX as u64));
            sample.message(field::SAMPLE_LABEL, tid);
        }
        // Recordings older than format 8 do not keep allocators apart: no label.
        if let Some(kind) = allocator {
            let mut label = Message::default();
            label.uint(field::LABEL_KEY, allocator_key);
            label.uint(field::LABEL_STR, strings.id(kind.name()));
            sample.message(field::SAMPLE_LABEL, label);
        }
        profile.message(field::PROFILE_SAMPLE, sample);
    }

    locations.write(&mut profile);
    profile.uint(field::PROFILE_TIME_NANOS, options.time_nanos.min(i64::MAX as u64));
    profile.uint(field::PROFILE_DURATION_NANOS, options.duration_nanos.min(i64::MAX as u64));
    // An exact recording counts every allocation: a period of one byte. A sampled one says
    // its rate, as Go's heap profiles do; like theirs, its values are already the estimates
    // (bytes and counts, see `memlens_format::sampled_blocks`).
    let period = value_type(&mut strings, "space", "bytes");
    profile.message(field::PROFILE_PERIOD_TYPE, period);
    profile
        .uint(field::PROFILE_PERIOD, rec.meta().sample_bytes().unwrap_or(1).min(i64::MAX as u64));
    for c in &options.comments {
        let id = strings.id(c);
        profile.uint(field::PROFILE_COMMENT, id);
    }
    let default = if view.shows_in_use() { "inuse_space" } else { "alloc_space" };
    let default = strings.id(default);
    profile.uint(field::PROFILE_DEFAULT_SAMPLE_TYPE, default);
    // The string table last: every other field has interned its strings by now.
    for s in &strings.table {
        profile.bytes(field::PROFILE_STRING_TABLE, s.as_bytes());
    }
    profile.0
}

/// Locations (one per function, file and line) and their functions (one per function and
/// file), with 1-based ids in order of first use.
#[derive(Default)]
struct Locations {
    locations: FxHashMap<(u64, u64, u32), u64>,
    functions: FxHashMap<(u64, u64), u64>,
    /// (location id, function id, line), in id order.
    location_rows: Vec<(u64, u64, u32)>,
    /// (name, file) string ids, in id order.
    function_rows: Vec<(u64, u64)>,
}

impl Locations {
    fn id(&mut self, strings: &mut Strings, function: &str, file: &str, line: u32) -> u64 {
        let (name, file) = (strings.id(function), strings.id(file));
        if let Some(&id) = self.locations.get(&(name, file, line)) {
            return id;
        }
        let next = self.function_rows.len() as u64 + 1;
        let function_id = *self.functions.entry((name, file)).or_insert(next);
        if function_id == next {
            self.function_rows.push((name, file));
        }
        let id = self.location_rows.len() as u64 + 1;
        self.locations.insert((name, file, line), id);
        self.location_rows.push((id, function_id, line));
        id
    }

    fn write(&self, profile: &mut Message) {
        for &(id, function_id, line) in &self.location_rows {
            let mut l = Message::default();
            l.uint(field::LINE_FUNCTION_ID, function_id);
            l.uint(field::LINE_LINE, u64::from(line));
            let mut loc = Message::default();
            loc.uint(field::LOCATION_ID, id);
            loc.message(field::LOCATION_LINE, l);
            profile.message(field::PROFILE_LOCATION, loc);
        }
        for (i, &(name, file)) in self.function_rows.iter().enumerate() {
            let mut f = Message::default();
            f.uint(field::FUNCTION_ID, i as u64 + 1);
            // No system_name: pprof would run its C++ demangler on it and show names like
            // `<module>` as empty (it leaves a function whose name differs from it alone).
            f.uint(field::FUNCTION_NAME, name);
            f.uint(field::FUNCTION_FILENAME, file);
            profile.message(field::PROFILE_FUNCTION, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_encode_as_protobuf_does() {
        let mut m = Message::default();
        m.uint(1, 150);
        // protobuf's own example: field 1, value 150 -> 08 96 01.
        assert_eq!(m.0, [0x08, 0x96, 0x01]);
        let mut m = Message::default();
        m.packed(4, &[3, 270, 86942]);
        // The packed example from protobuf's encoding guide.
        assert_eq!(m.0, [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);
        let mut m = Message::default();
        m.bytes(2, b"testing");
        assert_eq!(m.0, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        let mut m = Message::default();
        m.uint(3, 0);
        assert!(m.0.is_empty(), "zero is the default and is left out");
    }

    #[test]
    fn the_string_table_starts_with_the_empty_string_and_interns() {
        let mut s = Strings::new();
        assert_eq!(s.id("a"), 1);
        assert_eq!(s.id(""), 0);
        assert_eq!(s.id("a"), 1);
        assert_eq!(s.table, ["", "a"]);
    }
}
