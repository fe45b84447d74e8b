//! Which signals end a blocked call, read from `/proc/<tid>/status`.
//!
//! The kernel tells the daemon that a blocked caller got a signal with
//! `FUSE_INTERRUPT`; ipcfs then reads the thread's status once, off the
//! hub's lock, to learn *which* signal it was ([`ends_call`]):
//!
//! - any signal pending for the thread or its process that the thread does
//!   not block ends the call with `EINTR`, including the `SIGKILL` the
//!   kernel queues on every thread of a process a fatal signal is ending;
//! - signals whose default action is to be ignored (`SIGCHLD`, `SIGCONT`,
//!   `SIGURG`, `SIGWINCH`) do not: they cannot kill, and their handlers are
//!   usually installed with `SA_RESTART`, which a pipe read would honour by
//!   restarting. The kernel refuses the restart code from a FUSE daemon, so
//!   ipcfs lets the call wait on and the handler run when it completes
//!   (bash's `SIGCHLD` handler, for one, must not break a blocked
//!   `echo > box/send` whenever a background job ends).
//!
//! A thread being traced (`strace -p`, `gdb -p`) ends its call with `EINTR`
//! whatever is pending ([`traced`]): the tracer's attach and detach
//! interrupt the call with no signal pending, and the tracer waits until
//! the thread returns to user space, which a call kept waiting would
//! delay until the next message (the kernel does not let a FUSE daemon
//! restart the call; coreutils, Python and bash retry reads after `EINTR`).
//!
//! After its one `FUSE_INTERRUPT` the kernel waits for the answer in a
//! killable sleep and sends no other, so a call kept waiting that way is
//! checked again by the watcher every 100 ms ([`verdict`]), to end it on a
//! later Ctrl-C or `SIGTERM`. There, a signal pending for the whole process
//! ends the call of a thread only if the kernel would pick that thread to
//! take it: the thread-group leader when it does not block the signal (the
//! kernel's first choice), else any thread that does not block it.

use crate::os::procfs::status_field;

const fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

const SIGKILL_BIT: u64 = bit(libc::SIGKILL);

/// Signals that never interrupt: their default action is to be ignored.
const NEVER: u64 =
    bit(libc::SIGCHLD) | bit(libc::SIGCONT) | bit(libc::SIGURG) | bit(libc::SIGWINCH);

fn mask(status: &str, key: &str) -> u64 {
    status_field(status, key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// Given the text of `/proc/<tid>/status` of a thread whose blocked call the
/// kernel has just interrupted: does a pending signal end the call? The
/// kernel chose this thread to take the signal, so signals pending for the
/// whole process count as the thread's own.
pub fn ends_call(status: &str) -> bool {
    let blocked = mask(status, "SigBlk");
    let own = mask(status, "SigPnd");
    let shared = mask(status, "ShdPnd");
    own & SIGKILL_BIT != 0 || (own | shared) & !blocked & !NEVER != 0
}

/// Given the text of `/proc/<tid>/status`: is the thread being traced
/// (`TracerPid:` not 0)?
pub fn traced(status: &str) -> bool {
    status_field(status, "TracerPid").is_some_and(|v| v.trim() != "0")
}

/// What a thread's signal state says about its blocked call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Interrupted,
    NotInterrupted,
    /// Signals are pending for the process, and the thread-group leader
    /// decides who takes them: ask [`leader_takes`].
    AskLeader(u64),
}

/// Given the text of `/proc/<tid>/status`, and whether `tid` is its
/// thread-group leader: should its blocked call end?
pub fn verdict(status: &str, is_leader: bool) -> Verdict {
    let blocked = mask(status, "SigBlk");
    let own = mask(status, "SigPnd");
    if own & SIGKILL_BIT != 0 || own & !blocked & !NEVER != 0 {
        return Verdict::Interrupted;
    }
    let shared = mask(status, "ShdPnd") & !blocked & !NEVER;
    match (shared, is_leader) {
        (0, _) => Verdict::NotInterrupted,
        (_, true) => Verdict::Interrupted,
        (s, false) => Verdict::AskLeader(s),
    }
}

/// Given the leader's `/proc/<tgid>/status` (None if it is gone or a
/// zombie): does the leader take the process-wide signals `shared`, so that
/// another thread's call goes on?
pub fn leader_takes(leader_status: Option<&str>, shared: u64) -> bool {
    leader_status.is_some_and(|s| {
        let state = status_field(s, "State").unwrap_or("");
        !state.starts_with('Z') && !state.starts_with('X') && shared & !mask(s, "SigBlk") != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pnd: &str, shd: &str, blk: &str) -> String {
        format!(
            "Name:\tcat\nState:\tS (sleeping)\nSigQ:\t0/1\nSigPnd:\t{pnd}\nShdPnd:\t{shd}\nSigBlk:\t{blk}\nSigIgn:\t0\n"
        )
    }

    #[test]
    fn a_tracer_pid_means_traced() {
        let s = status("0", "0", "0");
        assert!(!traced(&s), "no TracerPid line");
        assert!(!traced(&s.replace("SigQ", "TracerPid:\t0\nSigQ")));
        assert!(traced(&s.replace("SigQ", "TracerPid:\t4242\nSigQ")));
        let me = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(me.contains("\nTracerPid:"), "the kernel shows TracerPid");
    }

    #[test]
    fn nothing_pending() {
        assert_eq!(
            verdict(&status("0000000000000000", "0000000000000000", "0"), true),
            Verdict::NotInterrupted
        );
    }

    #[test]
    fn sigint_default_action_is_shared_pending_plus_sigkill() {
        let s = status("0000000000000100", "0000000000000002", "0");
        assert_eq!(verdict(&s, true), Verdict::Interrupted);
        assert_eq!(
            verdict(&s, false),
            Verdict::Interrupted,
            "fatal: every thread"
        );
    }

    #[test]
    fn handled_sigint_is_shared_pending_and_the_leader_takes_it() {
        let s = status("0", "0000000000000002", "0");
        assert_eq!(verdict(&s, true), Verdict::Interrupted);
        assert_eq!(verdict(&s, false), Verdict::AskLeader(2));
        assert!(
            leader_takes(Some(&s), 2),
            "a leader that does not block it takes it"
        );
        let blocking_leader = status("0", "0000000000000002", "0000000000000002");
        assert!(!leader_takes(Some(&blocking_leader), 2));
        assert!(!leader_takes(None, 2));
        let zombie = s.replace("S (sleeping)", "Z (zombie)");
        assert!(!leader_takes(Some(&zombie), 2));
    }

    #[test]
    fn blocked_signal_does_not_interrupt_but_sigkill_does() {
        assert_eq!(
            verdict(&status("0", "0000000000000002", "0000000000000002"), true),
            Verdict::NotInterrupted
        );
        assert_eq!(
            verdict(&status("0000000000000100", "0", "fffffffffffffeff"), false),
            Verdict::Interrupted
        );
    }

    #[test]
    fn on_interrupt_only_default_ignore_signals_keep_the_call() {
        let chld = format!("{:016x}", bit(libc::SIGCHLD));
        assert!(!ends_call(&status(&chld, "0", "0")), "bash's SIGCHLD");
        assert!(!ends_call(&status("0", &chld, "0")));
        assert!(!ends_call(&status("0", "0", "0")), "nothing visible");
        // SIGINT for the process, with a handler: the kernel picked this thread.
        assert!(ends_call(&status("0", "0000000000000002", "0")));
        // SIGQUIT (3), SIGABRT (6): fatal, dumping core.
        assert!(ends_call(&status("0000000000000004", "0", "0")));
        assert!(ends_call(&status("0", "0000000000000020", "0")));
        // Blocked: does not end it, but SIGKILL always does.
        assert!(!ends_call(&status(
            "0",
            "0000000000000002",
            "0000000000000002"
        )));
        assert!(ends_call(&status(
            "0000000000000100",
            "0",
            "fffffffffffffeff"
        )));
    }

    #[test]
    fn default_ignore_signals_never_interrupt() {
        // SIGCHLD (17) pending for the thread and the process, caught by bash.
        let chld = format!("{:016x}", bit(libc::SIGCHLD));
        assert_eq!(
            verdict(&status(&chld, &chld, "0"), true),
            Verdict::NotInterrupted
        );
        let winch = format!(
            "{:016x}",
            bit(libc::SIGWINCH) | bit(libc::SIGCONT) | bit(libc::SIGURG)
        );
        assert_eq!(
            verdict(&status(&winch, "0", "0"), true),
            Verdict::NotInterrupted
        );
        // ...but another signal pending beside them does.
        let both = format!("{:016x}", bit(libc::SIGCHLD) | bit(libc::SIGUSR1));
        assert_eq!(
            verdict(&status(&both, "0", "0"), false),
            Verdict::Interrupted
        );
    }

    #[test]
    fn real_signal_is_seen_in_proc() {
        // Block SIGUSR1 in a thread, raise it there, and read its status.
        use std::sync::mpsc;
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let t = std::thread::spawn(move || unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let tid = libc::gettid();
            libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1);
            tx.send(tid).unwrap();
            done_rx.recv().unwrap();
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
        });
        let tid = rx.recv().unwrap();
        let text = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap();
        // Pending but blocked: not an interruption.
        assert_ne!(mask(&text, "SigPnd") & bit(libc::SIGUSR1), 0);
        assert_eq!(verdict(&text, false), Verdict::NotInterrupted);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
