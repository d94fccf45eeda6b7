//! `memlens report`: a static copy of the viewer with a recording, for any static host, or one
//! self-contained HTML file that opens from disk.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::assets::viewer_assets;
use crate::cmd_view::RECORDING_PATH;
use crate::load::open_recording;

/// Arguments of `memlens report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens report out.memlens -o report/          # a folder for GitHub Pages, S3, CI artifacts
    memlens report out.memlens --single-file -o report.html
    memlens report --base main.memlens pr.memlens -o diff/   # opens in compare mode")]
pub struct ReportArgs {
    /// The recording to publish (the head, with --base).
    pub file: PathBuf,
    /// Publish a comparison: BASE (before) against FILE (after), opened in compare mode.
    #[arg(long, value_name = "BASE")]
    pub base: Option<PathBuf>,
    /// Output folder (or file with --single-file) [default: memlens-report/ or
    /// <recording>.html].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Write one self-contained HTML file (viewer and recording inlined) that opens from disk.
    #[arg(long)]
    pub single_file: bool,
}

/// File names of a comparison's recordings in a report folder.
pub const BASE_PATH: &str = "base.memlens";
pub const HEAD_PATH: &str = "head.memlens";

/// The page script that tells the viewer which recording to open when the URL names none.
fn boot_script(source: &str) -> String {
    format!("<script>window.memlensRecording = {source};</script>\n")
}

/// The page script that opens the viewer in compare mode on two recordings.
fn compare_script(base: &str, head: &str) -> String {
    format!("<script>window.memlensCompare = {{ base: {base}, head: {head} }};</script>\n")
}

/// A JS expression for `bytes` as a `Uint8Array`.
fn inline_bytes(bytes: &[u8]) -> String {
    format!("Uint8Array.from(atob(\"{}\"), (c) => c.charCodeAt(0))", base64(bytes))
}

/// Inserts `extra` right before `</head>`.
fn inject_head(html: &str, extra: &str) -> Result<String> {
    let at = html.find("</head>").context("the viewer's index.html has no </head>")?;
    Ok(format!("{}{extra}{}", &html[..at], &html[at..]))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The wasm-bindgen glue as a classic part of an inline module: its `export` statements
/// removed, so its top-level `__wbg_init` can be called from the same script.
fn inline_glue(js: &str) -> String {
    js.lines()
        .filter(|l| !(l.starts_with("export default") || l.starts_with("export {")))
        .map(|l| l.strip_prefix("export ").unwrap_or(l))
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
}

/// `s` as a JavaScript string literal that is safe inside a `<script>` element.
fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8 + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            // `</script>` inside the literal would end the element.
            '<' => out.push_str("\\x3c"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The source of the viewer's worker for a page with no files beside it, as a classic script
/// (Chromium starts no module worker from a `blob:` URL of a `file://` page): the glue
/// without its exports, then `memlens_worker.js` without its import of the glue.
fn worker_source(glue: &str, worker: &str) -> Result<String> {
    const IMPORT: &str = "import init, { worker_main } from \"./memlens_viewer.js\";";
    if !worker.contains(IMPORT) {
        bail!("the viewer's memlens_worker.js does not import the glue as expected");
    }
    // `import.meta` is a syntax error outside modules; the glue only uses it to find the wasm
    // file, which the worker is given instead.
    let glue = inline_glue(glue).replace("import.meta.url", "self.location.href");
    Ok(format!("{glue}\n{}", worker.replace(IMPORT, "const init = __wbg_init;")))
}

/// One HTML file with the stylesheet, the viewer's JS and wasm, and the recording(s) inlined
/// by `boot` (from [`boot_script`] or [`compare_script`]). Its worker is started from a Blob
/// of the same glue (`window.memlensWorker`) and given the page's compiled module.
pub fn single_file_html(assets: &[(&str, &[u8])], boot: &str) -> Result<String> {
    let get = |name: &str| {
        assets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
            .with_context(|| format!("the embedded viewer lacks {name}"))
    };
    let text =
        |name: &str| -> Result<String> { Ok(String::from_utf8_lossy(get(name)?).into_owned()) };
    let css = text("memlens.css")?;
    let glue = text("memlens_viewer.js")?;
    if !glue.contains("__wbg_init") {
        bail!("the viewer's JS glue has no __wbg_init (wasm-bindgen changed its output?)");
    }
    let wasm = get("memlens_viewer_bg.wasm")?;
    let worker = worker_source(&glue, &text("memlens_worker.js")?)?;
    let mut head = String::new();
    let _ = writeln!(head, "<style>\n{css}\n</style>");
    head.push_str(boot);
    let _ = writeln!(
        head,
        "<script type=\"module\">\n{}\nwindow.memlensWorker = () => new Worker(URL.createObjectURL(new Blob([{}], \
         {{ type: \"text/javascript\" }})));\nconst memlensWasmBytes = Uint8Array.from(atob(\"{}\"), (c) => c.charCodeAt(0));\n\
         __wbg_init({{ module_or_path: memlensWasmBytes }}).catch((err) => {{\n  const boot = document.getElementById(\"boot\");\n  \
         if (boot) {{ boot.classList.add(\"boot-failed\"); boot.textContent = \"The viewer failed to start: \" + err; }}\n}});\n</script>",
        inline_glue(&glue),
        js_string(&worker),
        base64(wasm)
    );
    // The page shell without its external stylesheet and module script.
    let index = text("index.html")?;
    let mut shell = String::new();
    let mut skipping = false;
    for line in index.lines() {
        let t = line.trim_start();
        if t.starts_with("<link rel=\"stylesheet\"") {
            continue;
        }
        if t.starts_with("<script type=\"module\"") {
            skipping = true;
        }
        if !skipping {
            shell.push_str(line);
            shell.push('\n');
        }
        if skipping && t.starts_with("</script>") {
            skipping = false;
        }
    }
    inject_head(&shell, &head)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn read_recording(path: &Path) -> Result<Vec<u8>> {
    open_recording(path)?;
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(args: ReportArgs) -> Result<i32> {
    let assets = viewer_assets()?;
    let recording = read_recording(&args.file)?;
    let base = args.base.as_deref().map(read_recording).transpose()?;
    if args.single_file {
        let out = args.output.unwrap_or_else(|| args.file.with_extension("html"));
        let boot = match &base {
            Some(base) => compare_script(&inline_bytes(base), &inline_bytes(&recording)),
            None => boot_script(&inline_bytes(&recording)),
        };
        write(&out, single_file_html(assets, &boot)?.as_bytes())?;
        eprintln!("memlens: wrote {} (open it in a browser; no server needed)", out.display());
        return Ok(0);
    }
    let dir = args.output.unwrap_or_else(|| PathBuf::from("memlens-report"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let boot = match &base {
        Some(_) => compare_script(&format!("{BASE_PATH:?}"), &format!("{HEAD_PATH:?}")),
        None => boot_script(&format!("{RECORDING_PATH:?}")),
    };
    for (name, bytes) in assets {
        if *name == "index.html" {
            let index = inject_head(&String::from_utf8_lossy(bytes), &boot)?;
            write(&dir.join(name), index.as_bytes())?;
        } else {
            write(&dir.join(name), bytes)?;
        }
    }
    match &base {
        Some(base) => {
            write(&dir.join(BASE_PATH), base)?;
            write(&dir.join(HEAD_PATH), &recording)?;
            eprintln!(
                "memlens: wrote {}/ (index.html compares {BASE_PATH} with {HEAD_PATH}; serve the \
                 folder from any static host)",
                dir.display()
            );
        }
        None => {
            write(&dir.join(RECORDING_PATH), &recording)?;
            eprintln!(
                "memlens: wrote {}/ (index.html opens {RECORDING_PATH}; serve the folder from \
                 any static host)",
                dir.display()
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (raw, enc) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn glue_exports_become_plain_declarations() {
        let js = "function a() {}\nexport function b() {}\nexport { initSync };\nexport default __wbg_init;\n";
        assert_eq!(inline_glue(js), "function a() {}\nfunction b() {}\n");
    }

    #[test]
    fn single_file_inlines_everything() {
        let index = "<html><head>\n<link rel=\"stylesheet\" href=\"memlens.css\">\n<script type=\"module\">\nimport init from \"./memlens_viewer.js\";\n</script>\n</head><body></body></html>";
        let assets: Vec<(&str, &[u8])> = vec![
            ("index.html", index.as_bytes()),
            ("memlens.css", b"body{}"),
            ("memlens_viewer.js", b"async function __wbg_init(m) {}\nexport default __wbg_init;"),
            ("memlens_viewer_bg.wasm", b"\0asm"),
            (
                "memlens_worker.js",
                b"import init, { worker_main } from \"./memlens_viewer.js\";\ninit().then(worker_main);",
            ),
        ];
        let html = single_file_html(&assets, &boot_script(&inline_bytes(b"REC"))).unwrap();
        assert!(!html.contains("memlens.css\""), "{html}");
        assert!(!html.contains("import init"), "{html}");
        assert!(html.contains("body{}"));
        assert!(html.contains(&base64(b"REC")));
        assert!(html.contains(&base64(b"\0asm")));
        assert!(html.find("window.memlensRecording").unwrap() < html.find("</head>").unwrap());
        assert!(html.contains("window.memlensWorker = () => new Worker("), "{html}");
        assert!(html.contains("const init = __wbg_init;\\ninit().then(worker_main);"), "{html}");
    }

    #[test]
    fn strings_cannot_end_the_script_element() {
        assert_eq!(js_string("a\"b\\c\nd</script>"), r#""a\"b\\c\nd\x3c/script>""#);
    }

    #[test]
    fn compare_script_names_both_sides() {
        let js = compare_script(&format!("{BASE_PATH:?}"), &format!("{HEAD_PATH:?}"));
        assert_eq!(
            js,
            "<script>window.memlensCompare = { base: \"base.memlens\", head: \"head.memlens\" };</script>\n"
        );
    }
}
