//! Native frames (`memlens run --native-stacks`): which frames of the frame table are C, C++
//! or Rust functions rather than Python ones, and the modules (executable, shared libraries)
//! of the traced process they were found in.
//!
//! Native frames are ordinary frames (function, file, line) in ordinary stacks, below the
//! Python frame that called into native code, already named by the collector: a reader that
//! does not know the Native chunk (tag 20) shows them as any other frame. The chunk only
//! says which frames they are (for a viewer's colour and its toggle to hide them), which of
//! them are the interpreter's or the C library's own (CPython's internals, hidden with the
//! import system's frames; format 7), and keeps the module map, so that a frame shown as
//! `module+0xoffset` can be looked up later.

use serde::{Deserialize, Serialize};

use crate::FrameId;

/// A module of the traced process: a file mapped at `[start, end)`, whose addresses are
/// shifted by `bias` there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NativeModule {
    /// The file's path.
    pub path: String,
    /// Its GNU build id (the `NT_GNU_BUILD_ID` note), empty if it has none.
    pub build_id: Vec<u8>,
    /// Where the file's address 0 is (the load bias).
    pub bias: u64,
    /// Lowest address of its loaded segments.
    pub start: u64,
    /// End of its loaded segments.
    pub end: u64,
}

/// The payload of a Native chunk: modules and native frames first seen since the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NativeChunk {
    /// Modules native frames were found in.
    pub modules: Vec<NativeModule>,
    /// Frames (defined by earlier Frames chunks) that are native functions.
    pub frames: Vec<FrameId>,
    /// Those of `frames` in the interpreter (the python executable, libpython) or the C
    /// library (format 7).
    pub runtime: Vec<FrameId>,
}

/// The payload of a Native chunk before format 7 (no runtime frames: the collector left
/// them out of the stacks).
#[derive(Deserialize)]
struct NativeChunkV6 {
    modules: Vec<NativeModule>,
    frames: Vec<FrameId>,
}

/// The first format whose Native chunks list runtime frames.
const RUNTIME_FRAMES_VERSION: u16 = 7;

impl NativeChunk {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty() && self.frames.is_empty()
    }
}

/// What a reader keeps of the Native chunks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NativeTable {
    pub modules: Vec<NativeModule>,
    /// By frame index: whether the frame is native.
    pub native: Vec<bool>,
    /// By frame index: whether the frame is the interpreter's or the C library's.
    pub runtime: Vec<bool>,
}

impl NativeTable {
    /// Adds a chunk's payload from a file of format `version`; `frames` is the number of
    /// frames defined so far.
    pub fn add(&mut self, raw: &[u8], frames: usize, version: u16) -> Result<(), String> {
        let chunk: NativeChunk = if version < RUNTIME_FRAMES_VERSION {
            let old: NativeChunkV6 = postcard::from_bytes(raw).map_err(|e| e.to_string())?;
            NativeChunk { modules: old.modules, frames: old.frames, runtime: Vec::new() }
        } else {
            postcard::from_bytes(raw).map_err(|e| e.to_string())?
        };
        if chunk.frames.iter().chain(&chunk.runtime).any(|f| f.index() >= frames) {
            return Err("an undefined frame".into());
        }
        if chunk.modules.iter().any(|m| m.start > m.end) {
            return Err("a module that ends before it starts".into());
        }
        for (list, marks) in
            [(&chunk.frames, &mut self.native), (&chunk.runtime, &mut self.runtime)]
        {
            for f in list {
                if marks.len() <= f.index() {
                    marks.resize(f.index() + 1, false);
                }
                marks[f.index()] = true;
            }
        }
        self.modules.extend(chunk.modules);
        Ok(())
    }

    pub fn is_native(&self, frame: FrameId) -> bool {
        self.native.get(frame.index()).copied().unwrap_or(false)
    }

    pub fn is_runtime(&self, frame: FrameId) -> bool {
        self.runtime.get(frame.index()).copied().unwrap_or(false)
    }
}
