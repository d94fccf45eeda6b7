//! `--sample BYTES` (Poisson byte sampling): the rate as the user writes it, and the weight
//! that makes each sampled block an unbiased estimate.
//!
//! The tracer samples each thread's allocated bytes as a Poisson process of mean BYTES
//! (collector/tracer/src/sampling.rs), so a block of `s` bytes is recorded with probability
//! `p = 1 - exp(-s / BYTES)`. Recording it as `s / p` bytes (and `1 / p` blocks) makes the
//! sum over the sampled blocks of any set of blocks an unbiased estimate of that set's
//! bytes: the recorder ([`crate::recorder`]) writes that weight as the block's size, so every
//! reader's figure (summary, aggregates, flame graphs, diff, viewer) is the estimate, and
//! the recording says so in `Meta` ([`memlens_format::META_SAMPLE_BYTES`]).

use anyhow::{bail, Result};

/// The smallest rate: one byte (every block of a few bytes or more is then sampled).
pub const MIN_SAMPLE_BYTES: u64 = 1;
/// The largest rate, 1 GiB: beyond it a run of ordinary length keeps a handful of samples,
/// and estimates of anything but its largest blocks are noise.
pub const MAX_SAMPLE_BYTES: u64 = 1 << 30;

/// Parses a rate: a whole number of bytes, or a number with a binary unit (`B`, `KiB`,
/// `MiB`, `GiB`, any case, a space allowed before it): `524288`, `512KiB`, `1.5 MiB`.
pub fn parse_sample_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'));
    let (number, unit) = t.split_at(split.unwrap_or(t.len()));
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" | "mb" | "gb" | "k" | "m" | "g" => {
            bail!("--sample {text:?}: write binary units, KiB, MiB or GiB (512KiB = 524288 bytes)")
        }
        _ => bail!("--sample {text:?}: not a size (examples: 512KiB, 2MiB, 524288)"),
    };
    let value: f64 = match number.parse() {
        Ok(v) if f64::is_finite(v) => v,
        _ => bail!("--sample {text:?}: not a size (examples: 512KiB, 2MiB, 524288)"),
    };
    let bytes = (value * scale as f64).round();
    if !(MIN_SAMPLE_BYTES as f64..=MAX_SAMPLE_BYTES as f64).contains(&bytes) {
        bail!(
            "--sample {text:?}: the mean bytes between samples must be from 1 B to 1 GiB \
             (512KiB is the usual rate; leave --sample out to record every allocation)"
        );
    }
    Ok(bytes as u64)
}

/// [`parse_sample_bytes`] as a clap value parser (`--sample` of `run` and `attach`).
pub fn sample_arg(s: &str) -> Result<u64, String> {
    parse_sample_bytes(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_bytes_and_binary_units() {
        assert_eq!(parse_sample_bytes("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_sample_bytes("512 kib").unwrap(), 512 * 1024);
        assert_eq!(parse_sample_bytes("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_sample_bytes("1.5 MiB").unwrap(), 3 << 19);
        assert_eq!(parse_sample_bytes("524288").unwrap(), 524_288);
        assert_eq!(parse_sample_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_sample_bytes("1B").unwrap(), 1);
    }

    #[test]
    fn zero_negative_unparsable_and_absurd_rates_are_refused() {
        for bad in
            ["0", "0KiB", "-512KiB", "abc", "", "512 parsecs", "nan", "inf", "1.5GiB", "2GiB"]
        {
            let e = parse_sample_bytes(bad).unwrap_err().to_string();
            assert!(e.contains("--sample"), "{bad}: {e}");
        }
        assert!(parse_sample_bytes("512KB").unwrap_err().to_string().contains("binary units"));
        assert!(parse_sample_bytes("0.2").unwrap_err().to_string().contains("from 1 B to 1 GiB"));
    }
}
