//! What each node of the tree shows to `stat(2)`: owner, mode, size and
//! block size, and who the caller of a request is. The rules live here;
//! the FUSE adapter only adds the file type and how long the kernel may
//! cache the answer.

use super::errno::{Errno, Result};
use super::process::Process;
use super::{Attr, Caller, FileKind, Hub, MailboxId};

/// The block size of nodes that carry no messages.
const PAGE: u32 = 4096;

/// A node's attributes, as `stat(2)` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub attr: Attr,
    pub blksize: u32,
    pub size: u64,
}

impl Hub {
    /// The process behind thread `tid` (pidfd_open, or `/proc/<tid>/status`
    /// for a thread that does not lead its group): no lock held.
    /// `ESRCH` if it has gone; `EMFILE` (`ENFILE`) if the daemon cannot
    /// tell, having no descriptor left.
    pub fn caller(&self, tid: u32, uid: u32, gid: u32) -> Result<Caller> {
        let process = self.procs.of_thread(tid)?.ok_or(Errno::ESRCH)?;
        Ok(Caller { process, uid, gid })
    }

    /// What thread `tid` (of process `me`) calls its own process: the
    /// target of `proc/self`.
    pub fn own_number(&self, tid: u32, me: Process) -> Result<u32> {
        self.procs
            .number_for(tid, me.pid)
            .ok_or(Errno::ESRCH.because("the caller has exited"))
    }

    /// `proc/<pid>` exists for a live process the caller (thread `tid`) calls
    /// `pid` (ipcfs(7), DIRECT LINKS, "Pid namespaces"), and for one that has
    /// exited while messages it sent to the caller still wait. Asks the
    /// system (pidfd_open) before taking the lock; an error if the system
    /// cannot tell (`EMFILE`), never "no such process".
    pub fn peer_visible(&self, tid: u32, pid: u32) -> Result<bool> {
        if self.procs.resolve(tid, pid)?.is_some() {
            return Ok(true);
        }
        Ok(self
            .procs
            .of_thread(tid)?
            .is_some_and(|me| self.pending_from_exited(me, pid)))
    }

    /// A node owned by the mounting user.
    fn mine(&self, mode: u32, blksize: u32, size: u64) -> Meta {
        Meta {
            attr: Attr {
                mode,
                uid: self.config.uid,
                gid: self.config.gid,
            },
            blksize,
            size,
        }
    }

    /// The size a `send` file reports: the largest message. The kernel lets
    /// writes to one file run side by side (FOPEN_PARALLEL_DIRECT_WRITES)
    /// only when they end within the file's size.
    fn size_of(&self, k: FileKind) -> u64 {
        if k.sends() {
            self.config.hard_max_message as u64
        } else {
            0
        }
    }

    /// The mount's root: a sticky directory everyone may create in.
    pub fn root_meta(&self) -> Meta {
        self.mine(0o1777, PAGE, 0)
    }

    pub fn root_policy_meta(&self) -> Meta {
        Meta {
            attr: self.root_policy_attr(),
            blksize: PAGE,
            size: 0,
        }
    }

    /// `proc/`, and each `proc/<pid>/`.
    pub fn proc_dir_meta(&self) -> Meta {
        self.mine(0o555, PAGE, 0)
    }

    /// `proc/self`, a symlink to the caller's pid.
    pub fn proc_self_meta(&self, pid: u32) -> Meta {
        self.mine(0o777, PAGE, pid.to_string().len() as u64)
    }

    /// `proc/status`.
    pub fn proc_status_meta(&self) -> Meta {
        self.mine(0o444, PAGE, 0)
    }

    /// `proc/<pid>/` (`file` None) or one of its files, as thread `tid`
    /// sees it: `ENOENT` unless the peer is visible to it. Files written to
    /// are open to all (the kill(2) rule is checked at open), the others
    /// readable.
    pub fn peer_meta(&self, tid: u32, pid: u32, file: Option<FileKind>) -> Result<Meta> {
        if !self.peer_visible(tid, pid)? {
            return Err(Errno::ENOENT.because("no such process, nor messages from it"));
        }
        Ok(match file {
            None => self.proc_dir_meta(),
            Some(k) => {
                let mode = if k.sends() { 0o666 } else { 0o444 };
                let blk = self.config.default_policy.max_message_size as u32;
                self.mine(mode, blk, self.size_of(k))
            }
        })
    }

    /// A mailbox's directory (`file` None) or one of its files. `send` and
    /// `recv` report the maximum message size as their block size: stdio
    /// sizes its buffer from it, so a program's output goes out in one
    /// write(2), one message.
    pub fn mailbox_meta(&self, id: MailboxId, file: Option<FileKind>) -> Result<Meta> {
        let (attr, max) = self.attr(id, file).ok_or(Errno::ENOENT)?;
        Ok(match file {
            None => Meta {
                attr,
                blksize: PAGE,
                size: 0,
            },
            Some(k) => Meta {
                attr,
                blksize: if k.sends() || k.receives() {
                    max as u32
                } else {
                    PAGE
                },
                size: self.size_of(k),
            },
        })
    }
}
