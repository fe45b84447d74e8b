//! The tree of mailboxes: names, nesting, ownership and modes, and the
//! operations that change it (`mkdir`, `rmdir`, `rename`, `chmod`/`chown`).
//! Each mailbox owns its [`Channel`]; what flows through it is elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::MailboxId;
use std::sync::Arc;

use super::accounting::{Charge, MemoryBudget};
use super::channel::Channel;
use super::errno::{Errno, Refusal, Result};
use super::policy::Policy;
use super::store::MailboxMeta;

/// The parent of top-level mailboxes.
pub const ROOT: MailboxId = 0;
/// Names a mailbox may not have: its parent's files.
pub const MAILBOX_FILES: [&str; 6] = ["send", "recv", "policy", "status", "packets", "batch"];
/// Names taken at the top of the mount.
pub const ROOT_NAMES: [&str; 2] = ["proc", "policy"];
pub const NAME_MAX: usize = 255;
/// What a mailbox holds of `--max-memory` (about what it costs the daemon),
/// so that `mkdir` in a loop cannot grow the daemon without bound either:
/// past the bound, `mkdir` fails with `ENOSPC`.
pub const MAILBOX_COST: usize = 2048;
/// Mailbox ids are numbered from 1 and never reused; past this, `mkdir`
/// fails with `ENOSPC` (inode numbers hold 35 bits of them).
pub const MAX_MAILBOX_ID: MailboxId = (1 << 35) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Send,
    Recv,
    Policy,
    Status,
    /// One whole message per read or write.
    Packets,
    /// Framed messages, many per read or write.
    Batch,
}

impl FileKind {
    pub const ALL: [FileKind; 6] = [
        FileKind::Send,
        FileKind::Recv,
        FileKind::Policy,
        FileKind::Status,
        FileKind::Packets,
        FileKind::Batch,
    ];

    pub fn name(self) -> &'static str {
        MAILBOX_FILES[self as usize]
    }

    /// Files a write sends a message on.
    pub fn sends(self) -> bool {
        matches!(self, FileKind::Send | FileKind::Packets | FileKind::Batch)
    }

    /// Files a read receives a message from.
    pub fn receives(self) -> bool {
        matches!(self, FileKind::Recv | FileKind::Packets | FileKind::Batch)
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

pub struct Mailbox {
    pub name: OsString,
    pub parent: MailboxId,
    pub children: BTreeMap<OsString, MailboxId>,
    pub dir: Attr,
    pub files: [Attr; 6],
    pub chan: Channel,
    /// What the mailbox holds of the memory bound, charged to its creator.
    _charge: Charge,
}

/// The modes of a mailbox's files, from its directory's mode (at mkdir
/// and at each chmod of the directory). A
/// receive consumes, so only those who may send may receive: `send` gets
/// the directory's write bits (plus the matching read bits, for receipts),
/// `recv` the read bits of those same classes, `packets` and `batch` both;
/// `status` gets the directory's read bits, `policy` owner-write plus the
/// read bits. So 0755 is private, 0775 shared with the group, 01777 with
/// everyone.
pub fn file_modes(dir_mode: u32) -> [u32; 6] {
    let w = dir_mode & 0o222;
    let r = dir_mode & 0o444;
    let send = w | (w << 1);
    [send, w << 1, 0o200 | r, r, send, send]
}

pub struct Tree {
    mailboxes: HashMap<MailboxId, Mailbox>,
    top: BTreeMap<OsString, MailboxId>,
    last: MailboxId,
    /// The root `policy`: given to mailboxes created from now on.
    pub default_policy: Policy,
    pub root_policy_attr: Attr,
}

fn check_name(parent: MailboxId, name: &OsStr) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG.because("names are at most 255 bytes"));
    }
    let reserved: &[&str] = if parent == ROOT {
        &ROOT_NAMES
    } else {
        &MAILBOX_FILES
    };
    if reserved.iter().any(|r| r.as_bytes() == name.as_bytes()) {
        return Err(Errno::EEXIST.because("a reserved name"));
    }
    Ok(())
}

impl Tree {
    pub fn new(default_policy: Policy, root_policy_attr: Attr) -> Tree {
        Tree {
            mailboxes: HashMap::new(),
            top: BTreeMap::new(),
            last: ROOT,
            default_policy,
            root_policy_attr,
        }
    }

    pub fn get(&self, id: MailboxId) -> Option<&Mailbox> {
        self.mailboxes.get(&id)
    }

    pub fn get_mut(&mut self, id: MailboxId) -> Option<&mut Mailbox> {
        self.mailboxes.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty()
    }

    pub fn mailboxes_mut(&mut self) -> impl Iterator<Item = &mut Mailbox> {
        self.mailboxes.values_mut()
    }

    pub fn children(&self, parent: MailboxId) -> Option<&BTreeMap<OsString, MailboxId>> {
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

    pub fn lookup(&self, parent: MailboxId, name: &OsStr) -> Option<MailboxId> {
        self.children(parent)?.get(name).copied()
    }

    /// The mailbox's path below the mount, for the log.
    pub fn path(&self, mut id: MailboxId) -> String {
        let mut parts = Vec::new();
        while let Some(m) = self.mailboxes.get(&id) {
            parts.push(m.name.to_string_lossy().into_owned());
            id = m.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Creates a mailbox with the root policy; it holds [`MAILBOX_COST`] of
    /// the memory budget (`ENOSPC` past it).
    pub fn mkdir(
        &mut self,
        parent: MailboxId,
        name: &OsStr,
        dir: Attr,
        budget: &Arc<MemoryBudget>,
    ) -> Result<MailboxId> {
        check_name(parent, name)?;
        let children = self.children(parent).ok_or(Errno::ENOENT)?;
        if children.contains_key(name) {
            return Err(Errno::EEXIST.into());
        }
        if self.last >= MAX_MAILBOX_ID {
            return Err(Errno::ENOSPC.because("mailbox ids are used up"));
        }
        let charge = budget.charge(dir.uid, MAILBOX_COST).map_err(|r| Refusal {
            errno: Errno::ENOSPC,
            ..r
        })?;
        self.last += 1;
        let id = self.last;
        let dir = Attr {
            mode: dir.mode & 0o7777,
            ..dir
        };
        let files = file_modes(dir.mode).map(|mode| Attr { mode, ..dir });
        self.mailboxes.insert(
            id,
            Mailbox {
                name: name.to_owned(),
                parent,
                children: BTreeMap::new(),
                dir,
                files,
                chan: Channel::new(self.default_policy),
                _charge: charge,
            },
        );
        self.children_mut(parent)
            .expect("parent")
            .insert(name.to_owned(), id);
        Ok(id)
    }

    /// Replaces the whole tree with the mailboxes a store keeps (ipcfs(7),
    /// ACROSS HOSTS): the local mirror that lookups, listings and
    /// attributes are answered from. Their queues are the store's; what a
    /// mirrored mailbox holds of the daemon's bound is not charged.
    pub fn load(&mut self, metas: Vec<MailboxMeta>, budget: &Arc<MemoryBudget>) {
        self.mailboxes.clear();
        self.top.clear();
        for m in &metas {
            let mut chan = Channel::new(m.policy);
            chan.policy = m.policy;
            let charge = budget.charge(0, 0).expect("a charge of nothing");
            self.mailboxes.insert(
                m.id,
                Mailbox {
                    name: m.name.clone(),
                    parent: m.parent,
                    children: BTreeMap::new(),
                    dir: m.dir,
                    files: m.files,
                    chan,
                    _charge: charge,
                },
            );
            self.last = self.last.max(m.id);
        }
        // A mailbox whose parent is not (yet) in the listing is left out.
        for m in &metas {
            if m.parent == ROOT {
                self.top.insert(m.name.clone(), m.id);
            } else if let Some(p) = self.mailboxes.get_mut(&m.parent) {
                p.children.insert(m.name.clone(), m.id);
            }
        }
        let reachable: std::collections::HashSet<MailboxId> = self
            .mailboxes
            .keys()
            .copied()
            .filter(|id| {
                let mut up = *id;
                for _ in 0..=self.mailboxes.len() {
                    match self.mailboxes.get(&up) {
                        Some(m) if m.parent == ROOT => return true,
                        Some(m) => up = m.parent,
                        None => return false,
                    }
                }
                false
            })
            .collect();
        self.mailboxes.retain(|id, _| reachable.contains(id));
    }

    /// Takes out a mailbox that has no child mailboxes; returns it with
    /// its path (its memory share goes back when it is dropped).
    pub fn rmdir(&mut self, parent: MailboxId, name: &OsStr) -> Result<(Mailbox, String)> {
        let id = self.lookup(parent, name).ok_or(Errno::ENOENT)?;
        if !self.mailboxes[&id].children.is_empty() {
            return Err(Errno::ENOTEMPTY.because("it holds mailboxes"));
        }
        let path = self.path(id);
        self.children_mut(parent).expect("parent").remove(name);
        let mailbox = self.mailboxes.remove(&id).expect("mailbox");
        Ok((mailbox, path))
    }

    /// Moves a mailbox, queue and all.
    pub fn rename(
        &mut self,
        parent: MailboxId,
        name: &OsStr,
        new_parent: MailboxId,
        new_name: &OsStr,
    ) -> Result<()> {
        check_name(new_parent, new_name)?;
        let id = self.lookup(parent, name).ok_or(Errno::ENOENT)?;
        let target = self.children(new_parent).ok_or(Errno::ENOENT)?;
        match target.get(new_name) {
            Some(&existing) if existing == id => return Ok(()),
            Some(_) => return Err(Errno::EEXIST.into()),
            None => {}
        }
        // Not into itself or below it.
        let mut up = new_parent;
        while up != ROOT {
            if up == id {
                return Err(Errno::EINVAL.because("a mailbox cannot move below itself"));
            }
            up = self.mailboxes[&up].parent;
        }
        self.children_mut(parent).expect("parent").remove(name);
        self.children_mut(new_parent)
            .expect("new parent")
            .insert(new_name.to_owned(), id);
        let m = self.mailboxes.get_mut(&id).expect("mailbox");
        m.name = new_name.to_owned();
        m.parent = new_parent;
        Ok(())
    }

    /// `chmod`/`chown` of a mailbox (`file` None), one of its files, or
    /// (`id` ROOT) the root policy file. A chmod of a mailbox sets its
    /// files' modes anew, as mkdir does: GNU `mkdir -m 1777` creates with
    /// the umask applied and then chmods, and `chmod 700 box` must make
    /// the mailbox private (ipcfs(7), Permissions).
    pub fn set_attr(
        &mut self,
        id: MailboxId,
        file: Option<FileKind>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Attr> {
        if id == ROOT {
            change(&mut self.root_policy_attr, mode, uid, gid);
            return Ok(self.root_policy_attr);
        }
        let m = self.mailboxes.get_mut(&id).ok_or(Errno::ENOENT)?;
        Ok(change_attrs(&mut m.dir, &mut m.files, file, mode, uid, gid))
    }
}

/// What `chmod`/`chown` does to a mailbox (`file` None) or one of its
/// files: a chmod of the mailbox sets its files' modes anew, as mkdir does
/// (see [`Tree::set_attr`]). Returns the changed node's attributes.
pub fn change_attrs(
    dir: &mut Attr,
    files: &mut [Attr; 6],
    file: Option<FileKind>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Attr {
    if let (None, Some(mode)) = (file, mode) {
        for (f, mode) in files.iter_mut().zip(file_modes(mode)) {
            f.mode = mode;
        }
    }
    let attr = match file {
        None => dir,
        Some(k) => &mut files[k as usize],
    };
    change(attr, mode, uid, gid);
    *attr
}

fn change(attr: &mut Attr, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) {
    if let Some(mode) = mode {
        attr.mode = mode & 0o7777;
    }
    if let Some(uid) = uid {
        attr.uid = uid;
    }
    if let Some(gid) = gid {
        attr.gid = gid;
    }
}
