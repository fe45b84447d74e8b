//! The FUSE adapter: [`adapter::IpcFs`] turns kernel requests into calls on
//! the hub and its answers into replies; [`nodes`] says what the kernel
//! sees at each inode (attributes, names, listings); [`inode`] numbers the
//! tree.

pub mod adapter;
pub mod inode;
pub mod nodes;
