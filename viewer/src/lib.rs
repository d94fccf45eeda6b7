//! memlens-viewer: the browser UI for `.memlens` recordings.
//!
//! A Leptos 0.8 client-side-rendered app compiled to `wasm32-unknown-unknown` and bundled by
//! `./dev build-viewer` into `www/dist/`. It reads a recording from a file picker, a drop
//! anywhere on the page, or `?url=...`, decodes it with `memlens-format` and draws a memory
//! timeline and a flame graph on canvases.
//!
//! Design constraints:
//! - no `unsafe`; all decoding and analysis lives in `memlens-format` (plain Rust, tested
//!   natively), components only wire signals to it;
//! - it also compiles natively so `cargo clippy --workspace` and the pure-logic unit tests run
//!   without a browser.
//!
//! Example (from the repository root):
//!
//! ```text
//! ./dev build-viewer && python3 -m http.server -d www/dist   # then open http://localhost:8000/
//! ```
#![forbid(unsafe_code)]

mod flame_search;
mod open;
mod units;
mod url_state;

use leptos::prelude::*;

/// Read a `File`/`Blob` completely.
async fn read_blob(blob: &web_sys::Blob) -> Result<Vec<u8>, String> {
    let buf = wasm_bindgen_futures::JsFuture::from(blob.array_buffer())
        .await
        .map_err(|e| format!("could not read the file: {e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

#[component]
fn App() -> impl IntoView {
    let (status, set_status) = signal(String::from("Open a .memlens recording"));
    let load = move |file: web_sys::File| {
        let name = file.name();
        leptos::task::spawn_local(async move {
            match read_blob(&file).await {
                Ok(bytes) => set_status.set(format!("{name}: {} bytes", bytes.len())),
                Err(e) => set_status.set(e),
            }
        });
    };
    view! {
        <main
            on:dragover=move |ev: web_sys::DragEvent| ev.prevent_default()
            on:drop=move |ev: web_sys::DragEvent| {
                ev.prevent_default();
                if let Some(f) = ev.data_transfer().and_then(|d| d.files()).and_then(|l| l.get(0)) {
                    load(f);
                }
            }
        >
            <h1>"memlens"</h1>
            <input
                type="file"
                id="file"
                on:change=move |ev| {
                    let input: web_sys::HtmlInputElement = event_target(&ev);
                    if let Some(f) = input.files().and_then(|l| l.get(0)) {
                        load(f);
                    }
                }
            />
            <p id="status">{status}</p>
        </main>
    }
}

/// Mount the app into `<body>`; called from `main`.
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
