use std::fmt;

/// A record that cannot be decoded. Decoding never panics; it returns this.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The tag byte names no known record.
    UnknownTag(u8),
    /// The allocator kind byte names no known kind.
    UnknownKind(u8),
    /// The record's length field disagrees with its payload.
    BadLength { tag: u8, len: u32 },
    /// A record claims a length larger than [`crate::record::MAX_RECORD_LEN`].
    TooLong(u32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::UnknownTag(t) => write!(
                f,
                "unknown raw record tag {t} (tracer and memlens binary from different builds?)"
            ),
            WireError::UnknownKind(k) => write!(f, "unknown allocator kind {k}"),
            WireError::BadLength { tag, len } => {
                write!(f, "raw record with tag {tag} has inconsistent length {len}")
            }
            WireError::TooLong(len) => write!(f, "raw record of {len} bytes is too long"),
        }
    }
}

impl std::error::Error for WireError {}
