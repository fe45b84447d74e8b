//! A channel of the model: a mailbox, or one direction of a direct link
//! (ipcfs(7) DIRECT LINKS: "Framing, blocking, capacity ... are the same as
//! for mailboxes"). Its queue, its receivers' own queues (broadcast
//! copies), the pair and the exclusive holder, the blocked readers and
//! senders in waiting order, and its counters; and the descriptors.

use std::collections::{BTreeMap, VecDeque};

use super::super::operations::Kind;
use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in super::super) struct Pol {
    pub(in super::super) rule: Rule,
    /// None: unlimited.
    pub(in super::super) capacity: Option<usize>,
    pub(in super::super) max: usize,
}

#[derive(Clone, Debug)]
pub(in super::super) struct Msg {
    /// Its place in the mailbox's send order.
    pub(in super::super) order: u64,
    pub(in super::super) bytes: Vec<u8>,
    /// The receipt it resolves: (descriptor, its number there).
    pub(in super::super) receipt: Option<Tag>,
}

/// A message's receipt: the `send` descriptor it was written to and its
/// number among the messages sent there.
pub(in super::super) type Tag = (usize, u64);

/// A blocked write (ipcfs(7) BLOCKING AND INTERRUPTS): its messages go in
/// together, when there is room for all.
#[derive(Clone, Debug)]
pub(in super::super) struct Sender {
    pub(in super::super) req: u64,
    pub(in super::super) fd: usize,
    pub(in super::super) pid: u32,
    pub(in super::super) msgs: Vec<Msg>,
    /// The byte count its write returns.
    pub(in super::super) written: u32,
}

/// How a blocked read takes a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in super::super) enum Shape {
    /// `recv`: any message, piece by piece.
    Stream,
    /// `packets`: a whole message that fits the buffer.
    Packet,
    /// `batch`: a whole message that fits the buffer with its header.
    Framed,
}

impl Shape {
    pub(in super::super) fn fits(self, len: usize, size: u32) -> bool {
        match self {
            Shape::Stream => true,
            Shape::Packet => len <= size as usize,
            Shape::Framed => 4 + len <= size as usize,
        }
    }
}

pub(in super::super) fn frame(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A blocked read.
#[derive(Clone, Debug)]
pub(in super::super) struct Wait {
    pub(in super::super) req: u64,
    pub(in super::super) fd: usize,
    pub(in super::super) reader: u32,
    pub(in super::super) size: u32,
    pub(in super::super) shape: Shape,
}

/// A process with `recv` open: how many descriptors, when it opened the
/// first, and its broadcast copies.
#[derive(Default)]
pub(in super::super) struct Receiver {
    pub(in super::super) opens: usize,
    pub(in super::super) since: u64,
    pub(in super::super) copies: VecDeque<Msg>,
}

pub(in super::super) struct Mbox {
    pub(in super::super) gone: bool,
    pub(in super::super) policy: Pol,
    pub(in super::super) shared: VecDeque<Msg>,
    pub(in super::super) receivers: BTreeMap<u32, Receiver>,
    /// Blocked reads, longest waiting first.
    pub(in super::super) waiters: VecDeque<Wait>,
    /// Blocked writes, first come first.
    pub(in super::super) senders: VecDeque<Sender>,
    /// A link direction: (from, to).
    pub(in super::super) link: Option<(u32, u32)>,
    /// A link whose sending process has exited.
    pub(in super::super) sender_gone: bool,
    /// A link whose receiving process has exited.
    pub(in super::super) receiver_gone: bool,
    pub(in super::super) pair: Vec<u32>,
    pub(in super::super) holder: Option<u32>,
    pub(in super::super) sent: u64,
    pub(in super::super) received: u64,
    pub(in super::super) dropped: u64,
    pub(in super::super) truncated: u64,
    /// Messages taken in so far (numbers their order).
    pub(in super::super) accepted: u64,
    /// `recv` opens so far (orders the receivers).
    pub(in super::super) opened: u64,
}

impl Mbox {
    pub(in super::super) fn new(policy: Pol) -> Mbox {
        Mbox {
            gone: false,
            policy,
            shared: VecDeque::new(),
            receivers: BTreeMap::new(),
            waiters: VecDeque::new(),
            senders: VecDeque::new(),
            link: None,
            sender_gone: false,
            receiver_gone: false,
            pair: Vec::new(),
            holder: None,
            sent: 0,
            received: 0,
            dropped: 0,
            truncated: 0,
            accepted: 0,
            opened: 0,
        }
    }

    /// How many more messages a queue of `queued` takes.
    pub(in super::super) fn free(&self, queued: usize) -> usize {
        self.policy
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(queued))
    }

    /// Does the rule let `pid` receive, with the processes bound now?
    pub(in super::super) fn allows_recv(&self, pid: u32) -> bool {
        match self.policy.rule {
            Rule::Arbitrary | Rule::Broadcast => true,
            Rule::Pair => self.pair.len() < 2 || self.pair.contains(&pid),
            Rule::Exclusive => self.holder.is_none_or(|h| h == pid),
        }
    }

    /// Does the rule let `pid` send, with the processes bound now?
    pub(in super::super) fn allows_send(&self, pid: u32) -> bool {
        self.policy.rule != Rule::Pair || self.pair.len() < 2 || self.pair.contains(&pid)
    }

    /// `pid` opens a descriptor that receives.
    pub(in super::super) fn open_recv(&mut self, pid: u32) {
        self.opened += 1;
        let since = self.opened;
        self.receivers
            .entry(pid)
            .or_insert_with(|| Receiver {
                since,
                ..Receiver::default()
            })
            .opens += 1;
    }

    /// Messages queued (shared, and every receiver's copies).
    pub(in super::super) fn queued(&self) -> impl Iterator<Item = &Msg> {
        self.shared
            .iter()
            .chain(self.receivers.values().flat_map(|r| r.copies.iter()))
    }

    /// Admits `pid` (receiving or sending), taking a pair slot or the
    /// exclusive hold; EBUSY when the rule refuses it.
    pub(in super::super) fn admit(&mut self, pid: u32, recv: bool) -> std::result::Result<(), i32> {
        match self.policy.rule {
            Rule::Arbitrary | Rule::Broadcast => Ok(()),
            Rule::Pair if self.pair.contains(&pid) => Ok(()),
            Rule::Pair if self.pair.len() < 2 => {
                self.pair.push(pid);
                Ok(())
            }
            Rule::Pair => Err(libc::EBUSY),
            Rule::Exclusive if !recv => Ok(()),
            Rule::Exclusive if self.holder.is_none_or(|h| h == pid) => {
                self.holder = Some(pid);
                Ok(())
            }
            Rule::Exclusive => Err(libc::EBUSY),
        }
    }

    /// The earliest process still receiving, other than `not`.
    pub(in super::super) fn earliest_receiver(&self, not: u32) -> Option<u32> {
        self.receivers
            .iter()
            .filter(|(p, _)| **p != not)
            .min_by_key(|(_, r)| r.since)
            .map(|(p, _)| *p)
    }

    /// Does `pid` take the next message from its own copies (rather than
    /// the shared queue)? The older of the two fronts goes first.
    pub(in super::super) fn own_first(&self, pid: u32) -> bool {
        let own = self
            .receivers
            .get(&pid)
            .and_then(|r| r.copies.front())
            .map(|m| m.order);
        let shared = self.shared.front().map(|m| m.order);
        match (own, shared) {
            (Some(o), Some(s)) => o < s,
            (o, _) => o.is_some(),
        }
    }

    /// The length of the next message `pid` would take: the older of its
    /// own copies and the shared queue, else (a rendezvous) the message of
    /// the first blocked sender.
    pub(in super::super) fn peek(&self, pid: u32) -> Option<usize> {
        if self.own_first(pid) {
            self.receivers[&pid].copies.front().map(|m| m.bytes.len())
        } else if let Some(m) = self.shared.front() {
            Some(m.bytes.len())
        } else if self.rendezvous() {
            Some(self.senders[0].msgs[0].bytes.len())
        } else {
            None
        }
    }

    /// May a reader that finds nothing queued take the message of the
    /// first blocked sender? ipcfs(7) BUFFERING, capacity=0: "the sender's
    /// write(2) completes only when a receiver has taken the message"; a
    /// batch goes in whole, so never one of its frames (PACKETS AND BATCH:
    /// "A reader never takes a single frame out of a blocked batch"). Not
    /// under broadcast, where a message is copied to every receiver.
    pub(in super::super) fn rendezvous(&self) -> bool {
        self.policy.rule != Rule::Broadcast
            && self.senders.front().is_some_and(|s| s.msgs.len() == 1)
    }

    /// Is there room for `n` messages, the largest `len` bytes? Free
    /// capacity plus the blocked readers that can take them; under
    /// broadcast with receivers, in every receiver's own queue.
    pub(in super::super) fn room(&self, n: usize, len: usize) -> bool {
        let fitting = |of: Option<u32>| {
            self.waiters
                .iter()
                .filter(|w| of.is_none_or(|p| w.reader == p) && w.shape.fits(len, w.size))
                .count()
        };
        if self.policy.rule == Rule::Broadcast && !self.receivers.is_empty() {
            self.receivers
                .iter()
                .all(|(p, r)| fitting(Some(*p)).saturating_add(self.free(r.copies.len())) >= n)
        } else {
            fitting(None).saturating_add(self.free(self.shared.len())) >= n
        }
    }

    pub(in super::super) fn status(&self) -> BTreeMap<String, String> {
        let pids = |l: &[u32]| {
            if l.is_empty() {
                "-".to_string()
            } else {
                l.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let (messages, bytes) = self
            .queued()
            .fold((0, 0), |(n, b), m| (n + 1, b + m.bytes.len()));
        let capacity = self
            .policy
            .capacity
            .map_or("unlimited".to_string(), |c| c.to_string());
        [
            ("policy", self.policy.rule.name().to_string()),
            ("capacity", capacity),
            ("max-message-size", self.policy.max.to_string()),
            ("messages", messages.to_string()),
            ("bytes", bytes.to_string()),
            ("receivers", self.receivers.len().to_string()),
            ("receivers-waiting", self.waiters.len().to_string()),
            ("senders-waiting", self.senders.len().to_string()),
            ("sent", self.sent.to_string()),
            ("received", self.received.to_string()),
            ("dropped", self.dropped.to_string()),
            ("truncated", self.truncated.to_string()),
            ("pair", pids(&self.pair)),
            ("holder", pids(self.holder.as_slice())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// An open (or closed) descriptor.
pub(in super::super) struct Fd {
    pub(in super::super) pid: u32,
    /// The channel its reads receive from (and, on a mailbox, its writes
    /// send to).
    pub(in super::super) mbox: usize,
    /// The channel its writes send to (a link's other direction).
    pub(in super::super) out: usize,
    /// A link's: the peer's pid.
    pub(in super::super) peer: Option<u32>,
    /// `send` opened read-write: its receipts.
    pub(in super::super) book: Option<Book>,
    pub(in super::super) kind: Kind,
    pub(in super::super) open: bool,
    /// `recv`: the message being read and how far.
    pub(in super::super) current: Option<(Vec<u8>, usize)>,
    /// `recv`: the whole message was returned; the next read gives 0.
    pub(in super::super) eof: bool,
    /// `recv`: a read of it is blocked on the mailbox.
    pub(in super::super) reading: bool,
    /// `recv`: reads blocked behind that one.
    pub(in super::super) behind: VecDeque<Wait>,
    /// `status`: the text it was opened with.
    pub(in super::super) snapshot: BTreeMap<String, String>,
}

impl Fd {
    /// Does it hold channel `c` open?
    pub(in super::super) fn holds(&self, c: usize) -> bool {
        self.open
            && self.kind != Kind::Status
            && ((self.kind.receives() && self.mbox == c) || (self.kind.sends() && self.out == c))
    }

    /// A read from the message in hand, if there is one (or its end of file).
    pub(in super::super) fn serve(&mut self, size: u32) -> Option<Vec<u8>> {
        if let Some((bytes, pos)) = self.current.take() {
            let end = bytes.len().min(pos + size as usize);
            let out = bytes[pos..end].to_vec();
            if end == bytes.len() {
                self.eof = true;
            } else {
                self.current = Some((bytes, end));
            }
            return Some(out);
        }
        if std::mem::take(&mut self.eof) {
            return Some(Vec::new());
        }
        None
    }
}
