//! When a process of a recording started and ended, and how it ended, in words: what the
//! summary's processes table and the viewer's process picker say about each process.
//!
//! Times are on the program's clock (ns since the program started): a descendant's recording
//! shares it (FORMAT.md, "Processes"), so a child's start is not 0.

use memlens_format::META_PPID;

use crate::{
    outlived_the_program, ran_another_program, Recording, NOT_FOLLOWED_MARKER,
    PYTHON_WITHOUT_SITE_MARKER, UNTRACED_MARKER,
};

/// Why a descendant was not traced, or not to its end, by the marker its recording has: what
/// [`how_it_ended`] adds to how it ended.
const NOT_TRACED: [(&str, &str); 3] = [
    (UNTRACED_MARKER, "not traced after it closed its connection to memlens"),
    (PYTHON_WITHOUT_SITE_MARKER, "not traced: a Python run with -E, -I or -S (memory sampled)"),
    (NOT_FOLLOWED_MARKER, "not traced: started without memlens's environment (memory sampled)"),
];

/// When a descendant started, as far as its recording knows: its first event, memory sample
/// or marker. 0 for the program itself (a recording without a parent), whose clock starts
/// with it.
pub fn started_at(rec: &Recording) -> u64 {
    if rec.meta().ppid().is_none() {
        return 0;
    }
    let first_event =
        rec.event_times_known().then(|| rec.event_chunk(0).map(|c| c.first_time_ns)).flatten();
    let first_sample = rec.samples().first().map(|s| s.time_ns);
    let first_marker = rec.markers().first().map(|m| m.time_ns);
    [first_event, first_sample, first_marker].into_iter().flatten().min().unwrap_or(0)
}

/// When it ended: the time its End record gives, else (cut short) the last time recorded.
/// After it, the process holds no memory.
pub fn ended_at(rec: &Recording) -> u64 {
    rec.end().map_or(rec.summary().duration_ns, |e| e.time_ns.max(rec.summary().duration_ns))
}

/// Until when `rec`'s process held its traced heap: [`ended_at`], or where it exec'd another
/// program if it did ([`crate::EXECED_MARKER`]: the exec released it all; the new program's memory,
/// if it was followed, is a process of the recording of its own).
pub fn heap_ended_at(rec: &Recording) -> u64 {
    let end = ended_at(rec);
    let execed = rec.markers().iter().find(|m| ran_another_program(&m.label));
    execed.map_or(end, |m| m.time_ns.min(end))
}

/// How the recording ends, in words ("exited with code 0", "killed by signal 9", ...), and
/// why the process was not traced, or not to its end, if so ([`NOT_TRACED`]).
pub fn how_it_ended(rec: &Recording) -> String {
    let mut ended = how_it_ended_alone(rec);
    let markers = rec.markers();
    // The process ran another program, which ended it (its exit status is the process's).
    let said_how = rec.end().is_some_and(|e| e.exit_code.is_some() || e.signal.is_some());
    if said_how && markers.iter().any(|m| ran_another_program(&m.label)) {
        let was = if ended.starts_with("killed") { "was " } else { "" };
        ended = format!("ran another program (exec), which {was}{ended}");
    }
    match NOT_TRACED.iter().find(|(label, _)| markers.iter().any(|m| m.label == *label)) {
        Some((_, why)) => format!("{ended}; {why}"),
        None => ended,
    }
}

fn how_it_ended_alone(rec: &Recording) -> String {
    let meta = rec.meta();
    let block = meta.extra.iter().any(|(k, v)| k == "mode" && v == "memlens.record()");
    match rec.end().map(|e| (e.exit_code, e.signal)) {
        Some((None, None)) if outlived_the_program(rec) => {
            "still running when the program ended (followed no further)".into()
        }
        Some((None, None))
            if rec.markers().last().is_some_and(|m| ran_another_program(&m.label)) =>
        {
            "ran another program (exec)".into()
        }
        // A program that is not Python, whose memory was sampled.
        Some((None, None)) if meta.capture.rss_only && meta.extra(META_PPID).is_some() => {
            "ended without saying how".into()
        }
        Some((_, Some(sig))) => format!("killed by signal {sig}"),
        Some((Some(code), None)) => format!("exited with code {code}"),
        Some((None, None)) if block => "recording stopped, the program went on".into(),
        // `memlens watch`: a process memlens did not start.
        Some((None, None)) if meta.capture.rss_only => "watching stopped".into(),
        Some((None, None)) => "ended without saying how (killed? a SIGKILL from outside, such \
                               as the OOM killer's, cannot be seen from inside)"
            .into(),
        None => "end not recorded (the recording was cut short)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STILL_RUNNING_MARKER;
    use memlens_format::{
        AllocatorKind, MemorySample, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId,
        ThreadInfo,
    };

    const MS: u64 = 1_000_000;

    /// A child that allocates at 300 ms, samples its memory at 310 ms, and ends as `end` says
    /// (`None`: cut short after its last flush), with `marker` as its last marker.
    fn child(end: Option<ProcessEnd>, marker: Option<&str>) -> Recording {
        let meta = Meta { extra: vec![("ppid".into(), "1".into())], ..Meta::default() };
        let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 7, name: "MainThread".into() });
        let f = w.intern_frame("work", "child.py", 3);
        let s = w.intern_stack(StackId::ROOT, f);
        w.alloc(300 * MS, ThreadId(0), s, 0x10, 100, AllocatorKind::Malloc).unwrap();
        w.memory_sample(MemorySample { time_ns: 310 * MS, rss: 1 << 20, vms: 0, heap: 100 })
            .unwrap();
        if let Some(label) = marker {
            w.marker(320 * MS, ThreadId(0), label);
        }
        w.flush().unwrap();
        let bytes = w.finish(end.unwrap_or_default()).unwrap();
        let mut rec = Recording::from_vec(bytes.clone()).unwrap();
        if end.is_none() {
            // Cut after the last event chunk, before the End chunk and the trailer, as a
            // SIGKILL leaves a file.
            let c = *rec.event_chunk(rec.event_chunk_count() - 1).unwrap();
            rec = Recording::from_vec(bytes[..(c.offset + c.len) as usize].to_vec()).unwrap();
        }
        rec
    }

    #[test]
    fn a_child_starts_at_its_first_record_and_ends_at_its_end() {
        let end = ProcessEnd { time_ns: 400 * MS, exit_code: Some(0), signal: None };
        let rec = child(Some(end), None);
        assert_eq!(started_at(&rec), 300 * MS);
        let program = Meta::default();
        let bytes = RecordingWriter::new(Vec::new(), &program).unwrap().finish(end).unwrap();
        assert_eq!(started_at(&Recording::from_vec(bytes).unwrap()), 0, "the program's clock");
        assert_eq!(ended_at(&rec), 400 * MS);
        assert_eq!(how_it_ended(&rec), "exited with code 0");
    }

    #[test]
    fn every_ending_is_said() {
        let killed = ProcessEnd { time_ns: 400 * MS, exit_code: None, signal: Some(9) };
        assert_eq!(how_it_ended(&child(Some(killed), None)), "killed by signal 9");
        let silent = ProcessEnd { time_ns: 400 * MS, exit_code: None, signal: None };
        assert!(how_it_ended(&child(Some(silent), None)).starts_with("ended without saying how"));
        let outlived = child(Some(silent), Some(STILL_RUNNING_MARKER));
        assert!(how_it_ended(&outlived).starts_with("still running when the program ended"));
        let isolated = how_it_ended(&child(Some(silent), Some(crate::PYTHON_WITHOUT_SITE_MARKER)));
        assert!(isolated.ends_with("not traced: a Python run with -E, -I or -S (memory sampled)"));
        let exec = crate::execed_label("ruff check .");
        assert_eq!(how_it_ended(&child(Some(silent), Some(&exec))), "ran another program (exec)");
        let exited = ProcessEnd { time_ns: 400 * MS, exit_code: Some(1), signal: None };
        let said = "ran another program (exec), which exited with code 1";
        assert_eq!(how_it_ended(&child(Some(exited), Some(&exec))), said);
        let said = "ran another program (exec), which was killed by signal 9";
        assert_eq!(how_it_ended(&child(Some(killed), Some(&exec))), said);
        let stray = how_it_ended(&child(Some(silent), Some(crate::NOT_FOLLOWED_MARKER)));
        assert!(
            stray.ends_with("not traced: started without memlens's environment (memory sampled)")
        );
    }

    #[test]
    fn a_recording_cut_short_ends_at_its_last_record() {
        let rec = child(None, None);
        assert!(rec.end().is_none());
        assert_eq!(how_it_ended(&rec), "end not recorded (the recording was cut short)");
        assert_eq!(ended_at(&rec), rec.summary().duration_ns);
        assert!(ended_at(&rec) >= 300 * MS);
    }
}
