//! Inode numbers: every node of the tree is one number, computed, not stored.
//!
//! ```text
//! 1 root   2 root policy   3 proc/   4 proc/self   5 proc/status
//! (mailbox id << 3) | k                 k: 0 dir, 1 send, 2 recv, 3 policy, 4 status
//! PEER | (pid << 3) | k                 proc/<pid>/ and its files
//! ```

use crate::hub::{FileKind, MailboxId};

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
}

const PEER: u64 = 1 << 62;

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
