//! The processes of a recording (format 5): the traced program and the descendants it
//! started, each a recording of its own (see `memlens_format`'s `Recording::open_process`),
//! and the heap of them all together.

use memlens_format::{Error, ProcessEnd, Recording};

/// The label of the marker that ends the recording of a descendant still running when the
/// program ended: its recording stops there, and how it ended is not known.
pub const STILL_RUNNING_MARKER: &str = "memlens: still running when the program ended";

/// The label of the marker a descendant's recording gets where the process closed its
/// connection to memlens while it went on running (a child that closes every file
/// descriptor): it was not traced from there on.
pub const UNTRACED_MARKER: &str =
    "memlens: the process closed its connection to memlens: not traced from here";

/// The label of the marker where a process exec'd another program: it ends the recording of
/// a descendant there, and the program's own before the program that replaced it (whose
/// stream, when it is followed, is a process of the recording with the same pid). Followed by
/// `: COMMAND LINE` when the tracer announced the exec (see [`ran_another_program`]).
pub const EXECED_MARKER: &str = "memlens: the process ran another program (exec)";

/// The label of [`EXECED_MARKER`] with the command line the tracer announced.
pub fn execed_label(command: &str) -> String {
    format!("{EXECED_MARKER}: {command}")
}

/// Whether a marker's `label` says that the process exec'd another program
/// ([`EXECED_MARKER`], with or without the command line).
pub fn ran_another_program(label: &str) -> bool {
    label.strip_prefix(EXECED_MARKER).is_some_and(|rest| rest.is_empty() || rest.starts_with(": "))
}

/// The label of the marker at the start of the recording of a Python run with `-E`, `-I` or
/// `-S`: those skip the start-up that traces a followed Python, so only its memory is sampled.
pub const PYTHON_WITHOUT_SITE_MARKER: &str = "memlens: a Python run with -E, -I or -S, which skip \
     memlens's start-up: its memory is sampled, its allocations are not traced";

/// The label of the marker at the start of the recording of a process started with an
/// environment that lacks memlens's variables (exec'd by a program the tracer is not loaded
/// in, such as a static binary, or by the system call itself), which the recorder found
/// among the program's descendants: only its memory is sampled.
pub const NOT_FOLLOWED_MARKER: &str = "memlens: started with an environment without memlens's \
     variables: its memory is sampled, its allocations are not traced";

/// The label of the marker that ends the program's recording when descendants that started
/// as it ended could not be recorded (they connected to memlens too late, or not at all),
/// followed by `: N`, their number (see [`not_recorded`]).
pub const NOT_RECORDED_MARKER: &str =
    "memlens: descendants started as the program ended, not recorded";

/// The label of [`NOT_RECORDED_MARKER`] for `n` descendants.
pub fn not_recorded_label(n: usize) -> String {
    format!("{NOT_RECORDED_MARKER}: {n}")
}

/// How many descendants that started as the program ended are not in `rec`, the program's
/// recording ([`NOT_RECORDED_MARKER`]).
pub fn not_recorded(rec: &Recording) -> u64 {
    let count = |label: &str| {
        label.strip_prefix(NOT_RECORDED_MARKER)?.strip_prefix(": ")?.parse::<u64>().ok()
    };
    crate::saturating_sum(rec.markers().iter().filter_map(|m| count(&m.label)))
}

/// [`not_recorded`] in words: "1 descendant started as the program ended was not recorded".
pub fn not_recorded_note(n: u64) -> String {
    match n {
        1 => "1 descendant started as the program ended was not recorded".to_owned(),
        n => format!("{n} descendants started as the program ended were not recorded"),
    }
}

/// One process of a recording.
pub struct Process {
    /// 0 for the program, then 1, 2, ... in the order its descendants started.
    pub number: u32,
    /// Its recording.
    pub rec: Recording,
}

impl Process {
    /// Its parent's pid (none for the program itself).
    pub fn ppid(&self) -> Option<u32> {
        self.rec.meta().ppid()
    }

    /// How it ended, if that is recorded.
    pub fn end(&self) -> Option<&ProcessEnd> {
        self.rec.end()
    }
}

/// Whether `rec`, a descendant's recording, ends because the program ended while it ran.
pub fn outlived_the_program(rec: &Recording) -> bool {
    rec.markers().last().is_some_and(|m| m.label == STILL_RUNNING_MARKER)
}

/// Whether `rec`, a descendant's recording, stopped early because the process closed its
/// connection to memlens.
pub fn stopped_early(rec: &Recording) -> bool {
    rec.markers().iter().any(|m| m.label == UNTRACED_MARKER)
}

/// Whether `rec` is the recording of a Python that skipped memlens's start-up (see
/// [`PYTHON_WITHOUT_SITE_MARKER`]).
pub fn python_without_site(rec: &Recording) -> bool {
    rec.markers().iter().any(|m| m.label == PYTHON_WITHOUT_SITE_MARKER)
}

/// Whether `rec` is the recording of a process started without memlens's environment (see
/// [`NOT_FOLLOWED_MARKER`]).
pub fn started_without_memlens(rec: &Recording) -> bool {
    rec.markers().iter().any(|m| m.label == NOT_FOLLOWED_MARKER)
}

/// The recordings of the descendants `rec` holds, in order. One that cannot be opened at
/// all (its stream cut before its metadata) is left out; the others open cut short or
/// whole.
pub fn descendants(rec: &Recording) -> Vec<Process> {
    rec.processes()
        .into_iter()
        .filter_map(|number| Some(Process { number, rec: rec.open_process(number).ok()? }))
        .collect()
}

/// The program's recording and its descendants', the program first: the processes
/// [`tree_peak`] and the other family analyses take.
pub fn all_processes<'a>(rec: &'a Recording, family: &'a [Process]) -> Vec<&'a Recording> {
    std::iter::once(rec).chain(family.iter().map(|p| &p.rec)).collect()
}

/// The highest heap of all processes together over the whole run, and when: each process
/// counts while it lives (see [`crate::family_peak`], exact to the nanosecond).
pub fn tree_peak(recs: &[&Recording]) -> Result<(u64, u64), Error> {
    crate::family_peak(recs, 0, crate::family_end(recs).saturating_add(1))
}

/// What a process is across two runs of a program (whose pids differ): its command line with
/// every number as `#` (pids, file descriptors and ports in multiprocessing's command lines
/// change from run to run).
pub fn process_key(rec: &Recording) -> String {
    let mut key = String::new();
    let mut in_number = false;
    for c in rec.meta().command_line.join(" ").chars() {
        if c.is_ascii_digit() {
            if !in_number {
                key.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            key.push(c);
        }
    }
    key
}

/// Pairs the processes of two runs: the programs with each other, then descendants with the
/// same [`process_key`] in the order they started. Each pair is (index in `base`, index in
/// `head`); a process without a match has `None` on the other side. Index 0 is the program.
pub fn match_processes(
    base: &[&Recording],
    head: &[&Recording],
) -> Vec<(Option<usize>, Option<usize>)> {
    let mut pairs = Vec::new();
    if !base.is_empty() && !head.is_empty() {
        pairs.push((Some(0), Some(0)));
    }
    let keys =
        |recs: &[&Recording]| -> Vec<String> { recs.iter().map(|r| process_key(r)).collect() };
    let (bk, hk) = (keys(base), keys(head));
    let mut taken = vec![false; head.len()];
    taken.iter_mut().take(1).for_each(|t| *t = true);
    for (i, k) in bk.iter().enumerate().skip(1) {
        let j = (1..head.len()).find(|&j| !taken[j] && hk[j] == *k);
        if let Some(j) = j {
            taken[j] = true;
        }
        pairs.push((Some(i), j));
    }
    pairs.extend((1..head.len()).filter(|&j| !taken[j]).map(|j| (None, Some(j))));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{Meta, ProcessEnd, RecordingWriter};

    fn rec(command: &str) -> Recording {
        let meta = Meta {
            command_line: command.split(' ').map(String::from).collect(),
            ..Meta::default()
        };
        let w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        Recording::from_vec(w.finish(ProcessEnd::default()).unwrap()).unwrap()
    }

    #[test]
    fn keys_ignore_numbers() {
        let a = rec("python -c spawn_main(tracker_fd=8, pipe_handle=15)");
        let b = rec("python -c spawn_main(tracker_fd=12, pipe_handle=9)");
        assert_eq!(process_key(&a), process_key(&b));
        assert_eq!(process_key(&a), "python -c spawn_main(tracker_fd=#, pipe_handle=#)");
    }

    #[test]
    fn processes_pair_by_key_in_order() {
        let base = [rec("app"), rec("w 1"), rec("w 2"), rec("tracker")];
        let head = [rec("app2"), rec("w 7"), rec("extra"), rec("w 8")];
        let b: Vec<&Recording> = base.iter().collect();
        let h: Vec<&Recording> = head.iter().collect();
        let pairs = match_processes(&b, &h);
        assert_eq!(
            pairs,
            vec![
                (Some(0), Some(0)),
                (Some(1), Some(1)),
                (Some(2), Some(3)),
                (Some(3), None),
                (None, Some(2))
            ]
        );
    }
}
