//! `memlens view`: serves the embedded viewer and one recording on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::assets::{content_type, viewer_assets};
use crate::load::open_recording;

/// Arguments of `memlens view`.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// The recording to show.
    pub file: PathBuf,
    /// Port to listen on (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Don't try to open a browser; just print the URL.
    #[arg(long)]
    pub no_browser: bool,
}

/// The path the recording is served under.
pub const RECORDING_PATH: &str = "recording.memlens";

pub fn run(args: ViewArgs) -> Result<i32> {
    let assets = viewer_assets()?;
    // Open it once here so a bad file is reported in the terminal, not only in the browser.
    open_recording(&args.file)?;
    let recording: Arc<Vec<u8>> = Arc::new(
        std::fs::read(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?,
    );
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/?url={RECORDING_PATH}");
    println!("memlens: serving {} at {url}", args.file.display());
    println!("memlens: press Ctrl-C to stop");
    if !args.no_browser {
        open_browser(&url);
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let recording = Arc::clone(&recording);
        std::thread::spawn(move || {
            let _ = serve(stream, assets, &recording);
        });
    }
    Ok(0)
}

/// Tries xdg-open when there is a display; silently does nothing otherwise.
fn open_browser(url: &str) {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if has_display {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Answers one HTTP/1.1 GET (connection closed after each response).
fn serve(stream: TcpStream, assets: &[(&str, &[u8])], recording: &[u8]) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let body: Option<(&[u8], &str)> = if path == RECORDING_PATH {
        Some((recording, "application/octet-stream"))
    } else {
        assets.iter().find(|(name, _)| *name == path).map(|(name, b)| (*b, content_type(name)))
    };
    let mut out = stream;
    match body {
        Some((bytes, ty)) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
                bytes.len()
            )?;
            out.write_all(bytes)?;
        }
        None => {
            let msg = b"not found";
            write!(out, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", msg.len())?;
            out.write_all(msg)?;
        }
    }
    out.flush()?;
    Ok(())
}
