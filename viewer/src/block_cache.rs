//! [`CachedSource`]: a recording's bytes read through a slow [`Fetch`] (a `Blob` read with
//! `FileReaderSync`, a URL read with range requests) in aligned blocks kept for reuse, so the
//! worker fetches each part of a file once while a view needs it, in few requests, and never
//! holds more than [`CACHE_BYTES`] of it. [`Held`] is the fallback for servers that only send
//! whole files. Pure; tested natively with a counting fake.

use std::collections::HashMap;
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

/// Block size: the smallest read (a 64 KiB request costs about what a 1 KiB one does, and
/// the chunks a query reads usually sit next to each other).
pub const BLOCK: u64 = 64 << 10;
/// Most bytes kept: a bound on the worker's memory whatever the file's size.
pub const CACHE_BYTES: u64 = 64 << 20;

#[derive(Default)]
struct Blocks {
    /// Block index -> (bytes, last use).
    map: HashMap<u64, (Arc<Vec<u8>>, u64)>,
    clock: u64,
    bytes: u64,
}

impl Blocks {
    fn get(&mut self, i: u64) -> Option<Arc<Vec<u8>>> {
        self.clock += 1;
        let clock = self.clock;
        self.map.get_mut(&i).map(|(b, used)| {
            *used = clock;
            Arc::clone(b)
        })
    }

    fn put(&mut self, i: u64, block: Arc<Vec<u8>>) {
        self.clock += 1;
        self.bytes += block.len() as u64;
        if let Some((old, _)) = self.map.insert(i, (block, self.clock)) {
            self.bytes -= old.len() as u64;
        }
        while self.bytes > CACHE_BYTES {
            // Least recently used first; a few thousand blocks at most, so a scan is fine.
            let Some((&oldest, _)) = self.map.iter().min_by_key(|(_, (_, used))| *used) else {
                break;
            };
            if let Some((b, _)) = self.map.remove(&oldest) {
                self.bytes -= b.len() as u64;
            }
        }
    }

    /// Forgets blocks from index `from` on.
    fn drop_from(&mut self, from: u64) {
        let gone: Vec<u64> = self.map.keys().copied().filter(|&i| i >= from).collect();
        for i in gone {
            if let Some((b, _)) = self.map.remove(&i) {
                self.bytes -= b.len() as u64;
            }
        }
    }
}

/// A [`ByteSource`] over a [`Fetch`], with a block cache. `on_read` is told the size of every
/// read (the worker's progress reports count them).
pub struct CachedSource<F> {
    fetch: F,
    len: AtomicU64,
    blocks: Mutex<Blocks>,
    on_read: fn(u64),
}

impl<F: Fetch> CachedSource<F> {
    pub fn new(fetch: F, len: u64, on_read: fn(u64)) -> Self {
        CachedSource { fetch, len: AtomicU64::new(len), blocks: Mutex::default(), on_read }
    }

    /// The source is now `len` bytes long (a recording being written grew): the block that
    /// was its partial last one is read again when asked for.
    pub fn set_len(&self, len: u64) {
        let old = self.len.swap(len, Ordering::Relaxed);
        if old != len {
            let from = if len < old { 0 } else { old / BLOCK };
            self.lock().drop_from(from);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        // A panic while the lock is held leaves whole blocks behind: still usable.
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches blocks `first..=last` in one read and keeps them.
    fn fill(&self, first: u64, last: u64, len: u64) -> Result<Vec<Arc<Vec<u8>>>, Error> {
        let from = first * BLOCK;
        let to = ((last + 1) * BLOCK).min(len);
        let bytes = self.fetch.fetch(from, to - from).map_err(Error::Read)?;
        let blocks: Vec<Arc<Vec<u8>>> =
            bytes.chunks(BLOCK as usize).map(|c| Arc::new(c.to_vec())).collect();
        let mut cache = self.lock();
        for (k, b) in blocks.iter().enumerate() {
            cache.put(first + k as u64, Arc::clone(b));
        }
        Ok(blocks)
    }
}

impl<F: Fetch> ByteSource for CachedSource<F> {
    fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        (self.on_read)(len as u64);
        let size = self.len();
        let end = offset.saturating_add(len as u64).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut i = first;
        while i <= last {
            let cached = self.lock().get(i);
            let run = match cached {
                Some(block) => vec![block],
                None => {
                    // One read for this block and the missing ones right after it.
                    let mut j = i;
                    while j < last && !self.lock().map.contains_key(&(j + 1)) {
                        j += 1;
                    }
                    self.fill(i, j, size)?
                }
            };
            for block in &run {
                let start = i * BLOCK;
                let a = offset.max(start) - start;
                let b = (end.min(start + BLOCK) - start).min(block.len() as u64);
                if a < b {
                    out.extend_from_slice(&block[a as usize..b as usize]);
                }
                if (block.len() as u64) < BLOCK {
                    // The source ended early (it is shorter than it said): stop there.
                    return Ok(out);
                }
                i += 1;
            }
            if run.is_empty() {
                return Ok(out);
            }
        }
        Ok(out)
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
    use super::*;

    /// A fake remote file that counts requests and bytes.
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
    fn reads_come_back_exact_and_blocks_are_fetched_once() {
        let r = remote(10 * BLOCK as usize + 100);
        let src = CachedSource::new(Arc::clone(&r), r.data.len() as u64, ignore);
        let want = |a: usize, n: usize| r.data[a..(a + n).min(r.data.len())].to_vec();
        assert_eq!(src.read_at(10, 20).unwrap(), want(10, 20));
        assert_eq!(src.read_at(BLOCK - 5, 10).unwrap(), want(BLOCK as usize - 5, 10));
        assert_eq!(*r.reads.lock().unwrap(), [(0, BLOCK), (BLOCK, BLOCK)]);
        // Across cached and missing blocks: only the missing run is fetched, in one read.
        assert_eq!(src.read_at(100, 4 * BLOCK as usize).unwrap(), want(100, 4 * BLOCK as usize));
        assert_eq!(r.reads.lock().unwrap()[2], (2 * BLOCK, 3 * BLOCK));
        // Past the end: what is there.
        let tail = src.read_at(10 * BLOCK + 50, 1000).unwrap();
        assert_eq!(tail, want(10 * BLOCK as usize + 50, 1000));
        assert_eq!(src.read_at(u64::MAX - 3, 10).unwrap(), Vec::<u8>::new());
        let fetched: u64 = r.reads.lock().unwrap().iter().map(|r| r.1).sum();
        assert_eq!(fetched, 5 * BLOCK + 100, "each block once");
    }

    #[test]
    fn a_growing_source_refetches_its_old_last_block() {
        let r = remote(3 * BLOCK as usize);
        let src = CachedSource::new(Arc::clone(&r), BLOCK + 10, ignore);
        assert_eq!(src.read_at(BLOCK, 100).unwrap().len(), 10, "only 10 bytes known");
        src.set_len(3 * BLOCK);
        assert_eq!(src.read_at(BLOCK, 100).unwrap(), r.data[BLOCK as usize..][..100]);
        assert_eq!(r.reads.lock().unwrap().len(), 2, "the partial block was fetched again");
    }

    #[test]
    fn memory_stays_bounded() {
        let n = (CACHE_BYTES / BLOCK) as usize + 40;
        let r = remote(n * BLOCK as usize);
        let src = CachedSource::new(Arc::clone(&r), r.data.len() as u64, ignore);
        for i in 0..n as u64 {
            src.read_at(i * BLOCK, 1).unwrap();
        }
        assert!(src.lock().bytes <= CACHE_BYTES);
        // The oldest blocks went first.
        src.read_at(0, 1).unwrap();
        assert_eq!(r.reads.lock().unwrap().len(), n + 1);
    }

    #[test]
    fn a_failed_fetch_is_a_read_error() {
        let r = Arc::new(Remote {
            broken_at: Some(13 * BLOCK),
            ..Arc::into_inner(remote(20 << 16)).unwrap()
        });
        let src = CachedSource::new(Arc::clone(&r), r.data.len() as u64, ignore);
        let err = src.read_at(13 * BLOCK + 5, 10).unwrap_err();
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
