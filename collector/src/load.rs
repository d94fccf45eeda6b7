//! Opening recordings from disk with errors a user can act on.

use std::path::Path;

use anyhow::{bail, Context, Result};
use memlens_analysis::format_bytes;
use memlens_format::Recording;

/// Reads and opens a recording. A truncated file opens with a warning on stderr naming how
/// much could be read; a file that is not a recording is an error that says so.
pub fn open_recording(path: &Path) -> Result<Recording> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = bytes.len();
    let rec =
        Recording::from_vec(bytes).with_context(|| format!("cannot open {}", path.display()))?;
    if let Some(t) = rec.truncation() {
        eprintln!(
            "memlens: warning: {} is incomplete: read the first {} of {} ({}); the rest is lost",
            path.display(),
            format_bytes(t.offset),
            format_bytes(len as u64),
            t.reason
        );
    }
    if rec.unknown_chunks() > 0 {
        eprintln!(
            "memlens: note: {} has {} parts written by a newer memlens that this version skips",
            path.display(),
            rec.unknown_chunks()
        );
    }
    Ok(rec)
}
