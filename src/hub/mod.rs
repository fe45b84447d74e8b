//! The message-passing core: mailboxes (a tree of names), direct links,
//! open descriptors, and blocked requests. No FUSE types: the adapter in
//! [`crate::fuse::adapter`] turns requests into calls here and [`Replier`]s carry the
//! answers back, now or later.

pub mod accounting;
pub mod channel;
pub mod errno;
pub mod message;
pub mod policy;
pub mod process;
pub mod receipts;
pub mod receiver_rule;
pub mod status;
pub mod waiter;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use log::{debug, info};

use self::accounting::MemoryBudget;
use self::channel::{Channel, Removed};
use self::errno::{Errno, Result};
use self::message::{Message, Payload, ReceiptTag};
use self::process::{Process, Processes};
use self::receipts::{ReceiptBook, ReceiptRead};
use self::receiver_rule::Role;
use self::waiter::{Effects, Outcome, ReceiptWait, RecvWait, Replier, SendWait, WaiterId};
use policy::{Policy, Rule};

pub type MailboxId = u64;
/// The parent of top-level mailboxes.
pub const ROOT: MailboxId = 0;

/// Names a mailbox may not have: its parent's files.
pub const MAILBOX_FILES: [&str; 4] = ["send", "recv", "policy", "status"];
/// Names taken at the top of the mount.
pub const ROOT_NAMES: [&str; 2] = ["proc", "policy"];
pub const NAME_MAX: usize = 255;
/// What a mailbox holds of `--max-memory` (about what it costs the daemon),
/// so that `mkdir` in a loop cannot grow the daemon without bound either:
/// past the bound, `mkdir` fails with `ENOSPC`.
pub const MAILBOX_COST: usize = 1024;
/// Mailbox ids are numbered from 1 and never reused; past this, `mkdir`
/// fails with `ENOSPC` (inode numbers hold 37 bits of them).
pub const MAX_MAILBOX_ID: MailboxId = (1 << 37) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Send,
    Recv,
    Policy,
    Status,
}

impl FileKind {
    pub const ALL: [FileKind; 4] = [
        FileKind::Send,
        FileKind::Recv,
        FileKind::Policy,
        FileKind::Status,
    ];

    pub fn name(self) -> &'static str {
        MAILBOX_FILES[self as usize]
    }

    pub fn from_name(name: &OsStr) -> Option<FileKind> {
        FileKind::ALL
            .into_iter()
            .find(|k| k.name().as_bytes() == name.as_bytes())
    }
}

/// Ownership and permission bits of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A channel's place: a mailbox, or one direction of a direct link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChanKey {
    Mailbox(MailboxId),
    Link { from: Process, to: Process },
}

pub struct Mailbox {
    pub name: OsString,
    pub parent: MailboxId,
    pub children: BTreeMap<OsString, MailboxId>,
    pub dir: Attr,
    pub files: [Attr; 4],
    chan: Channel,
}

/// What is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Mailbox(MailboxId, FileKind),
    /// `proc/<pid>/<kind>`.
    Link(u32, FileKind),
    RootPolicy,
    /// `proc/status`.
    DaemonStatus,
}

/// Whoever makes a request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub process: Process,
    pub uid: u32,
    pub gid: u32,
}

/// One read or write request: the descriptor, the kernel's id of the
/// request (the waiter's id if it parks; an interrupt names it), the
/// calling thread, the offset, and whether it may block.
#[derive(Clone, Copy, Debug)]
pub struct Io {
    pub handle: u64,
    pub req: WaiterId,
    pub tid: u32,
    pub offset: u64,
    pub nonblock: bool,
}

/// What an open asks for: read, write, and `O_APPEND`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub append: bool,
}

/// The part of a message a `recv` descriptor is reading.
#[derive(Default)]
struct Cursor {
    current: Option<(Message, usize)>,
    /// The whole message has been returned; the next read returns 0.
    eof: bool,
}

impl Cursor {
    /// Answers a read from what the descriptor already holds, if it can.
    ///
    /// Files are opened `FOPEN_STREAM`: each `read(2)` arrives at offset 0,
    /// and only the continuation requests of one large `read(2)` (sent by the
    /// kernel when the previous request was filled completely) have offsets
    /// above 0. A continuation never starts a new message nor consumes the
    /// end-of-file that follows one.
    fn serve(&mut self, offset: u64, size: u32) -> Option<Outcome> {
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

    fn partial(&self) -> bool {
        self.current.as_ref().is_some_and(|(_, pos)| *pos > 0)
    }
}

/// A read of a `recv` descriptor that waits behind another blocked read
/// of the same descriptor (two threads, or a parent and child sharing it):
/// it goes on from where the first leaves the message.
struct ReadBehind {
    id: WaiterId,
    size: u32,
    reply: Box<dyn Replier>,
}

enum HandleKind {
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
    /// A status snapshot.
    Text(Vec<u8>),
    /// A policy file: its text at open; writes set `of` (None: the root).
    Policy {
        of: Option<MailboxId>,
        text: Vec<u8>,
    },
}

struct Handle {
    owner: Process,
    kind: HandleKind,
    /// The kernel's poll handle for this descriptor, once it has polled.
    poll: Option<u64>,
}

/// Where a blocked request waits.
#[derive(Clone, Copy)]
enum Place {
    /// On a channel; a read names its descriptor.
    Chan(ChanKey, Option<u64>),
    /// Behind another read of the same `recv` descriptor.
    Behind(u64),
    /// For a receipt, on a read-write `send` descriptor.
    Receipts(u64),
}

#[derive(Clone, Copy)]
struct Parked {
    tid: u32,
    place: Place,
}

/// What the system said about the peer of a `proc/<pid>` target, asked
/// before the lock was taken: its live process, and whether the caller may
/// send to it (the `kill(2)` rule).
#[derive(Clone, Copy)]
struct PeerFacts {
    peer: Option<Process>,
    may_send: bool,
}

/// Mount-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The root policy's initial value; links use its capacity and size.
    pub default_policy: Policy,
    /// The largest message any policy may allow.
    pub hard_max_message: usize,
    pub max_memory: usize,
    /// Owner of the mount's root and root policy.
    pub uid: u32,
    pub gid: u32,
}

struct State {
    mailboxes: HashMap<MailboxId, Mailbox>,
    top: BTreeMap<OsString, MailboxId>,
    links: HashMap<(Process, Process), Channel>,
    handles: HashMap<u64, Handle>,
    /// Every parked request, by the kernel's request id.
    parked: HashMap<WaiterId, Parked>,
    /// Parked requests whose interrupt came from a signal that does not end
    /// calls (`SIGCHLD`…): the kernel sends no second interrupt, so the
    /// watcher looks at these threads itself.
    kept: HashMap<WaiterId, u32>,
    /// Interrupts that arrived before their request parked (another
    /// event-loop thread had it), and when.
    early: HashMap<WaiterId, Instant>,
    next_id: u64,
    last_mailbox: MailboxId,
    default_policy: Policy,
    root_policy_attr: Attr,
    dropped_on_exit: u64,
    shut_down: bool,
    /// Descriptors whose blocked channel read has ended while other reads
    /// wait behind it: the next of those goes on.
    resume: Vec<u64>,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// An interrupt for a request that has not parked (yet): kept a
    /// moment, in case the request parks after it.
    fn remember_early(&mut self, req: WaiterId) {
        let now = Instant::now();
        if self.early.len() >= 64 {
            self.early
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        }
        self.early.insert(req, now);
    }

    fn children(&self, parent: MailboxId) -> Option<&BTreeMap<OsString, MailboxId>> {
        if parent == ROOT {
            Some(&self.top)
        } else {
            self.mailboxes.get(&parent).map(|m| &m.children)
        }
    }

    fn children_mut(&mut self, parent: MailboxId) -> Option<&mut BTreeMap<OsString, MailboxId>> {
        if parent == ROOT {
            Some(&mut self.top)
        } else {
            self.mailboxes.get_mut(&parent).map(|m| &mut m.children)
        }
    }

    fn path(&self, mut id: MailboxId) -> String {
        let mut parts = Vec::new();
        while let Some(m) = self.mailboxes.get(&id) {
            parts.push(m.name.to_string_lossy().into_owned());
            id = m.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Hands messages to blocked readers' descriptors and fills in receipts,
    /// turning both into replies.
    fn settle(&mut self, fx: &mut Effects) {
        for id in fx.unparked.drain(..) {
            let Some(Parked {
                place: Place::Chan(_, Some(h)),
                ..
            }) = self.parked.remove(&id)
            else {
                continue;
            };
            if let Some(HandleKind::Recv {
                reading, behind, ..
            }) = self.handles.get_mut(&h).map(|hd| &mut hd.kind)
            {
                *reading = false;
                if !behind.is_empty() {
                    self.resume.push(h);
                }
            }
        }
        for (w, msg) in std::mem::take(&mut fx.handoffs) {
            match self.handles.get_mut(&w.handle).map(|h| &mut h.kind) {
                Some(HandleKind::Recv { cursor, .. }) => {
                    cursor.current = Some((msg, 0));
                    let out = cursor.serve(0, w.size).expect("a current message");
                    fx.reply(w.reply, out);
                }
                _ => fx.reply(w.reply, Outcome::Error(Errno::EBADF)),
            }
        }
        let resolved = std::mem::take(&mut fx.receipts)
            .into_iter()
            .map(|(tag, fate)| (tag, Some(fate)));
        let cancelled = std::mem::take(&mut fx.cancelled)
            .into_iter()
            .map(|tag| (tag, None));
        for (tag, fate) in resolved.chain(cancelled) {
            let Some(Handle {
                kind:
                    HandleKind::Send {
                        receipts: Some(book),
                        ..
                    },
                ..
            }) = self.handles.get_mut(&tag.handle)
            else {
                continue;
            };
            match fate {
                Some(fate) => book.resolve(tag.seq, fate),
                None => book.cancel(tag.seq),
            }
            for (w, out) in book.serve_waiters() {
                self.parked.remove(&w.id);
                fx.reply(w.reply, out);
            }
        }
    }
}

/// Records a parked request; one whose interrupt came first is looked at
/// as soon as the lock is released.
fn park(
    parked: &mut HashMap<WaiterId, Parked>,
    early: &mut HashMap<WaiterId, Instant>,
    fx: &mut Effects,
    io: &Io,
    place: Place,
) {
    parked.insert(io.req, Parked { tid: io.tid, place });
    if !early.is_empty() && early.remove(&io.req).is_some() {
        fx.suspects.push(io.req);
    }
}

fn chan_mut<'a>(
    mailboxes: &'a mut HashMap<MailboxId, Mailbox>,
    links: &'a mut HashMap<(Process, Process), Channel>,
    key: ChanKey,
) -> Option<&'a mut Channel> {
    match key {
        ChanKey::Mailbox(id) => mailboxes.get_mut(&id).map(|m| &mut m.chan),
        ChanKey::Link { from, to } => links.get_mut(&(from, to)),
    }
}

/// The processes that have mailbox `id`'s `send` or `recv` open, in the
/// order they opened it (handle ids grow).
fn openers(handles: &HashMap<u64, Handle>, id: MailboxId) -> Vec<(Process, Role)> {
    let mut open: Vec<(u64, Process, Role)> = handles
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
            _ => None,
        })
        .collect();
    open.sort_by_key(|(h, ..)| *h);
    open.into_iter().map(|(_, p, role)| (p, role)).collect()
}

/// The error for I/O on a channel that no longer exists.
fn gone(key: ChanKey) -> Errno {
    match key {
        ChanKey::Mailbox(_) => Errno::EIDRM,
        ChanKey::Link { .. } => Errno::ESRCH,
    }
}

/// The modes of a new mailbox's files, from its directory's mode: `send`
/// gets the write bits (and the matching read bits, for receipts), `recv`
/// and `status` the read bits, `policy` owner-write plus the read bits.
pub fn file_modes(dir_mode: u32) -> [u32; 4] {
    let w = dir_mode & 0o222;
    let r = dir_mode & 0o444;
    [w | (w << 1), r, 0o200 | r, r]
}

pub struct Hub {
    state: Mutex<State>,
    procs: Arc<dyn Processes>,
    budget: Arc<MemoryBudget>,
    config: Config,
    notifier: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
}

macro_rules! check {
    ($fx:expr, $reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                $fx.reply($reply, Outcome::Error(e));
                return;
            }
        }
    };
}

impl Hub {
    pub fn new(config: Config, procs: Box<dyn Processes>) -> Hub {
        Hub {
            state: Mutex::new(State {
                mailboxes: HashMap::new(),
                top: BTreeMap::new(),
                links: HashMap::new(),
                handles: HashMap::new(),
                parked: HashMap::new(),
                kept: HashMap::new(),
                early: HashMap::new(),
                next_id: 0,
                last_mailbox: ROOT,
                default_policy: config.default_policy,
                root_policy_attr: Attr {
                    mode: 0o644,
                    uid: config.uid,
                    gid: config.gid,
                },
                dropped_on_exit: 0,
                shut_down: false,
                resume: Vec::new(),
            }),
            procs: Arc::from(procs),
            budget: Arc::new(MemoryBudget::new(config.max_memory)),
            config,
            notifier: OnceLock::new(),
        }
    }

    /// Sets how poll handles are notified (once; before serving).
    pub fn set_notifier(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.notifier.set(f);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn procs(&self) -> &dyn Processes {
        &*self.procs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finishes an operation: settle under the lock (and let reads that
    /// waited behind an ended one go on), reply outside it.
    fn finish(&self, mut st: MutexGuard<'_, State>, mut fx: Effects) {
        loop {
            st.settle(&mut fx);
            let Some(h) = st.resume.pop() else {
                break;
            };
            let next = match st.handles.get_mut(&h).map(|hd| &mut hd.kind) {
                Some(HandleKind::Recv {
                    reading: false,
                    behind,
                    ..
                }) => behind.pop_front(),
                _ => None,
            };
            if let Some(r) = next {
                let tid = st.parked.remove(&r.id).map_or(0, |p| p.tid);
                let io = Io {
                    handle: h,
                    req: r.id,
                    tid,
                    offset: 0,
                    nonblock: false,
                };
                self.read_locked(&mut st, &mut fx, io, r.size, r.reply);
                if let Some(HandleKind::Recv {
                    reading: false,
                    behind,
                    ..
                }) = st.handles.get(&h).map(|hd| &hd.kind)
                    && !behind.is_empty()
                {
                    st.resume.push(h);
                }
            }
        }
        drop(st);
        let suspects = std::mem::take(&mut fx.suspects);
        let watch = std::mem::take(&mut fx.watch);
        fx.run(&|kh| {
            if let Some(n) = self.notifier.get() {
                n(kh)
            }
        });
        for p in watch {
            // pidfd_open and epoll_ctl, unless already watched.
            self.procs.watch_exit(p);
        }
        for req in suspects {
            self.interrupt(req);
        }
    }

    // ----- the tree --------------------------------------------------------

    pub fn lookup(&self, parent: MailboxId, name: &OsStr) -> Option<MailboxId> {
        self.lock().children(parent)?.get(name).copied()
    }

    pub fn exists(&self, id: MailboxId) -> bool {
        self.lock().mailboxes.contains_key(&id)
    }

    pub fn children(&self, parent: MailboxId) -> Vec<(OsString, MailboxId)> {
        self.lock()
            .children(parent)
            .map(|c| c.iter().map(|(n, id)| (n.clone(), *id)).collect())
            .unwrap_or_default()
    }

    /// The attributes of a mailbox's directory (`None`) or one of its files,
    /// and its maximum message size.
    pub fn attr(&self, id: MailboxId, file: Option<FileKind>) -> Option<(Attr, usize)> {
        let st = self.lock();
        let m = st.mailboxes.get(&id)?;
        let attr = match file {
            None => m.dir,
            Some(k) => m.files[k as usize],
        };
        Some((attr, m.chan.policy.max_message_size))
    }

    pub fn root_policy_attr(&self) -> Attr {
        self.lock().root_policy_attr
    }

    fn check_name(parent: MailboxId, name: &OsStr) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let reserved: &[&str] = if parent == ROOT {
            &ROOT_NAMES
        } else {
            &MAILBOX_FILES
        };
        if reserved.iter().any(|r| r.as_bytes() == name.as_bytes()) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    pub fn mkdir(
        &self,
        parent: MailboxId,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<MailboxId> {
        Self::check_name(parent, name)?;
        let mut st = self.lock();
        let children = st.children(parent).ok_or(Errno::ENOENT)?;
        if children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        if st.last_mailbox >= MAX_MAILBOX_ID {
            return Err(Errno::ENOSPC);
        }
        // Mailboxes take memory too: each holds MAILBOX_COST of the bound.
        self.budget
            .reserve(MAILBOX_COST)
            .map_err(|_| Errno::ENOSPC)?;
        st.last_mailbox += 1;
        let id = st.last_mailbox;
        let mode = mode & 0o7777;
        let files = file_modes(mode).map(|mode| Attr { mode, uid, gid });
        let policy = st.default_policy;
        st.mailboxes.insert(
            id,
            Mailbox {
                name: name.to_owned(),
                parent,
                children: BTreeMap::new(),
                dir: Attr { mode, uid, gid },
                files,
                chan: Channel::new(policy),
            },
        );
        st.children_mut(parent)
            .expect("parent")
            .insert(name.to_owned(), id);
        debug!("mkdir {} ({policy})", st.path(id));
        Ok(id)
    }

    pub fn rmdir(&self, parent: MailboxId, name: &OsStr) -> Result<()> {
        let mut st = self.lock();
        let id = *st
            .children(parent)
            .ok_or(Errno::ENOENT)?
            .get(name)
            .ok_or(Errno::ENOENT)?;
        if !st.mailboxes[&id].children.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        let path = st.path(id);
        st.children_mut(parent).expect("parent").remove(name);
        let mut mailbox = st.mailboxes.remove(&id).expect("mailbox");
        self.budget.release(MAILBOX_COST);
        let mut fx = Effects::default();
        let dropped = mailbox.chan.drain(Errno::EIDRM, &mut fx);
        if dropped > 0 {
            info!("rmdir {path}: dropped {dropped} queued message(s)");
        } else {
            debug!("rmdir {path}");
        }
        self.finish(st, fx);
        Ok(())
    }

    /// Moves a mailbox, queue and all.
    pub fn rename(
        &self,
        parent: MailboxId,
        name: &OsStr,
        new_parent: MailboxId,
        new_name: &OsStr,
    ) -> Result<()> {
        Self::check_name(new_parent, new_name)?;
        let mut st = self.lock();
        let id = *st
            .children(parent)
            .ok_or(Errno::ENOENT)?
            .get(name)
            .ok_or(Errno::ENOENT)?;
        let target = st.children(new_parent).ok_or(Errno::ENOENT)?;
        match target.get(new_name) {
            Some(&existing) if existing == id => return Ok(()),
            Some(_) => return Err(Errno::EEXIST),
            None => {}
        }
        // Not into itself or below it.
        let mut up = new_parent;
        while up != ROOT {
            if up == id {
                return Err(Errno::EINVAL);
            }
            up = st.mailboxes[&up].parent;
        }
        st.children_mut(parent).expect("parent").remove(name);
        st.children_mut(new_parent)
            .expect("new parent")
            .insert(new_name.to_owned(), id);
        let m = st.mailboxes.get_mut(&id).expect("mailbox");
        m.name = new_name.to_owned();
        m.parent = new_parent;
        Ok(())
    }

    /// `chmod`/`chown` of a mailbox (`file` None), one of its files, or
    /// (`id` ROOT) the root policy file.
    pub fn set_attr(
        &self,
        id: MailboxId,
        file: Option<FileKind>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Attr> {
        let mut st = self.lock();
        let attr = if id == ROOT {
            &mut st.root_policy_attr
        } else {
            let m = st.mailboxes.get_mut(&id).ok_or(Errno::ENOENT)?;
            match file {
                None => &mut m.dir,
                Some(k) => &mut m.files[k as usize],
            }
        };
        if let Some(mode) = mode {
            attr.mode = mode & 0o7777;
        }
        if let Some(uid) = uid {
            attr.uid = uid;
        }
        if let Some(gid) = gid {
            attr.gid = gid;
        }
        Ok(*attr)
    }

    // ----- direct links ----------------------------------------------------

    /// The peers `caller` has link state with.
    pub fn peers(&self, caller: Process) -> Vec<u32> {
        let st = self.lock();
        let set: BTreeSet<u32> = st
            .links
            .keys()
            .filter_map(|(from, to)| {
                if *from == caller {
                    Some(to.pid)
                } else if *to == caller {
                    Some(from.pid)
                } else {
                    None
                }
            })
            .collect();
        set.into_iter().collect()
    }

    /// Whether messages sent to `me` by a process with pid `pid` that has
    /// since exited still wait to be received: they keep `proc/<pid>`
    /// visible to `me` until they are.
    pub fn pending_from_exited(&self, me: Process, pid: u32) -> bool {
        self.lock()
            .links
            .iter()
            .any(|((from, to), ch)| from.pid == pid && *to == me && ch.messages() > 0)
    }

    fn link_policy(&self) -> Policy {
        Policy {
            rule: Rule::Arbitrary,
            ..self.config.default_policy
        }
    }

    // ----- open and close --------------------------------------------------

    /// Opens `target` for `caller` with the access asked for.
    pub fn open(&self, caller: Caller, target: Target, access: Access) -> Result<u64> {
        let me = caller.process;
        // What the system says about a link's peer is asked before taking
        // the lock (pidfd_open, /proc/<pid>/status).
        let peer = match target {
            Target::Link(pid, _) => self.procs.by_pid(pid),
            _ => None,
        };
        let may_send = match (target, peer) {
            (Target::Link(_, FileKind::Send), Some(peer)) => self.procs.may_signal(me, peer),
            _ => false,
        };
        let facts = PeerFacts { peer, may_send };
        let mut watch = Vec::new();
        let mut st = self.lock();
        let result = self.open_locked(&mut st, me, target, access, facts, &mut watch);
        drop(st);
        for p in watch {
            // pidfd_open and epoll_ctl, unless already watched.
            self.procs.watch_exit(p);
        }
        result
    }

    fn open_locked(
        &self,
        st: &mut State,
        me: Process,
        target: Target,
        access: Access,
        facts: PeerFacts,
        watch: &mut Vec<Process>,
    ) -> Result<u64> {
        let PeerFacts { peer, may_send } = facts;
        let Access {
            read,
            write,
            append,
        } = access;
        let recv_handle = |chan| HandleKind::Recv {
            chan,
            cursor: Cursor::default(),
            reading: false,
            behind: VecDeque::new(),
        };
        let send_handle = |chan| HandleKind::Send {
            chan,
            receipts: read.then(|| ReceiptBook::new(&self.budget)),
            append,
        };
        let kind = match target {
            Target::RootPolicy => HandleKind::Policy {
                of: None,
                text: format!("{}\n", st.default_policy).into_bytes(),
            },
            Target::DaemonStatus => HandleKind::Text(self.daemon_status(st).into_bytes()),
            Target::Mailbox(id, kind) => {
                let m = st.mailboxes.get_mut(&id).ok_or(Errno::ENOENT)?;
                let ch = &mut m.chan;
                // Only asked when the rule refuses: a bound process may have exited.
                let alive = |p: Process| self.procs.is_alive(p);
                if matches!(ch.policy.rule, Rule::Pair | Rule::Exclusive) {
                    watch.push(me);
                }
                match kind {
                    FileKind::Policy => HandleKind::Policy {
                        of: Some(id),
                        text: format!("{}\n", ch.policy).into_bytes(),
                    },
                    FileKind::Status => {
                        ch.prune_members(&alive);
                        HandleKind::Text(status::mailbox(ch, &self.budget).into_bytes())
                    }
                    FileKind::Recv => {
                        if write {
                            return Err(Errno::EACCES);
                        }
                        ch.members.admit(ch.policy.rule, me, Role::Recv, &alive)?;
                        ch.open_recv(me);
                        ch.handles += 1;
                        recv_handle(ChanKey::Mailbox(id))
                    }
                    FileKind::Send => {
                        if !write {
                            return Err(Errno::EACCES);
                        }
                        ch.members.admit(ch.policy.rule, me, Role::Send, &alive)?;
                        ch.handles += 1;
                        send_handle(ChanKey::Mailbox(id))
                    }
                }
            }
            Target::Link(pid, kind) => {
                let peer_alive = peer.is_some();
                // A peer that has exited may have left messages for `me`.
                let peer = peer.or_else(|| {
                    st.links
                        .keys()
                        .find(|(from, to)| from.pid == pid && *to == me)
                        .map(|(from, _)| *from)
                });
                let policy = self.link_policy();
                match kind {
                    FileKind::Send => {
                        if !write {
                            return Err(Errno::EACCES);
                        }
                        let Some(peer) = peer.filter(|_| peer_alive) else {
                            return Err(Errno::ESRCH);
                        };
                        if !may_send {
                            return Err(Errno::EPERM);
                        }
                        let ch = st
                            .links
                            .entry((me, peer))
                            .or_insert_with(|| Channel::new(policy));
                        if ch.ends.receiver_gone {
                            return Err(Errno::ESRCH);
                        }
                        ch.handles += 1;
                        watch.extend([me, peer]);
                        send_handle(ChanKey::Link { from: me, to: peer })
                    }
                    FileKind::Recv => {
                        if write {
                            return Err(Errno::EACCES);
                        }
                        let peer = peer.ok_or(Errno::ESRCH)?;
                        let ch = st
                            .links
                            .entry((peer, me))
                            .or_insert_with(|| Channel::new(policy));
                        ch.open_recv(me);
                        ch.handles += 1;
                        watch.extend([me, peer]);
                        recv_handle(ChanKey::Link { from: peer, to: me })
                    }
                    FileKind::Status | FileKind::Policy => {
                        let text = match peer {
                            Some(peer) => status::link(
                                pid,
                                peer_alive,
                                st.links.get(&(me, peer)),
                                st.links.get(&(peer, me)),
                            ),
                            None => status::link(pid, false, None, None),
                        };
                        HandleKind::Text(text.into_bytes())
                    }
                }
            }
        };
        let h = st.id();
        st.handles.insert(
            h,
            Handle {
                owner: me,
                kind,
                poll: None,
            },
        );
        Ok(h)
    }

    pub fn release(&self, h: u64) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        let Some(handle) = st.handles.remove(&h) else {
            return;
        };
        let State {
            mailboxes, links, ..
        } = &mut *st;
        let chan = match &handle.kind {
            HandleKind::Recv { chan, .. } | HandleKind::Send { chan, .. } => *chan,
            HandleKind::Text(_) | HandleKind::Policy { .. } => return,
        };
        if let Some(ch) = chan_mut(mailboxes, links, chan) {
            ch.handles -= 1;
            if let Some(kh) = handle.poll {
                ch.unwatch(kh);
            }
            if let HandleKind::Recv { cursor, .. } = &handle.kind {
                if cursor.partial() {
                    ch.counters.truncated += 1;
                }
                ch.close_recv(handle.owner, &mut fx);
            }
            // The last descriptor of a link one of whose ends has exited.
            if let ChanKey::Link { from, to } = chan
                && (ch.ends.sender_gone || ch.ends.receiver_gone)
                && ch.is_idle()
            {
                links.remove(&(from, to));
            }
        }
        self.finish(st, fx);
    }

    // ----- read, write, poll ----------------------------------------------

    /// A read request of `size` bytes.
    pub fn read(&self, io: Io, size: u32, reply: Box<dyn Replier>) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        self.read_locked(&mut st, &mut fx, io, size, reply);
        self.finish(st, fx);
    }

    fn read_locked(
        &self,
        st: &mut State,
        fx: &mut Effects,
        io: Io,
        size: u32,
        reply: Box<dyn Replier>,
    ) {
        let State {
            handles,
            mailboxes,
            links,
            parked,
            early,
            shut_down,
            ..
        } = st;
        let Some(handle) = handles.get_mut(&io.handle) else {
            return fx.reply(reply, Outcome::Error(Errno::EBADF));
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
                        return fx.reply(reply, Outcome::Error(Errno::EAGAIN));
                    }
                    park(parked, early, fx, &io, Place::Behind(io.handle));
                    behind.push_back(ReadBehind {
                        id: io.req,
                        size,
                        reply,
                    });
                    return;
                }
                let key = *chan;
                let ch = check!(fx, reply, chan_mut(mailboxes, links, key).ok_or(gone(key)));
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
                    return fx.reply(reply, Outcome::Error(Errno::ESRCH));
                }
                if io.nonblock {
                    return fx.reply(reply, Outcome::Error(Errno::EAGAIN));
                }
                if *shut_down {
                    return fx.reply(reply, Outcome::Error(Errno::ENOTCONN));
                }
                park(parked, early, fx, &io, Place::Chan(key, Some(io.handle)));
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
                fx.reply(reply, Outcome::Error(Errno::EBADF))
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
                    ReceiptRead::Pending if io.nonblock => {
                        fx.reply(reply, Outcome::Error(Errno::EAGAIN))
                    }
                    ReceiptRead::Pending if *shut_down => {
                        fx.reply(reply, Outcome::Error(Errno::ENOTCONN))
                    }
                    ReceiptRead::Pending => {
                        park(parked, early, fx, &io, Place::Receipts(io.handle));
                        book.waiters.push_back(ReceiptWait {
                            id: io.req,
                            size,
                            reply,
                        });
                    }
                    // Nothing more to read, and the mailbox is gone: EIDRM,
                    // like any other I/O on a descriptor opened before rmdir.
                    ReceiptRead::Eof if chan_mut(mailboxes, links, *chan).is_none() => {
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
            handles,
            mailboxes,
            links,
            parked,
            early,
            default_policy,
            shut_down,
            ..
        } = st;
        let Some(handle) = handles.get_mut(&io.handle) else {
            return fx.reply(reply, Outcome::Error(Errno::EBADF));
        };
        let owner = handle.owner;
        match &mut handle.kind {
            HandleKind::Policy { of, .. } => {
                let current = match of {
                    None => *default_policy,
                    Some(id) => check!(
                        fx,
                        reply,
                        mailboxes.get(id).map(|m| m.chan.policy).ok_or(Errno::EIDRM)
                    ),
                };
                let new = match policy::parse(data, &current, self.config.hard_max_message) {
                    Ok(p) => p,
                    Err(e) => {
                        debug!("policy write refused: {e}");
                        return fx.reply(reply, Outcome::Error(Errno::EINVAL));
                    }
                };
                match of {
                    None => *default_policy = new,
                    Some(id) => {
                        let id = *id;
                        let openers = openers(handles, id);
                        if matches!(new.rule, Rule::Pair | Rule::Exclusive) {
                            fx.watch.extend(openers.iter().map(|(p, _)| *p));
                        }
                        let ch = &mut mailboxes.get_mut(&id).expect("mailbox").chan;
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
                let ch = check!(fx, reply, chan_mut(mailboxes, links, key).ok_or(gone(key)));
                let continued = io.offset > 0 && !*append;
                if continued || data.len() > ch.policy.max_message_size {
                    return fx.reply(reply, Outcome::Error(Errno::EMSGSIZE));
                }
                if ch.ends.receiver_gone {
                    return fx.reply(reply, Outcome::Error(Errno::ESRCH));
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
                    return fx.reply(reply, Outcome::Error(Errno::EAGAIN));
                }
                if !writable && *shut_down {
                    return fx.reply(reply, Outcome::Error(Errno::ENOTCONN));
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
                park(parked, early, fx, &io, Place::Chan(key, None));
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
                fx.reply(reply, Outcome::Error(Errno::EBADF))
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
            mailboxes,
            links,
            ..
        } = &mut *st;
        let Some(handle) = handles.get_mut(&h) else {
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
        let Some(ch) = chan_mut(mailboxes, links, key) else {
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

    // ----- watching: interrupts and exits --------------------------------

    /// The kernel interrupted request `req`: its caller got a signal. A
    /// parked request is answered `EINTR` at once, unless the signal is one
    /// that does not end calls (see [`crate::os::signals`]); then it waits on,
    /// and the watcher looks at its thread from now on. An interrupt for a
    /// request that has not parked is remembered a moment: the request may
    /// still be on its way through another event-loop thread.
    pub fn interrupt(&self, req: WaiterId) {
        let tid = {
            let mut st = self.lock();
            match st.parked.get(&req) {
                Some(p) => p.tid,
                None => return st.remember_early(req),
            }
        };
        // Which signal? One read of /proc/<tid>/status, off the lock.
        let ends = self.procs.signal_ends_call(tid);
        let mut st = self.lock();
        if ends {
            let mut fx = Effects::default();
            self.interrupt_locked(&mut st, &mut fx, req);
            self.finish(st, fx);
        } else if st.parked.contains_key(&req) {
            debug!("request {req} (thread {tid}) waits on: its signal does not end calls");
            st.kept.insert(req, tid);
        }
    }

    /// Answers `EINTR` to the requests kept waiting after an interrupt
    /// whose thread has since got a signal that ends the call (the kernel
    /// sends no second interrupt). Reads `/proc` off the lock, for those
    /// requests only.
    pub fn check_kept(&self) {
        let kept: Vec<(WaiterId, u32)> = {
            let mut st = self.lock();
            let State { kept, parked, .. } = &mut *st;
            kept.retain(|id, _| parked.contains_key(id));
            kept.iter().map(|(id, tid)| (*id, *tid)).collect()
        };
        let hit: Vec<WaiterId> = kept
            .into_iter()
            .filter(|(_, tid)| self.procs.interrupted(*tid))
            .map(|(id, _)| id)
            .collect();
        if !hit.is_empty() {
            let mut st = self.lock();
            let mut fx = Effects::default();
            for id in hit {
                self.interrupt_locked(&mut st, &mut fx, id);
            }
            self.finish(st, fx);
        }
    }

    fn interrupt_locked(&self, st: &mut State, fx: &mut Effects, id: WaiterId) {
        let Some(&Parked { tid, place }) = st.parked.get(&id) else {
            return;
        };
        let State {
            mailboxes,
            links,
            handles,
            parked,
            ..
        } = st;
        let reply = match place {
            // Leaving the channel unparks it (and lets reads behind it go on).
            Place::Chan(key, _) => {
                match chan_mut(mailboxes, links, key).and_then(|ch| ch.remove_waiter(id, fx)) {
                    Some(Removed::Recv(w)) => Some(w.reply),
                    Some(Removed::Send(w)) => Some(w.reply),
                    None => None,
                }
            }
            Place::Behind(h) => {
                parked.remove(&id);
                match handles.get_mut(&h).map(|hd| &mut hd.kind) {
                    Some(HandleKind::Recv { behind, .. }) => behind
                        .iter()
                        .position(|r| r.id == id)
                        .and_then(|i| behind.remove(i))
                        .map(|r| r.reply),
                    _ => None,
                }
            }
            Place::Receipts(h) => {
                parked.remove(&id);
                match handles.get_mut(&h) {
                    Some(Handle {
                        kind:
                            HandleKind::Send {
                                receipts: Some(b), ..
                            },
                        ..
                    }) => b.remove_waiter(id).map(|w| w.reply),
                    _ => None,
                }
            }
        };
        if let Some(r) = reply {
            debug!("interrupted waiter {id} (tid {tid})");
            fx.reply(r, Outcome::Error(Errno::EINTR));
        }
    }

    /// Process `p` has exited (its pidfd said so): messages queued for it
    /// are dropped and counted, its blocked senders get `ESRCH`, readers of
    /// what it sent get `ESRCH` once nothing is left, link state that
    /// nothing uses any more is reclaimed, and its `pair`/`exclusive` slots
    /// are freed.
    pub fn exited(&self, p: Process) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        let mut dropped_total = 0;
        st.links.retain(|(from, to), ch| {
            if *to == p {
                ch.ends.receiver_gone = true;
                let n = ch.fail_senders_and_drop(Errno::ESRCH, &mut fx);
                if n > 0 {
                    info!(
                        "process {} exited: dropped {n} message(s) from {}",
                        to.pid, from.pid
                    );
                }
                dropped_total += n as u64;
            }
            if *from == p {
                ch.ends.sender_gone = true;
                if ch.messages() == 0 {
                    ch.fail_readers(Errno::ESRCH, &mut fx);
                }
            }
            !((ch.ends.sender_gone || ch.ends.receiver_gone) && ch.is_idle())
        });
        st.dropped_on_exit += dropped_total;
        for m in st.mailboxes.values_mut() {
            m.chan.prune_members(&|q| q != p);
        }
        self.finish(st, fx);
    }

    /// The daemon is stopping: every parked request gets `ENOTCONN` and no
    /// new one parks.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shut_down = true;
        let mut fx = Effects::default();
        let ids: Vec<WaiterId> = st.parked.keys().copied().collect();
        for id in ids {
            self.interrupt_locked(&mut st, &mut fx, id);
        }
        for (_, out) in fx.replies.iter_mut() {
            *out = Outcome::Error(Errno::ENOTCONN);
        }
        self.finish(st, fx);
    }

    fn daemon_status(&self, st: &State) -> String {
        let processes: BTreeSet<Process> = st.links.keys().flat_map(|(a, b)| [*a, *b]).collect();
        status::daemon(&status::DaemonFigures {
            mailboxes: st.mailboxes.len(),
            links: st.links.len(),
            processes: processes.len(),
            dropped_on_exit: st.dropped_on_exit,
            parked: st.parked.len(),
            memory_used: self.budget.used(),
            memory_limit: self.budget.limit(),
        })
    }

    /// Bytes held for messages, daemon-wide.
    #[cfg(test)]
    pub fn memory_used(&self) -> usize {
        self.budget.used()
    }

    /// Runs the watcher until `stop` says so: reports process exits as
    /// their pidfds signal them, and every 100 ms looks at the requests
    /// kept waiting after an interrupt (usually none).
    pub fn watch(&self, stop: &dyn Fn() -> bool) {
        while !stop() {
            self.watch_once(Duration::from_millis(100));
        }
    }

    /// One round of [`Hub::watch`], waiting up to `timeout` for exits.
    pub fn watch_once(&self, timeout: Duration) {
        for p in self.procs.exits(timeout) {
            self.exited(p);
        }
        self.check_kept();
    }
}

#[cfg(test)]
mod tests;
