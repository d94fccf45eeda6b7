//! The viewer's static files, embedded at build time by build.rs from www/dist.

use anyhow::{bail, Result};

include!(concat!(env!("OUT_DIR"), "/viewer_assets.rs"));

/// The path of the recording beside the viewer's files, as `memlens view` serves it and a
/// `memlens report` folder holds it.
pub const RECORDING_PATH: &str = "recording.memlens";

/// The embedded viewer files, or an error saying how to build them in.
pub fn viewer_assets() -> Result<&'static [(&'static str, &'static [u8])]> {
    if !ASSETS.iter().any(|(name, _)| *name == "index.html") {
        bail!(
            "this memlens binary was built without the viewer; run `./dev build-viewer` and \
             rebuild memlens (`cargo build --release -p memlens`)"
        );
    }
    Ok(ASSETS)
}

/// The Content-Type for a file name.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
