//! poll(2) on files of a broker's mailbox (ipcfs(7), ACROSS HOSTS). The
//! queue is on the broker, so a poll that would wait lists the descriptor
//! as a reader there, like a blocked read; the message it gets is *held*
//! for the descriptor — readable now — and the kernel's poll handle is
//! notified. The next read of the descriptor takes it; a read made while
//! the poll's call still waits takes that call over. A held message is
//! acknowledged only when read: if the daemon dies first, it goes to
//! another reader after the lease, and closing the descriptor gives it
//! back to the head of the queue.

use super::super::errno::Errno;
use super::super::framing::{self, Framing};
use super::super::handles::HandleKind;
use super::super::message::Message;
use super::super::reply::{Effects, Outcome, Replier};
use super::super::store::{FlightId, Wid};
use super::super::{ChanKey, Hub, Io, MailboxId, State};
use super::calls::{
    Call, CallKind, cancel_receive_job, flush_acks_job, give_back_job, receive_job,
};

/// A message taken for a descriptor by its poll, not yet read.
pub(in crate::hub) struct Held {
    mailbox: MailboxId,
    msg: Message,
    flight: FlightId,
}

/// The store's id of the call a poll makes for descriptor `h`: apart from
/// the kernel's request ids, which stay far below.
fn poll_wid(h: u64) -> Wid {
    1 << 63 | h
}

impl Hub {
    /// Readiness of a descriptor of a broker's mailbox, or None for any
    /// other descriptor.
    pub(in crate::hub) fn poll_remote(
        &self,
        st: &mut State,
        h: u64,
        kh: Option<u64>,
    ) -> Option<u32> {
        let (pin, pout) = (libc::POLLIN as u32, libc::POLLOUT as u32);
        let handle = st.handles.get(h)?;
        let (owner, uid) = (handle.owner, handle.uid);
        let (mailbox, ready) = match &handle.kind {
            HandleKind::Recv {
                chan: ChanKey::Mailbox(id),
                cursor,
                ..
            } => (*id, cursor.current.is_some() || cursor.eof),
            HandleKind::Framed {
                recv: Some(ChanKey::Mailbox(id)),
                ..
            } => (*id, false),
            // Writing: a write that finds no room waits (or gives EAGAIN).
            HandleKind::Framed {
                send: Some(ChanKey::Mailbox(_)),
                ..
            } => return Some(pout),
            HandleKind::Send {
                chan: ChanKey::Mailbox(_),
                receipts,
                ..
            } => {
                let readable = receipts.as_ref().is_some_and(|b| b.readable());
                return Some(pout | if readable { pin } else { 0 });
            }
            _ => return None,
        };
        let writes = matches!(
            &handle.kind,
            HandleKind::Framed {
                send: Some(ChanKey::Mailbox(_)),
                ..
            }
        );
        let out = if writes { pout } else { 0 };
        if ready || st.held.contains_key(&h) {
            return Some(pin | out);
        }
        let wid = poll_wid(h);
        // A daemon stopping, or a descriptor from before a lost lease,
        // lists nothing: its read gives the error.
        let may_wait = !st.shut_down && h > st.fenced_below;
        match (kh, st.calls.get_mut(&wid)) {
            (Some(kh), Some(call)) => call.poll = Some(kh),
            (Some(kh), None) if may_wait => {
                let call = Call {
                    mailbox,
                    handle: h,
                    id: wid,
                    poll: Some(kh),
                    what: CallKind::Read {
                        pid: owner.pid,
                        uid,
                        size: u32::MAX,
                        framing: Framing::Packet,
                        nonblock: false,
                    },
                    reply: None,
                    listed: false,
                    interrupted: false,
                };
                let reader = super::super::store::Reader {
                    wid,
                    pid: owner.pid,
                    size: u32::MAX,
                    framing: Framing::Packet,
                    nonblock: false,
                };
                st.calls.insert(wid, call);
                self.dispatch(vec![receive_job(mailbox, reader, Vec::new())]);
            }
            _ => {}
        }
        Some(out)
    }

    /// Keeps a message for descriptor `call.handle` until it is read, and
    /// tells its poll.
    pub(super) fn hold(
        &self,
        st: &mut State,
        fx: &mut Effects,
        call: &Call,
        msg: Message,
        flight: FlightId,
    ) {
        if st.held.contains_key(&call.handle) || st.handles.get(call.handle).is_none() {
            fx.remote().later.push(give_back_job(call.mailbox, flight));
            return;
        }
        st.held.insert(
            call.handle,
            Held {
                mailbox: call.mailbox,
                msg,
                flight,
            },
        );
        if let Some(kh) = call.poll {
            fx.notify.push(kh);
        }
    }

    /// A read of a descriptor whose poll holds a message, or whose poll's
    /// call still waits: answered from, or joined to, that. Gives the
    /// reply back otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_held(
        &self,
        st: &mut State,
        fx: &mut Effects,
        io: &Io,
        size: u32,
        framing: Framing,
        reply: Box<dyn Replier>,
    ) -> Option<Box<dyn Replier>> {
        if let Some(held) = st.held.remove(&io.handle) {
            if framing != Framing::Stream && !framing.fits(held.msg.len(), size) {
                st.held.insert(io.handle, held);
                let e = Errno::EMSGSIZE.because("the next message is larger than the buffer");
                fx.reply(reply, Outcome::Error(e));
                return None;
            }
            let cursor = match st.handles.recv_mut(io.handle) {
                Some(HandleKind::Recv { cursor, .. }) => Some(cursor),
                _ => None,
            };
            let out = framing::deliver(framing, cursor, held.msg, size, &mut |_| None);
            self.ack_soon(st, fx, io.handle, held.flight);
            fx.reply(reply, out);
            return None;
        }
        let wid = poll_wid(io.handle);
        let Some(call) = st.calls.get_mut(&wid) else {
            return Some(reply);
        };
        if call.reply.is_some() {
            return Some(reply);
        }
        // The poll's call, listed on the broker already, becomes this read.
        let CallKind::Read {
            size: s,
            framing: f,
            nonblock,
            ..
        } = &mut call.what
        else {
            return Some(reply);
        };
        if io.nonblock && !*nonblock {
            let e = Errno::EAGAIN.because("O_NONBLOCK: nothing to receive");
            fx.reply(reply, Outcome::Error(e));
            return None;
        }
        (*s, *f) = (size, framing);
        call.reply = Some(reply);
        call.poll = None;
        call.id = io.req;
        None
    }

    /// Descriptor `h` closed: a held message goes back, and a poll's call
    /// is taken off the broker.
    pub(in crate::hub) fn release_held(&self, st: &mut State, fx: &mut Effects, h: u64) {
        if let Some(held) = st.held.remove(&h) {
            fx.remote()
                .later
                .push(give_back_job(held.mailbox, held.flight));
        }
        if let Some(first) = st.unacked.get(&h).and_then(|p| p.first()) {
            fx.remote().later.push(flush_acks_job(h, first.clone()));
        }
        let wid = poll_wid(h);
        if let Some(call) = st.calls.get_mut(&wid) {
            call.poll = None;
            if call.listed {
                let mailbox = call.mailbox;
                st.calls.remove(&wid);
                fx.remote().later.push(cancel_receive_job(mailbox, wid));
            }
        }
    }
}
