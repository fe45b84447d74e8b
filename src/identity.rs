//! Who a process is: its thread-group id plus a number that tells apart the
//! processes that had that pid, so that a pid reused by a new process is a
//! different process. That number is the process's pidfs inode, unique for
//! the whole boot (kernels since 6.9); where there is no pidfs, its start
//! time, which is only as fine as a clock tick (10 ms).
//!
//! FUSE tells the daemon the *thread* id of each caller; [`Processes`] maps it
//! to the thread group and answers the questions the core asks about
//! processes (alive? may it signal that one? is that thread interrupted?).
//! [`OsProcesses`] answers them from `/proc`; unit tests use a fake.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use crate::interrupt::{self, Verdict};

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
    fn of_thread(&self, tid: u32) -> Option<Process>;
    /// The live process whose thread-group id is `pid`.
    fn by_pid(&self, pid: u32) -> Option<Process>;
    /// Whether `p` (that very process, not a successor with its pid) lives.
    fn is_alive(&self, p: Process) -> bool {
        self.by_pid(p.pid) == Some(p)
    }
    /// The `kill(2)` rule: may `from` send to `to`?
    fn may_signal(&self, from: Process, to: Process) -> bool;
    /// Whether thread `tid` has a signal pending that should end its blocked
    /// call, or no longer exists.
    fn interrupted(&self, tid: u32) -> bool;
    /// Whether thread `tid` is being killed (a fatal signal is pending), or
    /// no longer exists: whatever it is handed now is lost. Cheaper than
    /// [`Processes::interrupted`], for the path that hands out messages.
    fn dying(&self, tid: u32) -> bool {
        self.interrupted(tid)
    }
}

/// The real process table, read from `/proc`.
#[derive(Debug, Default)]
pub struct OsProcesses;

/// Field `n` (numbered from 1, as in proc(5)) of `/proc/<pid>/stat`, for
/// `n` >= 3.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name (field 2) may hold spaces and parentheses: the fields
    // after it start behind the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(n.checked_sub(3)?)
}

/// Start time and state letter from the text of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<(u64, char)> {
    let state = stat_field(stat, 3)?.chars().next()?;
    let start = stat_field(stat, 22)?.parse().ok()?;
    Some((start, state))
}

/// Whether the thread whose `/proc/<tid>/stat` this is has `SIGKILL`
/// pending: the kernel queues it on every thread of a process that a fatal
/// signal is ending (field 31 holds the thread's own pending signals).
pub fn stat_sigkill_pending(stat: &str) -> bool {
    stat_field(stat, 31)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|pending| pending & (1 << (libc::SIGKILL - 1)) != 0)
}

/// The value of a `Key:` line of `/proc/<pid>/status`.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Reads a small `/proc` file with as few system calls as it takes (open,
/// one read, close): these reads are on the daemon's busy paths.
fn read(path: String) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..]).ok()?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

fn uids(pid: u32) -> Option<[u32; 4]> {
    let status = read(format!("/proc/{pid}/status"))?;
    let mut it = status_field(&status, "Uid")?
        .split_ascii_whitespace()
        .map(|v| v.parse::<u32>());
    let mut out = [0; 4];
    for slot in &mut out {
        *slot = it.next()?.ok()?;
    }
    Some(out)
}

/// A pidfd for the process (thread-group leader) `pid`.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor just returned to us, owned from here on.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_ino(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: fstat fills the zeroed struct for a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino)
}

/// Whether the process of a pidfd has exited (a zombie, or reaped).
fn exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut p, 1, 0) != 0 }
}

/// Whether pidfds tell processes apart by inode number (pidfs): this
/// process's and init's differ. Older kernels give every pidfd one inode.
fn pidfs() -> bool {
    static PIDFS: OnceLock<bool> = OnceLock::new();
    *PIDFS.get_or_init(|| {
        let mine = pidfd(std::process::id()).and_then(|fd| pidfd_ino(&fd));
        let init = pidfd(1).and_then(|fd| pidfd_ino(&fd));
        matches!((mine, init), (Some(a), Some(b)) if a != b)
    })
}

impl OsProcesses {
    /// The live process `pid` (a thread-group leader: pidfd_open refuses
    /// other threads).
    fn process(pid: u32) -> Option<Process> {
        if pidfs() {
            let fd = pidfd(pid)?;
            if exited(&fd) {
                return None;
            }
            return Some(Process {
                pid,
                start: pidfd_ino(&fd)?,
            });
        }
        let (start, state) = parse_stat(&read(format!("/proc/{pid}/stat"))?)?;
        // A zombie has exited; only its parent has not reaped it yet.
        if state == 'Z' || state == 'X' {
            return None;
        }
        Some(Process { pid, start })
    }
}

impl Processes for OsProcesses {
    fn of_thread(&self, tid: u32) -> Option<Process> {
        let status = read(format!("/proc/{tid}/status"))?;
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
        let status = read(format!("/proc/{pid}/status"))?;
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
        read(format!("/proc/{}/stat", p.pid))
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

    fn interrupted(&self, tid: u32) -> bool {
        // A thread that is gone waits for no answer.
        let Some(status) = read(format!("/proc/{tid}/status")) else {
            return true;
        };
        let tgid: Option<u32> = status_field(&status, "Tgid").and_then(|v| v.parse().ok());
        match interrupt::verdict(&status, tgid == Some(tid)) {
            Verdict::Interrupted => true,
            Verdict::NotInterrupted => false,
            Verdict::AskLeader(shared) => {
                let leader = tgid.and_then(|t| read(format!("/proc/{t}/status")));
                !interrupt::leader_takes(leader.as_deref(), shared)
            }
        }
    }

    fn dying(&self, tid: u32) -> bool {
        match read(format!("/proc/{tid}/stat")) {
            Some(stat) => stat_sigkill_pending(&stat),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_stat(stat), Some((987654, 'S')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn sigkill_bit_in_stat() {
        let stat = |signal: u64| {
            let mut f: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
            f[0] = "S".into();
            f[31 - 3] = signal.to_string();
            format!("77 (x y) {}", f.join(" "))
        };
        assert!(!stat_sigkill_pending(&stat(0)));
        assert!(!stat_sigkill_pending(&stat(2)));
        assert!(stat_sigkill_pending(&stat(256)));
        assert!(stat_sigkill_pending(&stat(258)));
        assert_eq!(stat_field(&stat(0), 22), Some("22"));
    }

    #[test]
    fn a_dying_child_is_seen_dying_then_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let p = OsProcesses.by_pid(pid).unwrap();
        assert!(!OsProcesses.dying(pid));
        assert!(OsProcesses.is_alive(p));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(OsProcesses.dying(pid), "a reaped process is gone");
        assert!(!OsProcesses.is_alive(p));
    }

    #[test]
    fn this_kernel_has_pidfs() {
        // Kernel 6.9 and later: identities are pidfs inodes, not start times.
        assert!(pidfs(), "pidfds do not tell processes apart here");
    }

    #[test]
    fn a_reused_pid_is_another_process_even_within_one_clock_tick() {
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
            let old_p = OsProcesses.by_pid(pid).unwrap();
            old.kill().unwrap();
            old.wait().unwrap();
            fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
            let mut new = sleep();
            let reused = new.id() == pid;
            if reused {
                let new_p = OsProcesses.by_pid(pid).unwrap();
                assert_ne!(new_p, old_p, "the new process is another process");
                assert!(!OsProcesses.is_alive(old_p), "the old one is gone");
                assert!(OsProcesses.is_alive(new_p));
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
        let me = std::process::id();
        let p = OsProcesses.by_pid(me).expect("own process");
        assert_eq!(p.pid, me);
        assert!(OsProcesses.is_alive(p));
        assert!(!OsProcesses.is_alive(Process {
            pid: me,
            start: p.start + 1
        }));
        assert_eq!(OsProcesses.of_thread(me), Some(p));
        assert!(OsProcesses.may_signal(p, p));
        assert!(!OsProcesses.interrupted(me));
    }

    #[test]
    fn thread_maps_to_its_process() {
        let me = OsProcesses.by_pid(std::process::id()).unwrap();
        let tid = std::thread::spawn(|| {
            let tid = unsafe { libc::gettid() } as u32;
            assert_ne!(tid, std::process::id());
            // A thread id is not a process of its own...
            assert_eq!(OsProcesses.by_pid(tid), None);
            // ...but maps to the process it belongs to.
            OsProcesses.of_thread(tid)
        })
        .join()
        .unwrap();
        assert_eq!(tid, Some(me));
    }
}
