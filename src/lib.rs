//! ipcfs: message passing between processes, as files.
//!
//! Three rooms, one per folder:
//! - [`hub`]: the message-passing core, free of FUSE types and of system
//!   calls. Who receives a message is decided in [`hub::receiver_rule`];
//!   [`hub`] itself holds the one lock and applies what an operation leaves
//!   to do (replies, notifications) after releasing it.
//! - [`os`]: what the system says about processes (pidfds, `/proc`, signals)
//!   and about the mount; the core reaches it through
//!   [`hub::process::Processes`].
//! - [`fuse`]: the FUSE adapter, which only translates kernel requests into
//!   hub calls and the hub's answers into replies.
//!
//! [`options`] parses the command line; `main.rs` mounts and handles signals.

pub mod broker;
pub mod broker_threads;
pub mod fuse;
pub mod hub;
pub mod options;
pub mod os;
