//! Keyboard access to tables whose rows act when clicked (the call-site table focuses a
//! frame, the objects tables show where objects were allocated). The acting rows of a table
//! are one tab stop (a roving `tabindex`: the row last focused, at first the first row); the
//! arrows, Home and End move between them, Enter or Space acts as a click. The handlers go on
//! the `<tbody>` and work on the DOM alone, so any table can use them.

use wasm_bindgen::JsCast;
use web_sys::HtmlElement;

/// The `tabindex` of an acting row: `first` is the table's tab stop until a row is focused.
pub fn row_tabindex(first: bool) -> &'static str {
    if first {
        "0"
    } else {
        "-1"
    }
}

/// The acting row an event happened on (the row itself, not a control inside it).
fn row_of(target: Option<web_sys::EventTarget>) -> Option<HtmlElement> {
    let el = target?.dyn_into::<HtmlElement>().ok()?;
    (el.tag_name().eq_ignore_ascii_case("tr") && el.has_attribute("tabindex")).then_some(el)
}

/// The next (or previous) acting row after `row`.
fn step(row: &HtmlElement, down: bool) -> Option<HtmlElement> {
    let mut at: web_sys::Element = row.clone().into();
    loop {
        at = if down { at.next_element_sibling()? } else { at.previous_element_sibling()? };
        if at.has_attribute("tabindex") {
            return at.dyn_into().ok();
        }
    }
}

/// The first (or last) acting row of `row`'s table body.
fn end(row: &HtmlElement, last: bool) -> Option<HtmlElement> {
    let rows = row.parent_element()?.query_selector_all("tr[tabindex]").ok()?;
    let i = if last { rows.length().checked_sub(1)? } else { 0 };
    rows.item(i)?.dyn_into().ok()
}

/// `keydown` on a `<tbody>`: moves between acting rows, or acts on one.
pub fn on_row_key(ev: web_sys::KeyboardEvent) {
    if ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
        return;
    }
    let Some(row) = row_of(ev.target()) else { return };
    let next = match ev.key().as_str() {
        "ArrowDown" => step(&row, true),
        "ArrowUp" => step(&row, false),
        "Home" => end(&row, false),
        "End" => end(&row, true),
        "Enter" | " " => {
            ev.prevent_default();
            row.click();
            return;
        }
        _ => return,
    };
    ev.prevent_default();
    if let Some(next) = next {
        let _ = next.focus();
    }
}

/// `focusin` on a `<tbody>`: the row focused becomes the table's tab stop.
pub fn on_row_focus(ev: web_sys::FocusEvent) {
    let Some(row) = row_of(ev.target()) else { return };
    let Some(rows) = row.parent_element().and_then(|b| b.query_selector_all("tr[tabindex]").ok())
    else {
        return;
    };
    for i in 0..rows.length() {
        if let Some(r) = rows.item(i).and_then(|n| n.dyn_into::<web_sys::Element>().ok()) {
            let _ = r.set_attribute("tabindex", row_tabindex(r == *row.as_ref()));
        }
    }
}
