//! The memory of several processes as one call tree, the process as its root frame
//! ("pid 1234: python3 -c ..."): what the viewer's flame graph of all processes shows, and
//! what an export of all processes writes.
//!
//! [`FamilyFlame`] merges the processes' frame and stack tables into the tables of one
//! recording (no events), each process's stacks under a frame of its own; its
//! [`FamilyFlame::totals`] turns each process's memory by stack into memory by merged stack.
//! So everything that reads a [`Recording`] and a [`StackTotals`] (the flame tree, call sites,
//! the exports) reads all processes at once without knowing there are several.
//!
//! ```
//! use memlens_analysis::*;
//! use memlens_format::*;
//! let child = |pid: u32, function: &str, bytes: u64| {
//!     let meta = Meta { pid, command_line: vec!["python3".into(), "job.py".into()], ..Meta::default() };
//!     let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
//!     w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: pid.into(), name: "MainThread".into() });
//!     let f = w.intern_frame(function, "job.py", 3);
//!     let s = w.intern_stack(StackId::ROOT, f);
//!     w.alloc(1_000, ThreadId(0), s, 0x10, bytes, AllocatorKind::Malloc).unwrap();
//!     Recording::from_vec(w.finish(ProcessEnd { time_ns: 2_000, ..ProcessEnd::default() }).unwrap()).unwrap()
//! };
//! let (a, b) = (child(10, "load", 300), child(11, "load", 500));
//! let recs = [&a, &b];
//! let flame = FamilyFlame::build(&recs).unwrap();
//! let totals = flame.totals(&family_stack_totals(&recs, Snapshot::TotalAllocated).unwrap());
//! let mut out = Vec::new();
//! write_collapsed(&flame.rec, &totals, &mut out).unwrap();
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "pid 10: python3 job.py;load (job.py:3) 300\npid 11: python3 job.py;load (job.py:3) 500\n"
//! );
//! ```

use memlens_format::{Codec, Meta, ProcessEnd, RecordingWriter, WriterOptions};
use rustc_hash::FxHashMap;

use crate::{
    family_end, family_peak, heap_ended_at, stack_totals, Error, EventFilter, Recording, Snapshot,
    StackId, StackTotals,
};

/// Characters of a command line a process's label keeps.
const LABEL_COMMAND_CHARS: usize = 60;

/// A command line in one line of at most `max` characters: the program's file name without
/// its folder, then the arguments, white space folded to single spaces, cut with `…`.
pub fn short_command(command_line: &[String], max: usize) -> String {
    let mut args = command_line.iter();
    let program = args.next().map(|p| p.rsplit('/').next().unwrap_or(p));
    let line = program.into_iter().chain(args.map(String::as_str)).collect::<Vec<_>>().join(" ");
    let words: Vec<&str> = line.split_whitespace().collect();
    let line = words.join(" ");
    if line.chars().count() <= max {
        return line;
    }
    line.chars().take(max.saturating_sub(1)).chain(std::iter::once('…')).collect()
}

/// The root frame of a process in a tree of all processes: "pid 1234: python3 -c ...".
pub fn process_label(meta: &Meta) -> String {
    let command = short_command(&meta.command_line, LABEL_COMMAND_CHARS);
    if command.is_empty() {
        format!("pid {}", meta.pid)
    } else {
        format!("pid {}: {command}", meta.pid)
    }
}

/// The frame and stack tables of several processes merged into one recording's, each
/// process's stacks under its own root frame ([`process_label`]).
pub struct FamilyFlame {
    /// The merged tables, in a recording without events: it names the frames of
    /// [`FamilyFlame::totals`]' stacks (for `FlameTree::build`, `call_sites`, exports).
    pub rec: Recording,
    /// For each process, in order: the merged stack of each of its stack ids (index 0, its
    /// empty stack, is the process's root frame).
    stacks: Vec<Vec<StackId>>,
}

impl FamilyFlame {
    /// Merges the tables of `recs` (the processes, in the order [`FamilyFlame::totals`] gets
    /// their totals). The merged recording's metadata is the first's.
    pub fn build(recs: &[&Recording]) -> Result<FamilyFlame, Error> {
        let meta = recs.first().map(|r| r.meta().clone()).unwrap_or_default();
        // Read back at once in the same process: compressing would only cost time.
        let options = WriterOptions { codec: Codec::None, ..WriterOptions::default() };
        let mut w = RecordingWriter::with_options(Vec::new(), &meta, options)?;
        let mut stacks = Vec::with_capacity(recs.len());
        for rec in recs {
            let label = w.intern_frame(&process_label(rec.meta()), "", 0);
            let root = w.intern_stack(StackId::ROOT, label);
            let frames: Vec<_> = rec
                .frames()
                .iter()
                .map(|f| w.intern_frame(rec.string(f.function), rec.string(f.file), f.line))
                .collect();
            let mut map = Vec::with_capacity(rec.stack_count());
            map.push(root);
            for id in 1..rec.stack_count() {
                // A parent's id is below its child's (FORMAT.md, Stacks), so it is mapped.
                let merged = rec.stack(StackId(id as u32)).and_then(|node| {
                    let parent = map.get(node.parent.index()).copied().unwrap_or(root);
                    Some(w.intern_stack(parent, *frames.get(node.frame.index())?))
                });
                map.push(merged.unwrap_or(root));
            }
            stacks.push(map);
        }
        let bytes = w.finish(ProcessEnd::default())?;
        Ok(FamilyFlame { rec: Recording::from_vec(bytes)?, stacks })
    }

    /// Memory by merged stack: `per_process[i]` is the memory by stack of the `i`-th process
    /// given to [`FamilyFlame::build`]. A stack a process's table does not hold counts at its
    /// root frame.
    pub fn totals(&self, per_process: &[StackTotals]) -> StackTotals {
        let mut merged: FxHashMap<StackId, memlens_format::Totals> = FxHashMap::default();
        for (map, totals) in self.stacks.iter().zip(per_process) {
            for &(stack, t) in &totals.stacks {
                let at = map.get(stack.index()).or(map.first()).copied().unwrap_or(StackId::ROOT);
                merged.entry(at).or_default().merge(t);
            }
        }
        StackTotals::from_map(merged)
    }
}

/// Each process's memory by stack for a moment or span of all of them together, in the order
/// of `recs`:
/// - [`Snapshot::AtPeak`]: at the highest point of their total heap ([`family_peak`]), what
///   each process alive then held at its own highest point within that instant (so they add
///   up to the peak, a block freed in that microsecond included);
/// - [`Snapshot::PeakInRange`]: the same at the total's highest point within the span;
/// - [`Snapshot::AtTime`]: what each process alive then held;
/// - the others: each process's own (its leaks, everything it allocated).
///
/// A process holds nothing after it ended. One process alone is answered as it is.
pub fn family_stack_totals(
    recs: &[&Recording],
    snapshot: Snapshot,
) -> Result<Vec<StackTotals>, Error> {
    let all = EventFilter::default();
    // The instant of the total's highest point: each process at its own highest point within
    // it, which is what the total adds up (a block freed in that microsecond counts).
    let instant = |t: u64| (t, Snapshot::PeakInRange(t, t));
    let moment = match (recs, snapshot) {
        ([_], _) => None,
        (_, Snapshot::AtPeak) => {
            Some(instant(family_peak(recs, 0, family_end(recs).saturating_add(1))?.1))
        }
        (_, Snapshot::PeakInRange(a, b)) => {
            Some(instant(family_peak(recs, a, b.saturating_add(1))?.1))
        }
        (_, Snapshot::AtTime(t)) => Some((t, Snapshot::AtTime(t))),
        _ => None,
    };
    recs.iter()
        .map(|rec| match moment {
            Some((t, _)) if t > heap_ended_at(rec) => Ok(StackTotals::default()),
            Some((_, at)) => stack_totals(rec, at, &all),
            None => stack_totals(rec, snapshot, &all),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family_heap::tests::{open, process, three, MIB, MS};
    use crate::{call_sites, FlameOptions, FlameTree};

    fn names(flame: &FamilyFlame, tree: &FlameTree, node: u32) -> String {
        let rec = &flame.rec;
        let f = tree.nodes[node as usize].frame.and_then(|f| rec.frame(f)).unwrap();
        rec.string(f.function).to_owned()
    }

    #[test]
    fn each_process_is_a_root_frame_over_its_own_stacks() {
        let recs = three();
        let refs: Vec<&Recording> = recs.iter().collect();
        let flame = FamilyFlame::build(&refs).unwrap();
        let per = family_stack_totals(&refs, Snapshot::TotalAllocated).unwrap();
        let totals = flame.totals(&per);
        assert_eq!(totals.total.bytes, (2 + 5 + 1 + 4) * MIB);
        let tree = FlameTree::build(&flame.rec, &totals, &FlameOptions::default());
        let roots: Vec<(String, u64)> = tree.nodes[0]
            .children
            .iter()
            .map(|&c| (names(&flame, &tree, c), tree.nodes[c as usize].total.bytes))
            .collect();
        assert_eq!(
            roots,
            [
                ("pid 11: python3 -c a()".to_owned(), 6 * MIB),
                ("pid 12: python3 -c b()".to_owned(), 4 * MIB),
                ("pid 10: python3 -c main()".to_owned(), 2 * MIB),
            ]
        );
        // Under each process, its own frames: <module> then its function.
        let a = tree.nodes[0].children[0];
        let module = tree.nodes[a as usize].children[0];
        assert_eq!(names(&flame, &tree, module), "<module>");
        let leaf = tree.nodes[module as usize].children[0];
        assert_eq!(names(&flame, &tree, leaf), "a");
        // The same frame in several processes is one call site of all of them.
        let sites = call_sites(&flame.rec, &totals, false);
        let module_site = sites.iter().find(|s| {
            flame.rec.frame(s.frame).is_some_and(|f| flame.rec.string(f.function) == "<module>")
        });
        assert_eq!(module_site.unwrap().total.bytes, 12 * MIB);
    }

    #[test]
    fn at_the_peak_of_all_each_process_alive_then_counts() {
        let recs = three();
        let refs: Vec<&Recording> = recs.iter().collect();
        let bytes = |snapshot| -> Vec<u64> {
            let per = family_stack_totals(&refs, snapshot).unwrap();
            per.iter().map(|t| t.total.bytes / MIB).collect()
        };
        // The total peaks at 25 ms: A holds both its blocks then.
        assert_eq!(bytes(Snapshot::AtPeak), [2, 6, 4]);
        assert_eq!(bytes(Snapshot::PeakInRange(31 * MS, 59 * MS)), [2, 1, 4]);
        assert_eq!(bytes(Snapshot::AtTime(45 * MS)), [2, 0, 4], "A ended at 40 ms");
        assert_eq!(bytes(Snapshot::AtEnd), [2, 1, 4], "what each held when it ended");
        // The merged totals at the peak add up to the peak of the total.
        let flame = FamilyFlame::build(&refs).unwrap();
        let at_peak = flame.totals(&family_stack_totals(&refs, Snapshot::AtPeak).unwrap());
        let (peak, _) = family_peak(&refs, 0, 61 * MS).unwrap();
        assert_eq!(at_peak.total.bytes, peak);
        // One process alone is itself.
        let own = family_stack_totals(&refs[1..2], Snapshot::AtPeak).unwrap();
        assert_eq!(own[0].total.bytes, 6 * MIB);
    }

    /// A child frees its block in the very microsecond the program allocates more: the total
    /// is highest then (what each process held at its highest in that instant), and the
    /// processes' totals at the peak add up to it, the freed block included. Before, each was
    /// taken after the instant's events: the block was missing from the sites of the peak.
    #[test]
    fn at_the_peak_a_block_freed_in_that_instant_counts() {
        let mib = MIB as i64;
        let recs = open(&[
            process(10, "main", &[(1, mib), (5, mib)], 10),
            process(11, "a", &[(2, 8 * mib), (5, -8 * mib)], 6),
            process(12, "b", &[(3, 8 * mib), (8, -8 * mib)], 9),
        ]);
        let refs: Vec<&Recording> = recs.iter().collect();
        let bytes = |snapshot| -> Vec<u64> {
            let per = family_stack_totals(&refs, snapshot).unwrap();
            per.iter().map(|t| t.total.bytes / MIB).collect()
        };
        let (peak, at) = family_peak(&refs, 0, 11 * MS).unwrap();
        assert_eq!((peak, at), (18 * MIB, 5 * MS));
        assert_eq!(bytes(Snapshot::AtPeak), [2, 8, 8]);
        assert_eq!(bytes(Snapshot::PeakInRange(4 * MS, 6 * MS)), [2, 8, 8]);
        let flame = FamilyFlame::build(&refs).unwrap();
        let per = family_stack_totals(&refs, Snapshot::AtPeak).unwrap();
        assert_eq!(flame.totals(&per).total.bytes, peak);
        // A moment asked for is after its events, as for one process.
        assert_eq!(bytes(Snapshot::AtTime(5 * MS)), [2, 0, 8]);
    }

    #[test]
    fn labels_are_short_and_on_one_line() {
        let line = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let exec = line(&["/usr/bin/python3.11", "-c", "x = bytearray(6)  # here\n"]);
        assert_eq!(short_command(&exec, 60), "python3.11 -c x = bytearray(6) # here");
        assert_eq!(short_command(&exec, 12), "python3.11 …");
        assert_eq!(short_command(&[], 60), "");
        let meta = Meta { pid: 42, command_line: exec, ..Meta::default() };
        assert_eq!(process_label(&meta), "pid 42: python3.11 -c x = bytearray(6) # here");
        assert_eq!(process_label(&Meta { pid: 7, ..Meta::default() }), "pid 7");
    }

    #[test]
    fn stacks_missing_from_a_table_count_at_the_process() {
        let recs = open(&[process(10, "main", &[(1, 100)], 5)]);
        let flame = FamilyFlame::build(&[&recs[0]]).unwrap();
        let bogus = StackTotals::from_map(
            [(StackId(999), memlens_format::Totals { bytes: 7, count: 1 })].into_iter().collect(),
        );
        let merged = flame.totals(&[bogus]);
        let (stack, t) = merged.stacks[0];
        assert_eq!(t.bytes, 7);
        let frame = flame.rec.stack(stack).map(|n| n.frame).unwrap();
        let name = flame.rec.string(flame.rec.frame(frame).unwrap().function);
        assert_eq!(name, "pid 10: python3 -c main()");
    }
}
