//! Parked requests: every blocked read, write and receipt read, by the
//! kernel's request id, with where it waits and which thread made it — the
//! one table an interrupt is looked up in. Also the interrupts that came
//! early, and the requests kept waiting after a signal that does not end
//! calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::accounting::Charge;
use super::waiter::{Effects, WaiterId};
use super::{ChanKey, Io};

/// Where a blocked request waits.
#[derive(Clone, Copy)]
pub enum Place {
    /// On a channel; a read names its descriptor.
    Chan(ChanKey, Option<u64>),
    /// Behind another read of the same `recv` descriptor.
    Behind(u64),
    /// For a receipt, on a read-write `send` descriptor.
    Receipts(u64),
}

#[derive(Clone, Copy)]
pub struct Parked {
    pub tid: u32,
    pub place: Place,
}

#[derive(Default)]
pub struct Waiters {
    /// Each with what it holds of the memory bound.
    parked: HashMap<WaiterId, (Parked, Charge)>,
    /// Parked requests whose interrupt came from a signal that does not end
    /// calls (`SIGCHLD`…): the kernel sends no second interrupt, so the
    /// watcher looks at these threads itself.
    kept: HashMap<WaiterId, u32>,
    /// Interrupts that arrived before their request parked (another
    /// event-loop thread had it), and when.
    early: HashMap<WaiterId, Instant>,
    /// Descriptors whose blocked channel read has ended while other reads
    /// wait behind it: the next of those goes on.
    pub resume: Vec<u64>,
}

impl Waiters {
    /// Records a parked request; one whose interrupt came first is looked
    /// at as soon as the lock is released.
    pub fn park(&mut self, io: &Io, place: Place, charge: Charge, fx: &mut Effects) {
        self.parked
            .insert(io.req, (Parked { tid: io.tid, place }, charge));
        if !self.early.is_empty() && self.early.remove(&io.req).is_some() {
            log::debug!("request {}: its interrupt came before it parked", io.req);
            fx.suspects.push(io.req);
        }
    }

    pub fn get(&self, id: WaiterId) -> Option<Parked> {
        self.parked.get(&id).map(|(p, _)| *p)
    }

    pub fn unpark(&mut self, id: WaiterId) -> Option<Parked> {
        self.parked.remove(&id).map(|(p, _)| p)
    }

    pub fn len(&self) -> usize {
        self.parked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    pub fn ids(&self) -> Vec<WaiterId> {
        self.parked.keys().copied().collect()
    }

    /// An interrupt for a request that has not parked (yet): kept a
    /// moment, in case the request parks after it.
    pub fn remember_early(&mut self, req: WaiterId) {
        let now = Instant::now();
        if self.early.len() >= 64 {
            self.early
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        }
        self.early.insert(req, now);
    }

    /// Request `id`, still parked, waits on after an interrupt.
    pub fn keep(&mut self, id: WaiterId, tid: u32) {
        self.kept.insert(id, tid);
    }

    /// The kept requests that are still parked, with their threads.
    pub fn kept(&mut self) -> Vec<(WaiterId, u32)> {
        let parked = &self.parked;
        self.kept.retain(|id, _| parked.contains_key(id));
        self.kept.iter().map(|(id, tid)| (*id, *tid)).collect()
    }
}
