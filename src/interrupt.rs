//! Whether a blocked caller has been signalled.
//!
//! fuser answers `FUSE_INTERRUPT` with `ENOSYS`, after which the kernel waits
//! for the daemon's answer even through `SIGKILL`. So the daemon looks for
//! itself: a thread whose `/proc/<tid>/status` shows a pending signal that it
//! does not block (`SigPnd`/`ShdPnd` & ~`SigBlk`), or a pending `SIGKILL`
//! (which the kernel queues for a fatal signal), is answered `EINTR`.

use crate::identity::status_field;

const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

fn mask(status: &str, key: &str) -> u64 {
    status_field(status, key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// Given the text of `/proc/<tid>/status`: is a signal pending that should
/// end this thread's blocked call?
pub fn signal_pending(status: &str) -> bool {
    let pending = mask(status, "SigPnd") | mask(status, "ShdPnd");
    pending & SIGKILL_BIT != 0 || pending & !mask(status, "SigBlk") != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pnd: &str, shd: &str, blk: &str) -> String {
        format!(
            "Name:\tcat\nSigQ:\t0/1\nSigPnd:\t{pnd}\nShdPnd:\t{shd}\nSigBlk:\t{blk}\nSigIgn:\t0\n"
        )
    }

    #[test]
    fn nothing_pending() {
        assert!(!signal_pending(&status(
            "0000000000000000",
            "0000000000000000",
            "0"
        )));
    }

    #[test]
    fn sigint_default_action_is_shared_pending_plus_sigkill() {
        assert!(signal_pending(&status(
            "0000000000000100",
            "0000000000000002",
            "0"
        )));
    }

    #[test]
    fn handled_sigint_is_shared_pending() {
        assert!(signal_pending(&status("0", "0000000000000002", "0")));
    }

    #[test]
    fn blocked_signal_does_not_interrupt_but_sigkill_does() {
        assert!(!signal_pending(&status(
            "0",
            "0000000000000002",
            "0000000000000002"
        )));
        assert!(signal_pending(&status(
            "0000000000000100",
            "0",
            "fffffffffffffeff"
        )));
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
        assert_ne!(mask(&text, "SigPnd") & (1 << (libc::SIGUSR1 - 1)), 0);
        assert!(!signal_pending(&text));
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
