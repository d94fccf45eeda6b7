//! Re-encodes a recording with the current encoder and given options, to measure format
//! changes on real recordings: `cargo run --release -p memlens-format --features native-zstd
//! --example reencode -- IN [zstd|lz4|none] [events-per-chunk] [OUT]` (the feature gives
//! the collector's zstd). Checks that the copy decodes to the same events, prints both sizes
//! and writes the copy to OUT if given, and what the interval aggregates take of it.

use std::ops::ControlFlow;

use memlens_format::*;

fn main() {
    let path = std::env::args().nth(1).expect("usage: reencode FILE [codec] [events-per-chunk]");
    let codec = match std::env::args().nth(2).as_deref() {
        Some("lz4") => Codec::Lz4,
        Some("none") => Codec::None,
        _ => Codec::Zstd,
    };
    let per_chunk = std::env::args().nth(3).and_then(|a| a.parse().ok()).unwrap_or(64 * 1024);
    let bytes = std::fs::read(&path).unwrap();
    let rec = Recording::open(&bytes).unwrap();
    let options = WriterOptions { codec, events_per_chunk: per_chunk, ..WriterOptions::default() };
    let mut w = RecordingWriter::with_options(Vec::new(), rec.meta(), options).unwrap();
    for t in rec.threads() {
        w.add_thread(t.clone());
    }
    // Interning in id order reproduces the same ids.
    for f in rec.frames() {
        w.intern_frame(rec.string(f.function), rec.string(f.file), f.line);
    }
    for id in 1..rec.stack_count() as u32 {
        let node = rec.stack(StackId(id)).unwrap();
        w.intern_stack(node.parent, node.frame);
    }
    let mut n = 0u64;
    rec.for_each_event_chunk(|events| {
        for e in events {
            match e.op {
                // A re-created object: its alloc half says where the block goes.
                Op::Free if e.is_recreation() => Ok(()),
                Op::Alloc if e.is_recreation() => {
                    w.recreate(e.time_ns, e.thread, e.stack, e.address)
                }
                Op::Alloc => w.alloc(e.time_ns, e.thread, e.stack, e.address, e.size, e.kind),
                Op::Free => w.free(e.time_ns, e.thread, e.address, e.kind),
            }
            .unwrap();
            n += 1;
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    let out = w.finish(rec.end().copied().unwrap_or_default()).unwrap();
    let copy = Recording::open(&out).unwrap();
    // The allocations are the same; frees may differ: a free of a block that was not live is
    // dropped, and one the program never made is written before an allocation that replaces
    // a live block.
    let allocs = |rec: &Recording| -> Vec<Event> {
        all_events(rec).into_iter().filter(|e| e.op == Op::Alloc).collect()
    };
    assert_eq!(allocs(&copy), allocs(&rec), "the copy decodes to other allocations");
    if let Some(path) = std::env::args().nth(4) {
        std::fs::write(path, &out).unwrap();
    }
    println!(
        "{path}: {n} events; original {} bytes ({:.2} B/event), re-encoded {codec:?} {} bytes ({:.2} B/event)",
        bytes.len(),
        bytes.len() as f64 / n as f64,
        out.len(),
        out.len() as f64 / n as f64
    );
    // What the interval aggregates take: the base intervals and the digest.
    let aggregates: u64 =
        (0..copy.base_count()).map(|i| copy.interval_chunk(i).map_or(0, |c| c.len)).sum::<u64>()
            + copy.digest_len();
    println!(
        "  aggregates: {aggregates} bytes, {:.1}% of the file ({} base intervals, digest {} bytes)",
        100.0 * aggregates as f64 / out.len() as f64,
        copy.base_count(),
        copy.digest_len()
    );
}

fn all_events(rec: &Recording) -> Vec<Event> {
    let mut events = Vec::new();
    rec.for_each_event_chunk(|chunk| {
        events.extend_from_slice(chunk);
        ControlFlow::Continue(())
    })
    .unwrap();
    events
}
