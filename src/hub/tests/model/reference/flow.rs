//! How messages flow through a channel of the model: writes (taken in at
//! once, blocked, or refused), reads (from the queues, or by rendezvous
//! from the first blocked sender, or blocked), and blocked senders let in
//! while there is room.

use super::super::operations::{Dir, Kind};
use super::*;

impl Model {
    /// A write of `frames` (`cut`: a malformed batch); `n` is the write's
    /// length in bytes; `req` names it if it blocks.
    #[allow(clippy::too_many_arguments)]
    pub(in super::super) fn write(
        &mut self,
        fd: usize,
        frames: &[Vec<u8>],
        cut: bool,
        n: usize,
        block: bool,
        req: u64,
    ) -> Got {
        let f = &self.fds[fd];
        if !f.open {
            return err(libc::EBADF);
        }
        let msgs = match f.kind {
            Kind::Batch(d) if d != Dir::R && cut => return err(libc::EINVAL),
            Kind::Batch(d) if d != Dir::R => frames.to_vec(),
            k if k.sends() => vec![frames.concat()],
            _ => return err(libc::EBADF),
        };
        let (pid, m) = (f.pid, f.out);
        let b = &mut self.boxes[m];
        if b.gone {
            return err(libc::EIDRM);
        }
        // PACKETS AND BATCH: "A batch of more frames than the capacity (or
        // than one, for a rendezvous mailbox) could never fit and fails
        // with EMSGSIZE."
        let largest = msgs.iter().map(Vec::len).max().unwrap_or(0);
        if largest > b.policy.max || msgs.len() > b.policy.capacity.unwrap_or(usize::MAX).max(1) {
            return err(libc::EMSGSIZE);
        }
        // DIRECT LINKS: "Sending to a peer that has exited fails with ESRCH."
        if b.receiver_gone {
            return err(libc::ESRCH);
        }
        if let Err(e) = b.admit(pid, false) {
            return err(e);
        }
        // BLOCKING AND INTERRUPTS: "blocked senders are served in the order
        // they came": a write with room still waits behind them.
        let writable = b.senders.is_empty() && b.room(msgs.len(), largest);
        if !writable && !block {
            return err(libc::EAGAIN);
        }
        let tag = self.fds[fd].book.as_mut().map(|book| (fd, book.issue()));
        let msgs: Vec<Msg> = msgs
            .into_iter()
            .map(|bytes| Msg {
                order: 0,
                bytes,
                receipt: tag,
            })
            .collect();
        if writable {
            for msg in msgs {
                self.accept(m, msg);
            }
            return Got::Written(n as u32);
        }
        self.boxes[m].senders.push_back(Sender {
            req,
            fd,
            pid,
            msgs,
            written: n as u32,
        });
        Got::Parked
    }

    /// Takes in one message: to the longest-waiting blocked reader that can
    /// take it (those before it that cannot get EMSGSIZE), else queued;
    /// under broadcast with receivers, the same for each receiver with its
    /// own copy.
    pub(in super::super) fn accept(&mut self, m: usize, mut msg: Msg) {
        let b = &mut self.boxes[m];
        b.accepted += 1;
        b.sent += 1;
        msg.order = b.accepted;
        if b.policy.rule == Rule::Broadcast && !b.receivers.is_empty() {
            let readers: Vec<u32> = b.receivers.keys().copied().collect();
            for p in readers {
                match self.next_waiter(m, Some(p), msg.bytes.len()) {
                    Some(w) => self.hand(m, w, msg.clone()),
                    None => {
                        let r = self.boxes[m].receivers.get_mut(&p).expect("receiver");
                        r.copies.push_back(msg.clone());
                    }
                }
            }
        } else {
            match self.next_waiter(m, None, msg.bytes.len()) {
                Some(w) => self.hand(m, w, msg),
                None => self.boxes[m].shared.push_back(msg),
            }
        }
    }

    /// The longest-waiting blocked reader (of process `of`) that can take
    /// `len` bytes; those before it that cannot get EMSGSIZE.
    pub(in super::super) fn next_waiter(
        &mut self,
        m: usize,
        of: Option<u32>,
        len: usize,
    ) -> Option<Wait> {
        loop {
            let waiters = &mut self.boxes[m].waiters;
            let i = waiters
                .iter()
                .position(|w| of.is_none_or(|p| w.reader == p))?;
            let w = waiters.remove(i).expect("waiter");
            if w.shape.fits(len, w.size) {
                return Some(w);
            }
            self.end_wait(w, libc::EMSGSIZE);
        }
    }

    /// A blocked reader receives `msg`.
    pub(in super::super) fn hand(&mut self, m: usize, w: Wait, msg: Msg) {
        self.boxes[m].received += 1;
        self.resolve(msg.receipt, Ok(w.reader));
        let out = match w.shape {
            Shape::Packet => msg.bytes,
            Shape::Framed => {
                let mut out = Vec::new();
                frame(&mut out, &msg.bytes);
                out
            }
            Shape::Stream => {
                let f = &mut self.fds[w.fd];
                f.current = Some((msg.bytes, 0));
                f.reading = false;
                if !f.behind.is_empty() {
                    self.resume.push(w.fd);
                }
                f.serve(w.size).expect("a message")
            }
        };
        self.answered.push((w.req, Got::Data(out)));
    }

    /// A blocked read ends with an error.
    pub(in super::super) fn end_wait(&mut self, w: Wait, e: i32) {
        self.answered.push((w.req, err(e)));
        if w.shape == Shape::Stream {
            let f = &mut self.fds[w.fd];
            f.reading = false;
            if !f.behind.is_empty() {
                self.resume.push(w.fd);
            }
        }
    }

    /// A blocked write ends with an error: nothing was sent, and it leaves
    /// no receipt (SENDER RECEIPTS).
    pub(in super::super) fn end_sender(&mut self, s: Sender, e: i32) {
        self.answered.push((s.req, err(e)));
        if let Some(tag) = s.msgs.first().and_then(|m| m.receipt) {
            self.cancel(tag);
        }
    }

    /// Lets the blocked senders of channel `m` in, first come first, each
    /// whole, while there is room (BUFFERING, PACKETS AND BATCH). Blocked
    /// readers whose buffer cannot hold the first blocked sender's message
    /// fail with EMSGSIZE (PACKETS AND BATCH, packets: "a blocked read whose
    /// buffer is too small for the message that would go to it fails the
    /// same way").
    pub(in super::super) fn pump(&mut self, m: usize) {
        while let Some(s) = self.boxes[m].senders.front() {
            let n = s.msgs.len();
            let len = s.msgs.iter().map(|m| m.bytes.len()).max().unwrap_or(0);
            if !self.boxes[m].room(n, len) {
                let b = &mut self.boxes[m];
                let (keep, small): (VecDeque<Wait>, VecDeque<Wait>) =
                    std::mem::take(&mut b.waiters)
                        .into_iter()
                        .partition(|w| w.shape.fits(len, w.size));
                b.waiters = keep;
                for w in small {
                    self.end_wait(w, libc::EMSGSIZE);
                }
                if !self.boxes[m].room(n, len) {
                    break;
                }
            }
            let s = self.boxes[m].senders.pop_front().expect("sender");
            for msg in s.msgs {
                self.accept(m, msg);
            }
            self.answered.push((s.req, Got::Written(s.written)));
        }
    }

    /// `pid` takes its next message from channel `m` (see [`Mbox::peek`]):
    /// from its own copies or the shared queue, or by rendezvous from the
    /// first blocked sender, whose write completes. Room made lets blocked
    /// senders in.
    pub(in super::super) fn take(&mut self, m: usize, pid: u32) -> Option<Msg> {
        let b = &mut self.boxes[m];
        let msg = if b.own_first(pid) {
            b.receivers.get_mut(&pid)?.copies.pop_front()
        } else if !b.shared.is_empty() {
            b.shared.pop_front()
        } else if b.rendezvous() {
            let mut s = b.senders.pop_front().expect("sender");
            b.sent += 1;
            self.answered.push((s.req, Got::Written(s.written)));
            s.msgs.pop()
        } else {
            None
        }?;
        self.boxes[m].received += 1;
        self.resolve(msg.receipt, Ok(pid));
        self.pump(m);
        Some(msg)
    }

    /// A read of `size` bytes (not of a `status` descriptor); `req` names
    /// it if it blocks.
    pub(in super::super) fn read(&mut self, fd: usize, size: u32, block: bool, req: u64) -> Got {
        let f = &self.fds[fd];
        if !f.open {
            return err(libc::EBADF);
        }
        match f.kind {
            Kind::Recv => self.read_stream(fd, size, block, req),
            Kind::Packets(d) if d != Dir::W => self.read_whole(fd, size, block, req, Shape::Packet),
            Kind::Batch(d) if d != Dir::W => self.read_whole(fd, size, block, req, Shape::Framed),
            Kind::SendRw => self.read_receipt(fd, size, block, req),
            _ => err(libc::EBADF),
        }
    }

    /// Nothing to receive: ESRCH once a link's sender has exited (DIRECT
    /// LINKS: "then fails with ESRCH instead of blocking forever, also with
    /// O_NONBLOCK"), EAGAIN without blocking, else `None`: it blocks.
    fn idle(&self, m: usize, block: bool) -> Option<Got> {
        if self.boxes[m].sender_gone {
            Some(err(libc::ESRCH))
        } else if !block {
            Some(err(libc::EAGAIN))
        } else {
            None
        }
    }

    pub(in super::super) fn read_stream(
        &mut self,
        fd: usize,
        size: u32,
        block: bool,
        req: u64,
    ) -> Got {
        let f = &mut self.fds[fd];
        if let Some(out) = f.serve(size) {
            return Got::Data(out);
        }
        let (pid, m) = (f.pid, f.mbox);
        let wait = Wait {
            req,
            fd,
            reader: pid,
            size,
            shape: Shape::Stream,
        };
        if f.reading {
            if !block {
                return err(libc::EAGAIN);
            }
            f.behind.push_back(wait);
            return Got::Parked;
        }
        let b = &mut self.boxes[m];
        if b.gone {
            return err(libc::EIDRM);
        }
        if let Err(e) = b.admit(pid, true) {
            return err(e);
        }
        if let Some(msg) = self.take(m, pid) {
            let f = &mut self.fds[fd];
            f.current = Some((msg.bytes, 0));
            return Got::Data(f.serve(size).expect("a message"));
        }
        if let Some(got) = self.idle(m, block) {
            return got;
        }
        self.boxes[m].waiters.push_back(wait);
        self.fds[fd].reading = true;
        Got::Parked
    }

    /// A read of `packets` or `batch`: whole messages.
    pub(in super::super) fn read_whole(
        &mut self,
        fd: usize,
        size: u32,
        block: bool,
        req: u64,
        shape: Shape,
    ) -> Got {
        let (pid, m) = (self.fds[fd].pid, self.fds[fd].mbox);
        let b = &mut self.boxes[m];
        if b.gone {
            return err(libc::EIDRM);
        }
        if let Err(e) = b.admit(pid, true) {
            return err(e);
        }
        match b.peek(pid) {
            Some(len) if !shape.fits(len, size) => err(libc::EMSGSIZE),
            Some(_) if shape == Shape::Packet => {
                Got::Data(self.take(m, pid).expect("peeked").bytes)
            }
            Some(_) => {
                let mut out = Vec::new();
                while let Some(len) = self.boxes[m].peek(pid)
                    && out.len() + 4 + len <= size as usize
                {
                    frame(&mut out, &self.take(m, pid).expect("peeked").bytes);
                }
                Got::Data(out)
            }
            None => match self.idle(m, block) {
                Some(got) => got,
                None => {
                    self.boxes[m].waiters.push_back(Wait {
                        req,
                        fd,
                        reader: pid,
                        size,
                        shape,
                    });
                    Got::Parked
                }
            },
        }
    }
}
