//! The viewer's Web Worker: the same wasm module as the page, started at [`worker_main`] by
//! `www/memlens_worker.js`. It opens recordings from their sources (`web_sources`), keeps
//! them, and answers the page's requests (`protocol`) one at a time, so the page never
//! decodes or replays anything and never freezes.
//!
//! A recording of several processes (format 5) is one open file; its processes are opened
//! as views of it (`OpenProcess`): a view's id names the file and the process (or all), and
//! its questions are answered from that process's recording (`family_answer`).
//!
//! Requests queue up while one runs; a queued request is skipped when a newer one for the same
//! view is queued behind it. A request that runs for more than [`PROGRESS_AFTER_MS`] reports
//! its progress: the bytes it has read of the recording (a scan of a file without an index, a
//! replay of a recording without aggregates, a slow network all read a lot).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use memlens_format::{ByteSource, Recording};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::answer::answer;
use crate::cached_source::{CachedSource, Fetch, Held};
use crate::family_answer::Family;
use crate::open::open_error;
use crate::protocol::{
    decode, encode, take_next, Answer, FromWorker, Opened, RecId, Request, SourceSpec, ToWorker,
};
use crate::web_sources::{probe, BlobFetch, Probe, XhrFetch};

/// A request running longer than this shows progress in the page.
const PROGRESS_AFTER_MS: f64 = 200.0;
/// Progress messages at most this often.
const PROGRESS_EVERY_MS: f64 = 100.0;

/// A request and the `Blob` that came with it.
struct Job {
    msg: ToWorker,
    blob: Option<web_sys::Blob>,
}

/// Where an open recording's bytes come from.
enum Source {
    /// Read in blocks as views ask (a `Blob`, or a URL whose server honours ranges).
    Ranged(Arc<CachedSource<Box<dyn Fetch>>>),
    /// Downloaded whole (a URL whose server ignores ranges).
    Held(Arc<Held>),
}

impl Source {
    fn bytes(&self) -> Arc<dyn ByteSource> {
        match self {
            Source::Ranged(s) => Arc::clone(s) as Arc<dyn ByteSource>,
            Source::Held(s) => Arc::clone(s) as Arc<dyn ByteSource>,
        }
    }
}

struct Open {
    rec: Recording,
    source: Source,
    /// The URL it was read from, to follow it as it grows.
    url: Option<String>,
    /// Its other processes, opened on first use (again after it grew).
    family: Option<Family>,
}

impl Open {
    /// Its own recording, and its other processes (opened on first use).
    fn parts(&mut self) -> (&Recording, &mut Family) {
        let family = self.family.get_or_insert_with(|| Family::open(&self.rec));
        (&self.rec, family)
    }
}

/// A view of one process of an open file, or of all of them (`None`).
#[derive(Clone, Copy)]
struct View {
    file: RecId,
    process: Option<u32>,
}

/// The running request's progress.
struct Task {
    id: u64,
    label: String,
    started: f64,
    last_post: f64,
    done: u64,
    total: u64,
}

thread_local! {
    static QUEUE: RefCell<VecDeque<Job>> = RefCell::default();
    static DRAINING: Cell<bool> = const { Cell::new(false) };
    static RECS: RefCell<HashMap<RecId, Open>> = RefCell::default();
    static VIEWS: RefCell<HashMap<RecId, View>> = RefCell::default();
    static TASK: RefCell<Option<Task>> = const { RefCell::new(None) };
}

fn scope() -> web_sys::DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(msg: &FromWorker) {
    let bytes = encode(msg);
    if let Err(e) = scope().post_message(&js_sys::Uint8Array::from(&bytes[..])) {
        web_sys::console::error_1(&e);
    }
}

/// Counts `bytes` read for the running request and posts its progress when it is due.
fn note_read(bytes: u64) {
    TASK.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.done = t.done.saturating_add(bytes);
            let now = js_sys::Date::now();
            if now - t.started >= PROGRESS_AFTER_MS && now - t.last_post >= PROGRESS_EVERY_MS {
                t.last_post = now;
                post(&FromWorker::Progress {
                    id: t.id,
                    label: t.label.clone(),
                    done: if t.total > 0 { t.done.min(t.total) } else { t.done },
                    total: t.total,
                });
            }
        }
    });
}

/// Sets the running request's progress to `done` of `total` (a download).
fn note_progress(done: u64, total: Option<u64>) {
    TASK.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.total = total.unwrap_or(0);
            t.done = 0;
        }
    });
    note_read(done);
}

/// The worker's entry point (called by `memlens_worker.js` once the module is ready).
#[wasm_bindgen]
pub fn worker_main() {
    // A panic aborts the module (a trap): before it does, the page is told why, so it shows
    // the reason in an error banner instead of waiting for answers that will never come.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let why = format!("The viewer's worker stopped on an internal error: {info}");
        let _ = scope().post_message(&why.into());
    }));
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(on_message);
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(&FromWorker::Ready);
}

fn on_message(event: web_sys::MessageEvent) {
    let data = js_sys::Array::from(&event.data());
    let bytes = js_sys::Uint8Array::new(&data.get(0)).to_vec();
    let msg: ToWorker = match decode(&bytes) {
        Ok(msg) => msg,
        Err(e) => {
            web_sys::console::error_1(&e.into());
            return;
        }
    };
    let blob = data.get(1).dyn_into::<web_sys::Blob>().ok();
    QUEUE.with(|q| q.borrow_mut().push_back(Job { msg, blob }));
    if !DRAINING.replace(true) {
        wasm_bindgen_futures::spawn_local(drain());
    }
}

/// Lets the event loop deliver messages posted meanwhile.
async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Runs queued requests until the queue is empty.
async fn drain() {
    loop {
        yield_now().await;
        let (next, skipped) = QUEUE.with(|q| {
            take_next(&mut q.borrow_mut(), |j| &j.msg.view, |j| j.msg.request.priority())
        });
        for job in skipped {
            post(&FromWorker::Answer { id: job.msg.id, result: Ok(Answer::Superseded) });
        }
        let Some(job) = next else {
            DRAINING.set(false);
            return;
        };
        let now = js_sys::Date::now();
        let (label, total) = label_of(&job);
        let task = Task { id: job.msg.id, label, started: now, last_post: now, done: 0, total };
        TASK.with(|t| *t.borrow_mut() = Some(task));
        let id = job.msg.id;
        let result = run(job).await;
        TASK.with(|t| *t.borrow_mut() = None);
        post(&FromWorker::Answer { id, result });
    }
}

/// The open file a request is about, and which of its processes (`Some(0)`: the file's own
/// recording; `None`: all of them).
fn target(request: &Request) -> (RecId, Option<u32>) {
    let rec = match *request {
        Request::OpenProcess { file, .. } => file,
        _ => request.rec(),
    };
    VIEWS.with(|v| v.borrow().get(&rec).map_or((rec, Some(0)), |v| (v.file, v.process)))
}

/// What a request's progress says, and the bytes it may read.
fn label_of(job: &Job) -> (String, u64) {
    let (rec, _) = target(&job.msg.request);
    match &job.msg.request {
        Request::Open { source: SourceSpec::Url(url), .. } => (format!("Opening {url}"), 0),
        Request::Open { .. } => {
            let name =
                job.blob.as_ref().and_then(|b| b.dyn_ref::<web_sys::File>().map(|f| f.name()));
            let size = job.blob.as_ref().map_or(0, |b| b.size() as u64);
            (format!("Opening {}", name.as_deref().unwrap_or("the recording")), size)
        }
        _ => RECS.with(|r| match r.borrow().get(&rec) {
            Some(o) if o.rec.aggregates_missing().is_some() => (
                "Replaying every event (this recording has no aggregates)".into(),
                o.source.bytes().len(),
            ),
            Some(o) => ("Reading the recording".into(), o.source.bytes().len()),
            None => (String::new(), 0),
        }),
    }
}

async fn run(job: Job) -> Result<Answer, String> {
    let request = job.msg.request;
    match request {
        Request::Open { rec, source } => open(rec, source, job.blob).await,
        Request::Refresh { rec } => refresh(rec).await,
        Request::Close { rec } => {
            RECS.with(|r| r.borrow_mut().remove(&rec));
            // Closing a file closes the views of its processes.
            VIEWS.with(|v| v.borrow_mut().retain(|&id, view| id != rec && view.file != rec));
            Ok(Answer::Closed)
        }
        _ => RECS.with(|r| {
            let mut recs = r.borrow_mut();
            let (file, process) = target(&request);
            let open = recs.get_mut(&file).ok_or("This recording is not open any more.")?;
            question(open, process, &request)
        }),
    }
}

/// Answers a question about process `process` of `open` (`None`: all of them).
fn question(open: &mut Open, process: Option<u32>, request: &Request) -> Result<Answer, String> {
    let size = open.source.bytes().len();
    match (process, request) {
        (_, Request::Processes { .. }) => {
            let (own, family) = open.parts();
            Ok(Answer::Processes(family.list(own)))
        }
        (_, &Request::OpenProcess { rec, file, process }) => {
            let directory = process_directory(open, process)?;
            let ranged = matches!(open.source, Source::Ranged(_));
            VIEWS.with(|v| v.borrow_mut().insert(rec, View { file, process }));
            Ok(Answer::Opened(Opened { directory, size, warnings: Vec::new(), ranged }))
        }
        (Some(0), _) => answer(&open.rec, size, request),
        (Some(n), _) => {
            let (_, family) = open.parts();
            answer(family.member(n).ok_or("This process is not in the recording.")?, size, request)
        }
        (None, _) => {
            let (own, family) = open.parts();
            family.answer_all(own, request)
        }
    }
}

/// The directory of process `process` of `open` (`None`: the merged tables of all of them).
fn process_directory(open: &mut Open, process: Option<u32>) -> Result<Vec<u8>, String> {
    let (own, family) = open.parts();
    Ok(match process {
        Some(0) => encode(own),
        Some(n) => encode(family.member(n).ok_or(format!("There is no process {n} in it."))?),
        None => encode(&family.flame(own)?.rec),
    })
}

/// The directory of `rec` for the page.
fn directory(rec: &Recording, source: &Source) -> Opened {
    let len = source.bytes().len();
    let mut warnings = Vec::new();
    let ranged = matches!(source, Source::Ranged(_));
    if !ranged {
        warnings.push(format!(
            "The server does not answer range requests, so the whole recording ({}) was \
             downloaded and is held in memory; serve it with `memlens view` or any server \
             that supports ranges to read only what each view needs.",
            crate::units::bytes(len)
        ));
    }
    Opened { directory: encode(rec), size: len, warnings, ranged }
}

async fn open(rec: RecId, spec: SourceSpec, blob: Option<web_sys::Blob>) -> Result<Answer, String> {
    let (source, url) = match spec {
        SourceSpec::Blob => {
            let blob = blob.ok_or("The page sent no file to open.")?;
            let fetch = BlobFetch::new(blob);
            let size = fetch.size();
            let fetch: Box<dyn Fetch> = Box::new(fetch);
            (Source::Ranged(Arc::new(CachedSource::new(fetch, size, note_read))), None)
        }
        SourceSpec::Url(url) => {
            let source = match probe(&scope(), &url, 0, note_progress).await? {
                Probe::Ranged { total } => {
                    let fetch: Box<dyn Fetch> = Box::new(XhrFetch::new(url.clone()));
                    Source::Ranged(Arc::new(CachedSource::new(fetch, total, note_read)))
                }
                Probe::Whole(bytes) => {
                    web_sys::console::warn_1(
                        &format!(
                            "memlens: {url}: the server does not answer range requests; the \
                             whole recording was downloaded"
                        )
                        .into(),
                    );
                    Source::Held(Arc::new(Held::new(bytes, note_read)))
                }
            };
            (source, Some(url))
        }
    };
    TASK.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.total = source.bytes().len();
        }
    });
    let recording = Recording::open_source(source.bytes()).map_err(open_error)?;
    let opened = directory(&recording, &source);
    let open = Open { rec: recording, source, url, family: None };
    RECS.with(|r| r.borrow_mut().insert(rec, open));
    Ok(Answer::Opened(opened))
}

/// Reads what was appended to a recording being written, if anything.
async fn refresh(rec: RecId) -> Result<Answer, String> {
    let found = RECS.with(|r| {
        let recs = r.borrow();
        recs.get(&rec).map(|o| {
            let source = match &o.source {
                Source::Ranged(s) => Source::Ranged(Arc::clone(s)),
                Source::Held(s) => Source::Held(Arc::clone(s)),
            };
            (o.url.clone(), source)
        })
    });
    let (url, source) = found.ok_or("This recording is not open any more.")?;
    // Files dropped on the page do not grow (the browser reads them as they were).
    let Some(url) = url else { return Ok(Answer::Refreshed(None)) };
    let len = source.bytes().len();
    match (probe(&scope(), &url, len, note_progress).await?, &source) {
        (Probe::Ranged { total }, Source::Ranged(s)) => s.set_len(total),
        (Probe::Whole(bytes), Source::Held(s)) => {
            if bytes.len() as u64 != len {
                s.replace(bytes);
            }
        }
        _ => return Err(format!("{url}: the server changed how it answers range requests")),
    }
    RECS.with(|r| {
        let mut recs = r.borrow_mut();
        let open = recs.get_mut(&rec).ok_or("This recording is not open any more.")?;
        let grew = open.rec.refresh().map_err(|e| format!("Could not read new data: {e}"))?;
        if grew {
            open.family = None; // its processes' streams may have grown too
        }
        Ok(Answer::Refreshed(grew.then(|| directory(&open.rec, &open.source))))
    })
}
