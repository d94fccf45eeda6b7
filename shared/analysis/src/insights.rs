//! Findings a recording proves, each with its numbers: memory still growing at exit (a
//! probable leak), unbounded `functools.lru_cache`s, many instances of a class without
//! `__slots__` (and what `__slots__` would save), short-lived large allocations at one line
//! (temporary churn), uncollectable garbage, costly garbage collection and deep recursion.
//!
//! Nothing here is generic advice: a finding exists only when the recording holds the
//! evidence, and its message quotes it. Pure: from the interval aggregates (live memory at
//! four moments, short-lived large blocks) or one replay of the events, plus the censuses.
//! [`InsightsBuilder`] runs the replay a chunk at a time.

use rustc_hash::FxHashMap;

use crate::census::{deepest_stack, last_census, type_name};
use crate::{format_bytes, format_count, format_duration_ns, saturating_sum};
use crate::{site_label, AddressMap, BlockCount, Error, Event, GcEvent, Op, Recording, StackId};
use memlens_format::{CHURN_MAX_LIFETIME_NS, CHURN_MIN_SIZE};

/// What a finding is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum InsightKind {
    /// Live memory from one stack grew through every quarter of the run up to the exit.
    GrowingAtExit,
    /// An `lru_cache(maxsize=None)` holding many entries.
    UnboundedCache,
    /// Many instances of a class without `__slots__`.
    MissingSlots,
    /// Many large allocations at one stack, each freed soon after.
    TemporaryChurn,
    /// The garbage collector found uncollectable objects.
    UncollectableCycles,
    /// Garbage collection took a large share of the run.
    GcTime,
    /// The deepest Python stack came close to the recursion limit.
    DeepRecursion,
}

impl InsightKind {
    /// A stable snake_case name (used in JSON).
    pub fn name(self) -> &'static str {
        match self {
            InsightKind::GrowingAtExit => "growing_at_exit",
            InsightKind::UnboundedCache => "unbounded_cache",
            InsightKind::MissingSlots => "missing_slots",
            InsightKind::TemporaryChurn => "temporary_churn",
            InsightKind::UncollectableCycles => "uncollectable_cycles",
            InsightKind::GcTime => "gc_time",
            InsightKind::DeepRecursion => "deep_recursion",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Insight {
    /// What it is about.
    pub kind: InsightKind,
    /// One sentence with the evidence (sizes, counts, times from the recording).
    pub message: String,
    /// The memory concerned in bytes (what a fix could save or what grew), 0 when none.
    pub bytes: u64,
    /// The stack it points at, when there is one.
    pub stack: Option<StackId>,
    /// The Python type or function it is about (`module.qualname`), when there is one.
    pub subject: Option<String>,
    /// The time it concerns (first to last event of the evidence, in ns), when there is one.
    pub span_ns: Option<(u64, u64)>,
}

/// Thresholds of [`insights`]. The defaults keep findings to things worth a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsightOptions {
    /// Smallest growth of one stack over the run to report as growing at exit.
    pub min_growth_bytes: u64,
    /// An allocation at least this big is "large" for churn.
    pub churn_min_size: u64,
    /// ... and "short-lived" when freed within this many ns.
    pub churn_max_lifetime_ns: u64,
    /// Fewest short-lived large allocations at one stack to report.
    pub churn_min_count: u64,
    /// Fewest entries of an unbounded cache to report (128 is lru_cache's default maxsize).
    pub cache_min_entries: u64,
    /// Fewest instances of a class to consider `__slots__` for.
    pub slots_min_instances: u64,
    /// Smallest total `__slots__` saving to report.
    pub slots_min_saving: u64,
    /// Smallest share of the run spent in the garbage collector to report, in percent.
    pub gc_min_percent: u64,
    /// Smallest depth, in percent of the recursion limit, to report.
    pub recursion_min_percent: u64,
}

impl Default for InsightOptions {
    fn default() -> Self {
        InsightOptions {
            min_growth_bytes: 1 << 20,
            churn_min_size: 64 << 10,
            churn_max_lifetime_ns: 10_000_000,
            churn_min_count: 100,
            cache_min_entries: 128,
            slots_min_instances: 1000,
            slots_min_saving: 64 << 10,
            gc_min_percent: 5,
            recursion_min_percent: 80,
        }
    }
}

/// Number of checkpoints (quarters of the run) a growing stack must grow through.
const QUARTERS: usize = 4;

/// Computes [`insights`] one chunk of events at a time, for callers that must yield between
/// chunks (the viewer): [`feed`](Self::feed) every event chunk in order, then
/// [`finish`](Self::finish).
///
/// ```
/// use memlens_format::*;
/// use memlens_analysis::*;
/// let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
/// w.gc(GcEvent { time_ns: 0, duration_ns: 600, generation: 2, collected: 9, uncollectable: 0 });
/// let bytes = w.finish(ProcessEnd { time_ns: 1_000, exit_code: Some(0), signal: None }).unwrap();
/// let rec = Recording::open(&bytes).unwrap();
/// let mut b = InsightsBuilder::new(&rec, &InsightOptions::default());
/// let mut events = Vec::new();
/// for chunk in 0..rec.event_chunk_count() {
///     events.clear();
///     rec.decode_event_chunk(chunk, &mut events).unwrap();
///     b.feed(&events);
/// }
/// assert_eq!(b.finish()[0].kind, InsightKind::GcTime);
/// ```
pub struct InsightsBuilder<'a> {
    rec: &'a Recording,
    o: InsightOptions,
    /// The ends of the first three quarters of the run.
    marks: Vec<u64>,
    live: AddressMap<(StackId, u64, u64)>,
    per_stack: FxHashMap<StackId, u64>,
    /// Live bytes per stack at the end of each of the first three quarters, then at exit.
    checkpoints: Vec<FxHashMap<StackId, u64>>,
    /// Short-lived large allocations per stack: (count, bytes).
    churn: FxHashMap<StackId, (u64, u64)>,
    /// What each block counts in `churn` ([`Recording::block_count`]).
    blocks: BlockCount,
}

impl<'a> InsightsBuilder<'a> {
    /// A builder for `rec`'s findings.
    pub fn new(rec: &'a Recording, o: &InsightOptions) -> Self {
        InsightsBuilder {
            rec,
            o: *o,
            marks: quarter_marks(rec),
            live: AddressMap::default(),
            per_stack: FxHashMap::default(),
            checkpoints: Vec::new(),
            churn: FxHashMap::default(),
            blocks: rec.block_count(),
        }
    }

    /// Whether the findings need the events at all (not for memory-sampling-only recordings).
    pub fn needs_events(&self) -> bool {
        !self.rec.meta().capture.rss_only
    }

    /// Replays the next chunk of events.
    pub fn feed(&mut self, events: &[Event]) {
        let o = &self.o;
        for e in events.iter().filter(|e| e.kind.counts_in_heap()) {
            while self.checkpoints.len() < self.marks.len()
                && e.time_ns > self.marks[self.checkpoints.len()]
            {
                self.checkpoints.push(self.per_stack.clone());
            }
            match e.op {
                // An object re-created in a block: the block is the new stack's, as old as it
                // was (for churn). Its free half comes first and changes nothing here.
                Op::Free if e.is_recreation() => {}
                Op::Alloc if e.is_recreation() => {
                    let Some(b) = self.live.get_mut(&e.address) else { continue };
                    sub(&mut self.per_stack, b.0, b.1);
                    b.0 = e.stack;
                    *self.per_stack.entry(e.stack).or_default() += b.1;
                }
                Op::Alloc => {
                    let old = self.live.insert(e.address, (e.stack, e.size, e.time_ns));
                    if let Some((s, size, _)) = old {
                        sub(&mut self.per_stack, s, size);
                    }
                    *self.per_stack.entry(e.stack).or_default() += e.size;
                }
                Op::Free => {
                    let Some((s, size, t)) = self.live.remove(&e.address) else { continue };
                    sub(&mut self.per_stack, s, size);
                    if size >= o.churn_min_size
                        && e.time_ns.saturating_sub(t) <= o.churn_max_lifetime_ns
                    {
                        let c = self.churn.entry(s).or_default();
                        c.0 = c.0.saturating_add(self.blocks.of(size));
                        c.1 = c.1.saturating_add(size);
                    }
                }
            }
        }
    }

    /// Everything the recording shows, most memory first within each kind; kinds in the order
    /// of [`InsightKind`].
    pub fn finish(mut self) -> Vec<Insight> {
        let events = self.needs_events().then(|| {
            while self.checkpoints.len() < QUARTERS {
                self.checkpoints.push(self.per_stack.clone());
            }
            (self.checkpoints, self.churn)
        });
        findings(self.rec, &self.o, events.as_ref().map(|(c, ch)| (c.as_slice(), ch)))
    }
}

/// The quarter marks of the run: the times the growth finding checks live memory at
/// (computed wide: a damaged or hostile file's duration can be near `u64::MAX`).
fn quarter_marks(rec: &Recording) -> Vec<u64> {
    let duration = u128::from(rec.summary().duration_ns.max(1));
    (1..QUARTERS as u128).map(|k| (duration * k / QUARTERS as u128) as u64).collect()
}

/// Live bytes per stack at one moment.
type LiveByStack = FxHashMap<StackId, u64>;
/// Short-lived large allocations per stack: (count, bytes).
type ChurnByStack = FxHashMap<StackId, (u64, u64)>;

/// The findings from live memory per stack at the quarter marks and the end, short-lived
/// large allocations per stack (both `None` for a recording without allocation events), and
/// the recording's censuses and gc runs.
fn findings(
    rec: &Recording,
    o: &InsightOptions,
    events: Option<(&[LiveByStack], &ChurnByStack)>,
) -> Vec<Insight> {
    let mut found = Vec::new();
    if let Some((checkpoints, churn_by_stack)) = events {
        growing(rec, o, checkpoints, &mut found);
        churn(rec, o, churn_by_stack, &mut found);
    }
    caches(rec, o, &mut found);
    slots(rec, o, &mut found);
    gc(rec, o, &mut found);
    recursion(rec, o, &mut found);
    found.sort_by_key(|i| (i.kind, std::cmp::Reverse(i.bytes)));
    found
}

fn sub(m: &mut FxHashMap<StackId, u64>, s: StackId, size: u64) {
    if let Some(v) = m.get_mut(&s) {
        *v = v.saturating_sub(size);
    }
}

/// Everything the recording shows, most memory first within each kind; kinds in the order of
/// [`InsightKind`]. From the aggregates when the recording has them and the churn thresholds
/// are the ones they were kept for, else by one replay of the events (see [`InsightsBuilder`]
/// to run it in slices).
pub fn insights(rec: &Recording, o: &InsightOptions) -> Result<Vec<Insight>, Error> {
    let kept =
        o.churn_min_size == CHURN_MIN_SIZE && o.churn_max_lifetime_ns == CHURN_MAX_LIFETIME_NS;
    if rec.aggregates_missing().is_none() && kept {
        if rec.meta().capture.rss_only {
            return Ok(findings(rec, o, None));
        }
        let mut checkpoints = Vec::with_capacity(QUARTERS);
        for mark in quarter_marks(rec) {
            checkpoints.push(crate::query::live_bytes_by_stack(rec, Some(mark))?);
        }
        checkpoints.push(crate::query::live_bytes_by_stack(rec, None)?);
        let churn = crate::query::churn_by_stack(rec)?;
        return Ok(findings(rec, o, Some((&checkpoints, &churn))));
    }
    crate::replay::insights(rec, o)
}

fn growing(
    rec: &Recording,
    o: &InsightOptions,
    checkpoints: &[FxHashMap<StackId, u64>],
    found: &mut Vec<Insight>,
) {
    let end = &checkpoints[QUARTERS - 1];
    for (&stack, &at_end) in end {
        if stack == StackId::ROOT {
            continue;
        }
        let series: Vec<u64> =
            checkpoints.iter().map(|c| c.get(&stack).copied().unwrap_or(0)).collect();
        let rising = series.windows(2).all(|w| w[1] > w[0]);
        let growth = at_end.saturating_sub(series[0]);
        if !rising || growth < o.min_growth_bytes {
            continue;
        }
        let steps: Vec<String> = series.iter().map(|&b| format_bytes(b)).collect();
        found.push(Insight {
            kind: InsightKind::GrowingAtExit,
            message: format!(
                "probable leak: memory allocated at {} grew in every quarter of the run \
                 ({}) and was still held at exit: +{} since the first quarter",
                site_label(rec, stack),
                steps.join(" -> "),
                format_bytes(growth)
            ),
            bytes: growth,
            stack: Some(stack),
            subject: None,
            span_ns: None,
        });
    }
}

fn churn(
    rec: &Recording,
    o: &InsightOptions,
    per_stack: &FxHashMap<StackId, (u64, u64)>,
    found: &mut Vec<Insight>,
) {
    // A sampled block's size is what it stands for (a 64-byte object sampled every 512 KiB
    // counts about 512 KiB), not one block's: "blocks of 64 KiB or more" cannot be told.
    if rec.meta().sample_bytes().is_some() {
        return;
    }
    for (&stack, &(count, bytes)) in per_stack {
        if count < o.churn_min_count {
            continue;
        }
        found.push(Insight {
            kind: InsightKind::TemporaryChurn,
            message: format!(
                "temporary churn: {} allocated {} blocks of {} or more ({} in total, {} on \
                 average) that were each freed within {}",
                site_label(rec, stack),
                format_count(count),
                format_bytes(o.churn_min_size),
                format_bytes(bytes),
                format_bytes(bytes / count.max(1)),
                format_duration_ns(o.churn_max_lifetime_ns)
            ),
            bytes,
            stack: Some(stack),
            subject: None,
            span_ns: None,
        });
    }
}

fn caches(rec: &Recording, o: &InsightOptions, found: &mut Vec<Insight>) {
    // The latest report of each cache.
    let mut latest = FxHashMap::default();
    for c in rec.caches() {
        latest.insert((c.module, c.qualname), c);
    }
    for c in latest.into_values() {
        if c.maxsize.is_some() || c.currsize < o.cache_min_entries {
            continue;
        }
        let name = type_name(rec, c.module, c.qualname);
        let calls = c.hits + c.misses;
        let hit_rate = c
            .hits
            .saturating_mul(100)
            .checked_div(calls)
            .map_or_else(String::new, |p| format!(", hit rate {p}%"));
        found.push(Insight {
            kind: InsightKind::UnboundedCache,
            message: format!(
                "unbounded cache: {name} is an lru_cache(maxsize=None) holding {} entries \
                 ({} in the cache table, keys and results, shallow){hit_rate}; it never evicts",
                format_count(c.currsize),
                format_bytes(c.bytes)
            ),
            bytes: c.bytes,
            stack: None,
            subject: Some(name),
            span_ns: None,
        });
    }
}

fn slots(rec: &Recording, o: &InsightOptions, found: &mut Vec<Insight>) {
    let Some(census) = last_census(rec) else { return };
    for t in &census.types {
        let Some(d) = t.dict else { continue };
        if t.count < o.slots_min_instances || t.linked_count == 0 || d.storage_linked == 0 {
            continue;
        }
        let object = t.linked_bytes as f64 / t.linked_count as f64;
        let storage = d.storage_bytes as f64 / d.storage_linked as f64;
        let now = object + storage;
        let with_slots = d.slots_instance_bytes as f64;
        let saving = ((now - with_slots) * t.count as f64).max(0.0) as u64;
        if saving < o.slots_min_saving {
            continue;
        }
        let name = type_name(rec, t.module, t.qualname);
        let site = t.sites.first().map(|s| s.stack);
        let at = site.map_or_else(String::new, |s| format!(", made at {}", site_label(rec, s)));
        found.push(Insight {
            kind: InsightKind::MissingSlots,
            message: format!(
                "__slots__: {} instances of {name}{at} take {:.0} B each ({:.0} B object + \
                 {:.0} B attribute storage, {:.1} attributes); with __slots__ they would take \
                 {:.0} B: {} less",
                format_count(t.count),
                now,
                object,
                storage,
                d.attrs as f64 / d.sampled.max(1) as f64,
                with_slots,
                format_bytes(saving)
            ),
            bytes: saving,
            stack: site,
            subject: Some(name),
            span_ns: None,
        });
    }
}

fn gc(rec: &Recording, o: &InsightOptions, found: &mut Vec<Insight>) {
    let gcs = rec.gc_events();
    let uncollectable = saturating_sum(gcs.iter().map(|g| g.uncollectable));
    if uncollectable > 0 {
        let found_some = || gcs.iter().filter(|g| g.uncollectable > 0);
        let runs = found_some().count();
        found.push(Insight {
            kind: InsightKind::UncollectableCycles,
            message: format!(
                "uncollectable cycles: {} collections found {} uncollectable objects (kept in \
                 gc.garbage for the rest of the run)",
                format_count(runs as u64),
                format_count(uncollectable)
            ),
            bytes: 0,
            stack: None,
            subject: None,
            span_ns: span(found_some()),
        });
    }
    let total = saturating_sum(gcs.iter().map(|g| g.duration_ns));
    let duration = rec.summary().duration_ns;
    if duration > 0 && total.saturating_mul(100) >= o.gc_min_percent.saturating_mul(duration) {
        let collected = saturating_sum(gcs.iter().map(|g| g.collected));
        found.push(Insight {
            kind: InsightKind::GcTime,
            message: format!(
                "garbage collection: {} collections took {} ({}% of the run) and freed {} \
                 objects in reference cycles",
                format_count(gcs.len() as u64),
                format_duration_ns(total),
                u128::from(total) * 100 / u128::from(duration),
                format_count(collected)
            ),
            bytes: 0,
            stack: None,
            subject: None,
            span_ns: span(gcs.iter()),
        });
    }
}

/// From the start of the first collection to the end of the last.
fn span<'a>(mut gcs: impl Iterator<Item = &'a GcEvent>) -> Option<(u64, u64)> {
    let first = gcs.next()?;
    let end = |g: &GcEvent| g.time_ns.saturating_add(g.duration_ns);
    Some((first.time_ns, gcs.fold(end(first), |e, g| e.max(end(g)))))
}

fn recursion(rec: &Recording, o: &InsightOptions, found: &mut Vec<Insight>) {
    let Some(limit) = last_census(rec).map(|c| c.recursion_limit).filter(|&l| l > 0) else {
        return;
    };
    let Some((stack, depth)) = deepest_stack(rec) else { return };
    if u64::from(depth) * 100 < o.recursion_min_percent * u64::from(limit) {
        return;
    }
    found.push(Insight {
        kind: InsightKind::DeepRecursion,
        message: format!(
            "deep recursion: a Python stack {depth} frames deep (at {}) against a recursion \
             limit of {limit}",
            site_label(rec, stack)
        ),
        bytes: 0,
        stack: Some(stack),
        subject: None,
        span_ns: None,
    });
}
