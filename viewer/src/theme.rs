//! Chart colours, read from the page's CSS custom properties (`--chart-*` in memlens.css) so
//! the light and dark themes are defined in one place, plus a signal that ticks when the
//! system colour scheme changes so open charts repaint.

use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

/// Resolved chart colours (CSS colour strings) and fonts.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub dark: bool,
    pub bg: String,
    pub grid: String,
    pub axis: String,
    pub rss: String,
    pub heap: String,
    pub peak: String,
    pub select: String,
    pub text: String,
    pub frame_text: String,
    pub matched: String,
    /// The keyboard focus ring.
    pub focus: String,
    pub font: String,
}

impl Theme {
    /// Reads the `--chart-*` properties that apply to `el`.
    pub fn read(el: &web_sys::Element) -> Theme {
        let style = web_sys::window().and_then(|w| w.get_computed_style(el).ok().flatten());
        let var = |name: &str, fallback: &str| {
            style
                .as_ref()
                .and_then(|s| s.get_property_value(name).ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| fallback.to_string())
        };
        let font = var("--font", "sans-serif");
        Theme {
            dark: prefers_dark(),
            bg: var("--chart-bg", "#ffffff"),
            grid: var("--chart-grid", "#e9ebef"),
            axis: var("--chart-axis", "#6b7180"),
            rss: var("--chart-rss", "#e07b39"),
            heap: var("--chart-heap", "#2f6fde"),
            peak: var("--chart-peak", "#c62f4a"),
            select: var("--chart-select", "rgba(47,111,222,0.14)"),
            text: var("--chart-text", "#1d2027"),
            frame_text: var("--chart-frame-text", "#101216"),
            matched: var("--chart-match", "#f2c200"),
            focus: var("--focus", "#2f6fde"),
            font,
        }
    }

    /// A CSS font shorthand in the page's font family.
    pub fn font(&self, px: f64, weight: u16) -> String {
        format!("{weight} {px}px {}", self.font)
    }
}

fn dark_query() -> Option<web_sys::MediaQueryList> {
    web_sys::window()?.match_media("(prefers-color-scheme: dark)").ok().flatten()
}

pub(crate) fn prefers_dark() -> bool {
    dark_query().is_some_and(|q| q.matches())
}

/// A signal that changes whenever the system colour scheme flips; charts `track()` it.
pub fn use_theme_epoch() -> ReadSignal<u32> {
    let (epoch, set_epoch) = signal(0u32);
    if let Some(query) = dark_query() {
        let cb = Closure::<dyn FnMut()>::new(move || set_epoch.update(|e| *e += 1));
        let _ = query.add_event_listener_with_callback("change", cb.as_ref().unchecked_ref());
        let held = send_wrapper::SendWrapper::new((cb, query));
        on_cleanup(move || {
            let (cb, query) = held.take();
            let _ =
                query.remove_event_listener_with_callback("change", cb.as_ref().unchecked_ref());
        });
    }
    epoch
}
