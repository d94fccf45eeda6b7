//! Compare mode: a base and a head recording side by side. Their facts with the change, both
//! heap timelines on one time axis, a differential flame graph and a delta table of call
//! sites. The diff tree and the site deltas come from `memlens-format`
//! (`DiffTree::build`, `diff_sites`); this module computes them per flame mode (cached) and
//! lays out the page.

use std::collections::HashMap;

use leptos::prelude::*;
use memlens_analysis::{
    diff_sites, incomparable_reasons, DiffOptions, DiffTree, EventFilter, FlameOptions, SiteDelta,
    Snapshot,
};

use crate::compare_timeline::CompareTimeline;
use crate::delta_table::DeltaTable;
use crate::diff_flame::{delta_text, DiffFlameGraph};
use crate::flame_graph::{snapshot_for, totals_sliced};
use crate::load::{Loaded, Loader, Progress};
use crate::timeline::TimelineData;
use crate::url_state::FlameMode;
use crate::{units, ByPtr};

/// The modes compare mode offers (a time range means nothing across two runs).
pub const COMPARE_MODES: [FlameMode; 3] = [FlameMode::AtPeak, FlameMode::Leaks, FlameMode::Total];

/// Everything compared for one flame mode.
pub struct CompareData {
    pub tree: DiffTree,
    /// Call sites, biggest absolute change first.
    pub sites: Vec<SiteDelta>,
}

impl CompareData {
    /// Replays both recordings for `mode`, a slice at a time like the flame graph (the page
    /// keeps responding); `None` once `wanted()` says another mode replaced this one.
    pub async fn compute(
        base: &Loaded,
        head: &Loaded,
        mode: FlameMode,
        wanted: impl Fn() -> bool,
    ) -> Option<Result<CompareData, String>> {
        // Compare modes have no range.
        let snapshot = snapshot_for(mode, None).unwrap_or(Snapshot::AtPeak);
        let all = EventFilter::default();
        let mut totals = Vec::with_capacity(2);
        for l in [base, head] {
            match totals_sliced(&l.recording, snapshot, &all, &wanted).await? {
                Ok(t) => totals.push(t),
                Err(e) => return Some(Err(format!("Could not analyse {}: {e}", l.name))),
            }
        }
        let (bt, ht) = (&totals[0], &totals[1]);
        let options = DiffOptions {
            flame: FlameOptions { merge_lines: true, hide_internal: true },
            show_vanished: true,
        };
        let tree = DiffTree::build(&base.recording, bt, &head.recording, ht, &options);
        let sites = diff_sites(&base.recording, bt, &head.recording, ht);
        Some(Ok(CompareData { tree, sites }))
    }
}

/// One fact compared: base → head and the change.
#[component]
fn CompareFact(label: &'static str, id: &'static str, base: u64, head: u64) -> impl IntoView {
    let class = match head.cmp(&base) {
        std::cmp::Ordering::Greater => "fact-sub delta-up",
        std::cmp::Ordering::Less => "fact-sub delta-down",
        std::cmp::Ordering::Equal => "fact-sub",
    };
    view! {
        <div class="fact" id=id>
            <div class="fact-label">{label}</div>
            <div class="fact-value">{units::bytes(head)}</div>
            <div class="fact-sub">"base " {units::bytes(base)}</div>
            <div class=class>{delta_text(base, head)}</div>
        </div>
    }
}

/// The compare page for two loaded recordings.
#[component]
pub fn CompareView(base: ByPtr<Loaded>, head: ByPtr<Loaded>) -> impl IntoView {
    let state = crate::use_view_state::use_view_state();
    let mode = Memo::new(move |_| {
        let m = state.with(|s| s.mode);
        if COMPARE_MODES.contains(&m) {
            m
        } else {
            FlameMode::AtPeak
        }
    });
    // Per-mode results are kept: switching back to a mode does not replay both recordings.
    // A mode not computed yet replays both after the next paint, in slices, while the page
    // says it is computing.
    let cache: StoredValue<HashMap<FlameMode, ByPtr<CompareData>>> =
        StoredValue::new(HashMap::new());
    let (result, set_result) = signal(None::<Result<ByPtr<CompareData>, String>>);
    Effect::new({
        let (base, head) = (base.clone(), head.clone());
        move |_| {
            let m = mode.get();
            if let Some(hit) = cache.with_value(|c| c.get(&m).cloned()) {
                set_result.set(Some(Ok(hit)));
                return;
            }
            set_result.set(None);
            let (base, head) = (base.clone(), head.clone());
            leptos::task::spawn_local(async move {
                crate::load::sleep_ms(20).await;
                let wanted = || mode.get_untracked() == m;
                if !wanted() {
                    return;
                }
                let step = crate::Step::start(&format!("compare ({})", m.key()));
                let Some(d) = CompareData::compute(&base.0, &head.0, m, wanted).await else {
                    return;
                };
                step.finish();
                let d = d.map(ByPtr::new);
                if let Ok(d) = &d {
                    cache.update_value(|c| {
                        c.insert(m, d.clone());
                    });
                }
                if wanted() {
                    set_result.set(Some(d));
                }
            });
        }
    });
    let data = Memo::new(move |_| {
        result.get().unwrap_or_else(|| Err("Comparing the two recordings…".to_string()))
    });
    let end = base.0.recording.summary().duration_ns.max(head.0.recording.summary().duration_ns);
    let timelines = TimelineData::compute_until(&base.0, end)
        .and_then(|b| Ok((b, TimelineData::compute_until(&head.0, end)?)));
    let reasons = incomparable_reasons(&base.0.recording, &head.0.recording);
    let (bs, hs) = (*base.0.recording.summary(), *head.0.recording.summary());
    let warnings: Vec<String> = base
        .0
        .warnings
        .iter()
        .map(|w| format!("Base: {w}"))
        .chain(head.0.warnings.iter().map(|w| format!("Head: {w}")))
        .chain(reasons.into_iter().map(|r| format!("These recordings may not be comparable: {r}.")))
        .collect();
    let command = |l: &Loaded| crate::header::shell_join(&l.recording.meta().command_line);
    view! {
        {warnings
            .into_iter()
            .map(|w| view! { <div class="banner banner-warning" role="alert">{w}</div> })
            .collect_view()}
        <section class="header" aria-label="Compared recordings">
            <div class="command" id="compare-base" title="Base recording">
                <span class="tag tag-base">"base"</span> {base.0.name.clone()} "  ·  " {command(&base.0)}
            </div>
            <div class="command" id="compare-head" title="Head recording">
                <span class="tag tag-head">"head"</span> {head.0.name.clone()} "  ·  " {command(&head.0)}
            </div>
            <div class="facts">
                <CompareFact id="cmp-peak-heap" label="Peak traced heap" base=bs.peak_heap head=hs.peak_heap />
                <CompareFact id="cmp-peak-rss" label="Peak RSS" base=bs.peak_rss head=hs.peak_rss />
                <CompareFact id="cmp-leaked" label="Left at exit" base=bs.end_heap head=hs.end_heap />
                <CompareFact id="cmp-allocated" label="Allocated in total" base=bs.alloc_bytes head=hs.alloc_bytes />
            </div>
        </section>
        {match timelines {
            Ok((b, h)) => view! { <CompareTimeline base=ByPtr::new(b) head=ByPtr::new(h) /> }.into_any(),
            Err(e) => view! { <div class="banner banner-error" role="alert">{e}</div> }.into_any(),
        }}
        <div class="panel-head compare-modes">
            <span class="panel-title">"Compare"</span>
            <div class="segmented" role="group" aria-label="What to compare">
                {COMPARE_MODES
                    .into_iter()
                    .map(|m| {
                        view! {
                            <button
                                data-mode=m.key()
                                class:active=move || mode.get() == m
                                title=m.description()
                                on:click=move |_| state.update(|s| {
                                    s.mode = m;
                                    s.zoom.clear();
                                })
                            >
                                {m.label()}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
        </div>
        <DiffFlameGraph data=data state=state />
        <DeltaTable data=data />
    }
}

/// One side of the compare picker: a file input, the loader's progress and error, and the
/// loaded file's name.
#[component]
fn Slot(label: &'static str, input_id: &'static str, loader: Loader) -> impl IntoView {
    let status = move || {
        if let Some(e) = loader.error.get() {
            return view! { <span class="slot-error">{e}</span> }.into_any();
        }
        match loader.progress.get() {
            Progress::Reading { name, .. } | Progress::Decoding { name } => {
                view! { <span>"Loading " {name} "…"</span> }.into_any()
            }
            Progress::Idle => match loader.loaded.get() {
                Some(l) => view! { <span class="slot-file">{l.0.name.clone()}</span> }.into_any(),
                None => view! { <span>"no recording yet"</span> }.into_any(),
            },
        }
    };
    view! {
        <div class="slot">
            <div class="slot-label">{label}</div>
            <label class="button">
                "Choose…"
                <input
                    type="file"
                    id=input_id
                    accept=".memlens,application/octet-stream"
                    on:change=move |ev| {
                        let input: web_sys::HtmlInputElement = event_target(&ev);
                        if let Some(file) = input.files().and_then(|l| l.get(0)) {
                            loader.load_file(file);
                        }
                        input.set_value("");
                    }
                />
            </label>
            <div class="slot-status">{status}</div>
        </div>
    }
}

/// Compare mode until both recordings are loaded: two slots to fill.
#[component]
pub fn CompareSlots(base: Loader, head: Loader) -> impl IntoView {
    view! {
        <section class="empty" id="compare-slots">
            <h2>"Compare two recordings"</h2>
            <p>"Drop two " <code>".memlens"</code> " files on this page, or choose each one:"</p>
            <div class="slots">
                <Slot label="Base (before)" input_id="base-input" loader=base />
                <Slot label="Head (after)" input_id="head-input" loader=head />
            </div>
            <p>
                "Or publish a comparison with "
                <code>"memlens report --base BASE.memlens HEAD.memlens -o dir"</code> "."
            </p>
        </section>
    }
}
