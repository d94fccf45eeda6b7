//! Compare mode's timeline: the base's and the head's traced heap on one time axis and one
//! byte axis (the longer run sets the axis), hover for both values at a moment.

use leptos::prelude::*;

use crate::chart_canvas::{Chart, ChartCanvas, Painter, Size, Tooltip};
use crate::compare_model::delta_text;
use crate::load::Loaded;
use crate::panel::PanelHead;
use crate::plot::Plot;
use crate::timeline_model::{series_of, series_query, TimelineData};
use crate::use_worker::use_worker;
use crate::{units, ByPtr};

/// Series colours: blue base, orange head (the diff flame graph's shrink/grow hues).
const BASE_COLOR: &str = "hsl(212 70% 50%)";
const HEAD_COLOR: &str = "hsl(28 90% 50%)";

#[derive(Clone, PartialEq)]
pub struct CompareTimelineChart {
    /// Both over the same window.
    pub base: ByPtr<TimelineData>,
    pub head: ByPtr<TimelineData>,
}

impl CompareTimelineChart {
    fn plot(&self, size: Size) -> Plot {
        let (b, h) = (&self.base.0, &self.head.0);
        let y_max = [&b.heap, &h.heap].iter().flat_map(|s| s.iter()).map(|b| b.max).max();
        Plot::new(size, (0, b.t1.max(h.t1)), y_max.unwrap_or(1).max(1))
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
        let end = self.base.0.t1.max(self.head.0.t1);
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

/// Both recordings' heap over `[0, longer run's end]`, at the canvas' width.
#[component]
pub fn CompareTimeline(base: ByPtr<Loaded>, head: ByPtr<Loaded>) -> impl IntoView {
    let (width, set_width) = signal(0.0f64);
    let duration = |l: &ByPtr<Loaded>| l.0.now().0.recording.summary().duration_ns;
    let window = (0, duration(&base).max(duration(&head)).max(1) + 1);
    let side = |l: &ByPtr<Loaded>| {
        let (l, asked) = (l.clone(), l.clone());
        let query = Memo::new(move |_| {
            series_query("cmp-timeline", &asked.0, 0, window, width.get(), None)
        });
        let answer = use_worker(query, 1);
        Memo::new(move |_| {
            let a = answer.result.get()?;
            let rec = &l.0.now().0.recording;
            let data = a.and_then(|a| Ok(TimelineData::new(rec, series_of(&a.0)?, window, false)));
            Some(data.map(ByPtr::new))
        })
    };
    let (b, h) = (side(&base), side(&head));
    let chart = Signal::derive(move || {
        Some(CompareTimelineChart { base: b.get()?.ok()?, head: h.get()?.ok()? })
    });
    let error = move || {
        let e = b.get().and_then(Result::err).or_else(|| h.get().and_then(Result::err))?;
        Some(view! { <div class="banner banner-error" role="alert">{e}</div> })
    };
    view! {
        <section class="panel" aria-label="Traced heap over time, base and head">
            <PanelHead title="Traced heap over time">
                <span class="legend">
                    <span><i style=format!("background:{BASE_COLOR}")></i>"Base"</span>
                    <span><i style=format!("background:{HEAD_COLOR}")></i>"Head"</span>
                </span>
                <span class="spacer"></span>
                <span class="panel-note">"Both runs on one time axis from their start"</span>
            </PanelHead>
            {error}
            <ChartCanvas
                chart=chart
                class="chart-timeline"
                canvas_id="compare-timeline-canvas"
                label="Traced heap over time of the base and head recordings"
                on_resize=Callback::new(move |size: Size| set_width.set(size.width))
            />
        </section>
    }
}
