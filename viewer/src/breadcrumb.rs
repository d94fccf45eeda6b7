//! The zoom path above a flame graph: one button per frame from the root to the zoomed one
//! (the last, disabled); a click zooms out to that frame. The flame graph and the
//! differential flame graph both show one.

use leptos::prelude::*;

#[component]
pub fn Breadcrumb(
    /// The element's id (tests and styles find each flame graph's by it).
    id: &'static str,
    /// (node, label) from the root to the zoomed node; `None` until there is a tree.
    #[prop(into)]
    path: Signal<Option<Vec<(u32, String)>>>,
    /// Zooms to a node.
    on_zoom: Callback<u32>,
) -> impl IntoView {
    let items = move || {
        let path = path.get()?;
        let last = path.len().saturating_sub(1);
        Some(
            path.into_iter()
                .enumerate()
                .map(|(i, (node, label))| {
                    view! {
                        {(i > 0).then(|| view! { <span class="sep">"›"</span> })}
                        <button disabled=i == last on:click=move |_| on_zoom.run(node)>
                            {label}
                        </button>
                    }
                })
                .collect_view(),
        )
    };
    view! { <nav class="breadcrumb" id=id aria-label="Zoom path">{items}</nav> }
}
