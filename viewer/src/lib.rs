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

mod call_site_table;
mod chart_canvas;
mod compare;
mod compare_timeline;
mod delta_table;
mod diff_flame;
mod flame_graph;
mod flame_search;
mod header;
mod insight_links;
mod insights_panel;
mod load;
mod objects_panel;
mod open;
mod theme;
mod timeline;
mod toggle;
mod units;
mod url_state;
mod use_view_state;

use std::sync::Arc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::compare::{CompareSlots, CompareView};
use crate::flame_graph::FlameGraph;
use crate::header::Header;
use crate::insights_panel::{reveal, InsightsPanel};
use crate::load::{Loaded, Loader, Progress};
use crate::objects_panel::{census_index, ObjectsPanel};
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

/// A timed step: logged to the browser console and recorded as a User Timing measure
/// `memlens:<what>` (for profiling big files and for `bench/viewer_bench.mjs`).
pub(crate) struct Step {
    what: String,
    t0: f64,
}

impl Step {
    pub(crate) fn start(what: &str) -> Step {
        if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let _ = p.mark(&format!("memlens:start:{what}"));
        }
        Step { what: what.to_owned(), t0: js_sys::Date::now() }
    }

    pub(crate) fn finish(self) {
        let what = &self.what;
        leptos::logging::log!("memlens: {what} took {:.0} ms", js_sys::Date::now() - self.t0);
        if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let start = format!("memlens:start:{what}");
            let _ = p.measure_with_start_mark(&format!("memlens:{what}"), &start);
            p.clear_marks_with_mark_name(&start);
        }
    }
}

/// Runs `f` as a [`Step`].
pub(crate) fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let step = Step::start(what);
    let out = f();
    step.finish();
    out
}

/// `window.memlensExample`: an example recording a published site offers on its empty page.
fn example_url() -> Option<String> {
    let window: wasm_bindgen::JsValue = web_sys::window()?.into();
    js_sys::Reflect::get(&window, &"memlensExample".into()).ok()?.as_string()
}

/// A recording to open: a URL or bytes the page already holds.
enum Source {
    Url(String),
    Bytes(String, Vec<u8>),
}

impl Source {
    /// A URL string or a `Uint8Array` (named `name`) from the hosting page.
    fn from_js(value: wasm_bindgen::JsValue, name: &str) -> Option<Source> {
        if let Some(url) = value.as_string() {
            return Some(Source::Url(url));
        }
        let bytes = value.dyn_into::<js_sys::Uint8Array>().ok()?;
        Some(Source::Bytes(name.to_string(), bytes.to_vec()))
    }

    fn open(self, loader: Loader) {
        match self {
            Source::Url(url) => loader.load_url(url),
            Source::Bytes(name, bytes) => loader.load_bytes(name, bytes),
        }
    }
}

/// What the page opens at startup.
enum Startup {
    Nothing,
    One(Source),
    Pair(Source, Source),
}

/// `?base=&head=` (compare) or `?url=` from the address win; otherwise a page that embeds the
/// viewer (`memlens report`) names or carries its recordings in `window.memlensCompare`
/// (`{base, head}`) or `window.memlensRecording`, each a URL string or a `Uint8Array`.
fn startup() -> Startup {
    let param = |key: &str| -> Option<String> {
        let search = web_sys::window()?.location().search().ok()?;
        web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(key).filter(|u| !u.is_empty())
    };
    if let (Some(base), Some(head)) = (param("base"), param("head")) {
        return Startup::Pair(Source::Url(base), Source::Url(head));
    }
    if let Some(url) = param("url") {
        return Startup::One(Source::Url(url));
    }
    let Some(window) = web_sys::window().map(wasm_bindgen::JsValue::from) else {
        return Startup::Nothing;
    };
    let get = |obj: &wasm_bindgen::JsValue, key: &str| {
        js_sys::Reflect::get(obj, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
    };
    if let Some(pair) = get(&window, "memlensCompare") {
        let side = |key: &str| get(&pair, key).and_then(|v| Source::from_js(v, key));
        if let (Some(base), Some(head)) = (side("base"), side("head")) {
            return Startup::Pair(base, head);
        }
    }
    match get(&window, "memlensRecording").and_then(|v| Source::from_js(v, "report")) {
        Some(source) => Startup::One(source),
        None => Startup::Nothing,
    }
}

#[component]
fn OpenButton(open: Callback<web_sys::FileList>) -> impl IntoView {
    view! {
        <label class="button" title="Choose one recording, or two to compare them">
            "Open recording…"
            <input
                type="file"
                id="file-input"
                multiple
                accept=".memlens,application/octet-stream"
                on:change=move |ev| {
                    let input: web_sys::HtmlInputElement = event_target(&ev);
                    if let Some(files) = input.files() {
                        open.run(files);
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
    // The heap line follows the thread filter (the other threads' memory is not shown).
    let thread = Memo::new(move |_| state.with(|s| s.thread));
    let timeline = Memo::new({
        let loaded = loaded.clone();
        move |_| {
            let filter = thread.get().map_or_else(memlens_analysis::EventFilter::default, |t| {
                memlens_analysis::EventFilter::thread(memlens_format::ThreadId(t))
            });
            timed("timeline", || TimelineData::compute(&loaded.0, &filter)).map(ByPtr::new)
        }
    });
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
    // The objects panel's census (and the one it compares with), marked on the timeline.
    let census = Signal::derive({
        let loaded = loaded.clone();
        move || {
            let rec = &loaded.0.recording;
            let n = rec.censuses().len();
            state.with(|s| {
                (census_index(rec, s.census), s.since.map(|i| i as usize).filter(|&i| i < n))
            })
        }
    });
    let on_census = Callback::new(move |i: usize| {
        state.update(|s| s.census = Some(i as u32));
        reveal("objects-panel");
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
        <InsightsPanel loaded=loaded.clone() state=state />
        {move || match timeline.get() {
            Ok(data) => {
                view! {
                    <Timeline
                        data=data
                        range=range
                        on_select=on_select
                        census=census
                        on_census=on_census
                    />
                }
                    .into_any()
            }
            Err(e) => view! { <div class="banner banner-error" role="alert">{e}</div> }.into_any(),
        }}
        <FlameGraph loaded=loaded.clone() state=state />
        <ObjectsPanel loaded=loaded state=state />
    }
}

#[component]
fn EmptyState(open: Callback<web_sys::FileList>, compare: RwSignal<bool>) -> impl IntoView {
    view! {
        <section class="empty" id="empty-state">
            <h2>"Open a memlens recording"</h2>
            <p>"Drop a " <code>".memlens"</code> " file anywhere on this page, or"</p>
            <p><OpenButton open=open /></p>
            <p>
                "Two files (dropped or chosen together) open in compare mode, or "
                <button class="link-button" id="compare-button" on:click=move |_| compare.set(true)>
                    "compare two recordings"
                </button> "."
            </p>
            <p>
                "Record one with " <code>"memlens run -o out.memlens your_script.py"</code>
                ", then " <code>"memlens view out.memlens"</code> "."
            </p>
            {example_url()
                .map(|url| {
                    view! {
                        <p id="example-link">
                            <a href=format!("?url={url}")>"Open an example recording"</a>
                            " (a small log-analytics job recorded by memlens)."
                        </p>
                    }
                })}
        </section>
    }
}

#[component]
fn App() -> impl IntoView {
    let loader = Loader::new();
    // Compare mode: its own two loaders, so leaving it keeps the single recording.
    let compare = RwSignal::new(false);
    let (base, head) = (Loader::new(), Loader::new());
    let (dragging, set_dragging) = signal(false);

    // One file opens alone; two open in compare mode (first base, second head). A single
    // file in compare mode fills the first empty side.
    let open = Callback::new(move |files: web_sys::FileList| match (files.get(0), files.get(1)) {
        (Some(a), Some(b)) => {
            compare.set(true);
            base.load_file(a);
            head.load_file(b);
        }
        (Some(a), None) if compare.get_untracked() => {
            let base_empty = base.loaded.with_untracked(Option::is_none);
            if base_empty { base } else { head }.load_file(a);
        }
        (Some(a), None) => loader.load_file(a),
        _ => {}
    });

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
        if let Some(files) = ev.data_transfer().and_then(|d| d.files()) {
            open.run(files);
        }
    });

    match startup() {
        Startup::Nothing => {}
        Startup::One(source) => source.open(loader),
        Startup::Pair(b, h) => {
            compare.set(true);
            b.open(base);
            h.open(head);
        }
    }

    let file_name = move || {
        if compare.get() {
            let name = |l: Loader| l.loaded.with(|l| l.as_ref().map(|l| l.0.name.clone()));
            return Some(format!(
                "{} → {}",
                name(base).unwrap_or_else(|| "base?".into()),
                name(head).unwrap_or_else(|| "head?".into())
            ));
        }
        loader
            .loaded
            .with(|l| l.as_ref().map(|l| format!("{} · {}", l.0.name, units::bytes(l.0.size))))
    };
    let single = move || {
        view! {
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
                None => view! { <EmptyState open=open compare=compare /> }.into_any(),
            }}
        }
    };
    let pair = move || match (base.loaded.get(), head.loaded.get()) {
        (Some(b), Some(h)) => view! { <CompareView base=b head=h /> }.into_any(),
        _ => view! { <CompareSlots base=base head=head /> }.into_any(),
    };
    view! {
        <div class="app">
            <header class="topbar">
                <span class="brand">"mem" <span>"lens"</span></span>
                {move || compare.get().then(|| view! { <span class="tag tag-head">"compare"</span> })}
                <span class="file-name" id="file-name">{file_name}</span>
                <span class="spacer"></span>
                {move || {
                    compare
                        .get()
                        .then(|| {
                            view! {
                                <button class="link-button" id="leave-compare" on:click=move |_| compare.set(false)>
                                    "Leave compare mode"
                                </button>
                            }
                        })
                }}
                <OpenButton open=open />
            </header>
            {move || if compare.get() { pair.into_any() } else { single().into_any() }}
            <Show when=move || dragging.get()>
                <div class="drop-overlay">
                    "Drop the recording to open it (two recordings to compare them)"
                </div>
            </Show>
        </div>
    }
}

/// Mount the app into `<body>`; called from `main`.
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
