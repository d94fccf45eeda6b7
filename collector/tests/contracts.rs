//! The contracts between the Rust side and the `memlens` Python package, checked against the
//! Python code itself: census trigger numbers (`memlens_format::CensusTrigger` and
//! `_census.Trigger`) and object limits, the handshake of `memlens run` and `memlens sink`
//! (`memlens_wire::handshake` and `_protocol.py`), and the tracer's C functions as ctypes
//! declares them (`collector/tracer/src/lib.rs` and `memlens._load`).

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
        "import json; from memlens._census import Trigger\n\
         print(json.dumps({t.name.lower(): t.value for t in Trigger}))",
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
         print(json.dumps(p.child_line('3.13.0', 'CPython', 77)))",
    );
    let child = child.as_str().unwrap().strip_suffix('\n').unwrap().to_owned();
    assert_eq!(handshake::parse_child_line(&child), Some(("3.13.0", "CPython", 77)));
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

/// The ctypes name of the C type a Rust FFI parameter or result is declared with (on
/// x86-64 Linux, where `c_uint64` and `c_size_t` are `c_ulong`); frames are Python objects.
fn ctypes_name(rust: &str) -> &'static str {
    match rust.trim() {
        "c_int" => "c_int",
        "u32" => "c_uint",
        "u64" | "usize" => "c_ulong",
        "i64" => "c_long",
        "*const c_char" => "c_char_p",
        "*mut std::ffi::c_void" | "*mut c_void" => "py_object",
        other => panic!("no ctypes mapping for the FFI type `{other}`"),
    }
}

/// Every function the tracer exports, from its source: (name, parameter types, result type
/// or `None`).
fn tracer_exports() -> Vec<(String, Vec<&'static str>, Option<&'static str>)> {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tracer/src/lib.rs"))
            .unwrap();
    let mut out = Vec::new();
    for item in src.split("#[no_mangle]").skip(1) {
        let Some(at) = item.find("extern \"C\" fn ") else { continue };
        let sig = &item[at + "extern \"C\" fn ".len()..];
        let (name, rest) = sig.split_once('(').unwrap();
        let (params, after) = rest.split_once(')').unwrap();
        let ret = after.split('{').next().unwrap().trim();
        let params = params
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| ctypes_name(p.split_once(':').unwrap().1))
            .collect();
        let ret = ret.strip_prefix("->").map(ctypes_name);
        out.push((name.trim().to_owned(), params, ret));
    }
    out
}

/// What `memlens._load` declares for each function ctypes calls matches what the tracer
/// exports: a parameter or result type declared differently would be read as garbage.
/// `memlens_inject` is called by lldb (`memlens attach`), not from Python.
#[test]
fn ctypes_declarations_match_the_tracers_exports() {
    let exports = tracer_exports();
    assert!(exports.len() >= 15, "the tracer's exports are found: {exports:?}");
    let names: Vec<&str> =
        exports.iter().map(|(n, ..)| n.as_str()).filter(|n| *n != "memlens_inject").collect();
    let exe = common::memlens().get_program().to_owned();
    let tracer = Path::new(&exe).parent().unwrap().join("libmemlens_tracer.so");
    let py = python(&format!(
        "import json, memlens\n\
         lib = memlens._load({tracer:?})\n\
         name = lambda t: None if t is None else t.__name__\n\
         print(json.dumps({{n: [[name(a) for a in (getattr(lib, n).argtypes or ())],\n\
         name(getattr(lib, n).restype)] for n in {names:?}}}))",
        tracer = tracer.to_string_lossy(),
    ));
    for (name, params, ret) in exports.iter().filter(|(n, ..)| n != "memlens_inject") {
        let declared = &py[name.as_str()];
        assert_eq!(declared, &serde_json::json!([params, ret]), "{name}");
    }
}
