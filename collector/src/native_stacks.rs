//! Native stacks in the recorder (`memlens run --native-stacks`): the tracer's prefix tree
//! of return addresses and its module map, named by the [`Symbolizer`] and spliced under
//! the Python stack of each allocation.
//!
//! The merge: the tracer walks each allocation's native stack from the allocator up to the
//! first frame of CPython's evaluation loop (`_PyEval_EvalFrameDefault`), the frame that
//! runs the innermost Python function. So the native frames go right under the innermost
//! Python frame (the Python line that made the call), and the frames of the interpreter
//! and the C library are left out: the call machinery between that line and the C code
//! (`_PyObject_Vectorcall`, `cfunction_call`, ...), the C API it calls (`PyObject_Malloc`,
//! `PyList_New`, ...), `malloc` itself. A stack reads `script.py:12` → `ext.c:40
//! make_buffer` → `ext.c:21 fill` (inlined); an allocation made by the interpreter itself
//! gets no native frame, so pure-Python stacks are what they are without the flag. (Kept,
//! the interpreter's frames would also be taken for the program's own code by the views,
//! which look for the innermost frame outside the standard library and site-packages, and
//! libpython's source files are neither.)
//!
//! Each node's frames are worked out once (its whole chain), and each (Python stack, node)
//! pair is interned once.

use std::rc::Rc;

use memlens_format::{Frame, FrameId, RecordingWriter, StackId};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::symbolizer::{short_name, Module, Symbolizer};

/// The evaluation loop's name: the tracer stops its walk there.
const EVAL_LOOP: &str = "_PyEval_EvalFrameDefault";

/// Native stacks of one traced process.
#[derive(Default)]
pub struct NativeStacks {
    /// By start address.
    modules: Vec<Module>,
    /// Node id -> (parent node, return address).
    nodes: HashMap<u32, (u32, u64)>,
    /// Node id -> its frames to splice, outermost first.
    frames: HashMap<u32, Rc<[FrameId]>>,
    merged: HashMap<(StackId, u32), StackId>,
    /// Frames the recording was told are native.
    native_frames: HashSet<FrameId>,
    symbolizer: Symbolizer,
}

/// Chains longer than this are corrupt (the tracer walks at most 128 frames).
const MAX_CHAIN: usize = 1024;

impl NativeStacks {
    /// A module of the traced process, which the recording's module map gets too.
    pub fn add_module<W: std::io::Write>(&mut self, writer: &mut RecordingWriter<W>, m: Module) {
        let at = self.modules.partition_point(|k| k.start < m.start);
        if self.modules.get(at) == Some(&m) {
            return;
        }
        writer.native_module(m.clone());
        self.modules.insert(at, m);
    }

    pub fn add_node(&mut self, id: u32, parent: u32, address: u64) {
        self.nodes.insert(id, (parent, address));
    }

    fn module_of(&self, address: u64) -> Option<&Module> {
        let at = self.modules.partition_point(|m| m.start <= address);
        self.modules[..at].iter().rev().find(|m| m.start <= address && address < m.end)
    }

    /// Whether `m` is the interpreter (the python executable or libpython) or the C
    /// library: code whose frames are left out of native stacks.
    fn runtime(m: Option<&Module>) -> bool {
        let Some(m) = m else { return false };
        let name = short_name(m);
        name.starts_with("libpython")
            || name.starts_with("python")
            || name.starts_with("libc.so")
            || name.starts_with("ld-linux")
    }

    /// The stack of an allocation made at the Python stack `python` with the native stack
    /// `node`.
    pub fn merge<W: std::io::Write>(
        &mut self,
        writer: &mut RecordingWriter<W>,
        python: StackId,
        node: u32,
    ) -> StackId {
        if let Some(&s) = self.merged.get(&(python, node)) {
            return s;
        }
        let frames = match self.frames.get(&node) {
            Some(f) => f.clone(),
            None => {
                let f: Rc<[FrameId]> = self.node_frames(writer, node).into();
                self.frames.insert(node, f.clone());
                f
            }
        };
        let stack = frames.iter().fold(python, |s, &f| writer.intern_stack(s, f));
        self.merged.insert((python, node), stack);
        stack
    }

    /// The frames to splice for `node`, outermost first.
    fn node_frames<W: std::io::Write>(
        &mut self,
        writer: &mut RecordingWriter<W>,
        node: u32,
    ) -> Vec<FrameId> {
        // Innermost first, as the tracer walked them.
        let mut chain = Vec::new();
        let mut at = node;
        while let Some(&(parent, address)) = self.nodes.get(&at) {
            if chain.len() == MAX_CHAIN {
                break;
            }
            chain.push(address);
            at = parent;
        }
        let mut calls = Vec::with_capacity(chain.len());
        for &address in &chain {
            let module = self.module_of(address).cloned();
            let symbols = self.symbolizer.symbolize(module.as_ref(), address);
            if symbols.first().is_some_and(|s| s.function == EVAL_LOOP) {
                break;
            }
            if !Self::runtime(module.as_ref()) {
                calls.push(symbols.to_vec());
            }
        }
        let mut out = Vec::new();
        for symbols in calls.iter().rev() {
            for s in symbols {
                let function = writer.intern_string(&s.function);
                let file = writer.intern_string(&s.file);
                let frame = writer.intern_frame_ids(Frame { function, file, line: s.line });
                if self.native_frames.insert(frame) {
                    writer.native_frame(frame);
                }
                out.push(frame);
            }
        }
        out
    }
}
