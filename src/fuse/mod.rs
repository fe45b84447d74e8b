//! The FUSE adapter: [`adapter::IpcFs`] turns kernel requests into calls on
//! the hub and its answers into replies; [`inode`] numbers the tree.

pub mod adapter;
pub mod inode;
