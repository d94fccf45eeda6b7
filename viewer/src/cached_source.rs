//! [`CachedSource`]: a recording's bytes read through a slow [`Fetch`] (a `Blob` read with
//! `FileReaderSync`, a URL read with range requests), exactly the ranges the reader asks for,
//! kept for reuse: the worker fetches each chunk a view needs once while it is in use, and
//! never holds more than [`CACHE_BYTES`] of the file. [`Held`] is the fallback for servers
//! that only send whole files. Pure; tested natively with a counting fake.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use memlens_format::{ByteSource, Error};

/// Reads bytes from where a recording lives.
pub trait Fetch: Send + Sync {
    /// The bytes `[offset, offset + len)`; fewer only where the source ends.
    fn fetch(&self, offset: u64, len: u64) -> Result<Vec<u8>, String>;
}

impl<F: Fetch + ?Sized> Fetch for Box<F> {
    fn fetch(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        (**self).fetch(offset, len)
    }
}

/// Most bytes kept: a bound on the worker's memory whatever the file's size.
pub const CACHE_BYTES: u64 = 64 << 20;

/// Opening merges reads of chunks closer than this (a 4 KiB request costs about what a 40
/// byte one does; a megabyte between two samples chunks is better skipped).
const MERGE_GAP: u64 = 4 << 10;

/// Ranges read, by offset.
#[derive(Default)]
struct Segments {
    /// Offset -> (bytes, last use).
    map: BTreeMap<u64, (Arc<Vec<u8>>, u64)>,
    clock: u64,
    bytes: u64,
}

impl Segments {
    /// The bytes `[offset, end)` if one range read holds them.
    fn get(&mut self, offset: u64, end: u64) -> Option<Vec<u8>> {
        self.clock += 1;
        let clock = self.clock;
        let (&start, (seg, used)) = self.map.range_mut(..=offset).next_back()?;
        if start + (seg.len() as u64) < end {
            return None;
        }
        *used = clock;
        Some(seg[(offset - start) as usize..(end - start) as usize].to_vec())
    }

    fn put(&mut self, offset: u64, seg: Arc<Vec<u8>>) {
        self.clock += 1;
        self.bytes += seg.len() as u64;
        if let Some((old, _)) = self.map.insert(offset, (seg, self.clock)) {
            self.bytes -= old.len() as u64;
        }
        while self.bytes > CACHE_BYTES {
            // Least recently used first; a few thousand ranges at most, so a scan is fine.
            let Some((&oldest, _)) = self.map.iter().min_by_key(|(_, (_, used))| *used) else {
                break;
            };
            if let Some((s, _)) = self.map.remove(&oldest) {
                self.bytes -= s.len() as u64;
            }
        }
    }
}

/// A [`ByteSource`] over a [`Fetch`], with a cache of the ranges read. `on_read` is told the
/// size of every read (the worker's progress reports count them).
pub struct CachedSource<F> {
    fetch: F,
    len: AtomicU64,
    segments: Mutex<Segments>,
    on_read: fn(u64),
}

impl<F: Fetch> CachedSource<F> {
    pub fn new(fetch: F, len: u64, on_read: fn(u64)) -> Self {
        CachedSource { fetch, len: AtomicU64::new(len), segments: Mutex::default(), on_read }
    }

    /// The source is now `len` bytes long (a recording being written grew). Only whole
    /// reads are kept, so nothing kept is out of date unless the file shrank (was rewritten).
    pub fn set_len(&self, len: u64) {
        if len < self.len.swap(len, Ordering::Relaxed) {
            *self.lock() = Segments::default();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Segments> {
        // A panic while the lock is held leaves whole ranges behind: still usable.
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<F: Fetch> ByteSource for CachedSource<F> {
    fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        (self.on_read)(len as u64);
        let end = offset.saturating_add(len as u64).min(self.len());
        if offset >= end {
            return Ok(Vec::new());
        }
        if let Some(bytes) = self.lock().get(offset, end) {
            return Ok(bytes);
        }
        let bytes = self.fetch.fetch(offset, end - offset).map_err(Error::Read)?;
        if bytes.len() as u64 == end - offset {
            // (A short read means the source is shorter than it said: not worth keeping.)
            self.lock().put(offset, Arc::new(bytes.clone()));
        }
        Ok(bytes)
    }

    fn merge_gap(&self) -> u64 {
        MERGE_GAP
    }
}

/// A whole file held in memory: what a server that ignores range requests leaves us with.
pub struct Held {
    bytes: RwLock<Arc<Vec<u8>>>,
    on_read: fn(u64),
}

impl Held {
    pub fn new(bytes: Vec<u8>, on_read: fn(u64)) -> Self {
        Held { bytes: RwLock::new(Arc::new(bytes)), on_read }
    }

    /// Replaces the bytes (a new download of a recording being written).
    pub fn replace(&self, bytes: Vec<u8>) {
        *self.bytes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(bytes);
    }

    fn current(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ByteSource for Held {
    fn len(&self) -> u64 {
        self.current().len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        (self.on_read)(len as u64);
        self.current().read_at(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A fake remote file that counts requests.
    struct Remote {
        data: Vec<u8>,
        reads: Mutex<Vec<(u64, u64)>>,
        /// Reads from here fail.
        broken_at: Option<u64>,
    }

    impl Fetch for Arc<Remote> {
        fn fetch(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
            self.reads.lock().unwrap().push((offset, len));
            if self.broken_at == Some(offset) {
                return Err("connection reset".into());
            }
            let end = (offset + len).min(self.data.len() as u64);
            Ok(self.data[offset.min(end) as usize..end as usize].to_vec())
        }
    }

    fn remote(len: usize) -> Arc<Remote> {
        let data = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        Arc::new(Remote { data, reads: Mutex::default(), broken_at: None })
    }

    fn ignore(_: u64) {}

    #[test]
    fn reads_come_back_exact_and_are_fetched_once() {
        let r = remote(100_000);
        let src = CachedSource::new(Arc::clone(&r), r.data.len() as u64, ignore);
        let want = |a: usize, n: usize| r.data[a..(a + n).min(r.data.len())].to_vec();
        assert_eq!(src.read_at(1000, 5000).unwrap(), want(1000, 5000));
        // Inside a range already read: no request.
        assert_eq!(src.read_at(1200, 100).unwrap(), want(1200, 100));
        assert_eq!(src.read_at(1000, 5000).unwrap(), want(1000, 5000));
        // Past the end: what is there.
        assert_eq!(src.read_at(99_990, 100).unwrap(), want(99_990, 100));
        assert_eq!(src.read_at(u64::MAX - 3, 10).unwrap(), Vec::<u8>::new());
        assert_eq!(*r.reads.lock().unwrap(), [(1000, 5000), (99_990, 10)]);
        assert_eq!(src.merge_gap(), MERGE_GAP, "opening merges only close chunks");
    }

    #[test]
    fn a_growing_source_reads_past_its_old_end() {
        let r = remote(3000);
        let src = CachedSource::new(Arc::clone(&r), 1010, ignore);
        assert_eq!(src.read_at(1000, 100).unwrap().len(), 10, "only 10 bytes known");
        src.set_len(3000);
        assert_eq!(src.read_at(1000, 100).unwrap(), r.data[1000..1100]);
        assert_eq!(r.reads.lock().unwrap().len(), 2);
    }

    #[test]
    fn memory_stays_bounded() {
        let n = 80usize;
        let seg = 1 << 20;
        let r = remote(n * seg);
        let src = CachedSource::new(Arc::clone(&r), r.data.len() as u64, ignore);
        for i in 0..n {
            src.read_at((i * seg) as u64, seg).unwrap();
        }
        assert!(src.lock().bytes <= CACHE_BYTES);
        // The oldest ranges went first.
        src.read_at(0, 1).unwrap();
        assert_eq!(r.reads.lock().unwrap().len(), n + 1);
    }

    #[test]
    fn a_failed_fetch_is_a_read_error() {
        let r = Arc::new(Remote { broken_at: Some(500), ..Arc::into_inner(remote(1000)).unwrap() });
        let src = CachedSource::new(Arc::clone(&r), r.data.len() as u64, ignore);
        let err = src.read_at(500, 10).unwrap_err();
        assert!(matches!(err, Error::Read(ref m) if m == "connection reset"), "{err}");
    }

    #[test]
    fn held_bytes_are_replaced_whole() {
        let held = Held::new(vec![1, 2, 3], ignore);
        assert_eq!(held.read_at(1, 5).unwrap(), [2, 3]);
        held.replace(vec![1, 2, 3, 4]);
        assert_eq!((held.len(), held.read_at(3, 1).unwrap()), (4, vec![4]));
    }
}
