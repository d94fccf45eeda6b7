//! "All processes": a recording's processes taken together. Their figures, their heaps
//! stacked on one time axis (`family_timeline`), and one flame graph with each process as a
//! root frame ("pid 1234: python3 -c ...") above its own call stacks, at the highest point of
//! the heap of all, over the whole run, what each left at its end, or at the highest point of
//! a selected range; its call-site table adds up a line's memory over every process.

use leptos::prelude::*;

use crate::family_timeline::FamilyTimeline;
use crate::flame_graph::FlameGraph;
use crate::header::Fact;
use crate::load::Loaded;
use crate::protocol::ProcessInfo;
use crate::url_state::ViewState;
use crate::{units, ByPtr};

#[component]
pub fn FamilyView(
    /// The view of every process (its directory: the processes' merged tables).
    all: ByPtr<Loaded>,
    list: ByPtr<Vec<ProcessInfo>>,
    state: RwSignal<ViewState>,
) -> impl IntoView {
    let processes = &list.0;
    let allocated: u64 = processes.iter().map(|p| p.alloc_bytes).sum();
    let count: u64 = processes.iter().map(|p| p.alloc_count).sum();
    let end = processes.iter().map(|p| p.ended_ns).max().unwrap_or(0);
    let largest = processes.iter().max_by_key(|p| p.peak_heap);
    view! {
        <section class="header" aria-label="All processes" id="family-header">
            <div class="facts">
                <Fact
                    id="fact-processes"
                    label="Processes"
                    value=processes.len().to_string()
                    sub=format!(
                        "the program and {} it started",
                        units::plural(processes.len() as u64 - 1, "process", "processes"),
                    )
                />
                <Fact
                    id="fact-duration"
                    label="Duration"
                    value=units::duration_ns(end)
                    sub="until the last process ended".to_string()
                />
                <Fact
                    id="fact-largest"
                    label="Largest peak heap"
                    value=units::bytes(largest.map_or(0, |p| p.peak_heap))
                    sub=largest.map(|p| format!("pid {}", p.pid)).unwrap_or_default()
                />
                <Fact
                    id="fact-allocations"
                    label="Allocations"
                    value=units::count(count)
                    sub=format!("{} in total", units::bytes(allocated))
                />
            </div>
        </section>
        <FamilyTimeline all=all.clone() list=list.clone() state=state />
        <FlameGraph loaded=all state=state />
    }
}
