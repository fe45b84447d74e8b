//! Inode numbers: every node of the tree is one number, computed, not stored.
//!
//! ```text
//! 1 root   2 root policy   3 proc/   4 proc/self   5 proc/status
//! (mailbox id << 3) | k                 k: 0 dir, 2 recv, 3 policy, 4 status
//! PEER | (pid << 3) | k                 proc/<pid>/ and its files but send
//! SEND | (tid << 38) | (id << 1)        <mailbox>/send, as thread tid sees it
//! SEND | (tid << 38) | (pid << 1) | 1   proc/<pid>/send, as thread tid sees it
//! ```
//!
//! Each calling thread looks up a `send` file of its own: the kernel holds
//! an inode's lock through a write to it, and through the truncation of
//! `open(O_TRUNC)` (`echo x > box/send`), so a write parked in the daemon
//! would hold every other opener of a shared `send` inode in uninterruptible
//! sleep. One inode per caller confines that to the caller itself.

use crate::hub::{FileKind, MAX_MAILBOX_ID, MailboxId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Root,
    RootPolicy,
    ProcDir,
    ProcSelf,
    ProcStatus,
    Mailbox(MailboxId),
    MailboxFile(MailboxId, FileKind),
    Peer(u32),
    PeerFile(u32, FileKind),
    /// `<mailbox>/send` as thread `tid` sees it.
    MailboxSend(MailboxId, u32),
    /// `proc/<pid>/send` as thread `tid` sees it.
    PeerSend(u32, u32),
}

const PEER: u64 = 1 << 62;
const SEND: u64 = 1 << 61;
const TID_SHIFT: u32 = 38;
const _: () = assert!(MAX_MAILBOX_ID < 1 << (TID_SHIFT - 1), "mailbox ids fit");
const MAX_TID: u32 = (1 << (61 - TID_SHIFT)) - 1;

fn kind_bits(k: FileKind) -> u64 {
    k as u64 + 1
}

fn kind_of(bits: u64) -> Option<FileKind> {
    FileKind::ALL.get((bits as usize).checked_sub(1)?).copied()
}

impl Node {
    pub fn ino(self) -> u64 {
        match self {
            Node::Root => 1,
            Node::RootPolicy => 2,
            Node::ProcDir => 3,
            Node::ProcSelf => 4,
            Node::ProcStatus => 5,
            Node::Mailbox(id) => id << 3,
            Node::MailboxFile(id, k) => (id << 3) | kind_bits(k),
            Node::Peer(pid) => PEER | (u64::from(pid) << 3),
            Node::PeerFile(pid, k) => PEER | (u64::from(pid) << 3) | kind_bits(k),
            Node::MailboxSend(id, tid) => {
                SEND | (u64::from(tid.min(MAX_TID)) << TID_SHIFT) | (id << 1)
            }
            Node::PeerSend(pid, tid) => {
                SEND | (u64::from(tid.min(MAX_TID)) << TID_SHIFT) | (u64::from(pid) << 1) | 1
            }
        }
    }

    /// The node every caller's view of a `send` file stands for.
    pub fn canonical(self) -> Node {
        match self {
            Node::MailboxSend(id, _) => Node::MailboxFile(id, FileKind::Send),
            Node::PeerSend(pid, _) => Node::PeerFile(pid, FileKind::Send),
            other => other,
        }
    }

    /// The `send` node of `self`'s directory (a mailbox or `proc/<pid>`)
    /// for thread `tid`.
    pub fn send_for(self, tid: u32) -> Option<Node> {
        match self {
            Node::Mailbox(id) => Some(Node::MailboxSend(id, tid)),
            Node::Peer(pid) => Some(Node::PeerSend(pid, tid)),
            _ => None,
        }
    }

    pub fn from_ino(ino: u64) -> Option<Node> {
        Some(match ino {
            1 => Node::Root,
            2 => Node::RootPolicy,
            3 => Node::ProcDir,
            4 => Node::ProcSelf,
            5 => Node::ProcStatus,
            0 | 6 | 7 => return None,
            _ if ino & SEND != 0 => {
                let tid = ((ino & !SEND) >> TID_SHIFT) as u32;
                let low = ino & ((1 << TID_SHIFT) - 1);
                match low & 1 {
                    0 => Node::MailboxSend(low >> 1, tid),
                    _ => Node::PeerSend(u32::try_from(low >> 1).ok()?, tid),
                }
            }
            _ if ino & PEER != 0 => {
                let pid = u32::try_from((ino & !PEER) >> 3).ok()?;
                match ino & 7 {
                    0 => Node::Peer(pid),
                    k => Node::PeerFile(pid, kind_of(k)?),
                }
            }
            _ => match ino & 7 {
                0 => Node::Mailbox(ino >> 3),
                k => Node::MailboxFile(ino >> 3, kind_of(k)?),
            },
        })
    }

    pub fn is_dir(self) -> bool {
        matches!(
            self,
            Node::Root | Node::ProcDir | Node::Mailbox(_) | Node::Peer(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let nodes = [
            Node::Root,
            Node::RootPolicy,
            Node::ProcDir,
            Node::ProcSelf,
            Node::ProcStatus,
            Node::Mailbox(1),
            Node::Mailbox(123456),
            Node::MailboxFile(1, FileKind::Send),
            Node::MailboxFile(9, FileKind::Status),
            Node::Peer(1),
            Node::Peer(4_194_304),
            Node::PeerFile(77, FileKind::Recv),
            Node::MailboxSend(1, 1),
            Node::MailboxSend(MAX_MAILBOX_ID, 4_194_303),
            Node::PeerSend(4_194_303, 4_194_303),
            Node::PeerSend(1, 2),
        ];
        for n in nodes {
            assert_eq!(Node::from_ino(n.ino()), Some(n), "{n:?}");
        }
        let mut inos: Vec<u64> = nodes.iter().map(|n| n.ino()).collect();
        inos.sort();
        inos.dedup();
        assert_eq!(inos.len(), nodes.len());
        assert_eq!(Node::from_ino(0), None);
        assert_eq!(Node::from_ino((5 << 3) | 6), None);
    }
}
