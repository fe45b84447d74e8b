//! What happens when a message is sent and received: reads, writes and
//! poll on open descriptors. A request that cannot be answered now is
//! parked (see [`super::waiters`]) and answered later by whichever
//! operation changes what it waits for.

use super::errno::Errno;
use log::debug;

use super::handles::{HandleKind, ReadBehind};
use super::message::{Message, Payload, ReceiptTag};
use super::policy::{self, Rule};
use super::process::Process;
use super::receipts::{ReceiptBook, ReceiptRead};
use super::receiver_rule::Role;
use super::waiter::{Effects, Outcome, ReceiptWait, RecvWait, Replier, SendWait};
use super::waiters::Place;
use super::{Hub, Io, State, chan_mut, check, gone};

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
        let owner = handle.owner;
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
                    waiters.park(&io, Place::Behind(io.handle), fx);
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
                waiters.park(&io, Place::Chan(key, Some(io.handle)), fx);
                *reading = true;
                ch.park_receiver(
                    RecvWait {
                        id: io.req,
                        handle: io.handle,
                        reader: owner,
                        size,
                        reply,
                    },
                    fx,
                );
            }
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
                        waiters.park(&io, Place::Receipts(io.handle), fx);
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
        let owner = handle.owner;
        match &mut handle.kind {
            HandleKind::Policy { of, .. } => {
                let current = match of {
                    None => tree.default_policy,
                    Some(id) => check!(
                        fx,
                        reply,
                        tree.get(*id).map(|m| m.chan.policy).ok_or(Errno::EIDRM)
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
                        let id = *id;
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
            HandleKind::Send {
                chan,
                receipts,
                append,
            } => {
                // One write(2) is one message. A write(2) too large for one
                // FUSE request arrives as several; on this kernel a request
                // carries at most fs.fuse.max_pages_limit (256) pages, and its
                // first chunk is then at least 256 pages less the buffer's
                // offset into its first page: always more than the hard maximum
                // of 255 pages, so that chunk is refused below and the kernel
                // sends no more. A continuation (offset > 0, since files are
                // FOPEN_STREAM) is therefore only ever part of an oversized
                // write. An O_APPEND write arrives at the file's size instead.
                let key = *chan;
                let ch = check!(fx, reply, chan_mut(tree, links, key).ok_or(gone(key)));
                let continued = io.offset > 0 && !*append;
                if continued || data.len() > ch.policy.max_message_size {
                    return fx.reply(
                        reply,
                        Outcome::Error(
                            Errno::EMSGSIZE.because("larger than the maximum message size"),
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
                let writable = ch.writable();
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
                let payload = check!(fx, reply, Payload::new(data, &self.budget));
                let receipt = match receipts.as_mut().map(ReceiptBook::issue).transpose() {
                    Ok(seq) => seq.map(|seq| ReceiptTag {
                        handle: io.handle,
                        seq,
                    }),
                    Err(e) => return fx.reply(reply, Outcome::Error(e)),
                };
                let msg = Message {
                    payload,
                    sender: owner,
                    receipt,
                    order: 0,
                };
                if writable {
                    ch.accept(msg, fx);
                    return fx.reply(reply, Outcome::Written(data.len() as u32));
                }
                waiters.park(&io, Place::Chan(key, None), fx);
                ch.park_sender(
                    SendWait {
                        id: io.req,
                        msg,
                        reply,
                    },
                    fx,
                );
            }
            HandleKind::Recv { .. } | HandleKind::Text(_) => {
                fx.reply(reply, Outcome::Error(Errno::EBADF.into()))
            }
        }
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
        let (key, mut ready) = match &handle.kind {
            HandleKind::Text(_) | HandleKind::Policy { .. } => return pin | pout,
            HandleKind::Recv { cursor, .. } if cursor.current.is_some() || cursor.eof => {
                return pin;
            }
            HandleKind::Recv { chan, .. } => (*chan, 0),
            // Receipts: a line, or the end of file, is ready.
            HandleKind::Send { chan, receipts, .. } => (
                *chan,
                if receipts.as_ref().is_some_and(ReceiptBook::readable) {
                    pin
                } else {
                    0
                },
            ),
        };
        let Some(ch) = chan_mut(tree, links, key) else {
            return pin | pout | perr;
        };
        if let HandleKind::Recv { .. } = handle.kind {
            if ch.readable_for(handle.owner) {
                ready |= pin;
            } else if ch.ends.sender_gone {
                ready |= pin | phup;
            }
        } else if ch.writable() {
            ready |= pout;
        }
        if let Some(kh) = kh {
            ch.watch(kh);
            handle.poll = Some(kh);
        }
        ready
    }
}
