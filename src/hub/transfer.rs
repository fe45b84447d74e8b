//! What happens when a message is sent and received: reads, writes and
//! poll on open descriptors. A request that cannot be answered now is
//! parked (see [`super::waiters`]) and answered later by whichever
//! operation changes what it waits for.

use super::accounting::PARK_COST;
use super::errno::Errno;
use log::debug;

use super::framing::{self, Framing};
use super::handles::Handles;
use super::handles::{HandleKind, ReadBehind};
use super::message::{Message, Payload, ReceiptTag};
use super::policy::{self, Rule};
use super::process::Process;
use super::receipts::{ReceiptBook, ReceiptRead};
use super::receiver_rule::Role;
use super::tree::Tree;
use super::waiter::{Effects, Outcome, ReceiptWait, RecvWait, Replier, SendWait};
use super::waiters::Place;
use super::{ChanKey, Hub, Io, MailboxId, State, chan_mut, check, gone};

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
        } = st;
        let Some(handle) = handles.get_mut(io.handle) else {
            return fx.reply(reply, Outcome::Error(Errno::EBADF.into()));
        };
        let (owner, uid) = (handle.owner, handle.uid);
        match &mut handle.kind {
            HandleKind::Text(text) | HandleKind::Policy { text, .. } => {
                let start = (io.offset as usize).min(text.len());
                let end = text.len().min(start + size as usize);
                fx.reply(reply, Outcome::Bytes(text[start..end].to_vec()));
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
                    if io.nonblock {
                        return fx.reply(
                            reply,
                            Outcome::Error(
                                Errno::EAGAIN
                                    .because("O_NONBLOCK: another read of this descriptor waits"),
                            ),
                        );
                    }
                    let charge = check!(fx, reply, self.budget.charge(uid, PARK_COST));
                    waiters.park(&io, Place::Behind(io.handle), charge, fx);
                    behind.push_back(ReadBehind {
                        id: io.req,
                        size,
                        reply,
                    });
                    return;
                }
                let key = *chan;
                let ch = check!(fx, reply, chan_mut(tree, links, key).ok_or(gone(key)));
                // Only asked when the rule refuses: a bound process may have exited.
                let alive = |p: Process| self.procs.is_alive(p);
                check!(
                    fx,
                    reply,
                    ch.members.admit(ch.policy.rule, owner, Role::Recv, &alive)
                );
                if let Some(msg) = ch.take(owner, fx) {
                    cursor.current = Some((msg, 0));
                    let out = cursor.serve(0, size).expect("a current message");
                    return fx.reply(reply, out);
                }
                if ch.ends.sender_gone {
                    return fx.reply(
                        reply,
                        Outcome::Error(
                            Errno::ESRCH.because("the peer has exited and sent nothing more"),
                        ),
                    );
                }
                if io.nonblock {
                    return fx.reply(
                        reply,
                        Outcome::Error(Errno::EAGAIN.because("O_NONBLOCK: nothing to receive")),
                    );
                }
                if *shut_down {
                    return fx.reply(
                        reply,
                        Outcome::Error(Errno::ENOTCONN.because("the daemon is stopping")),
                    );
                }
                let charge = check!(fx, reply, self.budget.charge(uid, PARK_COST));
                waiters.park(&io, Place::Chan(key, Some(io.handle)), charge, fx);
                *reading = true;
                ch.park_receiver(
                    RecvWait {
                        id: io.req,
                        handle: io.handle,
                        reader: owner,
                        size,
                        framing: Framing::Stream,
                        reply,
                    },
                    fx,
                );
            }
            HandleKind::Packets {
                recv: Some(key),
                framing,
                ..
            } => {
                let (key, framing) = (*key, *framing);
                // The continuation of a read(2) that a whole message filled.
                if io.offset > 0 {
                    return fx.reply(reply, Outcome::empty());
                }
                let ch = check!(fx, reply, chan_mut(tree, links, key).ok_or(gone(key)));
                // Only asked when the rule refuses: a bound process may have exited.
                let alive = |p: Process| self.procs.is_alive(p);
                check!(
                    fx,
                    reply,
                    ch.members.admit(ch.policy.rule, owner, Role::Recv, &alive)
                );
                match ch.peek_len(owner) {
                    Some(len) if !framing.fits(len, size) => fx.reply(
                        reply,
                        Outcome::Error(
                            Errno::EMSGSIZE.because("the next message is larger than the buffer"),
                        ),
                    ),
                    Some(_) => {
                        let first = ch.take(owner, fx).expect("the message peeked at");
                        if framing == Framing::Packet {
                            let len = first.len();
                            return fx.reply(reply, Outcome::Slice(first.payload, 0..len));
                        }
                        // As many whole messages as the buffer holds.
                        let mut out = Vec::new();
                        framing::push_frame(&mut out, first.payload.bytes());
                        while let Some(len) = ch.peek_len(owner)
                            && out.len() + framing::HEADER + len <= size as usize
                        {
                            let msg = ch.take(owner, fx).expect("the message peeked at");
                            framing::push_frame(&mut out, msg.payload.bytes());
                        }
                        fx.reply(reply, Outcome::Bytes(out));
                    }
                    None if ch.ends.sender_gone => fx.reply(
                        reply,
                        Outcome::Error(
                            Errno::ESRCH.because("the peer has exited and sent nothing more"),
                        ),
                    ),
                    None if io.nonblock => fx.reply(
                        reply,
                        Outcome::Error(Errno::EAGAIN.because("O_NONBLOCK: nothing to receive")),
                    ),
                    None if *shut_down => fx.reply(
                        reply,
                        Outcome::Error(Errno::ENOTCONN.because("the daemon is stopping")),
                    ),
                    None => {
                        let charge = check!(fx, reply, self.budget.charge(uid, PARK_COST));
                        waiters.park(&io, Place::Chan(key, None), charge, fx);
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
            HandleKind::Packets { recv: None, .. } => fx.reply(
                reply,
                Outcome::Error(Errno::EBADF.because("opened for writing only")),
            ),
            HandleKind::Send { receipts: None, .. } => {
                fx.reply(reply, Outcome::Error(Errno::EBADF.into()))
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
                    ReceiptRead::Pending if io.nonblock => fx.reply(
                        reply,
                        Outcome::Error(Errno::EAGAIN.because("O_NONBLOCK: no receipt yet")),
                    ),
                    ReceiptRead::Pending if *shut_down => fx.reply(
                        reply,
                        Outcome::Error(Errno::ENOTCONN.because("the daemon is stopping")),
                    ),
                    ReceiptRead::Pending => {
                        let charge = check!(fx, reply, self.budget.charge(uid, PARK_COST));
                        waiters.park(&io, Place::Receipts(io.handle), charge, fx);
                        book.waiters.push_back(ReceiptWait {
                            id: io.req,
                            size,
                            reply,
                        });
                    }
                    // Nothing more to read, and the mailbox is gone: EIDRM,
                    // like any other I/O on a descriptor opened before rmdir.
                    ReceiptRead::Eof if chan_mut(tree, links, *chan).is_none() => {
                        fx.reply(reply, Outcome::Error(gone(*chan)))
                    }
                    other => fx.reply(reply, other.into_outcome().expect("not pending")),
                }
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
            shut_down,
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
                return self.write_policy(tree, handles, fx, of, data, reply);
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
            HandleKind::Packets {
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
        // Only asked when the rule refuses: a bound process may have exited.
        let alive = |p: Process| self.procs.is_alive(p);
        check!(
            fx,
            reply,
            ch.members.admit(ch.policy.rule, owner, Role::Send, &alive)
        );
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

    /// A write of a `policy` file (`of` None: the root's).
    fn write_policy(
        &self,
        tree: &mut Tree,
        handles: &Handles,
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
            Some(id) => {
                let openers = handles.openers(id);
                if matches!(new.rule, Rule::Pair | Rule::Exclusive) {
                    fx.watch.extend(openers.iter().map(|(p, _)| *p));
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
            HandleKind::Text(_) | HandleKind::Policy { .. } => return pin | pout,
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
            HandleKind::Packets {
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
