//! A recording damaged in its middle (an event chunk that opening a closed file never reads),
//! made by the real collector and damaged as a bad disk block or a botched copy does, read by
//! every command that reads one: `check` lists the damage and goes on, `summary` warns (and
//! `--replay` replays up to it), `export` refuses unless `--allow-incomplete`. (`diff`'s gate:
//! diff_e2e.rs.)

mod common;

use std::path::{Path, PathBuf};

use common::{damage_an_event_chunk, damage_event_chunk, memlens, memlens_run, TempDir};

/// A recording of tests/scripts/json_sampled.py (json round trips: dozens of event chunks),
/// and a copy of it with its middle event chunk damaged: (intact, damaged, the damaged chunk's
/// number, its byte offset).
fn recordings(dir: &TempDir) -> (PathBuf, PathBuf, usize, u64) {
    let intact = dir.0.join("intact.memlens");
    let out = memlens_run(&intact, &[], &["-q"], "json_sampled.py", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let damaged = dir.0.join("damaged.memlens");
    std::fs::copy(&intact, &damaged).unwrap();
    let (k, offset) = damage_an_event_chunk(&damaged);
    (intact, damaged, k, offset)
}

fn run(args: &[&str], file: &Path) -> (i32, String, String) {
    let out = memlens().args(args).arg(file).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
}

/// `check` stopped at the damaged chunk with exit code 2 ("cannot be read as a recording at
/// all") and one error line. The file opens: the damage is a problem, listed with the chunk
/// and its byte offset, the other chunks are checked, and the exit code is 1.
#[test]
fn check_lists_a_damaged_event_chunk_and_goes_on() {
    let dir = TempDir::new("damaged-check");
    let (intact, damaged, k, offset) = recordings(&dir);
    let (code, out, err) = run(&["check"], &intact);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["check"], &damaged);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 problem(s)"), "{out}");
    let line = format!("  - damaged event chunk {k} at byte {offset}: chunk checksum mismatch");
    assert!(out.lines().any(|l| l == line), "{out}");
    assert!(out.contains(&format!("not checked: the events from event chunk {k} on")), "{out}");
    assert!(!err.contains("error"), "{err}");

    // A second damaged chunk, after the first: both are listed.
    let bytes = std::fs::read(&damaged).unwrap();
    let rec = memlens_format::Recording::open(&bytes).unwrap();
    let last = *rec.event_chunk(rec.event_chunk_count() - 1).unwrap();
    let mut bytes = bytes;
    bytes[(last.offset + last.len / 2) as usize] ^= 0x21;
    std::fs::write(&damaged, &bytes).unwrap();
    let (code, out, _) = run(&["check"], &damaged);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2 problem(s)") && out.contains(&format!("at byte {}", last.offset)));
}

/// `summary` said nothing of the damage (its figures come from the aggregates, which are
/// intact): it now warns, on stderr and in its text, and lists the damage in its JSON.
/// `summary --replay` stopped with exit code 2; it now replays up to the damaged chunk, as it
/// reads a file cut short, and says what it left out.
#[test]
fn summary_warns_of_the_damage_and_replay_stops_at_it() {
    let dir = TempDir::new("damaged-summary");
    let (intact, damaged, k, offset) = recordings(&dir);
    let says = format!("damaged.memlens is damaged: event chunk {k} at byte {offset}");
    let (code, out, err) = run(&["summary"], &damaged);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("memlens: warning: ") && err.contains(&says), "{err}");
    assert!(out.contains(&format!("the file is damaged (event chunk {k} at byte {offset})")));
    let (_, json, _) = run(&["summary", "--json"], &damaged);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["damaged_chunks"][0]["offset"], offset, "{v}");
    assert_eq!(v["damaged_chunks"][0]["chunk"], format!("event chunk {k}"));
    let (_, json, _) = run(&["summary", "--json"], &intact);
    let whole: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(whole["damaged_chunks"], serde_json::json!([]));
    // From the aggregates, the figures are the intact file's.
    assert_eq!(v["peak_heap_bytes"], whole["peak_heap_bytes"]);

    let (code, json, err) = run(&["summary", "--json", "--replay"], &damaged);
    assert_eq!(code, 0, "{err}");
    let total = memlens_format::Recording::open(&std::fs::read(&intact).unwrap())
        .unwrap()
        .event_chunk_count();
    assert!(
        err.contains(&format!(
            "the replay stops at the damaged event chunk {k} at byte {offset}: its events and \
             those after it ({} of {total} event chunks",
            total - k
        )),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["complete"], false);
    assert_eq!(v["truncated_at_byte"], offset);
    let replayed = v["alloc_count"].as_u64().unwrap();
    assert!(0 < replayed && replayed < whole["alloc_count"].as_u64().unwrap(), "{replayed}");
}

/// `export` wrote a profile of a damaged file as of a whole one; like one cut short, it is now
/// refused (exit code 2) unless `--allow-incomplete`.
#[test]
fn export_refuses_a_damaged_recording_unless_allowed() {
    let dir = TempDir::new("damaged-export");
    let (_, damaged, k, offset) = recordings(&dir);
    let out = dir.0.join("out.pb.gz");
    let export = |extra: &[&str]| {
        let out = memlens()
            .arg("export")
            .arg(&damaged)
            .args(["--format", "pprof", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, err) = export(&[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("event chunk {k} at byte {offset}")), "{err}");
    assert!(err.contains("--allow-incomplete"), "{err}");
    assert!(!out.exists());
    let (code, err) = export(&["--allow-incomplete"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("memlens: warning: ") && out.exists(), "{err}");
    let (code, err) = export(&["--allow-incomplete", "--replay"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the replay stops at the damaged event chunk"), "{err}");
}

/// The figures read from the aggregates need a few event chunks (`summary`'s findings replay
/// those around each quarter of the run, to know what was live there): when one is the
/// damaged chunk, `summary` reads the file up to it, as one cut short there, instead of
/// stopping with "corrupt event chunk" (exit code 2). (`diff` and `export` do the same.)
#[test]
fn a_damaged_chunk_the_figures_need_is_read_up_to() {
    let dir = TempDir::new("damaged-needed");
    let file = dir.0.join("damaged.memlens");
    let out = memlens_run(&file, &[], &["-q"], "json_sampled.py", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The findings look at what was live at each quarter of the run: the events of the chunk
    // a quarter falls inside are replayed (one falling between two chunks needs none).
    let (k, offset) = damage_event_chunk(&file, |rec| {
        let quarters = (1..4).map(|q| rec.summary().duration_ns * q / 4);
        let inside = |t: u64| {
            (0..rec.event_chunk_count()).find(|&i| {
                let c = rec.event_chunk(i).unwrap();
                c.first_time_ns <= t && t < c.last_time_ns
            })
        };
        quarters.rev().find_map(inside).expect("a quarter of the run inside an event chunk")
    });
    let needed = format!(
        "the figures need events from a damaged chunk: reading stops at the damaged event \
         chunk {k} at byte {offset}"
    );
    let (code, _, err) = run(&["summary"], &file);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&needed), "{err}");
    let (_, json, _) = run(&["summary", "--json"], &file);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((&v["truncated_at_byte"], &v["complete"]), (&offset.into(), &false.into()));
    assert_eq!(v["damaged_chunks"][0]["offset"], offset);
}
