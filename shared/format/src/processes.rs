//! Recordings of several processes in one file (format 5): the traced program's descendants
//! (forked, spawned or exec'd Pythons) each have a recording of their own, a *stream*, carried
//! inside the file of the program that started them.
//!
//! A stream is an ordinary recording (header, chunks, trailer) whose bytes are cut into
//! pieces as they are written and stored in Substream chunks of the enclosing file, between
//! its own chunks: a piece says which process it belongs to and where its bytes go in that
//! process's stream. A closed file ends with a Processes chunk listing every piece, so a
//! reader finds each stream without reading the pieces; a file cut short is scanned and its
//! pieces found on the way. Each stream is then opened as a recording of its own through a
//! [`ByteSource`] that reads its bytes from the pieces, so everything a recording offers
//! (aggregates, truncation, crash safety) holds per process. See FORMAT.md, "Processes".

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::varint::{put_u64, Cursor};
use crate::{ByteSource, Error, Recording};

/// Where part of a process's stream is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The process's number in the file: 1, 2, ... in the order they started (the program
    /// itself, whose recording is the file's own chunks, is 0).
    pub process: u32,
    /// Offset of the piece's first byte in the process's stream.
    pub offset: u64,
    /// Offset of the piece's first byte in the file.
    pub at: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// The payload of a Substream chunk: the process, the offset in its stream, then the bytes.
pub(crate) fn encode_piece(out: &mut Vec<u8>, process: u32, offset: u64, bytes: &[u8]) {
    put_u64(out, u64::from(process));
    put_u64(out, offset);
    out.extend_from_slice(bytes);
}

/// The process, the stream offset and where the bytes start in a Substream chunk's payload.
pub(crate) fn decode_piece(raw: &[u8]) -> Result<(u32, u64, usize), &'static str> {
    let mut c = Cursor::new(raw);
    let process = u32::try_from(c.u64()?).map_err(|_| "process number out of range")?;
    if process == 0 {
        return Err("process 0 is the file's own recording");
    }
    let offset = c.u64()?;
    Ok((process, offset, raw.len() - c.remaining()))
}

/// Checks a list of pieces read from a Processes chunk against the file: every piece lies
/// between the header and `end`, after the previous one.
pub(crate) fn check_pieces(pieces: &[Piece], end: u64) -> Result<(), String> {
    let mut after = crate::HEADER_LEN as u64;
    for p in pieces {
        if p.process == 0 || p.at < after || p.at.checked_add(p.len).is_none_or(|e| e > end) {
            return Err(format!("piece of process {} at {} is outside the file", p.process, p.at));
        }
        after = p.at + p.len;
    }
    Ok(())
}

/// One process's stream: its bytes, read from its pieces.
struct StreamSource {
    file: Arc<dyn ByteSource>,
    /// Contiguous from offset 0, in stream order.
    pieces: Vec<Piece>,
    len: u64,
}

impl StreamSource {
    /// The pieces of `process`, in stream order, up to the first gap (the rest of a stream
    /// whose file was cut short is not there).
    fn new(file: Arc<dyn ByteSource>, all: &[Piece], process: u32) -> StreamSource {
        let mut mine: Vec<Piece> =
            all.iter().filter(|p| p.process == process && p.len > 0).copied().collect();
        mine.sort_by_key(|p| p.offset);
        let mut len = 0;
        let mut pieces = Vec::with_capacity(mine.len());
        for p in mine {
            if p.offset != len {
                break;
            }
            len += p.len;
            pieces.push(p);
        }
        StreamSource { file, pieces, len }
    }
}

impl ByteSource for StreamSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let end = offset.saturating_add(len as u64).min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let first = self.pieces.partition_point(|p| p.offset + p.len <= offset);
        for p in &self.pieces[first..] {
            let at = offset + out.len() as u64;
            if at >= end {
                break;
            }
            let skip = at - p.offset;
            let take = (p.len - skip).min(end - at) as usize;
            let bytes = self.file.read_at(p.at + skip, take)?;
            let short = bytes.len() < take;
            out.extend_from_slice(&bytes);
            if short {
                break;
            }
        }
        Ok(out)
    }

    fn merge_gap(&self) -> u64 {
        self.file.merge_gap()
    }
}

impl Recording {
    /// The numbers of the other processes this file holds a recording of (the traced
    /// program's descendants), in the order they started.
    pub fn processes(&self) -> Vec<u32> {
        let mut n: Vec<u32> = self.pieces.iter().map(|p| p.process).collect();
        n.sort_unstable();
        n.dedup();
        n
    }

    /// Opens the recording of process `process` (a number from [`Recording::processes`]).
    pub fn open_process(&self, process: u32) -> Result<Recording, Error> {
        let file = Arc::clone(self.src.as_ref().ok_or(Error::NoSource)?);
        let source = StreamSource::new(file, &self.pieces, process);
        if source.pieces.is_empty() {
            return Err(Error::NoProcess { process });
        }
        Recording::open_source(Arc::new(source))
    }

    /// Where every process's stream is in the file.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo};

    fn small_recording(pid: u32, bytes: u64) -> Vec<u8> {
        let meta = Meta { pid, ..Meta::default() };
        let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: pid.into(), name: "MainThread".into() });
        let f = w.intern_frame("work", "child.py", 3);
        let s = w.intern_stack(StackId::ROOT, f);
        w.alloc(1_000, ThreadId(0), s, 0x10, bytes, crate::AllocatorKind::Malloc).unwrap();
        w.finish(ProcessEnd { time_ns: 2_000, exit_code: Some(0), signal: None }).unwrap()
    }

    /// A closed parent with two children whose streams arrive in pieces, interleaved with
    /// the parent's own chunks.
    fn family() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let a = small_recording(11, 1 << 20);
        let b = small_recording(12, 3 << 20);
        let mut w = RecordingWriter::new(Vec::new(), &Meta { pid: 10, ..Meta::default() }).unwrap();
        let (ha, hb) = (a.len() / 2, b.len() / 3);
        w.substream(1, &a[..ha]).unwrap();
        w.substream(2, &b[..hb]).unwrap();
        w.flush().unwrap();
        w.substream(2, &b[hb..]).unwrap();
        w.substream(1, &a[ha..]).unwrap();
        let end = ProcessEnd { time_ns: 5_000, exit_code: Some(0), signal: None };
        (w.finish(end).unwrap(), a, b)
    }

    fn check(file: Vec<u8>, a: &[u8], b: &[u8]) {
        let rec = Recording::from_vec(file).unwrap();
        assert_eq!(rec.processes(), vec![1, 2]);
        for (n, bytes, pid, peak) in [(1, a, 11, 1 << 20), (2, b, 12, 3 << 20)] {
            let child = rec.open_process(n).unwrap();
            assert_eq!(child.meta().pid, pid);
            assert_eq!(child.summary().peak_heap, peak);
            assert!(child.has_trailer());
            let src = StreamSource::new(rec.src.clone().unwrap(), rec.pieces(), n);
            assert_eq!(src.read_at(0, bytes.len() + 10).unwrap(), bytes);
            assert_eq!(src.read_at(7, 30).unwrap(), &bytes[7..37]);
        }
        assert!(matches!(rec.open_process(3), Err(Error::NoProcess { process: 3 })));
    }

    #[test]
    fn closed_file_lists_its_streams() {
        let (file, a, b) = family();
        assert!(Recording::open(&file).unwrap().has_trailer());
        check(file, &a, &b);
    }

    #[test]
    fn a_file_without_its_trailer_finds_its_streams_by_scanning() {
        let (mut file, a, b) = family();
        let trailer = u64::from_le_bytes(file[file.len() - 8..].try_into().unwrap());
        file.truncate(trailer as usize);
        assert!(!Recording::open(&file).unwrap().has_trailer());
        check(file, &a, &b);
    }

    #[test]
    fn a_stream_cut_short_reads_up_to_its_gap() {
        let (file, a, _) = family();
        let last = *Recording::open(&file).unwrap().pieces().last().unwrap();
        assert_eq!((last.process, last.offset), (1, a.len() as u64 / 2));
        let cut = file[..last.at as usize + 5].to_vec();
        let rec = Recording::from_vec(cut).unwrap();
        assert_eq!(rec.processes(), vec![1, 2]);
        let child = rec.open_process(1).unwrap();
        assert_eq!(child.meta().pid, 11);
        assert!(child.truncation().is_some() && !child.has_trailer());
        assert!(rec.open_process(2).unwrap().has_trailer());
    }

    #[test]
    fn hostile_pieces_are_refused() {
        let p = |at, len| Piece { process: 1, offset: 0, at, len };
        assert!(check_pieces(&[p(16, 10)], 100).is_ok());
        assert!(check_pieces(&[p(0, 10)], 100).is_err());
        assert!(check_pieces(&[p(90, 20)], 100).is_err());
        assert!(check_pieces(&[p(16, u64::MAX)], 100).is_err());
        assert!(check_pieces(&[p(30, 10), p(20, 5)], 100).is_err());
        assert!(check_pieces(&[Piece { process: 0, ..p(16, 1) }], 100).is_err());
        assert!(decode_piece(&[0, 0]).is_err());
        assert!(decode_piece(&[0x80]).is_err());
        assert_eq!(decode_piece(&[1, 5, 9, 9]).unwrap(), (1, 5, 2));
    }
}
