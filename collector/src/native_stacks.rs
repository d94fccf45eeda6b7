//! Native stacks in the recorder (`memlens run --native-stacks`): the tracer's prefix tree
//! of return addresses and its module map, named by the [`Symbolizer`] and spliced under
//! the Python stack of each allocation.
//!
//! The merge: the tracer walks each allocation's native stack from the allocator up to the
//! first frame of CPython's evaluation loop (`_PyEval_EvalFrameDefault`), the frame that
//! runs the innermost Python function. So the native frames go right under the innermost
//! Python frame (the Python line that made the call). The frames of the interpreter and the
//! C library among them — the call machinery between that line and the C code
//! (`_PyObject_Vectorcall`, `cfunction_call`, ...), the C API it calls (`PyObject_Malloc`,
//! `PyList_New`, ...) — are kept and marked as the runtime's (the Native chunk): views hide
//! them with the import system's frames unless asked to show CPython's internals, so a stack
//! reads `script.py:12` → `ext.c:40 make_buffer` → `ext.c:21 fill` (inlined). An allocation
//! made by the interpreter itself has only runtime frames, so pure-Python stacks read as
//! they do without the flag.
//!
//! A callback (C code calling back into Python, which calls C again) shows the inner C
//! frames under the callback's Python line; the outer C frames between the first Python
//! line and the callback are not shown (the walk stops at the innermost evaluation loop).
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
    /// library: code whose frames are marked as the runtime's.
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
            calls.push((symbols.to_vec(), Self::runtime(module.as_ref())));
        }
        let mut out = Vec::new();
        for (symbols, runtime) in calls.iter().rev() {
            for s in symbols {
                let function = writer.intern_string(&s.function);
                let file = writer.intern_string(&s.file);
                let frame = writer.intern_frame_ids(Frame { function, file, line: s.line });
                if self.native_frames.insert(frame) {
                    writer.native_frame(frame, *runtime);
                }
                out.push(frame);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{Meta, Recording, WriterOptions};

    fn module(path: &str, start: u64) -> Module {
        Module { path: path.into(), build_id: Vec::new(), bias: start, start, end: start + 0x1000 }
    }

    /// Interpreter and C library frames are kept and marked as the runtime's wherever they
    /// are; all go, outermost first, under the Python stack; addresses in no module are
    /// `[unknown]`.
    #[test]
    fn runtime_frames_are_marked_and_all_go_under_the_python_stack() {
        let mut w =
            RecordingWriter::with_options(Vec::new(), &Meta::default(), WriterOptions::default())
                .unwrap();
        let line = w.intern_frame("run", "app.py", 7);
        let python = w.intern_stack(StackId::ROOT, line);
        let mut n = NativeStacks::default();
        n.add_module(&mut w, module("/opt/lib/libpython3.11.so.1.0", 0x10_000));
        n.add_module(&mut w, module("/opt/ext/ext.so", 0x20_000));
        n.add_module(&mut w, module("/lib/x86_64-linux-gnu/libc.so.6", 0x30_000));
        // Outermost first: the call machinery, the extension, the C API, the extension again
        // (through a callback), libc, then an address in no module (JIT code).
        let chain = [0x10_100, 0x20_100, 0x10_200, 0x20_200, 0x30_100, 0x90_000];
        for (i, &address) in chain.iter().enumerate() {
            n.add_node(i as u32 + 1, i as u32, address);
        }
        let stack = n.merge(&mut w, python, chain.len() as u32);
        assert_eq!(n.merge(&mut w, python, chain.len() as u32), stack, "interned once");
        let bytes = w.finish(memlens_format::ProcessEnd::default()).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        let names: Vec<(String, bool, bool)> = rec
            .stack_frames(stack)
            .map(|f| {
                let name = rec.string(rec.frame(f).unwrap().function).to_owned();
                (name, rec.is_native_frame(f), rec.is_runtime_frame(f))
            })
            .collect();
        let want = [
            ("[unknown]", true, false),
            ("libc.so.6+0x100", true, true),
            ("ext.so+0x200", true, false),
            ("libpython3.11.so.1.0+0x200", true, true),
            ("ext.so+0x100", true, false),
            ("libpython3.11.so.1.0+0x100", true, true),
            ("run", false, false),
        ];
        assert_eq!(names, want.map(|(f, native, runtime)| (f.to_owned(), native, runtime)));
        assert_eq!(rec.native_modules().len(), 3);
    }
}
