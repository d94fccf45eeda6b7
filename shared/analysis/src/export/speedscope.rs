//! speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json): frames
//! shared by every profile, and one "sampled" profile per view whose samples are stacks (frame
//! indices, root first) weighted in bytes. Serialized by the caller (serde).

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{export_frames, frame_parts, NO_PYTHON_FRAME};
use crate::{FrameId, Recording, StackTotals};

/// The schema's URL, which speedscope checks to recognise its own format.
const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// A speedscope file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedscopeFile {
    /// Always [`SCHEMA`].
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    /// What the profiles share.
    pub shared: SpeedscopeShared,
    /// One per view.
    pub profiles: Vec<SpeedscopeProfile>,
    /// The file's name, shown in speedscope's title bar.
    pub name: String,
    /// The profile speedscope opens first.
    #[serde(rename = "activeProfileIndex")]
    pub active_profile_index: usize,
    /// What wrote the file.
    pub exporter: String,
}

/// The frames, indexed by the samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedscopeShared {
    /// Every frame any profile uses.
    pub frames: Vec<SpeedscopeFrame>,
}

/// A frame: function, file and line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedscopeFrame {
    /// The function's qualified name.
    pub name: String,
    /// Its source file (left out when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line executing (left out when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// A "sampled" profile: stacks and their weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedscopeProfile {
    /// Always "sampled".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The view, e.g. "live at the peak".
    pub name: String,
    /// Always "bytes".
    pub unit: &'static str,
    /// 0.
    #[serde(rename = "startValue")]
    pub start_value: u64,
    /// The sum of the weights.
    #[serde(rename = "endValue")]
    pub end_value: u64,
    /// Stacks as indices into the shared frames, root first.
    pub samples: Vec<Vec<usize>>,
    /// Bytes of each sample.
    pub weights: Vec<u64>,
}

/// The frame table being filled.
struct Frames {
    index: FxHashMap<FrameId, usize>,
    none: Option<usize>,
    frames: Vec<SpeedscopeFrame>,
}

impl Frames {
    fn of(&mut self, rec: &Recording, frame: FrameId) -> usize {
        let frames = &mut self.frames;
        *self.index.entry(frame).or_insert_with(|| {
            let (name, file, line) = frame_parts(rec, frame);
            frames.push(SpeedscopeFrame {
                name: name.to_owned(),
                file: (!file.is_empty()).then(|| file.to_owned()),
                line: (line > 0).then_some(line),
            });
            frames.len() - 1
        })
    }

    fn no_python_frame(&mut self) -> usize {
        let frames = &mut self.frames;
        *self.none.get_or_insert_with(|| {
            frames.push(SpeedscopeFrame { name: NO_PYTHON_FRAME.into(), file: None, line: None });
            frames.len() - 1
        })
    }
}

/// A speedscope file of `profiles` (name, memory by stack), opening on `active`.
///
/// ```
/// # use memlens_format::*;
/// # use memlens_analysis::*;
/// # let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
/// # w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
/// # let f = w.intern_frame("load", "app.py", 10);
/// # let s = w.intern_stack(StackId::ROOT, f);
/// # w.alloc(1_000, ThreadId(0), s, 0x10, 4096, AllocatorKind::Malloc).unwrap();
/// # let rec = Recording::open(&w.finish(ProcessEnd::default()).unwrap()).unwrap();
/// let peak = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
/// let file = speedscope(&rec, &[("live at the peak".into(), peak)], 0, "app");
/// assert_eq!(file.shared.frames[0].name, "load");
/// assert_eq!(file.profiles[0].weights, [4096]);
/// ```
pub fn speedscope(
    rec: &Recording,
    profiles: &[(String, StackTotals)],
    active: usize,
    name: &str,
) -> SpeedscopeFile {
    let mut frames = Frames { index: FxHashMap::default(), none: None, frames: Vec::new() };
    let profiles = profiles
        .iter()
        .map(|(name, totals)| {
            let (mut samples, mut weights) = (Vec::new(), Vec::new());
            for &(stack, t) in totals.stacks.iter().filter(|(_, t)| t.bytes > 0) {
                let path = export_frames(rec, stack);
                let sample = if path.is_empty() {
                    vec![frames.no_python_frame()]
                } else {
                    path.iter().map(|&f| frames.of(rec, f)).collect()
                };
                samples.push(sample);
                weights.push(t.bytes);
            }
            SpeedscopeProfile {
                kind: "sampled",
                name: name.clone(),
                unit: "bytes",
                start_value: 0,
                end_value: weights.iter().fold(0u64, |a, &w| a.saturating_add(w)),
                samples,
                weights,
            }
        })
        .collect();
    SpeedscopeFile {
        schema: SCHEMA,
        shared: SpeedscopeShared { frames: frames.frames },
        profiles,
        name: name.to_owned(),
        active_profile_index: active,
        exporter: format!("memlens {}", env!("CARGO_PKG_VERSION")),
    }
}
