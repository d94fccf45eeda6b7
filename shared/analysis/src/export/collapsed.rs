//! Collapsed stacks, the input of flamegraph.pl and inferno: one line per stack, frames root
//! first separated by `;`, then a space and the weight (bytes). Frames are written as py-spy
//! writes Python frames, `function (file:line)`, which inferno's Python palette colours.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{export_frames, frame_parts, NO_PYTHON_FRAME};
use crate::{Recording, StackTotals};

/// One frame as the format takes it: `;` separates frames and a line ends a stack, so they
/// and other control characters are replaced in names.
fn frame_text(function: &str, file: &str, line: u32) -> String {
    let text =
        if file.is_empty() { function.to_owned() } else { format!("{function} ({file}:{line})") };
    text.chars().map(|c| if c == ';' || c.is_control() { '?' } else { c }).collect()
}

/// Writes `totals` as collapsed stacks, one line per distinct stack, sorted (the order
/// flamegraph.pl expects); stacks that differ only in memlens's own frames are merged.
///
/// ```
/// # use memlens_format::*;
/// # use memlens_analysis::*;
/// # let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
/// # w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
/// # let main = w.intern_frame("main", "app.py", 3);
/// # let load = w.intern_frame("load", "app.py", 10);
/// # let s = w.intern_stack(StackId::ROOT, main);
/// # let s = w.intern_stack(s, load);
/// # w.alloc(1_000, ThreadId(0), s, 0x10, 4096, AllocatorKind::Malloc).unwrap();
/// # let rec = Recording::open(&w.finish(ProcessEnd::default()).unwrap()).unwrap();
/// let peak = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
/// let mut out = Vec::new();
/// write_collapsed(&rec, &peak, &mut out).unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(), "main (app.py:3);load (app.py:10) 4096\n");
/// ```
pub fn write_collapsed<W: Write>(
    rec: &Recording,
    totals: &StackTotals,
    out: &mut W,
) -> io::Result<()> {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for &(stack, t) in totals.stacks.iter().filter(|(_, t)| t.bytes > 0) {
        let path = export_frames(rec, stack);
        let key = if path.is_empty() {
            NO_PYTHON_FRAME.to_owned()
        } else {
            let frames: Vec<String> = path
                .iter()
                .map(|&f| {
                    let (function, file, line) = frame_parts(rec, f);
                    frame_text(function, file, line)
                })
                .collect();
            frames.join(";")
        };
        let w = lines.entry(key).or_default();
        *w = w.saturating_add(t.bytes);
    }
    for (stack, bytes) in lines {
        writeln!(out, "{stack} {bytes}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_line_breaks_in_names_cannot_split_a_stack() {
        assert_eq!(frame_text("f;g", "a\nb.py", 3), "f?g (a?b.py:3)");
        assert_eq!(frame_text("<no Python frame>", "", 0), "<no Python frame>");
    }
}
