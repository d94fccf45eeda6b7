//! What the user is told about a recording: why it cannot be opened, or what is wrong with
//! it (pure; tested natively). Damaged files open as far as they can be read; only files that
//! are not recordings at all (or too new) fail.

use memlens_format::{Error, Recording, FORMAT_VERSION};

/// The sentence for an error banner when a file cannot be opened at all.
pub fn open_error(e: Error) -> String {
    match e {
        Error::NotARecording => {
            "This is not a memlens recording: the file does not start with the memlens \
             signature. Open a .memlens file written by memlens run."
                .to_string()
        }
        Error::NewerVersion { found } => format!(
            "This recording uses format version {found}, but this viewer reads up to version \
             {FORMAT_VERSION}. It was written by a newer memlens: open it with that version's \
             viewer (memlens view)."
        ),
        Error::TooShort { len } => format!(
            "This recording is truncated: only {len} bytes, not even its header is complete."
        ),
        other => format!("This recording could not be read: {other}."),
    }
}

/// What the user should know about an opened recording of `len` bytes, most important first.
/// `live`: it is being followed as it is written, so a missing trailer or a partly written
/// last chunk is expected, not damage.
pub fn warnings(recording: &Recording, len: u64, live: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if live && !recording.has_trailer() {
        // Said by the live banner instead.
    } else if let Some(t) = recording.truncation() {
        warnings.push(format!(
            "This recording is truncated or damaged: reading stopped at byte {} of {} ({}). \
             Showing what could be read.",
            t.offset, len, t.reason
        ));
    } else if !recording.has_trailer() {
        warnings.push(
            "This recording was not closed cleanly (the program or memlens may have been \
             killed); totals were recomputed from what was written."
                .to_string(),
        );
    }
    if recording.unknown_chunks() > 0 {
        warnings.push(format!(
            "This recording was written by a newer memlens: {} part(s) this viewer does not \
             understand were skipped.",
            recording.unknown_chunks()
        ));
    }
    if let Some(why) = recording.aggregates_missing() {
        if recording.format_version() >= 4 && (recording.has_trailer() || !live) {
            warnings.push(format!(
                "This recording's aggregates cannot be used ({why}): every view replays its \
                 events, which takes longer."
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo, MAGIC,
    };

    struct Opened {
        recording: Recording,
        warnings: Vec<String>,
    }

    /// Opens `bytes` as the worker does, with the warnings the page shows.
    fn open_recording(bytes: Vec<u8>) -> Result<Opened, String> {
        let len = bytes.len() as u64;
        let recording = Recording::from_vec(bytes).map_err(open_error)?;
        let warnings = warnings(&recording, len, false);
        Ok(Opened { recording, warnings })
    }

    fn recording_bytes() -> Vec<u8> {
        let meta = Meta { command_line: vec!["python".into(), "x.py".into()], ..Meta::default() };
        let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let f = w.intern_frame("f", "x.py", 1);
        let s = w.intern_stack(StackId::ROOT, f);
        for i in 0..100u64 {
            w.alloc(i * 10, ThreadId(0), s, 0x1000 + i * 64, 64, AllocatorKind::Malloc).unwrap();
            if i % 10 == 0 {
                w.flush().unwrap();
            }
        }
        w.finish(ProcessEnd { time_ns: 2_000, exit_code: Some(0), signal: None }).unwrap()
    }

    #[test]
    fn clean_recording_has_no_warnings() {
        let opened = open_recording(recording_bytes()).unwrap();
        assert!(opened.warnings.is_empty(), "{:?}", opened.warnings);
        assert_eq!(opened.recording.meta().command_line, ["python", "x.py"]);
    }

    #[test]
    fn not_a_recording() {
        let err = open_recording(b"PK\x03\x04 a zip file, not a recording".to_vec()).err().unwrap();
        assert!(err.starts_with("This is not a memlens recording"), "{err}");
    }

    #[test]
    fn newer_version_says_so() {
        let mut bytes = recording_bytes();
        assert_eq!(bytes[..8], MAGIC);
        // FORMAT.md: the little-endian u16 format version follows the 8-byte magic.
        bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = open_recording(bytes).err().unwrap();
        assert!(err.contains(&format!("format version {}", FORMAT_VERSION + 1)), "{err}");
    }

    #[test]
    fn truncated_recording_opens_with_a_warning() {
        let bytes = recording_bytes();
        let cut = bytes[..bytes.len() * 2 / 3].to_vec();
        let opened = open_recording(cut).unwrap();
        assert!(
            opened.warnings[0].starts_with("This recording is truncated"),
            "{:?}",
            opened.warnings
        );
    }

    #[test]
    fn a_recording_being_written_is_not_called_damaged_while_followed() {
        let bytes = recording_bytes();
        let cut = bytes[..bytes.len() * 2 / 3].to_vec();
        let len = cut.len() as u64;
        let rec = Recording::from_vec(cut).unwrap();
        assert!(warnings(&rec, len, true).is_empty());
        assert!(warnings(&rec, len, false)[0].contains("truncated or damaged"));
    }

    #[test]
    fn header_only_is_too_short() {
        let err = open_recording(recording_bytes()[..12].to_vec()).err().unwrap();
        assert!(err.contains("truncated"), "{err}");
    }
}
