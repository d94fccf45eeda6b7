//! Human-readable bytes, durations and shares for the UI (pure; tested natively).

pub use memlens_analysis::{
    format_bytes as bytes, format_bytes_delta as bytes_delta, format_count as count,
    format_count_delta as count_delta, format_duration_ns as duration_ns,
};

/// A time offset from the start of the recording, for tooltips and notes: `0 s`, `1.25 s`.
pub fn time_ns(ns: u64) -> String {
    if ns == 0 {
        "0 s".to_string()
    } else {
        duration_ns(ns)
    }
}

/// A selected time range, for a timeline's note: `Selected 1.2 s – 1.5 s (300 ms)`.
pub fn selection(a: u64, b: u64) -> String {
    format!("Selected {} – {} ({})", time_ns(a), time_ns(b), duration_ns(b.saturating_sub(a)))
}

/// An axis label for time `t` (ns) on an axis with ticks every `step` ns and going up to
/// `max` ns: one unit for the whole axis, as many decimals as the step needs.
pub fn axis_time(t: f64, step: f64, max: f64) -> String {
    let (unit, name) = if max >= 1e9 {
        (1e9, "s")
    } else if max >= 1e6 {
        (1e6, "ms")
    } else if max >= 1e3 {
        (1e3, "µs")
    } else {
        (1.0, "ns")
    };
    let decimals = (-(step / unit).log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{:.decimals$} {name}", t / unit)
}

/// An axis label for `v` bytes on an axis with ticks every `step` bytes (from
/// [`nice_byte_step`], so a whole number of a binary unit): `0 B`, `512 KiB`, `50 MiB`.
pub fn axis_bytes(v: f64, step: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if v == 0.0 {
        return "0 B".to_string();
    }
    let mut unit = 0;
    let mut scale = 1.0;
    while unit + 1 < UNITS.len() && step >= scale * 1024.0 {
        scale *= 1024.0;
        unit += 1;
    }
    format!("{:.0} {}", v / scale, UNITS[unit])
}

/// `part / whole` as a percentage with a sensible number of digits: `42%`, `3.1%`, `0.04%`.
pub fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".to_string();
    }
    let p = part as f64 * 100.0 / whole as f64;
    if p >= 10.0 || p == 0.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

/// "Nice" axis steps (1, 2, 5 × 10^k) so that `span / step` is at most `max_ticks`.
pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
    if span <= 0.0 || max_ticks == 0 {
        return 1.0;
    }
    let raw = span / max_ticks as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag)
}

/// Like [`nice_step`] for byte axes: powers of two times 1, 2 or 5 of a binary unit.
pub fn nice_byte_step(span: f64, max_ticks: usize) -> f64 {
    if span <= 0.0 || max_ticks == 0 {
        return 1.0;
    }
    let raw = span / max_ticks as f64;
    let mut unit = 1.0;
    while unit * 1024.0 <= raw {
        unit *= 1024.0;
    }
    let step = nice_step(raw / unit, 1);
    // 1000 KiB is not a round number on a binary axis: use 1 MiB.
    if step >= 1000.0 {
        unit * 1024.0
    } else {
        unit * step
    }
}

/// `1 allocation`, `2 allocations`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_use_one_unit_and_no_noise() {
        assert_eq!(axis_time(0.0, 2e9, 16e9), "0 s");
        assert_eq!(axis_time(4e9, 2e9, 16e9), "4 s");
        assert_eq!(axis_time(1.5e9, 5e8, 3e9), "1.5 s");
        assert_eq!(axis_time(20e3, 5e3, 50e3), "20 µs");
        assert_eq!(axis_time(0.0, 2e8, 900e6), "0 ms");
        assert_eq!(axis_bytes(0.0, 50.0 * 1048576.0), "0 B");
        assert_eq!(axis_bytes(100.0 * 1048576.0, 50.0 * 1048576.0), "100 MiB");
        assert_eq!(axis_bytes(1000.0, 500.0), "1000 B");
        assert_eq!(time_ns(0), "0 s");
    }

    #[test]
    fn shares_and_counts() {
        assert_eq!(share(1, 0), "0%");
        assert_eq!(share(42, 100), "42%");
        assert_eq!(share(31, 1000), "3.1%");
        assert_eq!(share(4, 10_000), "0.04%");
        assert_eq!(plural(1, "allocation", "allocations"), "1 allocation");
        assert_eq!(plural(1200, "allocation", "allocations"), "1,200 allocations");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(7.0, 10), 1.0);
        assert_eq!(nice_step(4.5e9, 6), 1e9);
        assert_eq!(nice_byte_step(100.0 * 1024.0 * 1024.0, 5), 20.0 * 1024.0 * 1024.0);
        assert_eq!(nice_byte_step(3000.0, 4), 1024.0);
        assert_eq!(nice_byte_step(3.0 * 1024.0 * 1024.0, 4), 1024.0 * 1024.0);
        assert_eq!(nice_byte_step(6.0 * 1024.0, 3), 2048.0);
    }
}
