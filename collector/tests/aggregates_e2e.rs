//! Real programs under the real collector, read through their aggregates (format 4 and later): the
//! figures equal a full replay's, `memlens check` agrees, an aggregate-only recording stays
//! small, and a recording can be read while it is being written.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{memlens, root, script, TempDir};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn summary_json(file: &std::path::Path, replay: bool) -> serde_json::Value {
    let mut cmd = memlens();
    cmd.args(["summary", "--json"]).arg(file);
    if replay {
        cmd.arg("--replay");
    }
    serde_json::from_slice(&run(&mut cmd).stdout).unwrap()
}

/// Churn, threads and numpy: `summary` from the aggregates says exactly what a replay of
/// every event says, and `check` finds the aggregates and the trailer right.
#[test]
fn aggregates_answer_what_a_replay_answers_on_real_programs() {
    let dir = TempDir::new("aggregates-real");
    let churn = root().join("bench/workloads/churn.py");
    let programs: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        ("churn", vec![churn.into(), "30000".into()]),
        ("threads", vec![script("threads.py").into()]),
        ("numpy", vec![script("numpy_alloc.py").into()]),
    ];
    for (name, args) in programs {
        let file = dir.0.join(format!("{name}.memlens"));
        run(memlens().args(["run", "-q", "-o"]).arg(&file).args(&args).stdout(Stdio::null()));
        let fast = summary_json(&file, false);
        let slow = summary_json(&file, true);
        assert_eq!(fast, slow, "{name}: the aggregates and a replay disagree");
        assert!(fast["alloc_count"].as_u64().unwrap() > 100, "{name}");
        let check = run(memlens().arg("check").arg(&file));
        let text = String::from_utf8_lossy(&check.stdout);
        let ok = format!(": OK (format {}", memlens_format::FORMAT_VERSION);
        assert!(text.contains(&ok) && text.contains("agree"), "{name}: {text}");
    }
}

/// `memlens check` rebuilds each file's aggregates as the writer of its format made them
/// (format 8 keeps allocators apart, 7 and before do not; sampled counts from 8 on): every
/// golden file of formats 4 to 8 checks out.
#[test]
fn check_accepts_the_aggregates_of_every_format_that_has_them() {
    let golden = root().join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".memlens") || ["-v1.", "-v2.", "-v3."].iter().any(|v| name.contains(v))
        {
            continue;
        }
        let check = run(memlens().arg("check").arg(&file));
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(text.contains(": OK (format") && text.contains("agree"), "{name}: {text}");
        checked += 1;
    }
    assert!(checked >= 10, "{checked} golden files");
}

/// A recording with only aggregates is much smaller than one with every event, and says the
/// same about the run as a whole.
#[test]
fn an_aggregate_only_recording_is_small_and_agrees() {
    let dir = TempDir::new("aggregates-only");
    let churn = root().join("bench/workloads/churn.py");
    let (full, agg) = (dir.0.join("full.memlens"), dir.0.join("agg.memlens"));
    for (file, extra) in [(&full, None), (&agg, Some("--aggregate"))] {
        run(memlens()
            .args(["run", "-q", "-o"])
            .arg(file)
            .args(extra)
            .arg(&churn)
            .arg("200000")
            .stdout(Stdio::null()));
    }
    let (full_len, agg_len) = (full.metadata().unwrap().len(), agg.metadata().unwrap().len());
    assert!(agg_len * 20 < full_len, "{agg_len} bytes vs {full_len}");
    let (a, f) = (summary_json(&agg, false), summary_json(&full, false));
    // The same program twice: its allocations are the same in number (but on 3.14 an
    // aggregate-only run counted 9 fewer of 4.3 million in 1 run of 3, not yet explained);
    // the top site at exit (the growing cache) too.
    let (ac, fc) = (a["alloc_count"].as_u64().unwrap(), f["alloc_count"].as_u64().unwrap());
    assert!(ac.abs_diff(fc) * 10_000 <= fc, "{ac} allocations vs {fc}");
    assert_eq!(a["top_leaks"][0]["line"], f["top_leaks"][0]["line"]);
    let check = run(memlens().arg("check").arg(&agg));
    assert!(String::from_utf8_lossy(&check.stdout).contains(": OK"), "{check:?}");
}

/// A recording being written opens (read chunk by chunk, no trailer yet), and again when it
/// is complete.
#[test]
fn a_recording_is_read_while_it_is_written() {
    let dir = TempDir::new("aggregates-follow");
    let file = dir.0.join("live.memlens");
    let mut child = memlens()
        .args(["run", "-q", "-o"])
        .arg(&file)
        .arg(script("sleeper.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // sleeper.py prints "ready" once its 20 MiB are allocated and sent.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    // The recorder flushes every 100 ms.
    let started = Instant::now();
    let during = loop {
        let s = summary_json(&file, false);
        if s["peak_heap_bytes"].as_u64().unwrap_or(0) >= 20 << 20 {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never saw the 20 MiB: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(during["complete"], false);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let after = summary_json(&file, false);
    assert_eq!(after["complete"], true);
    // What was read while it ran is still there (the exit adds a little).
    let peak = |s: &serde_json::Value| s["peak_heap_bytes"].as_u64().unwrap();
    assert!(peak(&after) >= peak(&during));
    assert!(after["alloc_count"].as_u64() >= during["alloc_count"].as_u64());
}
