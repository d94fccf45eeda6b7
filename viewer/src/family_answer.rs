//! The worker's answers about the processes of a recording (format 5: the program and the
//! descendants it started, each a recording of its own in the same file): the list the
//! process picker shows, each process's recording, and all of them together (their heaps on
//! one time axis, one flame tree with the process as its root frame). Each descendant's
//! recording is read through the file's source, so only what a view needs is read. Pure;
//! tested natively on files whose children's streams `RecordingWriter` wrote into them.

use memlens_analysis::{
    descendants, ended_at, family_end, family_heap, family_peak, family_stack_totals, how_it_ended,
    started_at, FamilyFlame, Process, Snapshot,
};
use memlens_format::Recording;

use crate::answer::MAX_BUCKETS;
use crate::protocol::{Answer, FamilySeries, ProcessInfo, Request};

/// What one process of the picker's list says.
pub fn info(number: u32, rec: &Recording) -> ProcessInfo {
    let (meta, s) = (rec.meta(), rec.summary());
    ProcessInfo {
        number,
        pid: meta.pid,
        ppid: meta.ppid(),
        command_line: meta.command_line.clone(),
        started_ns: started_at(rec),
        ended_ns: ended_at(rec),
        peak_heap: s.peak_heap,
        peak_heap_time_ns: s.peak_heap_time_ns,
        alloc_count: s.alloc_count,
        alloc_bytes: s.alloc_bytes,
        ended: how_it_ended(rec),
    }
}

/// The descendants of an open file, opened on first use, and what is worked out about all
/// processes together (kept: the file does not change while they are).
pub struct Family {
    members: Vec<Process>,
    flame: Option<FamilyFlame>,
    /// The highest total over the whole run: (bytes, time).
    peak: Option<(u64, u64)>,
}

impl Family {
    /// The descendants of `own` (the file's own recording, the program's).
    pub fn open(own: &Recording) -> Family {
        Family { members: descendants(own), flame: None, peak: None }
    }

    /// The recording of process `number` (not 0: that is the file's own).
    pub fn member(&self, number: u32) -> Option<&Recording> {
        self.members.iter().find(|p| p.number == number).map(|p| &p.rec)
    }

    /// Every process, the program first.
    fn recs<'a>(&'a self, own: &'a Recording) -> Vec<&'a Recording> {
        std::iter::once(own).chain(self.members.iter().map(|p| &p.rec)).collect()
    }

    /// The picker's list: the program, then its descendants in the order they started.
    pub fn list(&self, own: &Recording) -> Vec<ProcessInfo> {
        let rest = self.members.iter().map(|p| info(p.number, &p.rec));
        std::iter::once(info(0, own)).chain(rest).collect()
    }

    /// The merged tables of all processes (the directory of the "all processes" views).
    pub fn flame(&mut self, own: &Recording) -> Result<&FamilyFlame, String> {
        if self.flame.is_none() {
            let built = FamilyFlame::build(&self.recs(own));
            self.flame = Some(built.map_err(|e| format!("Could not merge the processes: {e}"))?);
        }
        Ok(self.flame.as_ref().expect("built above"))
    }

    /// The highest total of all processes over the whole run.
    fn peak(&mut self, own: &Recording) -> Result<(u64, u64), String> {
        if let Some(p) = self.peak {
            return Ok(p);
        }
        let recs = self.recs(own);
        let end = family_end(&recs).saturating_add(1);
        let peak =
            family_peak(&recs, 0, end).map_err(|e| format!("Could not find the peak: {e}"))?;
        self.peak = Some(peak);
        Ok(peak)
    }

    /// Answers `request` about all processes together.
    pub fn answer_all(&mut self, own: &Recording, request: &Request) -> Result<Answer, String> {
        match *request {
            Request::Totals { snapshot, .. } => {
                // The peak of all is worked out once, not for every question about it: then
                // each process at its highest point within the peak's instant, what the peak
                // adds up (family_stack_totals).
                let snapshot = match snapshot {
                    Snapshot::AtPeak if !self.members.is_empty() => {
                        let at = self.peak(own)?.1;
                        Snapshot::PeakInRange(at, at)
                    }
                    other => other,
                };
                let recs = self.recs(own);
                let per = family_stack_totals(&recs, snapshot)
                    .map_err(|e| format!("Could not compute the flame graph: {e}"))?;
                Ok(Answer::Totals(self.flame(own)?.totals(&per)))
            }
            Request::FamilyTimeline { t0, t1, buckets, .. } => {
                let recs = self.recs(own);
                let n = buckets.clamp(1, MAX_BUCKETS) as usize;
                let t1 = t1.max(t0 + 1);
                let heaps = family_heap(&recs, t0, t1, n)
                    .map_err(|e| format!("Could not compute the heap timeline: {e}"))?;
                let whole = t0 == 0 && t1 > family_end(&recs);
                let peak = if whole {
                    self.peak(own)?
                } else {
                    family_peak(&recs, t0, t1)
                        .map_err(|e| format!("Could not find the peak: {e}"))?
                };
                Ok(Answer::Family(FamilySeries { heaps, peak }))
            }
            Request::PeakIn { t0, t1, .. } => {
                let recs = self.recs(own);
                let (bytes, time_ns) = family_peak(&recs, t0, t1.saturating_add(1))
                    .map_err(|e| format!("Could not find the peak of the range: {e}"))?;
                Ok(Answer::Peak { bytes, time_ns })
            }
            _ => Err("This question has no answer for all processes together.".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use memlens_analysis::{FlameOptions, FlameTree};
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    use super::*;

    const MS: u64 = 1_000_000;
    const MIB: u64 = 1 << 20;

    /// The metadata of process `pid` (a child of `ppid`) run as `command_line`.
    fn meta(pid: u32, ppid: Option<u32>, command_line: &[&str]) -> Meta {
        let mut meta = Meta {
            pid,
            command_line: command_line.iter().map(|&a| a.into()).collect(),
            ..Meta::default()
        };
        if let Some(ppid) = ppid {
            meta.extra.push(("ppid".into(), ppid.to_string()));
        }
        meta
    }

    /// A writer of `meta`'s recording with its main thread and the stack of one frame
    /// (`function` at family.py:`line`).
    fn writer(meta: &Meta, function: &str, line: u32) -> (RecordingWriter<Vec<u8>>, StackId) {
        let mut w = RecordingWriter::new(Vec::new(), meta).unwrap();
        let os_tid = meta.pid.into();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid, name: "MainThread".into() });
        let f = w.intern_frame(function, "family.py", line);
        let s = w.intern_stack(StackId::ROOT, f);
        (w, s)
    }

    /// A process of `pid` (child of `ppid`) that allocates `mib` MiB at `function` at `at`
    /// ms and ends at `end` ms.
    fn process(
        pid: u32,
        ppid: Option<u32>,
        function: &str,
        mib: u64,
        at: u64,
        end: u64,
    ) -> Vec<u8> {
        let (mut w, s) = writer(&meta(pid, ppid, &["python3", "-c", function]), function, 16);
        w.alloc(at * MS, ThreadId(0), s, 0x10, mib * MIB, AllocatorKind::Malloc).unwrap();
        w.flush().unwrap();
        let signal = (function == "killed").then_some(9);
        let end =
            ProcessEnd { time_ns: end * MS, exit_code: signal.is_none().then_some(0), signal };
        w.finish(end).unwrap()
    }

    /// The program (2 MiB at `main`, 0-100 ms) with two children: a worker (4 MiB at `build`,
    /// 10-50 ms) and one killed by signal 9 (3 MiB at `killed`, 30-60 ms).
    fn family() -> Recording {
        let children =
            [process(11, Some(10), "build", 4, 10, 50), process(12, Some(10), "killed", 3, 30, 60)];
        let (mut w, s) = writer(&meta(10, None, &["python3", "family.py"]), "main", 50);
        w.alloc(0, ThreadId(0), s, 0x10, 2 * MIB, AllocatorKind::Malloc).unwrap();
        for (i, child) in children.iter().enumerate() {
            w.substream(i as u32 + 1, child).unwrap();
        }
        let end = ProcessEnd { time_ns: 100 * MS, exit_code: Some(0), signal: None };
        Recording::from_vec(w.finish(end).unwrap()).unwrap()
    }

    #[test]
    fn the_picker_lists_every_process_and_how_it_ended() {
        let own = family();
        let list = Family::open(&own).list(&own);
        let rows: Vec<_> = list
            .iter()
            .map(|p| (p.number, p.pid, p.ppid, p.peak_heap / MIB, p.ended.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (0, 10, None, 2, "exited with code 0"),
                (1, 11, Some(10), 4, "exited with code 0"),
                (2, 12, Some(10), 3, "killed by signal 9"),
            ]
        );
        assert_eq!((list[1].started_ns, list[1].ended_ns), (10 * MS, 50 * MS));
        assert_eq!(list[2].command_line, ["python3", "-c", "killed"]);
    }

    #[test]
    fn all_processes_answer_as_one() {
        let own = family();
        let mut family = Family::open(&own);
        assert_eq!(family.member(1).map(|r| r.meta().pid), Some(11));
        assert!(family.member(3).is_none());
        let request = Request::FamilyTimeline { rec: 1, t0: 0, t1: 101 * MS, buckets: 101 };
        let Answer::Family(series) = family.answer_all(&own, &request).unwrap() else { panic!() };
        assert_eq!(series.heaps.len(), 3);
        assert_eq!(series.peak, (9 * MIB, 30 * MS), "all three hold their memory at 30 ms");
        assert_eq!(series.heaps[1][55].max, 0, "the worker ended at 50 ms");
        // The flame graph at the peak of all: each process a root frame.
        let totals = |family: &mut Family, snapshot| {
            let request = Request::Totals { rec: 1, snapshot, thread: None };
            match family.answer_all(&own, &request).unwrap() {
                Answer::Totals(t) => t,
                other => panic!("{other:?}"),
            }
        };
        let at_peak = totals(&mut family, Snapshot::AtPeak);
        assert_eq!(at_peak.total.bytes, 9 * MIB);
        let flame = family.flame(&own).unwrap();
        let tree = FlameTree::build(&flame.rec, &at_peak, &FlameOptions::default());
        let rec = &flame.rec;
        let roots: Vec<&str> = tree.nodes[0]
            .children
            .iter()
            .map(|&c| {
                rec.string(rec.frame(tree.nodes[c as usize].frame.unwrap()).unwrap().function)
            })
            .collect();
        assert_eq!(
            roots,
            ["pid 11: python3 -c build", "pid 12: python3 -c killed", "pid 10: python3 family.py"]
        );
        // After the worker ended, at the highest point of 55-90 ms: the program and the killed child.
        let later = totals(&mut family, Snapshot::PeakInRange(55 * MS, 90 * MS));
        assert_eq!(later.total.bytes, 5 * MIB);
        let peak = family.answer_all(&own, &Request::PeakIn { rec: 1, t0: 61 * MS, t1: 90 * MS });
        assert_eq!(peak.unwrap(), Answer::Peak { bytes: 2 * MIB, time_ns: 61 * MS });
        assert!(family.answer_all(&own, &Request::Insights { rec: 1 }).is_err());
    }

    /// A child frees its 8 MiB in the very microsecond the program allocates 1 MiB more: that
    /// instant is the peak of all (10 MiB), and the flame graph at the peak adds up to it, the
    /// child's block included (it was missing when the processes were taken after the
    /// instant's events).
    #[test]
    fn the_flame_graph_at_the_peak_of_all_adds_up_to_it() {
        let command_line = ["python3", "family.py"];
        let (mut c, s) = writer(&meta(11, Some(10), &command_line), "hold", 9);
        c.alloc(2 * MS, ThreadId(0), s, 0x10, 8 * MIB, AllocatorKind::Malloc).unwrap();
        c.free(5 * MS, ThreadId(0), 0x10, AllocatorKind::Malloc).unwrap();
        c.flush().unwrap();
        let child =
            c.finish(ProcessEnd { time_ns: 6 * MS, exit_code: Some(0), signal: None }).unwrap();
        let (mut w, s) = writer(&meta(10, None, &command_line), "main", 20);
        w.alloc(MS, ThreadId(0), s, 0x10, MIB, AllocatorKind::Malloc).unwrap();
        w.alloc(5 * MS, ThreadId(0), s, 0x20, MIB, AllocatorKind::Malloc).unwrap();
        w.substream(1, &child).unwrap();
        let end = ProcessEnd { time_ns: 10 * MS, exit_code: Some(0), signal: None };
        let own = Recording::from_vec(w.finish(end).unwrap()).unwrap();
        let mut family = Family::open(&own);
        let request = Request::FamilyTimeline { rec: 1, t0: 0, t1: 11 * MS, buckets: 11 };
        let Answer::Family(series) = family.answer_all(&own, &request).unwrap() else { panic!() };
        assert_eq!(series.peak, (10 * MIB, 5 * MS));
        let request = Request::Totals { rec: 1, snapshot: Snapshot::AtPeak, thread: None };
        let Answer::Totals(at_peak) = family.answer_all(&own, &request).unwrap() else { panic!() };
        assert_eq!(at_peak.total.bytes, 10 * MIB);
    }
}
