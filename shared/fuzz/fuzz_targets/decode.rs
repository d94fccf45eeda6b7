//! Decoding arbitrary bytes must never panic, and every analysis over whatever decoded must
//! run to completion. The first input byte picks a mode: raw bytes; a valid header followed by
//! raw bytes; or a valid header followed by well-framed chunks (correct lengths and CRCs) whose
//! tags and payloads come from the input, so the fuzzer reaches the payload decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memlens_format::*;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = Vec::with_capacity(data.len() * 2 + HEADER_LEN);
    match mode % 3 {
        0 => bytes.extend_from_slice(data),
        1 => {
            bytes.extend_from_slice(&MAGIC);
            bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            bytes.extend_from_slice(rest);
        }
        _ => {
            bytes.extend_from_slice(&MAGIC);
            bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            // Segments: tag, payload length, payload; framed as stored chunks.
            let mut at = rest;
            while let [tag, len, tail @ ..] = at {
                let n = (*len as usize).min(tail.len());
                let payload = &tail[..n];
                bytes.push(*tag);
                bytes.extend_from_slice(&[0, 0, 0]);
                bytes.extend_from_slice(&(n as u32).to_le_bytes());
                bytes.extend_from_slice(&(n as u32).to_le_bytes());
                bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                bytes.extend_from_slice(payload);
                at = &tail[n..];
            }
        }
    }
    let Ok(rec) = Recording::open(&bytes) else { return };
    let all = EventFilter::default();
    for snapshot in [Snapshot::AtPeak, Snapshot::AtEnd, Snapshot::TotalAllocated] {
        if let Ok(totals) = stack_totals(&rec, snapshot, &all) {
            let tree = FlameTree::build(&rec, &totals, &FlameOptions::default());
            let rects = flame_layout(&tree, 0, 0.001);
            let _ = flame_hit(&rects, 0.5, 1);
            let _ = call_sites(&rec, &totals, true);
        }
    }
    let _ = heap_timeline(&rec, &all, 0, rec.summary().duration_ns.saturating_add(1), 64);
});
