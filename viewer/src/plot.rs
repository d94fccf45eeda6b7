//! The plot area of a time chart (the memory timeline, the compare-mode timeline, the family
//! chart): where its time window and byte axis fall on the canvas, its axes, a selection, the
//! peak and a series of buckets.

use memlens_analysis::Bucket;

use crate::chart_canvas::{Painter, Size};
use crate::units;

/// Space for axis labels around the plot, in CSS pixels.
pub const LEFT: f64 = 70.0;
pub const RIGHT: f64 = 18.0;
pub const TOP: f64 = 16.0;
pub const BOTTOM: f64 = 26.0;

/// Buckets to ask for a timeline `width` CSS px wide: one per device pixel of its plot.
pub fn buckets_for(width: f64) -> u32 {
    let dpr = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio()).max(1.0);
    ((width - LEFT - RIGHT).max(1.0) * dpr).ceil() as u32
}

/// The plot area inside a timeline canvas, with its time window (ns) and the top of its byte
/// axis: everything needed to map data to pixels. Shared by the compare-mode timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plot {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// Time at the left edge.
    pub t0: u64,
    /// Time across the plot.
    pub span_ns: u64,
    pub y_top: u64,
}

impl Plot {
    /// The plot for a canvas of `size` showing `[t0, t1)`, with a y axis reaching `y_max`
    /// rounded up to a tick.
    pub fn new(size: Size, (t0, t1): (u64, u64), y_max: u64) -> Plot {
        let max = y_max as f64;
        let step = units::nice_byte_step(max, 4);
        Plot {
            x: LEFT,
            y: TOP,
            w: (size.width - LEFT - RIGHT).max(1.0),
            h: (size.height - TOP - BOTTOM).max(1.0),
            t0,
            span_ns: t1.saturating_sub(t0).max(1),
            y_top: ((max / step).ceil() * step).max(1.0) as u64,
        }
    }

    pub fn x_of(&self, t: u64) -> f64 {
        self.x + self.w * ((t as f64 - self.t0 as f64) / self.span_ns as f64)
    }

    /// Whether time `t` is inside the window.
    pub fn shows(&self, t: u64) -> bool {
        t >= self.t0 && t - self.t0 <= self.span_ns
    }

    pub fn y_of(&self, v: u64) -> f64 {
        self.y + self.h - self.h * (v as f64 / self.y_top as f64)
    }

    /// The time at canvas x (CSS px), clamped to the plot.
    pub fn time_at(&self, x: f64) -> u64 {
        let f = ((x - self.x) / self.w).clamp(0.0, 1.0);
        self.t0 + (f * self.span_ns as f64).round() as u64
    }

    /// Whether (x, y) is inside the plot.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.x && x <= self.x + self.w && y >= self.y && y <= self.y + self.h
    }

    /// Grid lines and byte and time axis labels.
    pub fn draw_axes(&self, painter: &Painter<'_>) {
        let (ctx, theme, p) = (painter.ctx, painter.theme, self);
        ctx.set_font(&theme.font(11.0, 400));
        ctx.set_line_width(1.0);
        let y_step = units::nice_byte_step(p.y_top as f64, 4);
        let mut v = 0.0;
        ctx.set_text_align("right");
        ctx.set_text_baseline("middle");
        while v <= p.y_top as f64 + 0.5 {
            let y = p.y_of(v as u64).round() + 0.5;
            ctx.set_stroke_style_str(&theme.grid);
            ctx.begin_path();
            ctx.move_to(p.x, y);
            ctx.line_to(p.x + p.w, y);
            ctx.stroke();
            ctx.set_fill_style_str(&theme.axis);
            let _ = ctx.fill_text(&units::axis_bytes(v, y_step), p.x - 8.0, y);
            v += y_step;
        }
        let span = p.span_ns as f64;
        let t_step = units::nice_step(span, ((p.w / 90.0) as usize).max(2));
        ctx.set_text_align("center");
        ctx.set_text_baseline("top");
        let end = p.t0 as f64 + span;
        let mut t = (p.t0 as f64 / t_step).ceil() * t_step;
        while t <= end {
            let x = p.x_of(t as u64).round() + 0.5;
            ctx.set_stroke_style_str(&theme.grid);
            ctx.begin_path();
            ctx.move_to(x, p.y + p.h);
            ctx.line_to(x, p.y + p.h + 4.0);
            ctx.stroke();
            ctx.set_fill_style_str(&theme.axis);
            let _ = ctx.fill_text(&units::axis_time(t, t_step, end), x, p.y + p.h + 7.0);
            t += t_step;
        }
    }

    /// The selected range (the part inside the window), under the series.
    pub fn draw_selection(&self, painter: &Painter<'_>, range: Option<(u64, u64)>) {
        let (ctx, theme, p) = (painter.ctx, painter.theme, self);
        let Some((a, b)) = range.filter(|&(a, b)| b >= p.t0 && p.shows(a.max(p.t0))) else {
            return;
        };
        let (xa, xb) = (p.x_of(a.max(p.t0)), p.x_of(b.min(p.t0 + p.span_ns)));
        ctx.set_fill_style_str(&theme.select);
        ctx.fill_rect(xa, p.y, (xb - xa).max(1.0), p.h);
        ctx.set_stroke_style_str(&theme.heap);
        ctx.set_line_width(1.0);
        for x in [xa, xb] {
            ctx.begin_path();
            ctx.move_to(x.round() + 0.5, p.y);
            ctx.line_to(x.round() + 0.5, p.y + p.h);
            ctx.stroke();
        }
    }

    /// A peak of `bytes` at `at`: a dashed rule up to a dot, and `label` beside it.
    pub fn draw_peak(&self, painter: &Painter<'_>, bytes: u64, at: u64, label: &str) {
        let (ctx, theme, p) = (painter.ctx, painter.theme, self);
        if bytes == 0 || !p.shows(at) {
            return;
        }
        let (x, y) = (p.x_of(at), p.y_of(bytes));
        ctx.set_stroke_style_str(&theme.peak);
        ctx.set_line_width(1.0);
        let _ = ctx.set_line_dash(&js_sys::Array::of2(&3.0.into(), &3.0.into()));
        ctx.begin_path();
        ctx.move_to(x.round() + 0.5, p.y + p.h);
        ctx.line_to(x.round() + 0.5, y);
        ctx.stroke();
        let _ = ctx.set_line_dash(&js_sys::Array::new());
        ctx.set_fill_style_str(&theme.peak);
        ctx.begin_path();
        let _ = ctx.arc(x, y, 4.0, 0.0, std::f64::consts::TAU);
        ctx.fill();
        ctx.set_font(&theme.font(11.5, 600));
        let right_half = x > p.x + p.w * 0.7;
        ctx.set_text_align(if right_half { "right" } else { "left" });
        ctx.set_text_baseline("bottom");
        let lx = if right_half { x - 7.0 } else { x + 7.0 };
        let _ = ctx.fill_text(label, lx, (y - 3.0).max(p.y + 12.0));
    }

    /// A step series (buckets spread over the plot's width), filled at `alpha` and stroked.
    pub fn draw_series(&self, painter: &Painter<'_>, buckets: &[Bucket], color: &str, alpha: f64) {
        let (ctx, p) = (painter.ctx, self);
        let n = buckets.len().max(1) as f64;
        let x_at = |i: usize| p.x + p.w * i as f64 / n;
        if alpha > 0.0 {
            ctx.begin_path();
            ctx.move_to(p.x, p.y + p.h);
            for (i, b) in buckets.iter().enumerate() {
                // Step through min and max so a spike inside one bucket is still drawn.
                ctx.line_to(x_at(i), p.y_of(b.max));
                ctx.line_to(x_at(i + 1), p.y_of(b.last));
            }
            ctx.line_to(p.x + p.w, p.y + p.h);
            ctx.close_path();
            ctx.set_global_alpha(alpha);
            ctx.set_fill_style_str(color);
            ctx.fill();
            ctx.set_global_alpha(1.0);
        }
        ctx.begin_path();
        for (i, b) in buckets.iter().enumerate() {
            if i == 0 {
                ctx.move_to(x_at(i), p.y_of(b.max));
            } else {
                ctx.line_to(x_at(i), p.y_of(b.max));
            }
            ctx.line_to(x_at(i + 1), p.y_of(b.last));
        }
        ctx.set_stroke_style_str(color);
        ctx.set_line_width(1.5);
        ctx.stroke();
    }
}
