//! The recorder's per-event cost, without the traced program: writes the events of a
//! recording again through [`RecordingWriter`] (aggregates, live blocks, encoding,
//! compression) into nothing, and prints the best CPU time per event over a few rounds (the
//! thread's CPU time from `/proc/thread-self/schedstat` on Linux, steadier than wall time on
//! a busy machine; wall time elsewhere).
//!
//!     cargo run --release -p memlens-format --features native-zstd --example rewrite -- FILE [ROUNDS [EVENTS]]
//!
//! Compare two builds on the same recording (`churn.py` under `memlens run` is the usual one);
//! with EVENTS, only the first EVENTS events (for `valgrind --tool=callgrind`, whose
//! instruction counts do not depend on the machine's load).

use std::time::Instant;

use memlens_format::{Event, Op, Recording, RecordingWriter, StackId};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: rewrite FILE [ROUNDS [EVENTS]]");
    let rounds: usize = args.next().map_or(5, |r| r.parse().expect("ROUNDS: a number"));
    let limit: usize = args.next().map_or(usize::MAX, |n| n.parse().expect("EVENTS: a number"));
    let rec = Recording::from_vec(std::fs::read(&path).expect("read FILE")).expect("open FILE");
    let mut events: Vec<Event> = Vec::new();
    for i in 0..rec.event_chunk_count() {
        rec.decode_event_chunk(i, &mut events).expect("decode");
        if events.len() >= limit {
            events.truncate(limit);
            break;
        }
    }
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let (start, cpu) = (Instant::now(), thread_cpu());
        write_again(&rec, &events);
        let took = match (cpu, thread_cpu()) {
            (Some(a), Some(b)) => b - a,
            _ => start.elapsed().as_secs_f64(),
        };
        best = best.min(took);
    }
    println!(
        "{} events: best of {rounds} {:.3} s, {:.1} ns/event",
        events.len(),
        best,
        best * 1e9 / events.len().max(1) as f64
    );
}

fn write_again(rec: &Recording, events: &[Event]) {
    let mut w = RecordingWriter::new(std::io::sink(), rec.meta()).expect("writer");
    for t in rec.threads() {
        w.add_thread(t.clone());
    }
    let frames: Vec<_> = rec
        .frames()
        .iter()
        .map(|f| w.intern_frame(rec.string(f.function), rec.string(f.file), f.line))
        .collect();
    let mut stacks = vec![StackId::ROOT];
    for i in 1..rec.stack_count() {
        let node = rec.stack(StackId(i as u32)).expect("stack");
        stacks.push(w.intern_stack(stacks[node.parent.index()], frames[node.frame.index()]));
    }
    for e in events {
        let stack = stacks[e.stack.index()];
        let r = match e.op {
            _ if e.is_recreation() => {
                if e.op == Op::Alloc {
                    w.recreate(e.time_ns, e.thread, stack, e.address)
                } else {
                    Ok(())
                }
            }
            Op::Alloc => w.alloc(e.time_ns, e.thread, stack, e.address, e.size, e.kind),
            Op::Free => w.free(e.time_ns, e.thread, e.address, e.kind),
        };
        r.expect("write");
    }
    w.finish(Default::default()).expect("finish");
}

/// This thread's CPU time in seconds, where the system says it.
fn thread_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}
