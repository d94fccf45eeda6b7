//! Turning bytes into a [`Recording`] plus the warnings the user should see (pure; tested
//! natively). Damaged files open as far as they can be read; only files that are not
//! recordings at all (or too new) fail.

use memlens_format::{Error, Recording, FORMAT_VERSION};

/// A recording and what is wrong with it, if anything.
pub struct Opened {
    pub recording: Recording,
    /// Human-readable warnings, most important first.
    pub warnings: Vec<String>,
}

/// Opens `bytes` (the whole file). `Err` is a sentence for an error banner.
pub fn open_recording(bytes: Vec<u8>) -> Result<Opened, String> {
    let len = bytes.len();
    let recording = Recording::from_vec(bytes).map_err(|e| match e {
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
    })?;
    let mut warnings = Vec::new();
    if let Some(t) = recording.truncation() {
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
    Ok(Opened { recording, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo, MAGIC,
    };

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
    fn header_only_is_too_short() {
        let err = open_recording(recording_bytes()[..12].to_vec()).err().unwrap();
        assert!(err.contains("truncated"), "{err}");
    }
}
