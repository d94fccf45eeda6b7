//! The page's side of the worker (`worker.rs`): starts it, sends requests, and hands each
//! answer to the view that asked, unless a newer request of that view replaced it.
//!
//! One worker serves the whole page (every recording, both sides of a comparison). It is
//! started on first use from `memlens_worker.js` next to the page, or by the page's
//! `window.memlensWorker()` when the page defines one (a single-file report, which has no
//! file to load a worker from), and is given the page's own compiled wasm module.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::channel::oneshot;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::protocol::{decode, encode, Answer, FromWorker, RecId, Request, Requests, ToWorker};
use crate::web_sources::js_error;

/// What the worker is busy with, when it has taken a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub id: u64,
    pub label: String,
    pub done: u64,
    pub total: u64,
}

type Reply = oneshot::Sender<Result<Answer, String>>;

struct Client {
    worker: Option<web_sys::Worker>,
    ready: bool,
    /// Messages waiting for the worker to start.
    backlog: Vec<js_sys::Array>,
    pending: HashMap<u64, Reply>,
    requests: Requests,
    /// Why the worker is gone, once it is.
    failed: Option<String>,
    /// The same, for the page's error banner (cleared when a new worker starts).
    failure: ArcRwSignal<Option<String>>,
    next_rec: RecId,
    activity: ArcRwSignal<Option<Activity>>,
    /// The worker's event handlers, kept alive with it.
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

thread_local! {
    static CLIENT: RefCell<Client> = RefCell::new(Client {
        worker: None,
        ready: false,
        backlog: Vec::new(),
        pending: HashMap::new(),
        requests: Requests::default(),
        failed: None,
        failure: ArcRwSignal::new(None),
        next_rec: 0,
        activity: ArcRwSignal::new(None),
        _handlers: Vec::new(),
    });
}

/// What the worker is busy with (for the page's progress bar).
pub fn activity() -> ArcRwSignal<Option<Activity>> {
    CLIENT.with(|c| c.borrow().activity.clone())
}

/// Why the worker stopped, while it is stopped (for the page's error banner).
pub fn failure() -> ArcRwSignal<Option<String>> {
    CLIENT.with(|c| c.borrow().failure.clone())
}

/// A new recording id.
pub fn next_rec() -> RecId {
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        c.next_rec += 1;
        c.next_rec
    })
}

/// Asks the worker. `view` names who asks: only the latest request of a view is answered
/// (`None` for one that a newer one replaced); an empty view is always answered. `blob`
/// travels beside the request (a file to open).
pub async fn ask(
    view: &str,
    request: Request,
    blob: Option<&web_sys::Blob>,
) -> Option<Result<Answer, String>> {
    let sent = CLIENT.with(|c| c.borrow_mut().send(view, request, blob));
    let (id, reply) = match sent {
        Ok(sent) => sent,
        Err(e) => return Some(Err(e)),
    };
    let result = reply.await.unwrap_or_else(|_| Err("The viewer's worker stopped.".into()));
    if !CLIENT.with(|c| c.borrow().requests.is_current(view, id)) {
        return None;
    }
    match result {
        Ok(Answer::Superseded) => None,
        other => Some(other),
    }
}

/// Tells the worker to forget a recording (no answer wanted).
pub fn close(rec: RecId) {
    leptos::task::spawn_local(async move {
        let _ = ask("", Request::Close { rec }, None).await;
    });
}

impl Client {
    fn send(
        &mut self,
        view: &str,
        request: Request,
        blob: Option<&web_sys::Blob>,
    ) -> Result<(u64, oneshot::Receiver<Result<Answer, String>>), String> {
        if let Some(why) = &self.failed {
            if !matches!(request, Request::Open { .. }) {
                return Err(why.clone());
            }
            // Opening a recording starts a new worker (what the old one held is lost anyway).
            self.failed = None;
            self.failure.set(None);
            self.ready = false;
            self.backlog.clear();
        }
        if self.worker.is_none() {
            self.start().map_err(|e| self.fail(e))?;
        }
        let id = self.requests.issue(view);
        let bytes = encode(&ToWorker { id, view: view.to_string(), request });
        let message = js_sys::Array::of2(
            &js_sys::Uint8Array::from(&bytes[..]),
            &blob.map_or(JsValue::UNDEFINED, |b| b.into()),
        );
        if self.ready {
            self.post(&message)?;
        } else {
            self.backlog.push(message);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        Ok((id, rx))
    }

    fn post(&mut self, message: &js_sys::Array) -> Result<(), String> {
        let worker = self.worker.as_ref().ok_or("The viewer's worker is not running.")?;
        worker.post_message(message).map_err(|e| {
            format!("Could not send a request to the viewer's worker: {}", js_error(&e))
        })
    }

    /// Starts the worker and gives it the page's compiled wasm module.
    fn start(&mut self) -> Result<(), String> {
        let worker = make_worker()
            .map_err(|e| format!("The viewer's worker could not start: {}", js_error(&e)))?;
        let on_message =
            Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| on_message(e.unchecked_into()));
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let on_error = Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| {
            let message = e
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "it stopped (see the browser console)".into());
            CLIENT.with(|c| c.borrow_mut().fail(format!("The viewer's worker failed: {message}")));
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        worker
            .post_message(&wasm_bindgen::module())
            .map_err(|e| format!("The viewer's worker could not start: {}", js_error(&e)))?;
        self.worker = Some(worker);
        self._handlers = vec![on_message, on_error];
        Ok(())
    }

    /// The worker is gone: every request waiting for it fails with `why`, and so do later ones.
    /// A worker that already failed keeps its first reason (a panic's message comes before
    /// the trap that ends the module, which is reported too).
    fn fail(&mut self, why: String) -> String {
        if let (None, Some(first)) = (&self.worker, &self.failed) {
            return first.clone();
        }
        leptos::logging::error!("memlens: {why}");
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(why.clone()));
        }
        self.activity.set(None);
        if let Some(w) = self.worker.take() {
            w.terminate();
        }
        self.failed = Some(why.clone());
        self.failure.set(Some(why.clone()));
        why
    }
}

/// `window.memlensWorker()` when the page defines it, else a module worker from
/// `memlens_worker.js` beside the page.
fn make_worker() -> Result<web_sys::Worker, JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let factory = js_sys::Reflect::get(&window, &"memlensWorker".into())?;
    if let Some(f) = factory.dyn_ref::<js_sys::Function>() {
        return f.call0(&window)?.dyn_into();
    }
    let options = web_sys::WorkerOptions::new();
    options.set_type(web_sys::WorkerType::Module);
    web_sys::Worker::new_with_options("memlens_worker.js", &options)
}

fn on_message(event: web_sys::MessageEvent) {
    let data = event.data();
    if let Some(text) = data.as_string() {
        // The worker is gone: memlens_worker.js could not start the wasm module, or the module
        // panicked or trapped.
        CLIENT.with(|c| c.borrow_mut().fail(text));
        return;
    }
    let bytes = js_sys::Uint8Array::new(&data).to_vec();
    let msg = match decode::<FromWorker>(&bytes) {
        Ok(msg) => msg,
        Err(e) => {
            leptos::logging::error!("memlens: {e}");
            return;
        }
    };
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        match msg {
            FromWorker::Ready => {
                c.ready = true;
                for message in std::mem::take(&mut c.backlog) {
                    if let Err(e) = c.post(&message) {
                        c.fail(e);
                        return;
                    }
                }
            }
            FromWorker::Progress { id, label, done, total } => {
                if c.pending.contains_key(&id) {
                    c.activity.set(Some(Activity { id, label, done, total }));
                }
            }
            FromWorker::Answer { id, result } => {
                if c.activity.with_untracked(|a| a.as_ref().is_some_and(|a| a.id == id)) {
                    c.activity.set(None);
                }
                if let Some(reply) = c.pending.remove(&id) {
                    let _ = reply.send(result);
                }
            }
        }
    });
}
