//! The insights panel: the findings `memlens_analysis::insights` proves from the recording
//! (probable leaks, unbounded caches, missing `__slots__`, churn, gc trouble, deep recursion),
//! each with its numbers and links to the data behind it (see `insight_links`).

use leptos::prelude::*;

use crate::insight_links::{kind_label, links, message_body, panel_of, Target};
use crate::load::Loaded;
use crate::panel::PanelHead;
use crate::protocol::{Answer, Request};
use crate::url_state::ViewState;
use crate::use_worker::{use_worker, Query};
use crate::{units, ByPtr};

/// Scrolls the panel with this id into view (after the view change it follows has rendered).
pub fn reveal(id: &'static str) {
    leptos::task::spawn_local(async move {
        crate::load::sleep_ms(0).await;
        let el = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id(id));
        if let Some(el) = el {
            el.scroll_into_view();
        }
    });
}

#[component]
pub fn InsightsPanel(loaded: ByPtr<Loaded>, state: RwSignal<ViewState>) -> impl IntoView {
    // Computed by the worker (from the aggregates, or one replay of older recordings); again
    // when a followed recording grows.
    let dir = loaded.0.dir.clone();
    let query = Memo::new({
        let dir = dir.clone();
        move |_| {
            Some(Query {
                view: format!("insights:{}", loaded.0.rec),
                request: Request::Insights { rec: loaded.0.rec },
                generation: dir.with(|d| d.0.generation),
            })
        }
    });
    let answer = use_worker(query, 0);
    let found = Memo::new(move |_| {
        answer.result.get().map(|r| {
            r.and_then(|a| match &*a.0 {
                Answer::Insights(items) => Ok(items.clone()),
                other => Err(format!("unexpected answer {other:?}")),
            })
        })
    });
    let show_internal = Memo::new(move |_| state.with(|s| s.show_internal));
    let go = move |target: Target| {
        state.update(|s| target.apply(s));
        reveal(panel_of(&target));
    };
    let list = move || {
        let found = found.get()?;
        let items = match found {
            Err(e) => return Some(view! { <p class="panel-message">{e}</p> }.into_any()),
            Ok(items) if items.is_empty() => {
                return Some(
                    view! {
                        <p class="insights-empty" id="insights-none">
                            "No findings: no memory growing up to the exit, no unbounded "
                            "lru_cache, no class worth __slots__, no churn or gc trouble."
                        </p>
                    }
                    .into_any(),
                )
            }
            Ok(items) => items,
        };
        let dir = dir.get_untracked();
        let rec = &dir.0.recording;
        let rows = items
            .into_iter()
            .map(|i| {
                let actions = links(rec, &i, show_internal.get())
                    .into_iter()
                    .map(|l| {
                        let target = l.target.clone();
                        view! {
                            <button class="link-button" on:click=move |_| go(target.clone())>
                                {l.label}
                            </button>
                        }
                    })
                    .collect_view();
                view! {
                    <li class="insight" data-kind=i.kind.name()>
                        <span class=format!("insight-kind kind-{}", i.kind.name())>
                            {kind_label(i.kind)}
                        </span>
                        <div class="insight-body">
                            <div class="insight-message" title=i.message.clone()>
                                {message_body(&i.message)}
                            </div>
                            <div class="insight-links">{actions}</div>
                        </div>
                        <span class="insight-bytes">
                            {(i.bytes > 0).then(|| units::bytes(i.bytes))}
                        </span>
                    </li>
                }
            })
            .collect_view();
        Some(view! { <ul class="insights" id="insights-list">{rows}</ul> }.into_any())
    };
    let note = move || match found.get() {
        None => "Looking for findings…".to_string(),
        Some(Ok(v)) if !v.is_empty() => format!(
            "{} with the evidence from this recording",
            units::plural(v.len() as u64, "finding", "findings")
        ),
        _ => String::new(),
    };
    view! {
        <section class="panel" aria-label="Insights" id="insights-panel">
            <PanelHead title="Insights">
                <span class="panel-note-alt" id="insights-note">{note}</span>
            </PanelHead>
            {list}
        </section>
    }
}
