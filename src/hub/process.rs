//! Who a process is: its thread-group id plus a number that tells apart the
//! processes that had that pid, so that a pid reused by a new process is a
//! different process. That number is the process's pidfs inode, unique for
//! the whole boot (kernels since 6.9); where there is no pidfs, its start
//! time, which is only as fine as a clock tick (10 ms).
//!
//! FUSE tells the daemon the *thread* id of each caller; [`Processes`] maps it
//! to the thread group and answers the questions the core asks about
//! processes (alive? may it signal that one? which signal did that thread
//! get?) and reports their exits. `crate::os::processes::OsProcesses` answers from pidfds and
//! `/proc`; unit tests use a fake. Every answer is a system call: the core
//! asks only off its lock, or where the call site shows it.

use std::time::Duration;

use super::errno::Refusal;

/// What the system says of a pid: the live process (`Ok(Some)`), no such
/// live process (`Ok(None)`), or that it cannot tell, for want of a file
/// descriptor or kernel memory (`Err`: `EMFILE`, `ENFILE`, `ENOMEM`), which
/// must never be taken for "gone": the caller gets that error instead.
pub type Lookup = Result<Option<Process>, Refusal>;

/// A process: thread-group id, and `start`: its pidfs inode number, or
/// where there is no pidfs its start time (clock ticks since boot, field 22
/// of `/proc/<pid>/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Process {
    pub pid: u32,
    pub start: u64,
}

pub trait Processes: Send + Sync {
    /// The live process that thread `tid` belongs to.
    fn of_thread(&self, tid: u32) -> Lookup;
    /// The live process whose thread-group id is `pid`.
    fn by_pid(&self, pid: u32) -> Lookup;
    /// The live process that thread `tid` calls `pid`: callers in a child
    /// pid namespace number processes their own way, and see only those in
    /// their namespace and below (ipcfs(7), DIRECT LINKS, "Pid namespaces").
    fn resolve(&self, _tid: u32, pid: u32) -> Lookup {
        self.by_pid(pid)
    }
    /// The number thread `tid` uses for the process whose pid is `p` (as
    /// [`Processes::by_pid`] numbers them); None if `tid` cannot see it.
    fn number_for(&self, _tid: u32, p: u32) -> Option<u32> {
        Some(p)
    }
    /// Whether `p` (that very process, not a successor with its pid) lives.
    /// When the system cannot tell (no descriptor left), it is taken to
    /// live: a slot of a process that may live is never freed.
    fn is_alive(&self, p: Process) -> bool {
        self.by_pid(p.pid).map_or(true, |q| q == Some(p))
    }
    /// The `kill(2)` rule: may `from` send to `to`?
    fn may_signal(&self, from: Process, to: Process) -> bool;
    /// The kernel has interrupted thread `tid`'s blocked call: does the
    /// signal it got end the call (see `ends_call` in `crate::os::signals`)? True for
    /// a thread that is gone.
    fn signal_ends_call(&self, tid: u32) -> bool {
        self.interrupted(tid)
    }
    /// For a call kept waiting after an interrupt: has a signal that ends
    /// it arrived since, or is the thread gone?
    fn interrupted(&self, tid: u32) -> bool;
    /// Reports `p`'s exit through [`Processes::exits`] from now on (at
    /// once if it has exited already). Fails, watching nothing and
    /// reporting nothing, when the system has no descriptor for it.
    fn watch_exit(&self, _p: Process) -> Result<(), Refusal> {
        Ok(())
    }
    /// Waits up to `timeout` for watched processes to exit.
    fn exits(&self, timeout: Duration) -> Vec<Process> {
        std::thread::sleep(timeout);
        Vec::new()
    }
}
