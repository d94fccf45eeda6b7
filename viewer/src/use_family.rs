//! `use_family`: the processes of the recording on screen (format 5: the program and the
//! descendants it started) and the one the view state chooses. The list, for the process
//! picker, is asked of the worker after the first views (it opens every process's
//! recording); the chosen process is opened as a recording of its own (a [`Loaded`] whose
//! questions the worker answers from that process's stream), or all processes as one, and
//! kept, so going back to it is instant.

use std::collections::{HashMap, HashSet};

use leptos::prelude::*;

use crate::client;
use crate::load::{Directory, Live, Loaded};
use crate::protocol::{decode, Answer, ProcessInfo, Request};
use crate::url_state::{ProcessChoice, ViewState};
use crate::use_worker::{use_worker, Query};
use crate::ByPtr;

/// What the recording view shows.
#[derive(Clone, PartialEq)]
pub enum Shown {
    /// The program: the file's own recording.
    Program,
    /// A descendant.
    Process(ByPtr<Loaded>),
    /// All processes together: their merged tables (for the flame graph), and the list.
    All(ByPtr<Loaded>, ByPtr<Vec<ProcessInfo>>),
    /// The chosen process is being opened.
    Opening,
    /// It could not be.
    Failed(String),
}

/// The processes of the recording on screen.
#[derive(Clone, Copy)]
pub struct Family {
    /// The program then its descendants (`None` until the worker answered).
    pub list: Memo<Option<ByPtr<Vec<ProcessInfo>>>>,
    /// The process the view state chooses, if the recording has several (`None`: the program).
    pub choice: Memo<Option<ProcessChoice>>,
    pub shown: Memo<Shown>,
}

/// The processes of `file` and the one `state` chooses.
pub fn use_family(file: ByPtr<Loaded>, state: RwSignal<ViewState>) -> Family {
    let query = Memo::new({
        let (rec, dir) = (file.0.rec, file.0.dir.clone());
        move |_| {
            Some(Query {
                view: format!("processes:{rec}"),
                request: Request::Processes { rec },
                generation: dir.with(|d| d.0.generation),
            })
        }
    });
    let answer = use_worker(query, 0);
    let list = Memo::new(move |_| match answer.result.get() {
        Some(Ok(a)) => match &*a.0 {
            Answer::Processes(list) => Some(ByPtr::new(list.clone())),
            _ => None,
        },
        _ => None,
    });
    // A link may name a process before the list is in; a recording of one process has none.
    let choice = Memo::new(move |_| {
        let chosen = state.with(|s| s.process)?;
        let several = list.with(|l| l.as_ref().is_none_or(|l| l.0.len() > 1));
        (several && chosen != ProcessChoice::One(0)).then_some(chosen)
    });
    let opened = RwSignal::new(HashMap::<ProcessChoice, Result<ByPtr<Loaded>, String>>::new());
    let asked = StoredValue::new(HashSet::<ProcessChoice>::new());
    Effect::new({
        let file = file.clone();
        move |_| {
            let Some(chosen) = choice.get() else { return };
            if !asked.try_update_value(|a| a.insert(chosen)).unwrap_or(false) {
                return;
            }
            let file = file.clone();
            leptos::task::spawn_local(async move {
                let result = open_process(&file.0, chosen).await.map(ByPtr::new);
                opened.update(|o| {
                    o.insert(chosen, result);
                });
            });
        }
    });
    let shown = Memo::new(move |_| {
        let Some(chosen) = choice.get() else { return Shown::Program };
        opened.with(|o| match (o.get(&chosen), chosen) {
            (None, _) => Shown::Opening,
            (Some(Err(e)), _) => Shown::Failed(e.clone()),
            (Some(Ok(all)), ProcessChoice::All) => match list.get() {
                Some(list) => Shown::All(all.clone(), list),
                None => Shown::Opening,
            },
            (Some(Ok(one)), ProcessChoice::One(_)) => Shown::Process(one.clone()),
        })
    });
    Family { list, choice, shown }
}

/// Opens process `chosen` of `file` in the worker as a recording of its own.
async fn open_process(file: &Loaded, chosen: ProcessChoice) -> Result<Loaded, String> {
    let rec = client::next_rec();
    let request = Request::OpenProcess { rec, file: file.rec, process: chosen.number() };
    let opened = match client::ask("", request, None).await {
        Some(Ok(Answer::Opened(o))) => o,
        Some(Ok(other)) => return Err(format!("unexpected answer {other:?}")),
        Some(Err(e)) => return Err(e),
        None => return Err("The viewer's worker did not answer.".into()),
    };
    let recording: memlens_format::Recording = decode(&opened.directory)?;
    let warnings = match chosen {
        ProcessChoice::One(_) => crate::open::warnings(&recording, opened.size, false),
        ProcessChoice::All => Vec::new(),
    };
    let name = match chosen {
        ProcessChoice::One(_) => format!("{} · pid {}", file.name, recording.meta().pid),
        ProcessChoice::All => format!("{} · all processes", file.name),
    };
    let dir = Directory { recording, size: opened.size, warnings, generation: 0 };
    Ok(Loaded {
        name,
        rec,
        dir: ArcRwSignal::new(ByPtr::new(dir)),
        live: ArcRwSignal::new(Live::Off),
    })
}
