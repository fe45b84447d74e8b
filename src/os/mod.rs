//! What the system says: process identity, exits and signals (from pidfds
//! and `/proc`), and whether the mount is still there. Every function here
//! makes system calls; the core asks through [`crate::hub::process::Processes`].

pub mod host;
pub mod mountinfo;
pub mod pidfd;
pub mod pidns;
pub mod processes;
pub mod procfs;
pub mod rlimit;
pub mod signals;
