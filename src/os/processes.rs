//! The real process table ([`OsProcesses`]): the core's questions about
//! processes answered from pidfds, and from `/proc` where the kernel offers
//! no event. Every answer is a system call: the core asks only off its
//! lock, or where the call site shows it.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use log::warn;

use crate::hub::errno::{Errno, Refusal};
use crate::hub::process::{Lookup, Process, Processes};
use crate::os::pidfd::{self, ExitWatch};
use crate::os::pidns;
use crate::os::procfs::{self, parse_stat, status_field};
use crate::os::signals::{self, Verdict};

/// The real process table: pidfds, and `/proc` where there is no event.
pub struct OsProcesses {
    exits: ExitWatch,
}

impl Default for OsProcesses {
    fn default() -> Self {
        // Decided once, at start, while descriptors are to be had.
        pidfs();
        OsProcesses {
            exits: ExitWatch::new().expect("epoll_create1"),
        }
    }
}

/// What the caller is told when the system could not be asked about
/// `pid` (`what` it was asked): the error itself (`EMFILE`, `ENFILE`,
/// `ENOMEM`), logged at warn, since it is the daemon that lacks a resource.
fn cannot_ask(what: &str, pid: u32, e: &io::Error) -> Refusal {
    warn!("cannot {what} process {pid}: {e}");
    match e.raw_os_error() {
        Some(libc::ENFILE) => Errno::ENFILE.because("the system has no file descriptor left"),
        Some(libc::ENOMEM | libc::ENOSPC) => {
            Errno::ENOMEM.because("the kernel has no memory left for a pidfd")
        }
        _ => Errno::EMFILE.because("the daemon has no file descriptor left (RLIMIT_NOFILE)"),
    }
}

fn uids(pid: u32) -> Option<[u32; 4]> {
    let status = procfs::read(format!("/proc/{pid}/status"))?;
    let mut it = status_field(&status, "Uid")?
        .split_ascii_whitespace()
        .map(|v| v.parse::<u32>());
    let mut out = [0; 4];
    for slot in &mut out {
        *slot = it.next()?.ok()?;
    }
    Some(out)
}

/// Whether pidfds tell processes apart by inode number (pidfs): this
/// process's and init's differ. Older kernels give every pidfd one inode.
fn pidfs() -> bool {
    static PIDFS: OnceLock<bool> = OnceLock::new();
    *PIDFS.get_or_init(|| {
        let ino = |pid| {
            pidfd::open(pid)
                .ok()
                .flatten()
                .and_then(|fd| pidfd::ino(&fd))
        };
        matches!((ino(std::process::id()), ino(1)), (Some(a), Some(b)) if a != b)
    })
}

impl OsProcesses {
    /// The live process `pid` and a pidfd for it, with pidfs (pidfd_open
    /// refuses threads that do not lead their group).
    fn with_pidfd(pid: u32) -> io::Result<Option<(Process, std::os::fd::OwnedFd)>> {
        let Some(fd) = pidfd::open(pid)? else {
            return Ok(None);
        };
        if pidfd::exited(&fd) {
            return Ok(None);
        }
        Ok(pidfd::ino(&fd).map(|start| (Process { pid, start }, fd)))
    }

    /// The live process `pid` (a thread-group leader).
    fn process(pid: u32) -> io::Result<Option<Process>> {
        if pidfs() {
            return Ok(Self::with_pidfd(pid)?.map(|(p, _)| p));
        }
        let Some(stat) = procfs::read_checked(format!("/proc/{pid}/stat"))? else {
            return Ok(None);
        };
        // A zombie has exited; only its parent has not reaped it yet.
        Ok(parse_stat(&stat)
            .filter(|(_, state)| *state != 'Z' && *state != 'X')
            .map(|(start, _)| Process { pid, start }))
    }

    fn thread_of(tid: u32) -> io::Result<Option<Process>> {
        // Most callers are single-threaded: their thread id is their pid,
        // and pidfd_open accepts it. Other threads need their Tgid.
        if pidfs()
            && let Some((p, _)) = Self::with_pidfd(tid)?
        {
            return Ok(Some(p));
        }
        let Some(status) = procfs::read_checked(format!("/proc/{tid}/status"))? else {
            return Ok(None);
        };
        match status_field(&status, "Tgid").and_then(|v| v.parse().ok()) {
            Some(tgid) => Self::process(tgid),
            None => Ok(None),
        }
    }

    fn leader(pid: u32) -> io::Result<Option<Process>> {
        if pid == 0 {
            return Ok(None);
        }
        if pidfs() {
            return Self::process(pid);
        }
        let Some(status) = procfs::read_checked(format!("/proc/{pid}/status"))? else {
            return Ok(None);
        };
        let tgid: Option<u32> = status_field(&status, "Tgid").and_then(|v| v.parse().ok());
        if tgid != Some(pid) {
            return Ok(None); // a thread, not a process
        }
        Self::process(pid)
    }
}

impl Processes for OsProcesses {
    fn of_thread(&self, tid: u32) -> Lookup {
        Self::thread_of(tid).map_err(|e| cannot_ask("look up the caller", tid, &e))
    }

    fn by_pid(&self, pid: u32) -> Lookup {
        Self::leader(pid).map_err(|e| cannot_ask("look up", pid, &e))
    }

    fn resolve(&self, tid: u32, pid: u32) -> Lookup {
        // One readlink(2) for a caller in the daemon's pid namespace; a walk
        // over /proc for one in a child namespace (see os/pidns.rs).
        match pidns::view(tid).and_then(|view| pidns::find(view, pid)) {
            Some(host) => self.by_pid(host),
            None => Ok(None),
        }
    }

    fn number_for(&self, tid: u32, p: u32) -> Option<u32> {
        pidns::number_in(pidns::view(tid)?, p)
    }

    fn is_alive(&self, p: Process) -> bool {
        // Asked under the lock, only when a rule would refuse: when the
        // system cannot tell, the process is taken to live, so that the
        // slot of a live process is never freed for want of a descriptor.
        let found = if pidfs() {
            Self::process(p.pid).map(|q| q == Some(p))
        } else {
            // One read: a different task that took the pid (a new process,
            // or a thread of one) has a different start time.
            procfs::read_checked(format!("/proc/{}/stat", p.pid)).map(|s| {
                s.as_deref()
                    .and_then(parse_stat)
                    .is_some_and(|(start, state)| start == p.start && state != 'Z' && state != 'X')
            })
        };
        found.unwrap_or_else(|e| {
            warn!(
                "cannot tell whether process {} lives ({e}): taken to live",
                p.pid
            );
            true
        })
    }

    fn may_signal(&self, from: Process, to: Process) -> bool {
        let (Some(f), Some(t)) = (uids(from.pid), uids(to.pid)) else {
            return false;
        };
        let (f_real, f_eff) = (f[0], f[1]);
        let (t_real, t_saved) = (t[0], t[2]);
        f_eff == 0
            || [f_real, f_eff]
                .iter()
                .any(|u| *u == t_real || *u == t_saved)
    }

    fn signal_ends_call(&self, tid: u32) -> bool {
        // A traced thread's tracer waits for the call to end (see
        // crate::os::signals).
        procfs::read(format!("/proc/{tid}/status"))
            .is_none_or(|s| signals::traced(&s) || signals::ends_call(&s))
    }

    fn interrupted(&self, tid: u32) -> bool {
        // A thread that is gone waits for no answer.
        let Some(status) = procfs::read(format!("/proc/{tid}/status")) else {
            return true;
        };
        if signals::traced(&status) {
            return true;
        }
        let tgid: Option<u32> = status_field(&status, "Tgid").and_then(|v| v.parse().ok());
        match signals::verdict(&status, tgid == Some(tid)) {
            Verdict::Interrupted => true,
            Verdict::NotInterrupted => false,
            Verdict::AskLeader(shared) => {
                let leader = tgid.and_then(|t| procfs::read(format!("/proc/{t}/status")));
                !signals::leader_takes(leader.as_deref(), shared)
            }
        }
    }

    fn watch_exit(&self, p: Process) -> Result<(), Refusal> {
        if self.exits.is_watched(p) {
            return Ok(());
        }
        let what = "watch for its exit";
        // A process found gone is reported gone at once; one that cannot be
        // asked about is not watched, and the error says so.
        let fd = if pidfs() {
            Self::with_pidfd(p.pid)
                .map_err(|e| cannot_ask(what, p.pid, &e))?
                .and_then(|(q, fd)| (q == p).then_some(fd))
        } else {
            let fd = pidfd::open(p.pid).map_err(|e| cannot_ask(what, p.pid, &e))?;
            let alive = Self::process(p.pid).map_err(|e| cannot_ask(what, p.pid, &e))?;
            fd.filter(|_| alive == Some(p))
        };
        self.exits
            .watch(p, fd)
            .map_err(|e| cannot_ask(what, p.pid, &e))
    }

    fn exits(&self, timeout: Duration) -> Vec<Process> {
        self.exits.wait(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_child_is_reported_gone() {
        let os = OsProcesses::default();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let p = os.by_pid(pid).unwrap().unwrap();
        assert!(os.is_alive(p));
        os.watch_exit(p).unwrap();
        assert!(os.exits(Duration::from_millis(10)).is_empty());
        child.kill().unwrap();
        assert_eq!(os.exits(Duration::from_secs(10)), vec![p]);
        child.wait().unwrap();
        assert!(!os.is_alive(p));
        assert!(
            os.signal_ends_call(pid),
            "a reaped thread waits for nothing"
        );
        // Watching a process that is gone reports it at once.
        os.watch_exit(p).unwrap();
        assert_eq!(os.exits(Duration::from_secs(10)), vec![p]);
    }

    #[test]
    fn this_kernel_has_pidfs() {
        // Kernel 6.9 and later: identities are pidfs inodes, not start times.
        assert!(pidfs(), "pidfds do not tell processes apart here");
    }

    #[test]
    fn a_reused_pid_is_another_process_even_within_one_clock_tick() {
        let os = OsProcesses::default();
        // Make the kernel hand the pid of an exited child to the next one at
        // once (root only), which a start time in clock ticks cannot tell apart.
        let sleep = || {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap()
        };
        for _ in 0..50 {
            let mut old = sleep();
            let pid = old.id();
            let old_p = os.by_pid(pid).unwrap().unwrap();
            old.kill().unwrap();
            old.wait().unwrap();
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
            let mut new = sleep();
            let reused = new.id() == pid;
            if reused {
                let new_p = os.by_pid(pid).unwrap().unwrap();
                assert_ne!(new_p, old_p, "the new process is another process");
                assert!(!os.is_alive(old_p), "the old one is gone");
                assert!(os.is_alive(new_p));
            }
            new.kill().unwrap();
            new.wait().unwrap();
            if reused {
                return;
            }
        }
        panic!("the kernel never reused the pid in 50 tries");
    }

    #[test]
    fn this_process_is_found_and_alive() {
        let os = OsProcesses::default();
        let me = std::process::id();
        let p = os.by_pid(me).unwrap().expect("own process");
        assert_eq!(p.pid, me);
        assert!(os.is_alive(p));
        assert!(!os.is_alive(Process {
            pid: me,
            start: p.start + 1
        }));
        assert_eq!(os.of_thread(me), Ok(Some(p)));
        assert!(os.may_signal(p, p));
        assert!(!os.interrupted(me));
    }

    #[test]
    fn thread_maps_to_its_process() {
        let os = OsProcesses::default();
        let me = os.by_pid(std::process::id()).unwrap().unwrap();
        let tid = std::thread::spawn(|| {
            let os = OsProcesses::default();
            let tid = unsafe { libc::gettid() } as u32;
            assert_ne!(tid, std::process::id());
            // A thread id is not a process of its own...
            assert_eq!(os.by_pid(tid), Ok(None));
            // ...but maps to the process it belongs to.
            os.of_thread(tid)
        })
        .join()
        .unwrap();
        assert_eq!(tid, Ok(Some(me)));
    }
}
