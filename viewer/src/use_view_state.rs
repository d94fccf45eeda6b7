//! `use_view_state`: the [`ViewState`] signal, kept in sync with `location.hash` both ways
//! (edits replace the hash without adding history entries; back/forward and pasted links
//! update the view).

use leptos::prelude::*;

use crate::url_state::ViewState;

fn current_hash() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

/// The view state, read from and written to the URL hash.
pub fn use_view_state() -> RwSignal<ViewState> {
    let state = RwSignal::new(ViewState::from_hash(&current_hash()));
    let _ = window_event_listener(leptos::ev::hashchange, move |_| {
        let next = ViewState::from_hash(&current_hash());
        if state.with_untracked(|s| *s != next) {
            state.set(next);
        }
    });
    Effect::new(move |_| {
        let hash = state.with(ViewState::to_hash);
        if hash == current_hash() || (hash.is_empty() && current_hash() == "#") {
            return;
        }
        let Some(window) = web_sys::window() else { return };
        let location = window.location();
        let url = format!(
            "{}{}{}",
            location.pathname().unwrap_or_default(),
            location.search().unwrap_or_default(),
            hash
        );
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    });
    state
}
