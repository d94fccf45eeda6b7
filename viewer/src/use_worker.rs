//! `use_worker`: the worker's answer to a question that follows the view state. Each change
//! of the question asks the worker (answers of earlier questions are dropped); the last
//! answer stays on screen while the next one is computed, and a few answers are kept, so
//! going back to a mode or a thread is instant.

use leptos::prelude::*;

use crate::client;
use crate::protocol::{Answer, Request};
use crate::ByPtr;

/// A question for the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Who asks (`flame:3`): a newer question of the same view replaces an older one.
    pub view: String,
    pub request: Request,
    /// The directory generation it is about (a followed recording grows).
    pub generation: u32,
}

/// The latest answer (`None` until the first one), the question it answers, and whether a
/// newer one is being computed.
#[derive(Clone, Copy)]
pub struct WorkerAnswer {
    pub result: ReadSignal<Option<Result<ByPtr<Answer>, String>>>,
    pub answered: ReadSignal<Option<Query>>,
    pub computing: ReadSignal<bool>,
}

impl WorkerAnswer {
    /// Whether the answer on screen is the one to the current question.
    pub fn settled(&self) -> bool {
        !self.computing.get() && self.result.with(Option::is_some)
    }
}

/// Asks the worker `query` whenever it changes (`None`: nothing to ask); keeps up to `keep`
/// answers for reuse.
pub fn use_worker(query: Memo<Option<Query>>, keep: usize) -> WorkerAnswer {
    let (result, set_result) = signal(None::<Result<ByPtr<Answer>, String>>);
    let (computing, set_computing) = signal(false);
    let (answered, set_answered) = signal(None::<Query>);
    let kept: StoredValue<Vec<(Query, ByPtr<Answer>)>> = StoredValue::new(Vec::new());
    Effect::new(move |_| {
        let Some(q) = query.get() else {
            set_computing.set(false);
            return;
        };
        if let Some(hit) = kept.with_value(|c| c.iter().find(|(k, _)| *k == q).map(|e| e.1.clone()))
        {
            set_result.set(Some(Ok(hit)));
            set_answered.set(Some(q));
            set_computing.set(false);
            return;
        }
        set_computing.set(true);
        leptos::task::spawn_local(async move {
            let what = q.view.split(':').next().unwrap_or_default().to_string();
            let step = crate::Step::start(&what);
            let Some(answer) = client::ask(&q.view, q.request.clone(), None).await else {
                return; // a newer question replaced this one
            };
            step.finish();
            let answer = answer.map(ByPtr::new);
            // The view that asked may be gone by now (a key or a click showed another one):
            // then the answer is nobody's.
            if let (Ok(a), true) = (&answer, keep > 0) {
                let kept_it = kept.try_update_value(|c| {
                    if c.len() >= keep {
                        c.remove(0);
                    }
                    c.push((q.clone(), a.clone()));
                });
                if kept_it.is_none() {
                    return;
                }
            }
            if query.try_with_untracked(|now| now.as_ref() == Some(&q)) == Some(true) {
                set_result.set(Some(answer));
                set_answered.set(Some(q));
                set_computing.set(false);
            }
        });
    });
    WorkerAnswer { result, answered, computing }
}
