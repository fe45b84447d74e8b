//! A reference model of the core, and a property test that runs random
//! operations of several processes against both and compares everything
//! they show.
//!
//! The model (`Model` below) is written from ipcfs(7), not from the core:
//! per mailbox a queue of messages, a policy, a map from receiving process
//! to its own queue (broadcast copies), the pair and the exclusive holder,
//! the blocked readers in waiting order, and the four counters; per
//! descriptor its kind, its process and, for `recv`, the message it is in
//! the middle of. Each operation is applied to the real [`Hub`] (fake
//! processes, no mount) and to the model, and the test compares: the data
//! and errno of every reply (also of blocked reads answered later), the
//! outcome of `mkdir`/`rmdir`/`open`, the text of `status` descriptors, and
//! after every operation each mailbox's `status` (every key but
//! `memory-used`/`memory-limit`) and the names in the tree.
//!
//! Operations, from 4 process slots (a slot's process is replaced by a new
//! pid when it exits) on the mailboxes `a`, `b` (both made first) and `a/c`:
//! `mkdir`, `rmdir`; `open` of `send`, `recv`, `packets` and `batch`
//! (read-only, write-only, read-write) and `status`; writes (one message, a
//! batch of frames, a malformed batch); reads, non-blocking and blocking;
//! close; writes of a mailbox's or the root's `policy` (any rule, capacity
//! 0-3 or unlimited, max-message-size, invalid texts); an interrupt of a
//! blocked read; a process exit (`World::exit`, then `Hub::watch_once`).
//! Reads and writes mostly name an open descriptor that can do them, now and
//! then any descriptor ever opened (closed, or of another kind: `EBADF`).
//! 512 cases of up to 80 operations run in a few seconds.
//!
//! What the model leaves out, so that it can predict every result exactly:
//! - Writes are all `O_NONBLOCK`: no sender ever blocks, so blocked senders,
//!   rendezvous hand-over from a blocked sender, `pump` and sender receipts
//!   (read-write `send`) are not covered; capacity 0 is covered only as
//!   `EAGAIN` or as a hand-over to a blocked reader.
//! - A process exit first interrupts its blocked reads and closes all its
//!   descriptors (as the kernel does for a process that shares none), so no
//!   descriptor outlives its process: the pruning of exited members that
//!   an inherited descriptor would need is not covered. Pids are not reused.
//! - A descriptor with a blocked read is not closed (the kernel sends no
//!   release while a request is in flight): such a close is skipped.
//! - At most one read waits behind the blocked read of a `recv`
//!   descriptor (a third blocking read of it is skipped), so the order in
//!   which the core resumes such reads never matters.
//! - Memory is not bounded (`--max-memory` of 1 GiB): no `ENOBUFS`/`ENOSPC`.
//! - No direct links (`proc/`), no rename, no chmod, no poll, no shutdown,
//!   no read or write continuations (every request is at offset 0).
//! - All processes are root: permissions are the kernel's, not the core's.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

// ----- the operations --------------------------------------------------------

/// Process slots; slot `i` runs pid `i + 1`, then `i + 11`, `i + 21`… after
/// each exit.
const SLOTS: usize = 4;
/// Descriptor numbers in operations are below `ANY_FD + 2`; see [`Run::pick`].
const ANY_FD: usize = 14;
/// A mailbox id the core never gives (above its largest).
const NEVER: MailboxId = MAX_MAILBOX_ID + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    R,
    W,
    RW,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Send,
    Recv,
    Packets(Dir),
    Batch(Dir),
    Status,
}

impl Kind {
    /// Reads of it receive (it counts as a receiver).
    fn receives(self) -> bool {
        match self {
            Kind::Recv => true,
            Kind::Packets(d) | Kind::Batch(d) => d != Dir::W,
            Kind::Send | Kind::Status => false,
        }
    }

    /// Writes to it send.
    fn sends(self) -> bool {
        match self {
            Kind::Send => true,
            Kind::Packets(d) | Kind::Batch(d) => d != Dir::R,
            Kind::Recv | Kind::Status => false,
        }
    }

    /// The file and the access an `open` of it asks for.
    fn target(self) -> (FileKind, Access) {
        let file = match self {
            Kind::Send => FileKind::Send,
            Kind::Recv => FileKind::Recv,
            Kind::Packets(_) => FileKind::Packets,
            Kind::Batch(_) => FileKind::Batch,
            Kind::Status => FileKind::Status,
        };
        (
            file,
            acc(self.receives() || self == Kind::Status, self.sends()),
        )
    }
}

/// The text written to a `policy` file.
#[derive(Clone, Debug)]
enum Text {
    Set {
        rule: Option<Rule>,
        capacity: Option<Option<usize>>,
        max: Option<usize>,
    },
    Bad(&'static str),
}

const BAD_TEXTS: [&str; 5] = [
    "pair exclusive",
    "capacity=x",
    "capacity=1 capacity=2",
    "max-message-size=2000",
    "fifo",
];

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Bad(t) => format!("{t}\n"),
            Text::Set {
                rule,
                capacity,
                max,
            } => {
                let mut words = Vec::new();
                if let Some(r) = rule {
                    words.push(r.name().to_string());
                }
                match capacity {
                    Some(Some(n)) => words.push(format!("capacity={n}")),
                    Some(None) => words.push("capacity=unlimited".into()),
                    None => {}
                }
                if let Some(m) = max {
                    words.push(format!("max-message-size={m}"));
                }
                format!("{}\n", words.join(" "))
            }
        }
    }

    /// The policy that `current` becomes, or `None` for `EINVAL`.
    fn apply(&self, current: Pol) -> Option<Pol> {
        match *self {
            Text::Bad(_)
            | Text::Set {
                rule: None,
                capacity: None,
                max: None,
            } => None,
            Text::Set {
                rule,
                capacity,
                max,
            } => Some(Pol {
                rule: rule.unwrap_or(current.rule),
                capacity: capacity.unwrap_or(current.capacity),
                max: max.unwrap_or(current.max),
            }),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Mkdir(&'static str),
    Rmdir(&'static str),
    Open {
        who: usize,
        name: &'static str,
        kind: Kind,
    },
    /// One message of the frames' bytes on `send`/`packets`; the frames
    /// on `batch` (`cut`: its last byte missing, a malformed batch).
    Write {
        fd: usize,
        lens: Vec<usize>,
        cut: bool,
    },
    Read {
        fd: usize,
        size: u32,
        block: bool,
    },
    Close {
        fd: usize,
    },
    /// `name` None: the root policy.
    Policy {
        who: usize,
        name: Option<&'static str>,
        text: Text,
    },
    /// Interrupts the `nth` blocked read (modulo their number).
    Interrupt {
        nth: usize,
    },
    Exit {
        who: usize,
    },
}

// ----- the model ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pol {
    rule: Rule,
    /// None: unlimited.
    capacity: Option<usize>,
    max: usize,
}

#[derive(Clone, Debug)]
struct Msg {
    /// Its place in the mailbox's send order.
    order: u64,
    bytes: Vec<u8>,
}

/// How a blocked read takes a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `recv`: any message, piece by piece.
    Stream,
    /// `packets`: a whole message that fits the buffer.
    Packet,
    /// `batch`: a whole message that fits the buffer with its header.
    Framed,
}

impl Shape {
    fn fits(self, len: usize, size: u32) -> bool {
        match self {
            Shape::Stream => true,
            Shape::Packet => len <= size as usize,
            Shape::Framed => 4 + len <= size as usize,
        }
    }
}

fn frame(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A blocked read.
#[derive(Clone, Debug)]
struct Wait {
    req: u64,
    fd: usize,
    reader: u32,
    size: u32,
    shape: Shape,
}

/// A process with `recv` open: how many descriptors, when it opened the
/// first, and its broadcast copies.
#[derive(Default)]
struct Receiver {
    opens: usize,
    since: u64,
    copies: VecDeque<Msg>,
}

struct Mbox {
    gone: bool,
    policy: Pol,
    shared: VecDeque<Msg>,
    receivers: BTreeMap<u32, Receiver>,
    /// Blocked reads, longest waiting first.
    waiters: VecDeque<Wait>,
    pair: Vec<u32>,
    holder: Option<u32>,
    sent: u64,
    received: u64,
    dropped: u64,
    truncated: u64,
    /// Messages taken in so far (numbers their order).
    accepted: u64,
    /// `recv` opens so far (orders the receivers).
    opened: u64,
}

impl Mbox {
    fn new(policy: Pol) -> Mbox {
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
    fn free(&self, queued: usize) -> usize {
        self.policy
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(queued))
    }

    /// Does the rule let `pid` receive, with the processes bound now?
    fn allows_recv(&self, pid: u32) -> bool {
        match self.policy.rule {
            Rule::Arbitrary | Rule::Broadcast => true,
            Rule::Pair => self.pair.len() < 2 || self.pair.contains(&pid),
            Rule::Exclusive => self.holder.is_none_or(|h| h == pid),
        }
    }

    /// Admits `pid` (receiving or sending), taking a pair slot or the
    /// exclusive hold; EBUSY when the rule refuses it.
    fn admit(&mut self, pid: u32, recv: bool) -> std::result::Result<(), i32> {
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
    fn earliest_receiver(&self, not: u32) -> Option<u32> {
        self.receivers
            .iter()
            .filter(|(p, _)| **p != not)
            .min_by_key(|(_, r)| r.since)
            .map(|(p, _)| *p)
    }

    /// Does `pid` take the next message from its own copies (rather than
    /// the shared queue)? The older of the two fronts goes first.
    fn own_first(&self, pid: u32) -> bool {
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

    fn peek(&self, pid: u32) -> Option<usize> {
        if self.own_first(pid) {
            self.receivers[&pid].copies.front().map(|m| m.bytes.len())
        } else {
            self.shared.front().map(|m| m.bytes.len())
        }
    }

    fn take(&mut self, pid: u32) -> Option<Msg> {
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
    fn room(&self, n: usize, len: usize) -> bool {
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

    fn status(&self) -> BTreeMap<String, String> {
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
struct Fd {
    pid: u32,
    mbox: usize,
    kind: Kind,
    open: bool,
    /// `recv`: the message being read and how far.
    current: Option<(Vec<u8>, usize)>,
    /// `recv`: the whole message was returned; the next read gives 0.
    eof: bool,
    /// `recv`: a read of it is blocked on the mailbox.
    reading: bool,
    /// `recv`: reads blocked behind that one.
    behind: VecDeque<Wait>,
    /// `status`: the text it was opened with.
    snapshot: BTreeMap<String, String>,
}

impl Fd {
    /// A read from the message in hand, if there is one (or its end of file).
    fn serve(&mut self, size: u32) -> Option<Vec<u8>> {
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

struct Model {
    default: Pol,
    boxes: Vec<Mbox>,
    /// The live mailbox of each name.
    by_name: BTreeMap<&'static str, usize>,
    fds: Vec<Fd>,
    /// Blocked reads answered by the current operation.
    answered: Vec<(u64, Got)>,
    /// `recv` descriptors whose blocked read ended, with reads behind it.
    resume: Vec<usize>,
}

fn err(e: i32) -> Got {
    Got::Err(e)
}

impl Model {
    fn new(default: Pol) -> Model {
        Model {
            default,
            boxes: Vec::new(),
            by_name: BTreeMap::new(),
            fds: Vec::new(),
            answered: Vec::new(),
            resume: Vec::new(),
        }
    }

    fn mkdir(&mut self, name: &'static str) -> std::result::Result<(), i32> {
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

    fn rmdir(&mut self, name: &'static str) -> std::result::Result<(), i32> {
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

    fn open(&mut self, pid: u32, name: &str, kind: Kind) -> std::result::Result<usize, i32> {
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

    fn close(&mut self, fd: usize) {
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
    fn write(&mut self, fd: usize, frames: &[Vec<u8>], cut: bool, n: usize) -> Got {
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
    fn accept(&mut self, m: usize, bytes: Vec<u8>) {
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
    fn next_waiter(&mut self, m: usize, of: Option<u32>, len: usize) -> Option<Wait> {
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
    fn hand(&mut self, m: usize, w: Wait, msg: Msg) {
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
    fn end_wait(&mut self, w: Wait, e: i32) {
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
    fn read(&mut self, fd: usize, size: u32, block: bool, req: u64) -> Got {
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

    fn read_stream(&mut self, fd: usize, size: u32, block: bool, req: u64) -> Got {
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
    fn read_whole(&mut self, fd: usize, size: u32, block: bool, req: u64, shape: Shape) -> Got {
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
    fn policy(&mut self, name: Option<&str>, text: &Text) -> Got {
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
    fn interrupt(&mut self, req: u64) {
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
    fn exited(&mut self, pid: u32) {
        for b in self.boxes.iter_mut().filter(|b| !b.gone) {
            b.pair.retain(|p| *p != pid);
            if b.holder == Some(pid) {
                b.holder = b.earliest_receiver(pid);
            }
        }
    }

    /// Ends an operation: reads waiting behind a blocked read that ended go
    /// on, as blocking reads, in order.
    fn finish(&mut self) -> Vec<(u64, Got)> {
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
    fn parked(&self) -> Vec<(u64, u32)> {
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

    fn has_parked(&self, fd: usize) -> bool {
        !self.fds[fd].behind.is_empty()
            || self
                .boxes
                .iter()
                .any(|b| b.waiters.iter().any(|w| w.fd == fd))
    }
}

// ----- running both ------------------------------------------------------------

fn show(got: &Got) -> String {
    match got {
        Got::Data(d) => format!("Data(b\"{}\")", d.escape_ascii()),
        Got::Err(e) => Errno(*e).name().to_string(),
        other => format!("{other:?}"),
    }
}

fn outcome<T: std::fmt::Debug>(r: &std::result::Result<T, i32>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => Errno(*e).name().to_string(),
    }
}

fn errno_of<T>(r: std::result::Result<T, errno::Refusal>) -> std::result::Result<T, i32> {
    r.map_err(|e| e.errno.0)
}

/// A status text as compared: every key but the memory figures.
fn comparable(status: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    status
        .into_iter()
        .filter(|(k, _)| !k.starts_with("memory-"))
        .collect()
}

struct Run {
    hub: Hub,
    world: Arc<World>,
    model: Model,
    callers: [Caller; SLOTS],
    /// The real id each name had last (stale once removed).
    ids: BTreeMap<&'static str, MailboxId>,
    /// The real handle of each model descriptor.
    handles: Vec<u64>,
    /// Blocked reads not answered yet.
    pending: BTreeMap<u64, Answer>,
    messages: usize,
    trace: Vec<String>,
}

impl Run {
    fn new() -> Run {
        let (hub, world) = hub_with_memory("arbitrary", 1 << 30);
        let callers = std::array::from_fn(|i| world.spawn(i as u32 + 1, 0));
        let default = hub.config().default_policy;
        let model = Model::new(Pol {
            rule: Rule::Arbitrary,
            capacity: Some(8),
            max: MAX,
        });
        assert_eq!(
            (default.rule, default.capacity, default.max_message_size),
            (Rule::Arbitrary, Some(8), MAX),
            "the harness's default policy"
        );
        Run {
            hub,
            world,
            model,
            callers,
            ids: BTreeMap::new(),
            handles: Vec::new(),
            pending: BTreeMap::new(),
            messages: 0,
            trace: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> TestCaseError {
        TestCaseError::fail(format!(
            "{what}\n--- operations as run:\n{}",
            self.trace.join("\n")
        ))
    }

    fn check<T: PartialEq + std::fmt::Debug>(
        &self,
        what: &str,
        real: T,
        model: T,
    ) -> std::result::Result<(), TestCaseError> {
        if real == model {
            Ok(())
        } else {
            Err(self.fail(format!(
                "{what}: the core says {real:?}, the model {model:?}"
            )))
        }
    }

    /// Compares two status texts, naming the keys that differ.
    fn check_status(
        &self,
        what: &str,
        real: BTreeMap<String, String>,
        model: BTreeMap<String, String>,
    ) -> std::result::Result<(), TestCaseError> {
        if real == model {
            return Ok(());
        }
        let keys: std::collections::BTreeSet<&String> = real.keys().chain(model.keys()).collect();
        let diff: Vec<String> = keys
            .into_iter()
            .filter(|k| real.get(*k) != model.get(*k))
            .map(|k| {
                format!(
                    "{k}: the core says {:?}, the model {:?}",
                    real.get(k),
                    model.get(k)
                )
            })
            .collect();
        Err(self.fail(format!("{what}: {}", diff.join("; "))))
    }

    fn id_of(&self, name: &str) -> MailboxId {
        self.ids.get(name).copied().unwrap_or(NEVER)
    }

    /// (parent id, leaf name) of a mailbox name.
    fn place(&self, name: &'static str) -> (MailboxId, &'static str) {
        match name.split_once('/') {
            Some((parent, leaf)) => (self.id_of(parent), leaf),
            None => (ROOT, name),
        }
    }

    fn describe(&self, fd: usize) -> String {
        let f = &self.model.fds[fd];
        let name = self
            .model
            .by_name
            .iter()
            .find(|(_, m)| **m == f.mbox)
            .map_or("(removed)", |(n, _)| n);
        let closed = if f.open { "" } else { " closed" };
        format!("fd{fd}[pid {} {:?} on {name}{closed}]", f.pid, f.kind)
    }

    /// The bytes of a write: fresh letters for each message.
    fn frames(&mut self, lens: &[usize]) -> Vec<Vec<u8>> {
        lens.iter()
            .map(|len| {
                self.messages += 1;
                (0..*len)
                    .map(|i| b'a' + ((self.messages * 3 + i) % 26) as u8)
                    .collect()
            })
            .collect()
    }

    /// Runs `ops`, after making the mailboxes `a` and `b`.
    fn run(&mut self, ops: &[Op]) -> std::result::Result<(), TestCaseError> {
        for name in ["a", "b"] {
            self.trace.push(format!("(first) Mkdir({name:?})"));
            self.step(&Op::Mkdir(name))?;
        }
        for (i, op) in ops.iter().enumerate() {
            self.trace.push(format!("#{i} {op:?}"));
            self.step(op)?;
            self.settle()?;
            self.compare_tree()?;
        }
        Ok(())
    }

    fn note(&mut self, line: String) {
        if let Some(last) = self.trace.last_mut() {
            last.push_str("\n     ");
            last.push_str(&line);
        }
    }

    fn step(&mut self, op: &Op) -> std::result::Result<(), TestCaseError> {
        match op {
            Op::Mkdir(name) => {
                let (parent, leaf) = self.place(name);
                let real = errno_of(self.hub.mkdir(parent, OsStr::new(leaf), 0o755, 0, 0));
                let model = self.model.mkdir(name);
                self.note(format!("-> {}", outcome(&real)));
                if let Ok(id) = real {
                    self.ids.insert(name, id);
                }
                self.check("mkdir", real.map(|_| ()), model)
            }
            Op::Rmdir(name) => {
                let (parent, leaf) = self.place(name);
                let real = errno_of(self.hub.rmdir(parent, OsStr::new(leaf)));
                let model = self.model.rmdir(name);
                self.note(format!("-> {}", outcome(&real)));
                self.check("rmdir", real, model)
            }
            Op::Open { who, name, kind } => {
                let caller = self.callers[*who];
                let (file, access) = kind.target();
                let target = Target::Mailbox(self.id_of(name), file);
                let real = errno_of(self.hub.open(caller, target, access));
                let model = self.model.open(caller.process.pid, name, *kind);
                if let Ok(h) = real {
                    self.handles.push(h);
                }
                let shown = model.map(|fd| self.describe(fd));
                self.note(format!("-> {}", outcome(&shown)));
                self.check("open", real.is_ok(), model.is_ok())?;
                self.check("open", real.err(), model.err())
            }
            Op::Write { fd, lens, cut } => {
                let Some(fd) = self.pick(*fd, Kind::sends) else {
                    return Ok(());
                };
                let frames = self.frames(lens);
                let data = match self.model.fds[fd].kind {
                    Kind::Batch(_) => {
                        let mut out = Vec::new();
                        for f in &frames {
                            frame(&mut out, f);
                        }
                        if *cut {
                            out.pop();
                        }
                        out
                    }
                    _ => frames.concat(),
                };
                let pid = self.model.fds[fd].pid;
                let real = write(&self.hub, self.handles[fd], pid, &data, true).got();
                let model = self.model.write(fd, &frames, *cut, data.len());
                self.note(format!(
                    "{} writes b\"{}\" -> {}",
                    self.describe(fd),
                    data.escape_ascii(),
                    show(&real)
                ));
                self.check("write", real, model)
            }
            Op::Read { fd, size, block } => {
                let Some(fd) = self.pick(*fd, |k| k.receives() || k == Kind::Status) else {
                    return Ok(());
                };
                let f = &self.model.fds[fd];
                let pid = f.pid;
                if f.open && f.kind == Kind::Status {
                    let real = read(&self.hub, self.handles[fd], pid, 4096, true).got();
                    let Got::Data(text) = real else {
                        return Err(self.fail(format!("status read: {real:?}")));
                    };
                    let text = String::from_utf8(text).expect("status is text");
                    let real = comparable(text.lines().map(|l| {
                        let (k, v) = l.split_once(": ").expect("key: value");
                        (k.to_string(), v.to_string())
                    }));
                    self.note(format!("{} reads its snapshot", self.describe(fd)));
                    let snapshot = self.model.fds[fd].snapshot.clone();
                    return self.check_status("status descriptor", real, snapshot);
                }
                if *block && f.kind == Kind::Recv && f.open && !f.behind.is_empty() {
                    self.note("skipped: a second read behind a blocked read".into());
                    return Ok(());
                }
                let a = Answer::default();
                let model = self.model.read(fd, *size, *block, a.req());
                self.hub.read(
                    io(&a, self.handles[fd], pid, 0, !block),
                    *size,
                    Box::new(a.clone()),
                );
                let real = a.got();
                self.note(format!(
                    "{} reads (req {}) -> {}",
                    self.describe(fd),
                    a.req(),
                    show(&real)
                ));
                if model == Got::Parked {
                    self.pending.insert(a.req(), a);
                }
                self.check("read", real, model)
            }
            Op::Close { fd } => {
                let Some(fd) = self.pick(*fd, |_| true) else {
                    return Ok(());
                };
                if self.model.has_parked(fd) {
                    self.note("skipped: a read of it is blocked".into());
                    return Ok(());
                }
                self.note(format!("closes {}", self.describe(fd)));
                self.hub.release(self.handles[fd]);
                self.model.close(fd);
                Ok(())
            }
            Op::Policy { who, name, text } => {
                let caller = self.callers[*who];
                let target = match name {
                    None => Target::RootPolicy,
                    Some(n) => Target::Mailbox(self.id_of(n), FileKind::Policy),
                };
                let bytes = text.render();
                let real = match self.hub.open(caller, target, acc(true, true)) {
                    Err(e) => Got::Err(e.errno.0),
                    Ok(h) => {
                        let got = write(&self.hub, h, caller.process.pid, bytes.as_bytes(), true);
                        self.hub.release(h);
                        got.got()
                    }
                };
                let model = self.model.policy(*name, text);
                self.note(format!("{:?} -> {}", bytes, show(&real)));
                self.check("policy", real, model)
            }
            Op::Interrupt { nth } => {
                let parked = self.model.parked();
                if parked.is_empty() {
                    return Ok(());
                }
                let (req, pid) = parked[nth % parked.len()];
                self.note(format!("interrupts req {req} of pid {pid}"));
                self.interrupt(req, pid);
                Ok(())
            }
            Op::Exit { who } => self.exit(*who),
        }
    }

    /// The descriptor an operation names: `fd` below [`ANY_FD`] picks
    /// among the open descriptors that `suits` (none: the operation is
    /// skipped), above it among all descriptors ever opened, closed ones
    /// and those of other kinds too.
    fn pick(&self, fd: usize, suits: impl Fn(Kind) -> bool) -> Option<usize> {
        let fds = &self.model.fds;
        let suitable: Vec<usize> = (0..fds.len())
            .filter(|i| fds[*i].open && suits(fds[*i].kind))
            .collect();
        if fd < ANY_FD {
            (!suitable.is_empty()).then(|| suitable[fd % suitable.len()])
        } else {
            (!fds.is_empty()).then(|| fd % fds.len())
        }
    }

    fn interrupt(&mut self, req: u64, pid: u32) {
        self.world.signal(pid);
        self.hub.interrupt(req);
        self.model.interrupt(req);
    }

    /// A process exits: its blocked reads are interrupted, its descriptors
    /// closed, its exit reported; a new process takes its slot.
    fn exit(&mut self, who: usize) -> std::result::Result<(), TestCaseError> {
        let pid = self.callers[who].process.pid;
        while let Some(&(req, _)) = self.model.parked().iter().find(|(_, p)| *p == pid) {
            self.note(format!("interrupts req {req}"));
            self.interrupt(req, pid);
            self.settle()?;
        }
        for fd in 0..self.model.fds.len() {
            if self.model.fds[fd].pid == pid && self.model.fds[fd].open {
                self.note(format!("closes {}", self.describe(fd)));
                self.hub.release(self.handles[fd]);
                self.model.close(fd);
            }
        }
        self.world.exit(pid);
        self.hub.watch_once(Duration::ZERO);
        self.model.exited(pid);
        self.callers[who] = self.world.spawn(pid + 10, 0);
        Ok(())
    }

    /// Compares the blocked reads: those the model answered, and those
    /// still waiting.
    fn settle(&mut self) -> std::result::Result<(), TestCaseError> {
        for (req, model) in self.model.finish() {
            let Some(a) = self.pending.remove(&req) else {
                return Err(self.fail(format!("the model answered req {req}, never parked")));
            };
            let real = a.got();
            self.note(format!("blocked read req {req} -> {}", show(&real)));
            self.check(&format!("blocked read req {req}"), real, model)?;
        }
        for (req, a) in &self.pending {
            self.check(&format!("blocked read req {req}"), a.got(), Got::Parked)?;
        }
        Ok(())
    }

    /// Compares each mailbox's status and the names in the tree.
    fn compare_tree(&self) -> std::result::Result<(), TestCaseError> {
        let names = |parent: MailboxId| {
            self.hub
                .children(parent)
                .into_iter()
                .map(|(n, _)| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        let mut real = names(ROOT);
        if self.model.by_name.contains_key("a") {
            real.extend(names(self.id_of("a")).iter().map(|n| format!("a/{n}")));
        }
        real.sort();
        let model: Vec<String> = self.model.by_name.keys().map(|n| n.to_string()).collect();
        self.check("mailboxes", real, model)?;
        for (name, m) in &self.model.by_name {
            let real = comparable(status_of(&self.hub, self.id_of(name), self.callers[0]));
            self.check_status(
                &format!("status of {name}"),
                real,
                self.model.boxes[*m].status(),
            )?;
        }
        Ok(())
    }
}

// ----- the property --------------------------------------------------------------

fn kind() -> impl Strategy<Value = Kind> {
    let dir = prop::sample::select(&[Dir::RW, Dir::R, Dir::W][..]);
    prop_oneof![
        3 => Just(Kind::Send),
        3 => Just(Kind::Recv),
        2 => dir.clone().prop_map(Kind::Packets),
        2 => dir.prop_map(Kind::Batch),
        1 => Just(Kind::Status),
    ]
}

/// Mostly the two mailboxes made first; `a/c` now and then.
fn name() -> impl Strategy<Value = &'static str> {
    prop_oneof![5 => Just("a"), 2 => Just("b"), 1 => Just("a/c")]
}

fn text() -> impl Strategy<Value = Text> {
    let capacity = prop_oneof![4 => (0usize..4).prop_map(Some), 1 => Just(None)];
    prop_oneof![
        6 => (
            prop::option::weighted(0.7, prop::sample::select(&Rule::ALL[..])),
            prop::option::of(capacity),
            prop::option::weighted(0.3, prop::sample::select(&[3usize, 6, MAX][..])),
        )
            .prop_map(|(rule, capacity, max)| Text::Set {
                rule,
                capacity,
                max
            }),
        1 => prop::sample::select(&BAD_TEXTS[..]).prop_map(Text::Bad),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let fd = 0usize..ANY_FD + 2;
    prop_oneof![
        2 => name().prop_map(Op::Mkdir),
        1 => name().prop_map(Op::Rmdir),
        6 => (0..SLOTS, name(), kind()).prop_map(|(who, name, kind)| Op::Open {
            who,
            name,
            kind
        }),
        8 => (
            fd.clone(),
            prop::collection::vec(1usize..=8, 1..=3),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(fd, lens, cut)| Op::Write { fd, lens, cut }),
        9 => (fd.clone(), 1u32..=24, prop::bool::weighted(0.3))
            .prop_map(|(fd, size, block)| Op::Read { fd, size, block }),
        2 => fd.prop_map(|fd| Op::Close { fd }),
        3 => (0..SLOTS, prop::option::weighted(0.85, name()), text())
            .prop_map(|(who, name, text)| Op::Policy { who, name, text }),
        1 => (0usize..4).prop_map(|nth| Op::Interrupt { nth }),
        1 => (0..SLOTS).prop_map(|who| Op::Exit { who }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Shrunk failures are reported, not written beside the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_core_agrees_with_the_model(ops in prop::collection::vec(op(), 1..80)) {
        Run::new().run(&ops)?;
    }
}
