//! The FUSE adapter: translates kernel requests (inodes, file handles,
//! replies) into calls on the core [`Hub`], and nothing more. What the
//! kernel sees at each inode (attributes, names, listings) is worked out in
//! [`super::nodes`]; this file holds the [`Filesystem`] impl and the
//! replies the core answers through.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    Notifier, OpenAccMode, OpenFlags, PollEvents, PollFlags, PollNotifier, RenameFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyPoll, ReplyWrite, Request,
    RequestId, TimeOrNow, WriteFlags,
};

use log::debug;

use crate::fuse::inode::Node;
use crate::fuse::nodes::{self, node_at};
use crate::hub::errno::{Errno, Refusal};
use crate::hub::reply::{Outcome, Replier};
use crate::hub::{Access, Caller, FileKind, Hub, Io, ROOT, Target};

/// The one place refusals reach the kernel: logged (at `debug`, with what
/// was asked) and turned into the caller's errno.
fn err(what: &dyn std::fmt::Display, r: impl Into<Refusal>) -> fuser::Errno {
    let r = r.into();
    debug!("{what}: refused {r}");
    fuser::Errno::from_i32(r.errno.0)
}

/// A read's reply, and the kernel's id of the request.
struct DataReply(ReplyData, u64);

impl Replier for DataReply {
    fn reply(self: Box<Self>, outcome: Outcome) {
        match outcome {
            Outcome::Error(e) => self.0.error(err(&format_args!("read {}", self.1), e)),
            other => self.0.data(other.data().unwrap_or_default()),
        }
    }
}

/// A write's reply, and the kernel's id of the request.
struct WriteReply(ReplyWrite, u64);

impl Replier for WriteReply {
    fn reply(self: Box<Self>, outcome: Outcome) {
        match outcome {
            Outcome::Written(n) => self.0.written(n),
            Outcome::Error(e) => self.0.error(err(&format_args!("write {}", self.1), e)),
            _ => self.0.error(fuser::Errno::EIO),
        }
    }
}

fn io(req: &Request, fh: FileHandle, offset: u64, flags: OpenFlags) -> Io {
    Io {
        handle: fh.0,
        req: req.unique().0,
        tid: req.pid(),
        offset,
        nonblock: flags.0 & libc::O_NONBLOCK != 0,
    }
}

pub struct IpcFs {
    pub(super) hub: Arc<Hub>,
    /// The time every node shows (atime, mtime, ctime).
    pub(super) started: SystemTime,
    /// The session's notifier, set once mounted: a chmod of a mailbox
    /// tells the kernel to forget its files' cached modes.
    notifier: Arc<OnceLock<Notifier>>,
}

impl IpcFs {
    pub fn new(hub: Arc<Hub>) -> IpcFs {
        IpcFs {
            hub,
            started: SystemTime::now(),
            notifier: Arc::default(),
        }
    }

    /// Where the session's notifier goes once the session exists.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        Arc::clone(&self.notifier)
    }

    pub(super) fn caller(&self, req: &Request) -> Result<Caller, Refusal> {
        self.hub.caller(req.pid(), req.uid(), req.gid())
    }

    /// The caller's pid as it numbers processes (pid namespaces).
    pub(super) fn own_number(&self, req: &Request) -> Result<u32, Refusal> {
        let me = self.caller(req)?;
        self.hub.own_number(req.pid(), me.process)
    }
}

impl Filesystem for IpcFs {
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match node_at(parent)
            .and_then(|p| self.lookup_node(req, p, name))
            .and_then(|n| self.attr_of(req, n))
        {
            Ok(c) => reply.entry_with_ttls(&c.attr_ttl, &c.entry_ttl, &c.attr, Generation(0)),
            Err(e) => reply.error(err(&"lookup", e)),
        }
    }

    fn interrupt(&self, _req: &Request, unique: RequestId, reply: ReplyEmpty) {
        // Answered or not, the interrupt itself needs no answer; one for a
        // request not parked yet is remembered by the hub.
        self.hub.interrupt(unique.0);
        reply.ok();
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match node_at(ino).and_then(|n| self.attr_of(req, n)) {
            Ok(c) => reply.attr(&c.attr_ttl, &c.attr),
            Err(e) => reply.error(err(&"getattr", e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Truncation (`echo x > box/send` opens with O_TRUNC) and times
        // (`touch`) are accepted and change nothing; mode and owner are kept.
        let Some(node) = Node::from_ino(ino.0) else {
            return reply.error(fuser::Errno::ENOENT);
        };
        let changes = mode.is_some() || uid.is_some() || gid.is_some();
        // A broker's mailbox: by a broker thread (ipcfs(7), ACROSS HOSTS);
        // the kernel caches none of its attributes.
        if let (true, true, Node::Mailbox(id) | Node::MailboxFile(id, _)) =
            (changes, self.hub.is_shared(), node.canonical())
        {
            let file = match node.canonical() {
                Node::MailboxFile(_, k) => Some(k),
                _ => None,
            };
            let started = self.started;
            self.hub.defer(Box::new(move |hub: &Hub| {
                let done = hub
                    .set_attr(id, file, mode, uid, gid)
                    .and_then(|_| nodes::broker_attr(hub, started, node));
                match done {
                    Ok(attr) => reply.attr(&Duration::ZERO, &attr),
                    Err(e) => reply.error(err(&"setattr", e)),
                }
            }));
            return;
        }
        let result = match node.canonical() {
            _ if !changes => Ok(()),
            Node::Mailbox(id) => self.hub.set_attr(id, None, mode, uid, gid).map(drop),
            Node::MailboxFile(id, k) => self.hub.set_attr(id, Some(k), mode, uid, gid).map(drop),
            Node::RootPolicy => self.hub.set_attr(ROOT, None, mode, uid, gid).map(drop),
            _ => Err(Errno::EPERM.into()),
        };
        // A chmod of a mailbox set its files' modes anew; the kernel has
        // them cached (see nodes.rs, TREE_TTL). Their attributes only
        // (offset -1: no page, no lock the chmod holds) are invalidated
        // before the chmod is answered, so a stat right after it sees them.
        if let (Ok(()), Node::Mailbox(id), Some(_), Some(n)) =
            (&result, node, mode, self.notifier.get())
        {
            for k in FileKind::ALL {
                let ino = Node::MailboxFile(id, k).ino();
                if let Err(e) = n.inval_inode(INodeNo(ino), -1, 0) {
                    debug!("setattr: cannot invalidate inode {ino}: {e}");
                }
            }
        }
        match result.and_then(|()| self.attr_of(req, node)) {
            Ok(c) => reply.attr(&c.attr_ttl, &c.attr),
            Err(e) => reply.error(err(&"setattr", e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match (Node::from_ino(ino.0), self.own_number(req)) {
            (Some(Node::ProcSelf), Ok(pid)) => reply.data(pid.to_string().as_bytes()),
            (Some(Node::ProcSelf), Err(e)) => reply.error(err(&"readlink", e)),
            _ => reply.error(fuser::Errno::EINVAL),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        if let Ok(p) = node_at(parent).and_then(nodes::container)
            && self.hub.is_shared()
        {
            // On a broker: by a broker thread (ipcfs(7), ACROSS HOSTS).
            let (name, started) = (name.to_owned(), self.started);
            self.hub.defer(Box::new(move |hub: &Hub| {
                let made = hub
                    .mkdir(p, &name, mode & !umask, uid, gid)
                    .and_then(|id| nodes::broker_attr(hub, started, Node::Mailbox(id)));
                match made {
                    Ok(attr) => reply.entry(&Duration::ZERO, &attr, Generation(0)),
                    Err(e) => reply.error(err(&"mkdir", e)),
                }
            }));
            return;
        }
        let result = node_at(parent)
            .and_then(nodes::container)
            .and_then(|p| self.hub.mkdir(p, name, mode & !umask, uid, gid))
            .and_then(|id| self.attr_of(req, Node::Mailbox(id)));
        match result {
            Ok(c) => reply.entry_with_ttls(&c.attr_ttl, &c.entry_ttl, &c.attr, Generation(0)),
            Err(e) => reply.error(err(&"mkdir", e)),
        }
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fuser::Errno::EPERM);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let asked =
            node_at(parent).and_then(|parent| match self.lookup_node(req, parent, name)? {
                Node::Mailbox(_) => nodes::container(parent),
                Node::ProcDir => Err(Errno::EBUSY.into()),
                _ => Err(Errno::ENOTDIR.into()),
            });
        let answer = |reply: ReplyEmpty, result: Result<(), Refusal>| match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&"rmdir", e)),
        };
        match asked {
            // On a broker: by a broker thread (ipcfs(7), ACROSS HOSTS).
            Ok(parent) if self.hub.is_shared() => {
                let name = name.to_owned();
                self.hub.defer(Box::new(move |hub: &Hub| {
                    answer(reply, hub.rmdir(parent, &name))
                }));
            }
            Ok(parent) => answer(reply, self.hub.rmdir(parent, name)),
            Err(e) => answer(reply, Err(e)),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let asked = if !flags.is_empty() {
            Err(Errno::EINVAL.into())
        } else {
            node_at(parent).and_then(|from| match self.lookup_node(req, from, name)? {
                Node::Mailbox(_) => {
                    let from = nodes::container(from)?;
                    let to = node_at(newparent).and_then(nodes::container)?;
                    Ok((from, to))
                }
                _ => Err(Errno::EPERM.into()),
            })
        };
        let answer = |reply: ReplyEmpty, result: Result<(), Refusal>| match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&"rename", e)),
        };
        match asked {
            // On a broker: by a broker thread (ipcfs(7), ACROSS HOSTS).
            Ok((from, to)) if self.hub.is_shared() => {
                let (name, newname) = (name.to_owned(), newname.to_owned());
                self.hub.defer(Box::new(move |hub: &Hub| {
                    answer(reply, hub.rename(from, &name, to, &newname))
                }));
            }
            Ok((from, to)) => answer(reply, self.hub.rename(from, name, to, newname)),
            Err(e) => answer(reply, Err(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (read, write) = match flags.acc_mode() {
            OpenAccMode::O_RDONLY => (true, false),
            OpenAccMode::O_WRONLY => (false, true),
            OpenAccMode::O_RDWR => (true, true),
        };
        let access = Access {
            read,
            write,
            append: flags.0 & libc::O_APPEND != 0,
            // cp -r, cp -a, mv across filesystems and tar open what they
            // copy with O_NOFOLLOW, which the kernel passes on; cat, shell
            // redirections and open() in programs do not.
            copy: read && !write && flags.0 & libc::O_NOFOLLOW != 0,
        };
        let asked = node_at(ino)
            .and_then(nodes::target)
            .and_then(|t| Ok((t, self.caller(req)?)));
        // A broker's mailbox is opened by a broker thread: the event loop
        // never waits on the network (ipcfs(7), ACROSS HOSTS).
        if let Ok((t @ Target::Mailbox(..), caller)) = asked
            && self.hub.is_shared()
        {
            self.hub.defer(Box::new(move |hub: &Hub| {
                let result = hub.open(caller, t, access).map(|fh| (t, fh));
                opened(reply, access, result);
            }));
            return;
        }
        let result = asked.and_then(|(t, caller)| Ok((t, self.hub.open(caller, t, access)?)));
        opened(reply, access, result);
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.hub.read(
            io(req, fh, offset, flags),
            size,
            Box::new(DataReply(reply, req.unique().0)),
        );
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.hub.write(
            io(req, fh, offset, flags),
            data,
            Box::new(WriteReply(reply, req.unique().0)),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.hub.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match Node::from_ino(ino.0) {
            Some(n) if n.is_dir() => reply.opened(FileHandle(0), FopenFlags::empty()),
            _ => reply.error(fuser::Errno::ENOTDIR),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match node_at(ino).and_then(|n| self.entries(req, n)) {
            Ok(e) => e,
            Err(e) => return reply.error(err(&"readdir", e)),
        };
        for (i, (node, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(node.ino()),
                i as u64 + 1,
                kind,
                OsStr::from_bytes(&name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        ph: PollNotifier,
        events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let kh = flags
            .contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY)
            .then(|| ph.handle().0);
        let ready = self.hub.poll(fh.0, kh);
        let always = (libc::POLLERR | libc::POLLHUP) as u32;
        reply.poll(PollEvents::from_bits_truncate(
            ready & (events.bits() | always),
        ));
    }
}

/// Answers an open with its handle and how the kernel must treat the file.
fn opened(reply: ReplyOpen, access: Access, result: Result<(Target, u64), Refusal>) {
    match result {
        Ok((target, fh)) => {
            // No page cache: every read(2)/write(2) reaches the daemon.
            // Message files are streams: each read(2)/write(2) starts
            // at offset 0 (see Cursor::serve), and lseek(2) fails.
            // Status and policy are snapshots taken at open, read at
            // the offset like a /proc file: `head` may seek back in them.
            let kind = match target {
                Target::Mailbox(_, k) | Target::Link(_, k) => Some(k),
                _ => None,
            };
            let stream = kind.is_some_and(|k| k.sends() || k.receives()) && !access.copy;
            // Nothing is buffered, so close(2) need not wait for a FLUSH.
            let mut f = FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH;
            if stream {
                f |= FopenFlags::FOPEN_NONSEEKABLE | FopenFlags::FOPEN_STREAM;
            }
            // Writes to one file do not queue behind each other in the
            // kernel: each reaches the daemon, where a blocked one parks
            // (killable, and O_NONBLOCK gives EAGAIN). The kernel takes
            // the inode lock shared only for writes it does not see as
            // past the end of the file: files written to report a size
            // of the largest message (see hub/attrs.rs).
            if kind.is_some_and(FileKind::sends) {
                f |= FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES;
            }
            reply.opened(FileHandle(fh), f)
        }
        Err(e) => reply.error(err(&"open", e)),
    }
}
