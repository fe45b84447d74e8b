//! The real process table ([`OsProcesses`]): the core's questions about
//! processes answered from pidfds, and from `/proc` where the kernel offers
//! no event. Every answer is a system call: the core asks only off its
//! lock, or where the call site shows it.

use std::sync::OnceLock;
use std::time::Duration;

use crate::hub::process::{Process, Processes};
use crate::os::pidfd::{self, ExitWatch};
use crate::os::procfs::{self, parse_stat, status_field};
use crate::os::signals::{self, Verdict};

/// The real process table: pidfds, and `/proc` where there is no event.
pub struct OsProcesses {
    exits: ExitWatch,
}

impl Default for OsProcesses {
    fn default() -> Self {
        OsProcesses {
            exits: ExitWatch::new().expect("epoll_create1"),
        }
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
        let mine = pidfd::open(std::process::id()).and_then(|fd| pidfd::ino(&fd));
        let init = pidfd::open(1).and_then(|fd| pidfd::ino(&fd));
        matches!((mine, init), (Some(a), Some(b)) if a != b)
    })
}

impl OsProcesses {
    /// The live process `pid` and a pidfd for it, with pidfs (pidfd_open
    /// refuses threads that do not lead their group).
    fn with_pidfd(pid: u32) -> Option<(Process, std::os::fd::OwnedFd)> {
        let fd = pidfd::open(pid)?;
        if pidfd::exited(&fd) {
            return None;
        }
        let start = pidfd::ino(&fd)?;
        Some((Process { pid, start }, fd))
    }

    /// The live process `pid` (a thread-group leader).
    fn process(pid: u32) -> Option<Process> {
        if pidfs() {
            return Self::with_pidfd(pid).map(|(p, _)| p);
        }
        let (start, state) = parse_stat(&procfs::read(format!("/proc/{pid}/stat"))?)?;
        // A zombie has exited; only its parent has not reaped it yet.
        if state == 'Z' || state == 'X' {
            return None;
        }
        Some(Process { pid, start })
    }
}

impl Processes for OsProcesses {
    fn of_thread(&self, tid: u32) -> Option<Process> {
        // Most callers are single-threaded: their thread id is their pid,
        // and pidfd_open accepts it. Other threads need their Tgid.
        if pidfs()
            && let Some((p, _)) = Self::with_pidfd(tid)
        {
            return Some(p);
        }
        let status = procfs::read(format!("/proc/{tid}/status"))?;
        let tgid = status_field(&status, "Tgid")?.parse().ok()?;
        Self::process(tgid)
    }

    fn by_pid(&self, pid: u32) -> Option<Process> {
        if pid == 0 {
            return None;
        }
        if pidfs() {
            return Self::process(pid);
        }
        let status = procfs::read(format!("/proc/{pid}/status"))?;
        let tgid: u32 = status_field(&status, "Tgid")?.parse().ok()?;
        if tgid != pid {
            return None; // a thread, not a process
        }
        Self::process(pid)
    }

    fn is_alive(&self, p: Process) -> bool {
        if pidfs() {
            return Self::process(p.pid) == Some(p);
        }
        // One read: a different task that took the pid (a new process, or a
        // thread of one) has a different start time.
        procfs::read(format!("/proc/{}/stat", p.pid))
            .and_then(|s| parse_stat(&s))
            .is_some_and(|(start, state)| start == p.start && state != 'Z' && state != 'X')
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

    fn watch_exit(&self, p: Process) {
        if self.exits.is_watched(p) {
            return;
        }
        let fd = if pidfs() {
            Self::with_pidfd(p.pid).and_then(|(q, fd)| (q == p).then_some(fd))
        } else {
            pidfd::open(p.pid).filter(|_| self.is_alive(p))
        };
        self.exits.watch(p, fd);
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
        let p = os.by_pid(pid).unwrap();
        assert!(os.is_alive(p));
        os.watch_exit(p);
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
        os.watch_exit(p);
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
            let old_p = os.by_pid(pid).unwrap();
            old.kill().unwrap();
            old.wait().unwrap();
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
            let mut new = sleep();
            let reused = new.id() == pid;
            if reused {
                let new_p = os.by_pid(pid).unwrap();
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
        let p = os.by_pid(me).expect("own process");
        assert_eq!(p.pid, me);
        assert!(os.is_alive(p));
        assert!(!os.is_alive(Process {
            pid: me,
            start: p.start + 1
        }));
        assert_eq!(os.of_thread(me), Some(p));
        assert!(os.may_signal(p, p));
        assert!(!os.interrupted(me));
    }

    #[test]
    fn thread_maps_to_its_process() {
        let os = OsProcesses::default();
        let me = os.by_pid(std::process::id()).unwrap();
        let tid = std::thread::spawn(|| {
            let os = OsProcesses::default();
            let tid = unsafe { libc::gettid() } as u32;
            assert_ne!(tid, std::process::id());
            // A thread id is not a process of its own...
            assert_eq!(os.by_pid(tid), None);
            // ...but maps to the process it belongs to.
            os.of_thread(tid)
        })
        .join()
        .unwrap();
        assert_eq!(tid, Some(me));
    }
}
