//! Getting a recording's bytes into the app: from a `File` (picker or drop) or a URL, with
//! progress, then decoding. The state lives in a [`Loader`] of signals the page renders.

use std::sync::Arc;

use leptos::prelude::*;
use memlens_format::Recording;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::open::open_recording;
use crate::ByPtr;

/// A recording that is on screen.
pub struct Loaded {
    /// File name or URL it came from.
    pub name: String,
    /// Size of the file in bytes.
    pub size: u64,
    pub recording: Recording,
    /// Shown in a warning banner (truncated file, skipped newer parts, ...).
    pub warnings: Vec<String>,
}

/// What the loader is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Idle,
    /// Reading bytes; `total` when the size is known.
    Reading {
        name: String,
        done: u64,
        total: Option<u64>,
    },
    Decoding {
        name: String,
    },
}

/// The loader's signals.
#[derive(Clone, Copy)]
pub struct Loader {
    pub loaded: RwSignal<Option<ByPtr<Loaded>>>,
    pub progress: RwSignal<Progress>,
    /// The last load's error, shown in an error banner.
    pub error: RwSignal<Option<String>>,
}

impl Loader {
    pub fn new() -> Loader {
        Loader {
            loaded: RwSignal::new(None),
            progress: RwSignal::new(Progress::Idle),
            error: RwSignal::new(None),
        }
    }

    /// Loads a file chosen in the picker or dropped on the page.
    pub fn load_file(self, file: web_sys::File) {
        let name = file.name();
        let total = file.size() as u64;
        leptos::task::spawn_local(async move {
            self.start(&name);
            let result = read_stream(file.stream(), &name, Some(total), self.progress)
                .await
                .map_err(|e| format!("Could not read {name}: {}", js_error(&e)));
            self.finish(name, result).await;
        });
    }

    /// Opens bytes the page already holds (a report with the recording inlined).
    pub fn load_bytes(self, name: String, bytes: Vec<u8>) {
        leptos::task::spawn_local(async move {
            self.start(&name);
            self.finish(name, Ok(bytes)).await;
        });
    }

    /// Fetches a recording from `url` (absolute, or relative to the page).
    pub fn load_url(self, url: String) {
        leptos::task::spawn_local(async move {
            self.start(&url);
            let result = fetch_bytes(&url, self.progress).await;
            self.finish(url, result).await;
        });
    }

    fn start(self, name: &str) {
        self.error.set(None);
        self.progress.set(Progress::Reading { name: name.to_string(), done: 0, total: None });
    }

    async fn finish(self, name: String, bytes: Result<Vec<u8>, String>) {
        let result = match bytes {
            Ok(bytes) => {
                self.progress.set(Progress::Decoding { name: name.clone() });
                // Let the browser paint "Decoding..." before the (synchronous) decode.
                sleep_ms(30).await;
                let size = bytes.len() as u64;
                crate::timed("decoding", || open_recording(bytes)).map(|o| Loaded {
                    name: name.clone(),
                    size,
                    recording: o.recording,
                    warnings: o.warnings,
                })
            }
            Err(e) => Err(e),
        };
        self.progress.set(Progress::Idle);
        match result {
            Ok(loaded) => self.loaded.set(Some(ByPtr(Arc::new(loaded)))),
            Err(e) => {
                self.loaded.set(None);
                self.error.set(Some(if e.contains(&name) { e } else { format!("{name}: {e}") }));
            }
        }
    }
}

/// Reads a whole `ReadableStream` of bytes, reporting progress.
async fn read_stream(
    stream: web_sys::ReadableStream,
    name: &str,
    total: Option<u64>,
    progress: RwSignal<Progress>,
) -> Result<Vec<u8>, JsValue> {
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().dyn_into()?;
    let mut out = Vec::with_capacity(total.unwrap_or(0).min(1 << 30) as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if js_sys::Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(true) {
            break;
        }
        let value: js_sys::Uint8Array =
            js_sys::Reflect::get(&chunk, &"value".into())?.dyn_into()?;
        let start = out.len();
        out.resize(start + value.length() as usize, 0);
        value.copy_to(&mut out[start..]);
        progress.set(Progress::Reading { name: name.to_string(), done: out.len() as u64, total });
    }
    Ok(out)
}

async fn fetch_bytes(url: &str, progress: RwSignal<Progress>) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("Could not fetch {url}: network error ({})", js_error(&e)))?;
    let response: web_sys::Response =
        response.dyn_into().map_err(|_| format!("Could not fetch {url}: not a response"))?;
    if !response.ok() {
        let text = response.status_text();
        let text = if text.is_empty() { String::new() } else { format!(" {text}") };
        return Err(format!("Could not fetch {url}: HTTP {}{text}", response.status()));
    }
    let total =
        response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
    let body = response.body().ok_or_else(|| format!("Could not fetch {url}: empty response"))?;
    read_stream(body, url, total, progress)
        .await
        .map_err(|e| format!("Could not fetch {url}: the download failed ({})", js_error(&e)))
}

fn js_error(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

pub(crate) async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// How long a replay may hold the page before it lets the browser paint and handle input.
const SLICE_MS: f64 = 12.0;

/// Calls `feed` with each event chunk of `rec` in order until it returns `Break`, yielding to
/// the browser every [`SLICE_MS`] so the page stays responsive on big recordings. `None` as
/// soon as `wanted()` says the result is no longer needed.
pub(crate) async fn replay_sliced(
    rec: &memlens_format::Recording,
    mut feed: impl FnMut(&[memlens_format::Event]) -> std::ops::ControlFlow<()>,
    wanted: impl Fn() -> bool,
) -> Option<Result<(), memlens_format::Error>> {
    let mut events = Vec::new();
    let mut slice_start = js_sys::Date::now();
    for chunk in 0..rec.event_chunk_count() {
        events.clear();
        if let Err(e) = rec.decode_event_chunk(chunk, &mut events) {
            return Some(Err(e));
        }
        if feed(&events).is_break() {
            break;
        }
        if js_sys::Date::now() - slice_start > SLICE_MS {
            sleep_ms(0).await;
            if !wanted() {
                return None;
            }
            slice_start = js_sys::Date::now();
        }
    }
    Some(Ok(()))
}
