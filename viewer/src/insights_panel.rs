//! The insights panel: the findings `memlens_analysis::insights` proves from the recording
//! (probable leaks, unbounded caches, missing `__slots__`, churn, gc trouble, deep recursion),
//! each with its numbers and links to the data behind it (see `insight_links`).

use leptos::prelude::*;
use memlens_analysis::{Insight, InsightOptions, InsightsBuilder};

use crate::insight_links::{kind_label, links, message_body, panel_of, Target};
use crate::load::Loaded;
use crate::url_state::ViewState;
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
    // One replay of the events, after the first paint and in slices, so the page shows at once
    // and keeps responding.
    let (found, set_found) = signal(None::<Result<Vec<Insight>, String>>);
    let rec = loaded.clone();
    leptos::task::spawn_local(async move {
        crate::load::sleep_ms(30).await;
        let step = crate::Step::start("insights");
        let rec = &rec.0.recording;
        let mut builder = InsightsBuilder::new(rec, &InsightOptions::default());
        if builder.needs_events() {
            let feed = |events: &[memlens_format::Event]| {
                builder.feed(events);
                std::ops::ControlFlow::Continue(())
            };
            let replayed = crate::load::replay_sliced(rec, feed, || true).await;
            if let Some(Err(e)) = replayed {
                set_found.set(Some(Err(format!("Could not look for findings: {e}"))));
                return;
            }
        }
        set_found.set(Some(Ok(builder.finish())));
        step.finish();
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
        let rec = &loaded.0.recording;
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
            <div class="panel-head">
                <span class="panel-title">"Insights"</span>
                <span class="panel-note-alt" id="insights-note">{note}</span>
            </div>
            {list}
        </section>
    }
}
