//! Pid namespaces: the numbers a caller in a child pid namespace (a
//! container) uses for processes, and which processes it can see at all
//! (ipcfs(7), DIRECT LINKS, "Pid namespaces").
//!
//! FUSE gives the daemon each caller's thread id in the daemon's pid
//! namespace. A caller in the same namespace uses the same numbers: one
//! `readlink(2)` of `/proc/<tid>/ns/pid` tells so, and nothing else is asked.
//! A caller in a namespace below uses other numbers: `NSpid:` in
//! `/proc/<pid>/status` lists a process's pid in each namespace from the
//! one of `/proc` down to its own, so entry `level` (the caller's depth) is
//! what the caller calls it, provided the namespace at that depth is the
//! caller's and not a sibling's: the process's own namespace, or one of its
//! ancestors reached with `NS_GET_PARENT`, is compared by inode with the
//! caller's.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use crate::os::procfs::{self, status_field};

/// `ioctl(2)` on a namespace file: the parent pid namespace (`_IO(0xb7, 2)`).
const NS_GET_PARENT: libc::c_ulong = 0xb702;

/// A pid namespace: the inode number of its nsfs file (one file system
/// holds them all, so the number alone tells namespaces apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsId(u64);

/// The namespace a `/proc/.../ns/pid` link names: `readlink(2)` gives
/// `pid:[<inode>]`, and costs less than a `stat(2)` through the link.
fn ns_at(path: &str) -> Option<NsId> {
    let target = fs::read_link(path).ok()?;
    let text = target.to_str()?;
    let ino = text
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    Some(NsId(ino))
}

/// The pid namespace of task `pid` (a thread id will do: all threads of a
/// process share one).
fn ns_of(pid: u32) -> Option<NsId> {
    ns_at(&format!("/proc/{pid}/ns/pid"))
}

/// The daemon's own pid namespace, asked once.
fn own_ns() -> Option<NsId> {
    static OWN: OnceLock<Option<NsId>> = OnceLock::new();
    *OWN.get_or_init(|| ns_at("/proc/self/ns/pid"))
}

/// The `NSpid:` line of a `status` text: pids from `/proc`'s namespace
/// down to the task's own.
fn nspid(status: &str) -> Option<Vec<u32>> {
    status_field(status, "NSpid")?
        .split_ascii_whitespace()
        .map(|v| v.parse().ok())
        .collect()
}

/// How a caller numbers processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Like the daemon: a pid is a pid.
    Daemon,
    /// From namespace `ns`, entry `level` of every `NSpid:` line.
    Nested { ns: NsId, level: usize },
}

/// How thread `tid` (in the daemon's numbering) numbers processes; None if
/// it is gone.
pub fn view(tid: u32) -> Option<View> {
    let ns = ns_of(tid)?;
    if Some(ns) == own_ns() {
        return Some(View::Daemon);
    }
    let status = procfs::read(format!("/proc/{tid}/status"))?;
    let level = nspid(&status)?.len().checked_sub(1)?;
    Some(View::Nested { ns, level })
}

/// Whether the pid namespace `up` levels above task `pid`'s own is `ns`.
fn ns_above(pid: u32, up: usize, ns: NsId) -> bool {
    let Ok(file) = File::open(format!("/proc/{pid}/ns/pid")) else {
        return false;
    };
    let mut fd = OwnedFd::from(file);
    for _ in 0..up {
        // SAFETY: ioctl on a descriptor we own; a non-negative result is a
        // new descriptor, which we then own.
        let parent = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_PARENT as _) };
        if parent < 0 {
            return false;
        }
        fd = unsafe { OwnedFd::from_raw_fd(parent) };
    }
    File::from(fd).metadata().is_ok_and(|m| NsId(m.ino()) == ns)
}

/// What a caller with view (`ns`, `level`) calls the process with `NSpid`
/// list `ids` (daemon pid `pid`), if it sees it at all.
fn number_from(pid: u32, ids: &[u32], ns: NsId, level: usize) -> Option<u32> {
    let n = *ids.get(level)?;
    ns_above(pid, ids.len() - 1 - level, ns).then_some(n)
}

/// The number a caller with view `view` uses for the process whose pid is
/// `pid` in the daemon's namespace; None if the process is not in the
/// caller's namespace or below it (or is gone).
pub fn number_in(view: View, pid: u32) -> Option<u32> {
    let View::Nested { ns, level } = view else {
        return Some(pid);
    };
    let ids = nspid(&procfs::read(format!("/proc/{pid}/status"))?)?;
    number_from(pid, &ids, ns, level)
}

/// The daemon's pid of the process a caller with view `view` calls `n`:
/// a walk over `/proc`, for callers in a child namespace only.
pub fn find(view: View, n: u32) -> Option<u32> {
    let View::Nested { ns, level } = view else {
        return Some(n);
    };
    // `/proc` lists processes (thread-group leaders), not threads.
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Some(ids) = procfs::read(format!("/proc/{pid}/status")).and_then(|s| nspid(&s)) else {
            continue;
        };
        if ids.get(level) == Some(&n) && number_from(pid, &ids, ns, level) == Some(n) {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspid_lists_every_level() {
        let status = "Name:\tsh\nTgid:\t40\nNSpid:\t40\t7\t1\nNSsid:\t1\n";
        assert_eq!(nspid(status), Some(vec![40, 7, 1]));
        assert_eq!(nspid("Name:\tsh\n"), None);
    }

    #[test]
    fn the_daemons_own_namespace_is_the_identity() {
        let me = std::process::id();
        assert_eq!(view(me), Some(View::Daemon));
        assert_eq!(number_in(View::Daemon, me), Some(me));
        assert_eq!(find(View::Daemon, me), Some(me));
    }

    #[test]
    fn a_child_namespace_numbers_its_own_processes() {
        // `unshare -p -f` makes a namespace whose pid 1 is the sleep.
        let mut child = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sleep", "30"])
            .spawn()
            .expect("unshare (util-linux)");
        let unshare = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // The forked sleep: the child of unshare.
        let sleep = loop {
            let kids = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                .unwrap_or_default();
            if let Some(p) = kids.split_ascii_whitespace().next() {
                break p.parse::<u32>().unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "no child of unshare");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let v = view(sleep).expect("the sleep's view");
        assert!(matches!(v, View::Nested { level: 1, .. }), "{v:?}");
        assert_eq!(number_in(v, sleep), Some(1));
        assert_eq!(find(v, 1), Some(sleep));
        // This process and unshare itself are outside the namespace.
        assert_eq!(number_in(v, std::process::id()), None);
        assert_eq!(number_in(v, unshare), None);
        assert_eq!(find(v, 2), None);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
