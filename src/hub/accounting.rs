//! The bound on what the daemon holds (`--max-memory`), and each user's
//! share of it.
//!
//! Everything a caller can make the daemon keep is charged here for as long
//! as it exists, with a [`Charge`] that gives itself back when dropped: each
//! message its bytes plus [`MESSAGE_OVERHEAD`] (until its last copy goes),
//! each mailbox, each direct link, each open descriptor and each parked
//! request a fixed cost that covers what it takes of the daemon's memory,
//! each unread receipt, and each process whose exit the daemon watches
//! (a pidfd: [`watch_cost`], so that the bound bounds descriptors too). Past the bound, the operation that would pass it
//! fails with `ENOBUFS` (`ENOSPC` for `mkdir`).
//!
//! Users other than root and the user who mounted (the exempt) are held to
//! shares: each to `per_user` bytes, and all of them together to
//! `others_total` (three quarters of the bound), so that no user can take
//! what the others need, and the mount's owner and root always find room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::hub::errno::{Errno, Result};

/// What a message costs beyond its bytes: its queue slot, its bookkeeping
/// and the allocator's overhead, as measured (about 160 bytes a message).
pub const MESSAGE_OVERHEAD: usize = 192;
/// What an open descriptor costs the daemon.
pub const HANDLE_COST: usize = 1024;
/// What a direct link (one direction's channel) costs the daemon.
pub const LINK_COST: usize = 2048;
/// What a parked request costs the daemon (its waiter and its reply).
pub const PARK_COST: usize = 512;
/// What status and policy snapshots may hold past the bound, so that a
/// full daemon can still be looked at (64 descriptors of 1 KiB).
pub const SNAPSHOT_OVERDRAFT: usize = 64 * 1024;

/// Descriptors the daemon keeps for itself out of `RLIMIT_NOFILE`, beside
/// one per event-loop thread: its standard streams, epoll, the short-lived
/// pidfds and `/proc` files it opens to answer requests, the logger.
pub const FD_RESERVE: u64 = 64;

/// What watching one process's exit costs (it holds a pidfd until the
/// process exits): at least a descriptor's [`HANDLE_COST`], and enough
/// that `max_memory` in watches takes no more than the descriptors the
/// daemon can spare (`nofile`, its `RLIMIT_NOFILE`, less [`FD_RESERVE`]
/// and one per event-loop thread). A user held to a quarter of the bound
/// can then hold at most about a quarter of those descriptors, and all
/// other users together three quarters.
pub fn watch_cost(max_memory: usize, nofile: u64, threads: usize) -> usize {
    let usable = nofile.saturating_sub(FD_RESERVE + threads as u64).max(1);
    let per_fd = (max_memory as u64).div_ceil(usable);
    usize::try_from(per_fd)
        .unwrap_or(usize::MAX)
        .max(HANDLE_COST)
}

/// Who is held to a share, and how much.
#[derive(Clone, Copy, Debug)]
pub struct Shares {
    /// Users not held to shares: root and the user who mounted.
    pub exempt: [u32; 2],
    /// The most one other user may hold.
    pub per_user: usize,
    /// The most all other users together may hold.
    pub others_total: usize,
}

#[derive(Debug, Default)]
struct Held {
    by_user: HashMap<u32, usize>,
    others: usize,
}

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    shares: Option<Shares>,
    held: Mutex<Held>,
    /// What snapshots hold past the bound.
    overdraft: AtomicUsize,
}

/// A part of the budget held by `uid`; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    uid: u32,
    bytes: usize,
    /// Held past the bound (a snapshot's).
    overdraft: bool,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.overdraft {
            self.budget
                .overdraft
                .fetch_sub(self.bytes, Ordering::Relaxed);
        } else {
            self.budget.release_for(self.uid, self.bytes);
        }
    }
}

impl MemoryBudget {
    /// A bound of `limit` bytes for everyone together, no shares.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget::with_shares(limit, None)
    }

    pub fn with_shares(limit: usize, shares: Option<Shares>) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            shares,
            held: Mutex::new(Held::default()),
            overdraft: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// What `uid` holds, if it is held to a share.
    pub fn used_by(&self, uid: u32) -> usize {
        self.lock().by_user.get(&uid).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `n` bytes of the bound (for no user in particular), or
    /// fails with `ENOBUFS` when that would pass it.
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

    fn share_of(&self, uid: u32) -> Option<Shares> {
        self.shares.filter(|s| !s.exempt.contains(&uid))
    }

    /// Reserves `n` bytes for `uid`, within its share.
    pub fn reserve_for(&self, uid: u32, n: usize) -> Result<()> {
        let Some(shares) = self.share_of(uid) else {
            return self.reserve(n);
        };
        let mut held = self.lock();
        let mine = held.by_user.get(&uid).copied().unwrap_or(0);
        if mine.saturating_add(n) > shares.per_user {
            return Err(Errno::ENOBUFS.because("this user's share of --max-memory is used up"));
        }
        if held.others.saturating_add(n) > shares.others_total {
            return Err(
                Errno::ENOBUFS.because("the part of --max-memory other users may hold is used up")
            );
        }
        self.reserve(n)?;
        *held.by_user.entry(uid).or_default() += n;
        held.others += n;
        Ok(())
    }

    pub fn release_for(&self, uid: u32, n: usize) {
        self.release(n);
        if self.share_of(uid).is_some() {
            let mut held = self.lock();
            held.others -= n;
            if let Some(mine) = held.by_user.get_mut(&uid) {
                *mine -= n;
                if *mine == 0 {
                    held.by_user.remove(&uid);
                }
            }
        }
    }

    /// Charges `n` bytes to `uid` until the returned [`Charge`] is dropped.
    pub fn charge(self: &Arc<Self>, uid: u32, n: usize) -> Result<Charge> {
        self.reserve_for(uid, n)?;
        Ok(Charge {
            budget: Arc::clone(self),
            uid,
            bytes: n,
            overdraft: false,
        })
    }

    /// Like [`MemoryBudget::charge`], for a status or policy snapshot: past
    /// the bound it may still hold up to [`SNAPSHOT_OVERDRAFT`] in all.
    pub fn charge_snapshot(self: &Arc<Self>, uid: u32, n: usize) -> Result<Charge> {
        let refused = match self.charge(uid, n) {
            Ok(charge) => return Ok(charge),
            Err(e) => e,
        };
        let over = self.overdraft.fetch_add(n, Ordering::Relaxed) + n;
        if over > SNAPSHOT_OVERDRAFT {
            self.overdraft.fetch_sub(n, Ordering::Relaxed);
            return Err(refused);
        }
        Ok(Charge {
            budget: Arc::clone(self),
            uid,
            bytes: n,
            overdraft: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_cost_enough_that_the_bound_bounds_descriptors() {
        // The defaults: 256 MiB, a hard limit of 1024, 2 threads.
        let cost = watch_cost(256 << 20, 1024, 2);
        assert_eq!(cost, (256usize << 20).div_ceil(1024 - 64 - 2));
        assert!((256 << 20) / cost <= 1024 - 64 - 2);
        // A quarter of the bound is at most a quarter of the descriptors.
        assert!((256 << 20) / 4 / cost <= (1024 - 66) / 4);
        // Plenty of descriptors: a descriptor's cost, no less.
        assert_eq!(watch_cost(256 << 20, 1 << 20, 2), HANDLE_COST);
        assert_eq!(
            watch_cost(1 << 30, 1 << 18, 2),
            (1usize << 30).div_ceil((1 << 18) - 66)
        );
        // No descriptor to spare: one watch takes the whole bound.
        assert_eq!(watch_cost(1 << 20, 10, 2), 1 << 20);
        assert_eq!(watch_cost(usize::MAX, 0, 64), usize::MAX);
    }

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

    #[test]
    fn users_are_held_to_their_shares_and_the_owner_always_finds_room() {
        let shares = Shares {
            exempt: [0, 1000],
            per_user: 30,
            others_total: 75,
        };
        let m = Arc::new(MemoryBudget::with_shares(100, Some(shares)));
        let a = m.charge(2000, 30).unwrap();
        assert_eq!(m.charge(2000, 1).map(drop), Err(Errno::ENOBUFS.into()));
        let _b = m.charge(2001, 30).unwrap();
        let _c = m.charge(2002, 15).unwrap();
        assert_eq!(
            m.charge(2003, 1).map(drop),
            Err(Errno::ENOBUFS.into()),
            "others hold three quarters"
        );
        // The owner and root still have the last quarter.
        let _o = m.charge(1000, 20).unwrap();
        let _r = m.charge(0, 5).unwrap();
        assert_eq!(m.used(), 100);
        drop(a);
        assert_eq!(m.used_by(2000), 0);
        assert_eq!(m.used(), 70);
        assert!(m.charge(2003, 30).is_ok());
    }
}
