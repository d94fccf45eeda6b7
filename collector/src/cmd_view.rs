//! `memlens view`: serves the embedded viewer and one recording on 127.0.0.1.
//!
//! The recording is read from disk at each request, so a recording still being written is
//! served as it grows, and byte ranges are answered (206, 416), so the viewer's worker
//! downloads only the parts each view needs, whatever the file's size.
//!
//! Listening on loopback is not enough to keep the recording on this machine: a web page can
//! point a name it controls at 127.0.0.1 (DNS rebinding) and then read this server as its
//! own origin. Such requests carry the page's host name, so only requests whose `Host` names
//! this server by a loopback address and its port are answered ([`host_allowed`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::assets::{content_type, viewer_assets, RECORDING_PATH};
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

/// Opens `url` in the desktop's browser; silently does nothing where there is none.
fn open_browser(url: &str) {
    if let Some(opener) = url_opener() {
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// xdg-open, when there is a display.
#[cfg(not(any(target_os = "macos", windows)))]
fn url_opener() -> Option<&'static str> {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    has_display.then_some("xdg-open")
}

#[cfg(target_os = "macos")]
fn url_opener() -> Option<&'static str> {
    Some("open")
}

/// Explorer opens a URL in the default browser (with no shell to mind the URL's `&`).
#[cfg(windows)]
fn url_opener() -> Option<&'static str> {
    Some("explorer")
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
    host: Option<String>,
}

/// Whether a `Host` header names this server, listening on loopback port `port`: exactly
/// `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT` (the port may be left out only when it
/// is 80, as browsers do). Anything else is a name someone else controls (DNS rebinding) or
/// no name at all.
fn host_allowed(host: Option<&str>, port: u16) -> bool {
    let Some(host) = host.map(str::trim) else { return false };
    let (name, given_port) = match host.rsplit_once(':') {
        // `[::1]` alone has colons inside its brackets: no port.
        Some((name, p)) if !p.ends_with(']') => match p.parse::<u16>() {
            Ok(p) => (name, p),
            Err(_) => return false,
        },
        _ => (host, 80),
    };
    given_port == port
        && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]")
}

fn read_request(reader: &mut impl BufRead) -> Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_string();
    let target = words.next().unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path }.to_string();
    let (mut range, mut host) = (None, None);
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        if let Some((name, value)) = header.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            } else if name.eq_ignore_ascii_case("host") {
                host = Some(value.trim().to_string());
            }
        }
        header.clear();
    }
    Ok(Request { method, path, range, host })
}

/// Sends a short plain-text answer.
fn send_text(out: &mut TcpStream, status: &str, text: &str) -> Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    Ok(())
}

/// Answers one HTTP/1.1 request (connection closed after each response).
fn serve(stream: TcpStream, assets: &[(&str, &[u8])], recording: &Path) -> Result<()> {
    let port = stream.local_addr()?.port();
    let mut reader = BufReader::new(stream.try_clone()?);
    let req = read_request(&mut reader)?;
    let mut out = stream;
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    if !host_allowed(req.host.as_deref(), port) {
        let text = format!(
            "memlens view answers only requests for 127.0.0.1:{port}, localhost:{port} or \
             [::1]:{port}, not for {:?} (a page that renamed this server, as DNS rebinding \
             does, may not read the recording)\n",
            req.host.as_deref().unwrap_or("a request without a Host header")
        );
        send_text(&mut out, "403 Forbidden", &text)?;
    } else if req.path == RECORDING_PATH {
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
        send_text(&mut out, "404 Not Found", "not found")?;
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
            return send_text(out, "404 Not Found", &format!("cannot read {}: {e}", path.display()))
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
        let raw = "GET /recording.memlens?x=1 HTTP/1.1\r\nhost: a:1\r\nRANGE: bytes=5-9\r\n\r\n";
        let req = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", RECORDING_PATH));
        assert_eq!(req.range.as_deref(), Some("bytes=5-9"));
        assert_eq!(req.host.as_deref(), Some("a:1"));
        let req = read_request(&mut "HEAD / HTTP/1.1\r\n\r\n".as_bytes()).unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str(), req.range, req.host),
            ("HEAD", "index.html", None, None)
        );
    }

    #[test]
    fn only_loopback_names_of_this_port_are_answered() {
        for ok in
            ["127.0.0.1:8000", "localhost:8000", "LocalHost:8000", "[::1]:8000", " 127.0.0.1:8000"]
        {
            assert!(host_allowed(Some(ok), 8000), "{ok}");
        }
        for bad in [
            "evil.example:8000",
            "127.0.0.1.evil.example:8000",
            "localhost.evil.example:8000",
            "127.0.0.1:8001",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:8000:8000",
            "[::1]",
            "",
            "0.0.0.0:8000",
        ] {
            assert!(!host_allowed(Some(bad), 8000), "{bad}");
        }
        assert!(!host_allowed(None, 8000), "HTTP/1.1 requires a Host header");
        assert!(host_allowed(Some("127.0.0.1"), 80), "browsers leave out port 80");
        assert!(host_allowed(Some("[::1]"), 80));
    }
}
