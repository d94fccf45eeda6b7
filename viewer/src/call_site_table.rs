//! The call-site table under the flame graph: memory per frame (function, file, line),
//! allocated directly there (self) and through its callees (total), sortable by any column,
//! filterable by name, and a click focuses the frame's node in the flame graph. Rows come from
//! `memlens_analysis::call_sites` over the same stack totals as the flame graph.

use leptos::prelude::*;
use memlens_analysis::{call_sites, CallSite};
use memlens_format::{FrameId, Recording};

use crate::flame_graph::FlameData;
use crate::url_state::{SortBy, ViewState};
use crate::{units, ByPtr};

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
    state: RwSignal<ViewState>,
    on_focus: Callback<FrameId>,
) -> impl IntoView {
    let sites = Memo::new(move |_| {
        data.get().ok().map(|d| {
            let sites = crate::timed("call sites", || {
                call_sites(&d.0.dir.0.recording, d.0.stack_totals(), d.0.hide_internal)
            });
            (d, ByPtr::new(sites))
        })
    });
    let sort = Memo::new(move |_| state.with(|s| s.sort));
    let filter = Memo::new(move |_| state.with(|s| s.filter.clone()));
    let rows = move || {
        let (d, sites) = sites.get()?;
        let rec = &d.0.dir.0.recording;
        let (rows, matched) = select_rows(rec, &sites.0, &filter.get(), sort.get(), MAX_ROWS);
        let body = rows
            .iter()
            .map(|s| {
                let (function, file, line) = match rec.frame(s.frame) {
                    Some(f) => (rec.string(f.function), rec.string(f.file), f.line),
                    None => ("?", "", 0),
                };
                let short = file.rsplit('/').next().unwrap_or(file);
                let frame = s.frame;
                view! {
                    <tr
                        title="Click to focus this frame in the flame graph"
                        on:click=move |_| on_focus.run(frame)
                    >
                        <td class="fn">{function.to_string()}</td>
                        <td class="file" title=format!("{file}:{line}")>
                            {format!("{short}:{line}")}
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
            <div class="panel-head">
                <span class="panel-title">"Call sites"</span>
                <span class="panel-note">"Same view as the flame graph · click a row to focus it"</span>
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
            </div>
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
                    <tbody>{rows}</tbody>
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
