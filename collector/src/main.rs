//! `memlens`: a memory profiler for Python.
//!
//! Thin binary over the recording format crate (`memlens-format`) and the tracer
//! library (`libmemlens_tracer.so`): each subcommand lives in its own `cmd_*.rs` with
//! an `Args` struct (clap) converted into options, and returns the process exit code;
//! errors are printed once, here.

mod child_memory;
mod cmd_run;
mod python_env;
mod recorder;

use clap::{Parser, Subcommand};

/// A memory profiler for Python: where your program's memory goes, by line.
#[derive(Debug, Parser)]
#[command(name = "memlens", version, after_help = "EXAMPLES:
    memlens run script.py arg1 arg2      # record a run
    memlens run -m pytest tests/         # record a module run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Python program under the tracer and write a recording.
    Run(cmd_run::RunArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run::run(args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("memlens: error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
