//! Native frames (`memlens run --native-stacks`, the Native chunk, tag 20): a recording whose
//! Python line calls into C, pinned byte for byte like tests/golden/known-program.memlens.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p memlens-format --test native_golden`.

use memlens_format::*;

fn module() -> NativeModule {
    NativeModule {
        path: "/opt/ext/native_ext.so".into(),
        build_id: vec![0xde, 0xad, 0xbe, 0xef],
        bias: 0x7f00_0000_0000,
        start: 0x7f00_0000_0000,
        end: 0x7f00_0002_0000,
    }
}

/// `app.py:3` calls `allocate` (ext.c:30) through the interpreter's `cfunction_call`
/// (a runtime frame), which calls `make_buffer` (ext.c:22), into which `fill_block` (ext.c:14)
/// was inlined: 1 MiB allocated, and 64 bytes on the Python line.
fn known_native() -> Vec<u8> {
    let meta = Meta { extra: vec![(META_NATIVE_STACKS.into(), "on".into())], ..Meta::default() };
    let options = WriterOptions { codec: Codec::None, ..WriterOptions::default() };
    let mut w = RecordingWriter::with_options(Vec::new(), &meta, options).unwrap();
    w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 7, name: "MainThread".into() });
    let line = w.intern_frame("<module>", "app.py", 3);
    let python = w.intern_stack(StackId::ROOT, line);
    w.native_module(module());
    let mut stack = python;
    let call = w.intern_frame("cfunction_call", "/opt/python/Objects/methodobject.c", 542);
    w.native_frame(call, true);
    stack = w.intern_stack(stack, call);
    for (function, line) in [("allocate", 30), ("make_buffer", 22), ("fill_block", 14)] {
        let f = w.intern_frame(function, "/opt/ext/ext.c", line);
        w.native_frame(f, false);
        stack = w.intern_stack(stack, f);
    }
    w.alloc(1_000, ThreadId(0), stack, 0x1000, 1 << 20, AllocatorKind::Malloc).unwrap();
    w.alloc(2_000, ThreadId(0), python, 0x2000, 64, AllocatorKind::PymallocObject).unwrap();
    w.finish(ProcessEnd { time_ns: 3_000, exit_code: Some(0), signal: None }).unwrap()
}

#[test]
fn golden_native_bytes_are_stable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-native.memlens");
    let bytes = known_native();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let golden = std::fs::read(path).expect("golden file (UPDATE_GOLDEN=1 to create)");
    assert!(bytes == golden, "the encoding of native frames changed; see FORMAT.md");

    let rec = Recording::open(&golden).unwrap();
    assert!(rec.meta().native_stacks());
    assert_eq!(rec.native_modules(), &[module()]);
    assert_eq!(
        kinds(&rec),
        [
            ("<module>", false, false),
            ("cfunction_call", true, true),
            ("allocate", true, false),
            ("make_buffer", true, false),
            ("fill_block", true, false)
        ]
    );
    assert_eq!(rec.summary().peak_heap, (1 << 20) + 64);
}

/// Each frame's function, whether it is native, and whether it is the runtime's.
fn kinds(rec: &Recording) -> Vec<(&str, bool, bool)> {
    (0..rec.frames().len() as u32)
        .map(FrameId)
        .map(|f| {
            let name = rec.string(rec.frame(f).unwrap().function);
            (name, rec.is_native_frame(f), rec.is_runtime_frame(f))
        })
        .collect()
}

/// Format 6's Native chunk had no runtime frames (the collector left them out): such a file
/// reads its native frames, none of them the runtime's.
#[test]
fn format_6_native_frames_still_read() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-native-v6.memlens");
    let rec = Recording::open(&std::fs::read(path).expect("golden file")).unwrap();
    assert_eq!(rec.format_version(), 6);
    assert_eq!(
        kinds(&rec),
        [
            ("<module>", false, false),
            ("allocate", true, false),
            ("make_buffer", true, false),
            ("fill_block", true, false)
        ]
    );
    assert_eq!(rec.native_modules(), &[module()]);
}

/// The Native chunk adds facts the rest does not depend on: a file without it (here, with it
/// turned into a tag readers skip) reads the same but for which frames are native.
#[test]
fn a_reader_that_skips_the_native_chunk_reads_the_rest() {
    let bytes = known_native();
    let rec = Recording::open(&bytes).unwrap();
    let stored = |at: usize| u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    let mut native = HEADER_LEN;
    while bytes[native] != Tag::Native as u8 {
        native += CHUNK_HEADER_LEN + stored(native);
    }
    // Retag the chunk as an unknown one (tag 250), with its checksum made right again.
    let mut skipped = bytes.clone();
    skipped[native] = 250;
    let len = stored(native);
    let mut crc_input = skipped[native..native + 12].to_vec();
    crc_input.extend_from_slice(&skipped[native + 16..native + 16 + len]);
    skipped[native + 12..native + 16].copy_from_slice(&crc32(&crc_input).to_le_bytes());
    let old = Recording::open(&skipped).unwrap();
    assert_eq!(old.summary(), rec.summary());
    assert_eq!(old.frames(), rec.frames());
    assert!(old.native_modules().is_empty() && !old.is_native_frame(FrameId(1)));
}

/// CRC-32 (IEEE), bit by bit: the chunk checksum (FORMAT.md).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
