//! Embeds the built viewer (www/dist, made by `./dev build-viewer`) into the binary, so
//! `memlens view` and `memlens report` work without the source tree.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut code = String::from("/// The viewer's files: (path relative to the site root, bytes).\npub static ASSETS: &[(&str, &[u8])] = &[\n");
    if let Ok(entries) = std::fs::read_dir(&dist) {
        let mut files: Vec<_> = entries.flatten().filter(|e| e.path().is_file()).collect();
        files.sort_by_key(|e| e.file_name());
        for e in files {
            let path = e.path();
            println!("cargo:rerun-if-changed={}", path.display());
            let name = e.file_name().to_string_lossy().into_owned();
            let _ =
                writeln!(code, "    ({name:?}, include_bytes!({:?})),", path.display().to_string());
        }
    }
    code.push_str("];\n");
    if !dist.join("index.html").is_file() {
        // `memlens view` and `memlens report` then say the viewer is missing; a release must
        // not ship like that unnoticed.
        println!(
            "cargo:warning=the viewer is not built ({} has no index.html): this memlens cannot \
             run `view` or `report`; run ./dev build-viewer and build again",
            dist.display()
        );
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("viewer_assets.rs");
    std::fs::write(out, code).unwrap();
}
