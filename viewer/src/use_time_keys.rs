//! `use_time_keys`: a time chart from the keyboard (the memory timeline, the heap of every
//! process). Tab to its canvas; the arrows move a cursor through the visible window, Shift and
//! an arrow select the range it sweeps, Home and End jump to the window's ends, Escape clears
//! the selection, Enter or Space acts on the cursor's time (the chart says how). The chart
//! draws the cursor while the canvas has the keyboard's focus ([`TimeKeys::cursor_at`]), and a
//! live region says what it is on (see `timeline_keys` for the moves themselves).

use leptos::prelude::*;

use crate::timeline_keys::{time_key, TimeCursor, TimeKey};

/// The keyboard cursor of a time chart: [`TimeKeys::cursor_at`] for the chart to draw, then
/// [`TimeKeys::handlers`] for its canvas.
#[derive(Clone, Copy)]
pub struct TimeKeys {
    cursor: RwSignal<Option<TimeCursor>>,
    focused: RwSignal<bool>,
}

/// A new cursor (none until the keyboard comes).
pub fn use_time_keys() -> TimeKeys {
    TimeKeys { cursor: RwSignal::new(None), focused: RwSignal::new(false) }
}

impl TimeKeys {
    /// The cursor's time while the canvas has the keyboard's focus (tracked).
    pub fn cursor_at(&self) -> Option<u64> {
        self.focused.get().then(|| self.cursor.get().map(|c| c.at)).flatten()
    }

    /// The cursor's time since the keyboard first came (tracked): what the live region says,
    /// which stays said (a line that came and went with the focus would move what is below
    /// it under the pointer).
    pub fn said_at(&self) -> Option<u64> {
        self.cursor.get().map(|c| c.at)
    }

    /// The canvas' `on_key` and `on_focus` for a chart showing `window` (ns, end exclusive),
    /// whose selection is `range` and is set through `on_select`. The cursor starts at
    /// `start(window)` (the peak, say) when the keyboard first comes; Enter or Space call
    /// `on_enter` with the cursor's time.
    pub fn handlers(
        self,
        window: Signal<(u64, u64)>,
        range: Signal<Option<(u64, u64)>>,
        on_select: Callback<Option<(u64, u64)>>,
        start: impl Fn((u64, u64)) -> u64 + Send + Sync + 'static,
        on_enter: Callback<u64>,
    ) -> (Callback<web_sys::KeyboardEvent>, Callback<bool>) {
        let TimeKeys { cursor, focused } = self;
        // Focus events can reach a chart that is being taken down (a key that shows another
        // view): what it has is then gone, and the event is dropped.
        let on_focus = Callback::new(move |f: bool| {
            let Some(fresh) = cursor.try_with_untracked(Option::is_none) else { return };
            if f && fresh {
                let Some((t0, t1)) = window.try_get_untracked() else { return };
                let at = start((t0, t1));
                let at = if (t0..t1).contains(&at) { at } else { t0 };
                cursor.set(Some(TimeCursor { at, anchor: None }));
            }
            focused.set(f);
        });
        let on_key = Callback::new(move |ev: web_sys::KeyboardEvent| {
            if ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
                return;
            }
            let key = match ev.key().as_str() {
                "ArrowLeft" => TimeKey::Left,
                "ArrowRight" => TimeKey::Right,
                "Home" => TimeKey::Start,
                "End" => TimeKey::End,
                "Escape" => {
                    ev.prevent_default();
                    ev.stop_propagation();
                    cursor.update(|c| {
                        if let Some(c) = c {
                            c.anchor = None;
                        }
                    });
                    if range.get_untracked().is_some() {
                        on_select.run(None);
                    }
                    return;
                }
                "Enter" | " " => {
                    ev.prevent_default();
                    if let Some(c) = cursor.get_untracked() {
                        on_enter.run(c.at);
                    }
                    return;
                }
                _ => return,
            };
            ev.prevent_default();
            focused.set(true);
            let (t0, t1) = window.get_untracked();
            let now = cursor.get_untracked().unwrap_or(TimeCursor { at: t0, anchor: None });
            let extend = ev.shift_key();
            let (next, selected) =
                time_key(now, key, extend, (t0, t1.saturating_sub(1)), range.get_untracked());
            cursor.set(Some(next));
            if extend {
                on_select.run(selected);
            }
        });
        (on_key, on_focus)
    }
}
