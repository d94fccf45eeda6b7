//! memlens-viewer: the browser UI for `.memlens` recordings.
//!
//! A Leptos 0.8 client-side-rendered app compiled to `wasm32-unknown-unknown` and bundled by
//! `./dev build-viewer` into `www/dist/`. It reads a recording from a file picker, a drop
//! anywhere on the page, or `?url=...`, decodes it with `memlens-format` and draws a memory
//! timeline and a flame graph on canvases.
//!
//! Design constraints:
//! - no `unsafe`; all decoding and analysis lives in `memlens-format` (plain Rust, tested
//!   natively), components only wire signals to it;
//! - it also compiles natively so `cargo clippy --workspace` and the pure-logic unit tests run
//!   without a browser.
//!
//! Example (from the repository root):
//!
//! ```text
//! ./dev build-viewer && python3 -m http.server -d www/dist   # then open http://localhost:8000/
//! ```
#![forbid(unsafe_code)]

mod chart_canvas;
mod flame_graph;
mod flame_search;
mod header;
mod load;
mod open;
mod theme;
mod timeline;
mod units;
mod url_state;
mod use_view_state;

use std::sync::Arc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::flame_graph::FlameGraph;
use crate::header::Header;
use crate::load::{Loaded, Loader, Progress};
use crate::timeline::{Timeline, TimelineData};
use crate::url_state::FlameMode;

/// An `Arc` compared by pointer, so memos over big immutable data compare in O(1).
pub struct ByPtr<T>(pub Arc<T>);

impl<T> ByPtr<T> {
    pub fn new(value: T) -> Self {
        ByPtr(Arc::new(value))
    }
}

impl<T> Clone for ByPtr<T> {
    fn clone(&self) -> Self {
        ByPtr(self.0.clone())
    }
}

impl<T> PartialEq for ByPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Runs `f`, logging how long it took to the browser console (for profiling big files).
pub(crate) fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t0 = js_sys::Date::now();
    let out = f();
    leptos::logging::log!("memlens: {what} took {:.0} ms", js_sys::Date::now() - t0);
    out
}

/// A recording the hosting page provides.
enum Embedded {
    Url(String),
    Bytes(Vec<u8>),
}

/// `window.memlensRecording`: a URL string, or the recording's bytes as a `Uint8Array`.
fn embedded_recording() -> Option<Embedded> {
    let window: wasm_bindgen::JsValue = web_sys::window()?.into();
    let value = js_sys::Reflect::get(&window, &"memlensRecording".into()).ok()?;
    if let Some(url) = value.as_string() {
        return Some(Embedded::Url(url));
    }
    let bytes = value.dyn_into::<js_sys::Uint8Array>().ok()?;
    Some(Embedded::Bytes(bytes.to_vec()))
}

/// `?url=...` from the page address, if any.
fn url_param() -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()?.get("url").filter(|u| !u.is_empty())
}

#[component]
fn OpenButton(loader: Loader) -> impl IntoView {
    view! {
        <label class="button">
            "Open recording…"
            <input
                type="file"
                id="file-input"
                accept=".memlens,application/octet-stream"
                on:change=move |ev| {
                    let input: web_sys::HtmlInputElement = event_target(&ev);
                    if let Some(file) = input.files().and_then(|l| l.get(0)) {
                        loader.load_file(file);
                    }
                    // Choosing the same file again should load it again.
                    input.set_value("");
                }
            />
        </label>
    }
}

#[component]
fn ProgressBar(progress: Progress) -> impl IntoView {
    let (label, value) = match &progress {
        Progress::Idle => (String::new(), None),
        Progress::Reading { name, done, total: Some(total) } if *total > 0 => (
            format!("Reading {name}: {} of {}", units::bytes(*done), units::bytes(*total)),
            Some(*done as f64 / *total as f64),
        ),
        Progress::Reading { name, done, .. } => {
            (format!("Reading {name}: {}", units::bytes(*done)), None)
        }
        Progress::Decoding { name } => (format!("Decoding and analysing {name}…"), None),
    };
    view! {
        <div class="progress" id="progress" role="status">
            {match value {
                Some(v) => view! { <progress max="1" value=v></progress> }.into_any(),
                None => view! { <progress></progress> }.into_any(),
            }}
            <span>{label}</span>
        </div>
    }
}

#[component]
fn RecordingView(loaded: ByPtr<Loaded>) -> impl IntoView {
    let state = use_view_state::use_view_state();
    let timeline = timed("timeline", || TimelineData::compute(&loaded.0)).map(ByPtr::new);
    let range = Signal::derive(move || state.with(|s| s.range));
    let on_select = Callback::new(move |r: Option<(u64, u64)>| {
        state.update(|s| {
            s.range = r;
            if r.is_some() {
                s.mode = FlameMode::Range;
            } else if s.mode == FlameMode::Range {
                s.mode = FlameMode::AtPeak;
            }
        })
    });
    let warnings = loaded.0.warnings.clone();
    view! {
        {warnings
            .into_iter()
            .map(|w| {
                view! {
                    <div class="banner banner-warning" role="alert" id="warning-banner">
                        <strong>"Warning:"</strong>
                        {w}
                    </div>
                }
            })
            .collect_view()}
        <Header recording=loaded.clone() />
        {match timeline {
            Ok(data) => view! { <Timeline data=data range=range on_select=on_select /> }.into_any(),
            Err(e) => view! { <div class="banner banner-error" role="alert">{e}</div> }.into_any(),
        }}
        <FlameGraph loaded=loaded state=state />
    }
}

#[component]
fn EmptyState(loader: Loader) -> impl IntoView {
    view! {
        <section class="empty" id="empty-state">
            <h2>"Open a memlens recording"</h2>
            <p>"Drop a " <code>".memlens"</code> " file anywhere on this page, or"</p>
            <p><OpenButton loader=loader /></p>
            <p>
                "Record one with " <code>"memlens run -o out.memlens your_script.py"</code>
                ", then " <code>"memlens view out.memlens"</code> "."
            </p>
        </section>
    }
}

#[component]
fn App() -> impl IntoView {
    let loader = Loader::new();
    let (dragging, set_dragging) = signal(false);

    // Drag and drop anywhere on the page.
    let _ = window_event_listener(leptos::ev::dragover, move |ev| {
        ev.prevent_default();
        set_dragging.set(true);
    });
    let _ = window_event_listener(leptos::ev::dragleave, move |ev| {
        // Leaving the window (not just moving between elements) has no related target.
        if ev.related_target().is_none() {
            set_dragging.set(false);
        }
    });
    let _ = window_event_listener(leptos::ev::drop, move |ev| {
        ev.prevent_default();
        set_dragging.set(false);
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|l| l.get(0)) {
            loader.load_file(file);
        }
    });

    // `?url=` wins; otherwise a page that embeds the viewer (`memlens report`) may name or
    // carry its recording in `window.memlensRecording`.
    match (url_param(), embedded_recording()) {
        (Some(url), _) => loader.load_url(url),
        (None, Some(Embedded::Url(url))) => loader.load_url(url),
        (None, Some(Embedded::Bytes(bytes))) => loader.load_bytes("report".into(), bytes),
        (None, None) => {}
    }

    let file_name = move || {
        loader
            .loaded
            .with(|l| l.as_ref().map(|l| format!("{} · {}", l.0.name, units::bytes(l.0.size))))
    };
    view! {
        <div class="app">
            <header class="topbar">
                <span class="brand">"mem" <span>"lens"</span></span>
                <span class="file-name" id="file-name">{file_name}</span>
                <span class="spacer"></span>
                <OpenButton loader=loader />
            </header>
            {move || {
                loader.error.get().map(|e| {
                    view! {
                        <div class="banner banner-error" role="alert" id="error-banner">
                            <strong>"Error:"</strong>
                            {e}
                        </div>
                    }
                })
            }}
            {move || match loader.progress.get() {
                Progress::Idle => None,
                p => Some(view! { <ProgressBar progress=p /> }),
            }}
            {move || match loader.loaded.get() {
                Some(loaded) => view! { <RecordingView loaded=loaded /> }.into_any(),
                None => view! { <EmptyState loader=loader /> }.into_any(),
            }}
            <Show when=move || dragging.get()>
                <div class="drop-overlay">"Drop the recording to open it"</div>
            </Show>
        </div>
    }
}

/// Mount the app into `<body>`; called from `main`.
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
