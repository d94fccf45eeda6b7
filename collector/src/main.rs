//! `memlens`: a memory profiler for Python.
//!
//! Thin binary over the recording format crate (`memlens-format`) and the tracer
//! library (`libmemlens_tracer.so`): each subcommand lives in its own `cmd_*.rs` with
//! an `Args` struct (clap) converted into options, and returns the process exit code;
//! errors are printed once, here.

// Every OS: reading recordings, and sampling a process tree's memory with sysinfo.
mod assets;
mod child_memory;
mod cmd_census;
mod cmd_check;
mod cmd_diff;
mod cmd_export;
mod cmd_report;
mod cmd_run;
mod cmd_spans;
mod cmd_summary;
mod cmd_view;
mod cmd_watch;
mod host;
mod json;
mod load;
mod mapped;
mod markdown;
mod report_model;
mod sampling;
mod term;

// Tracing Python (the LD_PRELOADed tracer, /proc, fork, SEQPACKET sockets): Linux only.
#[cfg(target_os = "linux")]
mod cmd_attach;
#[cfg(target_os = "linux")]
mod cmd_sink;
#[cfg(target_os = "linux")]
mod follow;
#[cfg(target_os = "linux")]
mod native_stacks;
#[cfg(target_os = "linux")]
mod process_watch;
#[cfg(target_os = "linux")]
mod python_env;
#[cfg(target_os = "linux")]
mod record_loop;
#[cfg(target_os = "linux")]
mod recorder;
#[cfg(target_os = "linux")]
mod run_cache;
#[cfg(target_os = "linux")]
mod run_recorder;
#[cfg(target_os = "linux")]
mod run_traced;
#[cfg(target_os = "linux")]
mod strays;
#[cfg(target_os = "linux")]
mod symbolizer;

// Elsewhere the tracing commands say they need Linux.
#[cfg(not(target_os = "linux"))]
mod linux_only;
#[cfg(not(target_os = "linux"))]
use linux_only::{cmd_attach, cmd_sink, run_traced};

use clap::{Parser, Subcommand};

/// A memory profiler for Python: where your program's memory goes, by line.
#[derive(Debug, Parser)]
#[command(
    name = "memlens",
    version,
    after_help = "EXAMPLES:
    memlens run script.py arg1 arg2      # record a run
    memlens run -m pytest tests/         # record a module run
    memlens run -o out.memlens -c 'x = [0] * 10**7'
    memlens summary out.memlens          # peak, leaks, top call sites
    memlens summary --json out.memlens   # the same as stable JSON
    memlens census out.memlens --growth start..exit   # which object types grew, and where
    memlens view out.memlens             # open the viewer on 127.0.0.1
    memlens report out.memlens --single-file -o report.html
    memlens spans out.memlens            # per test / cell / memlens.span() block
    memlens watch --pid 4242             # sample any process's memory, no tracing
    memlens attach 4242 --duration 60    # trace a running Python process, then detach
    memlens run --rss-only ./my-server   # the same for a program memlens starts
    memlens diff base.memlens head.memlens --format markdown --fail-if 'peak>+10%'
    memlens export out.memlens --format pprof -o heap.pb.gz   # for go tool pprof, Pyroscope, Parca
    memlens check out.memlens            # verify a recording's aggregates against its events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Python program under the tracer and write a recording.
    Run(cmd_run::RunArgs),
    /// Print what a recording says: peak, leaks, top call sites, threads.
    Summary(cmd_summary::SummaryArgs),
    /// Live objects by type at any census, and what grew between two (types and sites).
    Census(cmd_census::CensusArgs),
    /// Sample a running process's memory (and its children's) with no tracing.
    Watch(cmd_watch::WatchArgs),
    /// Memory used within spans (`with memlens.span(NAME):`, tests, notebook cells).
    Spans(cmd_spans::SpansArgs),
    /// Write a static report: the viewer and the recording, as a folder or one HTML file.
    Report(cmd_report::ReportArgs),
    /// Compare two recordings: peak, leaks and the call sites that changed (for CI gates).
    Diff(cmd_diff::DiffArgs),
    /// Write a recording's memory by stack for pprof, speedscope or flame graph tools.
    Export(cmd_export::ExportArgs),
    /// Check a recording: every chunk readable, its aggregates equal to what its events say.
    Check(cmd_check::CheckArgs),
    /// Serve the viewer and a recording on 127.0.0.1 and open a browser.
    View(cmd_view::ViewArgs),
    /// Trace a running Python process (by PID) until Ctrl-C, --duration or `memlens detach`.
    Attach(cmd_attach::AttachArgs),
    /// Stop the recording `memlens attach PID` is making (the program runs on).
    Detach(cmd_attach::DetachArgs),
    /// The recording process of `memlens.record()` (started by the Python package).
    #[command(hide = true)]
    Sink(cmd_sink::SinkArgs),
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == pipe
            || c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind)
                == pipe
    })
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) if args.rss_only => cmd_run::run_rss_only(args),
        Command::Run(args) => run_traced::run(args),
        Command::Attach(args) => cmd_attach::attach(args),
        Command::Detach(args) => cmd_attach::detach(args),
        Command::Summary(args) => cmd_summary::run(args),
        Command::Census(args) => cmd_census::run(args),
        Command::View(args) => cmd_view::run(args),
        Command::Diff(args) => cmd_diff::run(args),
        Command::Check(args) => cmd_check::run(args),
        Command::Export(args) => cmd_export::run(args),
        Command::Watch(args) => cmd_watch::run(args),
        Command::Report(args) => cmd_report::run(args),
        Command::Spans(args) => cmd_spans::run(args),
        Command::Sink(args) => cmd_sink::run(args),
    };
    let code = match result {
        Ok(code) => code,
        // `memlens summary x | head`: the reader is gone, which is not an error.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            // Errors can quote a recording's names (a census label, a marker): escaped.
            eprintln!("memlens: error: {}", term::escape(&format!("{e:#}")));
            2
        }
    };
    std::process::exit(code);
}
