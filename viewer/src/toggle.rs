//! A two-button segmented control for an on/off view setting (icicle or flame, by size or by
//! count): the active side is highlighted, and each button carries `attr="value"` so tests and
//! styles can find it.

use leptos::prelude::*;
use leptos::tachys::html::attribute::custom::custom_attribute;
use leptos::tachys::view::add_attr::AddAnyAttr;

/// One side of a [`toggle`]: the value of its attribute, its label and its tooltip.
pub type Side = (&'static str, &'static str, &'static str);

/// The control: `off` for `false`, `on` for `true`; `set` gets the side clicked.
pub fn toggle(
    aria_label: &'static str,
    attr: &'static str,
    off: Side,
    on: Side,
    value: Memo<bool>,
    set: Callback<bool>,
) -> impl IntoView {
    let button = move |(key, label, title): Side, side: bool| {
        view! {
            <button
                class:active=move || value.get() == side
                title=title
                on:click=move |_| set.run(side)
            >
                {label}
            </button>
        }
        .add_any_attr(custom_attribute(attr, key))
    };
    view! {
        <div class="segmented" role="group" aria-label=aria_label>
            {button(off, false)}
            {button(on, true)}
        </div>
    }
}
