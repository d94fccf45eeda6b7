//! The objects panel: the recording's object censuses (at start, at each `memlens.mark()`, at
//! intervals, at exit). Pick one to see its live objects by type, by size or by count, with
//! where they were allocated; pick a second to compare with and see which types and allocation
//! sites grew between the two. Rows come from `memlens_format`'s census analyses; a click on
//! a row with a site zooms the flame graph to it.

use leptos::prelude::*;
use memlens_format::{
    census_title, last_census_index, site_growth, stack_path, top_types, type_growth, type_name,
    Recording, StackId, TypeOrder,
};

use crate::insights_panel::reveal;
use crate::load::Loaded;
use crate::url_state::{ViewState, ZoomStep};
use crate::{units, ByPtr};

/// Rows shown per table; a note says how many more there are.
const MAX_ROWS: usize = 100;

/// The census an optional index from the URL names: that one when it exists, else the last.
pub fn census_index(rec: &Recording, requested: Option<u32>) -> Option<usize> {
    requested.map(|i| i as usize).filter(|&i| i < rec.censuses().len()).or(last_census_index(rec))
}

/// `#2 mark "loaded" · 796.7 ms`, for menus and notes.
pub fn census_label(rec: &Recording, i: usize) -> String {
    let c = &rec.censuses()[i];
    format!("#{i} {} · {}", census_title(c), units::time_ns(c.time_ns))
}

/// Function name and short `file:line` of a stack's innermost frame, and the full location.
fn site_text(rec: &Recording, stack: StackId) -> (String, String, String) {
    match rec.stack(stack).and_then(|n| rec.frame(n.frame)) {
        Some(f) => {
            let file = rec.string(f.file);
            let short = file.rsplit('/').next().unwrap_or(file);
            (
                rec.string(f.function).to_owned(),
                format!("{short}:{}", f.line),
                format!("{file}:{}", f.line),
            )
        }
        None => ("<no Python frame>".into(), String::new(), String::new()),
    }
}

fn signed_count(n: i64) -> String {
    let sign = if n > 0 {
        "+"
    } else if n < 0 {
        "−"
    } else {
        ""
    };
    format!("{sign}{}", units::count(n.unsigned_abs()))
}

fn delta_class(n: i64) -> &'static str {
    match n {
        n if n > 0 => "num delta-up",
        n if n < 0 => "num delta-down",
        _ => "num",
    }
}

/// A site cell: function and short location, the full path on hover.
fn site_cell(rec: &Recording, stack: Option<StackId>, extra: Option<String>) -> impl IntoView {
    let (function, short, full) = stack.map(|s| site_text(rec, s)).unwrap_or_default();
    view! {
        <td class="site" title=full>
            <span class="fn">{function}</span>
            " "
            <span class="file">{short}</span>
            {extra.map(|e| view! { <span class="muted">" · " {e}</span> })}
        </td>
    }
}

fn more_row(shown: usize, total: usize, columns: u32) -> Option<impl IntoView> {
    (total > shown).then(|| {
        view! {
            <tr>
                <td colspan=columns.to_string() class="more">
                    {format!("… {} more", units::count((total - shown) as u64))}
                </td>
            </tr>
        }
    })
}

#[component]
pub fn ObjectsPanel(loaded: ByPtr<Loaded>, state: RwSignal<ViewState>) -> impl IntoView {
    let rec_of = {
        let loaded = loaded.clone();
        move || loaded.clone()
    };
    let count = loaded.0.recording.censuses().len();
    if count == 0 {
        return view! {
            <section class="panel" aria-label="Objects" id="objects-panel">
                <div class="panel-head"><span class="panel-title">"Objects"</span></div>
                <p class="panel-message">
                    "No object censuses in this recording (recorded with --no-census, with "
                    "--rss-only, or the program ended before the first one)."
                </p>
            </section>
        }
        .into_any();
    }
    let target = Memo::new({
        let l = rec_of();
        move |_| state.with(|s| census_index(&l.0.recording, s.census))
    });
    let since =
        Memo::new(move |_| state.with(|s| s.since.map(|i| i as usize).filter(|&i| i < count)));
    let by_count = Memo::new(move |_| state.with(|s| s.objects_by_count));
    let order = move || if by_count.get() { TypeOrder::Count } else { TypeOrder::Bytes };
    let options: Vec<(usize, String)> =
        (0..count).map(|i| (i, census_label(&loaded.0.recording, i))).collect();
    let base_options = options.clone();
    // Zooms the flame graph to the stack that allocated a row's objects.
    let show_site = Callback::new({
        let l = rec_of();
        move |stack: StackId| {
            let hide = state.with_untracked(|s| !s.show_internal);
            let zoom = stack_path(&l.0.recording, stack, hide)
                .into_iter()
                .map(|(function, file)| ZoomStep { function, file })
                .collect();
            state.update(|s| s.zoom = zoom);
            reveal("flame-panel");
        }
    });

    let note = {
        let l = rec_of();
        move || {
            let rec = &l.0.recording;
            let i = target.get()?;
            let c = &rec.censuses()[i];
            Some(match since.get() {
                Some(b) => {
                    format!("Growth from {} to {}", census_label(rec, b), census_label(rec, i))
                }
                None => format!(
                    "{} objects · {} shallow · the census took {}",
                    units::count(c.objects),
                    units::bytes(c.types.iter().map(|t| t.bytes).sum()),
                    units::duration_ns(c.duration_ns)
                ),
            })
        }
    };

    let top_table = {
        let l = rec_of();
        move |i: usize| {
            let rec = &l.0.recording;
            let c = &rec.censuses()[i];
            let total: u64 = c.types.iter().map(|t| t.bytes).sum();
            let rows = top_types(c, order(), usize::MAX);
            let shown = rows.len().min(MAX_ROWS);
            let body = rows[..shown]
                .iter()
                .map(|t| {
                    let name = type_name(rec, t.module, t.qualname);
                    let label = name.clone();
                    let site = t.sites.first().copied();
                    let extra = site.map(|s| units::plural(s.count, "object", "objects"));
                                        view! {
                        <tr
                            data-type=name
                            title=site.map(|_| "Click to show where they were allocated in the flame graph")
                            on:click=move |_| if let Some(s) = site { show_site.run(s.stack) }
                        >
                            <td class="fn">{label}</td>
                            <td class="num">{units::count(t.count)}</td>
                            <td class="num">{units::bytes(t.bytes)}</td>
                            <td class="num">{units::share(t.bytes, total)}</td>
                            {site_cell(rec, site.map(|s| s.stack), extra)}
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <div class="table-scroll">
                    <table class="data-table" id="objects-table">
                        <thead>
                            <tr>
                                <th>"Type"</th>
                                <th class="num">"Objects"</th>
                                <th class="num">"Shallow size"</th>
                                <th class="num">"Share"</th>
                                <th>"Mostly allocated at"</th>
                            </tr>
                        </thead>
                        <tbody>{body} {more_row(shown, rows.len(), 5)}</tbody>
                    </table>
                </div>
            }
        }
    };

    let growth_tables = {
        let l = rec_of();
        move |a: usize, b: usize| {
            let rec = &l.0.recording;
            let (ca, cb) = (&rec.censuses()[a], &rec.censuses()[b]);
            let types = type_growth(ca, cb, order());
            let sites = site_growth(ca, cb, order());
            let (nt, ns) = (types.len().min(MAX_ROWS), sites.len().min(MAX_ROWS));
            let type_rows = types[..nt]
                .iter()
                .map(|g| {
                    let name = type_name(rec, g.module, g.qualname);
                    let label = name.clone();
                    let site = g.site;
                    let extra = site.map(|s| signed_count(s.count_delta));
                                        view! {
                        <tr
                            data-type=name
                            title=site.map(|_| "Click to show where they were allocated in the flame graph")
                            on:click=move |_| if let Some(s) = site { show_site.run(s.stack) }
                        >
                            <td class="fn">{label}</td>
                            <td class=delta_class(g.count_delta)>{signed_count(g.count_delta)}</td>
                            <td class=delta_class(g.bytes_delta)>{units::bytes_delta(g.bytes_delta)}</td>
                            <td class="num">{units::count(g.count)}</td>
                            {site_cell(rec, site.map(|s| s.stack), extra)}
                        </tr>
                    }
                })
                .collect_view();
            let site_rows = sites[..ns]
                .iter()
                .map(|g| {
                    let stack = g.stack;
                                        view! {
                        <tr
                            title="Click to show this allocation site in the flame graph"
                            on:click=move |_| show_site.run(stack)
                        >
                            {site_cell(rec, Some(stack), None)}
                            <td class=delta_class(g.count_delta)>{signed_count(g.count_delta)}</td>
                            <td class=delta_class(g.bytes_delta)>{units::bytes_delta(g.bytes_delta)}</td>
                            <td class="fn">{type_name(rec, g.module, g.qualname)}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <div class="subhead">"Types, largest growth first"</div>
                <div class="table-scroll">
                    <table class="data-table" id="growth-types">
                        <thead>
                            <tr>
                                <th>"Type"</th>
                                <th class="num">"Δ objects"</th>
                                <th class="num">"Δ shallow size"</th>
                                <th class="num">"Objects now"</th>
                                <th>"Grew most at"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {type_rows}
                            {more_row(nt, types.len(), 5)}
                            {types.is_empty().then(|| view! { <tr><td colspan="5" class="more">"No change"</td></tr> })}
                        </tbody>
                    </table>
                </div>
                <div class="subhead">"Allocation sites of traced objects"</div>
                <div class="table-scroll">
                    <table class="data-table" id="growth-sites">
                        <thead>
                            <tr>
                                <th>"Allocation site"</th>
                                <th class="num">"Δ objects"</th>
                                <th class="num">"Δ allocated"</th>
                                <th>"Mostly"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {site_rows}
                            {more_row(ns, sites.len(), 4)}
                            {sites.is_empty().then(|| view! { <tr><td colspan="4" class="more">"No change"</td></tr> })}
                        </tbody>
                    </table>
                </div>
            }
        }
    };

    let body = move || match (target.get(), since.get()) {
        (Some(b), Some(a)) => growth_tables(a, b).into_any(),
        (Some(i), None) => top_table(i).into_any(),
        (None, _) => ().into_any(),
    };

    view! {
        <section class="panel" aria-label="Objects" id="objects-panel">
            <div class="panel-head">
                <span class="panel-title">"Objects"</span>
                <label class="control">
                    "Census "
                    <select
                        id="census-select"
                        on:change=move |ev| {
                            let i = event_target_value(&ev).parse::<u32>().ok();
                            state.update(|s| s.census = i);
                        }
                    >
                        {options
                            .into_iter()
                            .map(|(i, label)| {
                                view! {
                                    <option value=i.to_string() selected=move || target.get() == Some(i)>
                                        {label}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label class="control">
                    "Growth since "
                    <select
                        id="census-since"
                        on:change=move |ev| {
                            let i = event_target_value(&ev).parse::<u32>().ok();
                            state.update(|s| s.since = i);
                        }
                    >
                        <option value="" selected=move || since.get().is_none()>"— (no comparison)"</option>
                        {base_options
                            .into_iter()
                            .map(|(i, label)| {
                                view! {
                                    <option value=i.to_string() selected=move || since.get() == Some(i)>
                                        {label}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <div class="segmented" role="group" aria-label="Rank types by">
                    <button
                        data-order="bytes"
                        class:active=move || !by_count.get()
                        title="Largest total shallow size (sys.getsizeof) first"
                        on:click=move |_| state.update(|s| s.objects_by_count = false)
                    >
                        "By size"
                    </button>
                    <button
                        data-order="count"
                        class:active=move || by_count.get()
                        title="Most objects first"
                        on:click=move |_| state.update(|s| s.objects_by_count = true)
                    >
                        "By count"
                    </button>
                </div>
                <span class="spacer"></span>
                <span class="panel-note" id="objects-note">{note}</span>
            </div>
            {body}
        </section>
    }
    .into_any()
}
