//! Each record's payload layout, written once ([`fields`]): one walk over its fields in
//! wire order that measures them ([`payload_len`]), writes them ([`write_payload`]) or reads
//! them ([`read_payload`]). The hot records also have hand-packed forms in `record.rs`
//! (tested to agree with these), and the fixed sizes a compile-time table, `fixed_payload`,
//! that the drain reads with one load per record (tested against [`payload_len`]).

use crate::record::{CensusCache, CensusType, Header, Hello, Record, MAX_BLOB_LEN, MAX_STR_LEN};

/// What a walk over a record's fields does with each: measure, write or read it.
trait Fields<'a> {
    fn u8(&mut self, v: &mut u8);
    fn u32(&mut self, v: &mut u32);
    fn u64(&mut self, v: &mut u64);
    /// A `u32` length, then the bytes (cut to [`MAX_STR_LEN`]).
    fn str(&mut self, v: &mut &'a [u8]);
    /// A `u32` length, then whole 8-byte items (cut to [`MAX_BLOB_LEN`]).
    fn blob(&mut self, v: &mut &'a [u8]);
    /// A bool as a `u8` (0 or not).
    fn flag(&mut self, v: &mut bool) {
        let mut b = *v as u8;
        self.u8(&mut b);
        *v = b != 0;
    }
}

/// The layout of every record: its payload fields in wire order (after the tag and, for
/// variable-size records, the length). An allocation's and a free's kind is in the tag.
fn fields<'a>(rec: &mut Record<'a>, f: &mut impl Fields<'a>) {
    match rec {
        Record::Hello(h) => {
            f.u32(&mut h.protocol);
            f.u32(&mut h.pid);
            f.u8(&mut h.python_major);
            f.u8(&mut h.python_minor);
            f.flag(&mut h.native);
            f.u64(&mut h.sample_bytes);
            f.flag(&mut h.native_stacks);
        }
        Record::Stretch(h) => {
            f.u64(&mut h.time_ns);
            f.u32(&mut h.thread);
        }
        Record::Seq { seq, ticks, thread } => {
            f.u64(seq);
            f.u64(ticks);
            f.u32(thread);
        }
        Record::ThreadStart { os_tid, name } => {
            f.u64(os_tid);
            f.str(name);
        }
        Record::ThreadName { name } => f.str(name),
        Record::Code { id, first_line, qualname, filename } => {
            f.u32(id);
            f.u32(first_line);
            f.str(qualname);
            f.str(filename);
        }
        Record::Push { code, line } => {
            f.u32(code);
            f.u32(line);
        }
        Record::Pop { n } => f.u32(n),
        Record::Line { line } => f.u32(line),
        Record::Alloc { address, size, .. } => {
            f.u64(address);
            f.u64(size);
        }
        Record::Free { address, .. } | Record::Recreate { address } => f.u64(address),
        Record::Marker { label } => f.str(label),
        Record::Span { begin, name } => {
            f.flag(begin);
            f.str(name);
        }
        Record::Gc { generation, duration_ns, collected, uncollectable } => {
            f.u8(generation);
            f.u64(duration_ns);
            f.u64(collected);
            f.u64(uncollectable);
        }
        Record::Stop => {}
        Record::Resident { address, bytes } => {
            f.u64(address);
            f.u64(bytes);
        }
        Record::CensusBegin { trigger, label, sample_every } => {
            f.u8(trigger);
            f.u32(sample_every);
            f.str(label);
        }
        Record::CensusType(t) => {
            f.u64(&mut t.count);
            f.u64(&mut t.bytes);
            f.u64(&mut t.dict_sampled);
            f.u64(&mut t.dict_attrs);
            f.u64(&mut t.slots_instance_bytes);
            f.str(&mut t.module);
            f.str(&mut t.qualname);
            f.blob(&mut t.addresses);
            f.blob(&mut t.storage);
        }
        Record::CensusCache(c) => {
            // The bound is a u64 (0 when unbounded) and, after the counts, a flag.
            let mut maxsize = c.maxsize.unwrap_or(0);
            let mut bounded = c.maxsize.is_some();
            f.u64(&mut c.currsize);
            f.u64(&mut maxsize);
            f.u64(&mut c.hits);
            f.u64(&mut c.misses);
            f.u64(&mut c.bytes);
            f.flag(&mut bounded);
            f.str(&mut c.module);
            f.str(&mut c.qualname);
            c.maxsize = bounded.then_some(maxsize);
        }
        Record::CensusEnd { objects, duration_ns, recursion_limit } => {
            f.u64(objects);
            f.u64(duration_ns);
            f.u32(recursion_limit);
        }
        Record::NativeModule { bias, start, end, path, build_id } => {
            f.u64(bias);
            f.u64(start);
            f.u64(end);
            f.str(path);
            f.str(build_id);
        }
        Record::NativeFrame { id, parent, address } => {
            f.u32(id);
            f.u32(parent);
            f.u64(address);
        }
        Record::NativeStack { node } => f.u32(node),
    }
}

/// A record of the kind `tag` names, all its fields zero, for [`read_payload`] to fill;
/// `None` for the tags that are not read field by field (the packed forms, unknown tags).
fn blank<'a>(tag: u8) -> Option<Record<'a>> {
    use crate::record::tags::*;
    let kind = |first: u8| crate::record::AllocKind::from_u8(tag.wrapping_sub(first)).ok();
    Some(match tag {
        TAG_HELLO => Record::Hello(Hello::default()),
        TAG_STRETCH => Record::Stretch(Header { time_ns: 0, thread: 0 }),
        TAG_SEQ => Record::Seq { seq: 0, ticks: 0, thread: 0 },
        TAG_THREAD_START => Record::ThreadStart { os_tid: 0, name: &[] },
        TAG_THREAD_NAME => Record::ThreadName { name: &[] },
        TAG_CODE => Record::Code { id: 0, first_line: 0, qualname: &[], filename: &[] },
        TAG_PUSH => Record::Push { code: 0, line: 0 },
        TAG_POP => Record::Pop { n: 0 },
        TAG_LINE => Record::Line { line: 0 },
        TAG_RECREATE => Record::Recreate { address: 0 },
        TAG_MARKER => Record::Marker { label: &[] },
        TAG_SPAN => Record::Span { begin: false, name: &[] },
        TAG_GC => Record::Gc { generation: 0, duration_ns: 0, collected: 0, uncollectable: 0 },
        TAG_STOP => Record::Stop,
        TAG_RESIDENT => Record::Resident { address: 0, bytes: 0 },
        TAG_CENSUS_BEGIN => Record::CensusBegin { trigger: 0, label: &[], sample_every: 0 },
        TAG_CENSUS_TYPE => Record::CensusType(CensusType::default()),
        TAG_CENSUS_CACHE => Record::CensusCache(CensusCache::default()),
        TAG_CENSUS_END => Record::CensusEnd { objects: 0, duration_ns: 0, recursion_limit: 0 },
        TAG_NATIVE_MODULE => {
            Record::NativeModule { bias: 0, start: 0, end: 0, path: &[], build_id: &[] }
        }
        TAG_NATIVE_FRAME => Record::NativeFrame { id: 0, parent: 0, address: 0 },
        TAG_NATIVE_STACK => Record::NativeStack { node: 0 },
        t if (TAG_ALLOC..TAG_FREE).contains(&t) => {
            Record::Alloc { address: 0, size: 0, kind: kind(TAG_ALLOC)? }
        }
        t if (TAG_FREE..FIRST_VARIABLE).contains(&t) => {
            Record::Free { address: 0, kind: kind(TAG_FREE)? }
        }
        _ => return None,
    })
}

/// Payload bytes of `rec` (after its tag and length field).
pub(crate) fn payload_len(rec: &Record<'_>) -> usize {
    struct Measure(usize);
    impl Fields<'_> for Measure {
        fn u8(&mut self, _: &mut u8) {
            self.0 += 1;
        }
        fn u32(&mut self, _: &mut u32) {
            self.0 += 4;
        }
        fn u64(&mut self, _: &mut u64) {
            self.0 += 8;
        }
        fn str(&mut self, v: &mut &[u8]) {
            self.0 += 4 + v.len().min(MAX_STR_LEN);
        }
        fn blob(&mut self, v: &mut &[u8]) {
            self.0 += 4 + (v.len().min(MAX_BLOB_LEN) & !7);
        }
    }
    let mut m = Measure(0);
    fields(&mut { *rec }, &mut m);
    m.0
}

/// Writes `rec`'s payload at the start of `out`, which holds at least [`payload_len`] bytes;
/// returns the bytes written.
pub(crate) fn write_payload(rec: &Record<'_>, out: &mut [u8]) -> usize {
    struct Cursor<'b> {
        buf: &'b mut [u8],
        pos: usize,
    }
    impl Cursor<'_> {
        fn put(&mut self, bytes: &[u8]) {
            self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
            self.pos += bytes.len();
        }
        fn sized(&mut self, b: &[u8]) {
            self.put(&(b.len() as u32).to_le_bytes());
            self.put(b);
        }
    }
    impl Fields<'_> for Cursor<'_> {
        fn u8(&mut self, v: &mut u8) {
            self.put(&[*v]);
        }
        fn u32(&mut self, v: &mut u32) {
            self.put(&v.to_le_bytes());
        }
        fn u64(&mut self, v: &mut u64) {
            self.put(&v.to_le_bytes());
        }
        fn str(&mut self, v: &mut &[u8]) {
            self.sized(&v[..v.len().min(MAX_STR_LEN)]);
        }
        fn blob(&mut self, v: &mut &[u8]) {
            self.sized(&v[..v.len().min(MAX_BLOB_LEN) & !7]);
        }
    }
    let mut w = Cursor { buf: out, pos: 0 };
    fields(&mut { *rec }, &mut w);
    w.pos
}

/// Reads the payload of a record of kind `tag` that is exactly `buf`; `None` when the tag
/// is not read field by field, or `buf` is too short, too long or holds a ragged blob.
pub(crate) fn read_payload(tag: u8, buf: &[u8]) -> Option<Record<'_>> {
    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
        ok: bool,
    }
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            match self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)) {
                Some(s) => {
                    self.pos += n;
                    s
                }
                None => {
                    self.ok = false;
                    &[]
                }
            }
        }
        fn array<const N: usize>(&mut self) -> [u8; N] {
            self.take(N).try_into().unwrap_or([0; N])
        }
    }
    impl<'a> Fields<'a> for Reader<'a> {
        fn u8(&mut self, v: &mut u8) {
            *v = self.array::<1>()[0];
        }
        fn u32(&mut self, v: &mut u32) {
            *v = u32::from_le_bytes(self.array());
        }
        fn u64(&mut self, v: &mut u64) {
            *v = u64::from_le_bytes(self.array());
        }
        fn str(&mut self, v: &mut &'a [u8]) {
            let n = u32::from_le_bytes(self.array()) as usize;
            *v = self.take(n);
        }
        fn blob(&mut self, v: &mut &'a [u8]) {
            self.str(v);
            // A blob holds whole u64 items: a ragged length is corrupt.
            self.ok &= v.len() % 8 == 0;
        }
    }
    let mut rec = blank(tag)?;
    let mut r = Reader { buf, pos: 0, ok: true };
    fields(&mut rec, &mut r);
    (r.ok && r.pos == buf.len()).then_some(rec)
}
