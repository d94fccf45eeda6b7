//! `go tool pprof` (Debian's golang-go, installed by `./dev setup`) on a pprof export.
#![allow(dead_code)] // not every test file uses all of it

use std::path::Path;
use std::process::Command;

/// `go tool pprof ARGS FILE`'s output, or `None` (said) when Go is not installed; under CI,
/// where `./dev setup` installs it, a missing Go fails the test instead.
pub fn pprof_tool(file: &Path, args: &[&str]) -> Option<String> {
    let out = match Command::new("go").arg("tool").arg("pprof").args(args).arg(file).output() {
        Ok(out) => out,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "go (golang-go) is needed under CI: {e}");
            eprintln!("SKIPPED: go not found ({e}); ./dev setup installs golang-go");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "go tool pprof {args:?}: {stderr}");
    Some(String::from_utf8(out.stdout).unwrap())
}

/// `go tool pprof -top -lines -unit=B`: (function, file:line) -> flat bytes or count.
pub fn top(file: &Path, sample_index: &str) -> Option<Vec<(String, String, u64)>> {
    let text = pprof_tool(
        file,
        &["-top", "-lines", "-unit=B", "-nodefraction=0", &format!("-sample_index={sample_index}")],
    )?;
    let rows = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let flat = cols.first()?.trim_end_matches('B').parse().ok()?;
            Some((cols.get(5)?.to_string(), cols.get(6).unwrap_or(&"").to_string(), flat))
        })
        .collect();
    Some(rows)
}
