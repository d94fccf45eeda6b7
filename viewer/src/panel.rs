//! The head row every panel starts with: its title, then whatever controls the panel puts
//! beside it (mode buttons, legends, filters, notes).

use leptos::prelude::*;

#[component]
pub fn PanelHead(
    title: &'static str,
    /// Controls after the title.
    #[prop(optional)]
    children: Option<Children>,
) -> impl IntoView {
    view! {
        <div class="panel-head">
            <span class="panel-title">{title}</span>
            {children.map(|c| c())}
        </div>
    }
}
