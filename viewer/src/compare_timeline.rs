//! Compare mode's timeline: the base's and the head's traced heap on one time axis and one
//! byte axis (the longer run sets the axis), hover for both values at a moment.

use leptos::prelude::*;

use crate::chart_canvas::{Chart, ChartCanvas, Painter, Size, Tooltip};
use crate::diff_flame::delta_text;
use crate::timeline::{Plot, TimelineData};
use crate::{units, ByPtr};

/// Series colours: blue base, orange head (the diff flame graph's shrink/grow hues).
const BASE_COLOR: &str = "hsl(212 70% 50%)";
const HEAD_COLOR: &str = "hsl(28 90% 50%)";

#[derive(Clone, PartialEq)]
pub struct CompareTimelineChart {
    /// Both computed over the same span (`TimelineData::compute_until`).
    pub base: ByPtr<TimelineData>,
    pub head: ByPtr<TimelineData>,
}

impl CompareTimelineChart {
    fn plot(&self, size: Size) -> Plot {
        let (b, h) = (&self.base.0, &self.head.0);
        let y_max = [&b.heap, &h.heap].iter().flat_map(|s| s.iter()).map(|b| b.max).max();
        Plot::new(size, b.duration_ns.max(h.duration_ns), y_max.unwrap_or(1).max(1))
    }
}

impl Chart for CompareTimelineChart {
    type Hit = usize;

    fn draw(&self, painter: &Painter<'_>, hover: Option<&usize>) {
        let p = self.plot(painter.size);
        p.draw_axes(painter);
        p.draw_series(painter, &self.base.0.heap, BASE_COLOR, 0.12);
        p.draw_series(painter, &self.head.0.heap, HEAD_COLOR, 0.12);
        let ctx = painter.ctx;
        for (d, color) in [(&self.base.0, BASE_COLOR), (&self.head.0, HEAD_COLOR)] {
            let (peak, at) = d.peak_heap;
            if peak > 0 {
                ctx.set_fill_style_str(color);
                ctx.begin_path();
                let _ = ctx.arc(p.x_of(at), p.y_of(peak), 4.0, 0.0, std::f64::consts::TAU);
                ctx.fill();
            }
        }
        if let Some(&i) = hover {
            let n = self.head.0.heap.len().max(1) as f64;
            let x = (p.x + p.w * (i as f64 + 0.5) / n).round() + 0.5;
            ctx.set_stroke_style_str(&painter.theme.axis);
            ctx.set_line_width(1.0);
            ctx.begin_path();
            ctx.move_to(x, p.y);
            ctx.line_to(x, p.y + p.h);
            ctx.stroke();
        }
    }

    fn hit_test(&self, size: Size, x: f64, y: f64) -> Option<usize> {
        let p = self.plot(size);
        if !p.contains(x, y) {
            return None;
        }
        let n = self.head.0.heap.len();
        Some((((x - p.x) / p.w * n as f64) as usize).min(n.saturating_sub(1)))
    }

    fn tooltip(&self, &i: &usize) -> Option<Tooltip> {
        let (b, h) = (self.base.0.heap.get(i)?, self.head.0.heap.get(i)?);
        let end = self.base.0.duration_ns.max(self.head.0.duration_ns);
        Some(Tooltip {
            title: format!("{} – {}", units::time_ns(h.t0), units::time_ns(h.t1.min(end))),
            location: None,
            lines: vec![
                format!("Head heap: {}", units::bytes(h.max)),
                format!("Base heap: {}", units::bytes(b.max)),
                format!("Change: {}", delta_text(b.max, h.max)),
            ],
        })
    }
}

#[component]
pub fn CompareTimeline(base: ByPtr<TimelineData>, head: ByPtr<TimelineData>) -> impl IntoView {
    let chart = Signal::derive(move || {
        Some(CompareTimelineChart { base: base.clone(), head: head.clone() })
    });
    view! {
        <section class="panel" aria-label="Traced heap over time, base and head">
            <div class="panel-head">
                <span class="panel-title">"Traced heap over time"</span>
                <span class="legend">
                    <span><i style=format!("background:{BASE_COLOR}")></i>"Base"</span>
                    <span><i style=format!("background:{HEAD_COLOR}")></i>"Head"</span>
                </span>
                <span class="spacer"></span>
                <span class="panel-note">"Both runs on one time axis from their start"</span>
            </div>
            <ChartCanvas
                chart=chart
                class="chart-timeline"
                canvas_id="compare-timeline-canvas"
                label="Traced heap over time of the base and head recordings"
            />
        </section>
    }
}
