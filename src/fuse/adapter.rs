//! The FUSE adapter: translates kernel requests (inodes, file handles,
//! replies) into calls on the core [`Hub`], and nothing more.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, Notifier, OpenAccMode, OpenFlags, PollEvents, PollFlags, PollNotifier,
    RenameFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyPoll, ReplyWrite, Request, RequestId, TimeOrNow, WriteFlags,
};

use crate::fuse::inode::Node;
use crate::hub::errno::{Errno, Refusal};
use crate::hub::reply::{Outcome, Replier};
use log::debug;

use crate::hub::attrs::Meta;
use crate::hub::{Access, Caller, FileKind, Hub, Io, MailboxId, ROOT, Target};

/// Mailbox names and attributes only change through this mount (the
/// kernel sees its own mkdir, rmdir, rename and chmod), so it may cache
/// them; `proc/` answers differ per caller and per moment.
const TREE_TTL: Duration = Duration::from_secs(1);
const NO_TTL: Duration = Duration::ZERO;

/// A node's attributes, how long the kernel may cache its name (entry) and
/// how long its attributes.
struct Cached {
    attr: FileAttr,
    entry_ttl: Duration,
    attr_ttl: Duration,
}

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
    hub: Arc<Hub>,
    started: SystemTime,
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

    fn caller(&self, req: &Request) -> Result<Caller, Refusal> {
        self.hub.caller(req.pid(), req.uid(), req.gid())
    }

    /// The caller's pid as it numbers processes (pid namespaces).
    fn own_number(&self, req: &Request) -> Result<u32, Refusal> {
        let me = self.caller(req)?;
        self.hub.own_number(req.pid(), me.process)
    }

    fn file_attr(&self, node: Node, kind: FileType, meta: Meta) -> FileAttr {
        FileAttr {
            ino: INodeNo(node.ino()),
            size: meta.size,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm: meta.attr.mode as u16,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: meta.attr.uid,
            gid: meta.attr.gid,
            rdev: 0,
            blksize: meta.blksize,
            flags: 0,
        }
    }

    /// The attributes of `node` and how long the kernel may cache them.
    fn attr_of(&self, req: &Request, node: Node) -> Result<Cached, Refusal> {
        let hub = &self.hub;
        let file = FileType::RegularFile;
        let dir = FileType::Directory;
        let (kind, meta, ttl) = match node.canonical() {
            Node::Root => (dir, hub.root_meta(), TREE_TTL),
            Node::RootPolicy => (file, hub.root_policy_meta(), TREE_TTL),
            Node::ProcDir => (dir, hub.proc_dir_meta(), TREE_TTL),
            Node::ProcSelf => {
                let pid = self.own_number(req)?;
                (FileType::Symlink, hub.proc_self_meta(pid), NO_TTL)
            }
            Node::ProcStatus => (file, hub.proc_status_meta(), NO_TTL),
            // proc/<pid> answers differ per caller and per moment.
            Node::Peer(pid) => (dir, hub.peer_meta(req.pid(), pid, None)?, NO_TTL),
            Node::PeerFile(pid, k) => (file, hub.peer_meta(req.pid(), pid, Some(k))?, NO_TTL),
            Node::Mailbox(id) => (dir, hub.mailbox_meta(id, None)?, TREE_TTL),
            Node::MailboxFile(id, k) => (file, hub.mailbox_meta(id, Some(k))?, TREE_TTL),
            Node::MailboxOwn(..) | Node::PeerOwn(..) => unreachable!("canonical"),
        };
        // A file written to is looked up anew by each caller (see
        // inode.rs); its attributes are as stable as the others'.
        let entry_ttl = if node != node.canonical() {
            NO_TTL
        } else {
            ttl
        };
        Ok(Cached {
            attr: self.file_attr(node, kind, meta),
            entry_ttl,
            attr_ttl: ttl,
        })
    }

    fn lookup_node(&self, req: &Request, parent: Node, name: &OsStr) -> Result<Node, Refusal> {
        let bytes = name.as_bytes();
        match parent {
            Node::Root => match bytes {
                b"policy" => Ok(Node::RootPolicy),
                b"proc" => Ok(Node::ProcDir),
                _ => self
                    .hub
                    .lookup(ROOT, name)
                    .map(Node::Mailbox)
                    .ok_or(Refusal::from(Errno::ENOENT)),
            },
            Node::ProcDir => match bytes {
                b"self" => Ok(Node::ProcSelf),
                b"status" => Ok(Node::ProcStatus),
                _ => {
                    // Whether the caller sees a process it calls `pid` is
                    // asked once, by `attr_of`, which every lookup calls.
                    let pid: u32 = std::str::from_utf8(bytes)
                        .ok()
                        .filter(|s| !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse().ok())
                        .ok_or(Refusal::from(Errno::ENOENT))?;
                    Ok(Node::Peer(pid))
                }
            },
            Node::Peer(_) => FileKind::from_name(name)
                .and_then(|k| Node::file_for(parent, k, req.pid()))
                .ok_or(Errno::ENOENT.into()),
            Node::Mailbox(id) => match FileKind::from_name(name) {
                Some(k) => Ok(Node::file_for(parent, k, req.pid()).expect("a mailbox file")),
                None => self
                    .hub
                    .lookup(id, name)
                    .map(Node::Mailbox)
                    .ok_or(Refusal::from(Errno::ENOENT)),
            },
            _ => Err(Errno::ENOTDIR.into()),
        }
    }

    /// The mailbox that holds mailboxes at `node`: the root or a mailbox.
    fn container(node: Option<Node>) -> Result<MailboxId, Refusal> {
        match node {
            Some(Node::Root) => Ok(ROOT),
            Some(Node::Mailbox(id)) => Ok(id),
            Some(Node::ProcDir | Node::Peer(_)) => Err(Errno::EPERM.into()),
            Some(_) => Err(Errno::ENOTDIR.into()),
            None => Err(Errno::ENOENT.into()),
        }
    }

    fn target(node: Node) -> Result<Target, Refusal> {
        Ok(match node.canonical() {
            Node::RootPolicy => Target::RootPolicy,
            Node::ProcStatus => Target::DaemonStatus,
            Node::MailboxFile(id, k) => Target::Mailbox(id, k),
            Node::PeerFile(pid, k) => Target::Link(pid, k),
            _ => return Err(Errno::EISDIR.into()),
        })
    }

    fn entries(
        &self,
        req: &Request,
        node: Node,
    ) -> Result<Vec<(Node, FileType, Vec<u8>)>, Refusal> {
        let file = |n: Node, name: &str| (n, FileType::RegularFile, name.as_bytes().to_vec());
        let mut out = vec![
            (node, FileType::Directory, b".".to_vec()),
            (Node::Root, FileType::Directory, b"..".to_vec()),
        ];
        let boxes = |out: &mut Vec<_>, parent| {
            for (name, id) in self.hub.children(parent) {
                out.push((
                    Node::Mailbox(id),
                    FileType::Directory,
                    name.as_bytes().to_vec(),
                ));
            }
        };
        match node {
            Node::Root => {
                out.push(file(Node::RootPolicy, "policy"));
                out.push((Node::ProcDir, FileType::Directory, b"proc".to_vec()));
                boxes(&mut out, ROOT);
            }
            Node::ProcDir => {
                out.push((Node::ProcSelf, FileType::Symlink, b"self".to_vec()));
                out.push(file(Node::ProcStatus, "status"));
                if let Ok(me) = self.caller(req) {
                    for pid in self.hub.peers_seen_by(req.pid(), me.process) {
                        out.push((
                            Node::Peer(pid),
                            FileType::Directory,
                            pid.to_string().into_bytes(),
                        ));
                    }
                }
            }
            Node::Peer(_) => {
                for k in FileKind::ALL {
                    if let Some(n) = Node::file_for(node, k, req.pid()) {
                        out.push(file(n, k.name()));
                    }
                }
            }
            Node::Mailbox(id) => {
                if !self.hub.exists(id) {
                    return Err(Errno::ENOENT.into());
                }
                for k in FileKind::ALL {
                    let n = Node::file_for(node, k, req.pid()).expect("a mailbox file");
                    out.push(file(n, k.name()));
                }
                boxes(&mut out, id);
            }
            _ => return Err(Errno::ENOTDIR.into()),
        }
        Ok(out)
    }
}

impl Filesystem for IpcFs {
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(parent) = Node::from_ino(parent.0) else {
            return reply.error(fuser::Errno::ENOENT);
        };
        match self
            .lookup_node(req, parent, name)
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
        match Node::from_ino(ino.0)
            .ok_or(Refusal::from(Errno::ENOENT))
            .and_then(|n| self.attr_of(req, n))
        {
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
        let result = match node.canonical() {
            _ if !changes => Ok(()),
            Node::Mailbox(id) => self.hub.set_attr(id, None, mode, uid, gid).map(drop),
            Node::MailboxFile(id, k) => self.hub.set_attr(id, Some(k), mode, uid, gid).map(drop),
            Node::RootPolicy => self.hub.set_attr(ROOT, None, mode, uid, gid).map(drop),
            _ => Err(Errno::EPERM.into()),
        };
        match result.and_then(|()| self.attr_of(req, node)) {
            Ok(c) => reply.attr(&c.attr_ttl, &c.attr),
            Err(e) => return reply.error(err(&"setattr", e)),
        }
        // A chmod of a mailbox set its files' modes anew; the kernel has
        // them cached (TREE_TTL). Attributes only (offset -1), after the
        // reply: nothing here waits for the chmod to end.
        if let (Node::Mailbox(id), Some(_), Some(n)) = (node, mode, self.notifier.get()) {
            for k in FileKind::ALL {
                let ino = Node::MailboxFile(id, k).ino();
                if let Err(e) = n.inval_inode(INodeNo(ino), -1, 0) {
                    debug!("setattr: cannot invalidate inode {ino}: {e}");
                }
            }
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
        let result = Self::container(Node::from_ino(parent.0))
            .and_then(|p| self.hub.mkdir(p, name, mode & !umask, req.uid(), req.gid()))
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
        let parent = Node::from_ino(parent.0);
        let result = match self.lookup_node(req, parent.unwrap_or(Node::RootPolicy), name) {
            Ok(Node::Mailbox(_)) => Self::container(parent).and_then(|p| self.hub.rmdir(p, name)),
            Ok(Node::ProcDir) => Err(Errno::EBUSY.into()),
            Ok(_) => Err(Errno::ENOTDIR.into()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&"rmdir", e)),
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
        let (from, to) = (Node::from_ino(parent.0), Node::from_ino(newparent.0));
        let result = if !flags.is_empty() {
            Err(Errno::EINVAL.into())
        } else {
            match self.lookup_node(req, from.unwrap_or(Node::RootPolicy), name) {
                Ok(Node::Mailbox(_)) => Self::container(from)
                    .and_then(|f| Ok((f, Self::container(to)?)))
                    .and_then(|(f, t)| self.hub.rename(f, name, t, newname)),
                Ok(_) => Err(Errno::EPERM.into()),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(&"rename", e)),
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
        let result = Node::from_ino(ino.0)
            .ok_or(Refusal::from(Errno::ENOENT))
            .and_then(Self::target)
            .and_then(|t| Ok((t, self.caller(req)?)))
            .and_then(|(t, caller)| Ok((t, self.hub.open(caller, t, access)?)));
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
        let entries = match Node::from_ino(ino.0)
            .ok_or(Refusal::from(Errno::ENOENT))
            .and_then(|n| self.entries(req, n))
        {
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
