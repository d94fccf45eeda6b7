//! `memlens run`: runs a program and writes a recording. A Python program is traced
//! ([`crate::run_traced`], Linux only); with `--rss-only` any program is run untraced and its
//! memory sampled ([`crate::cmd_watch::run_rss_only`], every OS).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

/// Arguments of `memlens run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens run script.py --its-own-flag       # writes memlens-script-<pid>.memlens
    memlens run -o out.memlens -m http.server 8000
    memlens run --no-native -c 'x = [0] * 10**7'
    memlens run --aggregate server.py           # hours-long runs: aggregates only
    memlens run --sample 512KiB server.py       # sample allocations: estimates, lower cost
    memlens run --native-stacks numpy_job.py    # C/C++/Rust frames under the Python line
    memlens run --python ~/.venvs/app/bin/python app.py
    memlens run ~/.venvs/app/bin/python -m app    # the same, interpreter first")]
pub struct RunArgs {
    /// Output file [default: memlens-<script>-<pid>.memlens in the current directory].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Python interpreter to run (CPython 3.9 to 3.15) [default: the one a command's `#!`
    /// line names (not a .py file's), else the `python3` next to the memlens executable
    /// when there is one (memlens installed in a virtualenv), else `python3` from PATH].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Also trace native allocations (malloc, calloc, realloc, mmap, ...). On by default.
    #[arg(long, overrides_with = "no_native")]
    pub native: bool,
    /// Trace only Python's allocators.
    #[arg(long, overrides_with = "native")]
    pub no_native: bool,
    /// Milliseconds between samples of the process's resident memory.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Run a library module as a script, like `python -m`: the first argument is
    /// the module name.
    #[arg(short = 'm', conflicts_with = "code")]
    pub module: bool,
    /// Run a program passed as a string, like `python -c`: the first argument is
    /// the code.
    #[arg(short = 'c')]
    pub code: bool,
    /// Only sample the process's memory (RSS/VMS of it and its children): no tracing, works
    /// for any program, also on macOS and Windows. The arguments are the whole command, e.g.
    /// `--rss-only ./server -p 80`.
    #[arg(long)]
    pub rss_only: bool,
    /// Also take an object census (live objects by type) every SECONDS. Censuses are always
    /// taken at start, at each `memlens.mark()` and at exit; each holds the program for
    /// 70-250 ns per live gc-tracked object (bench/census_cost.py).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub census_interval: Option<f64>,
    /// Take no object censuses at all.
    #[arg(long, conflicts_with = "census_interval")]
    pub no_census: bool,
    /// A census of more live objects than this looks at an evenly spread sample of about
    /// this many, so that it holds the program no longer; its counts, sizes and sites are
    /// then estimates, and a marker on the timeline says so. Default: 1,000,000; 10,000
    /// with --sample, whose figures are estimates anyway.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub census_max_objects: Option<u64>,
    /// Keep only the aggregates (memory by stack per interval of time, the heap over time),
    /// not every allocation: for programs that run for hours, the file then grows with the
    /// number of call stacks, not of allocations. Views inside an interval are not exact.
    #[arg(long)]
    pub aggregate: bool,
    /// Sample allocations instead of recording every one: each thread records one
    /// allocation every BYTES allocated on average (Poisson byte sampling, as tcmalloc,
    /// jemalloc and Go do; 512KiB is Go's rate), each standing for the unsampled blocks
    /// around it, and
    /// every free of a sampled block. Sizes, peaks, leaks and flame graphs are then
    /// estimates, and every view says so. BYTES: 1 B to 1 GiB, a number of bytes or with a
    /// binary unit (B, KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", value_parser = crate::sampling::sample_arg, conflicts_with = "rss_only")]
    pub sample: Option<u64>,
    /// Record each allocation's native stack too: the C, C++ or Rust functions (file, line,
    /// inlined calls) between the Python line and the allocator, named after the run from
    /// the modules' debug information or symbol tables (else shown as `library+0xoffset`).
    #[arg(long, conflicts_with = "rss_only")]
    pub native_stacks: bool,
    /// Trace only the program's own process, not the Pythons it starts (by fork, spawn,
    /// forkserver or exec), which are otherwise recorded in the same file.
    #[arg(long)]
    pub no_follow: bool,
    /// Do not print the summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// The script (or with -m the module, with -c the code), then its arguments; or the
    /// command as typed without memlens, interpreter first (`python3 app.py`,
    /// `.venv/bin/python -m pkg`), which then runs that interpreter. A command whose `#!`
    /// line names a Python (`.venv/bin/mypy`) runs with that Python.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "SCRIPT [ARGS]")]
    pub args: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// `memlens run --rss-only`: runs the command untraced, sampling its memory (every OS);
/// returns the exit code memlens should exit with. (`memlens run` without it is
/// [`crate::run_traced`]'s.)
pub fn run_rss_only(args: RunArgs) -> Result<i32> {
    if args.module || args.code {
        bail!("--rss-only runs a whole command; -m and -c do not apply");
    }
    let interval = Duration::from_millis(args.interval);
    crate::cmd_watch::run_rss_only(&args.args, args.output, interval, args.quiet)
}
