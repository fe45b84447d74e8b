//! Reads and writes of remote mailboxes: parked here, answered from the
//! store's answers and its pump's events.

use log::{debug, warn};

use super::super::accounting::{Charge, PARK_COST};
use super::super::errno::{Errno, Refusal};
use super::super::framing::{self, Framing};
use super::super::handles::HandleKind;
use super::super::message::{Message, Payload, ReceiptTag};
use super::super::process::Process;
use super::super::reply::{Effects, Outcome, Replier};
use super::super::store::{FlightId, Outgoing, Reader, Received, Sent, Wid, Withdrawn, Writer};
use super::super::waiters::{Place, WaiterId};
use super::super::{Hub, Io, MailboxId, State};
use super::{ACK_DELAY, INTERRUPT_GRACE, Job, stale};

/// A read or write of a remote mailbox that has not been answered.
pub(crate) struct Call {
    pub(super) mailbox: MailboxId,
    pub(super) handle: u64,
    /// The request it answers, as the table of parked requests knows it
    /// (the store's id unless a read took over a poll's call).
    pub(super) id: WaiterId,
    /// A call made for poll(2) (see [`super::poll`]): its message is held
    /// for the descriptor, and this poll handle notified.
    pub(super) poll: Option<u64>,
    pub(super) what: CallKind,
    /// None once the caller was answered (interrupted) while the store's
    /// answer was on its way: that answer is undone when it comes.
    pub(super) reply: Option<Box<dyn Replier>>,
    /// The store lists it: a reader waiting, a sender blocked.
    pub(super) listed: bool,
    /// A write interrupted while its send (or its withdrawal) was on its
    /// way: answered when the store says whether the message went in.
    pub(super) interrupted: bool,
}

impl Call {
    /// Whether someone waits for its answer: a caller or a poll.
    pub(super) fn live(&self) -> bool {
        self.reply.is_some() || self.poll.is_some()
    }
}

pub(super) enum CallKind {
    Read {
        pid: u32,
        uid: u32,
        size: u32,
        framing: Framing,
        nonblock: bool,
    },
    Write {
        msgs: Vec<Outgoing>,
        written: u32,
        /// The sending process (the descriptor's owner).
        pid: u32,
        nonblock: bool,
        /// What the bytes in transit hold of the memory bound.
        _charge: Charge,
    },
}

impl Call {
    pub(super) fn reader(&self, wid: Wid) -> Option<Reader> {
        match self.what {
            CallKind::Read {
                pid,
                size,
                framing,
                nonblock,
                ..
            } => Some(Reader {
                wid,
                pid,
                size,
                framing,
                nonblock,
            }),
            CallKind::Write { .. } => None,
        }
    }

    fn tags(&self) -> Vec<ReceiptTag> {
        match &self.what {
            CallKind::Write { msgs, .. } => msgs.iter().filter_map(|m| m.receipt).collect(),
            CallKind::Read { .. } => Vec::new(),
        }
    }
}

impl Hub {
    /// A read of a remote mailbox: parked, then asked of the store.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::hub) fn read_remote(
        &self,
        st: &mut State,
        fx: &mut Effects,
        io: Io,
        mailbox: MailboxId,
        owner: Process,
        uid: u32,
        size: u32,
        framing: Framing,
        reply: Box<dyn Replier>,
    ) {
        if io.handle <= st.fenced_below {
            return fx.reply(reply, Outcome::Error(stale()));
        }
        if st.shut_down {
            let e = Errno::ENOTCONN.because("the daemon is stopping");
            return fx.reply(reply, Outcome::Error(e));
        }
        let charge = match self.budget.charge(uid, PARK_COST) {
            Ok(c) => c,
            Err(e) => return fx.reply(reply, Outcome::Error(e)),
        };
        // What a poll of this descriptor took, or waits for, comes first.
        let reply = self.read_held(st, fx, &io, size, framing, reply);
        let joined = reply.is_none() && st.calls.values().any(|c| c.id == io.req);
        if reply.is_some() || joined {
            st.waiters.park(&io, Place::Remote(mailbox), charge, fx);
            if let Some(HandleKind::Recv { reading, .. }) = st.handles.recv_mut(io.handle) {
                *reading = true;
            }
        }
        let Some(reply) = reply else {
            return;
        };
        let call = Call {
            mailbox,
            handle: io.handle,
            id: io.req,
            poll: None,
            what: CallKind::Read {
                pid: owner.pid,
                uid,
                size,
                framing,
                nonblock: io.nonblock,
            },
            reply: Some(reply),
            listed: false,
            interrupted: false,
        };
        let reader = call.reader(io.req).expect("a read");
        st.calls.insert(io.req, call);
        let acks = st.unacked.remove(&io.handle).unwrap_or_default();
        fx.remote().later.push(receive_job(mailbox, reader, acks));
    }

    /// A write of a remote mailbox: `frames` (one message, or a batch's),
    /// parked, then sent to the store.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::hub) fn write_remote(
        &self,
        st: &mut State,
        fx: &mut Effects,
        io: Io,
        mailbox: MailboxId,
        uid: u32,
        frames: &[&[u8]],
        receipt: Option<ReceiptTag>,
        written: u32,
        reply: Box<dyn Replier>,
    ) {
        let refuse = |fx: &mut Effects, reply, e: Refusal| {
            if let Some(tag) = receipt {
                fx.cancelled.push(tag);
            }
            fx.reply(reply, Outcome::Error(e));
        };
        if io.handle <= st.fenced_below {
            return refuse(fx, reply, stale());
        }
        if st.shut_down {
            return refuse(fx, reply, Errno::ENOTCONN.because("the daemon is stopping"));
        }
        let Some(m) = st.tree.get(mailbox) else {
            return refuse(fx, reply, Errno::EIDRM.because("the mailbox was removed"));
        };
        let policy = m.chan.policy;
        if frames.iter().any(|f| f.len() > policy.max_message_size) {
            let e = Errno::EMSGSIZE.because("larger than the maximum message size");
            return refuse(fx, reply, e);
        }
        if frames.len() > policy.capacity.unwrap_or(usize::MAX).max(1) {
            let e = Errno::EMSGSIZE.because("batch: more frames than the mailbox's capacity");
            return refuse(fx, reply, e);
        }
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        let pid = st.handles.get(io.handle).map_or(0, |h| h.owner.pid);
        // The parked call and the bytes it carries until the broker has
        // them.
        let (park, charge) = match self
            .budget
            .charge(uid, PARK_COST)
            .and_then(|p| Ok((p, self.budget.charge(uid, bytes)?)))
        {
            Ok(c) => c,
            Err(e) => return refuse(fx, reply, e),
        };
        let msgs: Vec<Outgoing> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| Outgoing {
                bytes: f.to_vec(),
                receipt: if i == 0 { receipt } else { None },
            })
            .collect();
        st.waiters.park(&io, Place::Remote(mailbox), park, fx);
        st.calls.insert(
            io.req,
            Call {
                mailbox,
                handle: io.handle,
                id: io.req,
                poll: None,
                what: CallKind::Write {
                    msgs,
                    written,
                    pid,
                    nonblock: io.nonblock,
                    _charge: charge,
                },
                reply: Some(reply),
                listed: false,
                interrupted: false,
            },
        );
        fx.remote().later.push(send_job(mailbox, io.req, false));
    }

    /// The store's answer to a receive.
    fn received(&self, wid: Wid, mailbox: MailboxId, answer: Result<Received, Refusal>) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        let live = st.calls.get(&wid).is_some_and(Call::live);
        match answer {
            Ok(Received::Messages { msgs, flight }) if live => {
                let call = st.calls.remove(&wid).expect("call");
                self.hand_over(&mut st, &mut fx, call, msgs, flight);
            }
            Ok(Received::Messages { flight, .. }) => {
                st.calls.remove(&wid);
                fx.remote().later.push(give_back_job(mailbox, flight));
            }
            Ok(Received::Parked) if live => {
                st.calls.get_mut(&wid).expect("call").listed = true;
            }
            // Answered already by a delivery that came first (the pump
            // can be quicker than this answer): nothing waits on the
            // broker any more.
            Ok(Received::Parked) if !st.calls.contains_key(&wid) => {}
            Ok(Received::Parked) => {
                st.calls.remove(&wid);
                fx.remote().later.push(cancel_receive_job(mailbox, wid));
            }
            other => {
                let out = match other {
                    Ok(Received::Empty) => Errno::EAGAIN.because("O_NONBLOCK: nothing to receive"),
                    Ok(Received::TooBig(_)) => {
                        Errno::EMSGSIZE.because("the next message is larger than the buffer")
                    }
                    Err(e) => e,
                    Ok(_) => unreachable!("handled above"),
                };
                if let Some(call) = st.calls.remove(&wid) {
                    self.end_call(&mut st, &mut fx, call, Outcome::Error(out));
                }
            }
        }
        self.finish(st, fx);
    }

    /// Messages for the reader `wid`: framed into its reply, and the
    /// store told they arrived.
    pub(super) fn hand_over(
        &self,
        st: &mut State,
        fx: &mut Effects,
        call: Call,
        msgs: Vec<Vec<u8>>,
        flight: FlightId,
    ) {
        let CallKind::Read {
            pid,
            uid,
            size,
            framing,
            ..
        } = call.what
        else {
            return;
        };
        let process = Process { pid, start: 0 };
        let made: Result<Vec<Message>, Refusal> = msgs
            .iter()
            .map(|b| {
                Payload::new(b, &self.budget, uid).map(|payload| Message {
                    payload,
                    sender: process,
                    receipt: None,
                    order: 0,
                })
            })
            .collect();
        let mailbox = call.mailbox;
        let mut msgs = match made {
            Ok(m) if !m.is_empty() => m.into_iter(),
            Ok(_) => {
                self.ack_soon(st, fx, call.handle, flight);
                return self.end_call(st, fx, call, Outcome::empty());
            }
            Err(e) => {
                warn!("a message from the broker for user {uid}: refused {e}");
                fx.remote().later.push(give_back_job(mailbox, flight));
                return self.end_call(st, fx, call, Outcome::Error(e));
            }
        };
        let first = msgs.next().expect("a message");
        // For poll(2), or for a read too small for it: held for the
        // descriptor until a read takes it (unacknowledged until then).
        if call.poll.is_some() || (framing != Framing::Stream && !framing.fits(first.len(), size)) {
            self.hold(st, fx, &call, first, flight);
            let e = Errno::EMSGSIZE.because("the next message is larger than the buffer");
            return self.end_call(st, fx, call, Outcome::Error(e));
        }
        let cursor = match st.handles.recv_mut(call.handle) {
            Some(HandleKind::Recv { cursor, .. }) => Some(cursor),
            _ => None,
        };
        let out = framing::deliver(framing, cursor, first, size, &mut |_| msgs.next());
        if msgs.len() > 0 {
            warn!("the broker handed more messages than a read of {size} bytes takes");
        }
        self.ack_soon(st, fx, call.handle, flight);
        self.end_call(st, fx, call, out);
    }

    /// Messages of `flight` were read from descriptor `h`: the next read
    /// of `h` acknowledges them with its own call to the broker, or, if
    /// none comes within [`super::ACK_DELAY`], a call of their own.
    pub(super) fn ack_soon(&self, st: &mut State, fx: &mut Effects, h: u64, flight: FlightId) {
        st.unacked.entry(h).or_default().push(flight.clone());
        // One timer job per descriptor at a time: a steady reader whose
        // reads carry the acknowledgements costs the timer one wakeup per
        // delay, not one per read.
        if st.ack_timers.insert(h) {
            fx.remote()
                .soon
                .push((ACK_DELAY, flush_acks_job(h, flight)));
        }
    }

    /// Answers a call and lets reads behind it on its descriptor go on.
    pub(super) fn end_call(&self, st: &mut State, fx: &mut Effects, mut call: Call, out: Outcome) {
        if let Some(HandleKind::Recv {
            reading, behind, ..
        }) = st.handles.recv_mut(call.handle)
            && matches!(call.what, CallKind::Read { .. })
        {
            *reading = false;
            if !behind.is_empty() {
                st.waiters.resume.push(call.handle);
            }
        }
        if matches!(out, Outcome::Error(_)) {
            for tag in call.tags() {
                fx.cancelled.push(tag);
            }
        }
        if let Some(reply) = call.reply.take() {
            st.waiters.unpark(call.id);
            fx.reply(reply, out);
        }
    }

    /// The store's answer to a send.
    fn sent(&self, wid: Wid, mailbox: MailboxId, answer: Result<Sent, Refusal>) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        let Some(call) = st.calls.get_mut(&wid) else {
            // Answered EINTR already (the broker was slow to answer): a
            // message it kept goes, one it took in is reported.
            match answer {
                Ok(Sent::Full) => fx.remote().later.push(withdraw_job(mailbox, wid)),
                Ok(Sent::Accepted) => debug!("write {wid}: sent after its EINTR"),
                Err(_) => {}
            }
            return self.finish(st, fx);
        };
        match answer {
            Ok(Sent::Accepted) => {
                let call = st.calls.remove(&wid).expect("call");
                let CallKind::Write { written, .. } = call.what else {
                    unreachable!("a send answers a write");
                };
                self.end_call(&mut st, &mut fx, call, Outcome::Written(written));
            }
            Ok(Sent::Full) => {
                call.listed = true;
                if call.interrupted {
                    fx.remote().later.push(cancel_send_job(mailbox, wid));
                }
            }
            Err(e) => {
                let call = st.calls.remove(&wid).expect("call");
                self.end_call(&mut st, &mut fx, call, Outcome::Error(e));
            }
        }
        self.finish(st, fx);
    }

    /// The blocked sender `wid`'s messages went in (its pump event, or
    /// the answer to its withdrawal): the write completes.
    pub(super) fn went_in(&self, st: &mut State, fx: &mut Effects, wid: Wid) {
        let Some(&CallKind::Write { written, .. }) = st.calls.get(&wid).map(|c| &c.what) else {
            return;
        };
        let call = st.calls.remove(&wid).expect("call");
        self.end_call(st, fx, call, Outcome::Written(written));
    }

    /// The store's answer to the withdrawal of an interrupted blocked
    /// sender: the write ends with `EINTR`, unless its messages went in
    /// first (then it was written, as a local write completed before the
    /// signal is).
    fn withdrawn(&self, wid: Wid, mailbox: MailboxId, answer: Result<Withdrawn, Refusal>) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        match answer {
            Ok(Withdrawn::WentIn) if !st.calls.contains_key(&wid) => {
                debug!("write {wid}: sent after its EINTR")
            }
            Ok(Withdrawn::WentIn) => self.went_in(&mut st, &mut fx, wid),
            other => {
                if let Err(e) = other {
                    debug!("cannot take a blocked sender off the broker: {e}");
                    st.withdraw.push((mailbox, wid));
                }
                if let Some(call) = st.calls.remove(&wid) {
                    let e = Errno::EINTR.because("interrupted by a signal");
                    self.end_call(&mut st, &mut fx, call, Outcome::Error(e));
                }
            }
        }
        self.finish(st, fx);
    }

    /// An interrupt of a remote call. A read ends at once (a message on
    /// its way to it goes back to the queue when it comes); a write ends
    /// when the store says whether its message went in, or with `EINTR`
    /// after [`INTERRUPT_GRACE`] — at once if the broker cannot be reached
    /// (it is taken off when the broker is back).
    pub(in crate::hub) fn interrupt_remote(&self, st: &mut State, fx: &mut Effects, id: WaiterId) {
        // The store knows the call by its own id: a read that took over a
        // poll's call answers under another.
        let wid = if st.calls.get(&id).is_some_and(|c| c.id == id) {
            id
        } else {
            match st.calls.iter().find(|(_, c)| c.id == id) {
                Some((w, _)) => *w,
                None => return,
            }
        };
        let call = st.calls.get_mut(&wid).expect("call");
        let e = || Outcome::Error(Errno::EINTR.because("interrupted by a signal"));
        match (&call.what, call.listed) {
            (CallKind::Write { .. }, _) if call.interrupted => {}
            (CallKind::Write { .. }, listed) => {
                let mailbox = call.mailbox;
                if !self.store().is_some_and(|s| s.reachable()) {
                    let call = st.calls.remove(&wid).expect("call");
                    if listed {
                        st.withdraw.push((mailbox, wid));
                    }
                    return self.end_call(st, fx, call, e());
                }
                call.interrupted = true;
                if listed {
                    fx.remote().later.push(cancel_send_job(mailbox, wid));
                }
                fx.remote().soon.push((INTERRUPT_GRACE, give_up_job(wid)));
            }
            (CallKind::Read { .. }, true) => {
                let call = st.calls.remove(&wid).expect("call");
                fx.remote()
                    .later
                    .push(cancel_receive_job(call.mailbox, wid));
                self.end_call(st, fx, call, e());
            }
            (CallKind::Read { .. }, false) => {
                // Answered now; the store's answer, when it comes, finds
                // no reply and is undone.
                let Some(reply) = call.reply.take() else {
                    return;
                };
                call.poll = None;
                let handle = call.handle;
                if let Some(HandleKind::Recv {
                    reading, behind, ..
                }) = st.handles.recv_mut(handle)
                {
                    *reading = false;
                    if !behind.is_empty() {
                        st.waiters.resume.push(handle);
                    }
                }
                st.waiters.unpark(id);
                fx.reply(reply, e());
            }
        }
    }
}

pub(super) fn receive_job(mailbox: MailboxId, reader: Reader, acks: Vec<FlightId>) -> Job {
    Box::new(move |hub: &Hub| {
        let Some(store) = hub.store() else { return };
        let answer = store.ack_and_receive(mailbox, &reader, &acks);
        hub.received(reader.wid, mailbox, answer);
    })
}

/// Sends a write's messages; `again`: it was listed before the broker
/// went away.
pub(super) fn send_job(mailbox: MailboxId, wid: Wid, again: bool) -> Job {
    Box::new(move |hub: &Hub| {
        let Some(store) = hub.store() else { return };
        // The messages stay in the call (a broker restarted without its
        // data has lost a blocked sender's); copied out, the lock is not
        // held during the call.
        let (msgs, writer) = {
            let st = hub.lock();
            match st.calls.get(&wid).map(|c| &c.what) {
                Some(CallKind::Write {
                    msgs,
                    nonblock,
                    pid,
                    ..
                }) => (
                    msgs.clone(),
                    Writer {
                        wid,
                        pid: *pid,
                        nonblock: *nonblock,
                        again,
                    },
                ),
                _ => return,
            }
        };
        let answer = store.send(mailbox, &writer, &msgs);
        hub.sent(wid, mailbox, answer);
    })
}

pub(super) fn give_back_job(mailbox: MailboxId, flight: FlightId) -> Job {
    Box::new(move |hub: &Hub| {
        if let Some(store) = hub.store()
            && let Err(e) = store.give_back(mailbox, &flight)
        {
            warn!("cannot give messages back to the broker: {e}");
        }
    })
}

/// Acknowledges what descriptor `h` read and has not acknowledged with a
/// later read (see [`Hub::ack_soon`]), if `first` is still among it: a
/// read that came meanwhile carried `first`, and the timer of what that
/// read took is its own.
pub(super) fn flush_acks_job(h: u64, seen: FlightId) -> Job {
    Box::new(move |hub: &Hub| {
        let Some(store) = hub.store() else { return };
        let flights = {
            let mut st = hub.lock();
            match st.unacked.get(&h).and_then(|p| p.first()).cloned() {
                None => {
                    st.ack_timers.remove(&h);
                    return;
                }
                Some(first) if first != seen => {
                    // `seen` was carried by a read; `first` came since:
                    // it gets its own delay.
                    drop(st);
                    hub.dispatch_soon(vec![(ACK_DELAY, flush_acks_job(h, first))]);
                    return;
                }
                Some(_) => {
                    st.ack_timers.remove(&h);
                    st.unacked.remove(&h).expect("pending acknowledgements")
                }
            }
        };
        if let Err(e) = store.ack_all(&flights) {
            debug!("cannot acknowledge deliveries to the broker: {e}");
        }
    })
}

pub(super) fn cancel_receive_job(mailbox: MailboxId, wid: Wid) -> Job {
    Box::new(move |hub: &Hub| {
        if let Some(store) = hub.store()
            && let Err(e) = store.cancel_receive(mailbox, wid)
        {
            debug!("cannot take a waiting reader off the broker: {e}");
        }
    })
}

/// Takes the interrupted blocked sender `wid` off the broker; the write
/// is answered from what the store says.
pub(super) fn cancel_send_job(mailbox: MailboxId, wid: Wid) -> Job {
    Box::new(move |hub: &Hub| {
        let Some(store) = hub.store() else { return };
        let answer = store.cancel_send(mailbox, wid);
        hub.withdrawn(wid, mailbox, answer);
    })
}

/// Takes a blocked sender whose write already ended off the broker.
pub(super) fn withdraw_job(mailbox: MailboxId, wid: Wid) -> Job {
    Box::new(move |hub: &Hub| {
        let Some(store) = hub.store() else { return };
        if let Err(e) = store.cancel_send(mailbox, wid) {
            debug!("cannot take a blocked sender off the broker: {e}");
            hub.lock().withdraw.push((mailbox, wid));
        }
    })
}

/// An interrupted write the broker has not answered within
/// [`INTERRUPT_GRACE`] ends with `EINTR`; the answer, when it comes,
/// withdraws what it left on the broker.
fn give_up_job(wid: Wid) -> Job {
    Box::new(move |hub: &Hub| {
        let mut st = hub.lock();
        let mut fx = Effects::default();
        if st.calls.get(&wid).is_some_and(|c| c.interrupted)
            && let Some(call) = st.calls.remove(&wid)
        {
            let e = Errno::EINTR.because("interrupted by a signal");
            hub.end_call(&mut st, &mut fx, call, Outcome::Error(e));
        }
        hub.finish(st, fx);
    })
}
