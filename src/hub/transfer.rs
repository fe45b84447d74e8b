//! What happens when a message is sent and received: reads, writes and
//! poll on open descriptors. A request that cannot be answered now is
//! parked (see [`super::waiters`]) and answered later by whichever
//! operation changes what it waits for.

use std::collections::HashMap;

use super::accounting::{Charge, PARK_COST};
use super::errno::{Errno, Refusal};
use log::{debug, warn};

use super::framing::{self, Framing};
use super::handles::HandleKind;
use super::handles::Handles;
use super::message::{Message, Payload, ReceiptTag};
use super::policy;
use super::process::Process;
use super::receipts::{ReceiptBook, ReceiptRead};
use super::receiver_rule::{self, Role};
use super::reply::{Effects, Outcome, Replier};
use super::tree::Tree;
use super::waiters::{Place, ReadBehind, ReceiptWait, RecvWait, SendWait, Waiters};
use super::{ChanKey, Hub, Io, MailboxId, State, chan_mut, check, gone};

/// A read that found nothing to receive: whose it is, where it would
/// wait, and whether it may.
struct Idle {
    uid: u32,
    place: Place,
    /// Nothing more will come: the peer has exited.
    ended: Option<Refusal>,
    shut_down: bool,
}

impl Hub {
    /// A read request of `size` bytes.
    pub fn read(&self, io: Io, size: u32, reply: Box<dyn Replier>) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        self.read_locked(&mut st, &mut fx, io, size, reply);
        self.finish(st, fx);
    }

    pub(super) fn read_locked(
        &self,
        st: &mut State,
        fx: &mut Effects,
        io: Io,
        size: u32,
        reply: Box<dyn Replier>,
    ) {
        let State {
            tree,
            links,
            handles,
            waiters,
            shut_down,
            ..
        } = st;
        let shut_down = *shut_down;
        let Some(handle) = handles.get_mut(io.handle) else {
            return fx.reply(reply, Outcome::Error(Errno::EBADF.into()));
        };
        let (owner, uid) = (handle.owner, handle.uid);
        let idle = |place, ended| Idle {
            uid,
            place,
            ended,
            shut_down,
        };
        // The channel a message read receives from, how its bytes are
        // framed, and (`recv`) the descriptor's place in its message.
        let (key, framing, mut cursor) = match &mut handle.kind {
            HandleKind::Snapshot(text) | HandleKind::Policy { text, .. } => {
                let start = (io.offset as usize).min(text.len());
                let end = text.len().min(start + size as usize);
                return fx.reply(reply, Outcome::Bytes(text[start..end].to_vec()));
            }
            HandleKind::Recv {
                chan,
                cursor,
                reading,
                behind,
            } => {
                if let Some(out) = cursor.serve(io.offset, size) {
                    return fx.reply(reply, out);
                }
                if *reading {
                    // Another read of this descriptor waits for the next
                    // message: this one goes on from where that one stops.
                    let place = Place::Behind(io.handle);
                    let why = "O_NONBLOCK: another read of this descriptor waits";
                    if let Some(reply) = self.wait(waiters, fx, &io, idle(place, None), why, reply)
                    {
                        behind.push_back(ReadBehind {
                            id: io.req,
                            size,
                            reply,
                        });
                    }
                    return;
                }
                (*chan, Framing::Stream, Some((cursor, reading)))
            }
            HandleKind::Framed {
                recv: Some(key),
                framing,
                ..
            } => {
                // The continuation of a read(2) that a whole message filled.
                if io.offset > 0 {
                    return fx.reply(reply, Outcome::empty());
                }
                (*key, *framing, None)
            }
            HandleKind::Framed { recv: None, .. } => {
                return fx.reply(
                    reply,
                    Outcome::Error(Errno::EBADF.because("opened for writing only")),
                );
            }
            HandleKind::Send { receipts: None, .. } => {
                return fx.reply(reply, Outcome::Error(Errno::EBADF.into()));
            }
            HandleKind::Send {
                chan,
                receipts: Some(book),
                ..
            } => {
                if io.offset > 0 && !book.readable() {
                    return fx.reply(reply, Outcome::empty());
                }
                match book.read(size as usize) {
                    ReceiptRead::Pending => {
                        let place = Place::Receipts(io.handle);
                        let why = "O_NONBLOCK: no receipt yet";
                        if let Some(reply) =
                            self.wait(waiters, fx, &io, idle(place, None), why, reply)
                        {
                            book.waiters.push_back(ReceiptWait {
                                id: io.req,
                                size,
                                reply,
                            });
                        }
                    }
                    // Nothing more to read, and the mailbox is gone: EIDRM,
                    // like any other I/O on a descriptor opened before rmdir.
                    ReceiptRead::Eof if chan_mut(tree, links, *chan).is_none() => {
                        fx.reply(reply, Outcome::Error(gone(*chan)))
                    }
                    other => fx.reply(reply, other.into_outcome().expect("not pending")),
                }
                return;
            }
        };
        // A mailbox kept by the broker is read there (ipcfs(7), ACROSS
        // HOSTS); the descriptor's cursor and reads behind stay here.
        if let (true, ChanKey::Mailbox(id)) = (self.is_shared(), key) {
            return self.read_remote(st, fx, io, id, owner, uid, size, framing, reply);
        }
        let ch = check!(fx, reply, chan_mut(tree, links, key).ok_or(gone(key)));
        check!(fx, reply, self.admit(ch, owner, Role::Recv));
        // A stream takes any message, piece by piece; `packets` and `batch`
        // only one that fits the buffer whole.
        let next = match framing {
            Framing::Stream => ch.take(owner, fx),
            _ => match ch.peek_len(owner) {
                Some(len) if !framing.fits(len, size) => {
                    return fx.reply(
                        reply,
                        Outcome::Error(
                            Errno::EMSGSIZE.because("the next message is larger than the buffer"),
                        ),
                    );
                }
                Some(_) => ch.take(owner, fx),
                None => None,
            },
        };
        match next {
            Some(first) => {
                // A batch read takes as many whole messages as fit.
                let mut more = |room: usize| match ch.peek_len(owner) {
                    Some(len) if framing::HEADER + len <= room => ch.take(owner, fx),
                    _ => None,
                };
                let cursor = cursor.take().map(|(c, _)| c);
                let out = framing::deliver(framing, cursor, first, size, &mut more);
                fx.reply(reply, out);
            }
            None => {
                let ended = ch
                    .ends
                    .sender_gone
                    .then(|| Errno::ESRCH.because("the peer has exited and sent nothing more"));
                // A `recv` read waits on the channel for its descriptor.
                let place = Place::Chan(key, cursor.is_some().then_some(io.handle));
                let why = "O_NONBLOCK: nothing to receive";
                let Some(reply) = self.wait(waiters, fx, &io, idle(place, ended), why, reply)
                else {
                    return;
                };
                if let Some((_, reading)) = cursor {
                    *reading = true;
                }
                ch.park_receiver(
                    RecvWait {
                        id: io.req,
                        handle: io.handle,
                        reader: owner,
                        size,
                        framing,
                        reply,
                    },
                    fx,
                );
            }
        }
    }

    /// The tail of every read that finds nothing to receive yet (`recv`,
    /// `packets`, `batch`, receipts, a read behind another of its
    /// descriptor): an error if it may not wait — its peer has gone, it is
    /// `O_NONBLOCK` (`why`), the daemon is stopping — else it parks, charged
    /// to the descriptor's user, and its reply is given back, to be queued
    /// where it waits.
    fn wait(
        &self,
        waiters: &mut Waiters,
        fx: &mut Effects,
        io: &Io,
        idle: Idle,
        why: &'static str,
        reply: Box<dyn Replier>,
    ) -> Option<Box<dyn Replier>> {
        let refusal = if let Some(ended) = idle.ended {
            Some(ended)
        } else if io.nonblock {
            Some(Errno::EAGAIN.because(why))
        } else if idle.shut_down {
            Some(Errno::ENOTCONN.because("the daemon is stopping"))
        } else {
            None
        };
        let result = match refusal {
            Some(r) => Err(r),
            None => self.budget.charge(idle.uid, PARK_COST),
        };
        match result {
            Ok(charge) => {
                waiters.park(io, idle.place, charge, fx);
                Some(reply)
            }
            Err(r) => {
                fx.reply(reply, Outcome::Error(r));
                None
            }
        }
    }

    /// A write request carrying `data`.
    pub fn write(&self, io: Io, data: &[u8], reply: Box<dyn Replier>) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        self.write_locked(&mut st, &mut fx, io, data, reply);
        self.finish(st, fx);
    }

    fn write_locked(
        &self,
        st: &mut State,
        fx: &mut Effects,
        io: Io,
        data: &[u8],
        reply: Box<dyn Replier>,
    ) {
        let State {
            tree,
            links,
            handles,
            waiters,
            watched,
            shut_down,
            ..
        } = st;
        let Some(handle) = handles.get_mut(io.handle) else {
            return fx.reply(reply, Outcome::Error(Errno::EBADF.into()));
        };
        let (owner, uid) = (handle.owner, handle.uid);
        // One write(2) is one message (on `batch`, one or more whole
        // frames). A write(2) too large for one FUSE request arrives as
        // several; on this kernel a request carries at most
        // fs.fuse.max_pages_limit (256) pages, and its first chunk is then at
        // least 256 pages less the buffer's offset into its first page:
        // always more than the hard maximum of 255 pages, so that chunk is
        // refused below and the kernel sends no more. A continuation (offset
        // > 0, since files are FOPEN_STREAM) is therefore only ever part of
        // an oversized write. An O_APPEND write arrives at the file's size.
        let too_big =
            || Outcome::Error(Errno::EMSGSIZE.because("larger than the maximum message size"));
        // One message is the write itself; only a batch needs a list.
        let whole = std::slice::from_ref(&data);
        let batch: Vec<&[u8]>;
        let (key, frames, book) = match &mut handle.kind {
            HandleKind::Policy { of, .. } => {
                let of = *of;
                return self.write_policy(tree, handles, watched, uid, fx, of, data, reply);
            }
            HandleKind::Send {
                chan,
                receipts,
                append,
            } => {
                if io.offset > 0 && !*append {
                    return fx.reply(reply, too_big());
                }
                (*chan, whole, receipts.as_mut())
            }
            HandleKind::Framed {
                send: Some(chan),
                framing,
                append,
                ..
            } => {
                if io.offset > 0 && !*append {
                    return fx.reply(reply, too_big());
                }
                let frames = match framing {
                    Framing::Batch => {
                        batch = check!(fx, reply, framing::parse(data));
                        &batch[..]
                    }
                    _ => whole,
                };
                (*chan, frames, None)
            }
            _ => return fx.reply(reply, Outcome::Error(Errno::EBADF.into())),
        };
        if let (true, ChanKey::Mailbox(id)) = (self.is_shared(), key) {
            let tag = match book.map(ReceiptBook::issue).transpose() {
                Ok(seq) => seq.map(|seq| ReceiptTag {
                    handle: io.handle,
                    seq,
                }),
                Err(e) => return fx.reply(reply, Outcome::Error(e)),
            };
            let written = data.len() as u32;
            return self.write_remote(st, fx, io, id, uid, frames, tag, written, reply);
        }
        let ch = check!(fx, reply, chan_mut(tree, links, key).ok_or(gone(key)));
        let largest = frames.iter().map(|f| f.len()).max().unwrap_or(0);
        if largest > ch.policy.max_message_size {
            return fx.reply(reply, too_big());
        }
        // A batch goes in whole: it may not need more room than there can be.
        if frames.len() > ch.policy.capacity.unwrap_or(usize::MAX).max(1) {
            return fx.reply(
                reply,
                Outcome::Error(
                    Errno::EMSGSIZE.because("batch: more frames than the mailbox's capacity"),
                ),
            );
        }
        if ch.ends.receiver_gone {
            return fx.reply(
                reply,
                Outcome::Error(Errno::ESRCH.because("the peer has exited")),
            );
        }
        check!(fx, reply, self.admit(ch, owner, Role::Send));
        let writable = ch.writable_for(frames.len(), largest);
        if !writable && io.nonblock {
            return fx.reply(
                reply,
                Outcome::Error(Errno::EAGAIN.because("O_NONBLOCK: the mailbox is full")),
            );
        }
        if !writable && *shut_down {
            return fx.reply(
                reply,
                Outcome::Error(Errno::ENOTCONN.because("the daemon is stopping")),
            );
        }
        // All messages or none: a refusal drops (and releases) those made.
        let mut msgs = check!(
            fx,
            reply,
            frames
                .iter()
                .map(|f| {
                    Payload::new(f, &self.budget, uid).map(|payload| Message {
                        payload,
                        sender: owner,
                        receipt: None,
                        order: 0,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        );
        // Receipts exist only on `send`: one message.
        match book.map(ReceiptBook::issue).transpose() {
            Ok(Some(seq)) => {
                msgs[0].receipt = Some(ReceiptTag {
                    handle: io.handle,
                    seq,
                })
            }
            Ok(None) => {}
            Err(e) => return fx.reply(reply, Outcome::Error(e)),
        }
        if writable {
            ch.accept_all(msgs, fx);
            return fx.reply_last(reply, Outcome::Written(data.len() as u32));
        }
        let charge = check!(fx, reply, self.budget.charge(uid, PARK_COST));
        waiters.park(&io, Place::Chan(key, None), charge, fx);
        ch.park_sender(
            SendWait {
                id: io.req,
                msgs,
                written: data.len() as u32,
                reply,
            },
            fx,
        );
    }

    /// A write of a `policy` file (`of` None: the root's), by user `uid`.
    #[allow(clippy::too_many_arguments)]
    fn write_policy(
        &self,
        tree: &mut Tree,
        handles: &Handles,
        watched: &mut HashMap<Process, Charge>,
        uid: u32,
        fx: &mut Effects,
        of: Option<MailboxId>,
        data: &[u8],
        reply: Box<dyn Replier>,
    ) {
        let current = match of {
            None => tree.default_policy,
            Some(id) => check!(
                fx,
                reply,
                tree.get(id).map(|m| m.chan.policy).ok_or(Errno::EIDRM)
            ),
        };
        let new = match policy::parse(data, &current, self.config.hard_max_message) {
            Ok(p) => p,
            Err(e) => {
                debug!("policy write refused: {e}");
                return fx.reply(
                    reply,
                    Outcome::Error(Errno::EINVAL.because("not a valid policy")),
                );
            }
        };
        match of {
            None => tree.default_policy = new,
            Some(id) if self.is_shared() => {
                return self.write_policy_remote(fx, id, new, data.len() as u32, reply);
            }
            Some(id) => {
                let openers = handles.openers(id);
                // The processes the new rule may bind are watched for their
                // exit (any opener may join a pair at its next read or
                // write; any receiver may come to hold an exclusive
                // mailbox), new watches charged to the writer before the
                // rule changes.
                let bound = openers
                    .iter()
                    .filter(|(_, role)| receiver_rule::binds(new.rule, *role));
                let mut pending = Vec::new();
                for (p, _) in bound {
                    if pending.iter().any(|(q, _)| q == p) {
                        continue;
                    }
                    match self.charge_watch(watched, uid, *p) {
                        Ok(Some(charge)) => pending.push((*p, charge)),
                        Ok(None) => {}
                        Err(e) => {
                            warn!("policy write by user {uid}: refused {e} (watching the openers)");
                            return fx.reply(reply, Outcome::Error(e));
                        }
                    }
                }
                for (p, charge) in pending {
                    watched.insert(p, charge);
                    fx.watch.push(p);
                }
                let ch = &mut tree.get_mut(id).expect("mailbox").chan;
                ch.set_policy(new, openers, fx);
            }
        }
        fx.reply(reply, Outcome::Written(data.len() as u32));
    }

    /// Poll readiness (`libc::POLLIN` etc.) of a descriptor; `kh`, when
    /// given, is notified at the next change.
    pub fn poll(&self, h: u64, kh: Option<u64>) -> u32 {
        let (pin, pout, perr, phup) = (
            libc::POLLIN as u32,
            libc::POLLOUT as u32,
            libc::POLLERR as u32,
            libc::POLLHUP as u32,
        );
        let mut st = self.lock();
        if self.is_shared()
            && let Some(ready) = self.poll_remote(&mut st, h, kh)
        {
            return ready;
        }
        let State {
            handles,
            tree,
            links,
            ..
        } = &mut *st;
        let Some(handle) = handles.get_mut(h) else {
            return perr;
        };
        let owner = handle.owner;
        // (channel, read from it, ready already): receipts on `send` are a
        // line or the end of file; a `recv` holding a message is readable,
        // and still watches its channel: an edge-triggered epoll waits for
        // the notification of the next message.
        let (chans, mut ready): (Vec<(ChanKey, bool)>, u32) = match &handle.kind {
            HandleKind::Snapshot(_) | HandleKind::Policy { .. } => return pin | pout,
            HandleKind::Recv { chan, cursor, .. } if cursor.current.is_some() || cursor.eof => {
                (vec![(*chan, true)], pin)
            }
            HandleKind::Send { chan, receipts, .. } => (
                vec![(*chan, false)],
                if receipts.as_ref().is_some_and(ReceiptBook::readable) {
                    pin
                } else {
                    0
                },
            ),
            HandleKind::Framed {
                recv: Some(r),
                send: Some(w),
                ..
            } => (vec![(*r, true), (*w, false)], 0),
            other => (other.channels(), 0),
        };
        for (key, reads) in chans {
            let Some(ch) = chan_mut(tree, links, key) else {
                return pin | pout | perr;
            };
            if !reads {
                if ch.writable() {
                    ready |= pout;
                }
            } else if ch.readable_for(owner) {
                ready |= pin;
            } else if ch.ends.sender_gone {
                ready |= pin | phup;
            }
            if let Some(kh) = kh {
                ch.watch(kh);
            }
        }
        if kh.is_some() {
            handle.poll = kh;
        }
        ready
    }
}
