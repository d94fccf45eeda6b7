//! `memlens report`: a static copy of the viewer with a recording, for any static host, or one
//! self-contained HTML file that opens from disk.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::assets::{viewer_assets, RECORDING_PATH};
use crate::load::open_recording;

/// Arguments of `memlens report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens report out.memlens -o report/          # a folder for GitHub Pages, S3, CI artifacts
    memlens report out.memlens --single-file -o report.html
    memlens report --base main.memlens pr.memlens -o diff/   # opens in compare mode
    memlens report --as-example demo.memlens -o site/        # the viewer, offering demo.memlens")]
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
    /// Publish the viewer itself, opening on its empty page (drop or pick a recording), which
    /// offers FILE as an example to open (what `./dev site` publishes).
    #[arg(long, conflicts_with_all = ["base", "single_file", "notebook"])]
    pub as_example: bool,
    /// For notebooks (the `%%memlens` magic): write into the folder -o names `cell.html`, a
    /// page with the recording that takes the viewer from the page showing it, and
    /// `viewer.html`, the script that gives it the viewer; a notebook holds the viewer once.
    #[arg(long, hide = true, conflicts_with = "single_file")]
    pub notebook: bool,
}

/// File names of `--notebook`'s parts: the page of one cell, and the viewer for them all.
pub const NOTEBOOK_PAGE: &str = "cell.html";
pub const NOTEBOOK_HOST: &str = "viewer.html";

/// File name of the recording an `--as-example` folder offers.
pub const EXAMPLE_PATH: &str = "example.memlens";

/// File names of a comparison's recordings in a report folder.
pub const BASE_PATH: &str = "base.memlens";
pub const HEAD_PATH: &str = "head.memlens";

/// The page script that tells the viewer which recording to open when the URL names none.
fn boot_script(source: &str) -> String {
    format!("<script>window.memlensRecording = {source};</script>\n")
}

/// The page script that makes the viewer's empty page offer a recording as an example.
fn example_script(source: &str) -> String {
    format!("<script>window.memlensExample = {source};</script>\n")
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

/// The embedded viewer's files as a page without files beside it needs them.
struct Viewer {
    css: String,
    index: String,
    /// The wasm-bindgen glue (an ES module).
    glue: String,
    wasm: &'static [u8],
    /// The worker's script, classic, glue included ([`worker_source`]).
    worker: String,
}

impl Viewer {
    fn from_assets(assets: &[(&str, &'static [u8])]) -> Result<Viewer> {
        let get = |name: &str| {
            assets
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b)
                .with_context(|| format!("the embedded viewer lacks {name}"))
        };
        let text =
            |name: &str| -> Result<String> { Ok(String::from_utf8_lossy(get(name)?).into_owned()) };
        let glue = text("memlens_viewer.js")?;
        if !glue.contains("__wbg_init") {
            bail!("the viewer's JS glue has no __wbg_init (wasm-bindgen changed its output?)");
        }
        let worker = worker_source(&glue, &text("memlens_worker.js")?)?;
        Ok(Viewer {
            css: text("memlens.css")?,
            index: text("index.html")?,
            glue,
            wasm: get("memlens_viewer_bg.wasm")?,
            worker,
        })
    }

    /// Names this build of the viewer (FNV-1a of its glue and wasm), so a page holding
    /// viewers of several memlens versions gives each page the one it was made for.
    fn id(&self) -> String {
        let hash =
            self.glue.as_bytes().iter().chain(self.wasm).fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        format!("{hash:016x}")
    }

    /// The page shell (`index.html`) with `head` (stylesheet, boot and start scripts) instead
    /// of its external stylesheet and module script.
    fn page(&self, boot: &str, start: &str) -> Result<String> {
        let mut head = String::new();
        let _ = writeln!(head, "<style>\n{}\n</style>", self.css);
        head.push_str(boot);
        head.push_str(start);
        let mut shell = String::new();
        let mut skipping = false;
        for line in self.index.lines() {
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
}

/// The end of a start script: what the page says when the viewer cannot start.
const START_FAILED: &str = "(err) => {\n  const boot = document.getElementById(\"boot\");\n  \
    if (boot) { boot.classList.add(\"boot-failed\"); boot.textContent = \"The viewer failed to start: \" + err; }\n}";

/// One HTML file with the stylesheet, the viewer's JS and wasm, and the recording(s) inlined
/// by `boot` (from [`boot_script`] or [`compare_script`]). Its worker is started from a Blob
/// of the same glue (`window.memlensWorker`) and given the page's compiled module.
pub fn single_file_html(assets: &[(&str, &'static [u8])], boot: &str) -> Result<String> {
    let v = Viewer::from_assets(assets)?;
    let start = format!(
        "<script type=\"module\">\n{}\nwindow.memlensWorker = () => new Worker(URL.createObjectURL(new Blob([{}], \
         {{ type: \"text/javascript\" }})));\nconst memlensWasmBytes = Uint8Array.from(atob(\"{}\"), (c) => c.charCodeAt(0));\n\
         __wbg_init({{ module_or_path: memlensWasmBytes }}).catch({START_FAILED});\n</script>\n",
        inline_glue(&v.glue),
        js_string(&v.worker),
        base64(v.wasm)
    );
    v.page(boot, &start)
}

/// A notebook's two parts: a page with the recording(s) of `boot` that takes the viewer from
/// the page showing it (a notebook, which shows each cell's page in a sandboxed `srcdoc`
/// frame), and the script that gives the viewer to every such page, which the notebook holds
/// once. The page asks by `postMessage` its parent, the top page and their frames (front-ends
/// that put each output in a frame of its own), until one answers.
fn notebook_parts(assets: &[(&str, &'static [u8])], boot: &str) -> Result<(String, String)> {
    let v = Viewer::from_assets(assets)?;
    let id = js_string(&v.id());
    let start = format!(
        "<script type=\"module\">\nconst id = {id};\n{NOTEBOOK_PAGE_JS}\n\
         window.memlensWorker = () => new Worker(URL.createObjectURL(new Blob([viewer.worker], {{ type: \"text/javascript\" }})));\n\
         const glue = await import(URL.createObjectURL(new Blob([viewer.glue], {{ type: \"text/javascript\" }})));\n\
         const bytes = Uint8Array.from(atob(viewer.wasm), (c) => c.charCodeAt(0));\n\
         glue.default({{ module_or_path: bytes }}).catch({START_FAILED});\n</script>\n"
    );
    let page = v.page(boot, &start)?;
    let host = format!(
        "<script>\n(() => {{\nconst id = {id};\nconst viewer = {{ glue: {}, worker: {}, wasm: \"{}\" }};\n{NOTEBOOK_HOST_JS}\n}})();\n</script>\n",
        js_string(&v.glue),
        js_string(&v.worker),
        base64(v.wasm)
    );
    Ok((page, host))
}

/// The notebook page's request for its viewer: defines `viewer` ({glue, worker, wasm}) once
/// a page holding it answers; says what is missing when none does.
const NOTEBOOK_PAGE_JS: &str = r#"const viewer = await new Promise((resolve) => {
  addEventListener("message", (e) => {
    if (e.data && e.data.memlensViewer === id) resolve(e.data);
  });
  const ask = () => {
    const seen = new Set();
    const visit = (w, depth) => {
      if (!w || seen.has(w)) return;
      seen.add(w);
      try { w.postMessage({ memlensWantViewer: id }, "*"); } catch {}
      if (depth < 3) for (let i = 0; i < w.length; i++) visit(w[i], depth + 1);
    };
    visit(parent, 0);
    visit(top, 0);
  };
  ask();
  let tries = 0;
  const again = setInterval(() => {
    if (++tries === 20) {
      const boot = document.getElementById("boot");
      if (boot) boot.textContent = "Waiting for the memlens viewer: it is kept once per notebook, in the output of the first %%memlens cell run since the kernel started. If that output is gone, run that cell again, or restart the kernel and run any %%memlens cell (or use %%memlens --standalone).";
    }
    ask();
  }, 500);
  addEventListener("message", (e) => { if (e.data && e.data.memlensViewer === id) clearInterval(again); });
});"#;

/// The notebook's viewer script: answers every page's request for the viewer it holds.
const NOTEBOOK_HOST_JS: &str = r#"const viewers = (window.memlensViewers = window.memlensViewers || {});
viewers[id] = viewer;
if (!window.memlensViewerHost) {
  window.memlensViewerHost = true;
  addEventListener("message", (e) => {
    const want = e.data && e.data.memlensWantViewer;
    if (want && viewers[want] && e.source) e.source.postMessage({ memlensViewer: want, ...viewers[want] }, "*");
  });
}"#;

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
    let inlined = || match &base {
        Some(base) => compare_script(&inline_bytes(base), &inline_bytes(&recording)),
        None => boot_script(&inline_bytes(&recording)),
    };
    if args.single_file {
        let out = args.output.unwrap_or_else(|| args.file.with_extension("html"));
        write(&out, single_file_html(assets, &inlined())?.as_bytes())?;
        eprintln!("memlens: wrote {} (open it in a browser; no server needed)", out.display());
        return Ok(0);
    }
    if args.notebook {
        let dir = args.output.context("--notebook needs -o FOLDER")?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let (page, host) = notebook_parts(assets, &inlined())?;
        write(&dir.join(NOTEBOOK_PAGE), page.as_bytes())?;
        write(&dir.join(NOTEBOOK_HOST), host.as_bytes())?;
        return Ok(0);
    }
    let dir = args.output.unwrap_or_else(|| PathBuf::from("memlens-report"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let boot = match &base {
        Some(_) => compare_script(&format!("{BASE_PATH:?}"), &format!("{HEAD_PATH:?}")),
        None if args.as_example => example_script(&format!("{EXAMPLE_PATH:?}")),
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
        None if args.as_example => {
            write(&dir.join(EXAMPLE_PATH), &recording)?;
            eprintln!(
                "memlens: wrote {}/ (the viewer, whose empty page offers {EXAMPLE_PATH}; serve \
                 the folder from any static host)",
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

    /// A viewer's files as `./dev build-viewer` makes them, in miniature, with `wasm`.
    fn fake_assets(wasm: &'static [u8]) -> Vec<(&'static str, &'static [u8])> {
        let index = "<html><head>\n<link rel=\"stylesheet\" href=\"memlens.css\">\n<script type=\"module\">\nimport init from \"./memlens_viewer.js\";\n</script>\n</head><body></body></html>";
        vec![
            ("index.html", index.as_bytes()),
            ("memlens.css", b"body{}"),
            ("memlens_viewer.js", b"async function __wbg_init(m) {}\nexport default __wbg_init;"),
            ("memlens_viewer_bg.wasm", wasm),
            (
                "memlens_worker.js",
                b"import init, { worker_main } from \"./memlens_viewer.js\";\ninit().then(worker_main);",
            ),
        ]
    }

    #[test]
    fn single_file_inlines_everything() {
        let assets = fake_assets(b"\0asm");
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
    fn notebook_pages_take_the_viewer_from_the_notebook() {
        let assets = fake_assets(b"\0asm-NOTEBOOK");
        let (page, host) = notebook_parts(&assets, &boot_script(&inline_bytes(b"REC"))).unwrap();
        let wasm = base64(b"\0asm-NOTEBOOK");
        assert!(page.contains(&base64(b"REC")) && page.contains("body{}"), "{page}");
        assert!(!page.contains(&wasm), "the page does not carry the viewer: {page}");
        assert!(host.contains(&wasm) && host.contains("export default __wbg_init"), "{host}");
        let id = Viewer::from_assets(&assets).unwrap().id();
        assert!(page.contains(&format!("const id = \"{id}\";")), "{page}");
        assert!(host.contains(&format!("const id = \"{id}\";")), "{host}");
        assert!(host.starts_with("<script>") && !host.contains("<html"), "{host}");
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
