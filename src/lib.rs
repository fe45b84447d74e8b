//! ipcfs: message passing between processes, as files.
//!
//! The message-passing core knows nothing of FUSE:
//! - [`policy`]: receiver rules and buffering, and their text form;
//! - [`receiver_rule`]: **who receives a message** (pair, exclusive,
//!   arbitrary, broadcast) — decided there and only there;
//! - [`channel`]: a queue with its blocked readers and senders (a mailbox,
//!   or one direction of a direct link);
//! - [`hub`]: mailboxes, links, open descriptors and parked requests;
//! - [`identity`], [`pidfd`], [`procfs`], [`interrupt`]: processes, their
//!   exits and the signals that end their blocked calls;
//! - [`message`], [`memory`], [`receipts`], [`waiter`], [`status`].
//!
//! [`fs`] and [`inode`] adapt it to FUSE; [`options`] parses the command
//! line; [`mountinfo`] tells the daemon when it has been unmounted.

pub mod channel;
pub mod errno;
pub mod fs;
pub mod hub;
pub mod identity;
pub mod inode;
pub mod interrupt;
pub mod memory;
pub mod message;
pub mod mountinfo;
pub mod options;
pub mod pidfd;
pub mod policy;
pub mod procfs;
pub mod receipts;
pub mod receiver_rule;
pub mod status;
pub mod waiter;
