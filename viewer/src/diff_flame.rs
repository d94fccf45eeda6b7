//! The differential flame graph of compare mode: widths are the head's memory, colours the
//! change since the base (orange grew, blue shrank: a colour-blind-safe diverging pair), new
//! paths outlined and marked `+`, vanished ones hatched and marked `−`, changes under the noise
//! threshold grey. The tree, layout, colour classes and hit testing come from
//! `memlens-format`'s `DiffTree`; the keyboard from `use_flame_keys`; this module only paints
//! and wires signals.

use leptos::prelude::*;
use memlens_analysis::{diff_hit, diff_layout, DiffRect, Shade};

use crate::breadcrumb::Breadcrumb;
use crate::chart_canvas::{Chart, ChartCanvas, Painter, Size, Tooltip};
use crate::compare_model::{delta_text, CompareData};
use crate::flame_model::ROW_H;
use crate::panel::PanelHead;
use crate::url_state::{ViewState, ZoomStep};
use crate::use_flame_keys::{keyed_flame, use_flame_keys};
use crate::{units, ByPtr};

const MIN_W: f64 = 0.0005;
const MAX_ROWS: i32 = 300;
const MIN_LABEL_W: f64 = 28.0;

/// Noise thresholds offered, in basis points of the larger total.
const NOISE_CHOICES: [u32; 6] = [0, 10, 50, 100, 200, 500];

/// Hues of the diverging palette (orange / blue, after Okabe & Ito's colour-blind-safe set).
const GROW_HUE: f64 = 28.0;
const SHRINK_HUE: f64 = 212.0;

/// The fill for a shade.
pub fn shade_color(shade: Shade, dark: bool) -> String {
    let neutral = if dark { "hsl(220 8% 62%)" } else { "hsl(220 10% 84%)" };
    let ramp =
        |hue: f64, f: f64| format!("hsl({hue:.0} {:.0}% {:.0}%)", 35.0 + 55.0 * f, 86.0 - 34.0 * f);
    match shade {
        Shade::Neutral => neutral.to_string(),
        Shade::Grew(f) => ramp(GROW_HUE, f),
        Shade::Shrank(f) => ramp(SHRINK_HUE, f),
        Shade::New => ramp(GROW_HUE, 1.0),
        Shade::Gone => ramp(SHRINK_HUE, 0.75),
    }
}

/// The differential flame graph as a [`Chart`].
#[derive(Clone, PartialEq)]
pub struct DiffFlameChart {
    pub data: ByPtr<CompareData>,
    pub rects: ByPtr<Vec<DiffRect>>,
    pub zoom: u32,
    /// Changes below this many bytes are noise.
    pub noise: u64,
    pub min_row: i32,
    /// The node the keyboard cursor is on, while the canvas has the focus.
    pub cursor: Option<u32>,
}

impl DiffFlameChart {
    pub fn new(data: ByPtr<CompareData>, zoom: u32, noise_bp: u32) -> DiffFlameChart {
        let rects = diff_layout(&data.0.tree, zoom, MIN_W);
        let min_row = rects.first().map_or(0, |r| r.row);
        let noise = data.0.tree.noise_bytes(f64::from(noise_bp) / 10_000.0);
        DiffFlameChart { data, rects: ByPtr::new(rects), zoom, noise, min_row, cursor: None }
    }

    pub fn rows(&self) -> i32 {
        self.rects.0.last().map_or(1, |r| r.row - self.min_row + 1)
    }

    fn rect_of(&self, node: u32) -> Option<&DiffRect> {
        self.rects.0.iter().find(|r| r.node == Some(node))
    }

    /// The differential flame graph is always an icicle.
    fn flame_up(&self) -> bool {
        false
    }

    fn row_y(&self, row: i32) -> f64 {
        f64::from(row - self.min_row) * ROW_H
    }
}

keyed_flame!(DiffFlameChart);

impl Chart for DiffFlameChart {
    type Hit = DiffRect;

    fn draw(&self, painter: &Painter<'_>, hover: Option<&DiffRect>) {
        let (ctx, theme, width) = (painter.ctx, painter.theme, painter.size.width);
        let tree = &self.data.0.tree;
        if tree.nodes[0].weight == 0 {
            painter.empty_note("No memory in this view in either recording.");
            return;
        }
        let char_w = painter.label_font();
        for r in self.rects.0.iter() {
            let (x, w) = (r.x * width, r.w * width);
            if w < 0.4 {
                continue;
            }
            let y = self.row_y(r.row);
            let shade = tree.shade(r, self.noise);
            let gap = if w > 3.0 { 1.0 } else { 0.0 };
            ctx.set_global_alpha(if r.row < 0 { 0.45 } else { 1.0 });
            ctx.set_fill_style_str(&shade_color(shade, theme.dark));
            ctx.fill_rect(x, y, w - gap, ROW_H - 1.0);
            if shade == Shade::Gone {
                hatch(ctx, x, y, w - gap, ROW_H - 1.0, &theme.frame_text);
            }
            if shade == Shade::New && w > 3.0 {
                ctx.set_stroke_style_str(&theme.frame_text);
                ctx.set_line_width(1.0);
                ctx.stroke_rect(x + 0.5, y + 0.5, w - gap - 1.0, ROW_H - 2.0);
            }
            if w >= MIN_LABEL_W {
                let name = match r.node {
                    Some(0) => format!("all · {}", delta_text(r.base.bytes, r.head.bytes)),
                    Some(n) => tree.nodes[n as usize].function.clone(),
                    None => "(smaller callees)".to_string(),
                };
                let mark = match shade {
                    Shade::New => "+ ",
                    Shade::Gone => "− ",
                    _ => "",
                };
                let text = format!("{mark}{name}");
                if let Some(text) = fit_label(&text, w - 8.0, char_w) {
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

    fn hit_test(&self, size: Size, x: f64, y: f64) -> Option<DiffRect> {
        if size.width <= 0.0 || y < 0.0 {
            return None;
        }
        let row = (y / ROW_H).floor() as i32 + self.min_row;
        diff_hit(&self.rects.0, x / size.width, row).copied()
    }

    fn tooltip(&self, r: &DiffRect) -> Option<Tooltip> {
        let tree = &self.data.0.tree;
        let mut lines = vec![
            format!(
                "Head: {} · {}",
                units::bytes(r.head.bytes),
                units::plural(r.head.count, "allocation", "allocations")
            ),
            format!(
                "Base: {} · {}",
                units::bytes(r.base.bytes),
                units::plural(r.base.count, "allocation", "allocations")
            ),
            format!("Change: {}", delta_text(r.base.bytes, r.head.bytes)),
        ];
        match tree.shade(r, self.noise) {
            Shade::New => lines.push("New in head".into()),
            Shade::Gone => lines.push("Gone in head (drawn at its base width)".into()),
            Shade::Neutral if r.base.bytes != r.head.bytes => {
                lines.push("Within the noise threshold".into())
            }
            _ => {}
        }
        let (title, location) = match r.node {
            None => ("Smaller callees (merged)".to_string(), None),
            Some(0) => ("All stacks".to_string(), None),
            Some(n) => {
                let node = &tree.nodes[n as usize];
                let loc = if node.line > 0 {
                    format!("{}:{}", node.file, node.line)
                } else {
                    node.file.clone()
                };
                (node.function.clone(), Some(loc))
            }
        };
        Some(Tooltip { title, location, lines })
    }
}

/// Diagonal stripes over a rectangle (vanished frames).
fn hatch(ctx: &web_sys::CanvasRenderingContext2d, x: f64, y: f64, w: f64, h: f64, color: &str) {
    ctx.save();
    ctx.begin_path();
    ctx.rect(x, y, w, h);
    ctx.clip();
    ctx.set_global_alpha(0.28);
    ctx.set_stroke_style_str(color);
    ctx.set_line_width(1.0);
    ctx.begin_path();
    let mut sx = x - h;
    while sx < x + w {
        ctx.move_to(sx, y + h);
        ctx.line_to(sx + h, y);
        sx += 5.0;
    }
    ctx.stroke();
    ctx.restore();
}

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

/// The differential flame graph panel: legend, noise control, breadcrumb and the canvas.
#[component]
pub fn DiffFlameGraph(
    data: Memo<Result<ByPtr<CompareData>, String>>,
    state: RwSignal<ViewState>,
) -> impl IntoView {
    let zoom_path = Memo::new(move |_| state.with(|s| s.zoom.clone()));
    let noise_bp = Memo::new(move |_| state.with(|s| s.noise_bp));
    let layout = Memo::new(move |_| {
        let d = data.get().ok()?;
        let keys: Vec<(String, String)> =
            zoom_path.get().into_iter().map(|s| (s.function, s.file)).collect();
        let zoom = d.0.tree.find_path(&keys);
        Some(crate::timed("diff flame layout", || DiffFlameChart::new(d, zoom, noise_bp.get())))
    });
    let set_zoom = move |node: u32| {
        let Some(c) = layout.get_untracked() else { return };
        let tree = &c.data.0.tree;
        let path = tree
            .path(node)
            .into_iter()
            .skip(1)
            .map(|n| {
                let n = &tree.nodes[n as usize];
                ZoomStep { function: n.function.clone(), file: n.file.clone() }
            })
            .collect();
        state.update(|s| s.zoom = path);
    };
    let keys = use_flame_keys(
        layout,
        Callback::new(set_zoom),
        Callback::new(move |()| {
            state.update(|s| {
                s.zoom.pop();
            })
        }),
        "diff-flame-canvas",
    );
    let chart = Memo::new(move |_| {
        let mut c = layout.get()?;
        c.cursor = keys.cursor.get();
        Some(c)
    });
    let on_click = Callback::new(move |r: DiffRect| {
        if let Some(node) = r.node {
            set_zoom(node);
        }
    });
    let crumbs = Signal::derive(move || {
        let c = layout.get()?;
        let tree = &c.data.0.tree;
        let label = |n: u32| match n {
            0 => "all".to_string(),
            n => tree.nodes[n as usize].function.clone(),
        };
        Some(tree.path(c.zoom).into_iter().map(|n| (n, label(n))).collect::<Vec<_>>())
    });
    let chart_signal = Signal::derive(move || chart.get());
    let height = Signal::derive(move || {
        layout.with(|c| {
            c.as_ref().map_or(0.0, |c| f64::from(c.rows().clamp(4, MAX_ROWS)) * ROW_H + 1.0)
        })
    });
    let swatch =
        |shade: Shade| format!("background:{}", shade_color(shade, crate::theme::prefers_dark()));
    view! {
        <section class="panel" aria-label="Differential flame graph">
            <PanelHead title="Differential flame graph">
                <span class="legend" id="diff-legend">
                    <span><i style=swatch(Shade::Grew(1.0))></i>"grew"</span>
                    <span><i style=swatch(Shade::Shrank(1.0))></i>"shrank"</span>
                    <span><i class="legend-new" style=swatch(Shade::New)></i>"+ new in head"</span>
                    <span><i class="legend-gone" style=swatch(Shade::Gone)></i>"− gone in head"</span>
                    <span><i style=swatch(Shade::Neutral)></i>"within noise"</span>
                </span>
                <span class="spacer"></span>
                <label class="panel-note">
                    "Noise threshold "
                    <select
                        id="noise-threshold"
                        on:change=move |ev| {
                            if let Ok(bp) = event_target_value(&ev).parse::<u32>() {
                                state.update(|s| s.noise_bp = bp);
                            }
                        }
                    >
                        {NOISE_CHOICES
                            .into_iter()
                            .map(|bp| {
                                view! {
                                    <option value=bp.to_string() selected=move || noise_bp.get() == bp>
                                        {format!("{}%", f64::from(bp) / 100.0)}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
            </PanelHead>
            <p class="panel-hint">
                "Width: memory in the head recording. Colour: change since the base, by call path."
            </p>
            <Breadcrumb id="diff-breadcrumb" path=crumbs on_zoom=Callback::new(set_zoom) />
            {move || data.get().err().map(|m| view! { <p class="panel-message">{m}</p> })}
            <div class="flame-scroll">
                <ChartCanvas
                    chart=chart_signal
                    class="chart-flame"
                    canvas_id="diff-flame-canvas"
                    label="Differential flame graph: head memory by call stack, coloured by change. Arrow keys move between frames, Enter zooms in, Escape zooms out."
                    height=height
                    on_click=on_click
                    on_key=keys.on_key
                    on_focus=keys.on_focus
                    described_by="diff-flame-focus"
                />
            </div>
            <p class="chart-focus" id="diff-flame-focus" aria-live="polite">{keys.text}</p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_and_shrinkage_use_different_hues_and_noise_is_grey() {
        let hue = |c: &str| c[4..].split(' ').next().unwrap().parse::<f64>().unwrap();
        assert_eq!(hue(&shade_color(Shade::Grew(0.5), false)), GROW_HUE);
        assert_eq!(hue(&shade_color(Shade::Shrank(0.5), false)), SHRINK_HUE);
        assert_eq!(hue(&shade_color(Shade::Neutral, false)), 220.0);
        assert_ne!(shade_color(Shade::Grew(0.2), false), shade_color(Shade::Grew(1.0), false));
    }

    #[test]
    fn delta_text_shows_bytes_and_percent() {
        assert_eq!(delta_text(40 << 20, 60 << 20), "+20.0 MiB (+50%)");
        assert_eq!(delta_text(0, 1024), "+1.00 KiB (new)");
        assert_eq!(delta_text(2048, 1024), "-1.00 KiB (-50%)");
        assert_eq!(delta_text(5, 5), "0 B");
        assert_eq!(delta_text(1024, 8 << 20), "+8.00 MiB (×8192)");
    }
}
