//! Pidfds: a process's identity for the whole boot (its pidfs inode), and
//! the event of its exit, so that nobody polls `/proc` to learn either.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use crate::hub::process::Process;

/// A pidfd for the process (thread-group leader) `pid`; `Ok(None)` if there
/// is no such process (`ESRCH`) or `pid` is not one (`EINVAL` for 0,
/// `ENOENT` or `EINVAL` for a thread that does not lead its group). A lack
/// of descriptors or kernel memory (`EMFILE`, `ENFILE`, `ENOMEM`) says
/// nothing of the process, and is returned as an error.
pub fn open(pid: u32) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: a descriptor just returned to us, owned from here on.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
    }
    let e = io::Error::last_os_error();
    if crate::os::procfs::lacks_resource(&e) {
        return Err(e);
    }
    Ok(None)
}

/// The pidfs inode number of a pidfd: unique for the boot (kernel 6.9+).
pub fn ino(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: fstat fills the zeroed struct for a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino)
}

/// Whether the process of a pidfd has exited (a zombie, or reaped).
pub fn exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut p, 1, 0) != 0 }
}

#[derive(Default)]
struct Watched {
    by_token: HashMap<u64, (Process, OwnedFd)>,
    processes: HashSet<Process>,
    next: u64,
    /// Found gone when asked to watch them.
    gone: Vec<Process>,
}

/// Processes whose exit the daemon waits for: one pidfd each in an epoll
/// set, reported once by [`ExitWatch::wait`] when the process exits.
pub struct ExitWatch {
    epoll: OwnedFd,
    watched: Mutex<Watched>,
}

impl ExitWatch {
    pub fn new() -> io::Result<ExitWatch> {
        // SAFETY: creates a new descriptor, owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ExitWatch {
            // SAFETY: a descriptor just returned to us.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            watched: Mutex::new(Watched::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `p` is watched already (nothing to do then).
    pub fn is_watched(&self, p: Process) -> bool {
        self.lock().processes.contains(&p)
    }

    /// Reports `p`'s exit from now on, through `fd`, a pidfd of that very
    /// process (the caller checked its identity); `None`: it has exited
    /// already, and is reported at the next [`ExitWatch::wait`]. Fails
    /// (watching nothing, reporting nothing) if epoll cannot take it.
    pub fn watch(&self, p: Process, fd: Option<OwnedFd>) -> io::Result<()> {
        let mut w = self.lock();
        if !w.processes.insert(p) {
            return Ok(());
        }
        let Some(fd) = fd else {
            w.gone.push(p);
            return Ok(());
        };
        w.next += 1;
        let token = w.next;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll and pidfd descriptors, and an event to copy.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            w.processes.remove(&p);
            return Err(e);
        }
        w.by_token.insert(token, (p, fd));
        Ok(())
    }

    /// Waits up to `timeout` for watched processes to exit; returns those
    /// that did (each once), and forgets them.
    pub fn wait(&self, timeout: Duration) -> Vec<Process> {
        let mut out = std::mem::take(&mut self.lock().gone);
        let wait_ms = if out.is_empty() {
            timeout.as_millis().min(i32::MAX as u128) as i32
        } else {
            0
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                wait_ms,
            )
        };
        let mut w = self.lock();
        for ev in events.iter().take(n.max(0) as usize) {
            let token = ev.u64;
            // Dropping the pidfd takes it out of the epoll set.
            if let Some((p, _fd)) = w.by_token.remove(&token) {
                w.processes.remove(&p);
                out.push(p);
            }
        }
        for p in &out {
            w.processes.remove(p);
        }
        out
    }

    /// How many processes are watched.
    pub fn len(&self) -> usize {
        self.lock().processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_is_reported_once() {
        let w = ExitWatch::new().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let fd = open(pid).unwrap().unwrap();
        let p = Process {
            pid,
            start: ino(&fd).unwrap(),
        };
        w.watch(p, Some(fd)).unwrap();
        w.watch(p, open(pid).unwrap()).unwrap(); // twice: still one watch
        assert_eq!(w.len(), 1);
        assert!(w.wait(Duration::from_millis(10)).is_empty());
        child.kill().unwrap();
        let got = w.wait(Duration::from_secs(10));
        assert_eq!(got, vec![p]);
        child.wait().unwrap();
        assert!(w.wait(Duration::from_millis(10)).is_empty());
        assert!(w.is_empty());
        // Already gone when asked: reported at once.
        w.watch(p, None).unwrap();
        assert_eq!(w.wait(Duration::from_secs(10)), vec![p]);
    }

    #[test]
    fn no_such_process_is_not_a_lack_of_descriptors() {
        // A pid past pid_max names no process: ESRCH, Ok(None).
        assert!(open(i32::MAX as u32).unwrap().is_none());
        assert!(open(0).unwrap().is_none(), "pid 0 is no process");
        assert!(open(std::process::id()).unwrap().is_some());
        // With no descriptor to be had (RLIMIT_NOFILE 0, in a child so that
        // the tests' other threads keep theirs), a live process is not
        // reported missing: the error says why.
        // SAFETY: the child only calls setrlimit, pidfd_open and _exit
        // (async-signal-safe); nothing in it allocates.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", io::Error::last_os_error());
        if child == 0 {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let code = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &none) } != 0 {
                3
            } else {
                match open(1) {
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => 0,
                    Err(_) => 4,
                    Ok(Some(_)) => 5,
                    Ok(None) => 6,
                }
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "pidfd_open without descriptors: 0 = EMFILE, 4 = another error, 5 = a descriptor, 6 = taken as no process"
        );
    }
}
