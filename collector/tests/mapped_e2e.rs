//! Reserved address space is not heap (issue 25): an `mmap` reserves address space, and
//! only the pages a program touches use memory. The real collector on real programs: a
//! 64 MiB anonymous mapping with 16 MiB touched (tests/scripts/mapped.py), big blocks that
//! C code mallocs (tests/scripts/big_blocks.py), scipy's sparse LU, and importing numpy and
//! scipy, whose OpenBLAS libraries map ~32 MiB per thread and touch none of it.
//!
//! The numpy/scipy tests need them installed for `python3` (`./dev setup` does); it is
//! skipped, saying so, without them.

mod common;

use memlens_analysis::{stack_totals, EventFilter, Snapshot};
use memlens_format::Recording;
use std::path::{Path, PathBuf};

use common::{line_of, memlens, python_has, script, TempDir};

const MIB: u64 = 1 << 20;

fn record(dir: &Path, args: &[&str]) -> PathBuf {
    let out = dir.join("out.memlens");
    let run = memlens().args(["run", "-q", "-o"]).arg(&out).args(args).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out
}

fn summary(file: &Path) -> serde_json::Value {
    let out = memlens().args(["summary", "--json"]).arg(file).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Records `python -c code`, checks that its peak heap is not above its peak RSS (by more
/// than 10%), and returns its summary.
fn heap_within_rss(dir: &Path, code: &str) -> serde_json::Value {
    let s = summary(&record(dir, &["-c", code]));
    let (heap, rss) =
        (s["peak_heap_bytes"].as_u64().unwrap(), s["peak_rss_bytes"].as_u64().unwrap());
    assert!(heap * 10 <= rss * 11, "{code}: peak heap {heap} above peak RSS {rss}");
    s
}

/// The heap held at `snapshot` by the stacks whose innermost frame is at `line`.
fn heap_at_line(rec: &Recording, snapshot: Snapshot, line: u32) -> u64 {
    let totals = stack_totals(rec, snapshot, &EventFilter::default()).unwrap();
    totals
        .stacks
        .iter()
        .filter(|(s, _)| {
            rec.stack(*s).and_then(|n| rec.frame(n.frame)).is_some_and(|f| f.line == line)
        })
        .map(|(_, t)| t.bytes)
        .sum::<u64>()
}

fn marker_time(rec: &Recording, label: &str) -> u64 {
    rec.markers().iter().find(|m| m.label == label).unwrap().time_ns
}

#[test]
fn a_mapping_counts_in_the_heap_by_its_resident_pages_at_the_line_that_made_it() {
    let dir = TempDir::new("mapped-mmap");
    let file = record(&dir.0, &[script("mapped.py").to_str().unwrap()]);
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    let line = line_of("mapped.py", "MAP_LINE");
    let at = |label: &str| heap_at_line(&rec, Snapshot::AtTime(marker_time(&rec, label)), line);
    assert!(at("mapped") < MIB, "an untouched mapping is not heap: {}", at("mapped"));
    let touched = at("touched");
    assert!((16 * MIB..17 * MIB).contains(&touched), "16 MiB touched: {touched}");
    assert!(at("closed") < MIB, "unmapped: its resident part is gone: {}", at("closed"));
    // A mapping written whole and unmapped at once is the peak: counted when unmapped, or by
    // a look of the tracer's that came while its last MiB was written (that MiB's `bytes`
    // then in the heap beside it).
    let peak = heap_at_line(&rec, Snapshot::AtPeak, line_of("mapped.py", "BRIEF_LINE"));
    assert!((47 * MIB..49 * MIB).contains(&peak), "48 MiB written, unmapped at once: {peak}");
    let s = summary(&file);
    assert_eq!(s["reserved_bytes_max"].as_u64(), Some(64 * MIB), "{s}");
    assert_eq!(s["reserved_bytes_at_end"].as_u64(), Some(0), "{s}");
    let text = memlens().arg("summary").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("of address space at the peak (C code's mappings and big malloc blocks)"),
        "{text}"
    );
    // `memlens diff` compares it as its own metric, with a threshold of its own.
    let diff = memlens()
        .arg("diff")
        .args([&file, &file])
        .args(["--format", "json", "--fail-if", "reserved>+1MiB"])
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(0));
    let d: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    let reserved = d["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "reserved");
    assert_eq!(reserved.map(|m| m["head"].as_u64()), Some(Some(64 * MIB)), "{d}");
}

/// The same for the big blocks C code mallocs (glibc maps each of its own): a 64 MiB
/// block with 16 MiB written and a 32 MiB `calloc` never written hold 16 MiB of heap, and a
/// 48 MiB block written whole and freed before the tracer's next look is counted at its
/// free.
#[test]
fn a_big_malloc_block_counts_in_the_heap_by_its_touched_pages() {
    let dir = TempDir::new("mapped-malloc");
    let file = record(&dir.0, &[script("big_blocks.py").to_str().unwrap()]);
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();
    let at = |label: &str, mark: &str| {
        heap_at_line(
            &rec,
            Snapshot::AtTime(marker_time(&rec, label)),
            line_of("big_blocks.py", mark),
        )
    };
    for mark in ["MALLOC_LINE", "CALLOC_LINE"] {
        assert!(at("allocated", mark) < MIB, "{mark}: untouched: {}", at("allocated", mark));
        assert!(at("freed", mark) < MIB, "{mark}: freed: {}", at("freed", mark));
    }
    let touched = at("touched", "MALLOC_LINE");
    assert!((16 * MIB..17 * MIB).contains(&touched), "16 MiB touched: {touched}");
    assert!(at("touched", "CALLOC_LINE") < MIB, "{}", at("touched", "CALLOC_LINE"));
    let s = summary(&file);
    assert!(s["reserved_bytes_max"].as_u64().unwrap() >= 96 * MIB, "{s}");
    // (3.14's ctypes maps a few pages of its own for good.)
    assert!(s["reserved_bytes_at_end"].as_u64().unwrap() < MIB, "{s}");
    // The brief block is the peak, at its line.
    let peak = heap_at_line(&rec, Snapshot::AtPeak, line_of("big_blocks.py", "BRIEF_LINE"));
    assert!((48 * MIB..49 * MIB).contains(&peak), "48 MiB written, freed at once: {peak}");
}

/// A real program: `scipy.sparse.linalg.spsolve` (SuperLU) mallocs half a gigabyte of
/// workspace and writes a fraction of it; its peak heap was 2.9 times its peak RSS.
#[test]
fn spsolves_workspace_is_not_heap_until_written() {
    if !python_has("scipy.sparse.linalg") {
        return;
    }
    let dir = TempDir::new("mapped-spsolve");
    let code = "import numpy as np\nfrom scipy import sparse\nfrom scipy.sparse.linalg import spsolve\n\
                n = 200_000\nm = sparse.diags([np.full(n - 1, -1.0), np.full(n, 4.0), \
                np.full(n - 1, -1.0)], [-1, 0, 1], format='csc')\nprint(spsolve(m, np.ones(n)).sum())";
    let s = heap_within_rss(&dir.0, code);
    let reserved = s["reserved_bytes_max"].as_u64().unwrap();
    assert!(reserved >= 256 * MIB, "SuperLU's workspace is reserved: {reserved}");
}

/// Python's raw domain, which C code calls for its own buffers: an lzma compressor asks it
/// for 93 MiB of encoder state and touches a sixth of it; the peak heap was 4 times the RSS.
/// (The compressor is kept a while, so that the RSS, sampled every 10 ms, sees it too.)
#[test]
fn lzmas_encoder_state_is_not_heap_until_written() {
    if !python_has("lzma") {
        return;
    }
    let dir = TempDir::new("mapped-lzma");
    let code = "import lzma, time\nc = lzma.LZMACompressor()\nc.compress(b'x' * 1_000_000)\n\
                time.sleep(0.1)\nprint(len(c.flush()))";
    let s = heap_within_rss(&dir.0, code);
    let reserved = s["reserved_bytes_max"].as_u64().unwrap();
    assert!(reserved >= 64 * MIB, "the encoder's state is reserved: {reserved}");
}

/// Regression (issue 25): `import numpy` reported a 71.8 MiB peak heap against 30.7 MiB of
/// RSS, `import numpy, scipy.linalg` 151 MiB against 55 MiB: OpenBLAS's untouched buffers
/// were counted as heap.
#[test]
fn importing_numpy_and_scipy_reports_a_heap_below_rss() {
    if !python_has("numpy, scipy.linalg") {
        return;
    }
    let dir = TempDir::new("mapped-numpy");
    for code in ["import numpy", "import numpy, scipy.linalg"] {
        let s = heap_within_rss(&dir.0, code);
        // OpenBLAS's buffers are there, as reserved address space, untouched.
        let reserved = s["reserved_bytes_at_peak"].as_u64().unwrap();
        let resident = s["reserved_resident_bytes_at_peak"].as_u64().unwrap();
        assert!(reserved >= 16 * MIB, "{code}: {reserved} bytes reserved");
        assert!(resident * 4 < reserved, "{code}: {resident} of {reserved} resident");
    }
}
