//! A channel: the queue between senders and receivers, with its blocked
//! readers and writers. Every mailbox has one; a direct link has one per
//! direction. Framing, blocking, capacity and rendezvous are the same for
//! both; who may receive is asked of [`crate::hub::receiver_rule`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::hub::errno::Errno;
use crate::hub::message::Message;
use crate::hub::policy::Policy;
use crate::hub::process::Process;
use crate::hub::receiver_rule::{self, Delivery, Membership, Role};
use crate::hub::reply::{Effects, Outcome};
use crate::hub::waiters::{RecvWait, SendWait, WaiterId};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub received: u64,
    pub dropped: u64,
    pub truncated: u64,
}

/// A process that has `recv` open, and the broadcast copies waiting for it.
#[derive(Default)]
struct Slot {
    opens: usize,
    /// When it opened `recv` first (grows with each new receiver).
    since: u64,
    copies: VecDeque<Message>,
}

/// For one direction of a direct link: whether its sending or its
/// receiving process has exited (the daemon learns it from a pidfd).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ends {
    pub sender_gone: bool,
    pub receiver_gone: bool,
}

/// A waiter taken out of a channel.
pub enum Removed {
    Recv(RecvWait),
    Send(SendWait),
}

pub struct Channel {
    pub policy: Policy,
    pub members: Membership,
    pub counters: Counters,
    /// Descriptors open on this channel.
    pub handles: usize,
    /// Only for links: which side has exited.
    pub ends: Ends,
    shared: VecDeque<Message>,
    receivers: BTreeMap<Process, Slot>,
    recv_waiters: VecDeque<RecvWait>,
    send_waiters: VecDeque<SendWait>,
    pollers: Vec<u64>,
    /// Numbers messages in the order their sends completed.
    accepted: u64,
    /// Numbers receivers in the order they opened `recv`.
    opened: u64,
}

/// The receipt of a message that was sent: who took it, or why it was lost.
fn receipt(fx: &mut Effects, msg: &Message, fate: Result<u32, Errno>) {
    if let Some(tag) = msg.receipt {
        fx.receipts.push((tag, fate));
    }
}

/// The size of the largest of `msgs`.
fn largest(msgs: &[Message]) -> usize {
    msgs.iter().map(Message::len).max().unwrap_or(0)
}

/// A blocked reader whose buffer cannot hold the message it would get.
fn too_small(w: RecvWait, fx: &mut Effects) {
    fx.answer(
        w.id,
        w.reply,
        Outcome::Error(Errno::EMSGSIZE.because("the next message is larger than the buffer")),
    );
}

/// The receipt of a message whose write failed: it was never sent.
fn unsent(fx: &mut Effects, msg: &Message) {
    if let Some(tag) = msg.receipt {
        fx.cancelled.push(tag);
    }
}

impl Channel {
    pub fn new(policy: Policy) -> Channel {
        Channel {
            policy,
            members: Membership::default(),
            counters: Counters::default(),
            handles: 0,
            ends: Ends::default(),
            shared: VecDeque::new(),
            receivers: BTreeMap::new(),
            recv_waiters: VecDeque::new(),
            send_waiters: VecDeque::new(),
            pollers: Vec::new(),
            accepted: 0,
            opened: 0,
        }
    }

    // ----- what is in it -------------------------------------------------

    fn queues(&self) -> impl Iterator<Item = &Message> {
        self.shared
            .iter()
            .chain(self.receivers.values().flat_map(|s| s.copies.iter()))
    }

    pub fn messages(&self) -> usize {
        self.queues().count()
    }

    pub fn bytes(&self) -> usize {
        self.queues().map(Message::len).sum()
    }

    pub fn receivers(&self) -> usize {
        self.receivers.len()
    }

    pub fn receivers_waiting(&self) -> usize {
        self.recv_waiters.len()
    }

    pub fn senders_waiting(&self) -> usize {
        self.send_waiters.len()
    }

    pub fn is_idle(&self) -> bool {
        self.handles == 0
            && self.messages() == 0
            && self.recv_waiters.is_empty()
            && self.send_waiters.is_empty()
    }

    // ----- poll ----------------------------------------------------------

    pub fn watch(&mut self, kh: u64) {
        if !self.pollers.contains(&kh) {
            self.pollers.push(kh);
        }
    }

    /// A descriptor that polled is closed: forget its poll handle.
    pub fn unwatch(&mut self, kh: u64) {
        self.pollers.retain(|k| *k != kh);
    }

    /// Something changed: wake every poller (the kernel polls again).
    pub fn changed(&mut self, fx: &mut Effects) {
        fx.notify.append(&mut self.pollers);
    }

    /// Is there a message `p` could receive without blocking?
    pub fn readable_for(&self, p: Process) -> bool {
        self.receivers.get(&p).is_some_and(|s| !s.copies.is_empty())
            || !self.shared.is_empty()
            || self.rendezvous_ready()
    }

    /// Would a send complete without blocking?
    pub fn writable(&self) -> bool {
        self.writable_for(1, 0)
    }

    /// Would a write of `n` messages, the largest `len` bytes, complete
    /// without blocking?
    pub fn writable_for(&self, n: usize, len: usize) -> bool {
        self.send_waiters.is_empty() && self.has_room_for(n, len)
    }

    // ----- policy --------------------------------------------------------

    /// Applies a new policy to a busy channel. When the rule changes, the
    /// processes that have it open (`openers`, in open order) seed the new
    /// rule's membership, and blocked readers and senders the new rule
    /// refuses are answered `EBUSY`; a larger capacity lets blocked senders
    /// in. Queued messages stay queued.
    pub fn set_policy(&mut self, new: Policy, openers: Vec<(Process, Role)>, fx: &mut Effects) {
        let rule_changed = self.policy.rule != new.rule;
        self.policy = new;
        if rule_changed {
            self.members.reseed(new.rule, openers);
            let members = self.members.clone();
            self.refuse_waiters(&|p, role| members.allows(new.rule, p, role), fx);
        }
        self.pump(fx);
        self.changed(fx);
    }

    /// May `p` act in `role` under this channel's rule? `alive` is asked
    /// only when the rule would refuse (see [`Membership::admit`]).
    pub fn admit(
        &mut self,
        p: Process,
        role: Role,
        alive: &dyn Fn(Process) -> bool,
    ) -> crate::hub::errno::Result<()> {
        self.members.admit(self.policy.rule, p, role, alive)
    }

    /// Frees the `pair`/`exclusive` slots of processes that have exited.
    pub fn prune_members(&mut self, alive: &dyn Fn(Process) -> bool) {
        let remaining = self.receivers_in_open_order();
        self.members.prune(alive, &remaining);
    }

    // ----- receivers -----------------------------------------------------

    /// `p` opens `recv`. Under `broadcast` a new receiver's empty queue may
    /// be the room a blocked sender waits for: it goes in at once.
    pub fn open_recv(&mut self, p: Process, fx: &mut Effects) {
        self.opened_recv(p);
        self.pump(fx);
    }

    fn opened_recv(&mut self, p: Process) {
        self.opened += 1;
        let since = self.opened;
        self.receivers
            .entry(p)
            .or_insert_with(|| Slot {
                since,
                ..Slot::default()
            })
            .opens += 1;
    }

    /// Processes with `recv` open, earliest first.
    fn receivers_in_open_order(&self) -> Vec<Process> {
        let mut all: Vec<(u64, Process)> =
            self.receivers.iter().map(|(p, s)| (s.since, *p)).collect();
        all.sort();
        all.into_iter().map(|(_, p)| p).collect()
    }

    /// `p` closed a `recv` descriptor; at its last, its unread broadcast
    /// copies are dropped and its exclusive hold passes on.
    pub fn close_recv(&mut self, p: Process, fx: &mut Effects) {
        let Some(slot) = self.receivers.get_mut(&p) else {
            return;
        };
        slot.opens -= 1;
        if slot.opens > 0 {
            return;
        }
        let slot = self.receivers.remove(&p).unwrap_or_default();
        for msg in &slot.copies {
            // Lost only if no other receiver still holds a copy of it.
            if Arc::strong_count(&msg.payload) == 1 {
                receipt(fx, msg, Err(Errno::EIDRM));
            }
        }
        self.counters.dropped += slot.copies.len() as u64;
        let remaining = self.receivers_in_open_order();
        self.members.recv_closed(p, &remaining);
        // Fewer receivers may mean room for blocked broadcast senders.
        self.pump(fx);
        self.changed(fx);
    }

    /// Processes with `recv` open, in no particular order.
    pub fn receiver_processes(&self) -> impl Iterator<Item = Process> + '_ {
        self.receivers.keys().copied()
    }

    // ----- sending -------------------------------------------------------

    /// How many more messages a queue of `queued` may take.
    fn free(&self, queued: usize) -> usize {
        self.policy
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(queued))
    }

    /// Can `n` messages, the largest `len` bytes, be taken in now (ignoring
    /// blocked senders ahead)? Blocked readers whose buffer holds `len`
    /// count as room, one message each.
    fn has_room_for(&self, n: usize, len: usize) -> bool {
        let fits = |w: &&RecvWait| w.framing.fits(len, w.size);
        match receiver_rule::delivery(self.policy.rule, self.receiver_processes()) {
            Delivery::One => {
                let waiting = self.recv_waiters.iter().filter(fits).count();
                waiting.saturating_add(self.free(self.shared.len())) >= n
            }
            Delivery::Each(all) => {
                let mut waiting: std::collections::HashMap<Process, usize> =
                    std::collections::HashMap::new();
                for w in self.recv_waiters.iter().filter(fits) {
                    *waiting.entry(w.reader).or_default() += 1;
                }
                all.iter().all(|p| {
                    let free = self.free(self.receivers[p].copies.len());
                    waiting.get(p).copied().unwrap_or(0).saturating_add(free) >= n
                })
            }
        }
    }

    /// The blocked reader (of `for_`, or of anyone) that gets a message of
    /// `len` bytes: the one that has waited longest. Those before it whose
    /// buffer cannot hold the message would have had it: `EMSGSIZE`.
    fn waiter_for(
        &mut self,
        for_: Option<Process>,
        len: usize,
        fx: &mut Effects,
    ) -> Option<RecvWait> {
        loop {
            let i = receiver_rule::pick_waiter(&self.recv_waiters, for_)?;
            let w = self.recv_waiters.remove(i).expect("waiter index");
            if w.framing.fits(len, w.size) {
                return Some(w);
            }
            too_small(w, fx);
        }
    }

    /// Answers `EMSGSIZE` to the blocked readers whose buffer cannot hold
    /// the next message, `len` bytes, held by a blocked sender.
    fn refuse_small_readers(&mut self, len: usize, fx: &mut Effects) {
        if self
            .recv_waiters
            .iter()
            .all(|w| w.framing.fits(len, w.size))
        {
            return;
        }
        let (keep, small): (VecDeque<_>, VecDeque<_>) = self
            .recv_waiters
            .drain(..)
            .partition(|w| w.framing.fits(len, w.size));
        self.recv_waiters = keep;
        for w in small {
            too_small(w, fx);
        }
    }

    /// Hands `msg` to `w`, a reader that was blocked.
    fn hand_to(&mut self, w: RecvWait, msg: Message, fx: &mut Effects) {
        fx.unparked.push(w.id);
        self.counters.received += 1;
        receipt(fx, &msg, Ok(w.reader.pid));
        fx.handoffs.push((w, msg));
    }

    /// Takes in a message: hands it to the longest-waiting reader or queues
    /// it (a copy per receiver under `broadcast`). Call only when there is
    /// room ([`Channel::writable`]).
    ///
    /// A reader is handed its message without asking whether it is being
    /// killed at this very moment: the kernel tells the daemon of signals
    /// (`FUSE_INTERRUPT`) only after the fact, so a message handed to a
    /// reader in the instant it is killed is lost with it, as bytes a pipe
    /// reader has taken are.
    pub fn accept(&mut self, mut msg: Message, fx: &mut Effects) {
        let delivery = receiver_rule::delivery(self.policy.rule, self.receiver_processes());
        let len = msg.len();
        debug_assert!(self.has_room_for(1, len));
        self.accepted += 1;
        msg.order = self.accepted;
        match delivery {
            Delivery::One => match self.waiter_for(None, len, fx) {
                Some(w) => self.hand_to(w, msg, fx),
                None => self.shared.push_back(msg),
            },
            Delivery::Each(all) => {
                // Each receiver's longest-waiting blocked reader takes its
                // copy; the others' copies are queued for them.
                let waiters = std::mem::take(&mut self.recv_waiters);
                let (taken, rest) = receiver_rule::first_waiter_of_each(waiters);
                self.recv_waiters = rest;
                let mut handed = std::collections::HashSet::with_capacity(taken.len());
                for w in taken {
                    let reader = w.reader;
                    let w = if w.framing.fits(len, w.size) {
                        Some(w)
                    } else {
                        too_small(w, fx);
                        self.waiter_for(Some(reader), len, fx)
                    };
                    if let Some(w) = w {
                        handed.insert(reader);
                        self.hand_to(w, msg.clone(), fx);
                    }
                }
                for p in all.into_iter().filter(|p| !handed.contains(p)) {
                    self.receivers
                        .get_mut(&p)
                        .expect("receiver slot")
                        .copies
                        .push_back(msg.clone());
                }
            }
        }
        self.counters.sent += 1;
        self.changed(fx);
    }

    /// Takes in the messages of a write together (a batch's frames: call
    /// only when [`Channel::writable_for`] all of them).
    pub fn accept_all(&mut self, msgs: Vec<Message>, fx: &mut Effects) {
        for msg in msgs {
            self.accept(msg, fx);
        }
    }

    pub fn park_sender(&mut self, w: SendWait, fx: &mut Effects) {
        self.send_waiters.push_back(w);
        self.pump(fx);
        self.changed(fx);
    }

    /// Lets blocked senders in, in order, while there is room; readers
    /// too small for the next blocked sender's message are told so.
    pub fn pump(&mut self, fx: &mut Effects) {
        while let Some(w) = self.send_waiters.front() {
            let (n, len) = (w.msgs.len(), largest(&w.msgs));
            if !self.has_room_for(n, len) {
                self.refuse_small_readers(len, fx);
                if !self.has_room_for(n, len) {
                    break;
                }
            }
            let w = self.send_waiters.pop_front().expect("sender");
            self.accept_all(w.msgs, fx);
            fx.answer(w.id, w.reply, Outcome::Written(w.written));
        }
    }

    // ----- receiving -----------------------------------------------------

    /// The next message for `p`, if one is there without waiting: the older
    /// of its own broadcast copies and the shared queue, else (rendezvous)
    /// the message of the first blocked sender.
    pub fn take(&mut self, p: Process, fx: &mut Effects) -> Option<Message> {
        let own = self
            .receivers
            .get(&p)
            .and_then(|s| s.copies.front())
            .map(|m| m.order);
        let shared = self.shared.front().map(|m| m.order);
        let msg = match (own, shared) {
            (Some(a), Some(b)) if b < a => self.shared.pop_front(),
            (Some(_), _) => self
                .receivers
                .get_mut(&p)
                .and_then(|s| s.copies.pop_front()),
            (None, Some(_)) => self.shared.pop_front(),
            (None, None) if self.rendezvous_ready() => {
                let mut w = self.send_waiters.pop_front()?;
                self.counters.sent += 1;
                let msg = w.msgs.pop();
                fx.answer(w.id, w.reply, Outcome::Written(w.written));
                msg
            }
            (None, None) => None,
        }?;
        self.counters.received += 1;
        receipt(fx, &msg, Ok(p.pid));
        self.pump(fx);
        self.changed(fx);
        Some(msg)
    }

    /// Whether a reader may take its message straight from the first blocked
    /// sender: a rendezvous (not under `broadcast`), of a single message
    /// (a batch goes in whole).
    fn rendezvous_ready(&self) -> bool {
        receiver_rule::takes_from_blocked_sender(self.policy.rule)
            && self.send_waiters.front().is_some_and(|w| w.msgs.len() == 1)
    }

    /// The length of the message [`Channel::take`] would give `p` now.
    pub fn peek_len(&self, p: Process) -> Option<usize> {
        let own = self.receivers.get(&p).and_then(|s| s.copies.front());
        let shared = self.shared.front();
        let next = match (own, shared) {
            (Some(a), Some(b)) if b.order < a.order => Some(b),
            (Some(a), _) => Some(a),
            (None, Some(b)) => Some(b),
            (None, None) if self.rendezvous_ready() => {
                self.send_waiters.front().map(|w| &w.msgs[0])
            }
            (None, None) => None,
        };
        next.map(Message::len)
    }

    /// Blocks a reader; a blocked sender may now hand it its message.
    pub fn park_receiver(&mut self, w: RecvWait, fx: &mut Effects) {
        self.recv_waiters.push_back(w);
        self.pump(fx);
        self.changed(fx);
    }

    // ----- leaving -------------------------------------------------------

    /// Takes a waiter out (its request was interrupted); a sender's message
    /// was not sent.
    pub fn remove_waiter(&mut self, id: WaiterId, fx: &mut Effects) -> Option<Removed> {
        let found = if let Some(i) = self.recv_waiters.iter().position(|w| w.id == id) {
            self.recv_waiters.remove(i).map(Removed::Recv)
        } else {
            let i = self.send_waiters.iter().position(|w| w.id == id)?;
            let w = self.send_waiters.remove(i)?;
            w.msgs.iter().for_each(|m| unsent(fx, m));
            // The senders behind it may fit where it did not (a smaller
            // batch, or a single message).
            self.pump(fx);
            Some(Removed::Send(w))
        };
        fx.unparked.push(id);
        self.changed(fx);
        found
    }

    /// Answers blocked readers with `err` (the peer of a link has gone).
    pub fn fail_readers(&mut self, err: Errno, fx: &mut Effects) {
        for w in self.recv_waiters.drain(..) {
            fx.answer(w.id, w.reply, Outcome::Error(err.into()));
        }
        self.changed(fx);
    }

    /// Answers blocked senders with `err` (their messages are not sent) and
    /// drops every queued message (their receipts end with `err`); returns
    /// how many were dropped.
    pub fn fail_senders_and_drop(&mut self, err: Errno, fx: &mut Effects) -> usize {
        for w in self.send_waiters.drain(..) {
            w.msgs.iter().for_each(|m| unsent(fx, m));
            fx.answer(w.id, w.reply, Outcome::Error(err.into()));
        }
        let mut dropped: Vec<Message> = self.shared.drain(..).collect();
        for slot in self.receivers.values_mut() {
            dropped.extend(slot.copies.drain(..));
        }
        for msg in &dropped {
            receipt(fx, msg, Err(err));
        }
        self.counters.dropped += dropped.len() as u64;
        self.changed(fx);
        dropped.len()
    }

    /// The channel is destroyed: every waiter gets `err`, every message is
    /// dropped. Returns how many messages were dropped.
    pub fn drain(&mut self, err: Errno, fx: &mut Effects) -> usize {
        self.fail_readers(err, fx);
        self.fail_senders_and_drop(err, fx)
    }

    /// The rule changed: blocked readers and senders of processes that
    /// `allowed` refuses are answered `EBUSY` (the senders' messages are not
    /// sent).
    fn refuse_waiters(&mut self, allowed: &dyn Fn(Process, Role) -> bool, fx: &mut Effects) {
        let (keep, refuse): (VecDeque<_>, VecDeque<_>) = self
            .recv_waiters
            .drain(..)
            .partition(|w| allowed(w.reader, Role::Recv));
        self.recv_waiters = keep;
        for w in refuse {
            fx.answer(
                w.id,
                w.reply,
                Outcome::Error(Errno::EBUSY.because("the new rule refuses this receiver")),
            );
        }
        let (keep, refuse): (VecDeque<_>, VecDeque<_>) = self
            .send_waiters
            .drain(..)
            .partition(|w| allowed(w.sender(), Role::Send));
        self.send_waiters = keep;
        for w in refuse {
            w.msgs.iter().for_each(|m| unsent(fx, m));
            fx.answer(
                w.id,
                w.reply,
                Outcome::Error(Errno::EBUSY.because("the new rule refuses this sender")),
            );
        }
        self.changed(fx);
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
