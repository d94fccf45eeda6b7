//! The process picker of a recording of several processes (the program and the descendants
//! it started): one radio button per process, its pid, peak heap, how it ended and its
//! command line (shortened; whole on hover), indented under its parent, and "All processes".
//! The choice is the view state's `process`, so it is in the address: a link reopens it and
//! Back returns to the process shown before. Native radio buttons: Tab reaches the group, the
//! arrows move the choice, and each button's label says everything its row shows.

use leptos::prelude::*;

use crate::panel::PanelHead;
use crate::process_model::{process_color, state_for};
use crate::protocol::ProcessInfo;
use crate::url_state::{ProcessChoice, ViewState};
use crate::{units, ByPtr};

/// Characters of a command line a row shows (the rest is in its tooltip).
const COMMAND_CHARS: usize = 90;

/// How deep each process is in the tree of processes (the program 0, its children 1, ...),
/// from their parents' pids; a process whose parent is not in the list counts as a child of
/// the program.
pub fn depths(list: &[ProcessInfo]) -> Vec<usize> {
    let mut depth: Vec<usize> = Vec::with_capacity(list.len());
    for p in list {
        // Parents start before their children, so they come first in the list.
        let parent = p.ppid.and_then(|ppid| list.iter().position(|q| q.pid == ppid));
        let d = match parent {
            Some(i) if i < depth.len() => depth[i] + 1,
            _ => usize::from(p.ppid.is_some()),
        };
        depth.push(d);
    }
    depth
}

/// "how it ended" in a few words (the whole sentence is the tooltip).
fn ended_short(ended: &str) -> &str {
    ended.split(" (").next().unwrap_or(ended)
}

#[component]
pub fn ProcessPicker(
    list: ByPtr<Vec<ProcessInfo>>,
    /// The process shown (`None`: the program).
    choice: Memo<Option<ProcessChoice>>,
    state: RwSignal<ViewState>,
) -> impl IntoView {
    let dark = crate::theme::prefers_dark();
    let choose = {
        let list = list.clone();
        move |c: ProcessChoice| state.update(|s| *s = state_for(s, c, &list.0))
    };
    let shown = move |c: ProcessChoice| choice.get().unwrap_or(ProcessChoice::One(0)) == c;
    let total: u64 = list.0.iter().map(|p| p.alloc_bytes).sum();
    let all = {
        let choose = choose.clone();
        view! {
            <label class="process-row process-all" data-process="all">
                <input
                    type="radio"
                    name="process"
                    value="all"
                    prop:checked=move || shown(ProcessChoice::All)
                    on:change=move |_| choose(ProcessChoice::All)
                />
                <span class="swatch swatch-all" aria-hidden="true"></span>
                <span class="process-pid">"All processes"</span>
                <span class="num"></span>
                <span class="process-ended">{format!("{} allocated", units::bytes(total))}</span>
                <span class="process-command">"stacked on one time axis; one flame graph, a root frame per process"</span>
            </label>
        }
    };
    let rows = list
        .0
        .iter()
        .zip(depths(&list.0))
        .enumerate()
        .map(|(i, (p, depth))| {
            let choose = choose.clone();
            let c = ProcessChoice::One(p.number);
            let command = crate::header::shell_join(&p.command_line);
            let short = memlens_analysis::short_command(&p.command_line, COMMAND_CHARS);
            let whose = if p.number == 0 { "the program".to_string() } else { format!("started by pid {}", p.ppid.unwrap_or(0)) };
            view! {
                <label class="process-row" data-process=p.number.to_string() data-pid=p.pid.to_string()>
                    <input
                        type="radio"
                        name="process"
                        value=p.number.to_string()
                        prop:checked=move || shown(c)
                        on:change=move |_| choose(c)
                    />
                    <span class="swatch" aria-hidden="true" style=format!("background:{}", process_color(i, dark))></span>
                    <span class="process-pid" title=whose>{format!("pid {}", p.pid)}</span>
                    <span class="num" title="Peak traced heap">{units::bytes(p.peak_heap)}</span>
                    <span class="process-ended" title=p.ended.clone()>{ended_short(&p.ended).to_string()}</span>
                    <span class="process-command" title=command style=format!("padding-left:{}px", depth * 14)>
                        {short}
                    </span>
                </label>
            }
        })
        .collect_view();
    view! {
        <section class="panel" id="process-picker" aria-label="Processes">
            <PanelHead title="Processes">
                <span class="panel-note">
                    {format!(
                        "The program and the {} it started: choose one, or all together",
                        units::plural(list.0.len() as u64 - 1, "process", "processes"),
                    )}
                </span>
            </PanelHead>
            <fieldset class="process-list">
                <legend class="visually-hidden">"Process shown"</legend>
                <div class="process-row process-columns" aria-hidden="true">
                    <span></span>
                    <span></span>
                    <span>"Process"</span>
                    <span class="num">"Peak heap"</span>
                    <span>"Ended"</span>
                    <span>"Command line"</span>
                </div>
                {all}
                {rows}
            </fieldset>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(number: u32, pid: u32, ppid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            number,
            pid,
            ppid,
            command_line: vec!["python3".into()],
            started_ns: u64::from(number) * 100,
            ended_ns: u64::from(number) * 100 + 50,
            peak_heap: 0,
            peak_heap_time_ns: 0,
            alloc_count: 0,
            alloc_bytes: 0,
            ended: "exited with code 0".into(),
        }
    }

    #[test]
    fn children_are_indented_under_their_parents() {
        let list = [
            process(0, 10, None),
            process(1, 11, Some(10)),
            process(2, 12, Some(11)),
            process(3, 13, Some(99)),
            process(4, 14, Some(10)),
        ];
        assert_eq!(depths(&list), [0, 1, 2, 1, 1]);
    }

    #[test]
    fn a_descendant_opens_on_its_lifetime() {
        let list = [process(0, 10, None), process(2, 12, Some(10))];
        let state = ViewState::default();
        let child = state_for(&state, ProcessChoice::One(2), &list);
        assert_eq!((child.process, child.window), (Some(ProcessChoice::One(2)), Some((200, 251))));
        let program = state_for(&child, ProcessChoice::One(0), &list);
        assert_eq!((program.process, program.window), (None, None));
        let all = state_for(&child, ProcessChoice::All, &list);
        assert_eq!((all.process, all.window), (Some(ProcessChoice::All), None));
    }

    #[test]
    fn endings_are_cut_to_their_first_words() {
        assert_eq!(
            ended_short("ended without saying how (killed? ...)"),
            "ended without saying how"
        );
        assert_eq!(ended_short("killed by signal 9"), "killed by signal 9");
    }
}
