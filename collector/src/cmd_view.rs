//! `memlens view`: serves the embedded viewer and one recording on 127.0.0.1.
//!
//! The recording is read from disk at each request, so a recording still being written is
//! served as it grows, and byte ranges are answered (206, 416), so the viewer's worker
//! downloads only the parts each view needs, whatever the file's size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::assets::{content_type, viewer_assets};
use crate::load::open_recording;

/// Arguments of `memlens view`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens view out.memlens                 # serve the viewer and out.memlens, open a browser
    memlens view --no-browser --port 8000 out.memlens
    memlens run -o live.memlens app.py &     # then, while it runs:
    memlens view --follow live.memlens       # the views grow with the recording until it ends

A recording that has no trailer yet (still being written, or its recorder was killed) is
always followed: the viewer polls it every second and updates its views as it grows, until
the recording is closed. --follow also waits for FILE to appear and hold its first chunk, so
it can be started together with `memlens run`.")]
pub struct ViewArgs {
    /// The recording to show.
    pub file: PathBuf,
    /// Port to listen on (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Don't try to open a browser; just print the URL.
    #[arg(long)]
    pub no_browser: bool,
    /// Follow a recording being written: wait for it to appear, then show it as it grows.
    #[arg(long)]
    pub follow: bool,
}

/// The path the recording is served under.
pub const RECORDING_PATH: &str = "recording.memlens";

/// How long `--follow` waits for the recording to appear.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: ViewArgs) -> Result<i32> {
    let assets = viewer_assets()?;
    // Open it once here so a bad file is reported in the terminal, not only in the browser.
    let rec = if args.follow { wait_for(&args.file)? } else { open_recording(&args.file)? };
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let follow = if args.follow { "&follow=1" } else { "" };
    let url = format!("http://127.0.0.1:{port}/?url={RECORDING_PATH}{follow}");
    println!("memlens: serving {} at {url}", args.file.display());
    if !rec.has_trailer() {
        println!(
            "memlens: {} has no trailer yet (it is being written, or its recorder was killed): \
             the viewer follows it as it grows",
            args.file.display()
        );
    }
    println!("memlens: press Ctrl-C to stop");
    if !args.no_browser {
        open_browser(&url);
    }
    let file = std::sync::Arc::new(args.file);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let file = std::sync::Arc::clone(&file);
        std::thread::spawn(move || {
            let _ = serve(stream, assets, &file);
        });
    }
    Ok(0)
}

/// Waits until `path` exists and opens as a recording (`memlens run` writes its first chunk
/// as it starts).
fn wait_for(path: &Path) -> Result<memlens_format::Recording> {
    let start = Instant::now();
    let mut said = false;
    loop {
        match open_recording(path) {
            Ok(rec) => return Ok(rec),
            Err(e) if start.elapsed() > APPEAR_TIMEOUT => {
                return Err(e.context(format!("waited {} s for it", APPEAR_TIMEOUT.as_secs())))
            }
            Err(_) => {
                if !said {
                    eprintln!("memlens: waiting for {} to appear", path.display());
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
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

/// What a `Range` header asks of a file of some size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// No range (or one this server does not do, such as several ranges): the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range that starts past the end.
    Unsatisfiable,
}

/// Parses `bytes=A-B`, `bytes=A-` and `bytes=-N` (RFC 9110 14.1.2) against `size`.
fn parse_range(header: Option<&str>, size: u64) -> Want {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Want::Whole;
    };
    let Some((a, b)) = spec.split_once('-') else { return Want::Whole };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) if b >= a => (a, b.min(size.saturating_sub(1))),
        (Ok(a), Err(_)) if b.is_empty() => (a, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Want::Whole,
    };
    if parsed.0 >= size {
        Want::Unsatisfiable
    } else {
        Want::Part(parsed.0, parsed.1)
    }
}

/// A request line and the headers we use.
struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

fn read_request(reader: &mut impl BufRead) -> Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_string();
    let target = words.next().unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path }.to_string();
    let mut range = None;
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
        header.clear();
    }
    Ok(Request { method, path, range })
}

/// Answers one HTTP/1.1 request (connection closed after each response).
fn serve(stream: TcpStream, assets: &[(&str, &[u8])], recording: &Path) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let req = read_request(&mut reader)?;
    let mut out = stream;
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    if req.path == RECORDING_PATH {
        serve_file(&mut out, recording, req.range.as_deref(), head_only)?;
    } else if let Some((name, bytes)) = assets.iter().find(|(name, _)| *name == req.path) {
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
            content_type(name),
            bytes.len()
        )?;
        if !head_only {
            out.write_all(bytes)?;
        }
    } else {
        let msg = b"not found";
        write!(out, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", msg.len())?;
        out.write_all(msg)?;
    }
    out.flush()?;
    Ok(())
}

/// Sends the recording as it is on disk now, or the part of it `range` asks for.
fn serve_file(
    out: &mut TcpStream,
    path: &Path,
    range: Option<&str>,
    head_only: bool,
) -> Result<()> {
    let common = "Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\nConnection: close";
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("cannot read {}: {e}", path.display());
            write!(out, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}", msg.len())?;
            return Ok(());
        }
    };
    let size = file.metadata()?.len();
    let (start, len) = match parse_range(range, size) {
        Want::Whole => {
            write!(out, "HTTP/1.1 200 OK\r\n{common}\r\nContent-Length: {size}\r\n\r\n")?;
            (0, size)
        }
        Want::Part(a, b) => {
            let len = b - a + 1;
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\n{common}\r\nContent-Range: bytes {a}-{b}/{size}\r\nContent-Length: {len}\r\n\r\n"
            )?;
            (a, len)
        }
        Want::Unsatisfiable => {
            write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\n{common}\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n\r\n"
            )?;
            return Ok(());
        }
    };
    if !head_only {
        file.seek(SeekFrom::Start(start))?;
        // The file may have grown since its size was taken: send exactly what was promised.
        std::io::copy(&mut file.take(len), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_browsers_send_them() {
        assert_eq!(parse_range(None, 100), Want::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Want::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Want::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=90-500"), 100), Want::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Want::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Want::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Want::Unsatisfiable);
        // Not ours to answer: the whole file.
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Want::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,5-9"), 100), Want::Whole);
        assert_eq!(parse_range(Some("items=0-9"), 100), Want::Whole);
    }

    #[test]
    fn requests_name_their_path_and_range() {
        let raw = "GET /recording.memlens?x=1 HTTP/1.1\r\nHost: a\r\nRANGE: bytes=5-9\r\n\r\n";
        let req = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", RECORDING_PATH));
        assert_eq!(req.range.as_deref(), Some("bytes=5-9"));
        let req = read_request(&mut "HEAD / HTTP/1.1\r\n\r\n".as_bytes()).unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str(), req.range),
            ("HEAD", "index.html", None)
        );
    }
}
