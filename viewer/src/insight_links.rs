//! Where each finding of the insights panel leads: the flame graph zoomed to its call stack in
//! the mode that shows that memory, a search for its function, its time span selected on the
//! timeline, or the objects panel at the census it comes from. Each link is a change to the
//! [`ViewState`], so it lands in the URL like any other view. Pure; tested natively.

use memlens_analysis::{last_census_index, stack_path, Insight, InsightKind};
use memlens_format::Recording;

use crate::url_state::{FlameMode, ViewState, ZoomStep};

/// What a link changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The flame graph in `mode`, zoomed to a stack.
    Flame { mode: FlameMode, zoom: Vec<ZoomStep> },
    /// The flame graph's search box.
    Search(String),
    /// A time range on the timeline (and the flame graph's range mode).
    Range(u64, u64),
    /// The objects panel at this census, without a comparison.
    Census(u32),
}

/// The panel a target shows its result in (the element to scroll to).
pub fn panel_of(target: &Target) -> &'static str {
    match target {
        Target::Flame { .. } | Target::Search(_) => "flame-panel",
        Target::Range(..) => "timeline-panel",
        Target::Census(_) => "objects-panel",
    }
}

impl Target {
    /// Applies the link to the view state.
    pub fn apply(&self, s: &mut ViewState) {
        match self {
            Target::Flame { mode, zoom } => {
                s.mode = *mode;
                s.zoom = zoom.clone();
            }
            Target::Search(text) => s.search = text.clone(),
            Target::Range(a, b) => {
                s.range = Some((*a, *b));
                s.mode = FlameMode::Range;
            }
            Target::Census(i) => {
                s.census = Some(*i);
                s.since = None;
            }
        }
    }
}

/// A labelled link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub label: &'static str,
    pub target: Target,
}

/// The flame-graph mode in which a finding's stack holds its memory: what is left at exit for
/// leaks and for the instances a census counted, everything allocated for churn (freed at
/// once) and for the deepest stack (which may hold nothing at any one time).
fn mode_for(kind: InsightKind) -> FlameMode {
    match kind {
        InsightKind::GrowingAtExit | InsightKind::MissingSlots => FlameMode::Leaks,
        _ => FlameMode::Total,
    }
}

/// The links of one finding. `show_internal`: whether the flame graph shows internal frames
/// (the zoom path leaves out the frames the tree leaves out).
pub fn links(rec: &Recording, insight: &Insight, show_internal: bool) -> Vec<Link> {
    let mut out = Vec::new();
    if let Some(stack) = insight.stack {
        let zoom = stack_path(rec, stack, !show_internal)
            .into_iter()
            .map(|(function, file)| ZoomStep { function, file })
            .collect();
        let mode = mode_for(insight.kind);
        out.push(Link { label: "Show in flame graph", target: Target::Flame { mode, zoom } });
    }
    match insight.kind {
        InsightKind::UnboundedCache => {
            // Frames are named by qualname; the subject is `module.qualname`.
            if let Some(function) = insight.subject.as_deref().and_then(|s| s.rsplit('.').next()) {
                out.push(Link {
                    label: "Find the function in the flame graph",
                    target: Target::Search(function.to_owned()),
                });
            }
        }
        InsightKind::MissingSlots => {
            if let Some(i) = last_census_index(rec) {
                out.push(Link { label: "Show in objects", target: Target::Census(i as u32) });
            }
        }
        _ => {}
    }
    if let Some((a, b)) = insight.span_ns {
        out.push(Link { label: "Select on timeline", target: Target::Range(a, b.max(a + 1)) });
    }
    out
}

/// The message without its leading `kind: ` (the panel shows the kind as a badge), with a
/// capital first letter when it starts with a plain word (not a name like `app.f`).
pub fn message_body(message: &str) -> String {
    let body = message.split_once(": ").map_or(message, |(_, rest)| rest);
    let first_word = body.split(' ').next().unwrap_or("");
    if !first_word.is_empty() && first_word.bytes().all(|b| b.is_ascii_lowercase()) {
        return body[..1].to_uppercase() + &body[1..];
    }
    body.to_owned()
}

/// The badge of a kind.
pub fn kind_label(kind: InsightKind) -> &'static str {
    match kind {
        InsightKind::GrowingAtExit => "Probable leak",
        InsightKind::UnboundedCache => "Unbounded cache",
        InsightKind::MissingSlots => "__slots__",
        InsightKind::TemporaryChurn => "Churn",
        InsightKind::UncollectableCycles => "Uncollectable",
        InsightKind::GcTime => "GC time",
        InsightKind::DeepRecursion => "Deep recursion",
        _ => "Finding",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{
        census_trigger, Census, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    /// `<module>` -> `_find` (import system) -> `build (app.py:7)`, and two censuses.
    fn recording() -> (Recording, StackId) {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let mut s = StackId::ROOT;
        for (function, file) in [
            ("<module>", "app.py"),
            ("_find", "<frozen importlib._bootstrap>"),
            ("build", "app.py"),
        ] {
            let f = w.intern_frame(function, file, 7);
            s = w.intern_stack(s, f);
        }
        for t in [10, 20] {
            w.census(Census { time_ns: t, trigger: census_trigger::MARK, ..Default::default() });
        }
        let bytes = w.finish(ProcessEnd { time_ns: 30, exit_code: Some(0), signal: None }).unwrap();
        (Recording::open(&bytes).unwrap(), s)
    }

    fn insight(kind: InsightKind, stack: Option<StackId>) -> Insight {
        Insight {
            kind,
            message: "kind: the evidence".into(),
            bytes: 0,
            stack,
            subject: Some("app.Cache.lookup".into()),
            span_ns: None,
        }
    }

    #[test]
    fn a_finding_with_a_stack_zooms_the_flame_graph_in_the_mode_that_holds_it() {
        let (rec, s) = recording();
        let step =
            |function: &str, file: &str| ZoomStep { function: function.into(), file: file.into() };
        let got = links(&rec, &insight(InsightKind::GrowingAtExit, Some(s)), false);
        assert_eq!(
            got,
            [Link {
                label: "Show in flame graph",
                target: Target::Flame {
                    mode: FlameMode::Leaks,
                    zoom: vec![step("<module>", "app.py"), step("build", "app.py")]
                }
            }]
        );
        let churn = links(&rec, &insight(InsightKind::TemporaryChurn, Some(s)), true);
        let Target::Flame { mode, zoom } = &churn[0].target else { panic!("{churn:?}") };
        assert_eq!((*mode, zoom.len()), (FlameMode::Total, 3));
        // __slots__ also opens the objects panel at the last census.
        let slots = links(&rec, &insight(InsightKind::MissingSlots, Some(s)), false);
        assert_eq!(slots[1].target, Target::Census(1));
    }

    #[test]
    fn caches_search_for_their_function_and_gc_findings_select_their_time() {
        let (rec, _) = recording();
        let cache = links(&rec, &insight(InsightKind::UnboundedCache, None), false);
        assert_eq!(cache[0].target, Target::Search("lookup".into()));
        let gc = Insight { span_ns: Some((5, 5)), ..insight(InsightKind::GcTime, None) };
        let gc = links(&rec, &gc, false);
        assert_eq!(gc[0].target, Target::Range(5, 6));
        let mut state = ViewState::default();
        gc[0].target.apply(&mut state);
        assert_eq!((state.range, state.mode), (Some((5, 6)), FlameMode::Range));
        assert_eq!(panel_of(&gc[0].target), "timeline-panel");
    }

    #[test]
    fn messages_lose_their_kind_prefix() {
        assert_eq!(message_body("unbounded cache: app.f is an lru_cache"), "app.f is an lru_cache");
        assert_eq!(message_body("probable leak: memory grew"), "Memory grew");
        assert_eq!(message_body("__slots__: 2,000 instances"), "2,000 instances");
        assert_eq!(message_body("no prefix"), "No prefix");
    }
}
