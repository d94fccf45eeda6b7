//! Compare mode: a base and a head recording side by side. Their facts with the change, both
//! heap timelines on one time axis, a differential flame graph and a delta table of call
//! sites. The memory by stack of each side comes from the worker; the diff tree and the site
//! deltas from `memlens-analysis` (`DiffTree::build`, `diff_sites`); this module lays out
//! the page.

use leptos::prelude::*;
use memlens_analysis::{incomparable_reasons, sampling_mismatch, sampling_notice};

use crate::compare_model::{delta_text, CompareData};
use crate::compare_timeline::CompareTimeline;
use crate::delta_table::DeltaTable;
use crate::diff_flame::DiffFlameGraph;
use crate::flame_model::{totals_of, totals_query};
use crate::load::{Loaded, Loader};
use crate::url_state::FlameMode;
use crate::use_worker::use_worker;
use crate::{units, ByPtr, FileButton};

/// The modes compare mode offers (a time range means nothing across two runs).
pub const COMPARE_MODES: [FlameMode; 3] = [FlameMode::AtPeak, FlameMode::Leaks, FlameMode::Total];

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
    // Both sides' memory by stack come from the worker (answers are kept per mode, so going
    // back to a mode is instant); the diff is built here when both are in.
    let (bd, hd) = (base.0.now(), head.0.now());
    let ask = |l: &ByPtr<Loaded>| {
        let l = l.clone();
        use_worker(
            Memo::new(move |_| totals_query("compare", &l.0, 0, mode.get(), None, None)),
            COMPARE_MODES.len(),
        )
    };
    let (bt, ht) = (ask(&base), ask(&head));
    let data = Memo::new({
        let (bd, hd) = (bd.clone(), hd.clone());
        move |_| {
            let waiting = || "Comparing the two recordings…".to_string();
            let b = bt.result.get().unwrap_or_else(|| Err(waiting()))?;
            let h = ht.result.get().unwrap_or_else(|| Err(waiting()))?;
            let (b, h) = (totals_of(&b.0)?, totals_of(&h.0)?);
            let d = crate::timed("compare", || {
                CompareData::build(&bd.0.recording, b, &hd.0.recording, h)
            });
            Ok(ByPtr::new(d))
        }
    });
    let reasons = incomparable_reasons(&bd.0.recording, &hd.0.recording);
    let (bs, hs) = (*bd.0.recording.summary(), *hd.0.recording.summary());
    let warnings: Vec<String> = bd
        .0
        .warnings
        .iter()
        .map(|w| format!("Base: {w}"))
        .chain(hd.0.warnings.iter().map(|w| format!("Head: {w}")))
        .chain(reasons.into_iter().map(|r| format!("These recordings may not be comparable: {r}.")))
        .chain(sampling_mismatch(&bd.0.recording, &hd.0.recording).map(|m| {
            format!(
                "Sampled differently: {m}; the change mixes estimation error with the program's."
            )
        }))
        .chain(
            sampling_notice(&bd.0.recording)
                .or_else(|| sampling_notice(&hd.0.recording))
                .map(|n| format!("Estimates: {n}.")),
        )
        .collect();
    let command =
        |d: &crate::load::Directory| crate::header::shell_join(&d.recording.meta().command_line);
    view! {
        {warnings
            .into_iter()
            .map(|w| view! { <div class="banner banner-warning" role="alert">{w}</div> })
            .collect_view()}
        <section class="header" aria-label="Compared recordings">
            <div class="command" id="compare-base" title="Base recording">
                <span class="tag tag-base">"base"</span> {base.0.name.clone()} "  ·  " {command(&bd.0)}
            </div>
            <div class="command" id="compare-head" title="Head recording">
                <span class="tag tag-head">"head"</span> {head.0.name.clone()} "  ·  " {command(&hd.0)}
            </div>
            <div class="facts">
                <CompareFact id="cmp-peak-heap" label="Peak traced heap" base=bs.peak_heap head=hs.peak_heap />
                <CompareFact id="cmp-peak-rss" label="Peak RSS" base=bs.peak_rss head=hs.peak_rss />
                <CompareFact id="cmp-leaked" label="Left at exit" base=bs.end_heap head=hs.end_heap />
                <CompareFact id="cmp-allocated" label="Allocated in total" base=bs.alloc_bytes head=hs.alloc_bytes />
            </div>
        </section>
        <CompareTimeline base=base head=head />
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
fn Slot(
    label: &'static str,
    /// What its button does, in words.
    choose: &'static str,
    input_id: &'static str,
    loader: Loader,
) -> impl IntoView {
    let status = move || {
        if let Some(e) = loader.error.get() {
            return view! { <span class="slot-error">{e}</span> }.into_any();
        }
        match loader.opening.get() {
            Some(name) => view! { <span>"Loading " {name} "…"</span> }.into_any(),
            None => match loader.loaded.get() {
                Some(l) => view! { <span class="slot-file">{l.0.name.clone()}</span> }.into_any(),
                None => view! { <span>"no recording yet"</span> }.into_any(),
            },
        }
    };
    view! {
        <div class="slot">
            <div class="slot-label">{label}</div>
            <FileButton
                label="Choose…"
                aria_label=choose
                title=choose
                input_id=input_id
                on_files=Callback::new(move |files: web_sys::FileList| {
                    if let Some(file) = files.get(0) {
                        loader.load_file(file);
                    }
                })
            />
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
                <Slot label="Base (before)" choose="Choose the base recording" input_id="base-input" loader=base />
                <Slot label="Head (after)" choose="Choose the head recording" input_id="head-input" loader=head />
            </div>
            <p>
                "Or publish a comparison with "
                <code>"memlens report --base BASE.memlens HEAD.memlens -o dir"</code> "."
            </p>
        </section>
    }
}
