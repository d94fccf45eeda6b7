//! Spans on the timeline (`with memlens.span(name):`, a test under the pytest plugin, a
//! notebook cell): bars in lanes along the bottom of the plot, one lane per level of overlap.
//! A span that did not end (the program died inside it, or the recording is still being
//! written) runs to the recording's end, drawn open (no right edge) and said so.
//! The model ([`SpanBars`]) is laid out once per recording; the timeline paints it in any
//! window, finds the bar under the pointer, and names the spans around a time.

use memlens_analysis::{spans, OpenSpan, Span};
use memlens_format::Recording;

use crate::chart_canvas::Painter;
use crate::plot::Plot;
use crate::units;

/// Lanes drawn at most: spans that overlap more deeply share the last one.
const LANES: usize = 3;
/// Height of a lane, CSS px.
const LANE_H: f64 = 14.0;
const SPAN_COLOR: &str = "hsl(32 85% 48%)";

/// A span as drawn: its time, name and lane (0 at the bottom).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanBar {
    pub start_ns: u64,
    pub end_ns: u64,
    pub name: String,
    pub lane: usize,
    /// It did not end: `end_ns` is the recording's end.
    pub open: bool,
}

/// Every ended span of a recording, in the order they began, each in the lowest lane free
/// when it begins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanBars(pub Vec<SpanBar>);

impl SpanBars {
    pub fn of(rec: &Recording) -> SpanBars {
        let (closed, open) = spans(rec);
        SpanBars::lay_out(closed, open, rec.summary().duration_ns)
    }

    /// The ended spans and the open ones (to `end_ns`), in the order they began, each in the
    /// lowest lane free when it begins.
    fn lay_out(closed: Vec<Span>, open: Vec<OpenSpan>, end_ns: u64) -> SpanBars {
        let closed = closed.into_iter().map(|s| (s.start_ns, s.end_ns, s.name, false));
        let open = open.into_iter().map(|s| (s.start_ns, end_ns.max(s.start_ns), s.name, true));
        let mut all: Vec<_> = closed.chain(open).collect();
        all.sort_by_key(|s| s.0);
        let mut lane_ends = [0u64; LANES];
        SpanBars(
            all.into_iter()
                .map(|(start_ns, end_ns, name, open)| {
                    let lane = lane_ends.iter().position(|&e| e <= start_ns).unwrap_or(LANES - 1);
                    lane_ends[lane] = lane_ends[lane].max(end_ns);
                    SpanBar { start_ns, end_ns, name, lane, open }
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bar's rectangle (x, y, w, h) in `p`, clipped to the plot; `None` outside it.
    fn rect(p: &Plot, bar: &SpanBar) -> Option<(f64, f64, f64, f64)> {
        let t1 = p.t0 + p.span_ns;
        if bar.end_ns < p.t0 || bar.start_ns > t1 {
            return None;
        }
        let x0 = p.x_of(bar.start_ns.max(p.t0));
        let x1 = p.x_of(bar.end_ns.min(t1)).max(x0 + 2.0);
        let y = p.y + p.h - LANE_H * (bar.lane as f64 + 1.0);
        Some((x0, y + 1.0, x1 - x0, LANE_H - 2.0))
    }

    /// Paints the bars, `hover` highlighted, with their names where they fit.
    pub fn draw(&self, painter: &Painter<'_>, p: &Plot, hover: Option<usize>) {
        let (ctx, theme) = (painter.ctx, painter.theme);
        ctx.set_font(&theme.font(10.0, 600));
        ctx.set_text_baseline("middle");
        ctx.set_text_align("left");
        for (i, bar) in self.0.iter().enumerate() {
            let Some((x, y, w, h)) = Self::rect(p, bar) else { continue };
            ctx.set_global_alpha(if hover == Some(i) { 0.85 } else { 0.45 });
            ctx.set_fill_style_str(SPAN_COLOR);
            ctx.fill_rect(x, y, w, h);
            ctx.set_global_alpha(1.0);
            if bar.open {
                // No right edge: a dashed outline open at the end.
                ctx.set_stroke_style_str(SPAN_COLOR);
                ctx.set_line_width(1.0);
                let _ = ctx.set_line_dash(&js_sys::Array::of2(&3.0.into(), &2.0.into()));
                ctx.begin_path();
                ctx.move_to(x + w, y);
                ctx.line_to(x, y);
                ctx.line_to(x, y + h);
                ctx.line_to(x + w, y + h);
                ctx.stroke();
                let _ = ctx.set_line_dash(&js_sys::Array::new());
            }
            let fits = ctx.measure_text(&bar.name).map_or(f64::MAX, |m| m.width()) + 6.0 <= w;
            if fits {
                ctx.set_fill_style_str(&theme.text);
                let _ = ctx.fill_text(&bar.name, x + 3.0, y + h / 2.0);
            }
        }
    }

    /// The bar at (x, y) in `p`, the last drawn (topmost) first.
    pub fn at(&self, p: &Plot, x: f64, y: f64) -> Option<usize> {
        self.0.iter().rposition(|bar| {
            Self::rect(p, bar).is_some_and(|(bx, by, bw, bh)| {
                x >= bx && x <= bx + bw && y >= by - 1.0 && y <= by + bh + 1.0
            })
        })
    }

    /// A tooltip line for each span that covers `[t0, t1)`, the innermost (latest) first, at
    /// most `max`.
    pub fn lines_over(&self, (t0, t1): (u64, u64), max: usize) -> Vec<String> {
        self.0
            .iter()
            .rev()
            .filter(|b| b.start_ns < t1 && b.end_ns >= t0)
            .take(max)
            .map(Self::line)
            .collect()
    }

    /// One line for a span: its name and how long it lasted (or that it did not end).
    pub fn line(bar: &SpanBar) -> String {
        if bar.open {
            return format!(
                "Span: {} (began at {}, did not end)",
                bar.name,
                units::time_ns(bar.start_ns)
            );
        }
        format!("Span: {} ({})", bar.name, units::time_ns(bar.end_ns - bar.start_ns))
    }

    pub const COLOR: &'static str = SPAN_COLOR;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart_canvas::Size;

    fn bar(start_ns: u64, end_ns: u64, name: &str, lane: usize) -> SpanBar {
        SpanBar { start_ns, end_ns, name: name.into(), lane, open: false }
    }

    #[test]
    fn overlapping_spans_go_up_a_lane_and_the_deepest_share_the_last() {
        let span = |start_ns, end_ns| Span {
            name: String::new(),
            thread: memlens_format::ThreadId(0),
            start_ns,
            end_ns,
        };
        let spans = [(0, 10), (10, 20), (12, 15), (13, 14), (13, 14), (30, 40)];
        let open =
            OpenSpan { name: "killed".into(), thread: memlens_format::ThreadId(0), start_ns: 35 };
        let bars =
            SpanBars::lay_out(spans.iter().map(|&(a, b)| span(a, b)).collect(), vec![open], 50);
        let lanes: Vec<usize> = bars.0.iter().map(|b| b.lane).collect();
        assert_eq!(lanes, [0, 0, 1, 2, 2, 0, 1]);
        // The open span runs to the recording's end, and says it did not end.
        let last = &bars.0[6];
        assert_eq!((last.start_ns, last.end_ns, last.open), (35, 50, true));
        assert_eq!(SpanBars::line(last), "Span: killed (began at 0 µs, did not end)");
    }

    #[test]
    fn the_bar_under_the_pointer_and_the_spans_over_a_bucket() {
        const MS: u64 = 1_000_000;
        let bars =
            SpanBars(vec![bar(10 * MS, 50 * MS, "outer", 0), bar(20 * MS, 30 * MS, "inner", 1)]);
        let p = Plot::new(Size { width: 160.0, height: 200.0 }, (0, 100 * MS), 1000);
        let x_of = |t: u64| p.x_of(t * MS);
        let bottom = p.y + p.h;
        assert_eq!(bars.at(&p, x_of(40), bottom - LANE_H / 2.0), Some(0));
        assert_eq!(bars.at(&p, x_of(25), bottom - LANE_H * 1.5), Some(1));
        assert_eq!(bars.at(&p, x_of(40), bottom - LANE_H * 1.5), None);
        assert_eq!(bars.at(&p, x_of(60), bottom - LANE_H / 2.0), None);
        let over = bars.lines_over((25 * MS, 26 * MS), 5);
        assert_eq!(over, ["Span: inner (10.0 ms)", "Span: outer (40.0 ms)"]);
        assert_eq!(bars.lines_over((60 * MS, 70 * MS), 5), Vec::<String>::new());
    }
}
