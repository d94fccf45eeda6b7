//! The contracts between the Rust side and the `memlens` Python package, checked against the
//! Python code itself: census trigger numbers (`memlens_format::CensusTrigger` and
//! `_census.Trigger`), and the handshake of `memlens run` and `memlens sink`
//! (`memlens_wire::handshake` and `_protocol.py`).

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
        handshake::done_line(123_456_789_012, 42, Some(524_288)),
        handshake::error_line(28),
        handshake::sample_line(524_288),
    );
    let py = python(&format!(
        "import json; from memlens import _protocol as p\n\
         print(json.dumps([p.ready_tracer({ready:?} + '\\n'), p.ready_tracer('error errno=2\\n'),\n\
         p.done_figures({done:?} + '\\n'), p.done_figures(''), p.error_number({error:?} + '\\n'),\n\
         p.sampling_line({sample:?} + '\\n'), p.sampling_line({ready:?})]))"
    ));
    assert_eq!(
        py,
        serde_json::json!([
            "/opt/x y/libmemlens_tracer.so",
            null,
            [123_456_789_012u64, 42],
            [null, null],
            28,
            true,
            false
        ])
    );
}
