//! Human-readable bytes, durations and shares for the UI (pure; tested natively).

/// Bytes with binary prefixes and three significant digits: `512 B`, `1.50 KiB`, `23.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    // Round first so 1023.96 KiB prints as "1024 KiB", not "1.02e3".
    let text = if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{text} {}", UNITS[unit])
}

/// A duration given in nanoseconds: `850 µs`, `12.3 ms`, `4.52 s`, `2 min 05 s`.
pub fn duration_ns(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.0} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        let ms = ns as f64 / 1e6;
        if ms < 10.0 {
            format!("{ms:.2} ms")
        } else if ms < 100.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        }
    } else if s < 60.0 {
        if s < 10.0 {
            format!("{s:.2} s")
        } else {
            format!("{s:.1} s")
        }
    } else {
        let total = s.round() as u64;
        format!("{} min {:02} s", total / 60, total % 60)
    }
}

/// A time offset from the start of the recording, for axes and tooltips: `0 s`, `1.25 s`.
pub fn time_ns(ns: u64) -> String {
    if ns == 0 {
        "0 s".to_string()
    } else {
        duration_ns(ns)
    }
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

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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
    unit * nice_step(raw / unit, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units_and_three_digits() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(10 * 1024 * 1024 + 400 * 1024), "10.4 MiB");
        assert_eq!(bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1024 KiB");
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(duration_ns(999), "999 ns");
        assert_eq!(duration_ns(850_000), "850 µs");
        assert_eq!(duration_ns(12_340_000), "12.3 ms");
        assert_eq!(duration_ns(4_520_000_000), "4.52 s");
        assert_eq!(duration_ns(125_000_000_000), "2 min 05 s");
        assert_eq!(time_ns(0), "0 s");
    }

    #[test]
    fn shares_and_counts() {
        assert_eq!(share(1, 0), "0%");
        assert_eq!(share(42, 100), "42%");
        assert_eq!(share(31, 1000), "3.1%");
        assert_eq!(share(4, 10_000), "0.04%");
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(100), "100");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(7.0, 10), 1.0);
        assert_eq!(nice_step(4.5e9, 6), 1e9);
        assert_eq!(nice_byte_step(100.0 * 1024.0 * 1024.0, 5), 20.0 * 1024.0 * 1024.0);
        assert_eq!(nice_byte_step(3000.0, 4), 1000.0);
        assert_eq!(nice_byte_step(6.0 * 1024.0, 3), 2048.0);
    }
}
