//! Decoding arbitrary bytes must never panic, and every analysis over whatever decoded must
//! run to completion. The first input byte picks a mode: raw bytes; a valid header followed by
//! raw bytes (of this version, or one `mode >> 2` older: readers answer some files by their
//! version, such as a sampled recording's counts, format 8); or a valid header followed by
//! well-framed chunks (correct lengths and CRCs) whose
//! tags and payloads come from the input, so the fuzzer reaches the payload decoders (tables,
//! events, interval aggregates, digest). Files are read both ways: with a footer pointing at a
//! trailer (the index path) and without (the scan path), and followed as they grow.
//! The streams of other processes a file carries (format 5) are opened and analysed too, and
//! the native frames a file marks (tag 20) are looked up, and its spans (tag 21) paired.
//! `./dev fuzz` seeds the corpus with the golden recordings (mode 1: their bytes after the
//! header, a format 7 one with mode 4), so runs start from real event chunks (re-created
//! objects' pairs included), real process streams and sampled recordings of both kinds.
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use memlens_analysis::*;
use memlens_format::*;

/// A source that can grow, to run `Recording::refresh`.
struct Growing(Mutex<(Vec<u8>, usize)>);

impl ByteSource for Growing {
    fn len(&self) -> u64 {
        self.0.lock().unwrap().1 as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let g = self.0.lock().unwrap();
        let start = (offset as usize).min(g.1);
        let end = g.1.min(start.saturating_add(len));
        Ok(g.0[start..end].to_vec())
    }
}

fn analyse(rec: &Recording) {
    let all = EventFilter::default();
    let end = rec.summary().duration_ns;
    for snapshot in [
        Snapshot::AtPeak,
        Snapshot::AtEnd,
        Snapshot::TotalAllocated,
        Snapshot::AtTime(end / 2),
        Snapshot::PeakInRange(end / 3, end / 2),
        Snapshot::AllocatedInRange(end / 4, end),
    ] {
        for filter in [all.clone(), EventFilter::thread(ThreadId(1))] {
            if let Ok(totals) = stack_totals(rec, snapshot, &filter) {
                let tree = FlameTree::build(rec, &totals, &FlameOptions::default());
                let rects = flame_layout(&tree, 0, 0.001);
                let _ = flame_hit(&rects, 0.5, 1);
                let _ = call_sites(rec, &totals, true);
            }
        }
    }
    let _ = peak_in(rec, end / 3, end);
    let _ = thread_totals(rec);
    let _ = kind_usage(rec);
    let _ = replay::kind_usage(rec);
    let _ = rec.replay_summary();
    let _ = rec.aggregates_summary();
    // What `memlens check` does: the aggregator over every event chunk.
    let mut agg = Aggregator::counting(rec.block_count());
    for k in 0..rec.event_chunk_count() {
        let mut events = Vec::new();
        if rec.decode_event_chunk(k, &mut events).is_ok() {
            events.iter().for_each(|e| agg.event(e));
            let _ = agg.cut(0, end);
        }
    }
    // What `memlens export` does: its three encodings of whatever decoded.
    let view = ExportView::Range { from: end / 3, to: end };
    if let (Ok(in_use), Ok(allocated)) =
        (thread_stack_totals(rec, view.in_use()), thread_stack_totals(rec, view.allocated()))
    {
        let _ = pprof(rec, &in_use, &allocated, view, &PprofOptions::default());
    }
    if let Ok(totals) = stack_totals(rec, Snapshot::AtPeak, &all) {
        let _ = write_collapsed(rec, &totals, &mut std::io::sink());
        let _ = speedscope(rec, &[(String::new(), totals)], 0, "");
    }
    let _ = insights(rec, &InsightOptions::default());
    let _ = span_usage(rec, &[(0, end / 2), (end / 2 + 1, end)]);
    // Spans (the Spans chunk, and an older file's markers read as spans), paired and measured.
    let (closed, _open) = spans(rec);
    let ranges: Vec<(u64, u64)> = closed.iter().take(16).map(|s| (s.start_ns, s.end_ns)).collect();
    let _ = span_usage(rec, &ranges);
    for filter in [all.clone(), EventFilter::thread(ThreadId(0))] {
        let _ = heap_timeline(rec, &filter, 0, end.saturating_add(1), 64);
    }
    // Native frames (the Native chunk): which frames are native, the module map.
    let native = (0..rec.frames().len() as u32)
        .filter(|&i| rec.is_native_frame(FrameId(i)) || rec.is_runtime_frame(FrameId(i)));
    let _ = native.count() + rec.native_modules().iter().map(|m| m.path.len()).sum::<usize>();
}

/// Analyses `rec` and the recordings of the other processes it holds (a few of them).
fn analyse_all(rec: &Recording) {
    analyse(rec);
    for n in rec.processes().into_iter().take(4) {
        if let Ok(child) = rec.open_process(n) {
            analyse(&child);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = Vec::with_capacity(data.len() * 2 + HEADER_LEN);
    match mode % 3 {
        0 => bytes.extend_from_slice(data),
        1 => {
            bytes.extend_from_slice(&MAGIC);
            let version = FORMAT_VERSION.saturating_sub(u16::from(mode >> 2)).max(1);
            bytes.extend_from_slice(&version.to_le_bytes());
            bytes.extend_from_slice(&[0; 6]);
            bytes.extend_from_slice(rest);
        }
        _ => {
            bytes.extend_from_slice(&MAGIC);
            let version = (mode >> 2) % (FORMAT_VERSION as u8 + 1);
            bytes.extend_from_slice(&[version, 0, 0, 0, 0, 0, 0, 0]);
            // Segments: tag, payload length, payload; framed as stored chunks.
            let mut at = rest;
            while let [tag, len, tail @ ..] = at {
                let n = (*len as usize).min(tail.len());
                let payload = &tail[..n];
                let head = bytes.len();
                bytes.push(*tag);
                bytes.extend_from_slice(&[0, 0, 0]);
                bytes.extend_from_slice(&(n as u32).to_le_bytes());
                bytes.extend_from_slice(&(n as u32).to_le_bytes());
                // Format 4 checksums cover the header's first 12 bytes too.
                let mut crc = crc32fast::Hasher::new();
                if version >= 4 {
                    crc.update(&bytes[head..]);
                }
                crc.update(payload);
                bytes.extend_from_slice(&crc.finalize().to_le_bytes());
                bytes.extend_from_slice(payload);
                at = &tail[n..];
            }
        }
    }
    if let Ok(rec) = Recording::open(&bytes) {
        analyse_all(&rec);
    }
    // The same bytes arriving in two parts, as from a recording being written.
    let source = Arc::new(Growing(Mutex::new((bytes.clone(), bytes.len() / 2))));
    if let Ok(mut rec) = Recording::open_source(source.clone()) {
        source.0.lock().unwrap().1 = bytes.len();
        let _ = rec.refresh();
        analyse_all(&rec);
    }
});
