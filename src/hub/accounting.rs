//! The daemon-wide bound on message bytes held (`--max-memory`).
//!
//! Every message payload reserves its length here when it enters the daemon
//! and gives it back when the last copy of it is dropped (see
//! [`crate::hub::message::Payload`]), so the figure covers queued messages,
//! messages parked in blocked sends and the unread rest of partly read ones.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::hub::errno::{Errno, Result};

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `n` bytes, or fails with `ENOBUFS` when that would pass the limit.
    pub fn reserve(&self, n: usize) -> Result<()> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.checked_add(n).ok_or(Errno::ENOBUFS)?;
            if next > self.limit {
                return Err(Errno::ENOBUFS.because("--max-memory would be passed"));
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    pub fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_up_to_the_limit_then_enobufs() {
        let m = MemoryBudget::new(100);
        assert!(m.reserve(60).is_ok());
        assert!(m.reserve(40).is_ok());
        assert_eq!(m.reserve(1), Err(Errno::ENOBUFS.into()));
        m.release(50);
        assert_eq!(m.used(), 50);
        assert!(m.reserve(50).is_ok());
        assert_eq!(m.reserve(usize::MAX), Err(Errno::ENOBUFS.into()));
    }
}
