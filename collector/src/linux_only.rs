//! The commands that need the tracer, where there is none: every OS but Linux.
//!
//! Tracing Python takes the LD_PRELOADed tracer library, `/proc`, fork and SEQPACKET
//! sockets, which memlens has only on Linux. On other OSes these modules stand in for the
//! Linux ones of the same names: the commands stay on the command line (a script written for
//! Linux is told why it cannot run, not "unrecognized subcommand") and fail at once with one
//! line saying so, which `main` prints before it exits with 2.

use std::ffi::OsString;

/// Whatever a command that needs the tracer was given: it is not looked at.
#[derive(Debug, clap::Args)]
pub struct AnyArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<OsString>,
}

/// Stands in for the Linux `run_traced`: `memlens run` without `--rss-only`.
pub mod run_traced {
    pub fn run(_: crate::cmd_run::RunArgs) -> anyhow::Result<i32> {
        anyhow::bail!(
            "memlens run traces Python only on Linux; use --rss-only here to sample the \
             memory of any program (memlens run --rss-only python script.py)"
        )
    }
}

/// Stands in for the Linux `cmd_attach`.
pub mod cmd_attach {
    pub use super::AnyArgs as AttachArgs;
    pub use super::AnyArgs as DetachArgs;

    pub fn attach(_: AttachArgs) -> anyhow::Result<i32> {
        anyhow::bail!("memlens attach traces Python only on Linux; use `memlens watch --pid` here")
    }

    pub fn detach(_: DetachArgs) -> anyhow::Result<i32> {
        anyhow::bail!("memlens detach ends `memlens attach`, which traces Python only on Linux")
    }
}

/// Stands in for the Linux `cmd_sink`, which `memlens.record()` starts.
pub mod cmd_sink {
    pub use super::AnyArgs as SinkArgs;

    pub fn run(_: SinkArgs) -> anyhow::Result<i32> {
        anyhow::bail!("memlens.record() traces Python only on Linux")
    }
}
