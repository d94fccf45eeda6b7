//! [`ByteSource`]: random access to a recording's bytes, so a reader fetches only the parts a
//! view needs. The crate does no I/O itself: the CLI reads a file, the viewer a `Blob` or a URL
//! with range requests, tests a buffer.

use std::sync::Arc;

use crate::Error;

/// Random access to the bytes of a recording.
pub trait ByteSource: Send + Sync {
    /// Bytes available now (a recording being written grows).
    fn len(&self) -> u64;

    /// Whether no bytes are available.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `len` bytes at `offset`; fewer only where the source ends.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error>;

    /// Like [`ByteSource::read_at`], into `buf`, whose allocation a source may reuse: a
    /// reader that goes through a whole file in large blocks
    /// ([`crate::Recording::verify_chunks`]) would otherwise spend as long on a fresh buffer
    /// per block (its pages faulted in and zeroed) as on the copy.
    fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<(), Error> {
        *buf = self.read_at(offset, len)?;
        Ok(())
    }

    /// Opening a closed file reads the small chunks spread through it (tables, samples) in
    /// one read where they are less than this many bytes apart. Where reading costs little
    /// per call (memory, a local file), skipping less than this is slower than reading it;
    /// a source that pays for every byte (the viewer's range requests) says less.
    fn merge_gap(&self) -> u64 {
        1 << 20
    }
}

fn slice_at(bytes: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    bytes[start..start.saturating_add(len).min(bytes.len())].to_vec()
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        Ok(slice_at(self, offset, len))
    }
}

impl ByteSource for Arc<[u8]> {
    fn len(&self) -> u64 {
        (**self).len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        Ok(slice_at(self, offset, len))
    }
}

/// Reads exactly `len` bytes at `offset`, or says how many were there.
pub(crate) fn read_exact(src: &dyn ByteSource, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    let bytes = src.read_at(offset, len).map_err(|e| e.to_string())?;
    if bytes.len() < len {
        return Err(format!("{} bytes at offset {offset} but only {} remain", len, bytes.len()));
    }
    Ok(bytes)
}
