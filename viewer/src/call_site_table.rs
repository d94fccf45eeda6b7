//! The call-site table under the flame graph: memory per frame (function, file, line),
//! allocated directly there (self) and through its callees (total), sortable by any column,
//! filterable by name, and a click (or Enter on a row) focuses the frame's node in the flame
//! graph. Rows come from `memlens_analysis::call_sites` over the same stack totals as the
//! flame graph, and follow its zoom: zoomed into a frame, the table shows what was allocated
//! under that frame ([`zoomed_sites`]).

use std::collections::HashSet;

use leptos::prelude::*;
use memlens_analysis::{call_sites, is_internal_frame, CallSite, StackTotals};
use memlens_format::{FrameId, Recording, StringId};

use crate::flame_model::FlameData;
use crate::panel::PanelHead;
use crate::table_keys::{on_row_focus, on_row_key, row_tabindex};
use crate::url_state::{SortBy, ViewState};
use crate::{units, ByPtr};

/// What makes a flame-tree node (with lines kept apart): function, file and line.
pub type FrameKey = (StringId, StringId, u32);

fn frame_key(rec: &Recording, frame: FrameId) -> Option<FrameKey> {
    rec.frame(frame).map(|f| (f.function, f.file, f.line))
}

/// The call sites of the memory under the flame-tree node reached by `path` (the keys of
/// its frames from the root down; empty: the whole view). Only stacks whose frames, as the
/// tree keeps them (`hide_internal`), start with `path` count, and the frames above the node
/// are left out unless they allocated under it themselves (recursion): they would only
/// repeat the node's total.
pub fn zoomed_sites(
    rec: &Recording,
    totals: &StackTotals,
    hide_internal: bool,
    path: &[FrameKey],
) -> Vec<CallSite> {
    let Some((_, above)) = path.split_last() else {
        return call_sites(rec, totals, hide_internal);
    };
    let kept = |f: &FrameId| !hide_internal || !is_internal_frame(rec, *f);
    let mut frames = Vec::new();
    let mut under = StackTotals::default();
    for &(stack, t) in &totals.stacks {
        frames.clear();
        frames.extend(rec.stack_frames(stack).filter(kept));
        let root_first = frames.iter().rev().map(|&f| frame_key(rec, f));
        if frames.len() >= path.len() && root_first.zip(path).all(|(k, p)| k == Some(*p)) {
            under.stacks.push((stack, t));
            under.total.merge(t);
        }
    }
    let above: HashSet<&FrameKey> = above.iter().collect();
    call_sites(rec, &under, hide_internal)
        .into_iter()
        .filter(|s| {
            s.self_.count > 0 || frame_key(rec, s.frame).is_none_or(|k| !above.contains(&k))
        })
        .collect()
}

/// Rows shown; a note says how many more matched.
const MAX_ROWS: usize = 300;

/// The rows matching `filter` (case-insensitive, function or file), ordered by `sort`
/// (descending, ties by frame id so the order is stable), and how many matched in all.
pub fn select_rows(
    rec: &Recording,
    sites: &[CallSite],
    filter: &str,
    sort: SortBy,
    limit: usize,
) -> (Vec<CallSite>, usize) {
    let needle = filter.trim().to_lowercase();
    let mut rows: Vec<CallSite> = sites
        .iter()
        .filter(|s| {
            needle.is_empty()
                || rec.frame(s.frame).is_some_and(|f| {
                    rec.string(f.function).to_lowercase().contains(&needle)
                        || rec.string(f.file).to_lowercase().contains(&needle)
                })
        })
        .copied()
        .collect();
    let key = |s: &CallSite| match sort {
        SortBy::SelfBytes => (s.self_.bytes, s.total.bytes),
        SortBy::TotalBytes => (s.total.bytes, s.self_.bytes),
        SortBy::SelfCount => (s.self_.count, s.self_.bytes),
        SortBy::TotalCount => (s.total.count, s.total.bytes),
    };
    rows.sort_by(|a, b| key(b).cmp(&key(a)).then(a.frame.cmp(&b.frame)));
    let matched = rows.len();
    rows.truncate(limit);
    (rows, matched)
}

#[component]
pub fn CallSiteTable(
    data: Memo<Result<ByPtr<FlameData>, String>>,
    /// The flame graph's zoomed node.
    zoom: Memo<Option<u32>>,
    state: RwSignal<ViewState>,
    on_focus: Callback<FrameId>,
) -> impl IntoView {
    let sites = Memo::new(move |_| {
        let d = data.get().ok()?;
        let rec = &d.0.dir.0.recording;
        let tree = &d.0.tree;
        let zoom = zoom.get().unwrap_or(0);
        let nodes = tree.path(zoom);
        let path: Vec<FrameKey> = nodes
            .iter()
            .filter_map(|&n| tree.nodes.get(n as usize)?.frame)
            .filter_map(|f| frame_key(rec, f))
            .collect();
        let sites = crate::timed("call sites", || {
            zoomed_sites(rec, d.0.stack_totals(), d.0.hide_internal, &path)
        });
        let under = (zoom != 0).then(|| d.0.names(zoom).0.to_string());
        Some((d, ByPtr::new(sites), under))
    });
    let sort = Memo::new(move |_| state.with(|s| s.sort));
    let filter = Memo::new(move |_| state.with(|s| s.filter.clone()));
    let rows = move || {
        let (d, sites, _) = sites.get()?;
        let rec = &d.0.dir.0.recording;
        let (rows, matched) = select_rows(rec, &sites.0, &filter.get(), sort.get(), MAX_ROWS);
        let body = rows
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (function, file, line) = match rec.frame(s.frame) {
                    Some(f) => (rec.string(f.function), rec.string(f.file), f.line),
                    None => ("?", "", 0),
                };
                // (A process's root frame, in the flame graph of all processes, has no file.)
                let place = match file.rsplit('/').next() {
                    Some(short) if !file.is_empty() => format!("{short}:{line}"),
                    _ => String::new(),
                };
                let frame = s.frame;
                view! {
                    <tr
                        title="Click (or Enter) to focus this frame in the flame graph"
                        tabindex=row_tabindex(i == 0)
                        on:click=move |_| on_focus.run(frame)
                    >
                        <td class="fn">{function.to_string()}</td>
                        <td class="file" title=format!("{file}:{line}")>
                            {place}
                        </td>
                        <td class="num">{units::bytes(s.self_.bytes)}</td>
                        <td class="num">{units::count(s.self_.count)}</td>
                        <td class="num">{units::bytes(s.total.bytes)}</td>
                        <td class="num">{units::count(s.total.count)}</td>
                    </tr>
                }
            })
            .collect_view();
        let more = (matched > rows.len()).then(|| {
            view! {
                <tr>
                    <td colspan="6" class="more">
                        {format!("… {} more; filter to narrow down", matched - rows.len())}
                    </td>
                </tr>
            }
        });
        Some(view! { {body} {more} })
    };
    let header = move |label: &'static str, by: SortBy| {
        view! {
            <th class="num">
                <button
                    class="sort"
                    data-sort=by.key()
                    class:active=move || sort.get() == by
                    on:click=move |_| state.update(|s| s.sort = by)
                >
                    {label}
                    {move || if sort.get() == by { " ▼" } else { "" }}
                </button>
            </th>
        }
    };
    view! {
        <section class="panel" aria-label="Call sites">
            <PanelHead title="Call sites">
                <span class="panel-note" id="call-site-scope">
                    {move || match sites.with(|s| s.as_ref().and_then(|s| s.2.clone())) {
                        Some(f) => format!("Under {f}, as zoomed in the flame graph · Enter or click a row to focus it"),
                        None => "Same view as the flame graph · Enter or click a row to focus it".to_string(),
                    }}
                </span>
                <span class="spacer"></span>
                <input
                    class="search"
                    id="call-site-filter"
                    type="search"
                    placeholder="Filter functions and files"
                    prop:value=move || filter.get()
                    on:input=move |ev| {
                        let f = event_target_value(&ev);
                        state.update(|s| s.filter = f);
                    }
                />
            </PanelHead>
            <div class="table-scroll">
                <table class="data-table" id="call-site-table">
                    <thead>
                        <tr>
                            <th>"Function"</th>
                            <th>"Location"</th>
                            {header("Self", SortBy::SelfBytes)}
                            {header("Self allocs", SortBy::SelfCount)}
                            {header("Total", SortBy::TotalBytes)}
                            {header("Total allocs", SortBy::TotalCount)}
                        </tr>
                    </thead>
                    <tbody on:keydown=on_row_key on:focusin=on_row_focus>{rows}</tbody>
                </table>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_analysis::{stack_totals, EventFilter, Snapshot};
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    /// main -> parse (3 x 100 B), main -> load_json (1 x 500 B), json.loads under load_json.
    fn recording() -> Recording {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let main = w.intern_frame("main", "app.py", 1);
        let parse = w.intern_frame("parse", "app.py", 9);
        let load = w.intern_frame("load_json", "app.py", 5);
        let s_main = w.intern_stack(StackId::ROOT, main);
        let s_parse = w.intern_stack(s_main, parse);
        let s_load = w.intern_stack(s_main, load);
        let t = ThreadId(0);
        for i in 0..3 {
            w.alloc(10 + i, t, s_parse, 0x10 + i * 0x100, 100, AllocatorKind::Malloc).unwrap();
        }
        w.alloc(20, t, s_load, 0x2000, 500, AllocatorKind::Malloc).unwrap();
        let bytes = w.finish(ProcessEnd { time_ns: 40, exit_code: Some(0), signal: None }).unwrap();
        Recording::open(&bytes).unwrap()
    }

    fn names(rec: &Recording, rows: &[CallSite]) -> Vec<String> {
        rows.iter().map(|s| rec.string(rec.frame(s.frame).unwrap().function).to_string()).collect()
    }

    #[test]
    fn zoomed_in_the_table_shows_what_was_allocated_under_the_zoomed_frame() {
        let rec = recording();
        let totals = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        let key = |name: &str| {
            let f = (0..10)
                .map(FrameId)
                .find(|&f| rec.frame(f).is_some_and(|fr| rec.string(fr.function) == name));
            frame_key(&rec, f.unwrap()).unwrap()
        };
        let rows = |path: &[FrameKey]| {
            let sites = zoomed_sites(&rec, &totals, false, path);
            let (rows, _) = select_rows(&rec, &sites, "", SortBy::TotalBytes, 10);
            let bytes: Vec<u64> = rows.iter().map(|s| s.total.bytes).collect();
            (names(&rec, &rows), bytes)
        };
        assert_eq!(
            rows(&[]),
            (vec!["main".into(), "load_json".into(), "parse".into()], vec![800, 500, 300])
        );
        assert_eq!(
            rows(&[key("main"), key("parse")]),
            (vec!["parse".into()], vec![300]),
            "only parse's memory, and not main above it"
        );
        assert_eq!(rows(&[key("main")]), rows(&[]), "the zoomed frame itself is listed");
        assert_eq!(rows(&[key("parse")]), (vec![], vec![]), "parse is not a root frame");
    }

    #[test]
    fn sorts_by_each_column_and_filters_by_name() {
        let rec = recording();
        let totals = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        let sites = call_sites(&rec, &totals, false);
        let (rows, n) = select_rows(&rec, &sites, "", SortBy::SelfBytes, 10);
        assert_eq!(
            (names(&rec, &rows), n),
            (vec!["load_json".into(), "parse".into(), "main".into()], 3)
        );
        let (rows, _) = select_rows(&rec, &sites, "", SortBy::TotalBytes, 10);
        assert_eq!(names(&rec, &rows)[0], "main");
        let (rows, _) = select_rows(&rec, &sites, "", SortBy::SelfCount, 10);
        assert_eq!(names(&rec, &rows)[0], "parse");
        let (rows, n) = select_rows(&rec, &sites, "  PARS ", SortBy::SelfBytes, 10);
        assert_eq!((names(&rec, &rows), n), (vec!["parse".to_string()], 1));
        let (rows, n) = select_rows(&rec, &sites, "app.py", SortBy::SelfBytes, 2);
        assert_eq!((rows.len(), n), (2, 3));
    }
}
