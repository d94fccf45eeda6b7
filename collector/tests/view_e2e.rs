//! `memlens view` serves the embedded viewer and the recording on 127.0.0.1: the printed URL
//! works, the page, the worker and the recording come back, byte ranges are answered (206,
//! 416), the recording is read from disk at each request (it may still be growing), and
//! unknown paths are 404s. Requests that name the server by any other host (DNS rebinding)
//! are refused.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::{memlens, root};

/// Sends a request with extra header lines; returns the status, the headers and the body.
fn request(port: u16, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    raw_request(port, &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"))
}

/// Sends `head` (a request line and header lines) and reads the answer.
fn raw_request(port: u16, head: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "{head}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), raw[split + 4..].to_vec())
}

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = request(port, "GET", path, "");
    (status, body)
}

/// A recording of tests/scripts/big_alloc.py in a fresh folder.
fn record(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("memlens-view-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("big.memlens");
    let status = memlens()
        .args(["run", "-q", "-o"])
        .arg(&rec)
        .arg(root().join("tests/scripts/big_alloc.py"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (dir, rec)
}

/// `memlens view --no-browser REC` and the port it serves, or `None` (after saying why) when
/// memlens was built without the viewer.
fn start_view(rec: &Path) -> Option<(Child, u16)> {
    let mut child = memlens()
        .args(["view", "--no-browser"])
        .arg(rec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    if first.is_empty() {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let _ = child.wait();
        // A memlens built before `./dev build-viewer` says so instead of serving.
        assert!(err.contains("built without the viewer"), "{err}");
        eprintln!("skipped: memlens was built without the viewer");
        return None;
    }
    // Keep reading stdout open: memlens prints more, and a closed pipe would end it.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let url = first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).expect(&first);
    assert!(url.ends_with("/?url=recording.memlens"), "{url}");
    let port = url["http://127.0.0.1:".len()..].split('/').next().unwrap().parse().unwrap();
    Some((child, port))
}

#[test]
fn view_serves_the_viewer_and_the_recording() {
    let (dir, rec) = record("serve");
    let Some((mut child, port)) = start_view(&rec) else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let (code, page) = get(port, "/");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("memlens_viewer.js"));
    let (code, wasm) = get(port, "/memlens_viewer_bg.wasm");
    assert_eq!(code, 200);
    assert_eq!(&wasm[..4], b"\0asm");
    assert_eq!(get(port, "/memlens_worker.js").0, 200);
    let bytes = std::fs::read(&rec).unwrap();
    let (code, body) = get(port, "/recording.memlens");
    assert_eq!(code, 200);
    assert_eq!(body, bytes);
    // Ranges, as the viewer's worker asks for them.
    let size = bytes.len();
    let (code, head, body) = request(port, "GET", "/recording.memlens", "Range: bytes=16-99\r\n");
    assert_eq!(code, 206);
    assert!(head.contains(&format!("content-range: bytes 16-99/{size}")), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    assert_eq!(body, bytes[16..100]);
    let (code, _, body) = request(port, "GET", "/recording.memlens", "Range: bytes=-24\r\n");
    assert_eq!((code, body.as_slice()), (206, &bytes[size - 24..]));
    let (code, head, body) =
        request(port, "GET", "/recording.memlens", &format!("Range: bytes={size}-\r\n"));
    assert_eq!(code, 416);
    assert!(head.contains(&format!("content-range: bytes */{size}")), "{head}");
    assert!(body.is_empty());
    let (code, head, body) = request(port, "HEAD", "/recording.memlens", "");
    assert_eq!(code, 200);
    assert!(head.contains(&format!("content-length: {size}")), "{head}");
    assert!(body.is_empty());
    // The file as it is now: a recording being written grows between requests.
    std::fs::OpenOptions::new().append(true).open(&rec).unwrap().write_all(b"more").unwrap();
    let (code, head, body) =
        request(port, "GET", "/recording.memlens", &format!("Range: bytes={size}-\r\n"));
    assert_eq!((code, body.as_slice()), (206, &b"more"[..]));
    assert!(head.contains(&format!("content-range: bytes {size}-{}/{}", size + 3, size + 4)));
    assert_eq!(get(port, "/nope.txt").0, 404);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// DNS rebinding: a page on `evil.example` whose name now resolves to 127.0.0.1 sends
/// `Host: evil.example:PORT`. Only loopback names of the server's own port get an answer.
#[test]
fn view_refuses_other_host_names() {
    let (dir, rec) = record("host");
    let Some((mut child, port)) = start_view(&rec) else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let ask = |host: Option<&str>, path: &str| {
        let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
        raw_request(port, &format!("GET {path} HTTP/1.1\r\n{host}"))
    };
    for path in ["/recording.memlens", "/", "/memlens_viewer_bg.wasm"] {
        for host in [
            format!("evil.example:{port}"),
            format!("127.0.0.1.evil.example:{port}"),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1:{}", port.wrapping_add(1)),
            "127.0.0.1".to_string(),
        ] {
            let (code, _, body) = ask(Some(&host), path);
            assert_eq!(code, 403, "Host: {host} for {path}");
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("DNS rebinding"), "{body}");
            assert!(!body.contains("MLNS"), "no recording bytes in a refusal");
        }
        assert_eq!(ask(None, path).0, 403, "a request without a Host header for {path}");
    }
    let bytes = std::fs::read(&rec).unwrap();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]
    {
        let (code, _, body) = ask(Some(&host), "/recording.memlens");
        assert_eq!((code, body == bytes), (200, true), "Host: {host}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
