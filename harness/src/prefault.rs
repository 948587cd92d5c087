//! Fault a dense file map in ahead of its reader, and drop it behind, on a helper thread.
//!
//! `qmig check FILE` reads one record header per 4 KiB page of a precopy stream, so most of
//! its cost is the kernel's: mapping every page of the file in, then tearing the map down.
//! `MAP_POPULATE` (like `MADV_POPULATE_READ`) does the first on the calling thread, and
//! walks every page through `get_user_pages` after faulting it; a first touch costs one
//! fault per fault-around window (16 pages by default) and no per-page walk.
//!
//! Here the map is cut into 2 MiB chunks aligned to the virtual address (one page-table
//! page, so one PTE lock, each) and a helper thread touches one byte per fault-around
//! window of each chunk, ahead of the reader. The reader never waits: when it reaches a
//! chunk nobody has touched, it touches the next untouched chunk itself before reading on,
//! so both CPUs share the faults without contending for a lock. When it is well ahead, the
//! helper drops the chunks the reader has left (`MADV_DONTNEED`); when the reader is done,
//! both threads drop the rest, so the teardown runs on both CPUs too.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// Chunk size: one page-table page of 4 KiB pages on x86-64 and aarch64 (4 KiB granule).
const CHUNK: usize = 2 << 20;
/// Touch stride: the kernel's default fault-around window (`fault_around_bytes`, 64 KiB),
/// so each touch is one fault that maps 16 pages. With a smaller window the pages in
/// between are faulted by the reader itself: slower, never wrong.
const STRIDE: usize = 64 << 10;
/// The helper drops chunks behind the reader only while it is at least this far ahead.
const AHEAD_MIN: usize = 8;
/// The helper touches no further than this ahead of the reader (bounds the resident set).
const AHEAD_MAX: usize = 64;
/// Chunks dropped per `madvise` (one TLB flush each).
const ZAP_BATCH: usize = 8;
/// Below this size a file is populated by the kernel at map time: a thread is not worth it.
const MIN_LEN: usize = 16 << 20;

/// Is a helper thread worth it for a dense map of `len` bytes (large enough, and a second
/// CPU to run on)? If not, populate the map at map time instead.
pub fn helps(len: u64) -> bool {
    len >= MIN_LEN as u64 && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

struct Shared<'m> {
    map: &'m memmap2::Mmap,
    /// Bytes from the 2 MiB boundary below the map's start to the start.
    skew: usize,
    /// Number of chunks.
    n: usize,
    /// Next chunk nobody has claimed to touch.
    next_fault: AtomicUsize,
    /// Chunks touched.
    ready: Vec<AtomicBool>,
    /// Chunk the reader is in (`n` once it is done).
    reader: AtomicUsize,
    /// Next chunk not yet dropped.
    next_zap: AtomicUsize,
    /// The helper has nothing to do and sleeps (the reader wakes it when it has).
    idle: AtomicBool,
}

impl Shared<'_> {
    fn range(&self, k: usize) -> (usize, usize) {
        let start = (k * CHUNK).saturating_sub(self.skew);
        let end = ((k + 1) * CHUNK - self.skew).min(self.map.len());
        (start.min(end), end)
    }

    fn chunk_of(&self, pos: u64) -> usize {
        (usize::try_from(pos).unwrap_or(usize::MAX).saturating_add(self.skew) / CHUNK).min(self.n)
    }

    /// Claim the next untouched chunk, if any is left.
    fn claim(&self) -> Option<usize> {
        self.next_fault.fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| (k < self.n).then_some(k + 1)).ok()
    }

    /// Touch one byte per [`STRIDE`] of chunk `k` (reads: the page cache fills the map).
    fn fault(&self, k: usize) {
        let (start, end) = self.range(k);
        let bytes: &[u8] = self.map;
        let mut acc = 0u8;
        for i in (start..end).step_by(STRIDE) {
            acc ^= bytes[i];
        }
        // The first chunk need not start on a window boundary: its last window may be left.
        if end > start {
            acc ^= bytes[end - 1];
        }
        black_box(acc);
        if let Some(r) = self.ready.get(k) {
            r.store(true, Ordering::Release);
        }
    }

    /// Drop up to [`ZAP_BATCH`] chunks below `limit`; false if there were none.
    fn zap_below(&self, limit: usize) -> bool {
        let limit = limit.min(self.n);
        let Ok(from) =
            self.next_zap.fetch_update(Ordering::AcqRel, Ordering::Acquire, |z| (z < limit).then_some((z + ZAP_BATCH).min(limit)))
        else {
            return false;
        };
        let to = (from + ZAP_BATCH).min(limit);
        let (start, _) = self.range(from);
        let (_, end) = self.range(to - 1);
        if end > start {
            drop_pages(self.map, start, end - start);
        }
        true
    }

    fn helper(&self) {
        loop {
            let r = self.reader.load(Ordering::Acquire);
            if r >= self.n {
                while self.zap_below(self.n) {}
                return;
            }
            let f = self.next_fault.load(Ordering::Acquire);
            let ahead = f.saturating_sub(r);
            // The reader may still look at the chunk before its own.
            if ahead >= AHEAD_MIN && self.zap_below(r.saturating_sub(1)) {
                continue;
            }
            if ahead < AHEAD_MAX {
                if let Some(k) = self.claim() {
                    self.fault(k);
                    continue;
                }
            }
            self.idle.store(true, Ordering::SeqCst);
            if self.reader.load(Ordering::SeqCst) == r {
                // The timeout only bounds a missed wake-up.
                std::thread::park_timeout(Duration::from_millis(1));
            }
            self.idle.store(false, Ordering::SeqCst);
        }
    }

    /// Would the helper find something to do with the reader in chunk `k`?
    fn work_for_helper(&self, k: usize) -> bool {
        let ahead = self.next_fault.load(Ordering::Acquire).saturating_sub(k);
        (ahead < AHEAD_MAX && ahead < self.n - k) || k.saturating_sub(1) >= self.next_zap.load(Ordering::Acquire) + ZAP_BATCH
    }
}

/// `MADV_DONTNEED` on part of a read-only shared file map: its page-table entries go, the
/// page cache stays, and the next read of those bytes faults the same file bytes back in.
#[allow(unsafe_code)]
fn drop_pages(map: &memmap2::Mmap, offset: usize, len: usize) {
    // SAFETY: `map` is a read-only MAP_SHARED map of a file (`MmapOptions::map`): it has no
    // private or anonymous pages whose contents MADV_DONTNEED could discard. Borrowed
    // slices of it stay valid and read the same file bytes (refaulted on the next access).
    // `offset..offset + len` lies inside the map (`Shared::range`). A failure only means
    // the pages stay mapped until the map is dropped.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

/// The reader's side: call [`Cursor::at`] with the offset about to be read.
pub struct Cursor<'s, 'm> {
    shared: Option<&'s Shared<'m>>,
    helper: Option<Thread>,
    /// First offset of the next chunk.
    next: Cell<u64>,
}

impl Cursor<'_, '_> {
    /// The reader is at `pos`: cheap unless it enters a new chunk.
    #[inline]
    pub fn at(&self, pos: u64) {
        if pos >= self.next.get() {
            self.enter(pos);
        }
    }

    #[cold]
    fn enter(&self, pos: u64) {
        let Some(sh) = self.shared else {
            self.next.set(u64::MAX);
            return;
        };
        let k = sh.chunk_of(pos);
        sh.reader.store(k, Ordering::SeqCst);
        // Chunks behind the reader are no longer worth touching.
        sh.next_fault.fetch_max(k, Ordering::AcqRel);
        // Not touched yet: take the next untouched chunk (this one, or one ahead while the
        // helper finishes this one) rather than wait or fault alongside the helper.
        while !sh.ready.get(k).is_none_or(|r| r.load(Ordering::Acquire)) {
            match sh.claim() {
                Some(j) => sh.fault(j),
                None => break,
            }
        }
        if let Some(t) = &self.helper {
            if sh.idle.load(Ordering::SeqCst) && sh.work_for_helper(k) {
                t.unpark();
            }
        }
        self.next.set(((k + 1) * CHUNK).saturating_sub(sh.skew) as u64);
    }
}

/// Run `read` over `map` with a helper thread faulting the map in ahead of it (when `dense`
/// and [`helps`]); `read` reports its position through the [`Cursor`]. When `read`
/// returns, the rest of the map is dropped by both threads.
pub fn read_with<R>(map: &memmap2::Mmap, dense: bool, read: impl FnOnce(&Cursor<'_, '_>) -> R) -> R {
    if !dense || !helps(map.len() as u64) {
        return read(&Cursor { shared: None, helper: None, next: Cell::new(u64::MAX) });
    }
    let skew = map.as_ptr() as usize % CHUNK;
    let n = (map.len() + skew).div_ceil(CHUNK);
    let sh = Shared {
        map,
        skew,
        n,
        next_fault: AtomicUsize::new(0),
        ready: (0..n).map(|_| AtomicBool::new(false)).collect(),
        reader: AtomicUsize::new(0),
        next_zap: AtomicUsize::new(0),
        idle: AtomicBool::new(false),
    };
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new().name("qmig-prefault".into()).spawn_scoped(s, || sh.helper()).ok();
        let cur = Cursor { shared: Some(&sh), helper: helper.as_ref().map(|h| h.thread().clone()), next: Cell::new(0) };
        let out = read(&cur);
        sh.reader.store(n, Ordering::Release);
        if let Some(t) = &cur.helper {
            t.unpark();
        }
        while sh.zap_below(n) {}
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pattern(i: usize) -> u8 {
        (i / 4096) as u8 ^ (i as u8).rotate_left(3)
    }

    /// Every byte reads back right while the helper faults ahead and drops behind, and
    /// after both have dropped the whole map.
    #[test]
    fn reads_through_prefault_and_drop() {
        let path = std::env::temp_dir().join(format!("qmig-prefault-{}.bin", std::process::id()));
        let len = MIN_LEN * 2 + 12345;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&(0..len).map(pattern).collect::<Vec<u8>>()).unwrap();
        drop(f);
        let (map, dense) = crate::replay::map_file_lazy(&path, false).unwrap();
        assert!(dense);
        let bytes: &[u8] = &map;
        let bad = read_with(&map, true, |cur| {
            let mut bad = 0;
            let mut pos = 0;
            while pos < len {
                cur.at(pos as u64);
                bad += usize::from(bytes[pos] != pattern(pos));
                pos += 4093;
            }
            bad
        });
        assert_eq!(bad, 0);
        assert!((0..len).step_by(511).all(|i| bytes[i] == pattern(i)));
        // A reader that stops early, or jumps past the end, is fine too.
        read_with(&map, true, |cur| {
            cur.at(3 << 20);
            cur.at(u64::MAX);
        });
        assert!((0..len).step_by(4099).all(|i| bytes[i] == pattern(i)));
        drop(map);
        let _ = std::fs::remove_file(&path);
    }
}
