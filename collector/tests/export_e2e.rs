//! `memlens export` read by the real consumers: a recording of tests/scripts/export_sites.py
//! (known sites and sizes, two threads, markers) made by the real collector, exported to
//! pprof and read by `go tool pprof` (Debian's golang-go, installed by `./dev setup`), to
//! collapsed stacks drawn by inferno's flamegraph, and to speedscope's format (read by
//! speedscope itself in tests/browser/speedscope.test.mjs; checked here against the schema's
//! rules).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::pprof::{pprof_tool, top};
use common::{line_of, memlens, script, TempDir};

const MIB: u64 = 1024 * 1024;
const SCRIPT: &str = "export_sites.py";

/// A recording of the script in a folder of its own, where exports are written.
struct Rec {
    dir: TempDir,
    file: PathBuf,
}

fn record() -> Rec {
    let dir = TempDir::new("export");
    let file = dir.0.join("sites.memlens");
    let status = memlens().args(["run", "-q", "-o"]).arg(&file).arg(script(SCRIPT)).status();
    assert!(status.unwrap().success());
    Rec { dir, file }
}

impl Rec {
    fn export(&self, args: &[&str]) -> Output {
        memlens().arg("export").arg(&self.file).args(args).output().unwrap()
    }

    /// Exports to `name` in the recording's folder and returns its path.
    fn export_to(&self, name: &str, args: &[&str]) -> PathBuf {
        let path = self.dir.0.join(name);
        let out = self.export(&[args, &["-o", path.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        path
    }
}

/// The flat value of `function` at `SCRIPT:line` in `rows` (0 when absent).
fn flat(rows: &[(String, String, u64)], function: &str, tag: &str) -> u64 {
    let at = format!("{SCRIPT}:{}", line_of(SCRIPT, tag));
    rows.iter().filter(|r| r.0 == function && r.1.ends_with(&at)).map(|r| r.2).sum()
}

/// About `mib` MiB: the block plus its object header, nothing else of that size.
fn about(bytes: u64, mib: u64) -> bool {
    (mib * MIB..mib * MIB + 4096).contains(&bytes)
}

#[test]
fn pprof_at_the_peak_has_the_known_sites_lines_sizes_and_threads() {
    let rec = record();
    let file = rec.export_to("peak.pb.gz", &["--format", "pprof"]);
    let Some(live) = top(&file, "inuse_space") else { return };
    assert!(about(flat(&live, "build_index", "INDEX_LINE"), 40), "{live:?}");
    assert!(about(flat(&live, "load", "LOAD_LINE"), 12), "{live:?}");
    assert_eq!(flat(&live, "churn", "CHURN_LINE"), 0, "freed before the peak");
    assert_eq!(flat(&live, "remember", "CACHE_LINE"), 0, "allocated after the peak");
    let objects = top(&file, "inuse_objects").unwrap();
    // The bytearray, its buffer, and at most a few small objects of that line.
    assert!((1..=4).contains(&flat(&objects, "build_index", "INDEX_LINE")), "{objects:?}");
    let allocated = top(&file, "alloc_space").unwrap();
    assert!(flat(&allocated, "churn", "CHURN_LINE") >= 30 * MIB, "{allocated:?}");
    assert!(about(flat(&allocated, "remember", "CACHE_LINE"), 8), "{allocated:?}");
    let allocs = top(&file, "alloc_objects").unwrap();
    assert!(flat(&allocs, "churn", "CHURN_LINE") >= 30, "{allocs:?}");

    // The default sample type is inuse_space, and the thread labels are right: the load
    // came from the thread named "loader", the index from the main thread.
    let traces = pprof_tool(&file, &["-traces"]).unwrap();
    assert!(traces.contains("Type: inuse_space"), "{traces}");
    let trace_of = |function: &str| {
        traces.split("-----------+").find(|t| t.contains(&format!(" {function}\n"))).unwrap_or("")
    };
    assert!(trace_of("load").contains("thread:  loader"), "{traces}");
    assert!(trace_of("build_index").contains("thread:  MainThread"), "{traces}");
    assert!(trace_of("build_index").contains("thread_id:"), "{traces}");
    // And the allocator: the bytearrays' buffers come from Python's object domain (its mem
    // domain from 3.13 on); the interpreter's own mallocs are samples of their own.
    let index_allocator = trace_of("build_index").contains("allocator:  pymalloc object")
        || trace_of("build_index").contains("allocator:  PyMem");
    assert!(index_allocator, "{traces}");
    let tags = pprof_tool(&file, &["-tags"]).unwrap();
    assert!(tags.contains(" allocator: Total"), "{tags}");
    assert!(tags.contains("): pymalloc object\n") && tags.contains("): malloc\n"), "{tags}");
    // Stacks are whole, leaf first: build_index called by main called by <module>.
    let index = trace_of("build_index");
    let frames: Vec<&str> = index.lines().map(str::trim).filter(|l| !l.contains(':')).collect();
    assert!(frames.join(" ").contains("build_index main <module>"), "{index}");
    // memlens's own frames are left out.
    let raw = pprof_tool(&file, &["-raw"]).unwrap();
    assert!(!raw.contains("memlens-py-") && !raw.contains("_bootstrap.py"), "{raw}");
}

#[test]
fn pprof_of_leaks_total_and_a_range_between_markers() {
    let rec = record();
    let leaks = rec.export_to("leaks.pb.gz", &["--format", "pprof", "--view", "leaks"]);
    let Some(live) = top(&leaks, "inuse_space") else { return };
    assert!(about(flat(&live, "remember", "CACHE_LINE"), 8), "{live:?}");
    assert!(about(flat(&live, "load", "LOAD_LINE"), 12), "{live:?}");
    assert_eq!(flat(&live, "build_index", "INDEX_LINE"), 0, "{live:?}");

    // Everything allocated: alloc_space is the default sample type.
    let total = rec.export_to("total.pb.gz", &["--format", "pprof", "--view", "total"]);
    let text = pprof_tool(&total, &["-top"]).unwrap();
    assert!(text.contains("Type: alloc_space"), "{text}");
    let allocated = top(&total, "alloc_space").unwrap();
    assert!(flat(&allocated, "churn", "CHURN_LINE") >= 30 * MIB, "{allocated:?}");

    // Between the markers: the index is allocated there; the loader's block, allocated
    // before, is live at the range's highest point but not allocated in it.
    let range =
        rec.export_to("range.pb.gz", &["--format", "pprof", "--from", "loaded", "--to", "built"]);
    let live = top(&range, "inuse_space").unwrap();
    assert!(about(flat(&live, "build_index", "INDEX_LINE"), 40), "{live:?}");
    assert!(about(flat(&live, "load", "LOAD_LINE"), 12), "{live:?}");
    let allocated = top(&range, "alloc_space").unwrap();
    assert!(about(flat(&allocated, "build_index", "INDEX_LINE"), 40), "{allocated:?}");
    assert_eq!(flat(&allocated, "load", "LOAD_LINE"), 0, "{allocated:?}");
    assert_eq!(flat(&allocated, "churn", "CHURN_LINE"), 0, "{allocated:?}");
}

#[test]
fn the_aggregates_and_a_replay_give_the_same_pprof() {
    let rec = record();
    let fast = rec.export_to("fast.pb.gz", &["--format", "pprof", "--view", "total"]);
    let replayed =
        rec.export_to("replayed.pb.gz", &["--format", "pprof", "--view", "total", "--replay"]);
    let Some(a) = pprof_tool(&fast, &["-raw"]) else { return };
    assert_eq!(a, pprof_tool(&replayed, &["-raw"]).unwrap());
}

#[test]
fn collapsed_stacks_draw_in_inferno_with_the_known_sizes() {
    let rec = record();
    let out = rec.export(&["--format", "collapsed", "-o", "-"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let index = format!(
        "<module> ({path}:{});main ({path}:{});build_index ({path}:{}) ",
        line_of(SCRIPT, "MAIN_CALL"),
        line_of(SCRIPT, "BUILD_CALL"),
        line_of(SCRIPT, "INDEX_LINE"),
        path = script(SCRIPT).display()
    );
    let line = text.lines().find(|l| l.starts_with(&index)).unwrap_or_else(|| panic!("{text}"));
    let bytes: u64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!(about(bytes, 40), "{line}");
    assert!(!text.contains("memlens-py-"), "{text}");

    let mut options = inferno::flamegraph::Options::default();
    options.count_name = "bytes".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_reader(&mut options, text.as_bytes(), &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    let title =
        format!("build_index ({}:{}) (", script(SCRIPT).display(), line_of(SCRIPT, "INDEX_LINE"));
    let drawn = svg.lines().find(|l| l.contains(&title)).unwrap_or_else(|| panic!("{svg}"));
    let count = bytes.to_string();
    let grouped: String = count
        .chars()
        .rev()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
        .chars()
        .rev()
        .collect();
    assert!(drawn.contains(&format!("({grouped} bytes,")), "{drawn}");
}

#[test]
fn speedscope_holds_one_profile_per_view_over_shared_frames() {
    let rec = record();
    let path = rec.export_to("out.speedscope.json", &["--format", "speedscope", "--view", "leaks"]);
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(file["$schema"], "https://www.speedscope.app/file-format-schema.json");
    assert_eq!(file["activeProfileIndex"], 1);
    let frames = file["shared"]["frames"].as_array().unwrap();
    let profiles = file["profiles"].as_array().unwrap();
    let names: Vec<&str> = profiles.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["live at the peak", "live at exit (leaks)", "allocated over the run"]);
    // Each profile's weight at a function's innermost frame.
    let weight_at = |profile: &serde_json::Value, function: &str, tag: &str| -> u64 {
        let line = line_of(SCRIPT, tag);
        let samples = profile["samples"].as_array().unwrap();
        let weights = profile["weights"].as_array().unwrap();
        samples
            .iter()
            .zip(weights)
            .filter(|(s, _)| {
                let leaf =
                    &frames[s.as_array().unwrap().last().unwrap().as_u64().unwrap() as usize];
                leaf["name"] == function && leaf["line"] == line
            })
            .map(|(_, w)| w.as_u64().unwrap())
            .sum()
    };
    for p in profiles {
        assert_eq!((p["type"].as_str(), p["unit"].as_str()), (Some("sampled"), Some("bytes")));
        let sum: u64 = p["weights"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).sum();
        assert_eq!(p["endValue"].as_u64(), Some(sum));
    }
    assert!(about(weight_at(&profiles[0], "build_index", "INDEX_LINE"), 40));
    assert!(about(weight_at(&profiles[1], "remember", "CACHE_LINE"), 8));
    assert_eq!(weight_at(&profiles[1], "build_index", "INDEX_LINE"), 0);
    assert!(weight_at(&profiles[2], "churn", "CHURN_LINE") >= 30 * MIB);
}

#[test]
fn bad_views_ranges_and_cut_recordings_are_refused_with_exit_code_2() {
    let rec = record();
    let out = rec.export(&["--format", "pprof", "--view", "biggest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'biggest'"));

    let out = rec.export(&["--format", "collapsed", "--from", "no-such-marker", "-o", "-"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"no-such-marker\" is neither a time") && err.contains("loaded"),
        "{err}"
    );

    let out =
        rec.export(&["--format", "collapsed", "--from", "built", "--to", "loaded", "-o", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is after --to"));

    let out = rec.export(&["--format", "collapsed", "--view", "leaks", "--to", "1s", "-o", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("go with --view range"));

    // A recording cut short (in the middle, or just its last chunk): refused (the tools
    // reading an export could not tell), unless asked for; then what could be read is
    // exported. Which sites the first half holds depends on when the recorder wrote its
    // chunks; the whole file less its last bytes holds them all.
    let bytes = std::fs::read(&rec.file).unwrap();
    for (name, keep) in [("half", bytes.len() / 2), ("tail", bytes.len() - 16)] {
        let cut = rec.dir.0.join(format!("cut-{name}.memlens"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let run = |extra: &[&str]| {
            memlens()
                .arg("export")
                .arg(&cut)
                .args(["--format", "collapsed", "-o", "-"])
                .args(extra)
                .output()
                .unwrap()
        };
        let out = run(&[]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is incomplete (cut short)") && err.contains("--allow-incomplete"),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}");
        let out = run(&["--allow-incomplete"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.is_empty(), "{name}");
        if name == "tail" {
            assert!(text.contains("load (") && text.contains("build_index ("), "{text}");
        }
    }
}

/// `--from 50s --to 60s` on a run of well under a second exported the heap at the end with
/// exit code 0, labelled "between 50.00 s and 60.00 s". A range after the recording's end is
/// refused (exit code 2) with how long the recording lasts; one that only ends past it is cut
/// at the end, with a warning.
#[test]
fn a_range_outside_the_recording_is_refused_and_one_past_its_end_cut() {
    let rec = record();
    let summary = memlens().args(["summary", "--json"]).arg(&rec.file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    let lasts = v["duration_ns"].as_u64().unwrap();
    assert!(lasts < 50_000_000_000, "{lasts}");
    for range in [&["--from", "50s", "--to", "60s"][..], &["--from", "50s"]] {
        let out = rec.export(&[&["--format", "collapsed", "-o", "-"], range].concat());
        assert_eq!(out.status.code(), Some(2), "{range:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--from 50.00 s is after the end of the recording, which lasts "),
            "{range:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = rec.export(&["--format", "pprof", "--from", "start", "--to", "60s", "-o", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: --to 60.00 s is after the end of the recording"), "{err}");
    // The range ends where the recording does: as the whole run, from its start.
    let cut = rec.export_to("cut.collapsed.txt", &["--format", "collapsed", "--to", "60s"]);
    let whole = rec.export_to("whole.collapsed.txt", &["--format", "collapsed", "--to", "end"]);
    assert_eq!(std::fs::read(cut).unwrap(), std::fs::read(whole).unwrap());
}

#[test]
fn the_default_output_is_named_after_the_recording() {
    let rec = record();
    let out = rec.export(&["--format", "speedscope"]);
    assert!(out.status.success());
    let written = rec.dir.0.join("sites.speedscope.json");
    assert!(written.exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrote") && err.contains("sites.speedscope.json"), "{err}");
}

/// Recordings of older formats have no aggregates: exported by replaying their events, they
/// give what the same program's format-4 golden recording gives from its aggregates.
#[test]
fn older_formats_export_by_replay_as_format_4_does_from_its_aggregates() {
    let golden =
        |suffix: &str| common::root().join(format!("tests/golden/known-program{suffix}.memlens"));
    let collapsed = |file: &Path, view: &str| {
        let out = memlens()
            .arg("export")
            .arg(file)
            .args(["--format", "collapsed", "--view", view, "-o", "-"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for view in ["peak", "leaks", "total"] {
        let current = collapsed(&golden(""), view);
        assert!(current.contains("main (app.py:30);leak (app.py:20) 500\n"), "{view}: {current}");
        for version in ["-v1", "-v2", "-v3"] {
            assert_eq!(collapsed(&golden(version), view), current, "{version} {view}");
        }
    }
}
