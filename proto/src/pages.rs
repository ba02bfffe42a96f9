//! How the memory a value is received into gets its pages.
//!
//! rask's binaries let mimalloc ask for transparent huge pages
//! (`MADV_HUGEPAGE`) on all of its memory (`rask::alloc`), which pays off
//! for memory that is reused. A receive buffer is different: fresh memory,
//! written once, front to back, while the network delivers it. On a VM
//! whose host takes free guest memory back (virtio-balloon free page
//! reporting, as on the benchmark machine) the first touch of such memory as
//! 2 MiB pages stalls on the host: 0.3 GB/s, against 1.3–2.2 GB/s as 4 KiB
//! pages and 7–10 GB/s for huge pages the host still backs (memory another
//! process has just freed) (docs/BENCHMARKS.md, issue 6). A 1 GiB array
//! received by a fresh worker took 3 s, nearly all of it the kernel zeroing
//! huge pages.
//!
//! So [`Prefault`] maps a large receive buffer's pages itself, a 2 MiB run
//! just before the writer reaches it (`MADV_POPULATE_WRITE`: one system call
//! per run instead of a fault per page), timing each run: while runs come
//! fast it keeps the pages the allocator asked for, and at the first slow
//! run it asks for base pages (`MADV_NOHUGEPAGE`) for the rest of the
//! buffer. Pages already mapped (memory the allocator reuses) keep what they
//! have. Both are hints: where they fail or do not exist, the pages fault in
//! as they always did.

use std::time::Duration;

/// Buffers shorter than this are left as the allocator made them: they span
/// few huge pages, if any.
const SMALL_PAGES_BYTES: usize = 4 << 20;

/// The granularity of the advice and of pre-faulting: a huge page. Rounding
/// inwards to it keeps both inside the buffer on any base page size that
/// divides it.
const RUN: usize = 2 << 20;

/// A run that takes more of the thread's CPU time than this to map (under
/// 1 GB/s) is slow: huge pages the host must first give back take about
/// 7 ms, ones it still backs 0.2–0.3 ms, base pages about 0.7 ms. CPU time,
/// not wall time, so that a thread descheduled meanwhile (a busy machine)
/// does not look slow; where there is no thread clock, wall time.
const SLOW_RUN: Duration = Duration::from_millis(2);

/// Pre-faults a receive buffer's spare capacity a run at a time, just ahead
/// of the bytes written into it, switching to base pages once a run is slow.
#[derive(Debug)]
pub(crate) struct Prefault {
    /// The next address to map (a multiple of [`RUN`]); `end` when done or
    /// given up.
    next: usize,
    /// The end of the last whole run inside the buffer.
    end: usize,
    /// Runs are still mapped with the pages the allocator chose, one at a
    /// time and timed; false once the rest of the buffer asked for base
    /// pages.
    timing: bool,
}

impl Prefault {
    /// For a buffer of `capacity` bytes at `ptr` (memory this process owns,
    /// such as a vector's reserved capacity), not yet written past the
    /// start.
    pub(crate) fn new(ptr: *const u8, capacity: usize) -> Self {
        let start = (ptr as usize).next_multiple_of(RUN);
        let end = (ptr as usize).saturating_add(capacity) / RUN * RUN;
        if capacity < SMALL_PAGES_BYTES || end <= start {
            return Self { next: end, end, timing: false };
        }
        Self { next: start, end, timing: true }
    }

    /// Maps the pages the next write, `len` bytes at `at`, will land on,
    /// rounded out to whole runs inside the buffer.
    pub(crate) fn ahead(&mut self, at: *const u8, len: usize) {
        let upto = (at as usize).saturating_add(len).next_multiple_of(RUN).min(self.end);
        while self.next < upto {
            let until = if self.timing { self.next + RUN } else { upto };
            let began = Clock::now();
            if !advise(self.next, until - self.next, Advice::PopulateWrite) {
                // Not supported here (or no memory now): let pages fault in.
                self.next = self.end;
                return;
            }
            self.next = until;
            if self.timing && began.elapsed() > SLOW_RUN {
                tracing::debug!(
                    run_cpu_seconds = began.elapsed().as_secs_f64(),
                    bytes_left = self.end - self.next,
                    "slow fresh pages: the rest of the receive buffer asks for base pages"
                );
                self.timing = false;
                if self.next < self.end {
                    advise(self.next, self.end - self.next, Advice::NoHugePage);
                }
            }
        }
    }
}

/// The calling thread's CPU time when the platform gives it, else wall
/// time.
enum Clock {
    Thread(Duration),
    Wall(std::time::Instant),
}

impl Clock {
    fn now() -> Self {
        thread_cpu_time().map_or_else(|| Clock::Wall(std::time::Instant::now()), Clock::Thread)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Clock::Thread(began) => thread_cpu_time().map_or(Duration::ZERO, |now| now.saturating_sub(*began)),
            Clock::Wall(began) => began.elapsed(),
        }
    }
}

enum Advice {
    NoHugePage,
    PopulateWrite,
}

/// `madvise` on `len` bytes at `start` (both multiples of [`RUN`]); true
/// when the kernel took the advice.
#[cfg(target_os = "linux")]
fn advise(start: usize, len: usize, advice: Advice) -> bool {
    let advice = match advice {
        Advice::NoHugePage => libc::MADV_NOHUGEPAGE,
        Advice::PopulateWrite => libc::MADV_POPULATE_WRITE,
    };
    // SAFETY: neither advice changes the contents of memory or frees it:
    // MADV_NOHUGEPAGE only chooses the page size of later faults, and
    // MADV_POPULATE_WRITE maps pages as a write fault would, leaving pages
    // already mapped as they are. The range is page-aligned and inside a
    // buffer the caller owns; an error (EINVAL on kernels without the
    // advice) changes nothing.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, advice) };
    rc == 0
}

/// `CLOCK_THREAD_CPUTIME_ID`: the CPU time the calling thread has used.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `struct timespec` through the
    // pointer, which points at one.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u32::try_from(t.tv_nsec).ok().filter(|&n| n < 1_000_000_000)?;
    (rc == 0).then(|| Duration::new(secs, nanos))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: usize, _len: usize, _advice: Advice) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// Pre-faulting stays inside the buffer, follows the writer and leaves
    /// what was written alone, whatever the alignment, with the allocator's
    /// pages (timed runs) or base pages (after a slow run).
    #[test]
    fn prefaulting_follows_the_writer_and_keeps_the_data() {
        for offset in [0usize, 1, 4095] {
            for timing in [true, false] {
                let mut v: Vec<u8> = Vec::with_capacity(offset + (9 << 20));
                v.extend((0..offset).map(pattern));
                let base = v.as_ptr();
                let mut p = Prefault::new(base.wrapping_add(offset), v.capacity() - offset);
                assert!(p.next.is_multiple_of(RUN) && p.end.is_multiple_of(RUN) && p.next < p.end);
                assert!(p.next >= base as usize && p.end <= base as usize + v.capacity());
                if !timing {
                    // As after a slow run.
                    p.timing = false;
                    advise(p.next, p.end - p.next, Advice::NoHugePage);
                }
                while v.len() < v.capacity() {
                    let n = (v.capacity() - v.len()).min(300_000);
                    p.ahead(v.as_ptr().wrapping_add(v.len()), n);
                    assert!(p.next <= p.end);
                    let from = v.len();
                    v.extend((from..from + n).map(pattern));
                }
                assert_eq!(p.next, p.end);
                assert!(v.iter().enumerate().all(|(i, &b)| b == pattern(i)));
            }
        }
        // The thread clock runs while the thread works.
        let began = Clock::now();
        let wall = std::time::Instant::now();
        let mut x = 0u64;
        while began.elapsed() < Duration::from_millis(3) && wall.elapsed() < Duration::from_secs(10) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(x > 0 && began.elapsed() >= Duration::from_millis(3));
        // Small buffers are left alone.
        let v: Vec<u8> = Vec::with_capacity(1 << 20);
        let p = Prefault::new(v.as_ptr(), v.capacity());
        assert_eq!(p.next, p.end);
    }
}
