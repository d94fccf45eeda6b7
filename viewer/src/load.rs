//! Opening a recording: from a `File` (picker or drop), a URL, or bytes a report page holds.
//! The worker opens it and sends back its directory; the page keeps only that. A URL whose
//! recording has no trailer yet (or that was opened with `&follow=1`) is followed: polled
//! every [`FOLLOW_EVERY_MS`] and its directory replaced as it grows, until it is closed.

use leptos::prelude::*;
use memlens_format::Recording;
use wasm_bindgen_futures::JsFuture;

use crate::client;
use crate::protocol::{decode, Answer, Opened, RecId, Request, SourceSpec};
use crate::ByPtr;

/// How often a recording being written is polled.
const FOLLOW_EVERY_MS: i32 = 1000;

/// What the page knows of a recording: its directory (tables, samples, markers, censuses,
/// summary; no events), as of the last refresh.
pub struct Directory {
    pub recording: Recording,
    /// Bytes of the file.
    pub size: u64,
    /// Shown in warning banners.
    pub warnings: Vec<String>,
    /// Counts the refreshes of a followed recording: answers about an older generation are
    /// out of date.
    pub generation: u32,
}

/// Whether a recording is being followed as it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// A finished recording (or a file, which does not grow).
    Off,
    /// Polled; `quiet` polls in a row found nothing new; `error` is the last poll's failure.
    Following { quiet: u32, error: Option<String> },
    /// It was being written and is now closed.
    Finished,
}

/// A recording that is on screen.
pub struct Loaded {
    /// File name or URL it came from.
    pub name: String,
    /// Its id in the worker.
    pub rec: RecId,
    pub dir: ArcRwSignal<ByPtr<Directory>>,
    pub live: ArcRwSignal<Live>,
}

impl Loaded {
    /// The directory as it is now (not tracked).
    pub fn now(&self) -> ByPtr<Directory> {
        self.dir.get_untracked()
    }
}

/// Whether to follow a URL's recording as it grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Never (files, reports, compare mode).
    No,
    /// When it has no trailer yet (any `?url=`).
    IfOpen,
    /// The same, and wait for it to exist (`&follow=1`, from `memlens view --follow`): a
    /// recording that cannot be opened yet is tried again every second.
    Yes,
}

/// The loader's signals.
#[derive(Clone, Copy)]
pub struct Loader {
    pub loaded: RwSignal<Option<ByPtr<Loaded>>>,
    /// The name of what is being opened.
    pub opening: RwSignal<Option<String>>,
    /// The last load's error, shown in an error banner.
    pub error: RwSignal<Option<String>>,
}

impl Loader {
    pub fn new() -> Loader {
        Loader {
            loaded: RwSignal::new(None),
            opening: RwSignal::new(None),
            error: RwSignal::new(None),
        }
    }

    /// Opens a file chosen in the picker or dropped on the page.
    pub fn load_file(self, file: web_sys::File) {
        let name = file.name();
        self.open(name, SourceSpec::Blob, Some(file.into()), Follow::No);
    }

    /// Opens bytes the page already holds (a report with the recording inlined).
    pub fn load_bytes(self, name: String, bytes: js_sys::Uint8Array) {
        let parts = js_sys::Array::of1(&bytes);
        match web_sys::Blob::new_with_u8_array_sequence(&parts) {
            Ok(blob) => self.open(name, SourceSpec::Blob, Some(blob), Follow::No),
            Err(e) => self.error.set(Some(format!(
                "{name}: could not read the page's recording ({})",
                crate::web_sources::js_error(&e)
            ))),
        }
    }

    /// Opens a recording from `url` (absolute, or relative to the page).
    pub fn load_url(self, url: String, follow: Follow) {
        let absolute = web_sys::window()
            .and_then(|w| w.location().href().ok())
            .and_then(|base| web_sys::Url::new_with_base(&url, &base).ok())
            .map_or_else(|| url.clone(), |u| u.href());
        self.open(url, SourceSpec::Url(absolute), None, follow);
    }

    fn open(self, name: String, source: SourceSpec, blob: Option<web_sys::Blob>, follow: Follow) {
        self.error.set(None);
        self.opening.set(Some(name.clone()));
        leptos::task::spawn_local(async move {
            let step = crate::Step::start("open");
            let (rec, dir) = loop {
                let rec = client::next_rec();
                let request = Request::Open { rec, source: source.clone() };
                let answer = client::ask("", request, blob.as_ref()).await;
                if self.opening.get_untracked().as_ref() != Some(&name) {
                    client::close(rec); // another recording was opened meanwhile
                    return;
                }
                let result = match answer {
                    Some(Ok(Answer::Opened(o))) => directory(o, 0),
                    Some(Ok(other)) => Err(format!("unexpected answer {other:?}")),
                    Some(Err(e)) => Err(e),
                    None => return,
                };
                match result {
                    Ok(dir) => break (rec, dir),
                    // A recording about to be written: wait for it.
                    Err(e) if follow == Follow::Yes => {
                        self.error.set(Some(format!("Waiting for {name}: {e}")));
                        sleep_ms(FOLLOW_EVERY_MS).await;
                    }
                    Err(e) => {
                        self.opening.set(None);
                        self.set(None);
                        self.error.set(Some(if e.contains(&name) {
                            e
                        } else {
                            format!("{name}: {e}")
                        }));
                        return;
                    }
                }
            };
            step.finish();
            self.opening.set(None);
            self.error.set(None);
            let follows = follow != Follow::No && !dir.recording.has_trailer();
            let live = if follows { Live::Following { quiet: 0, error: None } } else { Live::Off };
            let dir = with_warnings(dir, follows);
            let loaded = ByPtr::new(Loaded {
                name,
                rec,
                dir: ArcRwSignal::new(ByPtr::new(dir)),
                live: ArcRwSignal::new(live),
            });
            self.set(Some(loaded.clone()));
            if follows {
                follow_recording(self, loaded).await;
            }
        });
    }

    /// Shows `loaded` (or nothing), and lets the worker forget what was shown before.
    fn set(self, loaded: Option<ByPtr<Loaded>>) {
        if let Some(old) = self.loaded.get_untracked() {
            client::close(old.0.rec);
        }
        self.loaded.set(loaded);
    }
}

/// The page's directory from the worker's answer.
fn directory(o: Opened, generation: u32) -> Result<Directory, String> {
    let recording: Recording = decode(&o.directory)?;
    Ok(Directory { recording, size: o.size, warnings: o.warnings, generation })
}

/// Adds what is wrong with the recording itself to the source's warnings.
fn with_warnings(mut dir: Directory, live: bool) -> Directory {
    let mut warnings = crate::open::warnings(&dir.recording, dir.size, live);
    warnings.append(&mut dir.warnings);
    dir.warnings = warnings;
    dir
}

/// Polls a recording being written until it is closed (or no longer shown).
async fn follow_recording(loader: Loader, loaded: ByPtr<Loaded>) {
    let rec = loaded.0.rec;
    let shown =
        move || loader.loaded.with_untracked(|l| l.as_ref().is_some_and(|l| l.0.rec == rec));
    let mut quiet = 0;
    loop {
        sleep_ms(FOLLOW_EVERY_MS).await;
        if !shown() {
            return;
        }
        let answer = client::ask(&format!("refresh:{rec}"), Request::Refresh { rec }, None).await;
        let (generation, size) = loaded.0.dir.with_untracked(|d| (d.0.generation + 1, d.0.size));
        let grew = match answer {
            // (A file that ends without its trailer always reads as changed: same size, though.)
            Some(Ok(Answer::Refreshed(Some(o)))) if o.size != size => directory(o, generation),
            Some(Ok(_)) | None => {
                quiet += 1;
                loaded.0.live.set(Live::Following { quiet, error: None });
                continue;
            }
            Some(Err(e)) => Err(e),
        };
        match grew {
            Ok(dir) => {
                quiet = 0;
                let finished = dir.recording.has_trailer();
                loaded.0.dir.set(ByPtr::new(with_warnings(dir, !finished)));
                if finished {
                    loaded.0.live.set(Live::Finished);
                    return;
                }
                loaded.0.live.set(Live::Following { quiet, error: None });
            }
            Err(e) => {
                quiet += 1;
                loaded.0.live.set(Live::Following { quiet, error: Some(e) });
            }
        }
    }
}

pub(crate) async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}
