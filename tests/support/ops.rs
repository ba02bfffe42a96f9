//! Ops for the distributed tests. They are linked into the test binaries
//! (which build graphs) and into `rask-test-worker` (which runs them): the
//! same names on both sides, as a user's own worker binary would have.

use rask::op;

op! {
    /// The tutorial's `inc`, taking `ms` milliseconds.
    pub fn slow_inc(x: i64, ms: i64) -> i64 {
        std::thread::sleep(std::time::Duration::from_millis(ms.max(0) as u64));
        x + 1
    }
}

op! {
    pub fn add(x: i64, y: i64) -> i64 { x + y }
}

op! {
    pub fn total(xs: Vec<i64>) -> i64 { xs.iter().sum() }
}

op! {
    /// Raises with a message of the caller's choosing.
    pub fn fail(message: String) -> Result<i64, String> { Err(message) }
}

op! {
    /// Takes down the whole worker process, as an out-of-memory kill would.
    pub fn crash(x: i64) -> i64 {
        eprintln!("crash({x}): aborting this worker process on purpose");
        std::process::abort()
    }
}

op! {
    /// The process id of the worker that ran it, after `ms` milliseconds.
    pub fn worker_pid(i: i64, ms: i64) -> i64 {
        std::thread::sleep(std::time::Duration::from_millis(ms.max(0) as u64));
        let _ = i;
        i64::from(std::process::id())
    }
}

op! {
    /// `n` bytes whose content depends on `seed`.
    pub fn block(seed: i64, n: i64) -> bytes::Bytes {
        // Byte i is (31 i + seed) mod 251: a period of 251, copied in runs.
        let period: Vec<u8> = (0..251).map(|i| ((i * 31 + seed) % 251) as u8).collect();
        let n = n.max(0) as usize;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let take = (n - out.len()).min(period.len());
            out.extend_from_slice(&period[..take]);
        }
        out.into()
    }
}

op! {
    /// The checksum `block` data must have: the sum of its bytes.
    pub fn checksum(b: bytes::Bytes) -> i64 {
        b.iter().map(|v| i64::from(*v)).sum()
    }
}

/// What `checksum(block(seed, n))` must return.
pub fn expected_checksum(seed: i64, n: i64) -> i64 {
    (0..n).map(|i| (i * 31 + seed) % 251).sum()
}

/// Called by binaries that only need the ops linked in.
pub fn link() {}
