//! The heap of every process of a recording over time, stacked: one band per process on the
//! program's time axis (the program at the bottom, then its descendants in the order they
//! started, each in its own colour, the process picker's), so the top of the stack is the
//! heap of all together, whose highest point is marked. Hover for what each process held,
//! click a band to show that process, drag to select a range (the flame graph's range mode,
//! at the highest point of all within it); the keyboard does the same (`use_time_keys`). The series come from the worker, about one bucket
//! per device pixel.

use leptos::prelude::*;
use memlens_analysis::{short_command, Bucket};

use crate::chart_canvas::{Chart, ChartCanvas, DragSpan, Painter, Size, Tooltip};
use crate::load::Loaded;
use crate::panel::PanelHead;
use crate::plot::{buckets_for, Plot};
use crate::process_model::{process_color, state_for};
use crate::protocol::{Answer, FamilySeries, ProcessInfo, Request};
use crate::url_state::{ProcessChoice, ViewState};
use crate::use_time_keys::use_time_keys;
use crate::use_worker::{use_worker, Query};
use crate::{units, ByPtr};

/// Processes a tooltip names besides the one under the pointer.
const TOOLTIP_PROCESSES: usize = 6;

/// The stacked series of one window, as drawn.
pub struct FamilyData {
    pub t0: u64,
    pub t1: u64,
    /// Each process's heap (the list's order).
    pub heaps: Vec<Vec<Bucket>>,
    /// The top of each band: `tops[j][i]` adds up the highest values of processes `0..=j` in
    /// bucket `i`.
    pub tops: Vec<Vec<u64>>,
    /// The highest total in the window: (bytes, time).
    pub peak: (u64, u64),
    /// "pid 1234: python3 -c ...", one per process.
    pub labels: Vec<String>,
    pub y_max: u64,
}

impl FamilyData {
    pub fn new(series: &FamilySeries, list: &[ProcessInfo], (t0, t1): (u64, u64)) -> Self {
        let n = series.heaps.iter().map(Vec::len).max().unwrap_or(0);
        let mut tops: Vec<Vec<u64>> = Vec::with_capacity(series.heaps.len());
        for heap in &series.heaps {
            let below = tops.last();
            let top = (0..n)
                .map(|i| {
                    let under = below.map_or(0, |b| b[i]);
                    under.saturating_add(heap.get(i).map_or(0, |b| b.max))
                })
                .collect();
            tops.push(top);
        }
        let y_max = tops.last().and_then(|t| t.iter().max().copied()).unwrap_or(0);
        let labels = list
            .iter()
            .map(|p| format!("pid {}: {}", p.pid, short_command(&p.command_line, 40)))
            .collect();
        FamilyData {
            t0,
            t1,
            heaps: series.heaps.clone(),
            tops,
            peak: series.peak,
            labels,
            y_max: y_max.max(series.peak.0).max(1),
        }
    }

    fn buckets(&self) -> usize {
        self.tops.first().map_or(0, Vec::len)
    }

    /// The band (process index) holding `bytes` up the stack in bucket `i`, if any.
    pub fn band_at(&self, i: usize, bytes: u64) -> Option<usize> {
        let j = self.tops.partition_point(|top| top.get(i).is_some_and(|&t| t <= bytes));
        (j < self.tops.len()).then_some(j)
    }

    /// What process `j` held in bucket `i` (its highest value there).
    fn held(&self, j: usize, i: usize) -> u64 {
        self.heaps.get(j).and_then(|h| h.get(i)).map_or(0, |b| b.max)
    }
}

/// The stacked timeline as a [`Chart`].
#[derive(Clone, PartialEq)]
pub struct FamilyChart {
    pub data: ByPtr<FamilyData>,
    pub range: Option<(u64, u64)>,
    /// The keyboard cursor (ns), while the canvas has the focus.
    pub cursor: Option<u64>,
}

impl FamilyChart {
    fn plot(&self, size: Size) -> Plot {
        Plot::new(size, (self.data.0.t0, self.data.0.t1), self.data.0.y_max)
    }

    /// The bucket time `t` falls in.
    fn bucket_at(&self, t: u64) -> Option<usize> {
        let d = &self.data.0;
        let n = d.buckets() as u128;
        if n == 0 || t < d.t0 || t >= d.t1 {
            return None;
        }
        Some(((t - d.t0) as u128 * n / (d.t1 - d.t0) as u128) as usize)
    }

    /// The process holding the most at time `t` (index in the list).
    fn largest_at(&self, t: u64) -> Option<usize> {
        let i = self.bucket_at(t)?;
        let d = &self.data.0;
        (0..d.heaps.len()).filter(|&j| d.held(j, i) > 0).max_by_key(|&j| d.held(j, i))
    }

    /// What is under the keyboard cursor at `t`, in one line for screen readers.
    fn describe(&self, t: u64) -> Option<String> {
        let i = self.bucket_at(t)?;
        let tip = self.tooltip(&(i, self.largest_at(t)))?;
        let lines = tip.lines.join("; ").replacen("click to show it", "Enter shows it", 1);
        Some(format!("{}: {lines}", tip.title))
    }
}

impl Chart for FamilyChart {
    /// The bucket under the pointer, and the band (process index) if the pointer is on one.
    type Hit = (usize, Option<usize>);

    fn draw(&self, painter: &Painter<'_>, hover: Option<&(usize, Option<usize>)>) {
        let (ctx, theme, d) = (painter.ctx, painter.theme, &self.data.0);
        let p = self.plot(painter.size);
        p.draw_axes(painter);
        p.draw_selection(painter, self.range);
        let n = d.buckets().max(1) as f64;
        let x_at = |i: usize| p.x + p.w * i as f64 / n;
        let hovered = hover.and_then(|h| h.1);
        for (j, top) in d.tops.iter().enumerate() {
            if (0..top.len()).all(|i| d.held(j, i) == 0) {
                continue;
            }
            let bottom = |i: usize| if j == 0 { 0 } else { d.tops[j - 1][i] };
            ctx.begin_path();
            ctx.move_to(x_at(0), p.y_of(top[0]));
            for (i, &t) in top.iter().enumerate() {
                ctx.line_to(x_at(i), p.y_of(t));
                ctx.line_to(x_at(i + 1), p.y_of(t));
            }
            for i in (0..top.len()).rev() {
                ctx.line_to(x_at(i + 1), p.y_of(bottom(i)));
                ctx.line_to(x_at(i), p.y_of(bottom(i)));
            }
            ctx.close_path();
            let faded = hovered.is_some_and(|h| h != j);
            ctx.set_global_alpha(if faded { 0.45 } else { 0.9 });
            ctx.set_fill_style_str(&process_color(j, theme.dark));
            ctx.fill();
            ctx.set_global_alpha(1.0);
        }
        let peak = format!("peak of all {}", units::bytes(d.peak.0));
        p.draw_peak(painter, d.peak.0, d.peak.1, &peak);
        // Hover (else the keyboard cursor): a vertical rule.
        let at = hover.map(|h| h.0).or_else(|| self.cursor.and_then(|t| self.bucket_at(t)));
        if let Some(i) = at {
            let x = (x_at(i) + p.w / n / 2.0).round() + 0.5;
            ctx.set_stroke_style_str(&theme.axis);
            ctx.set_line_width(1.0);
            ctx.begin_path();
            ctx.move_to(x, p.y);
            ctx.line_to(x, p.y + p.h);
            ctx.stroke();
        }
    }

    fn hit_test(&self, size: Size, x: f64, y: f64) -> Option<(usize, Option<usize>)> {
        let p = self.plot(size);
        let n = self.data.0.buckets();
        if !p.contains(x, y) || n == 0 {
            return None;
        }
        let i = (((x - p.x) / p.w * n as f64) as usize).min(n - 1);
        let bytes = ((p.y + p.h - y) / p.h * p.y_top as f64).max(0.0) as u64;
        Some((i, self.data.0.band_at(i, bytes)))
    }

    fn tooltip(&self, &(i, band): &(usize, Option<usize>)) -> Option<Tooltip> {
        let d = &self.data.0;
        let bucket = d.heaps.first()?.get(i)?;
        let mut lines = Vec::new();
        if let Some(j) = band {
            lines.push(format!(
                "{}: {} · click to show it",
                d.labels[j],
                units::bytes(d.held(j, i))
            ));
        }
        let total = d.tops.last().and_then(|t| t.get(i)).copied().unwrap_or(0);
        lines.push(format!("All processes: {}", units::bytes(total)));
        let mut others: Vec<usize> =
            (0..d.heaps.len()).filter(|&j| Some(j) != band && d.held(j, i) > 0).collect();
        others.sort_by_key(|&j| std::cmp::Reverse(d.held(j, i)));
        for &j in others.iter().take(TOOLTIP_PROCESSES) {
            lines.push(format!("{}: {}", d.labels[j], units::bytes(d.held(j, i))));
        }
        if others.len() > TOOLTIP_PROCESSES {
            lines.push(format!("and {} more", others.len() - TOOLTIP_PROCESSES));
        }
        Some(Tooltip {
            title: format!(
                "{} – {}",
                units::time_ns(bucket.t0),
                units::time_ns(bucket.t1.min(d.t1))
            ),
            location: None,
            lines,
        })
    }
}

/// The stacked heap of all processes of `all` (the view of every process of a file) over the
/// whole run; `list` names them.
#[component]
pub fn FamilyTimeline(
    all: ByPtr<Loaded>,
    list: ByPtr<Vec<ProcessInfo>>,
    state: RwSignal<ViewState>,
) -> impl IntoView {
    let (width, set_width) = signal(0.0f64);
    let end = list.0.iter().map(|p| p.ended_ns).max().unwrap_or(0) + 1;
    let rec = all.0.rec;
    let query = Memo::new(move |_| {
        let w = width.get();
        (w > 0.0).then(|| Query {
            view: format!("family:{rec}"),
            request: Request::FamilyTimeline { rec, t0: 0, t1: end, buckets: buckets_for(w) },
            generation: 0,
        })
    });
    let series = use_worker(query, 2);
    let data = Memo::new({
        let list = list.clone();
        move |_| {
            let answer = series.result.get()?;
            Some(answer.and_then(|a| match &*a.0 {
                Answer::Family(s) => Ok(ByPtr::new(FamilyData::new(s, &list.0, (0, end)))),
                other => Err(format!("unexpected answer {other:?}")),
            }))
        }
    });
    let range = Memo::new(move |_| state.with(|s| s.range));
    let keys = use_time_keys();
    let chart = Memo::new(move |_| {
        let data = data.get()?.ok()?;
        Some(FamilyChart { data, range: range.get(), cursor: keys.cursor_at() })
    });
    let on_select = Callback::new(move |r: Option<(u64, u64)>| state.update(|s| s.select_range(r)));
    let focus_text = move || {
        let at = keys.said_at()?;
        chart.with(|c| c.as_ref().and_then(|c| c.describe(at)))
    };
    // The keyboard cursor starts at the highest point of all; Enter shows the process that
    // holds the most at the cursor (as a click on its band does).
    let show = {
        let list = list.clone();
        move |j: usize| {
            let Some(p) = list.0.get(j) else { return };
            let choice = ProcessChoice::One(p.number);
            state.update(|s| *s = state_for(s, choice, &list.0));
        }
    };
    let (on_key, on_focus) = keys.handlers(
        Signal::stored((0, end)),
        range.into(),
        on_select,
        move |(t0, _)| {
            let peak = data.try_with_untracked(|d| match d {
                Some(Ok(d)) => Some(d.0.peak.1),
                _ => None,
            });
            peak.flatten().unwrap_or(t0)
        },
        Callback::new({
            let show = show.clone();
            move |at: u64| {
                if let Some(j) = chart.with_untracked(|c| c.as_ref()?.largest_at(at)) {
                    show(j);
                }
            }
        }),
    );
    let on_drag = Callback::new(move |span: DragSpan| {
        let Some(c) = chart.get_untracked() else { return };
        let p = c.plot(span.size);
        let (a, b) = (p.time_at(span.from), p.time_at(span.to));
        if a != b {
            on_select.run(Some((a.min(b), a.max(b))));
        }
    });
    let on_click = Callback::new(move |(_, band): (usize, Option<usize>)| {
        if let Some(j) = band {
            show(j);
        }
    });
    let note = move || match range.get() {
        Some((a, b)) => units::selection(a, b),
        None => match data.get() {
            Some(Ok(d)) => format!(
                "Peak of all processes together {} at {} · click a band to show its process, \
                 drag to select a range",
                units::bytes(d.0.peak.0),
                units::time_ns(d.0.peak.1)
            ),
            _ => String::new(),
        },
    };
    let error = move || {
        let e = data.get()?.err()?;
        Some(view! { <div class="banner banner-error panel-banner" role="alert">{e}</div> })
    };
    view! {
        <section
            class="panel"
            aria-label="Heap of every process over time"
            id="family-panel"
            data-ready=move || series.settled().then_some("1")
        >
            <PanelHead title="Heap of every process over time">
                <span class="spacer"></span>
                <span class="panel-note" id="family-note">{note}</span>
                {move || range.get().map(|_| view! {
                    <button class="link-button" id="family-clear" on:click=move |_| on_select.run(None)>
                        "Clear selection"
                    </button>
                })}
            </PanelHead>
            {error}
            <ChartCanvas
                chart=Signal::derive(move || chart.get())
                class="chart-timeline chart-family"
                canvas_id="family-canvas"
                label="Traced heap of every process over time, stacked: the top is all processes together. The process picker above lists the same processes in the same colours. Arrow keys move a cursor, Shift and arrows select a range, Escape clears it, Enter shows the process that holds the most at the cursor."
                on_drag=on_drag
                on_click=on_click
                on_key=on_key
                on_focus=on_focus
                described_by="family-focus"
                on_resize=Callback::new(move |size: Size| set_width.set(size.width))
            />
            <p class="chart-focus" id="family-focus" aria-live="polite">{focus_text}</p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> FamilyData {
        let b = |v: u64| Bucket { t0: 0, t1: 10, min: v, max: v, last: v };
        let series = FamilySeries {
            heaps: vec![vec![b(100), b(100)], vec![b(0), b(50)], vec![b(30), b(0)]],
            peak: (150, 10),
        };
        let process = |pid: u32| ProcessInfo {
            number: pid - 10,
            pid,
            ppid: None,
            command_line: vec!["/usr/bin/python3".into(), "-c".into(), "work()".into()],
            started_ns: 0,
            ended_ns: 20,
            peak_heap: 0,
            peak_heap_time_ns: 0,
            alloc_count: 0,
            alloc_bytes: 0,
            ended: String::new(),
        };
        FamilyData::new(&series, &[process(10), process(11), process(12)], (0, 20))
    }

    #[test]
    fn bands_stack_up_to_the_total() {
        let d = data();
        assert_eq!(d.tops, [vec![100, 100], vec![100, 150], vec![130, 150]]);
        assert_eq!(d.y_max, 150);
        assert_eq!(d.labels[1], "pid 11: python3 -c work()");
        // Bucket 0: the program up to 100, process 1 holds nothing, process 2 from 100 to 130.
        assert_eq!(
            (d.band_at(0, 0), d.band_at(0, 99), d.band_at(0, 100)),
            (Some(0), Some(0), Some(2))
        );
        assert_eq!(d.band_at(0, 130), None, "above the stack");
        assert_eq!(d.band_at(1, 120), Some(1));
    }

    #[test]
    fn the_tooltip_names_the_process_under_the_pointer_first() {
        let chart = FamilyChart { data: ByPtr::new(data()), range: None, cursor: None };
        let tip = chart.tooltip(&(1, Some(1))).unwrap();
        assert_eq!(
            tip.lines,
            [
                "pid 11: python3 -c work(): 50 B · click to show it",
                "All processes: 150 B",
                "pid 10: python3 -c work(): 100 B"
            ]
        );
        assert_eq!(chart.tooltip(&(0, None)).unwrap().lines[0], "All processes: 130 B");
    }

    #[test]
    fn the_keyboard_cursor_names_the_largest_process_at_its_time() {
        let chart = FamilyChart { data: ByPtr::new(data()), range: None, cursor: Some(15) };
        // Two buckets over [0, 20): 15 ns is in the second, where the program holds the most.
        assert_eq!(
            (chart.bucket_at(0), chart.bucket_at(15), chart.bucket_at(20)),
            (Some(0), Some(1), None)
        );
        assert_eq!(chart.largest_at(15), Some(0));
        let said = chart.describe(15).unwrap();
        assert!(said.contains("pid 10: python3 -c work(): 100 B · Enter shows it"), "{said}");
        assert!(said.contains("All processes: 150 B"), "{said}");
    }

    #[test]
    fn colours_differ_for_neighbours() {
        let colours: Vec<String> = (0..12).map(|i| process_color(i, false)).collect();
        for (i, a) in colours.iter().enumerate() {
            assert!(colours[i + 1..].iter().all(|b| a != b), "{a} is used twice");
        }
        assert_eq!(colours[0], "hsl(215 62% 56%)");
    }
}
