//! Measures writing, opening and replaying a synthetic recording of N events:
//! `cargo run --release -p memlens-analysis --example replay_speed -- 10000000`; compares the
//! aggregates with a full replay.
//! The stream imitates Python object churn: many stacks, short-lived small blocks, a slowly
//! growing set of long-lived ones.

use std::time::Instant;

use memlens_analysis::*;
use memlens_format::*;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let codec = match std::env::args().nth(2).as_deref() {
        Some("lz4") => Codec::Lz4,
        Some("none") => Codec::None,
        _ => Codec::Zstd,
    };
    let t = Instant::now();
    let mut w = RecordingWriter::with_options(
        Vec::new(),
        &Meta::default(),
        WriterOptions { codec, ..WriterOptions::default() },
    )
    .unwrap();
    w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
    let mut stacks = vec![StackId::ROOT];
    for i in 0..2000u32 {
        let f =
            w.intern_frame(&format!("func_{}", i % 300), &format!("mod_{}.py", i % 40), i % 500);
        let parent = stacks[(i as usize * 7919) % stacks.len()];
        stacks.push(w.intern_stack(parent, f));
    }
    // xorshift: deterministic and cheap.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rng = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<u64> = Vec::new();
    let mut next_addr = 0x7f00_0000_0000u64;
    let mut time = 0u64;
    let mut written = 0u64;
    while written < n {
        time += 40 + rng() % 200;
        let r = rng();
        if live.len() > 1000 && r % 100 < 48 {
            let i = (rng() as usize) % live.len();
            let addr = live.swap_remove(i);
            w.free(time, ThreadId(0), addr, AllocatorKind::PymallocObject).unwrap();
        } else {
            let size = [16u64, 32, 48, 64, 72, 104, 232, 1024, 4096][(r % 9) as usize];
            let addr = if r % 3 == 0 { next_addr + (rng() % 64) * 16 } else { next_addr };
            next_addr += size.next_multiple_of(16);
            let stack = stacks[1 + ((rng() % 64) as usize * 31) % (stacks.len() - 1)];
            w.alloc(time, ThreadId(0), stack, addr, size, AllocatorKind::PymallocObject).unwrap();
            live.push(addr);
        }
        written += 1;
    }
    let bytes = w.finish(ProcessEnd { time_ns: time, exit_code: Some(0), signal: None }).unwrap();
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rec = Recording::open(&bytes).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut decoded = 0usize;
    rec.for_each_event_chunk(|evs| {
        decoded += evs.len();
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let decode_s = t.elapsed().as_secs_f64();
    // Frees of blocks that were not live are not written, and an allocation over a live block
    // is written with that block's free: as many events as written, give or take.
    assert!(decoded as u64 <= 2 * n);
    let t = Instant::now();
    let end = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    let end_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let peak = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
    let peak_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let replayed = replay::stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
    let replayed_s = t.elapsed().as_secs_f64();
    assert_eq!(replayed, peak);
    println!(
        "{n} events, {codec:?}: {:.2} bytes/event, write {write_s:.2}s, open {open_s:.3}s, \
         decode {decode_s:.2}s; from the aggregates: at end {end_s:.3}s, at peak {peak_s:.3}s; \
         at peak by replay {replayed_s:.2}s; end {} B, peak {} B",
        bytes.len() as f64 / n as f64,
        end.total.bytes,
        peak.total.bytes
    );
}
