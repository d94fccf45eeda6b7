//! The one error type of the format crate.

use crate::FORMAT_VERSION;

/// Everything that can go wrong while reading or writing a recording.
///
/// Decoding never panics on bad bytes: every malformed input maps to one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not start with the memlens magic.
    #[error("not a memlens recording (the file does not start with the memlens magic bytes)")]
    NotARecording,
    /// The file was written by a newer memlens whose format this reader cannot read.
    #[error(
        "this recording uses format version {found}, but this memlens reads up to version \
         {FORMAT_VERSION}; upgrade memlens to read it"
    )]
    NewerVersion {
        /// The version found in the file header.
        found: u16,
    },
    /// The file ended before the header and metadata were complete.
    #[error("the recording is too short to contain a header ({len} bytes)")]
    TooShort {
        /// The number of bytes available.
        len: usize,
    },
    /// The file ends before its metadata (its first chunk) is complete: the recording was cut
    /// off right after it started.
    #[error(
        "the recording ends inside its metadata, after {len} bytes: it was cut off right after \
         it started, before anything was recorded"
    )]
    NoMetadata {
        /// The number of bytes available.
        len: u64,
    },
    /// A chunk's contents are inconsistent (checksum matched, contents did not parse).
    #[error("corrupt {what} at byte offset {offset}: {detail}")]
    Corrupt {
        /// Which part of the file.
        what: &'static str,
        /// The byte offset of the chunk in the file.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The recording's source failed to give bytes it has (a file read error, a lost network
    /// connection).
    #[error("cannot read the recording: {0}")]
    Read(String),
    /// Events or intervals were asked of a recording that has no source to read them from
    /// (the viewer's page holds only the directory; its worker holds the source).
    #[error("the recording's events are not available here")]
    NoSource,
    /// A process was asked of a file that holds no recording of it.
    #[error("the recording holds no process number {process}")]
    NoProcess {
        /// The number asked for.
        process: u32,
    },
    /// An I/O error from the underlying writer. Its message is part of this one's, and so it
    /// is not also given as the source (which made `{:#}` print it twice: "No space left on
    /// device (os error 28): No space left on device (os error 28)").
    #[error("writing the recording failed: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl Error {
    pub(crate) fn corrupt(what: &'static str, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corrupt { what, offset, detail: detail.into() }
    }
}
