use crate::WireError;

/// Protocol number sent in [`Hello`]; bumped whenever a record's layout changes so
/// a parent and a tracer from different builds fail loudly instead of misreading.
pub const PROTOCOL: u32 = 1;

/// Bytes before the tag-specific payload: len (4) + time (8) + thread (4) + tag (1).
pub const HEADER_LEN: usize = 17;

/// Upper bound on one record's `len` field. Strings (qualnames, paths, labels) are
/// truncated by the tracer well below this; anything longer is corruption.
pub const MAX_RECORD_LEN: u32 = 1 << 20;

/// Longest string the encoder writes; longer ones are cut (at a byte boundary, so a
/// multi-byte UTF-8 character may be split; the decoder side uses lossy UTF-8).
pub const MAX_STR_LEN: usize = 4096;

/// Longest binary blob (census address lists) one record carries; the sender splits
/// longer lists over several records. 512 KiB = 65,536 addresses, half of
/// [`MAX_RECORD_LEN`], so a record with two full blobs still fits.
pub const MAX_BLOB_LEN: usize = 512 * 1024 - 64;

/// The part every record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// CLOCK_MONOTONIC nanoseconds, absolute (the parent subtracts its start time).
    pub time_ns: u64,
    /// Tracer-assigned thread index, announced by [`Record::ThreadStart`].
    pub thread: u32,
}

/// Which allocator an allocation went through. Mirrors the format crate's kinds.
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
}

impl AllocKind {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0 => AllocKind::PymallocObject,
            1 => AllocKind::PyMem,
            2 => AllocKind::PyRaw,
            3 => AllocKind::Malloc,
            4 => AllocKind::Mmap,
            5 => AllocKind::PymallocArena,
            _ => return Err(WireError::UnknownKind(b)),
        })
    }
}

/// First record on the pipe, sent when tracing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u32,
    pub pid: u32,
    pub python_major: u8,
    pub python_minor: u8,
    /// Native (malloc/mmap) hooks are recording.
    pub native: bool,
}

/// One raw record. Strings are raw bytes (normally UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// Tag 1: tracing started.
    Hello(Hello),
    /// Tag 2: a thread's first record; `thread` in the header is its new index.
    ThreadStart { os_tid: u64, name: &'a [u8] },
    /// Tag 3: the thread got (or changed) its name.
    ThreadName { name: &'a [u8] },
    /// Tag 4: a code object's id, sent before the first `Push` that uses it.
    Code { id: u32, first_line: u32, qualname: &'a [u8], filename: &'a [u8] },
    /// Tag 5: the thread's stack gained a frame.
    Push { code: u32, line: u32 },
    /// Tag 6: the thread's stack lost `n` frames.
    Pop { n: u32 },
    /// Tag 7: an allocation, attributed to the thread's current stack.
    Alloc { address: u64, size: u64, kind: AllocKind },
    /// Tag 8: a deallocation.
    Free { address: u64, kind: AllocKind },
    /// Tag 9: `memlens.mark(label)`.
    Marker { label: &'a [u8] },
    /// Tag 10: a garbage collection finished.
    Gc { generation: u8, duration_ns: u64, collected: u64, uncollectable: u64 },
    /// Tag 11: tracing stopped cleanly (interpreter exit or `_exit`).
    Stop,
    /// Tag 12: an object census starts on this thread. `trigger`: 0 start, 1 mark,
    /// 2 interval, 3 exit; `label` is the mark's label.
    CensusBegin { trigger: u8, label: &'a [u8] },
    /// Tag 13: live gc-tracked objects of one type. A type may come in several records
    /// (long address lists are split); counts and sizes add up.
    CensusType(CensusType<'a>),
    /// Tag 14: a `functools.lru_cache` wrapper alive at census time.
    CensusCache(CensusCache<'a>),
    /// Tag 15: the census on this thread is complete.
    CensusEnd { objects: u64, duration_ns: u64, recursion_limit: u32 },
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

const TAG_HELLO: u8 = 1;
const TAG_THREAD_START: u8 = 2;
const TAG_THREAD_NAME: u8 = 3;
const TAG_CODE: u8 = 4;
const TAG_PUSH: u8 = 5;
const TAG_POP: u8 = 6;
const TAG_ALLOC: u8 = 7;
const TAG_FREE: u8 = 8;
const TAG_MARKER: u8 = 9;
const TAG_GC: u8 = 10;
const TAG_STOP: u8 = 11;
const TAG_CENSUS_BEGIN: u8 = 12;
const TAG_CENSUS_TYPE: u8 = 13;
const TAG_CENSUS_CACHE: u8 = 14;
const TAG_CENSUS_END: u8 = 15;

fn str_len(s: &[u8]) -> usize {
    4 + s.len().min(MAX_STR_LEN)
}

/// Blobs are cut to whole 8-byte items.
fn blob_len(b: &[u8]) -> usize {
    4 + (b.len().min(MAX_BLOB_LEN) & !7)
}

impl Record<'_> {
    fn tag(&self) -> u8 {
        match self {
            Record::Hello(_) => TAG_HELLO,
            Record::ThreadStart { .. } => TAG_THREAD_START,
            Record::ThreadName { .. } => TAG_THREAD_NAME,
            Record::Code { .. } => TAG_CODE,
            Record::Push { .. } => TAG_PUSH,
            Record::Pop { .. } => TAG_POP,
            Record::Alloc { .. } => TAG_ALLOC,
            Record::Free { .. } => TAG_FREE,
            Record::Marker { .. } => TAG_MARKER,
            Record::Gc { .. } => TAG_GC,
            Record::Stop => TAG_STOP,
            Record::CensusBegin { .. } => TAG_CENSUS_BEGIN,
            Record::CensusType(_) => TAG_CENSUS_TYPE,
            Record::CensusCache(_) => TAG_CENSUS_CACHE,
            Record::CensusEnd { .. } => TAG_CENSUS_END,
        }
    }

    fn payload_len(&self) -> usize {
        match self {
            Record::Hello(_) => 4 + 4 + 1 + 1 + 1,
            Record::ThreadStart { name, .. } => 8 + str_len(name),
            Record::ThreadName { name } => str_len(name),
            Record::Code { qualname, filename, .. } => 8 + str_len(qualname) + str_len(filename),
            Record::Push { .. } => 8,
            Record::Pop { .. } => 4,
            Record::Alloc { .. } => 17,
            Record::Free { .. } => 9,
            Record::Marker { label } => str_len(label),
            Record::Gc { .. } => 25,
            Record::Stop => 0,
            Record::CensusBegin { label, .. } => 1 + str_len(label),
            Record::CensusType(t) => {
                5 * 8
                    + str_len(t.module)
                    + str_len(t.qualname)
                    + blob_len(t.addresses)
                    + blob_len(t.storage)
            }
            Record::CensusCache(c) => 5 * 8 + 1 + str_len(c.module) + str_len(c.qualname),
            Record::CensusEnd { .. } => 8 + 8 + 4,
        }
    }

    /// Total encoded size of this record, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Encodes into `out`, returning the number of bytes written, or `None` if `out`
    /// is shorter than [`Record::encoded_len`]. Never allocates.
    pub fn encode_into(&self, header: Header, out: &mut [u8]) -> Option<usize> {
        let total = self.encoded_len();
        let out = out.get_mut(..total)?;
        let mut w = Cursor { buf: out, pos: 0 };
        w.u32((total - 4) as u32);
        w.u64(header.time_ns);
        w.u32(header.thread);
        w.u8(self.tag());
        match *self {
            Record::Hello(h) => {
                w.u32(h.protocol);
                w.u32(h.pid);
                w.u8(h.python_major);
                w.u8(h.python_minor);
                w.u8(h.native as u8);
            }
            Record::ThreadStart { os_tid, name } => {
                w.u64(os_tid);
                w.str(name);
            }
            Record::ThreadName { name } => w.str(name),
            Record::Code { id, first_line, qualname, filename } => {
                w.u32(id);
                w.u32(first_line);
                w.str(qualname);
                w.str(filename);
            }
            Record::Push { code, line } => {
                w.u32(code);
                w.u32(line);
            }
            Record::Pop { n } => w.u32(n),
            Record::Alloc { address, size, kind } => {
                w.u64(address);
                w.u64(size);
                w.u8(kind as u8);
            }
            Record::Free { address, kind } => {
                w.u64(address);
                w.u8(kind as u8);
            }
            Record::Marker { label } => w.str(label),
            Record::Gc { generation, duration_ns, collected, uncollectable } => {
                w.u8(generation);
                w.u64(duration_ns);
                w.u64(collected);
                w.u64(uncollectable);
            }
            Record::Stop => {}
            Record::CensusBegin { trigger, label } => {
                w.u8(trigger);
                w.str(label);
            }
            Record::CensusType(t) => {
                for v in [t.count, t.bytes, t.dict_sampled, t.dict_attrs, t.slots_instance_bytes] {
                    w.u64(v);
                }
                w.str(t.module);
                w.str(t.qualname);
                w.blob(t.addresses);
                w.blob(t.storage);
            }
            Record::CensusCache(c) => {
                for v in [c.currsize, c.maxsize.unwrap_or(0), c.hits, c.misses, c.bytes] {
                    w.u64(v);
                }
                w.u8(c.maxsize.is_some() as u8);
                w.str(c.module);
                w.str(c.qualname);
            }
            Record::CensusEnd { objects, duration_ns, recursion_limit } => {
                w.u64(objects);
                w.u64(duration_ns);
                w.u32(recursion_limit);
            }
        }
        debug_assert_eq!(w.pos, total);
        Some(total)
    }
}

struct Cursor<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn str(&mut self, s: &[u8]) {
        let s = &s[..s.len().min(MAX_STR_LEN)];
        self.u32(s.len() as u32);
        self.put(s);
    }
    fn blob(&mut self, b: &[u8]) {
        let b = &b[..b.len().min(MAX_BLOB_LEN) & !7];
        self.u32(b.len() as u32);
        self.put(b);
    }
}

/// Reads the timestamp of the record starting at `buf[0]` without decoding it.
/// Returns `None` if fewer than 12 bytes are available.
pub fn peek_time(buf: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(4..12)?.try_into().ok()?))
}

/// Overwrites the timestamp of the record starting at `buf[0]` (at least 12 bytes).
pub fn set_time(buf: &mut [u8], time: u64) {
    buf[4..12].copy_from_slice(&time.to_le_bytes());
}

/// Decodes the record at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a record (read more and retry),
/// `Ok(Some((header, record, bytes_used)))` otherwise.
pub fn decode(buf: &[u8]) -> Result<Option<(Header, Record<'_>, usize)>, WireError> {
    let Some(len_bytes) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes"));
    if len > MAX_RECORD_LEN {
        return Err(WireError::TooLong(len));
    }
    let total = 4 + len as usize;
    let Some(rec) = buf.get(..total) else { return Ok(None) };
    if total < HEADER_LEN {
        return Err(WireError::BadLength { tag: 0, len });
    }
    let mut r = Reader { buf: &rec[4..], pos: 0 };
    let bad = WireError::BadLength { tag: rec[16], len };
    let header =
        Header { time_ns: r.u64().ok_or(bad.clone())?, thread: r.u32().ok_or(bad.clone())? };
    let tag = r.u8().ok_or(bad.clone())?;
    let record = decode_payload(tag, &mut r).ok_or(bad.clone())??;
    if r.pos != r.buf.len() {
        return Err(bad);
    }
    Ok(Some((header, record, total)))
}

fn decode_payload<'a>(tag: u8, r: &mut Reader<'a>) -> Option<Result<Record<'a>, WireError>> {
    Some(Ok(match tag {
        TAG_HELLO => Record::Hello(Hello {
            protocol: r.u32()?,
            pid: r.u32()?,
            python_major: r.u8()?,
            python_minor: r.u8()?,
            native: r.u8()? != 0,
        }),
        TAG_THREAD_START => Record::ThreadStart { os_tid: r.u64()?, name: r.str()? },
        TAG_THREAD_NAME => Record::ThreadName { name: r.str()? },
        TAG_CODE => Record::Code {
            id: r.u32()?,
            first_line: r.u32()?,
            qualname: r.str()?,
            filename: r.str()?,
        },
        TAG_PUSH => Record::Push { code: r.u32()?, line: r.u32()? },
        TAG_POP => Record::Pop { n: r.u32()? },
        TAG_ALLOC => {
            let address = r.u64()?;
            let size = r.u64()?;
            match AllocKind::from_u8(r.u8()?) {
                Ok(kind) => Record::Alloc { address, size, kind },
                Err(e) => return Some(Err(e)),
            }
        }
        TAG_FREE => {
            let address = r.u64()?;
            match AllocKind::from_u8(r.u8()?) {
                Ok(kind) => Record::Free { address, kind },
                Err(e) => return Some(Err(e)),
            }
        }
        TAG_MARKER => Record::Marker { label: r.str()? },
        TAG_GC => Record::Gc {
            generation: r.u8()?,
            duration_ns: r.u64()?,
            collected: r.u64()?,
            uncollectable: r.u64()?,
        },
        TAG_STOP => Record::Stop,
        TAG_CENSUS_BEGIN => Record::CensusBegin { trigger: r.u8()?, label: r.str()? },
        TAG_CENSUS_TYPE => Record::CensusType(CensusType {
            count: r.u64()?,
            bytes: r.u64()?,
            dict_sampled: r.u64()?,
            dict_attrs: r.u64()?,
            slots_instance_bytes: r.u64()?,
            module: r.str()?,
            qualname: r.str()?,
            addresses: r.blob()?,
            storage: r.blob()?,
        }),
        TAG_CENSUS_CACHE => {
            let (currsize, maxsize, hits, misses, bytes) =
                (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let bounded = r.u8()? != 0;
            Record::CensusCache(CensusCache {
                currsize,
                maxsize: bounded.then_some(maxsize),
                hits,
                misses,
                bytes,
                module: r.str()?,
                qualname: r.str()?,
            })
        }
        TAG_CENSUS_END => Record::CensusEnd {
            objects: r.u64()?,
            duration_ns: r.u64()?,
            recursion_limit: r.u32()?,
        },
        other => return Some(Err(WireError::UnknownTag(other))),
    }))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A blob of whole u64 items; a ragged length is corrupt.
    fn blob(&mut self) -> Option<&'a [u8]> {
        let b = self.str()?;
        (b.len() % 8 == 0).then_some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_records() -> Vec<Record<'static>> {
        vec![
            Record::Hello(Hello {
                protocol: PROTOCOL,
                pid: 42,
                python_major: 3,
                python_minor: 11,
                native: true,
            }),
            Record::ThreadStart { os_tid: 1234, name: b"MainThread" },
            Record::ThreadName { name: b"worker-1" },
            Record::Code { id: 7, first_line: 3, qualname: b"C.f", filename: b"/x/y.py" },
            Record::Push { code: 7, line: 12 },
            Record::Pop { n: 3 },
            Record::Alloc { address: 0xdead_beef, size: 100 << 20, kind: AllocKind::PyRaw },
            Record::Free { address: 0xdead_beef, kind: AllocKind::PymallocArena },
            Record::Marker { label: "é".as_bytes() },
            Record::Gc { generation: 2, duration_ns: 99, collected: 5, uncollectable: 1 },
            Record::Stop,
            Record::CensusBegin { trigger: 1, label: b"loaded" },
            Record::CensusType(CensusType {
                count: 3,
                bytes: 168,
                dict_sampled: 1,
                dict_attrs: 3,
                slots_instance_bytes: 56,
                module: b"__main__",
                qualname: b"Point",
                addresses: &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
                storage: &[3, 0, 0, 0, 0, 0, 0, 0],
            }),
            Record::CensusCache(CensusCache {
                currsize: 10,
                maxsize: None,
                hits: 1,
                misses: 10,
                bytes: 640,
                module: b"m",
                qualname: b"f",
            }),
            Record::CensusCache(CensusCache { maxsize: Some(0), ..Default::default() }),
            Record::CensusEnd { objects: 1000, duration_ns: 5, recursion_limit: 1000 },
        ]
    }

    #[test]
    fn round_trips_every_record() {
        for (i, rec) in all_records().into_iter().enumerate() {
            let hdr = Header { time_ns: 1_000 + i as u64, thread: i as u32 };
            let mut buf = vec![0u8; rec.encoded_len()];
            assert_eq!(rec.encode_into(hdr, &mut buf), Some(buf.len()));
            assert_eq!(peek_time(&buf), Some(hdr.time_ns));
            assert_eq!(decode(&buf).unwrap(), Some((hdr, rec, buf.len())), "{rec:?}");
        }
    }

    #[test]
    fn alloc_is_byte_exact() {
        let rec = Record::Alloc { address: 0x10, size: 0x20, kind: AllocKind::Malloc };
        let mut buf = [0u8; 34];
        assert_eq!(rec.encode_into(Header { time_ns: 1, thread: 2 }, &mut buf), Some(34));
        #[rustfmt::skip]
        let want = [
            30, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 0, 0,
            2, 0, 0, 0,
            TAG_ALLOC,
            0x10, 0, 0, 0, 0, 0, 0, 0,
            0x20, 0, 0, 0, 0, 0, 0, 0,
            3,
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn short_output_buffer_is_refused() {
        let rec = Record::Pop { n: 1 };
        let mut buf = [0u8; 10];
        assert_eq!(rec.encode_into(Header { time_ns: 0, thread: 0 }, &mut buf), None);
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let mut stream = Vec::new();
        for rec in all_records() {
            let mut buf = vec![0u8; rec.encoded_len()];
            rec.encode_into(Header { time_ns: 0, thread: 0 }, &mut buf).unwrap();
            stream.extend_from_slice(&buf);
        }
        let first_len = decode(&stream).unwrap().unwrap().2;
        for cut in 0..first_len {
            assert_eq!(decode(&stream[..cut]).unwrap(), None);
        }
        let mut pos = 0;
        let mut n = 0;
        while let Some((_, _, used)) = decode(&stream[pos..]).unwrap() {
            pos += used;
            n += 1;
        }
        assert_eq!((pos, n), (stream.len(), all_records().len()));
    }

    #[test]
    fn long_strings_are_truncated() {
        let long = vec![b'a'; MAX_STR_LEN + 100];
        let rec = Record::Marker { label: &long };
        let mut buf = vec![0u8; rec.encoded_len()];
        rec.encode_into(Header { time_ns: 0, thread: 0 }, &mut buf).unwrap();
        let (_, got, _) = decode(&buf).unwrap().unwrap();
        assert_eq!(got, Record::Marker { label: &long[..MAX_STR_LEN] });
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: every byte pattern from a tiny LCG, at many lengths.
        let mut x: u32 = 12345;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = decode(&buf);
        }
        let mut bad = [0u8; HEADER_LEN];
        bad[0] = (HEADER_LEN - 4) as u8;
        bad[16] = 200;
        assert_eq!(decode(&bad), Err(WireError::UnknownTag(200)));
        assert!(matches!(decode(&[255, 255, 255, 255]), Err(WireError::TooLong(_))));
    }
}
