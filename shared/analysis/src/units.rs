//! Human-readable numbers, shared so the CLI and the viewer print them the same way.

/// Bytes in binary units with three significant digits: `512 B`, `1.50 KiB`, `104 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {}", UNITS[unit])
}

/// A signed byte difference: `+1.50 KiB`, `-3 B`, `0 B`.
pub fn format_bytes_delta(delta: i64) -> String {
    match delta {
        0 => "0 B".into(),
        d if d > 0 => format!("+{}", format_bytes(d.unsigned_abs())),
        d => format!("-{}", format_bytes(d.unsigned_abs())),
    }
}

/// A duration in nanoseconds: `850 µs`, `12.3 ms`, `4.56 s`, `2 min 05 s`.
pub fn format_duration_ns(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{} µs", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns < 120_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else {
        let s = ns / 1_000_000_000;
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn format_count(n: u64) -> String {
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

/// A signed count difference: `+1,200`, `-3`, `0`.
pub fn format_count_delta(delta: i64) -> String {
    match delta {
        d if d > 0 => format!("+{}", format_count(d.unsigned_abs())),
        d if d < 0 => format!("-{}", format_count(d.unsigned_abs())),
        _ => "0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(100 << 20), "100 MiB");
        assert_eq!(format_bytes(u64::MAX), "16384 PiB");
        assert_eq!(format_bytes_delta(-1536), "-1.50 KiB");
        assert_eq!(format_bytes_delta(10), "+10 B");
    }

    #[test]
    fn durations_and_counts() {
        assert_eq!(format_duration_ns(850_000), "850 µs");
        assert_eq!(format_duration_ns(12_340_000), "12.3 ms");
        assert_eq!(format_duration_ns(4_561_000_000), "4.56 s");
        assert_eq!(format_duration_ns(125_000_000_000), "2 min 05 s");
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(1_234_567), "1,234,567");
        assert_eq!(format_count(100), "100");
        assert_eq!(format_count_delta(-1234), "-1,234");
        assert_eq!(format_count_delta(20_000), "+20,000");
        assert_eq!(format_count_delta(0), "0");
    }
}
