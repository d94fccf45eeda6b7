//! memlens-viewer: the browser UI for `.memlens` recordings.
//!
//! A Leptos 0.8 client-side-rendered app compiled to `wasm32-unknown-unknown` and bundled by
//! `./dev build-viewer` into `www/dist/`. It opens a recording from a file picker, a drop
//! anywhere on the page, or `?url=...`, and draws a memory timeline and a flame graph on
//! canvases.
//!
//! The same wasm module runs twice: as the page ([`mount`]) and as a Web Worker
//! ([`worker_main`]) that reads the recording (only the parts a view needs: range requests
//! for URLs, slices for files) and answers each view's questions (`protocol`), so the page
//! holds only the recording's directory, never its events, and never freezes whatever the
//! recording's size.
//!
//! Design constraints:
//! - no `unsafe`; all decoding and analysis lives in `memlens-format` and `memlens-analysis`
//!   (plain Rust, tested natively), components only wire signals to it;
//! - it also compiles natively so `cargo clippy --workspace` and the pure-logic unit tests run
//!   without a browser.
//!
//! Example (from the repository root):
//!
//! ```text
//! ./dev build-viewer && python3 -m http.server -d www/dist   # then open http://localhost:8000/
//! ```
#![forbid(unsafe_code)]

mod answer;
mod breadcrumb;
mod cached_source;
mod call_site_table;
mod chart_canvas;
mod client;
mod compare;
mod compare_model;
mod compare_timeline;
mod delta_table;
mod diff_flame;
mod family_answer;
mod family_timeline;
mod family_view;
mod flame_graph;
mod flame_keys;
mod flame_model;
mod flame_search;
mod header;
mod insight_links;
mod insights_panel;
mod load;
mod objects_panel;
mod open;
mod panel;
mod plot;
mod process_model;
mod process_picker;
mod protocol;
mod table_keys;
mod theme;
mod timeline;
mod timeline_keys;
mod timeline_model;
mod timeline_spans;
mod toggle;
mod units;
mod url_state;
mod use_family;
mod use_flame_keys;
mod use_time_keys;
mod use_view_state;
mod use_worker;
mod web_sources;
mod worker;

pub use worker::worker_main;

use std::sync::Arc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::client::Activity;
use crate::compare::{CompareSlots, CompareView};
use crate::family_view::FamilyView;
use crate::flame_graph::FlameGraph;
use crate::header::Header;
use crate::insights_panel::{reveal, InsightsPanel};
use crate::load::{Follow, Live, Loaded, Loader};
use crate::objects_panel::{census_index, ObjectsPanel};
use crate::process_picker::ProcessPicker;
use crate::timeline::Timeline;
use crate::url_state::ViewState;
use crate::use_family::{use_family, Shown};

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
    Url(String, Follow),
    Bytes(String, js_sys::Uint8Array),
}

impl Source {
    /// A URL string or a `Uint8Array` (named `name`) from the hosting page.
    fn from_js(value: wasm_bindgen::JsValue, name: &str) -> Option<Source> {
        if let Some(url) = value.as_string() {
            return Some(Source::Url(url, Follow::No));
        }
        let bytes = value.dyn_into::<js_sys::Uint8Array>().ok()?;
        Some(Source::Bytes(name.to_string(), bytes))
    }

    fn open(self, loader: Loader) {
        match self {
            Source::Url(url, follow) => loader.load_url(url, follow),
            Source::Bytes(name, bytes) => loader.load_bytes(name, bytes),
        }
    }
}

/// What the page opens at startup.
enum Startup {
    Nothing,
    One(Source),
    Pair(Source, Source),
    /// `?base=` without `?head=` (or the reverse): the side given, whether it is the base, and
    /// what the page says about the side missing.
    Half(Source, bool, String),
}

/// What the page says when the address names only one side of a comparison.
fn half_pair_message(given: &str, missing: &str) -> String {
    format!(
        "This address gives ?{given}= but no ?{missing}=, so there is nothing to compare it \
         with yet: add &{missing}=URL of the other recording to the address, or choose the \
         {missing} recording below."
    )
}

/// `?base=&head=` (compare) or `?url=` from the address win; otherwise a page that embeds the
/// viewer (`memlens report`) names or carries its recordings in `window.memlensCompare`
/// (`{base, head}`) or `window.memlensRecording`, each a URL string or a `Uint8Array`.
fn startup() -> Startup {
    let param = |key: &str| -> Option<String> {
        let search = web_sys::window()?.location().search().ok()?;
        web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(key).filter(|u| !u.is_empty())
    };
    match (param("base"), param("head")) {
        (Some(base), Some(head)) => {
            return Startup::Pair(Source::Url(base, Follow::No), Source::Url(head, Follow::No))
        }
        (Some(base), None) => {
            let why = half_pair_message("base", "head");
            return Startup::Half(Source::Url(base, Follow::No), true, why);
        }
        (None, Some(head)) => {
            let why = half_pair_message("head", "base");
            return Startup::Half(Source::Url(head, Follow::No), false, why);
        }
        (None, None) => {}
    }
    if let Some(url) = param("url") {
        let follow =
            if param("follow").as_deref() == Some("1") { Follow::Yes } else { Follow::IfOpen };
        return Startup::One(Source::Url(url, follow));
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

/// A real button that opens the browser's file chooser (a hidden file input), so the
/// keyboard reaches it (Tab) and works it (Enter, Space). `on_files` gets what was chosen.
#[component]
pub(crate) fn FileButton(
    /// The button's text.
    label: &'static str,
    /// Its accessible name, when the text alone is ambiguous.
    #[prop(optional)]
    aria_label: Option<&'static str>,
    title: &'static str,
    /// The id of the hidden input (for tests: `setInputFiles`).
    input_id: &'static str,
    #[prop(optional)] multiple: bool,
    on_files: Callback<web_sys::FileList>,
) -> impl IntoView {
    let input = NodeRef::<leptos::html::Input>::new();
    view! {
        <button
            type="button"
            class="button"
            title=title
            aria-label=aria_label
            on:click=move |_| {
                if let Some(input) = input.get_untracked() {
                    input.click();
                }
            }
        >
            {label}
        </button>
        <input
            type="file"
            class="file-input"
            id=input_id
            node_ref=input
            tabindex="-1"
            aria-hidden="true"
            multiple=multiple
            accept=".memlens,application/octet-stream"
            on:change=move |ev| {
                let input: web_sys::HtmlInputElement = event_target(&ev);
                if let Some(files) = input.files() {
                    on_files.run(files);
                }
                // Choosing the same file again should load it again.
                input.set_value("");
            }
        />
    }
}

#[component]
fn OpenButton(open: Callback<web_sys::FileList>, input_id: &'static str) -> impl IntoView {
    view! {
        <FileButton
            label="Open recording…"
            title="Choose one recording, or two to compare them"
            input_id=input_id
            multiple=true
            on_files=open
        />
    }
}

/// What is being opened, and what the worker is busy with when it takes a while.
#[component]
fn ProgressBar(opening: Option<String>, activity: Option<Activity>) -> impl IntoView {
    let (label, value) = match (&activity, &opening) {
        (Some(a), _) if a.total > 0 => (
            format!("{}: {} of {}", a.label, units::bytes(a.done), units::bytes(a.total)),
            Some(a.done as f64 / a.total as f64),
        ),
        (Some(a), _) => (format!("{}: {} read", a.label, units::bytes(a.done)), None),
        (None, Some(name)) => (format!("Opening {name}…"), None),
        (None, None) => (String::new(), None),
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

/// The banner of a recording being followed as it is written.
#[component]
fn LiveBanner(loaded: ByPtr<Loaded>) -> impl IntoView {
    let live = loaded.0.live.clone();
    move || {
        let text = match live.get() {
            Live::Off => return None,
            Live::Following { quiet, error } => {
                let mut text = format!(
                    "Live: {} has no trailer yet: it is still being written (or its recorder \
                     was killed). The views follow it as it grows.",
                    loaded.0.name
                );
                if quiet >= 5 {
                    text.push_str(&format!(" Nothing new for {quiet} s."));
                }
                if let Some(e) = error {
                    text.push_str(&format!(" The last update failed: {e}"));
                }
                text
            }
            Live::Finished => "The recording is complete: these are its final figures.".into(),
        };
        Some(view! { <div class="banner banner-live" role="status" id="live-banner">{text}</div> })
    }
}

/// A recording on screen: the view state from the address, and, for a recording of several
/// processes, the process picker over the views of the process it chooses (or of all).
#[component]
fn RecordingPage(loaded: ByPtr<Loaded>) -> impl IntoView {
    let state = use_view_state::use_view_state();
    let family = use_family(loaded.clone(), state);
    let picker = move || {
        let list = family.list.get().filter(|l| l.0.len() > 1)?;
        Some(view! { <ProcessPicker list=list choice=family.choice state=state /> })
    };
    let shown = move || match family.shown.get() {
        Shown::Program => view! { <RecordingView loaded=loaded.clone() state=state /> }.into_any(),
        Shown::Process(one) => view! { <RecordingView loaded=one state=state /> }.into_any(),
        Shown::All(all, list) => view! { <FamilyView all=all list=list state=state /> }.into_any(),
        Shown::Opening => view! {
            <p class="panel-message" role="status" id="process-opening">"Opening the process…"</p>
        }
        .into_any(),
        Shown::Failed(e) => view! {
            <div class="banner banner-error" role="alert" id="process-error">
                <strong>"Error:"</strong>
                {e}
            </div>
        }
        .into_any(),
    };
    view! {
        <div id="recording-page" data-processes=move || family.list.get().map(|l| l.0.len())>
            {picker}
            {shown}
        </div>
    }
}

#[component]
fn RecordingView(loaded: ByPtr<Loaded>, state: RwSignal<ViewState>) -> impl IntoView {
    let dir = loaded.0.dir.clone();
    // The objects panel's census (and the one it compares with), marked on the timeline.
    let census = Signal::derive({
        let dir = dir.clone();
        move || {
            dir.with(|d| {
                let rec = &d.0.recording;
                let n = rec.censuses().len();
                state.with(|s| {
                    (census_index(rec, s.census), s.since.map(|i| i as usize).filter(|&i| i < n))
                })
            })
        }
    });
    let on_census = Callback::new(move |i: usize| {
        state.update(|s| s.census = Some(i as u32));
        reveal("objects-panel");
    });
    let warnings = Memo::new({
        let dir = dir.clone();
        move |_| dir.with(|d| d.0.warnings.clone())
    });
    // Panels that only show the directory are drawn again when a followed recording grows;
    // the objects panel only when a census arrives.
    let censuses = Memo::new({
        let dir = dir.clone();
        move |_| dir.with(|d| d.0.recording.censuses().len())
    });
    let header = {
        let dir = dir.clone();
        move || view! { <Header dir=dir.get() /> }
    };
    let objects = {
        let dir = dir.clone();
        move || {
            // Read (not just tracked): a memo nobody reads is never computed, so never changes.
            let _count = censuses.get();
            view! { <ObjectsPanel loaded=dir.get_untracked() state=state /> }
        }
    };
    view! {
        <LiveBanner loaded=loaded.clone() />
        {move || {
            warnings
                .get()
                .into_iter()
                .map(|w| {
                    view! {
                        <div class="banner banner-warning" role="alert" id="warning-banner">
                            <strong>"Warning:"</strong>
                            {w}
                        </div>
                    }
                })
                .collect_view()
        }}
        {header}
        <InsightsPanel loaded=loaded.clone() state=state />
        <Timeline loaded=loaded.clone() state=state census=census on_census=on_census />
        <FlameGraph loaded=loaded state=state />
        {objects}
    }
}

#[component]
fn EmptyState(open: Callback<web_sys::FileList>, compare: RwSignal<bool>) -> impl IntoView {
    view! {
        <section class="empty" id="empty-state">
            <h2>"Open a memlens recording"</h2>
            <p>"Drop a " <code>".memlens"</code> " file anywhere on this page, or"</p>
            <p><OpenButton open=open input_id="empty-file-input" /></p>
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

    // What the address asked for but cannot be done (half a comparison), until both sides of
    // the comparison are there.
    let address_error = RwSignal::new(None::<String>);
    match startup() {
        Startup::Nothing => {}
        Startup::One(source) => source.open(loader),
        Startup::Pair(b, h) => {
            compare.set(true);
            b.open(base);
            h.open(head);
        }
        Startup::Half(source, is_base, why) => {
            compare.set(true);
            source.open(if is_base { base } else { head });
            address_error.set(Some(why));
        }
    }
    let worker_failure = {
        let f = client::failure();
        Signal::derive(move || f.get())
    };
    // Why the worker stopped, unless a loader's own error banner already says it.
    let worker_banner = move || {
        let why = worker_failure.get()?;
        let said = [loader, base, head]
            .iter()
            .any(|l| l.error.with(|e| e.as_ref().is_some_and(|e| e.contains(&why))));
        (!said).then(|| {
            view! {
                <div class="banner banner-error" role="alert" id="worker-error">
                    <strong>"Error:"</strong>
                    {why}
                    " Open the recording again to try once more."
                </div>
            }
        })
    };

    // Whatever the worker is busy with, once it has taken a while.
    let activity = {
        let a = client::activity();
        Signal::derive(move || a.get())
    };
    let file_name = move || {
        if compare.get() {
            let name = |l: Loader| l.loaded.with(|l| l.as_ref().map(|l| l.0.name.clone()));
            return Some(format!(
                "{} → {}",
                name(base).unwrap_or_else(|| "base?".into()),
                name(head).unwrap_or_else(|| "head?".into())
            ));
        }
        let loaded = loader.loaded.get()?;
        let size = loaded.0.dir.with(|d| d.0.size);
        Some(format!("{} · {}", loaded.0.name, units::bytes(size)))
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
            {move || {
                let (opening, activity) = (loader.opening.get(), activity.get());
                (opening.is_some() || activity.is_some())
                    .then(|| view! { <ProgressBar opening=opening activity=activity /> })
            }}
            {move || match loader.loaded.get() {
                Some(loaded) => view! { <RecordingPage loaded=loaded /> }.into_any(),
                None => view! { <EmptyState open=open compare=compare /> }.into_any(),
            }}
        }
    };
    let pair = move || match (base.loaded.get(), head.loaded.get()) {
        (Some(b), Some(h)) => view! { <CompareView base=b head=h /> }.into_any(),
        _ => view! {
            {move || {
                address_error.get().map(|e| {
                    view! {
                        <div class="banner banner-error" role="alert" id="error-banner">
                            <strong>"Error:"</strong>
                            {e}
                        </div>
                    }
                })
            }}
            <CompareSlots base=base head=head />
        }
        .into_any(),
    };
    let compare_progress = move || {
        let busy = compare.get().then(|| activity.get()).flatten()?;
        Some(view! { <ProgressBar opening=None activity=Some(busy) /> })
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
                <OpenButton open=open input_id="file-input" />
            </header>
            {compare_progress}
            {worker_banner}
            {move || if compare.get() { pair.into_any() } else { single().into_any() }}
            <Show when=move || dragging.get()>
                <div class="drop-overlay">
                    "Drop the recording to open it (two recordings to compare them)"
                </div>
            </Show>
        </div>
    }
}

/// Mount the app into `<body>`; called from `main`. In the worker (the same module, started
/// by `memlens_worker.js`, which calls [`worker_main`]), there is no page: nothing to do.
pub fn mount() {
    if web_sys::window().is_none() {
        return;
    }
    // A panic aborts the module, so nothing reactive runs after it: the banner is put on the
    // page directly. (`index.html` does the same for traps, which reach no hook.)
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show_crash(&format!(
            "The viewer stopped on an internal error: {info}. Reload the page to start again."
        ));
    }));
    leptos::mount::mount_to_body(App);
}

/// Puts an error banner at the top of the page without the reactive system (after a panic).
fn show_crash(text: &str) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    if document.get_element_by_id("crash-banner").is_some() {
        return;
    }
    let (Ok(banner), Some(body)) = (document.create_element("div"), document.body()) else {
        return;
    };
    banner.set_id("crash-banner");
    banner.set_class_name("banner banner-error");
    let _ = banner.set_attribute("role", "alert");
    banner.set_text_content(Some(text));
    let _ = body.prepend_with_node_1(&banner);
}
