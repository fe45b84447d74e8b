//! Open descriptors: what each one is (a `recv` with its place in the
//! current message, a `send` with its receipts, a status or policy
//! snapshot), who opened it, and its poll registration.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::accounting::Charge;
use super::framing::Framing;
use super::message::Message;
use super::process::Process;
use super::receipts::ReceiptBook;
use super::receiver_rule::Role;
use super::reply::Outcome;
use super::waiters::ReadBehind;
use super::{ChanKey, MailboxId};

/// The part of a message a `recv` descriptor is reading.
#[derive(Default)]
pub struct Cursor {
    pub current: Option<(Message, usize)>,
    /// The whole message has been returned; the next read returns 0.
    pub eof: bool,
}

impl Cursor {
    /// Answers a read from what the descriptor already holds, if it can.
    ///
    /// Files are opened `FOPEN_STREAM`: each `read(2)` arrives at offset 0,
    /// and only the continuation requests of one large `read(2)` (sent by the
    /// kernel when the previous request was filled completely) have offsets
    /// above 0. A continuation never starts a new message nor consumes the
    /// end-of-file that follows one.
    pub fn serve(&mut self, offset: u64, size: u32) -> Option<Outcome> {
        if let Some((msg, pos)) = &mut self.current {
            let end = msg.len().min(*pos + size as usize);
            let out = Outcome::Slice(Arc::clone(&msg.payload), *pos..end);
            *pos = end;
            if end == msg.len() {
                self.current = None;
                self.eof = true;
            }
            return Some(out);
        }
        if self.eof {
            if offset == 0 {
                self.eof = false;
            }
            return Some(Outcome::empty());
        }
        (offset > 0).then(Outcome::empty)
    }

    pub fn partial(&self) -> bool {
        self.current.as_ref().is_some_and(|(_, pos)| *pos > 0)
    }
}

pub enum HandleKind {
    Recv {
        chan: ChanKey,
        cursor: Cursor,
        /// A read of this descriptor waits on the channel.
        reading: bool,
        behind: VecDeque<ReadBehind>,
    },
    Send {
        chan: ChanKey,
        receipts: Option<ReceiptBook>,
        /// Opened `O_APPEND`: the kernel puts each write at the file's
        /// size, so its offset says nothing about continuations.
        append: bool,
    },
    /// `packets` or `batch`: whole messages, read from `recv` and written
    /// to `send` (the same channel for a mailbox, the two directions for a
    /// link), as the descriptor was opened.
    Framed {
        recv: Option<ChanKey>,
        send: Option<ChanKey>,
        /// Which of the two: [`Framing::Packet`] or [`Framing::Batch`].
        framing: Framing,
        /// Opened `O_APPEND` (see `Send`).
        append: bool,
    },
    /// A status file's text, taken at open, or the empty file a copier
    /// reads in place of a message file (opened with `Access::copy`).
    Snapshot(Vec<u8>),
    /// A policy file: its text at open; writes set `of` (None: the root).
    Policy {
        of: Option<MailboxId>,
        text: Vec<u8>,
    },
}

pub struct Handle {
    pub owner: Process,
    /// The user who opened it: what it sends is charged to that user.
    pub uid: u32,
    /// What the descriptor holds of the memory bound.
    _charge: Charge,
    pub kind: HandleKind,
    /// The kernel's poll handle for this descriptor, once it has polled.
    pub poll: Option<u64>,
}

/// Every open descriptor, by the handle number given to the kernel.
#[derive(Default)]
pub struct Handles {
    map: HashMap<u64, Handle>,
    last: u64,
}

impl HandleKind {
    /// The channels this descriptor is open on: (channel, reads from it).
    pub fn channels(&self) -> Vec<(ChanKey, bool)> {
        match self {
            HandleKind::Recv { chan, .. } => vec![(*chan, true)],
            HandleKind::Send { chan, .. } => vec![(*chan, false)],
            HandleKind::Framed { recv, send, .. } => {
                let mut out: Vec<(ChanKey, bool)> = recv.iter().map(|k| (*k, true)).collect();
                out.extend(
                    send.iter()
                        .filter(|k| Some(**k) != *recv)
                        .map(|k| (*k, false)),
                );
                out
            }
            HandleKind::Snapshot(_) | HandleKind::Policy { .. } => Vec::new(),
        }
    }
}

impl Handles {
    /// Records a new descriptor; handle numbers grow, so they give the
    /// order of opening.
    pub fn insert(&mut self, owner: Process, uid: u32, kind: HandleKind, charge: Charge) -> u64 {
        self.last += 1;
        self.map.insert(
            self.last,
            Handle {
                owner,
                uid,
                _charge: charge,
                kind,
                poll: None,
            },
        );
        self.last
    }

    /// The number of the newest descriptor.
    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn get(&self, h: u64) -> Option<&Handle> {
        self.map.get(&h)
    }

    pub fn get_mut(&mut self, h: u64) -> Option<&mut Handle> {
        self.map.get_mut(&h)
    }

    pub fn remove(&mut self, h: u64) -> Option<Handle> {
        self.map.remove(&h)
    }

    /// The `recv` descriptor `h`'s parts, if that is what it is.
    pub fn recv_mut(&mut self, h: u64) -> Option<&mut HandleKind> {
        self.map
            .get_mut(&h)
            .map(|hd| &mut hd.kind)
            .filter(|k| matches!(k, HandleKind::Recv { .. }))
    }

    /// The receipts of the read-write `send` descriptor `h`.
    /// The receipts of every read-write `send` descriptor of mailbox `id`.
    pub fn receipts_on(&mut self, id: MailboxId) -> impl Iterator<Item = &mut ReceiptBook> {
        self.map
            .values_mut()
            .filter_map(move |h| match &mut h.kind {
                HandleKind::Send {
                    chan: ChanKey::Mailbox(m),
                    receipts: Some(book),
                    ..
                } if *m == id => Some(book),
                _ => None,
            })
    }

    pub fn receipts_mut(&mut self, h: u64) -> Option<&mut ReceiptBook> {
        match self.map.get_mut(&h).map(|hd| &mut hd.kind) {
            Some(HandleKind::Send {
                receipts: Some(book),
                ..
            }) => Some(book),
            _ => None,
        }
    }

    /// The processes that have mailbox `id`'s `send` or `recv` open, in the
    /// order they opened it.
    pub fn openers(&self, id: MailboxId) -> Vec<(Process, Role)> {
        let mut open: Vec<(u64, Process, Role)> = self
            .map
            .iter()
            .filter_map(|(h, hd)| match hd.kind {
                HandleKind::Recv {
                    chan: ChanKey::Mailbox(m),
                    ..
                } if m == id => Some((*h, hd.owner, Role::Recv)),
                HandleKind::Send {
                    chan: ChanKey::Mailbox(m),
                    ..
                } if m == id => Some((*h, hd.owner, Role::Send)),
                HandleKind::Framed { recv, send, .. }
                    if recv == Some(ChanKey::Mailbox(id)) || send == Some(ChanKey::Mailbox(id)) =>
                {
                    let role = if recv.is_some() {
                        Role::Recv
                    } else {
                        Role::Send
                    };
                    Some((*h, hd.owner, role))
                }
                _ => None,
            })
            .collect();
        open.sort_by_key(|(h, ..)| *h);
        open.into_iter().map(|(_, p, role)| (p, role)).collect()
    }
}
