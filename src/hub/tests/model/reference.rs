//! The reference model, written from ipcfs(7) and not from the core: per
//! mailbox a queue of messages, a policy, the receivers' own queues
//! (broadcast copies), the pair and the exclusive holder, the blocked
//! readers in waiting order and the four counters; per descriptor its kind,
//! its process and, for `recv`, the message it is in the middle of.

use std::collections::{BTreeMap, VecDeque};

use super::operations::{Dir, Kind, Text};
use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pol {
    pub(super) rule: Rule,
    /// None: unlimited.
    pub(super) capacity: Option<usize>,
    pub(super) max: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Msg {
    /// Its place in the mailbox's send order.
    pub(super) order: u64,
    pub(super) bytes: Vec<u8>,
}

/// How a blocked read takes a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// `recv`: any message, piece by piece.
    Stream,
    /// `packets`: a whole message that fits the buffer.
    Packet,
    /// `batch`: a whole message that fits the buffer with its header.
    Framed,
}

impl Shape {
    pub(super) fn fits(self, len: usize, size: u32) -> bool {
        match self {
            Shape::Stream => true,
            Shape::Packet => len <= size as usize,
            Shape::Framed => 4 + len <= size as usize,
        }
    }
}

pub(super) fn frame(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A blocked read.
#[derive(Clone, Debug)]
pub(super) struct Wait {
    pub(super) req: u64,
    pub(super) fd: usize,
    pub(super) reader: u32,
    pub(super) size: u32,
    pub(super) shape: Shape,
}

/// A process with `recv` open: how many descriptors, when it opened the
/// first, and its broadcast copies.
#[derive(Default)]
pub(super) struct Receiver {
    pub(super) opens: usize,
    pub(super) since: u64,
    pub(super) copies: VecDeque<Msg>,
}

pub(super) struct Mbox {
    pub(super) gone: bool,
    pub(super) policy: Pol,
    pub(super) shared: VecDeque<Msg>,
    pub(super) receivers: BTreeMap<u32, Receiver>,
    /// Blocked reads, longest waiting first.
    pub(super) waiters: VecDeque<Wait>,
    pub(super) pair: Vec<u32>,
    pub(super) holder: Option<u32>,
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) dropped: u64,
    pub(super) truncated: u64,
    /// Messages taken in so far (numbers their order).
    pub(super) accepted: u64,
    /// `recv` opens so far (orders the receivers).
    pub(super) opened: u64,
}

impl Mbox {
    pub(super) fn new(policy: Pol) -> Mbox {
        Mbox {
            gone: false,
            policy,
            shared: VecDeque::new(),
            receivers: BTreeMap::new(),
            waiters: VecDeque::new(),
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
    pub(super) fn free(&self, queued: usize) -> usize {
        self.policy
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(queued))
    }

    /// Does the rule let `pid` receive, with the processes bound now?
    pub(super) fn allows_recv(&self, pid: u32) -> bool {
        match self.policy.rule {
            Rule::Arbitrary | Rule::Broadcast => true,
            Rule::Pair => self.pair.len() < 2 || self.pair.contains(&pid),
            Rule::Exclusive => self.holder.is_none_or(|h| h == pid),
        }
    }

    /// Admits `pid` (receiving or sending), taking a pair slot or the
    /// exclusive hold; EBUSY when the rule refuses it.
    pub(super) fn admit(&mut self, pid: u32, recv: bool) -> std::result::Result<(), i32> {
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
    pub(super) fn earliest_receiver(&self, not: u32) -> Option<u32> {
        self.receivers
            .iter()
            .filter(|(p, _)| **p != not)
            .min_by_key(|(_, r)| r.since)
            .map(|(p, _)| *p)
    }

    /// Does `pid` take the next message from its own copies (rather than
    /// the shared queue)? The older of the two fronts goes first.
    pub(super) fn own_first(&self, pid: u32) -> bool {
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

    pub(super) fn peek(&self, pid: u32) -> Option<usize> {
        if self.own_first(pid) {
            self.receivers[&pid].copies.front().map(|m| m.bytes.len())
        } else {
            self.shared.front().map(|m| m.bytes.len())
        }
    }

    pub(super) fn take(&mut self, pid: u32) -> Option<Msg> {
        let msg = if self.own_first(pid) {
            self.receivers.get_mut(&pid)?.copies.pop_front()
        } else {
            self.shared.pop_front()
        }?;
        self.received += 1;
        Some(msg)
    }

    /// Is there room for `n` messages, the largest `len` bytes? Free
    /// capacity plus the blocked readers that can take them; under
    /// broadcast with receivers, in every receiver's own queue.
    pub(super) fn room(&self, n: usize, len: usize) -> bool {
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

    pub(super) fn status(&self) -> BTreeMap<String, String> {
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
        let queued = self
            .shared
            .iter()
            .chain(self.receivers.values().flat_map(|r| r.copies.iter()));
        let (messages, bytes) = queued.fold((0, 0), |(n, b), m| (n + 1, b + m.bytes.len()));
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
            ("senders-waiting", "0".to_string()),
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
pub(super) struct Fd {
    pub(super) pid: u32,
    pub(super) mbox: usize,
    pub(super) kind: Kind,
    pub(super) open: bool,
    /// `recv`: the message being read and how far.
    pub(super) current: Option<(Vec<u8>, usize)>,
    /// `recv`: the whole message was returned; the next read gives 0.
    pub(super) eof: bool,
    /// `recv`: a read of it is blocked on the mailbox.
    pub(super) reading: bool,
    /// `recv`: reads blocked behind that one.
    pub(super) behind: VecDeque<Wait>,
    /// `status`: the text it was opened with.
    pub(super) snapshot: BTreeMap<String, String>,
}

impl Fd {
    /// A read from the message in hand, if there is one (or its end of file).
    pub(super) fn serve(&mut self, size: u32) -> Option<Vec<u8>> {
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

pub(super) struct Model {
    pub(super) default: Pol,
    pub(super) boxes: Vec<Mbox>,
    /// The live mailbox of each name.
    pub(super) by_name: BTreeMap<&'static str, usize>,
    pub(super) fds: Vec<Fd>,
    /// Blocked reads answered by the current operation.
    pub(super) answered: Vec<(u64, Got)>,
    /// `recv` descriptors whose blocked read ended, with reads behind it.
    pub(super) resume: Vec<usize>,
}

pub(super) fn err(e: i32) -> Got {
    Got::Err(e)
}

impl Model {
    pub(super) fn new(default: Pol) -> Model {
        Model {
            default,
            boxes: Vec::new(),
            by_name: BTreeMap::new(),
            fds: Vec::new(),
            answered: Vec::new(),
            resume: Vec::new(),
        }
    }

    pub(super) fn mkdir(&mut self, name: &'static str) -> std::result::Result<(), i32> {
        if self.by_name.contains_key(name) {
            return Err(libc::EEXIST);
        }
        if name == "a/c" && !self.by_name.contains_key("a") {
            return Err(libc::ENOENT);
        }
        self.boxes.push(Mbox::new(self.default));
        self.by_name.insert(name, self.boxes.len() - 1);
        Ok(())
    }

    pub(super) fn rmdir(&mut self, name: &'static str) -> std::result::Result<(), i32> {
        let Some(&m) = self.by_name.get(name) else {
            return Err(libc::ENOENT);
        };
        if name == "a" && self.by_name.contains_key("a/c") {
            return Err(libc::ENOTEMPTY);
        }
        self.by_name.remove(name);
        self.boxes[m].gone = true;
        for w in std::mem::take(&mut self.boxes[m].waiters) {
            self.end_wait(w, libc::EIDRM);
        }
        Ok(())
    }

    pub(super) fn open(
        &mut self,
        pid: u32,
        name: &str,
        kind: Kind,
    ) -> std::result::Result<usize, i32> {
        let Some(&m) = self.by_name.get(name) else {
            return Err(libc::ENOENT);
        };
        let b = &mut self.boxes[m];
        let mut snapshot = BTreeMap::new();
        if kind == Kind::Status {
            snapshot = b.status();
        } else {
            if kind.receives() {
                b.admit(pid, true)?;
            }
            if kind.sends() {
                b.admit(pid, false)?;
            }
            if kind.receives() {
                b.opened += 1;
                let since = b.opened;
                b.receivers
                    .entry(pid)
                    .or_insert_with(|| Receiver {
                        since,
                        ..Receiver::default()
                    })
                    .opens += 1;
            }
        }
        self.fds.push(Fd {
            pid,
            mbox: m,
            kind,
            open: true,
            current: None,
            eof: false,
            reading: false,
            behind: VecDeque::new(),
            snapshot,
        });
        Ok(self.fds.len() - 1)
    }

    pub(super) fn close(&mut self, fd: usize) {
        let f = &mut self.fds[fd];
        if !std::mem::replace(&mut f.open, false) {
            return;
        }
        let (pid, m, kind) = (f.pid, f.mbox, f.kind);
        let partial = f.current.is_some();
        let b = &mut self.boxes[m];
        if b.gone || kind == Kind::Status {
            return;
        }
        if partial {
            b.truncated += 1;
        }
        if !kind.receives() {
            return;
        }
        let Some(r) = b.receivers.get_mut(&pid) else {
            return;
        };
        r.opens -= 1;
        if r.opens == 0 {
            let r = b.receivers.remove(&pid).expect("receiver");
            b.dropped += r.copies.len() as u64;
            if b.holder == Some(pid) {
                b.holder = b.earliest_receiver(pid);
            }
        }
    }

    /// A write of `frames` (`cut`: a malformed batch); `n` is the write's
    /// length in bytes.
    pub(super) fn write(&mut self, fd: usize, frames: &[Vec<u8>], cut: bool, n: usize) -> Got {
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
        let (pid, m) = (f.pid, f.mbox);
        let b = &mut self.boxes[m];
        if b.gone {
            return err(libc::EIDRM);
        }
        let largest = msgs.iter().map(Vec::len).max().unwrap_or(0);
        if largest > b.policy.max || msgs.len() > b.policy.capacity.unwrap_or(usize::MAX).max(1) {
            return err(libc::EMSGSIZE);
        }
        if let Err(e) = b.admit(pid, false) {
            return err(e);
        }
        if !b.room(msgs.len(), largest) {
            return err(libc::EAGAIN);
        }
        for bytes in msgs {
            self.accept(m, bytes);
        }
        Got::Written(n as u32)
    }

    /// Takes in one message: to the longest-waiting blocked reader that can
    /// take it (those before it that cannot get EMSGSIZE), else queued;
    /// under broadcast with receivers, the same for each receiver with its
    /// own copy.
    pub(super) fn accept(&mut self, m: usize, bytes: Vec<u8>) {
        let b = &mut self.boxes[m];
        b.accepted += 1;
        b.sent += 1;
        let msg = Msg {
            order: b.accepted,
            bytes,
        };
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
    pub(super) fn next_waiter(&mut self, m: usize, of: Option<u32>, len: usize) -> Option<Wait> {
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
    pub(super) fn hand(&mut self, m: usize, w: Wait, msg: Msg) {
        self.boxes[m].received += 1;
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
    pub(super) fn end_wait(&mut self, w: Wait, e: i32) {
        self.answered.push((w.req, err(e)));
        if w.shape == Shape::Stream {
            let f = &mut self.fds[w.fd];
            f.reading = false;
            if !f.behind.is_empty() {
                self.resume.push(w.fd);
            }
        }
    }

    /// A read of `size` bytes (not of a `status` descriptor); `req` names
    /// it if it blocks.
    pub(super) fn read(&mut self, fd: usize, size: u32, block: bool, req: u64) -> Got {
        let f = &self.fds[fd];
        if !f.open {
            return err(libc::EBADF);
        }
        match f.kind {
            Kind::Recv => self.read_stream(fd, size, block, req),
            Kind::Packets(d) if d != Dir::W => self.read_whole(fd, size, block, req, Shape::Packet),
            Kind::Batch(d) if d != Dir::W => self.read_whole(fd, size, block, req, Shape::Framed),
            _ => err(libc::EBADF),
        }
    }

    pub(super) fn read_stream(&mut self, fd: usize, size: u32, block: bool, req: u64) -> Got {
        let f = &mut self.fds[fd];
        if let Some(out) = f.serve(size) {
            return Got::Data(out);
        }
        let wait = Wait {
            req,
            fd,
            reader: f.pid,
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
        let b = &mut self.boxes[f.mbox];
        if b.gone {
            return err(libc::EIDRM);
        }
        if let Err(e) = b.admit(f.pid, true) {
            return err(e);
        }
        if let Some(msg) = b.take(f.pid) {
            f.current = Some((msg.bytes, 0));
            return Got::Data(f.serve(size).expect("a message"));
        }
        if !block {
            return err(libc::EAGAIN);
        }
        b.waiters.push_back(wait);
        f.reading = true;
        Got::Parked
    }

    /// A read of `packets` or `batch`: whole messages.
    pub(super) fn read_whole(
        &mut self,
        fd: usize,
        size: u32,
        block: bool,
        req: u64,
        shape: Shape,
    ) -> Got {
        let pid = self.fds[fd].pid;
        let b = &mut self.boxes[self.fds[fd].mbox];
        if b.gone {
            return err(libc::EIDRM);
        }
        if let Err(e) = b.admit(pid, true) {
            return err(e);
        }
        match b.peek(pid) {
            Some(len) if !shape.fits(len, size) => err(libc::EMSGSIZE),
            Some(_) if shape == Shape::Packet => Got::Data(b.take(pid).expect("peeked").bytes),
            Some(_) => {
                let mut out = Vec::new();
                while let Some(len) = b.peek(pid)
                    && out.len() + 4 + len <= size as usize
                {
                    frame(&mut out, &b.take(pid).expect("peeked").bytes);
                }
                Got::Data(out)
            }
            None if !block => err(libc::EAGAIN),
            None => {
                b.waiters.push_back(Wait {
                    req,
                    fd,
                    reader: pid,
                    size,
                    shape,
                });
                Got::Parked
            }
        }
    }

    /// A write of a policy file (`name` None: the root's).
    pub(super) fn policy(&mut self, name: Option<&str>, text: &Text) -> Got {
        let m = match name {
            None => None,
            Some(n) => match self.by_name.get(n) {
                Some(&m) => Some(m),
                None => return err(libc::ENOENT),
            },
        };
        let current = m.map_or(self.default, |m| self.boxes[m].policy);
        let Some(new) = text.apply(current) else {
            return err(libc::EINVAL);
        };
        let Some(m) = m else {
            self.default = new;
            return Got::Written(text.render().len() as u32);
        };
        let old = std::mem::replace(&mut self.boxes[m].policy, new);
        if old.rule != new.rule {
            // The processes with the mailbox open, in open order, make the
            // new pair, or the holder (the earliest receiving); blocked
            // readers the new rule refuses get EBUSY.
            let openers: Vec<(u32, bool)> = self
                .fds
                .iter()
                .filter(|f| f.open && f.mbox == m && f.kind != Kind::Status)
                .map(|f| (f.pid, f.kind.receives()))
                .collect();
            let b = &mut self.boxes[m];
            b.pair.clear();
            b.holder = None;
            for (pid, receives) in openers {
                match new.rule {
                    Rule::Pair if b.pair.len() < 2 && !b.pair.contains(&pid) => b.pair.push(pid),
                    Rule::Exclusive if receives && b.holder.is_none() => b.holder = Some(pid),
                    _ => {}
                }
            }
            let (keep, refuse): (VecDeque<Wait>, VecDeque<Wait>) = std::mem::take(&mut b.waiters)
                .into_iter()
                .partition(|w| b.allows_recv(w.reader));
            b.waiters = keep;
            for w in refuse {
                self.end_wait(w, libc::EBUSY);
            }
        }
        Got::Written(text.render().len() as u32)
    }

    /// The blocked read `req` is interrupted.
    pub(super) fn interrupt(&mut self, req: u64) {
        for m in 0..self.boxes.len() {
            let waiters = &mut self.boxes[m].waiters;
            if let Some(i) = waiters.iter().position(|w| w.req == req) {
                let w = waiters.remove(i).expect("waiter");
                return self.end_wait(w, libc::EINTR);
            }
        }
        for f in &mut self.fds {
            if let Some(i) = f.behind.iter().position(|w| w.req == req) {
                f.behind.remove(i);
                return self.answered.push((req, err(libc::EINTR)));
            }
        }
    }

    /// Process `pid` has exited (having closed all its descriptors).
    pub(super) fn exited(&mut self, pid: u32) {
        for b in self.boxes.iter_mut().filter(|b| !b.gone) {
            b.pair.retain(|p| *p != pid);
            if b.holder == Some(pid) {
                b.holder = b.earliest_receiver(pid);
            }
        }
    }

    /// Ends an operation: reads waiting behind a blocked read that ended go
    /// on, as blocking reads, in order.
    pub(super) fn finish(&mut self) -> Vec<(u64, Got)> {
        while let Some(fd) = self.resume.pop() {
            while !self.fds[fd].reading {
                let Some(w) = self.fds[fd].behind.pop_front() else {
                    break;
                };
                let got = self.read_stream(fd, w.size, true, w.req);
                if got != Got::Parked {
                    self.answered.push((w.req, got));
                }
            }
        }
        std::mem::take(&mut self.answered)
    }

    /// Every blocked read: (request, process).
    pub(super) fn parked(&self) -> Vec<(u64, u32)> {
        let mut all: Vec<(u64, u32)> = self
            .boxes
            .iter()
            .flat_map(|b| b.waiters.iter())
            .chain(self.fds.iter().flat_map(|f| f.behind.iter()))
            .map(|w| (w.req, w.reader))
            .collect();
        all.sort();
        all
    }

    pub(super) fn has_parked(&self, fd: usize) -> bool {
        !self.fds[fd].behind.is_empty()
            || self
                .boxes
                .iter()
                .any(|b| b.waiters.iter().any(|w| w.fd == fd))
    }
}
