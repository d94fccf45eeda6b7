//! A small synthetic program whose memory behaviour is known exactly, and helpers, used by
//! several tests (each uses some of them).
#![allow(dead_code)]

use memlens_format::*;

pub const T: ThreadId = ThreadId(0);
pub const WORKER: ThreadId = ThreadId(1);

/// Writes: `main` -> `load` (app.py:10) allocates 10 blocks of 1000 bytes, `main` -> `leak`
/// (app.py:20) allocates 500 bytes on the worker thread and keeps them, `main` re-creates an
/// object in `load`'s last block (at 19.5 us), then `load`'s blocks are freed. Peak: 10_500
/// bytes at t = 11 us. End: 500 bytes.
pub fn known_program(options: WriterOptions) -> Vec<u8> {
    let meta = Meta {
        memlens_version: "0.1.0".into(),
        python_version: "3.11.7".into(),
        python_implementation: "CPython".into(),
        command_line: vec!["python3".into(), "app.py".into()],
        cwd: "/tmp".into(),
        pid: 4242,
        hostname: "host".into(),
        platform: "linux-x86_64".into(),
        start_unix_ms: 1_700_000_000_000,
        capture: CaptureOptions {
            python_allocators: true,
            native: true,
            rss_only: false,
            sample_interval_us: 10_000,
        },
        extra: vec![("key".into(), "value".into())],
    };
    let mut w = RecordingWriter::with_options(Vec::new(), &meta, options).unwrap();
    w.add_thread(ThreadInfo { id: T, os_tid: 100, name: "MainThread".into() });
    w.add_thread(ThreadInfo { id: WORKER, os_tid: 101, name: "worker".into() });
    let main = w.intern_frame("main", "app.py", 30);
    let load = w.intern_frame("load", "app.py", 10);
    let leak = w.intern_frame("leak", "app.py", 20);
    let s_main = w.intern_stack(StackId::ROOT, main);
    let s_load = w.intern_stack(s_main, load);
    let s_leak = w.intern_stack(s_main, leak);
    for i in 0..10u64 {
        w.alloc(i * 1000, T, s_load, 0x10_000 + i * 0x1000, 1000, AllocatorKind::PymallocObject)
            .unwrap();
    }
    w.memory_sample(MemorySample { time_ns: 10_000, rss: 1 << 20, vms: 4 << 20, heap: 0 }).unwrap();
    w.alloc(11_000, WORKER, s_leak, 0x90_000, 500, AllocatorKind::Malloc).unwrap();
    w.alloc(11_500, T, s_main, 0x7000_0000, 1 << 16, AllocatorKind::PymallocArena).unwrap();
    w.marker(12_000, T, "loaded");
    w.flush().unwrap();
    // The frees run in a span (`with memlens.span("unload")`).
    w.span_edge(18_000, T, SpanSide::Begin, "unload");
    // An object re-created in a live block moves it to `main` (a free and an alloc of kind 7);
    // one re-created where no block is live (allocated before tracing), or by the block's own
    // stack, is not written.
    w.recreate(19_500, T, s_main, 0x19_000).unwrap();
    w.recreate(19_500, T, s_main, 0x19_000).unwrap();
    w.recreate(19_600, T, s_main, 0xbeef_0000).unwrap();
    for i in 0..10u64 {
        w.free(20_000 + i * 1000, T, 0x10_000 + i * 0x1000, AllocatorKind::PymallocObject).unwrap();
    }
    w.span_edge(30_000, T, SpanSide::End, "unload");
    // A free of something allocated before tracing started changes nothing (and is dropped).
    w.free(31_000, T, 0xdead_0000, AllocatorKind::Malloc).unwrap();
    w.gc(GcEvent {
        time_ns: 32_000,
        duration_ns: 500,
        generation: 2,
        collected: 7,
        uncollectable: 0,
    });
    w.memory_sample(MemorySample { time_ns: 40_000, rss: 3 << 20, vms: 5 << 20, heap: 0 }).unwrap();
    // At exit the leaked block is an object of `app.Leak`, linked to its stack.
    let (module, qualname) = (w.intern_string("app"), w.intern_string("Leak"));
    assert_eq!(w.live_block(0x90_000), Some((500, s_leak)));
    w.census(Census {
        time_ns: 45_000,
        trigger: census_trigger::EXIT,
        label: String::new(),
        duration_ns: 900,
        objects: 3,
        recursion_limit: 1000,
        types: vec![TypeCensus {
            module,
            qualname,
            count: 1,
            bytes: 500,
            linked_count: 1,
            linked_bytes: 500,
            sites: vec![TypeSite { stack: s_leak, count: 1, bytes: 500 }],
            dict: Some(DictUsage {
                sampled: 1,
                attrs: 2,
                storage_linked: 0,
                storage_bytes: 0,
                slots_instance_bytes: 48,
            }),
        }],
    });
    let lookup = w.intern_string("lookup");
    w.caches([CacheCensus {
        time_ns: 45_000,
        module,
        qualname: lookup,
        currsize: 3,
        maxsize: None,
        hits: 4,
        misses: 3,
        bytes: 300,
    }]);
    w.finish(ProcessEnd { time_ns: 50_000, exit_code: Some(0), signal: None }).unwrap()
}

/// The rate of [`known_sampled`], and the sizes its recorder wrote for a sampled block of
/// 100 bytes (`sample_weight(100, 4096)`: it stands for about 41 blocks) and one of 64 KiB
/// (always sampled: itself). Literals, so that the same program was written by the format 7
/// writer for `tests/golden/known-sampled-v7.memlens`.
pub const SAMPLE_RATE: u64 = 4096;
pub const SMALL_WEIGHT: u64 = 4146;
pub const BIG_WEIGHT: u64 = 65_536;

/// A sampled recording (every 4 KiB): `small` (app.py:3) allocates five sampled 100-byte
/// blocks, `big` (app.py:7) one of 64 KiB; the first small block is freed, an object is
/// re-created by `other` (app.py:9) in the second. Three events per chunk.
pub fn known_sampled() -> Vec<u8> {
    let extra = vec![(META_SAMPLE_BYTES.to_owned(), SAMPLE_RATE.to_string())];
    let meta = Meta { extra, ..Meta::default() };
    let options =
        WriterOptions { codec: Codec::None, events_per_chunk: 3, ..WriterOptions::default() };
    let mut w = RecordingWriter::with_options(Vec::new(), &meta, options).unwrap();
    w.add_thread(ThreadInfo { id: T, os_tid: 100, name: "MainThread".into() });
    let [small, big, other] = [("small", 3), ("big", 7), ("other", 9)].map(|(name, line)| {
        let f = w.intern_frame(name, "app.py", line);
        w.intern_stack(StackId::ROOT, f)
    });
    for i in 0..5u64 {
        let (t, at) = (1_000 * (i + 1), 0x1000 + i * 0x100);
        w.alloc(t, T, small, at, SMALL_WEIGHT, AllocatorKind::PymallocObject).unwrap();
    }
    w.alloc(6_000, T, big, 0x10_0000, BIG_WEIGHT, AllocatorKind::Malloc).unwrap();
    w.free(7_000, T, 0x1000, AllocatorKind::PymallocObject).unwrap();
    w.recreate(8_000, T, other, 0x1100).unwrap();
    w.finish(ProcessEnd { time_ns: 9_000, exit_code: Some(0), signal: None }).unwrap()
}

/// The stack ids the known program uses, by leaf function name.
pub fn stack_named(rec: &Recording, function: &str) -> StackId {
    (1..rec.stack_count() as u32)
        .map(StackId)
        .find(|&s| {
            let f = rec.stack(s).unwrap().frame;
            rec.string(rec.frame(f).unwrap().function) == function
        })
        .unwrap()
}

/// Appends a chunk written by hand (format 4: the checksum covers the header's first 12
/// bytes and the stored payload).
pub fn push_chunk(out: &mut Vec<u8>, tag: u8, codec: Codec, raw_len: usize, stored: &[u8]) {
    let at = out.len();
    out.extend_from_slice(&[tag, codec as u8, 0, 0]);
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    let crc = crc32(&[&out[at..], stored].concat());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(stored);
}

/// CRC-32 (IEEE), bitwise: an independent check of the checksum the format uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
