//! Downsampling step series into buckets that keep each bucket's lowest and highest value:
//! what the timeline draws from, whether its points come from the aggregates or a replay.

/// One bucket of a downsampled series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Start of the bucket (ns).
    pub t0: u64,
    /// End of the bucket (ns, exclusive).
    pub t1: u64,
    /// Lowest value in the bucket.
    pub min: u64,
    /// Highest value in the bucket: the peak is never lost to downsampling.
    pub max: u64,
    /// Value at the end of the bucket.
    pub last: u64,
}

/// Downsamples a step series (`(time, value)` in time order; each value holds until the next)
/// into `n` equal buckets over `[t0, t1)`, keeping each bucket's min and max.
pub fn downsample(
    points: impl IntoIterator<Item = (u64, u64)>,
    t0: u64,
    t1: u64,
    n: usize,
) -> Vec<Bucket> {
    let n = n.max(1);
    let span = t1.saturating_sub(t0).max(1);
    let edge = |i: usize| t0 + (span as u128 * i as u128 / n as u128) as u64;
    let mut out: Vec<Bucket> =
        (0..n).map(|i| Bucket { t0: edge(i), t1: edge(i + 1), ..Default::default() }).collect();
    let mut current = 0u64;
    let mut points = points.into_iter().peekable();
    for b in out.iter_mut() {
        // The value carried into the bucket counts for it too.
        while let Some(&(t, v)) = points.peek() {
            if t >= b.t0 {
                break;
            }
            current = v;
            points.next();
        }
        b.min = current;
        b.max = current;
        while let Some(&(t, v)) = points.peek() {
            if t >= b.t1 {
                break;
            }
            current = v;
            b.min = b.min.min(v);
            b.max = b.max.max(v);
            points.next();
        }
        b.last = current;
    }
    out
}
