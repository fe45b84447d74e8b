//! Parked requests. A read on an empty queue or a write into a full one is
//! not answered at once: it parks, and is answered later from whichever
//! thread changes the state it waits for; the core never blocks a thread on
//! a queue.
//!
//! What a parked request carries ([`RecvWait`], [`SendWait`],
//! [`ReceiptWait`], [`ReadBehind`]) is kept where it will be answered: in
//! its channel, its descriptor's receipts, or behind another read of its
//! descriptor. [`Waiters`] is the table of every parked request, by the
//! kernel's request id, with where it waits and which thread made it — the
//! one table an interrupt is looked up in; also the interrupts that came
//! early, and the requests kept waiting after a signal that does not end
//! calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::accounting::Charge;
use super::framing::Framing;
use super::message::Message;
use super::process::Process;
use super::reply::{Effects, Replier};
use super::{ChanKey, Io};

/// A parked request's id: the kernel's id of the request, which an
/// interrupt names.
pub type WaiterId = u64;

/// A blocked read of a `recv`, `packets` or `batch` file.
pub struct RecvWait {
    pub id: WaiterId,
    pub handle: u64,
    pub reader: Process,
    pub size: u32,
    pub framing: Framing,
    pub reply: Box<dyn Replier>,
}

/// A blocked write, with the messages it carries: one, or a batch's
/// frames, which go in together or not at all.
pub struct SendWait {
    pub id: WaiterId,
    pub msgs: Vec<Message>,
    /// The bytes the write is answered with once it completes.
    pub written: u32,
    pub reply: Box<dyn Replier>,
}

impl SendWait {
    pub fn sender(&self) -> Process {
        self.msgs[0].sender
    }
}

/// A blocked read of receipts on a read-write `send` descriptor.
pub struct ReceiptWait {
    pub id: WaiterId,
    pub size: u32,
    pub reply: Box<dyn Replier>,
}

/// A read of a `recv` descriptor that waits behind another blocked read
/// of the same descriptor (two threads, or a parent and child sharing it):
/// it goes on from where the first leaves the message.
pub struct ReadBehind {
    pub id: WaiterId,
    pub size: u32,
    pub reply: Box<dyn Replier>,
}

/// Where a blocked request waits.
#[derive(Clone, Copy)]
pub enum Place {
    /// On a channel; a read names its descriptor.
    Chan(ChanKey, Option<u64>),
    /// Behind another read of the same `recv` descriptor.
    Behind(u64),
    /// For a receipt, on a read-write `send` descriptor.
    Receipts(u64),
    /// A read or write of a mailbox kept by the broker (see
    /// [`super::remote`]).
    Remote(super::MailboxId),
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
