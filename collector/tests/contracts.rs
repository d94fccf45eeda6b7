//! The contracts between the Rust side and the `memlens` Python package, checked against the
//! Python code itself: census trigger numbers (`memlens_format::CensusTrigger` and
//! `_census.TRIGGERS`) and object limits, the handshake of `memlens run` and `memlens sink`
//! (`memlens_wire::handshake` and `_protocol.py`), and the tracer's C functions as the
//! `memlens._tracer` module offers them to the package (`collector/tracer/src/lib.rs` and
//! `pymodule.rs`).

mod common;

use std::path::Path;
use std::process::Command;

use memlens_format::CensusTrigger;
use memlens_wire::handshake;

/// Runs `code` in python3 with the package's source on the path; its stdout as JSON.
fn python(code: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .env("PYTHONPATH", Path::new(env!("CARGO_MANIFEST_DIR")).join("python"))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn census_triggers_have_the_same_numbers_on_both_sides() {
    let py = python(
        "import json; from memlens._census import TRIGGERS\n\
         print(json.dumps(TRIGGERS))",
    );
    let rust: serde_json::Map<String, serde_json::Value> =
        CensusTrigger::ALL.iter().map(|t| (t.name().to_owned(), (*t as u8).into())).collect();
    assert_eq!(py, serde_json::Value::Object(rust));
}

/// The defaults of `--census-max-objects` (`memlens run` passes them) and of the censuses of
/// `memlens.record()` blocks (the package's own).
#[test]
fn census_object_limits_are_the_same_on_both_sides() {
    let py = python(
        "import json; from memlens import _census as c\n\
         print(json.dumps([c.MAX_OBJECTS, c.SAMPLED_MAX_OBJECTS]))",
    );
    let rust = [handshake::CENSUS_MAX_OBJECTS, handshake::SAMPLED_CENSUS_MAX_OBJECTS];
    assert_eq!(py, serde_json::json!(rust));
}

#[test]
fn the_environment_handshake_names_the_same_variables() {
    let py = python("import json; from memlens import _protocol as p; print(json.dumps(p.ENV))");
    assert_eq!(py, serde_json::json!(handshake::ENV));
}

/// The sink's lines as Rust prints them read back in Python as what they say.
#[test]
fn the_sink_lines_read_back_in_python() {
    let (ready, done, error, sample) = (
        handshake::ready_line("/opt/x y/libmemlens_tracer.so"),
        handshake::done_line(123_456_789_012, 42, Some(524_288), Some(7_000)),
        handshake::error_line(28),
        handshake::sample_line(524_288),
    );
    let follow = handshake::follow_line("/tmp/a b/follow");
    let child = python(
        "import json; from memlens import _protocol as p\n\
         print(json.dumps([p.child_line('3.13.0', 'CPython', 77),\n\
             p.child_line('3.13.0', 'CPython', 77, b'py\\0-c\\0a b%\\xc3\\xa9\\0' * 1000),\n\
             p.MAX_COMMAND_LINE]))",
    );
    let said = |i: usize| child[i].as_str().unwrap().strip_suffix('\n').unwrap().to_owned();
    let line = |command: Option<Vec<u8>>| handshake::ChildLine {
        version: "3.13.0".into(),
        implementation: "CPython".into(),
        ppid: 77,
        command,
    };
    assert_eq!(handshake::parse_child_line(&said(0)), Some(line(None)));
    let command = b"py\0-c\0a b%\xc3\xa9\0".repeat(1000)[..handshake::MAX_COMMAND_LINE].to_vec();
    assert_eq!(handshake::parse_child_line(&said(1)), Some(line(Some(command))));
    assert!(said(1).len() < handshake::CHILD_LINE_MAX);
    assert_eq!(child[2], handshake::MAX_COMMAND_LINE);
    let py = python(&format!(
        "import json; from memlens import _protocol as p\n\
         print(json.dumps([p.ready_tracer({ready:?} + '\\n'), p.ready_tracer('error errno=2\\n'),\n\
         p.done_figures({done:?} + '\\n'), p.done_figures(''), p.error_number({error:?} + '\\n'),\n\
         p.sampling_line({sample:?} + '\\n'), p.sampling_line({ready:?}),\n\
         p.follow_dir({follow:?} + '\\n'), p.follow_dir({ready:?})]))"
    ));
    assert_eq!(
        py,
        serde_json::json!([
            "/opt/x y/libmemlens_tracer.so",
            null,
            [123_456_789_012u64, 42, 7_000],
            [null, null, null],
            28,
            true,
            false,
            "/tmp/a b/follow",
            null
        ])
    );
}

/// Every function the tracer exports, from its source: (name, number of parameters).
fn tracer_exports() -> Vec<(String, usize)> {
    let src = tracer_source("lib.rs");
    let mut out = Vec::new();
    for item in src.split("#[no_mangle]").skip(1) {
        let Some(at) = item.find("extern \"C\" fn ") else { continue };
        let sig = &item[at + "extern \"C\" fn ".len()..];
        let (name, rest) = sig.split_once('(').unwrap();
        let params = rest.split_once(')').unwrap().0;
        out.push((
            name.trim().to_owned(),
            params.split(',').filter(|p| !p.trim().is_empty()).count(),
        ));
    }
    out
}

fn tracer_source(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tracer/src").join(file))
        .unwrap()
}

/// The `memlens._tracer` module (`pymodule.rs`) offers every function the tracer exports,
/// with the same number of arguments, and the package loads it from the library: a function
/// missing or wrapped with another arity would fail only on the path that calls it.
/// `memlens_inject` is called by gdb (`memlens attach`), not from Python.
#[test]
fn the_tracer_module_offers_every_export_with_its_arguments() {
    let exports: Vec<_> =
        tracer_exports().into_iter().filter(|(n, _)| n != "memlens_inject").collect();
    assert!(exports.len() >= 15, "the tracer's exports are found: {exports:?}");
    let module = tracer_source("pymodule.rs");
    for (name, params) in &exports {
        assert!(
            module.contains(&format!("function!({name}, {params}, ")),
            "pymodule.rs wraps {name} with its {params} arguments"
        );
    }
    let exe = common::memlens().get_program().to_owned();
    let tracer = Path::new(&exe).parent().unwrap().join("libmemlens_tracer.so");
    let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
    let py = python(&format!(
        "import json, sys, memlens\n\
         lib = memlens._load({tracer:?})\n\
         o = []\n\
         try:\n    lib.memlens_pause()\n    arity = 'no error'\n\
         except TypeError as e:\n    arity = str(e)\n\
         print(json.dumps({{'missing': [n for n in {names:?} if not callable(getattr(lib, n, None))],\n\
         'module': type(lib).__name__, 'active': lib.memlens_active(),\n\
         'refcnt': lib.memlens_read_ptr(id(o)) == sys.getrefcount(o) - 1,\n\
         'type': lib.memlens_read_ptr(id(o) + 8) == id(list), 'arity': arity}}))",
        tracer = tracer.to_string_lossy(),
    ));
    assert_eq!(
        py,
        serde_json::json!({
            "missing": [], "module": "module", "active": 0, "refcnt": true, "type": true,
            "arity": "memlens_pause() takes 1 argument(s)"
        })
    );
}
