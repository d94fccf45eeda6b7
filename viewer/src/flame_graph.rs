//! The flame graph: which call stacks hold memory, in four modes (at peak, leaked, total
//! allocated, live at the peak of the selected range). Click to zoom, breadcrumb to zoom out,
//! hover for details, search to highlight. From the keyboard (Tab to the canvas): the arrows
//! move a cursor between frames (up and down to the parent or a child, left and right to the
//! siblings), Enter zooms into it, Escape zooms out, and a live region says what the cursor
//! is on. The memory by stack comes from the worker; tree building, layout and hit testing
//! from `memlens-analysis`, the keyboard from `use_flame_keys`; this module only draws and wires
//! signals.

use leptos::prelude::*;
use memlens_analysis::{flame_hit, flame_layout, FlameRect, Snapshot};

use crate::breadcrumb::Breadcrumb;
use crate::call_site_table::CallSiteTable;
use crate::chart_canvas::{Chart, ChartCanvas, Painter, Size, Tooltip};
use crate::flame_model::{mode_of, totals_query, FlameData, Hidden, ROW_H};
use crate::flame_search::{search_flame, SearchMatches};
use crate::load::Loaded;
use crate::panel::PanelHead;
use crate::protocol::Request;
use crate::toggle::toggle;
use crate::url_state::{ColorBy, FlameMode, ViewState};
use crate::use_flame_keys::{keyed_flame, use_flame_keys};
use crate::use_worker::use_worker;
use crate::{units, ByPtr};

/// Children narrower than this fraction of the zoomed node are merged (about 1 px at 2000 px).
const MIN_W: f64 = 0.0005;
/// Tallest flame graph drawn, in rows (canvases have a maximum size; zoom in to see deeper).
const MAX_ROWS: i32 = 300;
/// Narrowest rectangle that gets a label, in CSS px.
const MIN_LABEL_W: f64 = 28.0;

/// FNV-1a: stable across runs and platforms, unlike std's RandomState.
fn fnv(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A stable colour per file (module): hues spread round the wheel.
pub fn file_color(file: &str, dark: bool) -> String {
    let hash = fnv(file);
    let hue = (hash % 360) as f64;
    let light = if dark { 58.0 } else { 70.0 } + ((hash >> 12) % 100) as f64 / 100.0 * 8.0;
    format!("hsl({hue:.0} 62% {light:.0}%)")
}

/// A stable, pleasant colour per frame: warm for the program's own code, cool for the
/// standard library and installed packages.
pub fn frame_color(function: &str, file: &str, dark: bool) -> String {
    let hash = fnv(function);
    let library = file.starts_with('<')
        || file.contains("/lib/python")
        || file.contains("site-packages")
        || file.contains("dist-packages");
    let (base, spread) = if library { (195.0, 35.0) } else { (8.0, 40.0) };
    let hue = base + (hash % 1000) as f64 / 1000.0 * spread;
    let light = if dark { 56.0 } else { 68.0 } + ((hash >> 10) % 100) as f64 / 100.0 * 10.0;
    let sat = if library { 55.0 } else { 78.0 };
    format!("hsl({hue:.0} {sat:.0}% {light:.0}%)")
}

/// A native (C, C++, Rust) frame's colour: greens, apart from both kinds of Python code.
pub fn native_color(function: &str, dark: bool) -> String {
    let hash = fnv(function);
    let hue = 95.0 + (hash % 1000) as f64 / 1000.0 * 40.0;
    let light = if dark { 50.0 } else { 62.0 } + ((hash >> 10) % 100) as f64 / 100.0 * 10.0;
    format!("hsl({hue:.0} 48% {light:.0}%)")
}

/// The flame graph as a [`Chart`].
#[derive(Clone, PartialEq)]
pub struct FlameChart {
    pub data: ByPtr<FlameData>,
    pub rects: ByPtr<Vec<FlameRect>>,
    pub zoom: u32,
    pub search: ByPtr<SearchMatches>,
    /// Row of the topmost rectangle (negative when ancestors are shown above the zoom).
    pub min_row: i32,
    pub color: ColorBy,
    /// Root at the bottom (flame) instead of the top (icicle).
    pub flame_up: bool,
    /// The node the keyboard cursor is on, while the canvas has the focus.
    pub cursor: Option<u32>,
}

impl FlameChart {
    pub fn new(
        data: ByPtr<FlameData>,
        zoom: u32,
        search: ByPtr<SearchMatches>,
        color: ColorBy,
        flame_up: bool,
    ) -> FlameChart {
        let rects = flame_layout(&data.0.tree, zoom, MIN_W);
        let min_row = rects.first().map_or(0, |r| r.row);
        let rects = ByPtr::new(rects);
        FlameChart { data, rects, zoom, search, min_row, color, flame_up, cursor: None }
    }

    /// The rectangle drawn for `node`.
    pub fn rect_of(&self, node: u32) -> Option<&FlameRect> {
        self.rects.0.iter().find(|r| r.node == Some(node))
    }

    /// Whether the root is at the bottom (a flame) rather than the top (an icicle).
    pub fn flame_up(&self) -> bool {
        self.flame_up
    }

    /// Rows drawn, for the canvas height.
    pub fn rows(&self) -> i32 {
        self.rects.0.last().map_or(1, |r| r.row - self.min_row + 1)
    }

    /// Rows the canvas has room for.
    pub fn canvas_rows(&self) -> i32 {
        self.rows().clamp(4, MAX_ROWS)
    }

    /// Top of a layout row, in CSS px.
    fn row_y(&self, row: i32) -> f64 {
        let i = row - self.min_row;
        let i = if self.flame_up { self.canvas_rows() - 1 - i } else { i };
        f64::from(i) * ROW_H
    }

    /// The layout row at canvas y (CSS px).
    fn row_at(&self, y: f64) -> i32 {
        let i = (y / ROW_H).floor() as i32;
        let i = if self.flame_up { self.canvas_rows() - 1 - i } else { i };
        i + self.min_row
    }

    fn searching(&self) -> bool {
        self.search.0.nodes > 0
    }
}

keyed_flame!(FlameChart);

/// Cuts `text` to fit `max_w` CSS px, given an average character width.
fn fit_label(text: &str, max_w: f64, char_w: f64) -> Option<String> {
    let fits = (max_w / char_w).floor() as usize;
    let len = text.chars().count();
    if fits >= len {
        Some(text.to_string())
    } else if fits >= 3 {
        Some(text.chars().take(fits - 1).chain(std::iter::once('…')).collect())
    } else {
        None
    }
}

impl Chart for FlameChart {
    type Hit = FlameRect;

    fn draw(&self, painter: &Painter<'_>, hover: Option<&FlameRect>) {
        let ctx = painter.ctx;
        let theme = painter.theme;
        let width = painter.size.width;
        let total = self.data.0.root_total();
        if total.bytes == 0 {
            painter.empty_note("No memory in this view.");
            return;
        }
        let char_w = painter.label_font();
        for r in self.rects.0.iter() {
            let (x, w) = (r.x * width, r.w * width);
            if w < 0.4 {
                continue;
            }
            let y = self.row_y(r.row);
            // The long label (with file:line) when it fits whole, else the function name.
            let (fill, long, label) = match r.node {
                Some(0) => (
                    if theme.dark { "hsl(220 10% 42%)" } else { "hsl(220 12% 78%)" }.to_string(),
                    None,
                    format!("all · {}", units::bytes(r.total.bytes)),
                ),
                Some(n) => {
                    let (function, file, line) = self.data.0.names(n);
                    let base = file.rsplit('/').next().unwrap_or(file);
                    let long = match (line, base) {
                        (_, "") => function.to_string(),
                        (0, _) => format!("{function}  {base}"),
                        _ => format!("{function}  {base}:{line}"),
                    };
                    let fill = match self.color {
                        ColorBy::Kind if self.data.0.is_native(n) => {
                            native_color(function, theme.dark)
                        }
                        ColorBy::Kind => frame_color(function, file, theme.dark),
                        ColorBy::File => file_color(file, theme.dark),
                    };
                    (fill, Some(long), function.to_string())
                }
                None => (
                    if theme.dark { "hsl(220 8% 34%)" } else { "hsl(220 10% 86%)" }.to_string(),
                    None,
                    "(smaller callees)".to_string(),
                ),
            };
            let matched = r.node.is_some_and(|n| self.search.0.is_match(n));
            let context = r.row < 0;
            let dim = (self.searching() && !matched) || context;
            ctx.set_global_alpha(if dim { 0.38 } else { 1.0 });
            ctx.set_fill_style_str(if matched { &theme.matched } else { &fill });
            // 1 px gaps between neighbours, unless that would erase thin frames.
            let gap = if w > 3.0 { 1.0 } else { 0.0 };
            ctx.fill_rect(x, y, w - gap, ROW_H - 1.0);
            if w >= MIN_LABEL_W {
                let whole = long.filter(|l| l.chars().count() as f64 * char_w <= w - 8.0);
                if let Some(text) = whole.or_else(|| fit_label(&label, w - 8.0, char_w)) {
                    ctx.set_fill_style_str(&theme.frame_text);
                    let _ = ctx.fill_text(&text, x + 4.0, y + ROW_H / 2.0);
                }
            }
            ctx.set_global_alpha(1.0);
        }
        if let Some(r) = hover {
            painter.outline_hover(r.x, r.w, self.row_y(r.row), ROW_H);
        }
        if let Some(r) = self.cursor.and_then(|n| self.rect_of(n)) {
            painter.outline_focus(r.x, r.w, self.row_y(r.row), ROW_H);
        }
    }

    fn hit_test(&self, size: Size, x: f64, y: f64) -> Option<FlameRect> {
        if size.width <= 0.0 || y < 0.0 {
            return None;
        }
        flame_hit(&self.rects.0, x / size.width, self.row_at(y)).copied()
    }

    fn tooltip(&self, r: &FlameRect) -> Option<Tooltip> {
        let d = &self.data.0;
        let total = d.root_total();
        let mut lines = vec![
            format!(
                "{} · {} of this view",
                units::bytes(r.total.bytes),
                units::share(r.total.bytes, total.bytes)
            ),
            units::plural(r.total.count, "allocation", "allocations"),
        ];
        let Some(node) = r.node else {
            return Some(Tooltip {
                title: "Smaller callees (merged)".into(),
                location: None,
                lines,
            });
        };
        if node == 0 {
            return Some(Tooltip { title: "All stacks".into(), location: None, lines });
        }
        let (function, file, line) = d.names(node);
        if let Some(n) = d.tree.nodes.get(node as usize) {
            if n.self_.bytes > 0 {
                lines.push(format!("Self (allocated here): {}", units::bytes(n.self_.bytes)));
            }
        }
        let location = match (line, file) {
            (_, "") => None,
            (0, _) => Some(file.to_string()),
            _ => Some(format!("{file}:{line}")),
        };
        Some(Tooltip { title: function.to_string(), location, lines })
    }
}

/// The flame graph panel: mode buttons, search, breadcrumb and the canvas. The memory by
/// stack of each mode comes from the worker; the tree is built here from the directory.
#[component]
pub fn FlameGraph(loaded: ByPtr<Loaded>, state: RwSignal<ViewState>) -> impl IntoView {
    let dir = loaded.0.dir.clone();
    let mode = Memo::new(move |_| state.with(|s| s.mode));
    let range = Memo::new(move |_| state.with(|s| s.range));
    let zoom_path = Memo::new(move |_| state.with(|s| s.zoom.clone()));
    let query = Memo::new(move |_| state.with(|s| s.search.clone()));
    let look = Memo::new(move |_| state.with(|s| (s.color, s.flame_up)));
    let hidden = Memo::new(move |_| {
        state.with(|s| Hidden { internal: !s.show_internal, native: s.hide_native })
    });
    // Only what changes the memory by stack asks the worker: search, zoom, colours and hiding
    // internal frames never do. Answers already computed are kept, so going back to a mode
    // or thread is instant; meanwhile the previous tree stays on screen under a note.
    let totals_query = Memo::new({
        let (loaded, dir) = (loaded.clone(), dir.clone());
        move |_| {
            let generation = dir.with(|d| d.0.generation);
            let (mode, range, thread) = state.with(|s| (s.mode, s.range, s.thread));
            totals_query("flame", &loaded.0, generation, mode, range, thread)
        }
    });
    let totals = use_worker(totals_query, 8);
    let no_range = Memo::new(move |_| totals_query.with(Option::is_none));
    let data = Memo::new(move |_| {
        if no_range.get() {
            return Err("Drag across the timeline above to select a time range.".to_string());
        }
        let totals =
            totals.result.get().unwrap_or_else(|| Err("Computing the flame graph…".into()))?;
        let dir = dir.get();
        let d = crate::timed("flame tree", || FlameData::new(dir, totals, hidden.get()))?;
        Ok(ByPtr::new(d))
    });
    let computing = totals.computing;
    let search = Memo::new(move |_| {
        let q = query.get();
        data.with(|d| match d {
            Ok(d) => ByPtr::new(search_flame(&d.0.dir.0.recording, &d.0.tree, &q)),
            Err(_) => ByPtr::new(SearchMatches::default()),
        })
    });
    let layout = Memo::new(move |_| {
        let d = data.get().ok()?;
        let zoom = d.0.resolve(&zoom_path.get());
        let (color, flame_up) = look.get();
        Some(FlameChart::new(d, zoom, search.get(), color, flame_up))
    });
    let set_zoom = move |node: u32| {
        if let Some(c) = layout.get_untracked() {
            let path = c.data.0.zoom_path(node);
            state.update(|s| s.zoom = path);
        }
    };
    let zoom_out = move || {
        state.update(|s| {
            s.zoom.pop();
        })
    };
    let keys = use_flame_keys(
        layout,
        Callback::new(set_zoom),
        Callback::new(move |()| zoom_out()),
        "flame-canvas",
    );
    let chart = Memo::new(move |_| {
        let mut c = layout.get()?;
        c.cursor = keys.cursor.get();
        Some(c)
    });
    // Escape zooms out one level (unless typing in the search box; the charts' canvases
    // handle their own keys).
    let page_keys = window_event_listener(leptos::ev::keydown, move |ev| {
        let target = ev.target();
        let is = |tag: &str| {
            target
                .as_ref()
                .and_then(|t| wasm_bindgen::JsCast::dyn_ref::<web_sys::Element>(t))
                .is_some_and(|e| e.tag_name().eq_ignore_ascii_case(tag))
        };
        let typing = is("input") || is("select") || is("textarea");
        if ev.key() == "Escape" && !typing && !is("canvas") {
            zoom_out();
        }
        // `/` jumps to the search box, as in most code browsers.
        if ev.key() == "/" && !typing {
            ev.prevent_default();
            let input = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.get_element_by_id("flame-search"))
                .and_then(|e| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(e).ok());
            if let Some(input) = input {
                let _ = input.focus();
            }
        }
    });
    on_cleanup(move || page_keys.remove());
    let on_click = Callback::new(move |r: FlameRect| {
        if let Some(node) = r.node {
            set_zoom(node);
        }
    });
    // The call-site table focuses (zooms to) the node holding most of a frame's memory.
    let on_frame = Callback::new(move |frame: memlens_format::FrameId| {
        let node =
            data.with_untracked(|d| d.as_ref().ok().and_then(|d| d.0.largest_node_of(frame)));
        if let Some(node) = node {
            set_zoom(node);
        }
    });
    let zoom = Memo::new(move |_| layout.with(|c| c.as_ref().map(|c| c.zoom)));

    let crumbs = Signal::derive(move || {
        let c = layout.get()?;
        let path = c.data.0.tree.path(c.zoom);
        Some(path.into_iter().map(|n| (n, c.data.0.names(n).0.to_string())).collect::<Vec<_>>())
    });
    let search_summary = move || {
        let q = query.get();
        if q.trim().is_empty() {
            return String::new();
        }
        let m = search.get();
        let total = layout.with(|c| c.as_ref().map_or(0, |c| c.data.0.root_total().bytes));
        match m.0.nodes {
            0 => "no matches".to_string(),
            n => format!(
                "{n} match{} · {} ({})",
                if n == 1 { "" } else { "es" },
                units::share(m.0.total.bytes, total),
                units::bytes(m.0.total.bytes)
            ),
        }
    };
    let chart_signal = Signal::derive(move || chart.get());
    let height = Signal::derive(move || {
        layout.with(|c| c.as_ref().map_or(0.0, |c| f64::from(c.canvas_rows()) * ROW_H + 1.0))
    });

    view! {
        <section
            class="panel"
            aria-label="Flame graph"
            id="flame-panel"
            data-ready=move || {
                // `peak`, `leaks`, `total` or `range:A-B`: what tests and benchmarks wait for.
                let shown = totals.answered.get().and_then(|q| match q.request {
                    Request::Totals { snapshot: Snapshot::PeakInRange(a, b), .. } => {
                        Some(format!("range:{a}-{b}"))
                    }
                    Request::Totals { snapshot, .. } => Some(mode_of(snapshot).key().to_string()),
                    _ => None,
                });
                shown.filter(|_| totals.settled() && data.with(Result::is_ok))
            }
        >
            <PanelHead title="Flame graph">
                <div class="segmented" role="group" aria-label="What to show">
                    {FlameMode::ALL
                        .into_iter()
                        .map(|m| {
                            view! {
                                <button
                                    data-mode=m.key()
                                    class:active=move || mode.get() == m
                                    disabled=move || m == FlameMode::Range && range.get().is_none()
                                    title=move || {
                                        if m == FlameMode::Range && range.get().is_none() {
                                            "Drag across the timeline to select a range"
                                        } else {
                                            m.description()
                                        }
                                    }
                                    on:click=move |_| state.update(|s| s.mode = m)
                                >
                                    {m.label()}
                                </button>
                            }
                        })
                        .collect_view()}
                </div>
                <span class="spacer"></span>
                <input
                    class="search"
                    id="flame-search"
                    type="search"
                    placeholder="Search functions and files ( / )"
                    prop:value=move || query.get()
                    on:input=move |ev| {
                        let q = event_target_value(&ev);
                        state.update(|s| s.search = q);
                    }
                />
                <span class="search-result" id="search-result">{search_summary}</span>
            </PanelHead>
            <FlameToolbar loaded=loaded state=state />
            <Breadcrumb id="breadcrumb" path=crumbs on_zoom=Callback::new(set_zoom) />
            {move || {
                // The worker's error (a damaged recording) is an alert; otherwise a hint (no
                // range yet) or what is being computed.
                let failed = totals.result.with(|r| match r {
                    Some(Err(e)) if !no_range.get() => Some(e.clone()),
                    _ => None,
                });
                match (failed, data.get().err()) {
                    (Some(e), _) => Some(view! {
                        <div class="banner banner-error panel-banner" role="alert" id="flame-error">{e}</div>
                    }.into_any()),
                    (None, Some(message)) => Some(view! { <p class="panel-message">{message}</p> }.into_any()),
                    (None, None) => None,
                }
            }}
            <Show when=move || computing.get() && data.with(Result::is_ok)>
                <p class="computing" id="flame-computing" role="status">"Computing…"</p>
            </Show>
            // Deep stacks scroll inside the panel instead of stretching the page.
            <div class="flame-scroll">
                <ChartCanvas
                    chart=chart_signal
                    class="chart-flame"
                    canvas_id="flame-canvas"
                    label="Flame graph of memory by call stack. Arrow keys move between frames, Enter zooms in, Escape zooms out."
                    height=height
                    on_click=on_click
                    on_key=keys.on_key
                    on_focus=keys.on_focus
                    described_by="flame-focus"
                />
            </div>
            <p class="chart-focus" id="flame-focus" aria-live="polite">{keys.text}</p>
        </section>
        <CallSiteTable data=data zoom=zoom state=state on_focus=on_frame />
    }
}

/// The flame graph's second row of controls: thread, internal frames, colours, orientation.
#[component]
fn FlameToolbar(loaded: ByPtr<Loaded>, state: RwSignal<ViewState>) -> impl IntoView {
    // A recording being followed gains threads as it runs.
    let dir = loaded.0.dir.clone();
    let threads = Memo::new(move |_| {
        dir.with(|d| {
            let threads = d.0.recording.threads().iter();
            threads.map(|t| (t.id.0, format!("{} (tid {})", t.name, t.os_tid))).collect::<Vec<_>>()
        })
    });
    let thread = Memo::new(move |_| state.with(|s| s.thread));
    let show_internal = Memo::new(move |_| state.with(|s| s.show_internal));
    let hide_native = Memo::new(move |_| state.with(|s| s.hide_native));
    let native_dir = loaded.0.dir.clone();
    let has_native = Memo::new(move |_| native_dir.with(|d| d.0.recording.meta().native_stacks()));
    let color = Memo::new(move |_| state.with(|s| s.color));
    let flame_up = Memo::new(move |_| state.with(|s| s.flame_up));
    view! {
        <div class="toolbar">
            <label>
                "Thread "
                <select
                    id="thread-filter"
                    on:change=move |ev| {
                        let t = event_target_value(&ev).parse::<u32>().ok();
                        state.update(|s| {
                            s.thread = t;
                            s.zoom.clear();
                        });
                    }
                >
                    <option value="" selected=move || thread.get().is_none()>"All threads"</option>
                    {move || {
                        threads
                            .get()
                            .into_iter()
                            .map(|(id, name)| {
                                view! {
                                    <option value=id.to_string() selected=move || thread.get() == Some(id)>
                                        {name}
                                    </option>
                                }
                            })
                            .collect_view()
                    }}
                </select>
            </label>
            <label title="Python's import machinery (<frozen importlib…>) and memlens' own bootstrap">
                <input
                    type="checkbox"
                    id="hide-internal"
                    prop:checked=move || !show_internal.get()
                    on:change=move |ev| {
                        let hide = event_target_checked(&ev);
                        state.update(|s| s.show_internal = !hide);
                    }
                />
                " Hide CPython internals and memlens frames"
            </label>
            <Show when=move || has_native.get()>
                <label title="C, C++ and Rust functions under the Python lines (memlens run --native-stacks)">
                    <input
                        type="checkbox"
                        id="hide-native"
                        prop:checked=move || hide_native.get()
                        on:change=move |ev| {
                            let hide = event_target_checked(&ev);
                            state.update(|s| s.hide_native = hide);
                        }
                    />
                    " Hide native frames"
                </label>
            </Show>
            <label>
                "Colour by "
                <select
                    id="color-by"
                    on:change=move |ev| {
                        let by = if event_target_value(&ev) == "file" { ColorBy::File } else { ColorBy::Kind };
                        state.update(|s| s.color = by);
                    }
                >
                    <option value="kind" selected=move || color.get() == ColorBy::Kind>
                        "program / library"
                    </option>
                    <option value="file" selected=move || color.get() == ColorBy::File>
                        "file (module)"
                    </option>
                </select>
            </label>
            {toggle(
                "Orientation",
                "data-layout",
                ("icicle", "Icicle", "Root at the top"),
                ("flame", "Flame", "Root at the bottom"),
                flame_up,
                Callback::new(move |up| state.update(|s| s.flame_up = up)),
            )}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_with_an_ellipsis() {
        assert_eq!(fit_label("load_json", 100.0, 6.0).as_deref(), Some("load_json"));
        assert_eq!(fit_label("load_json", 36.0, 6.0).as_deref(), Some("load_…"));
        assert_eq!(fit_label("load_json", 12.0, 6.0), None);
    }

    #[test]
    fn colours_are_stable_and_split_library_from_program() {
        let a = frame_color("parse", "/srv/app.py", false);
        assert_eq!(a, frame_color("parse", "/srv/app.py", false));
        let hue = |c: &str| c[4..].split(' ').next().unwrap().parse::<f64>().unwrap();
        assert!(hue(&a) < 60.0, "{a}");
        assert!(hue(&frame_color("loads", "/usr/lib/python3.11/json/__init__.py", false)) >= 195.0);
    }
}
