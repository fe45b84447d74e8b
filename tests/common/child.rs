//! Helper child processes with a known pid: a `sleep` that holds files open
//! (opened in the child between fork and exec, so the opener is the child's
//! own pid), and a short-lived child that reports the errno of one open(2).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process that opened some files (in the child, between fork and
/// exec, so the opener is the child's own pid) and then sleeps holding them.
/// Killed and reaped on drop.
pub struct Held {
    child: Child,
}

impl Held {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill it and reap it, so that its pid no longer names a live process.
    pub fn kill_and_reap(mut self) -> u32 {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        pid
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Configure `cmd` so that, in the child, every `(path, flags)` is opened
/// (without O_CLOEXEC, so the descriptors survive exec). If an open fails,
/// `spawn` returns that open's error.
fn opens_in_child(cmd: &mut Command, files: &[(&Path, i32)]) {
    let files: Vec<(CString, i32)> = files.iter().map(|(p, f)| (cpath(p), *f)).collect();
    // SAFETY: the closure only calls open(2) (async-signal-safe) and builds an
    // io::Error from a raw errno (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            for (p, flags) in &files {
                if libc::open(p.as_ptr(), *flags) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A fresh process (optionally running as `uid`/`gid`) that opens every
/// `(path, flags)` and then sleeps, holding them. Fails with the first open's
/// error.
pub fn hold(files: &[(&Path, i32)], uid: Option<u32>) -> io::Result<Held> {
    let mut cmd = Command::new("sleep");
    cmd.arg("120")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    opens_in_child(&mut cmd, files);
    Ok(Held {
        child: cmd.spawn()?,
    })
}

/// A plain child that sleeps (a live process with a pid to talk to, e.g. over
/// a direct link); killed on drop.
pub fn sleeper() -> Held {
    hold(&[], None).expect("spawn sleep")
}

/// In a fresh, short-lived process (optionally as `uid`), open `path` with
/// `flags` and, if `read` is set, do one read(2) on it. Returns the error of
/// the first failing call, or Ok(()) if everything succeeded.
pub fn in_child(path: &Path, flags: i32, read: bool, uid: Option<u32>) -> io::Result<()> {
    let p = cpath(path);
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    // SAFETY: open(2), read(2), close(2) only, on a stack buffer.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(p.as_ptr(), flags | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            if read {
                let mut buf = [0u8; 256];
                if libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            libc::close(fd);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let st = child.wait()?;
    assert!(st.success(), "helper child failed: {st:?}");
    Ok(())
}

/// Lets the command's process take every signal at its default action,
/// none blocked: SIGINT and SIGTERM then kill it as at a terminal.
pub fn default_signals(cmd: &mut Command) {
    // SAFETY: signal(2) and sigprocmask(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}
