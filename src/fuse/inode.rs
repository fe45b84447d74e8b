//! Inode numbers: every node of the tree is one number, computed, not stored.
//!
//! ```text
//! 1 root   2 root policy   3 proc/   4 proc/self   5 proc/status
//! (mailbox id << 3) | k                   k: 0 dir, 2 recv, 3 policy, 4 status
//! PEER | (pid << 3) | k                   proc/<pid>/ and its recv, status
//! OWN | (tid << 38) | (id << 3) | w       <mailbox>/send, packets, batch
//! OWN | (tid << 38) | (pid << 3) | 4 | w  proc/<pid>/send, packets, batch
//!                                         (w: 0 send, 1 packets, 2 batch),
//!                                         as thread tid sees them
//! ```
//!
//! Each calling thread looks up files it writes messages to (`send`,
//! `packets`, `batch`) of its own: the kernel holds an inode's lock through
//! the truncation of `open(O_TRUNC)` (`echo x > box/send`), and through an
//! `O_APPEND` write, so a write parked in the daemon would hold every other
//! opener of a shared inode in uninterruptible sleep. One inode per caller
//! confines that to the caller itself.

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
    /// `<mailbox>/send` (or `packets`, `batch`) as thread `tid` sees it.
    MailboxOwn(MailboxId, FileKind, u32),
    /// `proc/<pid>/send` (or `packets`, `batch`) as thread `tid` sees it.
    PeerOwn(u32, FileKind, u32),
}

const PEER: u64 = 1 << 62;
const OWN: u64 = 1 << 61;
const TID_SHIFT: u32 = 38;
const _: () = assert!(MAX_MAILBOX_ID < 1 << (TID_SHIFT - 3), "mailbox ids fit");
const MAX_TID: u32 = (1 << (61 - TID_SHIFT)) - 1;
/// The files each caller has its own inode of, by their number `w`.
const OWN_KINDS: [FileKind; 3] = [FileKind::Send, FileKind::Packets, FileKind::Batch];

fn kind_bits(k: FileKind) -> u64 {
    k as u64 + 1
}

fn kind_of(bits: u64) -> Option<FileKind> {
    FileKind::ALL.get((bits as usize).checked_sub(1)?).copied()
}

fn own_bits(k: FileKind) -> u64 {
    OWN_KINDS.iter().position(|o| *o == k).unwrap_or(0) as u64
}

fn own(tid: u32, n: u64, k: FileKind) -> u64 {
    OWN | (u64::from(tid.min(MAX_TID)) << TID_SHIFT) | (n << 3) | own_bits(k)
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
            Node::MailboxOwn(id, k, tid) => own(tid, id, k),
            Node::PeerOwn(pid, k, tid) => own(tid, u64::from(pid), k) | 4,
        }
    }

    /// The node every caller's view of a file stands for.
    pub fn canonical(self) -> Node {
        match self {
            Node::MailboxOwn(id, k, _) => Node::MailboxFile(id, k),
            Node::PeerOwn(pid, k, _) => Node::PeerFile(pid, k),
            other => other,
        }
    }

    /// The file `k` of a mailbox or of `proc/<pid>` (`dir`), as thread `tid`
    /// looks it up: its own inode for files it writes messages to.
    pub fn file_for(dir: Node, k: FileKind, tid: u32) -> Option<Node> {
        let own = OWN_KINDS.contains(&k);
        match dir {
            Node::Mailbox(id) if own => Some(Node::MailboxOwn(id, k, tid)),
            Node::Mailbox(id) => Some(Node::MailboxFile(id, k)),
            Node::Peer(pid) if own => Some(Node::PeerOwn(pid, k, tid)),
            Node::Peer(pid) if k != FileKind::Policy => Some(Node::PeerFile(pid, k)),
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
            _ if ino & OWN != 0 => {
                let tid = ((ino & !OWN) >> TID_SHIFT) as u32;
                let low = ino & ((1 << TID_SHIFT) - 1);
                let k = *OWN_KINDS.get((low & 3) as usize)?;
                match low & 4 {
                    0 => Node::MailboxOwn(low >> 3, k, tid),
                    _ => Node::PeerOwn(u32::try_from(low >> 3).ok()?, k, tid),
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
            Node::MailboxFile(3, FileKind::Batch),
            Node::MailboxOwn(1, FileKind::Send, 1),
            Node::MailboxOwn(MAX_MAILBOX_ID, FileKind::Batch, 4_194_303),
            Node::PeerOwn(4_194_303, FileKind::Packets, 4_194_303),
            Node::PeerOwn(1, FileKind::Send, 2),
        ];
        for n in nodes {
            assert_eq!(Node::from_ino(n.ino()), Some(n), "{n:?}");
        }
        let mut inos: Vec<u64> = nodes.iter().map(|n| n.ino()).collect();
        inos.sort();
        inos.dedup();
        assert_eq!(inos.len(), nodes.len());
        assert_eq!(Node::from_ino(0), None);
        assert_eq!(Node::from_ino((5 << 3) | 7), None);
    }
}
