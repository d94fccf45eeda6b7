//! The one generic canvas component behind every chart (timeline, flame graph).
//!
//! It owns everything that is the same for all charts: device-pixel-ratio scaling, following
//! the element's size (ResizeObserver), coalescing redraws into one per animation frame,
//! pointer hover with a tooltip, click and horizontal drag, and keyboard focus for charts
//! that take keys (`on_key`: the canvas becomes a tab stop). A chart only supplies a [`Chart`]
//! value (usually a `Memo` over the data and view state) with `draw` and `hit_test` over the
//! same geometry, so what is drawn and what is hit can never disagree.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use crate::theme::Theme;

/// Size of the drawing area in CSS pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Size {
    pub width: f64,
    pub height: f64,
}

/// What a chart gets to draw with: a context already scaled to CSS pixels, its size, colours.
pub struct Painter<'a> {
    pub ctx: &'a CanvasRenderingContext2d,
    pub size: Size,
    pub theme: &'a Theme,
}

impl Painter<'_> {
    /// A note centred on an empty chart.
    pub fn empty_note(&self, text: &str) {
        self.ctx.set_fill_style_str(&self.theme.axis);
        self.ctx.set_font(&self.theme.font(13.0, 400));
        self.ctx.set_text_align("center");
        self.ctx.set_text_baseline("middle");
        let _ = self.ctx.fill_text(text, self.size.width / 2.0, self.size.height / 2.0);
    }

    /// Sets the font for box labels (flame graphs) and returns the average character width,
    /// for fitting labels into boxes.
    pub fn label_font(&self) -> f64 {
        self.ctx.set_font(&self.theme.font(12.0, 400));
        self.ctx.set_text_baseline("middle");
        self.ctx.set_text_align("left");
        self.ctx.measure_text("abcdefghijklmnopqrstuvwxyz_ABC").map_or(6.5, |m| m.width() / 30.0)
    }

    /// Outlines the hovered box of a row layout (flame graphs): `x`, `w` in 0..1 of the width,
    /// `y` and `h` in CSS pixels, inset so the stroke stays inside the box.
    pub fn outline_hover(&self, x: f64, w: f64, y: f64, h: f64) {
        self.outline(x, w, y, h, &self.theme.text, 1.5);
    }

    /// Outlines the box the keyboard cursor is on: thicker, in the focus colour.
    pub fn outline_focus(&self, x: f64, w: f64, y: f64, h: f64) {
        self.outline(x, w, y, h, &self.theme.focus, 3.0);
    }

    fn outline(&self, x: f64, w: f64, y: f64, h: f64, color: &str, line: f64) {
        let (width, inset) = (self.size.width, line / 2.0);
        self.ctx.set_stroke_style_str(color);
        self.ctx.set_line_width(line);
        let (bw, bh) = ((w * width - 1.0 - line).max(1.0), h - 1.0 - line);
        self.ctx.stroke_rect(x * width + inset, y + inset, bw, bh);
    }
}

/// Text shown next to the pointer for a hit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tooltip {
    pub title: String,
    pub location: Option<String>,
    pub lines: Vec<String>,
}

/// A horizontal drag between two x positions (CSS px), on a canvas of `size`; `done` on
/// release.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DragSpan {
    pub from: f64,
    pub to: f64,
    pub size: Size,
    pub done: bool,
}

/// A drawable, hit-testable chart. Implementations are cheap to clone (they hold `Arc`s).
pub trait Chart: Clone + Send + Sync + 'static {
    /// What `hit_test` finds under the pointer.
    type Hit: Clone + PartialEq + Send + Sync + 'static;
    /// Paint everything, highlighting `hover` if there is one. Must not write signals.
    fn draw(&self, painter: &Painter<'_>, hover: Option<&Self::Hit>);
    /// What is at (`x`, `y`) CSS pixels from the top-left corner.
    fn hit_test(&self, size: Size, x: f64, y: f64) -> Option<Self::Hit>;
    /// The tooltip for a hit (`None`: no tooltip).
    fn tooltip(&self, hit: &Self::Hit) -> Option<Tooltip>;
}

/// Pointer movement (CSS px) that turns a press into a drag instead of a click.
const DRAG_THRESHOLD_PX: f64 = 4.0;

/// What the next animation frame paints.
type Frame<C> = (Option<C>, Size, Option<<C as Chart>::Hit>);

#[derive(Clone, PartialEq)]
struct HoverAt<H> {
    hit: H,
    /// Pointer position in the viewport (the tooltip is `position: fixed`, so panels with
    /// `overflow: hidden` never clip it).
    client_x: f64,
    client_y: f64,
}

/// A canvas that follows its container's size and paints `chart` once per animation frame.
#[component]
pub fn ChartCanvas<C: Chart>(
    /// The chart to paint (`None`: a blank canvas); every change schedules one redraw.
    chart: Signal<Option<C>>,
    /// Height of the chart in CSS px, when it depends on the data (else the class sets it).
    #[prop(optional, into)]
    height: Option<Signal<f64>>,
    /// Extra class for the container (sets the height).
    class: &'static str,
    /// `data-testid`-style id of the canvas element.
    canvas_id: &'static str,
    /// Called on a click (press and release without dragging) on a hit.
    #[prop(optional, into)]
    on_click: Option<Callback<C::Hit>>,
    /// Called while dragging horizontally and once more on release.
    #[prop(optional, into)]
    on_drag: Option<Callback<DragSpan>>,
    /// Shown as the accessible label of the canvas (with `on_key`: say which keys do what).
    label: &'static str,
    /// Called on a key pressed while the canvas has the focus; with it, the canvas is a tab
    /// stop (`role="application"`, so screen readers pass the keys on).
    #[prop(optional, into)]
    on_key: Option<Callback<web_sys::KeyboardEvent>>,
    /// Told when the canvas gets the focus from the keyboard (`true`: Tab, not a click, which
    /// must not show a keyboard cursor) or loses it (`false`).
    #[prop(optional, into)]
    on_focus: Option<Callback<bool>>,
    /// The id of an element that describes what the keyboard cursor is on (`aria-describedby`).
    #[prop(optional)]
    described_by: Option<&'static str>,
    /// Told the canvas' size (CSS px) whenever it changes, for charts whose data depends on
    /// their width (the timeline asks for about one bucket per device pixel).
    #[prop(optional, into)]
    on_resize: Option<Callback<Size>>,
) -> impl IntoView {
    let canvas_ref = NodeRef::<html::Canvas>::new();
    let (size, set_size) = signal(Size::default());
    let (hover, set_hover) = signal(None::<HoverAt<C::Hit>>);
    let theme_epoch = crate::theme::use_theme_epoch();

    // Resize: follow the canvas' CSS box; the backing store is re-sized in the draw below.
    Effect::new(move |_| {
        let Some(canvas) = canvas_ref.get() else { return };
        let measure = {
            let canvas = canvas.clone();
            move || {
                let r = canvas.get_bounding_client_rect();
                let next = Size { width: r.width(), height: r.height() };
                // (A measure or a paint already queued can come after the chart is gone with
                // its view: it then does nothing.)
                let Some(now) = size.try_get_untracked() else { return };
                if now != next {
                    set_size.set(next);
                    if let Some(cb) = on_resize {
                        cb.run(next);
                    }
                }
            }
        };
        measure();
        let cb = Closure::<dyn FnMut()>::new(measure);
        if let Ok(observer) = web_sys::ResizeObserver::new(cb.as_ref().unchecked_ref()) {
            observer.observe(&canvas);
            let cb = send_wrapper::SendWrapper::new((cb, observer));
            on_cleanup(move || {
                let (_cb, observer) = cb.take();
                observer.disconnect();
            });
        }
    });

    // Redraw: the effect only records what to draw; one rAF callback paints the latest state.
    let pending: Rc<RefCell<Option<Frame<C>>>> = Rc::default();
    let scheduled = Rc::new(Cell::new(false));
    let first_paint = Rc::new(Cell::new(false));
    Effect::new(move |_| {
        theme_epoch.track();
        let state = (chart.get(), size.get(), hover.with(|h| h.as_ref().map(|h| h.hit.clone())));
        *pending.borrow_mut() = Some(state);
        if scheduled.replace(true) {
            return;
        }
        let pending = pending.clone();
        let scheduled = scheduled.clone();
        let first_paint = first_paint.clone();
        request_animation_frame(move || {
            scheduled.set(false);
            let Some((chart, size, hit)) = pending.borrow_mut().take() else { return };
            if let Some(canvas) = canvas_ref.try_get_untracked().flatten() {
                let timing = Timing::start(canvas_id);
                paint(&canvas, &chart, size, hit.as_ref());
                timing.end(chart.is_some() && size.width > 0.0 && !first_paint.replace(true));
            }
        });
    });

    // Pointer handling: hover + click + drag.
    let press = Rc::new(Cell::new(None::<(f64, bool)>)); // (start x, dragging)
    let local = move |ev: &web_sys::PointerEvent| {
        let s = size.get_untracked();
        (f64::from(ev.offset_x()).clamp(0.0, s.width), f64::from(ev.offset_y()), s)
    };
    let on_move = {
        let press = press.clone();
        move |ev: web_sys::PointerEvent| {
            let (x, y, s) = local(&ev);
            if let Some((x0, dragging)) = press.get() {
                if dragging || (x - x0).abs() >= DRAG_THRESHOLD_PX {
                    press.set(Some((x0, true)));
                    if let Some(cb) = on_drag {
                        cb.run(DragSpan { from: x0, to: x, size: s, done: false });
                    }
                }
            }
            let hit = chart.with_untracked(|c| c.as_ref().and_then(|c| c.hit_test(s, x, y)));
            let (client_x, client_y) = (f64::from(ev.client_x()), f64::from(ev.client_y()));
            let next = hit.map(|hit| HoverAt { hit, client_x, client_y });
            if hover.with_untracked(|h| *h != next) {
                set_hover.set(next);
            }
        }
    };
    let on_down = {
        let press = press.clone();
        move |ev: web_sys::PointerEvent| {
            if ev.button() != 0 {
                return;
            }
            if let Some(canvas) = canvas_ref.get_untracked() {
                let _ = canvas.set_pointer_capture(ev.pointer_id());
            }
            let (x, _, _) = local(&ev);
            press.set(Some((x, false)));
        }
    };
    let on_up = move |ev: web_sys::PointerEvent| {
        let (x, y, s) = local(&ev);
        match press.take() {
            Some((x0, true)) => {
                if let Some(cb) = on_drag {
                    cb.run(DragSpan { from: x0, to: x, size: s, done: true });
                }
            }
            Some((_, false)) => {
                let hit = chart.with_untracked(|c| c.as_ref().and_then(|c| c.hit_test(s, x, y)));
                if let (Some(cb), Some(hit)) = (on_click, hit) {
                    cb.run(hit);
                }
            }
            None => {}
        }
    };

    let tooltip = move || {
        let h = hover.get()?;
        let tip = chart.with(|c| c.as_ref().and_then(|c| c.tooltip(&h.hit)))?;
        // Keep the tooltip on screen: flip it left/up near the viewport's right/bottom edge.
        let (vw, vh) = viewport();
        let left = if h.client_x > vw * 0.65 {
            format!("right:{}px", vw - h.client_x + 14.0)
        } else {
            format!("left:{}px", h.client_x + 14.0)
        };
        let top = if h.client_y > vh * 0.65 {
            format!("bottom:{}px", vh - h.client_y + 14.0)
        } else {
            format!("top:{}px", h.client_y + 14.0)
        };
        Some(view! {
            <div class="tooltip" role="tooltip" style=format!("{left};{top}")>
                <div class="tt-title">{tip.title}</div>
                {tip.location.map(|l| view! { <div class="tt-loc">{l}</div> })}
                {tip.lines.into_iter().map(|l| view! { <div>{l}</div> }).collect_view()}
            </div>
        })
    };

    view! {
        <div
            class=format!("chart {class}")
            style=move || height.map(|h| format!("height:{}px", h.get())).unwrap_or_default()
        >
            <canvas
                id=canvas_id
                node_ref=canvas_ref
                role=if on_key.is_some() { "application" } else { "img" }
                tabindex=on_key.map(|_| "0")
                aria-label=label
                aria-describedby=described_by
                on:keydown=move |ev| {
                    if let Some(cb) = on_key {
                        cb.run(ev);
                    }
                }
                on:focus=move |_| {
                    // Focus and blur can reach a canvas that is being taken down with its view
                    // (a key that shows another view): what it had is gone, and so is the event.
                    let by_keys = canvas_ref
                        .try_get_untracked()
                        .flatten()
                        .is_some_and(|c| c.matches(":focus-visible").unwrap_or(true));
                    if let (Some(cb), true) = (on_focus, by_keys) {
                        let _ = cb.try_run(true);
                    }
                }
                on:blur=move |_| {
                    if let Some(cb) = on_focus {
                        let _ = cb.try_run(false);
                    }
                }
                on:pointermove=on_move
                on:pointerdown=on_down
                on:pointerup=on_up
                on:pointerleave=move |_| set_hover.set(None)
            ></canvas>
            {tooltip}
        </div>
    }
}

/// User Timing entries for benchmarks (`bench/viewer_bench.mjs`) and the browser's profiler:
/// each paint is measured as `memlens:draw:<canvas id>`, and the first paint with data is
/// marked `memlens:first-paint:<canvas id>` (the flame graph's is "interactive").
struct Timing {
    perf: Option<web_sys::Performance>,
    canvas_id: &'static str,
}

impl Timing {
    fn start(canvas_id: &'static str) -> Timing {
        let perf = web_sys::window().and_then(|w| w.performance());
        if let Some(p) = &perf {
            let _ = p.mark(&format!("memlens:draw-start:{canvas_id}"));
        }
        Timing { perf, canvas_id }
    }

    fn end(self, first_with_data: bool) {
        let Some(p) = self.perf else { return };
        let start = format!("memlens:draw-start:{}", self.canvas_id);
        let _ = p.measure_with_start_mark(&format!("memlens:draw:{}", self.canvas_id), &start);
        p.clear_marks_with_mark_name(&start);
        if first_with_data {
            let _ = p.mark(&format!("memlens:first-paint:{}", self.canvas_id));
        }
    }
}

/// The viewport's size in CSS pixels.
fn viewport() -> (f64, f64) {
    let Some(w) = web_sys::window() else { return (1024.0, 768.0) };
    let dim = |v: Result<wasm_bindgen::JsValue, _>| v.ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
    (dim(w.inner_width()), dim(w.inner_height()))
}

/// Size the backing store for the device pixel ratio and let the chart paint in CSS pixels.
fn paint<C: Chart>(
    canvas: &HtmlCanvasElement,
    chart: &Option<C>,
    size: Size,
    hover: Option<&C::Hit>,
) {
    if size.width <= 0.0 || size.height <= 0.0 {
        return;
    }
    let dpr = web_sys::window().map(|w| w.device_pixel_ratio()).unwrap_or(1.0).max(1.0);
    let (w, h) = ((size.width * dpr).round() as u32, (size.height * dpr).round() as u32);
    if canvas.width() != w || canvas.height() != h {
        canvas.set_width(w);
        canvas.set_height(h);
    }
    let Some(ctx) = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
    else {
        return;
    };
    let _ = ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0);
    let theme = Theme::read(canvas);
    ctx.set_fill_style_str(&theme.bg);
    ctx.fill_rect(0.0, 0.0, size.width, size.height);
    if let Some(chart) = chart {
        chart.draw(&Painter { ctx: &ctx, size, theme: &theme }, hover);
    }
}
