//! The memory timeline: process RSS and the traced heap over time, the heap's peak marked,
//! markers, gc runs and object censuses; hover for values, drag to select a time range (which
//! feeds the flame graph's range mode), zoom into the selection, click a census to show it in
//! the objects panel. The series of the visible window come from the worker, about one bucket
//! per device pixel, whatever the zoom. From the keyboard (Tab to the canvas): the arrows move
//! a cursor, Shift and the arrows select a range, Escape clears it, Enter shows the census at
//! the cursor, and a live region says what is under the cursor (`timeline_keys`).

use leptos::prelude::*;

use crate::chart_canvas::{Chart, ChartCanvas, DragSpan, Painter, Size, Tooltip};
use crate::load::Loaded;
use crate::panel::PanelHead;
use crate::plot::Plot;
use crate::protocol::{Answer, Request};
use crate::timeline_model::{series_of, series_query, TimelineData};
use crate::timeline_spans::SpanBars;
use crate::units;
use crate::url_state::ViewState;
use crate::use_time_keys::use_time_keys;
use crate::use_worker::{use_worker, Query};
use crate::ByPtr;

/// Marker and gc colours (the same in both themes: they sit on the chart background).
const MARKER_COLOR: &str = "hsl(285 45% 52%)";
const GC_COLORS: [&str; 3] = ["hsl(150 35% 62%)", "hsl(150 45% 45%)", "hsl(150 60% 30%)"];
const CENSUS_COLOR: &str = "hsl(190 75% 38%)";

/// The timeline as a [`Chart`].
#[derive(Clone, PartialEq)]
pub struct TimelineChart {
    pub data: ByPtr<TimelineData>,
    /// Selected range (ns).
    pub range: Option<(u64, u64)>,
    /// The census the objects panel shows, and the one it compares with (indices).
    pub census: (Option<usize>, Option<usize>),
    /// The keyboard cursor (ns), while the canvas has the focus.
    pub cursor: Option<u64>,
}

impl TimelineChart {
    fn plot(&self, size: Size) -> Plot {
        Plot::new(size, (self.data.0.t0, self.data.0.t1), self.data.0.y_max)
    }

    /// The time at canvas x (CSS px), clamped to the recording.
    pub fn time_at(&self, size: Size, x: f64) -> u64 {
        self.plot(size).time_at(x)
    }

    /// The bucket that holds time `t`.
    pub fn bucket_at(&self, t: u64) -> Option<usize> {
        let heap = &self.data.0.heap;
        let i = heap.partition_point(|b| b.t0 <= t).checked_sub(1)?;
        (t < heap[i].t1 || i + 1 == heap.len()).then_some(i)
    }

    /// What is under the keyboard cursor, in one line for screen readers.
    pub fn describe(&self, t: u64) -> Option<String> {
        let tip = self.tooltip(&TimelineHit { bucket: self.bucket_at(t)?, span: None })?;
        let mut parts = vec![format!("At {}", units::time_ns(t))];
        parts.extend(tip.lines);
        if let Some((a, b)) = self.range {
            parts.push(format!("selected {} – {}", units::time_ns(a), units::time_ns(b)));
        }
        Some(parts.join(" · "))
    }

    /// Whether `t` is within a few buckets of bucket `i` (thin marks are hard to hit exactly).
    fn near(&self, i: usize, t: u64) -> bool {
        let Some(b) = self.data.0.heap.get(i) else { return false };
        let slack = 3 * (b.t1 - b.t0);
        t + slack >= b.t0 && t < b.t1 + slack
    }

    /// The census nearest to bucket `i`, if one is close enough to click.
    pub fn census_near(&self, i: usize) -> Option<usize> {
        let b = self.data.0.heap.get(i)?;
        let mid = (b.t0 + b.t1) / 2;
        let d = &self.data.0.censuses;
        (0..d.len()).filter(|&c| self.near(i, d[c].0)).min_by_key(|&c| d[c].0.abs_diff(mid))
    }
}

/// What is under the pointer on the timeline: a bucket, and the span bar there if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineHit {
    pub bucket: usize,
    pub span: Option<usize>,
}

impl Chart for TimelineChart {
    type Hit = TimelineHit;

    fn draw(&self, painter: &Painter<'_>, hover: Option<&TimelineHit>) {
        let ctx = painter.ctx;
        let theme = painter.theme;
        let d = &self.data.0;
        let p = self.plot(painter.size);
        p.draw_axes(painter);

        p.draw_selection(painter, self.range);
        p.draw_series(painter, &d.rss, &theme.rss, 0.12);
        p.draw_series(painter, &d.heap, &theme.heap, 0.22);
        let (peak, at) = d.peak_heap;
        p.draw_peak(painter, peak, at, &format!("peak {}", units::bytes(peak)));
        d.spans.draw(painter, &p, hover.and_then(|h| h.span));

        // Garbage collections: ticks under the plot's baseline, darker for older generations.
        for &(t, generation) in d.gcs.iter().filter(|g| p.shows(g.0)) {
            let x = p.x_of(t).round() + 0.5;
            ctx.set_stroke_style_str(GC_COLORS[usize::from(generation.min(2))]);
            ctx.set_line_width(1.0);
            ctx.begin_path();
            ctx.move_to(x, p.y + p.h - 6.0 - 3.0 * f64::from(generation.min(2)));
            ctx.line_to(x, p.y + p.h);
            ctx.stroke();
        }
        // Markers: a dashed rule with its label at the top.
        ctx.set_font(&theme.font(11.0, 600));
        ctx.set_text_baseline("top");
        ctx.set_text_align("left");
        let mut label_end = f64::MIN;
        for (t, label) in d.markers.iter().filter(|m| p.shows(m.0)) {
            let x = p.x_of(*t).round() + 0.5;
            ctx.set_stroke_style_str(MARKER_COLOR);
            ctx.set_line_width(1.0);
            let _ = ctx.set_line_dash(&js_sys::Array::of2(&2.0.into(), &3.0.into()));
            ctx.begin_path();
            ctx.move_to(x, p.y);
            ctx.line_to(x, p.y + p.h);
            ctx.stroke();
            let _ = ctx.set_line_dash(&js_sys::Array::new());
            // Labels that would overlap the previous one are left to the tooltip.
            if x > label_end {
                ctx.set_fill_style_str(MARKER_COLOR);
                let _ = ctx.fill_text(label, x + 3.0, p.y + 1.0);
                label_end = x + 6.0 + ctx.measure_text(label).map_or(60.0, |m| m.width());
            }
        }

        // Censuses: triangles on the top edge; the one shown in the objects panel filled and
        // larger, the one it is compared with outlined.
        for (i, (t, _)) in d.censuses.iter().enumerate().filter(|c| p.shows(c.1 .0)) {
            let x = p.x_of(*t).round() + 0.5;
            let chosen = self.census.0 == Some(i);
            let base = self.census.1 == Some(i);
            let r = if chosen {
                7.0
            } else if base {
                6.0
            } else {
                4.5
            };
            ctx.begin_path();
            ctx.move_to(x - r, p.y);
            ctx.line_to(x + r, p.y);
            ctx.line_to(x, p.y + r * 1.4);
            ctx.close_path();
            if base && !chosen {
                ctx.set_fill_style_str(&theme.bg);
                ctx.fill();
                ctx.set_stroke_style_str(CENSUS_COLOR);
                ctx.set_line_width(1.5);
                ctx.stroke();
            } else {
                ctx.set_global_alpha(if chosen { 1.0 } else { 0.7 });
                ctx.set_fill_style_str(CENSUS_COLOR);
                ctx.fill();
                ctx.set_global_alpha(1.0);
            }
        }

        // Hover (else the keyboard cursor): a vertical rule and a dot on each series.
        let bucket =
            hover.map(|h| h.bucket).or_else(|| self.cursor.and_then(|t| self.bucket_at(t)));
        if let Some(i) = bucket {
            let n = d.heap.len().max(1) as f64;
            let x = p.x + p.w * (i as f64 + 0.5) / n;
            ctx.set_stroke_style_str(&theme.axis);
            ctx.set_line_width(1.0);
            ctx.begin_path();
            ctx.move_to(x.round() + 0.5, p.y);
            ctx.line_to(x.round() + 0.5, p.y + p.h);
            ctx.stroke();
            for (series, color) in [(&d.rss, &theme.rss), (&d.heap, &theme.heap)] {
                if let Some(b) = series.get(i) {
                    ctx.set_fill_style_str(color);
                    ctx.begin_path();
                    let _ = ctx.arc(x, p.y_of(b.max), 3.5, 0.0, std::f64::consts::TAU);
                    ctx.fill();
                }
            }
        }
    }

    fn hit_test(&self, size: Size, x: f64, y: f64) -> Option<TimelineHit> {
        let p = self.plot(size);
        if !p.contains(x, y) {
            return None;
        }
        let n = self.data.0.heap.len();
        let i = ((x - p.x) / p.w * n as f64) as usize;
        Some(TimelineHit {
            bucket: i.min(n.saturating_sub(1)),
            span: self.data.0.spans.at(&p, x, y),
        })
    }

    fn tooltip(&self, hit: &TimelineHit) -> Option<Tooltip> {
        let d = &self.data.0;
        if let Some(bar) = hit.span.and_then(|i| d.spans.0.get(i)) {
            return Some(Tooltip {
                title: SpanBars::line(bar),
                location: None,
                lines: vec![
                    format!("{} – {}", units::time_ns(bar.start_ns), units::time_ns(bar.end_ns)),
                    "Click to select its time range".into(),
                ],
            });
        }
        let i = hit.bucket;
        let heap = d.heap.get(i)?;
        let rss = d.rss.get(i)?;
        let mut lines = vec![format!("Traced heap: {}", units::bytes(heap.max))];
        if heap.min != heap.max {
            lines[0].push_str(&format!(" (min {})", units::bytes(heap.min)));
        }
        lines.push(format!("RSS: {}", units::bytes(rss.max)));
        // Markers and gc runs are thin lines: catch them within a few buckets of the pointer.
        let inside = |t: u64| self.near(i, t);
        for (_, label) in d.markers.iter().filter(|m| inside(m.0)).take(5) {
            lines.push(format!("Marker: {label}"));
        }
        let gcs: Vec<u8> = d.gcs.iter().filter(|g| inside(g.0)).map(|g| g.1).collect();
        if !gcs.is_empty() {
            let oldest = gcs.iter().max().copied().unwrap_or(0);
            lines.push(format!(
                "{} (oldest generation {oldest})",
                units::plural(gcs.len() as u64, "GC run", "GC runs")
            ));
        }
        if let Some(c) = self.census_near(i) {
            lines.push(format!("Census #{c} {} · click to show its objects", d.censuses[c].1));
        }
        lines.extend(d.spans.lines_over((heap.t0, heap.t1), 3));
        Some(Tooltip {
            title: format!("{} – {}", units::time_ns(heap.t0), units::time_ns(heap.t1.min(d.t1))),
            location: None,
            lines,
        })
    }
}

/// The timeline panel of a recording: asks the worker for the heap and RSS of the visible
/// window (the whole recording, or the window zoomed into) at the canvas' width, and the peak
/// of the selected range. Dragging selects a range (the flame graph's range mode); clicking a
/// census shows it in the objects panel (`on_census`).
#[component]
pub fn Timeline(
    loaded: ByPtr<Loaded>,
    state: RwSignal<ViewState>,
    #[prop(into)] census: Signal<(Option<usize>, Option<usize>)>,
    on_census: Callback<usize>,
) -> impl IntoView {
    let dir = loaded.0.dir.clone();
    let (width, set_width) = signal(0.0f64);
    let end = Memo::new({
        let dir = dir.clone();
        move |_| dir.with(|d| d.0.recording.summary().duration_ns.max(1) + 1)
    });
    let generation = Memo::new({
        let dir = dir.clone();
        move |_| dir.with(|d| d.0.generation)
    });
    let window = Memo::new(move |_| {
        let end = end.get();
        state.with(|s| s.window).map_or((0, end), |(a, b)| (a.min(end - 1), b.clamp(a + 1, end)))
    });
    let thread = Memo::new(move |_| state.with(|s| s.thread));
    let range = Signal::derive(move || state.with(|s| s.range));
    let query = Memo::new({
        let loaded = loaded.clone();
        move |_| {
            let (w, g) = (width.get(), generation.get());
            series_query("timeline", &loaded.0, g, window.get(), w, thread.get())
        }
    });
    let series = use_worker(query, 6);
    let data = Memo::new(move |_| {
        let answer = series.result.get()?;
        // The window and thread of the answer: those of the question it answers.
        let Some(Query { request: Request::Timeline { t0, t1, thread, .. }, .. }) =
            series.answered.get_untracked()
        else {
            return None;
        };
        Some(answer.and_then(|a| {
            let s = series_of(&a.0)?;
            let rec = &dir.get_untracked().0.recording;
            Ok(ByPtr::new(TimelineData::new(rec, s, (t0, t1), thread.is_some())))
        }))
    });
    let peak_query = Memo::new({
        let loaded = loaded.clone();
        move |_| {
            let (t0, t1) = range.get()?;
            Some(Query {
                view: format!("peak:{}", loaded.0.rec),
                request: Request::PeakIn { rec: loaded.0.rec, t0, t1 },
                generation: generation.get(),
            })
        }
    });
    let range_peak = use_worker(peak_query, 8);
    let on_select = Callback::new(move |r: Option<(u64, u64)>| state.update(|s| s.select_range(r)));
    // The keyboard cursor, drawn while the canvas has the keyboard's focus.
    let keys = use_time_keys();
    let chart = Memo::new(move |_| {
        let data = data.get()?.ok()?;
        let cursor = keys.cursor_at();
        Some(TimelineChart { data, range: range.get(), census: census.get(), cursor })
    });
    let focus_text = move || {
        let at = keys.said_at()?;
        chart.with(|c| c.as_ref().and_then(|c| c.describe(at)))
    };
    // It starts at the heap's peak (the first thing to look at); Enter shows the census
    // nearest to it.
    let (on_key, on_focus) = keys.handlers(
        Signal::derive(move || window.get()),
        range,
        on_select,
        move |(t0, _)| {
            let peak = data.try_with_untracked(|d| match d {
                Some(Ok(d)) => Some(d.0.peak_heap.1),
                _ => None,
            });
            peak.flatten().unwrap_or(t0)
        },
        Callback::new(move |at: u64| {
            let near = chart.with_untracked(|c| {
                let c = c.as_ref()?;
                c.census_near(c.bucket_at(at)?)
            });
            if let Some(i) = near {
                on_census.run(i);
            }
        }),
    );
    // A click on a span selects its time range; elsewhere, it shows the census nearby.
    let on_click = Callback::new(move |hit: TimelineHit| {
        let Some(c) = chart.get_untracked() else { return };
        if let Some(bar) = hit.span.and_then(|i| c.data.0.spans.0.get(i)) {
            on_select.run(Some((bar.start_ns, bar.end_ns)));
        } else if let Some(i) = c.census_near(hit.bucket) {
            on_census.run(i);
        }
    });
    let on_drag = Callback::new(move |span: DragSpan| {
        let Some(c) = chart.get_untracked() else { return };
        let (a, b) = (c.time_at(span.size, span.from), c.time_at(span.size, span.to));
        if a != b {
            on_select.run(Some((a.min(b), a.max(b))));
        }
    });
    let legend_has = move |what: fn(&TimelineData) -> bool| {
        data.with(|d| d.as_ref().and_then(|d| d.as_ref().ok()).is_some_and(|d| what(&d.0)))
    };
    let note = move || match range.get() {
        Some((a, b)) => {
            let peak = match range_peak.result.get() {
                Some(Ok(p)) => match &*p.0 {
                    Answer::Peak { bytes, time_ns } => {
                        format!(" · peak {} at {}", units::bytes(*bytes), units::time_ns(*time_ns))
                    }
                    _ => String::new(),
                },
                Some(Err(e)) => format!(" · {e}"),
                None => String::new(),
            };
            format!("{}{peak}", units::selection(a, b))
        }
        None => {
            let (peak, at) = data.with(|d| match d {
                Some(Ok(d)) => d.0.peak_heap,
                _ => (0, 0),
            });
            let within = if state.with(|s| s.window.is_some()) { " in view" } else { "" };
            format!(
                "Heap peak{within} {} at {} · drag to select a range",
                units::bytes(peak),
                units::time_ns(at),
            )
        }
    };
    let zoom_to_selection = move |_| state.update(|s| s.window = s.range);
    let show_all = move |_| state.update(|s| s.window = None);
    view! {
        <section
            class="panel"
            aria-label="Memory over time"
            id="timeline-panel"
            data-end-ns=move || end.get() - 1
            data-ready=move || series.settled().then_some("1")
        >
            <PanelHead title="Memory over time">
                <span class="legend">
                    <span><i class="rss"></i>"RSS"</span>
                    <span><i class="heap"></i>"Traced heap"</span>
                    {move || legend_has(|d| !d.markers.is_empty()).then(|| view! {
                        <span><i style=format!("background:{MARKER_COLOR}")></i>"Markers"</span>
                    })}
                    {move || legend_has(|d| !d.gcs.is_empty()).then(|| view! {
                        <span><i style=format!("background:{}", GC_COLORS[1])></i>"GC runs"</span>
                    })}
                    {move || legend_has(|d| !d.spans.is_empty()).then(|| view! {
                        <span title="Spans (memlens.span, tests, cells): click one to select its time range">
                            <i style=format!("background:{}", SpanBars::COLOR)></i>"Spans"
                        </span>
                    })}
                    {move || legend_has(|d| !d.censuses.is_empty()).then(|| view! {
                        <span title="Object censuses: click one to show its objects">
                            <i style=format!("background:{CENSUS_COLOR}")></i>"Censuses"
                        </span>
                    })}
                </span>
                <span class="spacer"></span>
                <span class="panel-note" id="timeline-note">{note}</span>
                <Show when=move || range.get().is_some()>
                    <button class="link-button" id="zoom-to-selection" on:click=zoom_to_selection>
                        "Zoom to selection"
                    </button>
                    <button class="link-button" on:click=move |_| on_select.run(None)>
                        "Clear selection"
                    </button>
                </Show>
                <Show when=move || state.with(|s| s.window.is_some())>
                    <button class="link-button" id="zoom-out" on:click=show_all>"Show all"</button>
                </Show>
            </PanelHead>
            {move || match data.get() {
                Some(Err(e)) => Some(view! { <div class="banner banner-error" role="alert">{e}</div> }),
                _ => None,
            }}
            <ChartCanvas
                chart=Signal::derive(move || chart.get())
                class="chart-timeline"
                canvas_id="timeline-canvas"
                label="Memory over time. Arrow keys move a cursor, Shift and arrows select a range, Escape clears it, Enter shows the census at the cursor."
                on_drag=on_drag
                on_click=on_click
                on_key=on_key
                on_focus=on_focus
                described_by="timeline-focus"
                on_resize=Callback::new(move |size: Size| set_width.set(size.width))
            />
            <p class="chart-focus" id="timeline-focus" aria-live="polite">{focus_text}</p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plot::{BOTTOM, LEFT, RIGHT};
    use crate::timeline_spans::SpanBar;
    use memlens_analysis::Bucket;

    fn chart() -> TimelineChart {
        let bucket =
            |i: u64, v: u64| Bucket { t0: i * 10, t1: i * 10 + 10, min: v, max: v, last: v };
        TimelineChart {
            data: ByPtr(Arc::new(TimelineData {
                t0: 0,
                t1: 100,
                heap: (0..10).map(|i| bucket(i, i * 100)).collect(),
                rss: (0..10).map(|i| bucket(i, 2000)).collect(),
                peak_heap: (900, 95),
                y_max: 2000,
                markers: vec![(35, "loaded".into())],
                gcs: vec![(31, 0), (33, 2)],
                censuses: vec![(0, "start".into()), (36, "mark \"loaded\"".into())],
                spans: SpanBars(vec![SpanBar {
                    start_ns: 20,
                    end_ns: 45,
                    name: "test_load".into(),
                    lane: 0,
                    open: false,
                }]),
            })),
            range: None,
            census: (None, None),
            cursor: None,
        }
    }

    #[test]
    fn hit_test_maps_x_to_buckets_inside_the_plot_only() {
        let c = chart();
        let size = Size { width: LEFT + RIGHT + 100.0, height: 200.0 };
        let at = |bucket| Some(TimelineHit { bucket, span: None });
        assert_eq!(c.hit_test(size, LEFT + 0.5, 50.0), at(0));
        assert_eq!(c.hit_test(size, LEFT + 55.0, 50.0), at(5));
        assert_eq!(c.hit_test(size, LEFT + 100.0, 50.0), at(9));
        // The span's bar, along the bottom of the plot.
        let bottom = 200.0 - BOTTOM - 5.0;
        assert_eq!(
            c.hit_test(size, LEFT + 30.0, bottom),
            Some(TimelineHit { bucket: 3, span: Some(0) })
        );
        assert_eq!(c.hit_test(size, LEFT - 5.0, 50.0), None);
        assert_eq!(c.hit_test(size, LEFT + 5.0, 199.0), None);
    }

    #[test]
    fn time_at_clamps_to_the_recording() {
        let c = chart();
        let size = Size { width: LEFT + RIGHT + 100.0, height: 200.0 };
        assert_eq!(c.time_at(size, LEFT + 25.0), 25);
        assert_eq!(c.time_at(size, 0.0), 0);
        assert_eq!(c.time_at(size, 10_000.0), 100);
    }

    #[test]
    fn tooltip_reports_both_series() {
        let tip = chart().tooltip(&TimelineHit { bucket: 3, span: None }).unwrap();
        assert_eq!(
            tip.lines,
            [
                "Traced heap: 300 B",
                "RSS: 1.95 KiB",
                "Marker: loaded",
                "2 GC runs (oldest generation 2)",
                "Census #1 mark \"loaded\" · click to show its objects",
                "Span: test_load (0 µs)",
            ]
        );
        let tip = chart().tooltip(&TimelineHit { bucket: 3, span: Some(0) }).unwrap();
        assert_eq!(tip.title, "Span: test_load (0 µs)");
    }

    #[test]
    fn the_keyboard_cursor_is_in_the_bucket_that_holds_its_time() {
        let mut c = chart();
        assert_eq!((c.bucket_at(0), c.bucket_at(9), c.bucket_at(10)), (Some(0), Some(0), Some(1)));
        assert_eq!(c.bucket_at(100), Some(9), "the window's end is in its last bucket");
        c.range = Some((30, 60));
        let said = c.describe(35).unwrap();
        assert!(said.starts_with("At "), "{said}");
        assert!(said.contains("Traced heap: 300 B") && said.contains("Marker: loaded"), "{said}");
        assert!(said.contains(" · selected "), "{said}");
    }

    #[test]
    fn clicks_find_the_nearest_census_within_a_few_buckets() {
        let c = chart();
        assert_eq!(c.census_near(0), Some(0));
        assert_eq!(c.census_near(3), Some(1));
        assert_eq!(c.census_near(6), Some(1));
        assert_eq!(c.census_near(7), None);
    }
}
