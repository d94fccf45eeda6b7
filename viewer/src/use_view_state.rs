//! `use_view_state`: the [`ViewState`] signal, kept in sync with `location.hash` both ways.
//! Where the user goes (a zoom, a mode, a range selected) adds a history entry, so the
//! browser's Back returns to the previous view; typing in a search box and adjusting a
//! selection update the current entry ([`ViewState::history_write`]). Back, Forward and
//! pasted links update the view.

use leptos::prelude::*;

use crate::url_state::{HistoryWrite, ViewState};

fn current_hash() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

/// The view state, read from and written to the URL hash.
pub fn use_view_state() -> RwSignal<ViewState> {
    let state = RwSignal::new(ViewState::from_hash(&current_hash()));
    // The state of the current history entry, and whether the write that made it changed the
    // range (so the next range change adjusts that selection instead of adding an entry).
    let entry = StoredValue::new((state.get_untracked(), false));
    let follow_address = move |_: web_sys::Event| {
        let next = ViewState::from_hash(&current_hash());
        entry.set_value((next.clone(), false));
        if state.with_untracked(|s| *s != next) {
            state.set(next);
        }
    };
    let listeners = [
        window_event_listener_untyped("hashchange", follow_address),
        window_event_listener_untyped("popstate", follow_address),
    ];
    on_cleanup(move || listeners.into_iter().for_each(|l| l.remove()));
    Effect::new(move |_| {
        let next = state.get();
        let hash = next.to_hash();
        if hash == current_hash() || (hash.is_empty() && current_hash() == "#") {
            entry.set_value((next, false));
            return;
        }
        let (write, adjusting) = entry.with_value(|(now, adjusting)| {
            (now.history_write(&next, *adjusting), now.range != next.range)
        });
        let Some(window) = web_sys::window() else { return };
        let location = window.location();
        let url = format!(
            "{}{}{}",
            location.pathname().unwrap_or_default(),
            location.search().unwrap_or_default(),
            hash
        );
        if let Ok(history) = window.history() {
            let null = wasm_bindgen::JsValue::NULL;
            let _ = match write {
                HistoryWrite::Push => history.push_state_with_url(&null, "", Some(&url)),
                HistoryWrite::Replace => history.replace_state_with_url(&null, "", Some(&url)),
            };
        }
        entry.set_value((next, adjusting));
    });
    state
}
