//! `memlens view` serves the embedded viewer and the recording on 127.0.0.1: the printed URL
//! works, the page and the recording come back, and unknown paths are 404s.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::{memlens, root};

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

#[test]
fn view_serves_the_viewer_and_the_recording() {
    let dir = std::env::temp_dir().join(format!("memlens-view-{}", std::process::id()));
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
    let mut child = memlens()
        .args(["view", "--no-browser"])
        .arg(&rec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep reading stdout open: memlens prints more, and a closed pipe would end it.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    if first.is_empty() {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        // A memlens built before `./dev build-viewer` says so instead of serving.
        assert!(err.contains("built without the viewer"), "{err}");
        eprintln!("skipped: memlens was built without the viewer");
        return;
    }
    let url = first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).expect(&first);
    assert!(url.ends_with("/?url=recording.memlens"), "{url}");
    let port: u16 = url["http://127.0.0.1:".len()..].split('/').next().unwrap().parse().unwrap();
    let (code, page) = get(port, "/");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("memlens_viewer.js"));
    let (code, wasm) = get(port, "/memlens_viewer_bg.wasm");
    assert_eq!(code, 200);
    assert_eq!(&wasm[..4], b"\0asm");
    let (code, body) = get(port, "/recording.memlens");
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(&rec).unwrap());
    assert_eq!(get(port, "/nope.txt").0, 404);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
