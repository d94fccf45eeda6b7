//! End-to-end tests of object censuses and insights: the real `memlens run` on
//! tests/scripts/census_*.py and gc_cycles.py, checked through `memlens_format`'s analyses.
//!
//! Needs `python3` (or `MEMLENS_TEST_PYTHON`; the `__slots__` figures are made on CPython
//! 3.11 only) on PATH; builds the tracer next to the memlens binary like run_e2e.rs.

mod common;

use memlens_analysis::{
    insights, last_census, stack_totals, type_name, EventFilter, InsightKind, InsightOptions,
    Snapshot,
};
use memlens_format::Recording;

use std::path::{Path, PathBuf};

use common::{line_of, listcomp_function, memlens, memlens_run, python_minor, script, TempDir};

/// Runs tests/scripts/`name` under `memlens run` into `dir`: the recording and stderr.
fn record_into(dir: &Path, name: &str, extra: &[&str], args: &[&str]) -> (PathBuf, String) {
    let file = dir.join("out.memlens");
    let out = memlens_run(&file, &[], &[&["-q"], extra].concat(), name, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name}: {stderr}");
    (file, stderr)
}

fn open(file: &Path) -> Recording {
    Recording::from_vec(std::fs::read(file).unwrap()).unwrap()
}

fn record(name: &str, tag: &str, extra: &[&str], args: &[&str]) -> Recording {
    let dir = TempDir::new(&format!("census-{tag}"));
    open(&record_into(&dir.0, name, extra, args).0)
}

#[test]
fn census_counts_instances_of_a_class_and_finds_where_they_were_made() {
    let rec = record("census_objects.py", "count", &[], &[]);
    let marks: Vec<_> = rec.censuses().iter().map(|c| (c.trigger, c.label.as_str())).collect();
    assert_eq!(marks, [(0, ""), (1, "built"), (3, "")], "start, mark, exit");
    let c = &rec.censuses()[1];
    let point = c
        .types
        .iter()
        .find(|t| type_name(&rec, t.module, t.qualname) == "__main__.Point")
        .expect("Point in the census");
    assert!(point.count.abs_diff(100_000) <= 1_000, "count {}", point.count);
    // Every instance was allocated while tracing, so every address links (pre-header right).
    assert!(point.linked_count * 100 >= point.count * 99, "linked {}", point.linked_count);
    let site = point.sites[0];
    let frame = rec.frame(rec.stack(site.stack).unwrap().frame).unwrap();
    let version = &rec.meta().python_version;
    assert_eq!(rec.string(frame.function), listcomp_function(version, "build"));
    assert_eq!(frame.line, line_of("census_objects.py", "POINTS"));
    assert!(site.count * 100 >= point.count * 99);
    assert!(c.recursion_limit >= 1000);
}

/// Regression (issue 25): the census summed `sys.getsizeof`, which calls a class's own
/// `__sizeof__` (pandas computes deep memory usage there: 20 µs per object, and the
/// program's code running inside the profiler). Sizes now come from the layout.
#[test]
fn census_runs_no_code_of_the_program() {
    let dir = TempDir::new("census-nocode");
    let (file, stderr) = record_into(&dir.0, "census_no_user_code.py", &[], &[]);
    assert!(stderr.contains("ran: []"), "the census ran the program's code: {stderr}");
    let rec = open(&file);
    let c = rec.censuses().iter().find(|c| c.label == "objects built").expect("the mark's census");
    let frames = c
        .types
        .iter()
        .find(|t| type_name(&rec, t.module, t.qualname) == "__main__.Frame")
        .expect("Frame in the census");
    assert!(frames.count >= 20_000, "{}", frames.count);
    // The layout's size, as sys.getsizeof would give without the class's __sizeof__: the
    // object, the GC header and the pre-header; nowhere near the 10**9 __sizeof__ says.
    let each = frames.bytes / frames.count;
    assert!((32..=80).contains(&each), "{each} bytes per Frame");
    let rows = c
        .types
        .iter()
        .find(|t| type_name(&rec, t.module, t.qualname) == "__main__.Row")
        .expect("Row in the census");
    assert!(
        (40..=120).contains(&(rows.bytes / rows.count)),
        "{} B per Row",
        rows.bytes / rows.count
    );
    // The script's 100 live generators are sized by CPython's own __sizeof__, not by a
    // layout formula that reads a pointer as their item count (about 1e15 B each).
    let total: u64 = c.types.iter().map(|t| t.bytes).sum();
    assert!(total < 1 << 30, "{total} B in the census");
    if let Some(g) =
        c.types.iter().find(|t| type_name(&rec, t.module, t.qualname) == "builtins.generator")
    {
        assert!(
            (64..=1024).contains(&(g.bytes / g.count)),
            "{} B per generator",
            g.bytes / g.count
        );
    }
}

/// The tracer's census (census.rs, which calls each type's C `__sizeof__` directly) counts
/// and sizes the objects of every kind of class as the Python reference does: managed-dict
/// instances, `__slots__`, a Python `__sizeof__` (not called: the layout), and subclasses
/// of list, dict, tuple and set (their own `__sizeof__`, which varies object by object).
#[test]
fn census_sizes_are_the_python_references() {
    let dir = TempDir::new("census-sizes");
    let file = dir.0.join("out.memlens");
    let out = memlens_run(&file, &[], &["-q"], "census_sizes.py", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = expected.as_object().unwrap();
    assert_eq!(expected.len(), 7, "{expected:?}");
    let rec = open(&file);
    let c = rec.censuses().iter().find(|c| c.label == "sized").expect("the mark's census");
    for (qualname, want) in expected {
        let t = c
            .types
            .iter()
            .find(|t| type_name(&rec, t.module, t.qualname) == format!("__main__.{qualname}"))
            .unwrap_or_else(|| panic!("{qualname} in the census"));
        assert_eq!(serde_json::json!([t.count, t.bytes]), *want, "{qualname}");
    }
}

/// A census of more objects than `--census-max-objects` looks at an evenly spread sample:
/// its figures are scaled up estimates, and the recording and the summary say so.
#[test]
fn a_census_of_many_objects_looks_at_a_sample_and_says_so() {
    let dir = TempDir::new("census-sample");
    let limit = ["--census-max-objects", "20000"];
    let (file, _) = record_into(&dir.0, "census_objects.py", &limit, &[]);
    let rec = open(&file);
    let c = rec.censuses().iter().find(|c| c.label == "built").expect("the mark's census");
    let every = c.objects.div_ceil(20_000);
    assert!(every >= 5, "{} objects", c.objects);
    let note = format!("memlens: census of 1 object in {every} (");
    assert!(rec.markers().iter().any(|m| m.label.starts_with(&note)), "{:?}", rec.markers());
    let point = c
        .types
        .iter()
        .find(|t| type_name(&rec, t.module, t.qualname) == "__main__.Point")
        .expect("Point in the census");
    // 100,000 instances, estimated from one in `every` of them, linked to their line.
    assert!(point.count.abs_diff(100_000) <= 2 * every, "count {}", point.count);
    assert!(point.linked_count.abs_diff(point.count) <= 2 * every, "linked {}", point.linked_count);
    assert!(point.sites[0].count.abs_diff(100_000) <= 2 * every, "{:?}", point.sites[0]);
    let json = memlens().args(["summary", "--json"]).arg(&file).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(s["census"]["sampled_one_in"], every, "{}", s["census"]);
    let text = memlens().arg("summary").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("looked at 1 object in {every}")), "{text}");
}

/// Under `--sample`, a census looks at 10,000 objects at most unless told otherwise: its
/// figures are estimates, as the sampled heap's are, and it holds the program ~10 ms.
#[test]
fn a_sampled_recordings_census_looks_at_ten_thousand_objects() {
    let dir = TempDir::new("census-sampled");
    let (file, _) = record_into(&dir.0, "census_objects.py", &["--sample", "512KiB"], &[]);
    let rec = open(&file);
    let c = rec.censuses().iter().find(|c| c.label == "built").expect("the mark's census");
    let every = c.objects.div_ceil(10_000);
    assert!(every >= 10, "{} objects", c.objects);
    let note = format!("memlens: census of 1 object in {every} (");
    assert!(rec.markers().iter().any(|m| m.label.starts_with(&note)), "{:?}", rec.markers());
    let max = rec.meta().extra.iter().find(|(k, _)| k == "census_max_objects");
    assert_eq!(max.map(|(_, v)| v.as_str()), Some("10000"));
}

#[test]
fn unbounded_lru_cache_is_flagged_with_its_size() {
    let rec = record("census_objects.py", "cache", &[], &[]);
    let cache = rec
        .caches()
        .iter()
        .rev()
        .find(|c| rec.string(c.qualname) == "square_row")
        .expect("square_row's cache");
    assert_eq!((cache.currsize, cache.maxsize, cache.misses), (5000, None, 5000));
    // 5000 results (lists of 8: 120 B each) and int keys, plus the table: over 600 KB.
    assert!(cache.bytes > 600_000, "{}", cache.bytes);
    let found = insights(&rec, &InsightOptions::default()).unwrap();
    let flagged = found
        .iter()
        .find(|i| i.kind == InsightKind::UnboundedCache)
        .expect("an unbounded-cache insight");
    assert_eq!(flagged.subject.as_deref(), Some("__main__.square_row"));
    assert!(flagged.message.contains("5,000 entries"), "{}", flagged.message);
}

#[test]
fn reference_cycle_churn_shows_gc_collections() {
    let rec = record("gc_cycles.py", "gc", &[], &[]);
    let gcs = rec.gc_events();
    assert!(gcs.len() >= 100, "{} collections", gcs.len());
    let collected: u64 = gcs.iter().map(|g| g.collected).sum();
    // 400,000 Node objects in cycles; the last few hundred may be alive at exit.
    assert!(collected >= 390_000, "collected {collected}");
    assert!(gcs.iter().all(|g| g.uncollectable == 0 && g.generation <= 2));
    // Collections take turns (the GIL): together no longer than the run (a slow machine can
    // make one take seconds; a duration from a missed start would be the system's uptime).
    assert!(gcs.iter().all(|g| g.duration_ns > 0));
    let collecting: u64 = gcs.iter().map(|g| g.duration_ns).sum();
    assert!(collecting <= rec.summary().duration_ns, "{collecting} ns collecting");
    assert!(gcs.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
}

/// Live traced bytes at the "built" census.
fn heap_at_mark(rec: &Recording) -> u64 {
    let t = rec.censuses().iter().find(|c| c.label == "built").unwrap().time_ns;
    stack_totals(rec, Snapshot::AtTime(t), &EventFilter::default()).unwrap().total.bytes
}

#[test]
fn slots_estimate_matches_a_rerun_with_slots() {
    let plain = record("census_objects.py", "plain", &[], &[]);
    let found = insights(&plain, &InsightOptions::default()).unwrap();
    if python_minor(&plain.meta().python_version) != 11 {
        // The census reads attribute storage through 3.11's layout (_layout.py) only.
        assert!(!found.iter().any(|i| i.kind == InsightKind::MissingSlots));
        let sampled = plain.censuses().iter().flat_map(|c| &c.types).any(|t| t.dict.is_some());
        assert!(!sampled, "attribute storage sampled on {}", plain.meta().python_version);
        eprintln!("SKIPPED the estimate: __slots__ savings are estimated on CPython 3.11 only");
        return;
    }
    let slotted = record("census_objects.py", "slots", &[], &["slots"]);
    let estimate = found
        .iter()
        .find(|i| {
            i.kind == InsightKind::MissingSlots && i.subject.as_deref() == Some("__main__.Point")
        })
        .expect("a __slots__ insight for Point")
        .bytes;
    let measured = heap_at_mark(&plain).saturating_sub(heap_at_mark(&slotted));
    assert!(
        estimate.abs_diff(measured) * 10 <= measured,
        "estimated {estimate} B saved, measured {measured} B"
    );
    // The slotted class gets no such finding.
    let again = insights(&slotted, &InsightOptions::default()).unwrap();
    assert!(!again
        .iter()
        .any(|i| i.kind == InsightKind::MissingSlots
            && i.subject.as_deref() == Some("__main__.Point")));
    assert!(last_census(&slotted).is_some());
}

#[test]
fn no_census_and_interval_flags() {
    let none = record("gc_cycles.py", "none", &["--no-census"], &[]);
    assert!(none.censuses().is_empty());
    // (The script sleeps at the end: the census thread's wait is over however fast the
    // rest ran, as on a machine running the suite's other tests beside it.)
    let timed =
        record("census_objects.py", "interval", &["--census-interval", "0.05"], &["linger"]);
    let intervals = timed.censuses().iter().filter(|c| c.trigger == 2).count();
    assert!(intervals >= 1, "no interval census in {:?}", timed.summary().duration_ns);
}

/// `memlens census ARGS FILE`: (exit code, stdout, stderr).
fn census_cli(file: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = memlens().arg("census").args(args).arg(file).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn census_json(file: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = census_cli(file, &[&["--json"], args].concat());
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn census_command_lists_censuses_top_types_and_growth_between_two_markers() {
    let dir = std::env::temp_dir().join(format!("memlens-census-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("growth.memlens");
    let run = memlens()
        .args(["run", "-q", "-o"])
        .arg(&file)
        .arg(script("census_growth.py"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // The list, and by default the top types at the last census (exit).
    let doc = census_json(&file, &[]);
    let listed: Vec<(String, String)> = doc["censuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["trigger"].as_str().unwrap().into(), c["label"].as_str().unwrap().into()))
        .collect();
    let pair = |t: &str, l: &str| (t.to_string(), l.to_string());
    assert_eq!(
        listed,
        [pair("start", ""), pair("mark", "ready"), pair("mark", "loaded"), pair("exit", "")]
    );
    assert_eq!(doc["census"]["trigger"], "exit");
    assert!(doc["growth"].is_null());

    // At a marker, by count: the 21,000 Order instances lead, made at the MORE line.
    let doc = census_json(&file, &["--at", "loaded", "--by", "count", "--top", "3"]);
    let top = &doc["census"]["top_types"][0];
    assert_eq!(top["name"], "__main__.Order");
    assert_eq!(top["count"], 21_000);
    assert_eq!(top["site"]["line"], line_of("census_growth.py", "MORE"));
    assert_eq!(doc["census"]["top_types"].as_array().unwrap().len(), 3);

    // Growth between the two markers: +20,000 Orders, and the cache's lists at price().
    let doc = census_json(&file, &["--growth", "ready..loaded"]);
    let g = &doc["growth"];
    assert_eq!((g["from"]["label"].as_str(), g["to"]["index"].as_u64()), (Some("ready"), Some(2)));
    let order = &g["types"][0];
    assert_eq!(
        (order["name"].as_str(), order["count_delta"].as_i64()),
        (Some("__main__.Order"), Some(20_000))
    );
    assert_eq!(order["count"], 21_000);
    assert!(order["bytes_delta"].as_i64().unwrap() >= 20_000 * 48, "{order}");
    assert_eq!(order["site"]["line"], line_of("census_growth.py", "MORE"));
    assert_eq!(order["site"]["count_delta"], 20_000);
    let lists = g["types"].as_array().unwrap().iter().find(|t| t["name"] == "list").unwrap();
    assert_eq!(lists["count_delta"], 3_000);
    let site = &g["sites"][0];
    assert_eq!(
        (site["type"].as_str(), site["line"].clone()),
        (Some("__main__.Order"), line_of("census_growth.py", "MORE").into())
    );
    assert!(g["sites"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["function"] == "price" && s["line"] == line_of("census_growth.py", "PRICE")));

    // Index and keyword selectors give the same census; the text says what grew.
    assert_eq!(census_json(&file, &["--growth", "1..2"])["growth"], doc["growth"]);
    let (code, text, _) = census_cli(&file, &["--growth", "start..exit"]);
    assert_eq!(code, 0);
    assert!(text.contains("Growth from #0 start at "), "{text}");
    let listcomp = listcomp_function(
        &Recording::from_vec(std::fs::read(&file).unwrap()).unwrap().meta().python_version,
        "<module>",
    );
    assert!(
        text.contains(&format!("objects  __main__.Order (now 21,000)  mostly at {listcomp} ")),
        "{text}"
    );

    // An unknown census is an error that lists the ones there are.
    let (code, _, err) = census_cli(&file, &["--at", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains(r#"no census "nope""#) && err.contains(r#"1 (mark "ready")"#), "{err}");
    let (code, _, err) = census_cli(&file, &["--growth", "ready"]);
    assert_eq!(code, 2);
    assert!(err.contains("A..B"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn census_help_has_examples() {
    let out = memlens().args(["census", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("EXAMPLES:") && help.contains("--growth start..exit"), "{help}");
}

/// Regression: `--growth`'s "By allocation site" printed several rows alike (`<module>
/// pool.py:1` for each type an import made): a site is the program's line, and the objects
/// were made at different lines of the library it called. Each row now names that library
/// line, as `summary` does, and rows that would still print alike are one.
#[test]
fn growth_sites_that_share_the_programs_line_name_the_library_line_beside_it() {
    let dir = TempDir::new("census-library");
    let (file, _) = record_into(&dir.0, "census_library.py", &[], &[]);
    let doc = census_json(&file, &["--growth", "start..exit", "--top", "50"]);
    let sites = doc["growth"]["sites"].as_array().unwrap();
    let make = line_of("census_library.py", "MAKE");
    let shapes = script("census_library/site-packages/shapes.py");
    let tagged = |tag: &str| {
        let text = std::fs::read_to_string(&shapes).unwrap();
        1 + text.lines().position(|l| l.ends_with(&format!("# {tag}"))).unwrap() as u64
    };
    for (name, tag, count) in [("shapes.Box", "BOXES", 4_000), ("shapes.Crate", "CRATES", 2_000)] {
        let site = sites.iter().find(|s| s["type"] == name).unwrap_or_else(|| panic!("{doc}"));
        assert_eq!(site["line"].as_u64(), Some(make.into()), "{site}");
        // The list each comprehension builds is made at that line too: 3.14+ charge it there
        // (a fresh block), 3.9-3.13 where its block was first allocated.
        let extra = site["count_delta"].as_i64().unwrap() - count;
        assert!((0..=1).contains(&extra), "{site}");
        assert_eq!(site["library"]["line"].as_u64(), Some(tagged(tag)), "{site}");
        assert!(site["library"]["file"].as_str().unwrap().ends_with("site-packages/shapes.py"));
    }
    let (code, text, _) = census_cli(&file, &["--growth", "start..exit", "--top", "50"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("By allocation site"))
        .skip(1)
        .map(|l| l.split(" objects  ").nth(1).unwrap_or(l))
        .map(|l| l.rsplit_once("  (mostly").map_or(l, |(place, _)| place))
        .collect();
    let mut unique = rows.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), rows.len(), "rows that print alike: {text}");
    assert!(text.contains(&format!("shapes.py:{}) ", tagged("BOXES"))), "{text}");
}
