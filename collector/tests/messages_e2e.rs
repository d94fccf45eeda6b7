//! What the CLI says when something is off: a reader that goes away, a recording cut short,
//! two recordings of different kinds. (Messages that mislead are defects too.)

mod common;

use std::os::fd::OwnedFd;
use std::process::Stdio;

use common::{memlens, script, TempDir};

/// A recording of a small real program, made once per test.
fn recording(dir: &TempDir, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let file = dir.0.join(format!("{name}.memlens"));
    let out = memlens()
        .args(["run", "-q", "-o"])
        .arg(&file)
        .args(extra)
        .arg(script("big_alloc.py"))
        .output()
        .unwrap();
    assert!(file.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    file
}

/// `memlens summary x | head`: the reader is gone before memlens writes. That is no error:
/// exit 0, nothing on stderr.
#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    let dir = TempDir::new("messages-pipe");
    let file = recording(&dir, "a", &[]);
    let file = file.to_str().unwrap();
    for args in [
        vec!["summary", file],
        vec!["summary", "--json", file],
        vec!["diff", file, file],
        vec!["check", file],
    ] {
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = memlens().args(&args).stdout(Stdio::from(write)).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", out.status);
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A recording whose last chunk was cut while it was written says how much is missing at
/// the end, not "read the first 3.29 MiB of 3.29 MiB".
#[test]
fn a_cut_recording_says_what_is_missing() {
    let dir = TempDir::new("messages-cut");
    let file = recording(&dir, "a", &[]);
    let bytes = std::fs::read(&file).unwrap();
    let trailer_at = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap()) as usize;
    let cut = dir.0.join("cut.memlens");
    // Into the middle of the chunk before the trailer.
    std::fs::write(&cut, &bytes[..trailer_at - 5]).unwrap();
    let out = memlens().arg("summary").arg(&cut).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is incomplete: its last") && err.contains("could not be read"), "{err}");
    // Cut between two chunks, just before the trailer: `check` says so and exits 1.
    std::fs::write(&cut, &bytes[..trailer_at]).unwrap();
    let out = memlens().arg("check").arg(&cut).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ends without its trailer"), "{text}");
    // Cut inside its metadata: said as such, not "too short to contain a header".
    std::fs::write(&cut, &bytes[..40]).unwrap();
    let out = memlens().arg("summary").arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ends inside its metadata, after 40 bytes"), "{err}");
}

/// A memory-samples-only recording against a traced one: said plainly, not "different Python
/// versions:  vs 3.11.7".
#[test]
fn an_rss_only_recording_against_a_traced_one_says_so() {
    let dir = TempDir::new("messages-rss");
    let traced = recording(&dir, "traced", &[]);
    let rss = dir.0.join("rss.memlens");
    let python = std::env::var("MEMLENS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = memlens()
        .args(["run", "-q", "--rss-only", "-o"])
        .arg(&rss)
        .arg(python)
        .arg(script("big_alloc.py"))
        .output()
        .unwrap();
    assert!(rss.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = memlens().arg("diff").arg(&rss).arg(&traced).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the base holds memory samples only (--rss-only)"), "{text}");
    assert!(!text.contains("Python versions"), "{text}");
}

/// Runs `memlens ARGS` on a pseudo-terminal (util-linux `script`), with `env` set; returns
/// what the terminal received (stdout and stderr). `None` when `script` is missing (then the
/// test says it skipped, and fails under CI, where it must run).
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let exe = env!("CARGO_BIN_EXE_memlens");
    let quoted: Vec<String> = std::iter::once(exe)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &quoted.join(" "), "/dev/null"]).env_remove("NO_COLOR");
    cmd.env("TERM", "xterm").env_remove("MEMLENS_QUIET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "`script` (util-linux) is needed: {e}");
            eprintln!("SKIPPED: no `script` command to make a pseudo-terminal ({e})");
            None
        }
    }
}

/// Colour and progress are for a person at a terminal: on a terminal the headings are bold
/// and a progress line shows (MEMLENS_PROGRESS_AFTER_MS=0 shows it at once, so this needs no
/// slow command); with NO_COLOR, or on a pipe, no escape sequence at all.
#[test]
fn colour_and_progress_on_a_terminal_only_and_never_with_no_color() {
    let dir = TempDir::new("messages-colour");
    let base = recording(&dir, "base", &[]);
    let head = recording(&dir, "head", &[]);
    let (base, head) = (base.to_str().unwrap(), head.to_str().unwrap());
    let commands: [&[&str]; 6] = [
        &["summary", head],
        &["diff", base, head],
        &["census", head],
        &["spans", head],
        &["check", head],
        &["census", head, "--growth", "start..exit"],
    ];
    let now = [("MEMLENS_PROGRESS_AFTER_MS", "0")];
    for args in commands {
        let Some(tty) = on_a_terminal(args, &now) else { return };
        assert!(tty.contains("\x1b["), "{args:?}: no colour on a terminal:\n{tty}");
        assert!(tty.contains("% of "), "{args:?}: no progress line on a terminal:\n{tty}");
        let plain = on_a_terminal(args, &[("NO_COLOR", "1"), now[0]]).unwrap();
        assert!(!plain.contains('\x1b'), "{args:?}: an escape code with NO_COLOR:\n{plain}");
        let piped = memlens()
            .args(args)
            .env_remove("NO_COLOR")
            .env("TERM", "xterm")
            .env(now[0].0, now[0].1)
            .output()
            .unwrap();
        assert!(piped.status.success(), "{args:?}");
        for (what, bytes) in [("stdout", &piped.stdout), ("stderr", &piped.stderr)] {
            assert!(!bytes.contains(&0x1b), "{args:?}: an escape code on a pipe ({what})");
        }
        assert!(!String::from_utf8_lossy(&piped.stderr).contains("% of "), "{args:?}");
    }
}

/// `--python` naming something that is not Python says so, not `unexpected answer from
/// /bin/true: ""`.
#[test]
fn a_python_that_is_not_python_is_named_as_such() {
    for (python, says) in [
        ("/bin/true", "did not answer (it printed nothing)"),
        ("/bin/false", "failed (exit status: 1) and said nothing"),
    ] {
        let out = memlens().args(["run", "--python", python, "-c", "pass"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{python}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("`{python}` is not a Python interpreter")), "{err}");
        assert!(err.contains(says), "{err}");
    }
}
