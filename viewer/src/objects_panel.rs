//! The objects panel: the recording's object censuses (at start, at each `memlens.mark()`, at
//! intervals, at exit). Pick one to see its live objects by type, by size or by count, with
//! where they were allocated; pick a second to compare with and see which types and allocation
//! sites grew between the two. Rows come from `memlens_format`'s census analyses; a click on
//! a row with a site zooms the flame graph to it.

use leptos::prelude::*;
use memlens_analysis::{
    census_title, is_internal_frame, last_census_index, site_growth, stack_path, top_types,
    type_growth, type_name, TypeOrder,
};
use memlens_format::{Recording, StackId};

use crate::insights_panel::reveal;
use crate::load::Directory;
use crate::panel::PanelHead;
use crate::table_keys::{on_row_focus, on_row_key, row_tabindex};
use crate::toggle::toggle;
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

fn delta_class(n: i64) -> &'static str {
    match n {
        n if n > 0 => "num delta-up",
        n if n < 0 => "num delta-down",
        _ => "num",
    }
}

/// Whether a stack's innermost frame is shown: internal frames (the import system, memlens'
/// own census code) follow the flame graph's toggle.
fn visible(rec: &Recording, stack: StackId, show_internal: bool) -> bool {
    show_internal || rec.stack(stack).is_none_or(|n| !is_internal_frame(rec, n.frame))
}

/// A site cell: function and short location, the full path on hover.
fn site_cell(rec: &Recording, stack: Option<StackId>, extra: Option<String>) -> impl IntoView {
    let Some(stack) = stack else {
        return view! {
            <td class="site muted" title="No traced allocation: made before tracing started, static, or at an internal frame">
                "—"
            </td>
        }
        .into_any();
    };
    let (function, short, full) = site_text(rec, stack);
    view! {
        <td class="site" title=full>
            <span class="fn">{function}</span>
            " "
            <span class="file">{short}</span>
            {extra.map(|e| view! { <span class="muted">" · " {e}</span> })}
        </td>
    }
    .into_any()
}

/// A row about one type: its name, `cells`, and the site where its objects were allocated
/// (with a note); a click (or Enter) zooms the flame graph there. `first` tells whether no
/// row above it has a site (it is then the table's tab stop).
fn type_row(
    rec: &Recording,
    name: String,
    cells: AnyView,
    site: Option<(StackId, String)>,
    show_site: Callback<StackId>,
    first: &mut bool,
) -> impl IntoView {
    let label = name.clone();
    let stack = site.as_ref().map(|s| s.0);
    let tabindex = stack.map(|_| row_tabindex(std::mem::take(first)));
    view! {
        <tr
            data-type=name
            title=stack.map(|_| "Click (or Enter) to show where they were allocated in the flame graph")
            tabindex=tabindex
            on:click=move |_| if let Some(s) = stack { show_site.run(s) }
        >
            <td class="fn">{label}</td>
            {cells}
            {site_cell(rec, stack, site.map(|s| s.1))}
        </tr>
    }
}

/// A scrolling table: `columns` as (heading, numeric), `rows` of which `shown` of `total` are
/// drawn, and a last row saying how many more there are (or that there is nothing).
fn table(
    id: &'static str,
    columns: &[(&'static str, bool)],
    rows: AnyView,
    shown: usize,
    total: usize,
) -> impl IntoView {
    let span = columns.len().to_string();
    let last = match total - shown {
        _ if total == 0 => Some("No change".to_string()),
        0 => None,
        more => Some(format!("… {} more", units::count(more as u64))),
    };
    let head = columns
        .iter()
        .map(|&(label, numeric)| view! { <th class:num=numeric>{label}</th> })
        .collect_view();
    view! {
        <div class="table-scroll">
            <table class="data-table" id=id>
                <thead><tr>{head}</tr></thead>
                <tbody on:keydown=on_row_key on:focusin=on_row_focus>
                    {rows}
                    {last.map(|text| view! { <tr><td colspan=span class="more">{text}</td></tr> })}
                </tbody>
            </table>
        </div>
    }
}

/// A menu of censuses (`options`: index and label) showing `selected`; `none` adds a first
/// entry for no census. `on_change` gets the chosen index.
fn census_select(
    label: &'static str,
    id: &'static str,
    none: Option<&'static str>,
    options: Vec<(usize, String)>,
    selected: Memo<Option<usize>>,
    on_change: Callback<Option<u32>>,
) -> impl IntoView {
    let entries = none
        .map(|text| (None, text.to_string()))
        .into_iter()
        .chain(options.into_iter().map(|(i, text)| (Some(i), text)))
        .map(|(i, text)| {
            let value = i.map_or_else(String::new, |i| i.to_string());
            view! { <option value=value selected=move || selected.get() == i>{text}</option> }
        })
        .collect_view();
    view! {
        <label class="control">
            {label}
            <select
                id=id
                on:change=move |ev| on_change.run(event_target_value(&ev).parse::<u32>().ok())
            >
                {entries}
            </select>
        </label>
    }
}

#[component]
pub fn ObjectsPanel(loaded: ByPtr<Directory>, state: RwSignal<ViewState>) -> impl IntoView {
    let rec_of = {
        let loaded = loaded.clone();
        move || loaded.clone()
    };
    let count = loaded.0.recording.censuses().len();
    if count == 0 {
        return view! {
            <section class="panel" aria-label="Objects" id="objects-panel">
                <PanelHead title="Objects" />
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
    let show_internal = Memo::new(move |_| state.with(|s| s.show_internal));
    let order = move || if by_count.get() { TypeOrder::Count } else { TypeOrder::Bytes };
    let options: Vec<(usize, String)> =
        (0..count).map(|i| (i, census_label(&loaded.0.recording, i))).collect();
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
            let mut first = true;
            let body = rows[..shown]
                .iter()
                .map(|t| {
                    let site = t
                        .sites
                        .iter()
                        .find(|s| visible(rec, s.stack, show_internal.get()))
                        .copied();
                    let cells = view! {
                        <td class="num">{units::count(t.count)}</td>
                        <td class="num">{units::bytes(t.bytes)}</td>
                        <td class="num">{units::share(t.bytes, total)}</td>
                    };
                    type_row(
                        rec,
                        type_name(rec, t.module, t.qualname),
                        cells.into_any(),
                        site.map(|s| (s.stack, units::plural(s.count, "object", "objects"))),
                        show_site,
                        &mut first,
                    )
                })
                .collect_view();
            let columns = [
                ("Type", false),
                ("Objects", true),
                ("Shallow size", true),
                ("Share", true),
                ("Mostly allocated at", false),
            ];
            table("objects-table", &columns, body.into_any(), shown, rows.len())
        }
    };

    let growth_tables = {
        let l = rec_of();
        move |a: usize, b: usize| {
            let rec = &l.0.recording;
            let (ca, cb) = (&rec.censuses()[a], &rec.censuses()[b]);
            let types = type_growth(ca, cb, order());
            let mut sites = site_growth(rec, ca, cb, order());
            sites.retain(|g| visible(rec, g.stack, show_internal.get()));
            let (nt, ns) = (types.len().min(MAX_ROWS), sites.len().min(MAX_ROWS));
            let mut first = true;
            let type_rows = types[..nt]
                .iter()
                .map(|g| {
                    let site = g.site.filter(|s| visible(rec, s.stack, show_internal.get()));
                    let cells = view! {
                        <td class=delta_class(g.count_delta)>{units::count_delta(g.count_delta)}</td>
                        <td class=delta_class(g.bytes_delta)>{units::bytes_delta(g.bytes_delta)}</td>
                        <td class="num">{units::count(g.count)}</td>
                    };
                    type_row(
                        rec,
                        type_name(rec, g.module, g.qualname),
                        cells.into_any(),
                        site.map(|s| (s.stack, units::count_delta(s.count_delta))),
                        show_site,
                        &mut first,
                    )
                })
                .collect_view();
            let site_rows = sites[..ns]
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let stack = g.stack;
                    view! {
                        <tr
                            title="Click (or Enter) to show this allocation site in the flame graph"
                            tabindex=row_tabindex(i == 0)
                            on:click=move |_| show_site.run(stack)
                        >
                            {site_cell(rec, Some(stack), None)}
                            <td class=delta_class(g.count_delta)>{units::count_delta(g.count_delta)}</td>
                            <td class=delta_class(g.bytes_delta)>{units::bytes_delta(g.bytes_delta)}</td>
                            <td class="fn">{type_name(rec, g.module, g.qualname)}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <div class="subhead">"Types, largest growth first"</div>
                {table(
                    "growth-types",
                    &[
                        ("Type", false),
                        ("Δ objects", true),
                        ("Δ shallow size", true),
                        ("Objects now", true),
                        ("Grew most at", false),
                    ],
                    type_rows.into_any(),
                    nt,
                    types.len(),
                )}
                <div class="subhead">"Allocation sites of traced objects"</div>
                {table(
                    "growth-sites",
                    &[("Allocation site", false), ("Δ objects", true), ("Δ allocated", true), ("Mostly", false)],
                    site_rows.into_any(),
                    ns,
                    sites.len(),
                )}
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
            <PanelHead title="Objects">
                {census_select(
                    "Census ",
                    "census-select",
                    None,
                    options.clone(),
                    target,
                    Callback::new(move |i| state.update(|s| s.census = i)),
                )}
                {census_select(
                    "Growth since ",
                    "census-since",
                    Some("— (no comparison)"),
                    options,
                    since,
                    Callback::new(move |i| state.update(|s| s.since = i)),
                )}
                {toggle(
                    "Rank types by",
                    "data-order",
                    ("bytes", "By size", "Largest total shallow size (sys.getsizeof) first"),
                    ("count", "By count", "Most objects first"),
                    by_count,
                    Callback::new(move |on| state.update(|s| s.objects_by_count = on)),
                )}
                <span class="spacer"></span>
                <span class="panel-note" id="objects-note">{note}</span>
            </PanelHead>
            {body}
        </section>
    }
    .into_any()
}
