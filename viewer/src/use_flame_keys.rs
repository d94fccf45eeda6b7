//! `use_flame_keys`: a flame graph from the keyboard (the memory flame graph and compare
//! mode's differential one). Tab to its canvas; the arrows move a cursor between frames (up
//! and down as drawn: an icicle has its root at the top, a flame at the bottom), Enter or
//! Space zooms into the cursor's frame, Escape zooms out one level, Home returns to the
//! zoomed frame. The cursor is outlined while the canvas has the keyboard's focus, and a live
//! region says what it is on; that line appears the first time the keyboard comes and stays
//! (a line that came and went with the focus would move what is below it under the pointer).

use leptos::prelude::*;

use crate::chart_canvas::Tooltip;
use crate::flame_keys::{flame_cursor, flame_move, FlameMove, FlameNav};

/// A flame graph layout the keyboard can walk.
pub trait KeyedFlame: FlameNav + Clone + PartialEq + Send + Sync + 'static {
    /// Names the tree the nodes are of: a cursor set in another tree is dropped.
    fn tree_id(&self) -> usize;
    /// Root at the bottom (flame) instead of the top (icicle).
    fn flame_up(&self) -> bool;
    /// What `node` is, in one line (from its tooltip: [`describe`]).
    fn describe(&self, node: u32) -> Option<String>;
    /// The top of `node`'s row in CSS px from the canvas' top, to scroll it into view.
    fn row_top(&self, node: u32) -> Option<f64>;
}

/// Implements [`FlameNav`] and [`KeyedFlame`] for a flame chart laid out the way both of ours
/// are: `data.0.tree.nodes` (each with `parent` and `children`, node 0 the root), `zoom`,
/// `rect_of(node)` (its rectangle, with a `row`), `row_y(row)`, `flame_up()` and a
/// `Chart::tooltip`.
macro_rules! keyed_flame {
    ($chart:ty) => {
        impl $crate::flame_keys::FlameNav for $chart {
            fn parent(&self, node: u32) -> Option<u32> {
                let nodes = &self.data.0.tree.nodes;
                (node != 0).then(|| nodes.get(node as usize).map(|n| n.parent)).flatten()
            }

            fn children(&self, node: u32) -> &[u32] {
                self.data.0.tree.nodes.get(node as usize).map_or(&[], |n| &n.children)
            }

            fn drawn(&self, node: u32) -> bool {
                self.rect_of(node).is_some()
            }

            fn zoomed(&self) -> u32 {
                self.zoom
            }
        }

        impl $crate::use_flame_keys::KeyedFlame for $chart {
            fn tree_id(&self) -> usize {
                std::sync::Arc::as_ptr(&self.data.0) as *const u8 as usize
            }

            fn flame_up(&self) -> bool {
                <$chart>::flame_up(self)
            }

            fn describe(&self, node: u32) -> Option<String> {
                use $crate::chart_canvas::Chart;
                use $crate::flame_keys::FlameNav;
                let tip = self.tooltip(self.rect_of(node)?)?;
                Some($crate::use_flame_keys::describe(tip, self.children(node).len()))
            }

            fn row_top(&self, node: u32) -> Option<f64> {
                Some(self.row_y(self.rect_of(node)?.row))
            }
        }
    };
}
pub(crate) use keyed_flame;

/// A tooltip and the number of callees as one line for screen readers.
pub fn describe(tip: Tooltip, callees: usize) -> String {
    let mut parts = vec![tip.title];
    parts.extend(tip.location);
    parts.extend(tip.lines);
    parts.push(crate::units::plural(callees as u64, "callee", "callees"));
    parts.join(" · ")
}

/// What a flame graph panel wires to its canvas and live region.
#[derive(Clone, Copy)]
pub struct FlameKeys {
    /// The node to outline: the cursor, while the canvas has the keyboard's focus.
    pub cursor: Signal<Option<u32>>,
    /// What the cursor is on (for an `aria-live` region).
    pub text: Signal<Option<String>>,
    pub on_key: Callback<web_sys::KeyboardEvent>,
    pub on_focus: Callback<bool>,
}

/// Keyboard access to the flame graph laid out in `layout`, drawn on the canvas `canvas_id`
/// (inside a `.flame-scroll` box); `zoom_in` and `zoom_out` change the zoom.
pub fn use_flame_keys<C: KeyedFlame>(
    layout: Memo<Option<C>>,
    zoom_in: Callback<u32>,
    zoom_out: Callback<()>,
    canvas_id: &'static str,
) -> FlameKeys {
    let (focused, set_focused) = signal(false);
    let (keyboard, set_keyboard) = signal(false);
    let cursor = RwSignal::new(None::<(usize, u32)>);
    let at = move |c: &C| {
        let wanted = cursor.with(|k| k.filter(|k| k.0 == c.tree_id()).map(|k| k.1));
        flame_cursor(c, wanted)
    };
    let shown = Signal::derive(move || {
        if !focused.get() {
            return None;
        }
        layout.with(|c| c.as_ref().map(at))
    });
    let text = Signal::derive(move || {
        if !keyboard.get() {
            return None;
        }
        layout.with(|c| c.as_ref().and_then(|c| c.describe(at(c))))
    });
    let on_focus = Callback::new(move |f: bool| {
        if f {
            set_keyboard.set(true);
        }
        set_focused.set(f);
    });
    let on_key = Callback::new(move |ev: web_sys::KeyboardEvent| {
        if ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
            return;
        }
        let Some(c) = layout.get_untracked() else { return };
        let now = at(&c);
        let (up, down) = if c.flame_up() {
            (FlameMove::Child, FlameMove::Parent)
        } else {
            (FlameMove::Parent, FlameMove::Child)
        };
        let step = match ev.key().as_str() {
            "ArrowUp" => Some(up),
            "ArrowDown" => Some(down),
            "ArrowLeft" => Some(FlameMove::PrevSibling),
            "ArrowRight" => Some(FlameMove::NextSibling),
            "Home" => None,
            "Enter" | " " => {
                ev.prevent_default();
                cursor.set(Some((c.tree_id(), now)));
                zoom_in.run(now);
                return;
            }
            "Escape" => {
                // Only this zoom out: not the page's own Escape too.
                ev.prevent_default();
                ev.stop_propagation();
                zoom_out.run(());
                return;
            }
            _ => return,
        };
        ev.prevent_default();
        set_keyboard.set(true);
        set_focused.set(true);
        let next = match step {
            Some(step) => flame_move(&c, now, step),
            None => Some(c.zoomed()),
        };
        if let Some(next) = next {
            cursor.set(Some((c.tree_id(), next)));
            if let Some(y) = c.row_top(next) {
                scroll_to_row(canvas_id, y, crate::flame_model::ROW_H);
            }
        }
    });
    FlameKeys { cursor: shown, text, on_key, on_focus }
}

/// Scrolls the `.flame-scroll` box around the canvas `canvas_id` so the row from `y` to
/// `y + h` (CSS px from the canvas' top) is in view.
fn scroll_to_row(canvas_id: &str, y: f64, h: f64) {
    let scroller = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(canvas_id))
        .and_then(|c| c.closest(".flame-scroll").ok().flatten());
    let Some(scroller) = scroller else { return };
    let (top, height) = (f64::from(scroller.scroll_top()), f64::from(scroller.client_height()));
    if y < top {
        scroller.set_scroll_top(y as i32);
    } else if y + h > top + height {
        scroller.set_scroll_top((y + h - height).ceil() as i32);
    }
}
