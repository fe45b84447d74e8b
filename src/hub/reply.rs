//! The answers the core gives requests, and what it leaves to do once its
//! lock is released.
//!
//! A request is answered at once or, if it must wait, later, from whichever
//! thread changes the state it waits for (see [`super::waiters`]): either
//! way through a [`Replier`]. The core does not know FUSE: a reply is
//! anything that implements that trait. Replies are collected in
//! [`Effects`] while the lock is held and sent once it is released.

use std::ops::Range;
use std::sync::Arc;

use crate::hub::errno::{Errno, Refusal};
use crate::hub::message::{Message, Payload, ReceiptTag};
use crate::hub::process::Process;
use crate::hub::waiters::{RecvWait, WaiterId};

/// What a parked or immediate request is answered with.
#[derive(Debug)]
pub enum Outcome {
    /// Part of a message's bytes.
    Slice(Arc<Payload>, Range<usize>),
    /// Bytes made for this answer (receipt lines, status text).
    Bytes(Vec<u8>),
    /// A write of this many bytes completed.
    Written(u32),
    Error(Refusal),
}

impl Outcome {
    pub fn empty() -> Outcome {
        Outcome::Bytes(Vec::new())
    }

    /// The bytes a read is answered with, if this is data.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Outcome::Slice(p, r) => Some(&p.bytes()[r.clone()]),
            Outcome::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The way back to whoever made a request.
pub trait Replier: Send {
    fn reply(self: Box<Self>, outcome: Outcome);
}

/// What an operation on the core leaves to do once its lock is released,
/// and the hand-overs the core itself must finish first.
#[derive(Default)]
pub struct Effects {
    pub replies: Vec<(Box<dyn Replier>, Outcome)>,
    /// Replies sent after all others: the writer whose message woke a
    /// reader is answered after that reader, who is the one waiting.
    pub last: Vec<(Box<dyn Replier>, Outcome)>,
    /// Poll handles to notify.
    pub notify: Vec<u64>,
    /// Messages handed to blocked readers; the reader's handle takes them.
    pub handoffs: Vec<(RecvWait, Message)>,
    /// Receipts to fill in: the receiving pid, or why the message was lost.
    pub receipts: Vec<(ReceiptTag, Result<u32, Errno>)>,
    /// What an operation on a broker's mailbox leaves (boxed: local
    /// operations carry one empty pointer).
    pub remote: Option<Box<RemoteEffects>>,
    /// Receipts to forget: their write failed, nothing was sent.
    pub cancelled: Vec<ReceiptTag>,
    /// Waiters that left their queue.
    pub unparked: Vec<WaiterId>,
    /// Requests interrupted before they parked: to look at once the lock
    /// is released.
    pub suspects: Vec<WaiterId>,
    /// Processes whose exit the core must learn of (link ends, `pair` and
    /// `exclusive` members): to watch once the lock is released.
    pub watch: Vec<Process>,
}

/// What an operation on a broker's mailbox leaves to do (ipcfs(7), ACROSS
/// HOSTS).
#[derive(Default)]
pub struct RemoteEffects {
    /// Receipts of messages taken on another node: the pid and node of
    /// the receiver.
    pub receipts_on: Vec<(ReceiptTag, u32, std::sync::Arc<str>)>,
    /// Work for broker threads, once the lock is released.
    pub later: Vec<crate::hub::remote::Job>,
    /// Work for the broker's timer, due this long from now
    /// (acknowledgements, interrupted writes).
    pub soon: Vec<(std::time::Duration, crate::hub::remote::Job)>,
}

impl Effects {
    /// What is left to do for a broker's mailbox.
    pub fn remote(&mut self) -> &mut RemoteEffects {
        self.remote.get_or_insert_with(Default::default)
    }

    pub fn reply(&mut self, to: Box<dyn Replier>, outcome: Outcome) {
        self.replies.push((to, outcome));
    }

    /// Answers the parked request `id`, which leaves its queue.
    pub fn answer(&mut self, id: WaiterId, to: Box<dyn Replier>, outcome: Outcome) {
        self.unparked.push(id);
        self.replies.push((to, outcome));
    }

    /// Answers after every other reply (see [`Effects::last`]).
    pub fn reply_last(&mut self, to: Box<dyn Replier>, outcome: Outcome) {
        self.last.push((to, outcome));
    }

    /// Sends the replies and notifications. Call without holding the core's lock.
    pub fn run(self, notify: &dyn Fn(u64)) {
        for (to, outcome) in self.replies.into_iter().chain(self.last) {
            to.reply(outcome);
        }
        for kh in self.notify {
            notify(kh);
        }
    }
}
