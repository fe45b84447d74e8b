//! What the kernel sees at each inode: a node's attributes and how long
//! the kernel may cache them, the node a name stands for in a directory,
//! what opening a node opens, and directory listings. The inode numbers
//! themselves are in [`super::inode`]; the requests that ask for these
//! are answered in [`super::adapter`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use fuser::{FileAttr, FileType, INodeNo, Request};

use crate::fuse::adapter::IpcFs;
use crate::fuse::inode::Node;
use crate::hub::attrs::Meta;
use crate::hub::errno::{Errno, Refusal};
use crate::hub::{FileKind, MailboxId, ROOT, Target};

/// Mailbox names and attributes only change through this mount (the
/// kernel sees its own mkdir, rmdir, rename and chmod), so it may cache
/// them; `proc/` answers differ per caller and per moment.
const TREE_TTL: Duration = Duration::from_secs(1);
const NO_TTL: Duration = Duration::ZERO;

/// A node's attributes, how long the kernel may cache its name (entry) and
/// how long its attributes.
pub(super) struct Cached {
    pub(super) attr: FileAttr,
    pub(super) entry_ttl: Duration,
    pub(super) attr_ttl: Duration,
}

/// One entry of a directory listing: the node, its type and its name.
pub(super) type Entry = (Node, FileType, Vec<u8>);

/// The node at inode `ino`; one no node has is unknown (`ENOENT`).
pub(super) fn node_at(ino: INodeNo) -> Result<Node, Refusal> {
    Node::from_ino(ino.0).ok_or(Errno::ENOENT.into())
}

/// The mailbox that holds mailboxes at `node`: the root or a mailbox.
pub(super) fn container(node: Node) -> Result<MailboxId, Refusal> {
    match node {
        Node::Root => Ok(ROOT),
        Node::Mailbox(id) => Ok(id),
        Node::ProcDir | Node::Peer(_) => Err(Errno::EPERM.into()),
        _ => Err(Errno::ENOTDIR.into()),
    }
}

/// What opening `node` opens: a file, never a directory.
pub(super) fn target(node: Node) -> Result<Target, Refusal> {
    Ok(match node.canonical() {
        Node::RootPolicy => Target::RootPolicy,
        Node::ProcStatus => Target::DaemonStatus,
        Node::MailboxFile(id, k) => Target::Mailbox(id, k),
        Node::PeerFile(pid, k) => Target::Link(pid, k),
        _ => return Err(Errno::EISDIR.into()),
    })
}

impl IpcFs {
    fn file_attr(&self, node: Node, kind: FileType, meta: Meta) -> FileAttr {
        file_attr(self.started, node, kind, meta)
    }

    /// The attributes of `node` and how long the kernel may cache them.
    pub(super) fn attr_of(&self, req: &Request, node: Node) -> Result<Cached, Refusal> {
        let hub = &self.hub;
        let file = FileType::RegularFile;
        let dir = FileType::Directory;
        // Mailboxes on a broker change on other hosts, unseen by this
        // kernel: it caches none of them (ipcfs(7), ACROSS HOSTS).
        let shared_ttl = if hub.is_shared() { NO_TTL } else { TREE_TTL };
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
            Node::Mailbox(id) => (dir, hub.mailbox_meta(id, None)?, shared_ttl),
            Node::MailboxFile(id, k) => (file, hub.mailbox_meta(id, Some(k))?, shared_ttl),
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

    /// The node called `name` in the directory `parent`.
    pub(super) fn lookup_node(
        &self,
        req: &Request,
        parent: Node,
        name: &OsStr,
    ) -> Result<Node, Refusal> {
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

    /// The listing of the directory `node`, `.` and `..` first.
    pub(super) fn entries(&self, req: &Request, node: Node) -> Result<Vec<Entry>, Refusal> {
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

/// What `stat(2)` shows of `node`; times are the mount's start.
fn file_attr(started: std::time::SystemTime, node: Node, kind: FileType, meta: Meta) -> FileAttr {
    FileAttr {
        ino: INodeNo(node.ino()),
        size: meta.size,
        blocks: 0,
        atime: started,
        mtime: started,
        ctime: started,
        crtime: started,
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

/// The attributes of a broker's mailbox or one of its files, for an
/// answer given from a broker thread (`mkdir`, `chmod`): nothing of it is
/// cached (see `attr_of`).
pub(super) fn broker_attr(
    hub: &crate::hub::Hub,
    started: std::time::SystemTime,
    node: Node,
) -> Result<FileAttr, Refusal> {
    let (kind, meta) = match node.canonical() {
        Node::Mailbox(id) => (FileType::Directory, hub.mailbox_meta(id, None)?),
        Node::MailboxFile(id, k) => (FileType::RegularFile, hub.mailbox_meta(id, Some(k))?),
        _ => return Err(Errno::EPERM.into()),
    };
    Ok(file_attr(started, node, kind, meta))
}
