//! The reference model, written from ipcfs(7) and not from the core: its
//! channels (`channel.rs`: mailboxes and link directions, with their
//! queues, blocked readers and blocked senders), the way messages flow
//! through them (`flow.rs`: writes, reads, rendezvous, letting blocked
//! senders in), sender receipts (`receipts.rs`) and direct links between
//! processes (`links.rs`). This file holds the model's state and the
//! operations on the tree, opens, closes, policies, interrupts and exits.

mod channel;
mod flow;
mod links;
mod receipts;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::operations::{Kind, Text};
use super::*;
pub(super) use channel::{Fd, Mbox, Msg, Pol, Sender, Shape, Tag, Wait, frame};
pub(super) use receipts::Book;

pub(super) struct Model {
    /// The root policy file: what new mailboxes get.
    pub(super) default: Pol,
    /// The mount's own default policy: what link directions get (ipcfs(7)
    /// BUFFERING: "The default is ... mount option --capacity").
    pub(super) mount: Pol,
    /// Every channel ever made (mailboxes and link directions).
    pub(super) boxes: Vec<Mbox>,
    /// The live mailbox of each name.
    pub(super) by_name: BTreeMap<&'static str, usize>,
    /// The link directions that have state, by (from, to).
    pub(super) links: BTreeMap<(u32, u32), usize>,
    /// Processes that have exited.
    pub(super) dead: BTreeSet<u32>,
    /// Messages dropped because their receiver exited (proc/status).
    pub(super) dropped_on_exit: u64,
    pub(super) fds: Vec<Fd>,
    /// Blocked calls answered by the current operation.
    pub(super) answered: Vec<(u64, Got)>,
    /// `recv` descriptors whose blocked read ended, with reads behind it.
    pub(super) resume: Vec<usize>,
    /// On a broker mount, this daemon's node: receipts name the receiver
    /// as `PID NODE` (ipcfs(7), ACROSS HOSTS).
    pub(super) node: Option<String>,
}

/// Where the core and ipcfs(7) disagree, reported and not yet settled.
pub(super) fn err(e: i32) -> Got {
    Got::Err(e)
}

impl Model {
    pub(super) fn new(default: Pol) -> Model {
        Model {
            default,
            mount: Pol {
                rule: Rule::Arbitrary,
                ..default
            },
            boxes: Vec::new(),
            by_name: BTreeMap::new(),
            links: BTreeMap::new(),
            dead: BTreeSet::new(),
            dropped_on_exit: 0,
            fds: Vec::new(),
            answered: Vec::new(),
            resume: Vec::new(),
            node: None,
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

    /// ipcfs(7) ERRORS, EIDRM: "blocked callers wake with it, later I/O on
    /// old descriptors and receipts of dropped messages fail with it";
    /// SENDER RECEIPTS: a write "its mailbox removed while it was blocked"
    /// sent nothing and leaves no receipt.
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
        self.fail_senders_and_drop(m, libc::EIDRM);
        Ok(())
    }

    /// Blocked senders of channel `m` get `e` (nothing sent, no receipt);
    /// its queued messages are dropped, their receipts failing with `e`.
    /// Returns how many were dropped.
    pub(super) fn fail_senders_and_drop(&mut self, m: usize, e: i32) -> u64 {
        for s in std::mem::take(&mut self.boxes[m].senders) {
            self.end_sender(s, e);
        }
        let b = &mut self.boxes[m];
        let mut dropped: Vec<Msg> = b.shared.drain(..).collect();
        for r in b.receivers.values_mut() {
            dropped.extend(r.copies.drain(..));
        }
        let n = dropped.len() as u64;
        b.dropped += n;
        for msg in dropped {
            self.resolve(msg.receipt, Err(e));
        }
        n
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
                b.open_recv(pid);
            }
        }
        Ok(self.push_fd(pid, kind, m, m, None, snapshot))
    }

    pub(super) fn push_fd(
        &mut self,
        pid: u32,
        kind: Kind,
        mbox: usize,
        out: usize,
        peer: Option<u32>,
        snapshot: BTreeMap<String, String>,
    ) -> usize {
        self.fds.push(Fd {
            pid,
            mbox,
            out,
            peer,
            book: (kind == Kind::SendRw).then(Book::default),
            kind,
            open: true,
            current: None,
            eof: false,
            reading: false,
            behind: VecDeque::new(),
            snapshot,
        });
        self.fds.len() - 1
    }

    pub(super) fn close(&mut self, fd: usize) {
        let f = &mut self.fds[fd];
        if !std::mem::replace(&mut f.open, false) {
            return;
        }
        let (pid, m, kind) = (f.pid, f.mbox, f.kind);
        let partial = f.current.is_some();
        f.book = None;
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
            // RECEIVER RULES, broadcast: "When a process closes its last
            // recv descriptor, its unread copies are dropped and counted in
            // dropped."
            let r = b.receivers.remove(&pid).expect("receiver");
            b.dropped += r.copies.len() as u64;
            if b.holder == Some(pid) {
                b.holder = b.earliest_receiver(pid);
            }
            // A message none of whose copies is left anywhere is lost: its
            // receipt fails (ipcfs(7) does not say with what; EIDRM, as a
            // message dropped by rmdir).
            for msg in r.copies {
                let b = &self.boxes[m];
                let elsewhere = b
                    .receivers
                    .values()
                    .any(|o| o.copies.iter().any(|c| c.order == msg.order));
                if !elsewhere {
                    self.resolve(msg.receipt, Err(libc::EIDRM));
                }
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
            // RECEIVER RULES, "Changing the rule of a busy mailbox": the
            // processes with the mailbox open, in open order, make the new
            // pair, or the holder (the earliest receiving); blocked readers
            // and senders the new rule refuses wake with EBUSY.
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
            let (keep, refused): (VecDeque<Sender>, VecDeque<Sender>) =
                std::mem::take(&mut b.senders)
                    .into_iter()
                    .partition(|s| b.allows_send(s.pid));
            b.senders = keep;
            for w in refuse {
                self.end_wait(w, libc::EBUSY);
            }
            for s in refused {
                self.end_sender(s, libc::EBUSY);
            }
        }
        Got::Written(text.render().len() as u32)
    }

    /// The blocked call `req` is interrupted: EINTR, nothing received or
    /// sent (BLOCKING AND INTERRUPTS).
    pub(super) fn interrupt(&mut self, req: u64) {
        for m in 0..self.boxes.len() {
            let b = &mut self.boxes[m];
            if let Some(i) = b.waiters.iter().position(|w| w.req == req) {
                let w = b.waiters.remove(i).expect("waiter");
                return self.end_wait(w, libc::EINTR);
            }
            if let Some(i) = b.senders.iter().position(|s| s.req == req) {
                let s = b.senders.remove(i).expect("sender");
                return self.end_sender(s, libc::EINTR);
            }
        }
        for f in &mut self.fds {
            if let Some(i) = f.behind.iter().position(|w| w.req == req) {
                f.behind.remove(i);
                return self.answered.push((req, err(libc::EINTR)));
            }
            if let Some(book) = &mut f.book
                && let Some(i) = book.waiters.iter().position(|(r, _)| *r == req)
            {
                book.waiters.remove(i);
                return self.answered.push((req, err(libc::EINTR)));
            }
        }
    }

    /// Process `pid` has exited (having closed all its descriptors).
    pub(super) fn exited(&mut self, pid: u32) {
        self.dead.insert(pid);
        for b in self
            .boxes
            .iter_mut()
            .filter(|b| !b.gone && b.link.is_none())
        {
            b.pair.retain(|p| *p != pid);
            if b.holder == Some(pid) {
                b.holder = b.earliest_receiver(pid);
            }
        }
        self.link_exited(pid);
    }

    /// Ends an operation: blocked senders go in while there is room, reads
    /// waiting behind a blocked read that ended go on (as blocking reads,
    /// in order), blocked receipt reads get what is ready, idle links are
    /// reclaimed.
    pub(super) fn finish(&mut self) -> Vec<(u64, Got)> {
        loop {
            for m in 0..self.boxes.len() {
                if !self.boxes[m].gone {
                    self.pump(m);
                }
            }
            let Some(fd) = self.resume.pop() else {
                break;
            };
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
        self.serve_receipts();
        self.reclaim();
        std::mem::take(&mut self.answered)
    }

    /// Every blocked call: (request, process).
    pub(super) fn parked(&self) -> Vec<(u64, u32)> {
        let mut all: Vec<(u64, u32)> = self
            .boxes
            .iter()
            .flat_map(|b| b.waiters.iter())
            .chain(self.fds.iter().flat_map(|f| f.behind.iter()))
            .map(|w| (w.req, w.reader))
            .chain(
                self.boxes
                    .iter()
                    .flat_map(|b| b.senders.iter().map(|s| (s.req, s.pid))),
            )
            .chain(self.fds.iter().flat_map(|f| {
                f.book
                    .iter()
                    .flat_map(move |b| b.waiters.iter().map(move |(r, _)| (*r, f.pid)))
            }))
            .collect();
        all.sort();
        all
    }

    /// Does `fd` have a blocked call?
    pub(super) fn has_parked(&self, fd: usize) -> bool {
        let f = &self.fds[fd];
        !f.behind.is_empty()
            || f.book.as_ref().is_some_and(|b| !b.waiters.is_empty())
            || self.boxes.iter().any(|b| {
                b.waiters.iter().any(|w| w.fd == fd) || b.senders.iter().any(|s| s.fd == fd)
            })
    }
}
