//! Deadlines: every blocking step runs under one, kept by a watchdog thread;
//! past it (or on Ctrl-C) the run prints what it has, kills its helpers,
//! unmounts lazily and exits.

use std::fs;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::is_fuse_mounted;
use crate::report::{ABORTING, IDLE_LIMIT, REG, Registry, STEP, report};
use crate::sys::{caught_signals, detach, lock};

/// A named step with a deadline; the watchdog ends the run past it.
pub(crate) struct Step;

pub(crate) fn step(name: impl Into<String>, limit: Duration) -> Step {
    halt_if_aborting();
    *lock(&STEP) = Some((name.into(), Instant::now() + limit));
    Step
}

impl Drop for Step {
    fn drop(&mut self) {
        let mut s = lock(&STEP);
        let after = s.as_ref().map_or(String::new(), |(n, _)| n.clone());
        *s = Some((
            format!("the work after {after}"),
            Instant::now() + *lock(&IDLE_LIMIT),
        ));
    }
}

pub(crate) fn halt_if_aborting() {
    while ABORTING.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_secs(1));
    }
}

pub(crate) fn start_watchdog(total: Duration) {
    let end = Instant::now() + total;
    *lock(&STEP) = Some(("the start".into(), Instant::now() + *lock(&IDLE_LIMIT)));
    thread::Builder::new()
        .name("bench-watchdog".into())
        .spawn(move || {
            loop {
                thread::sleep(Duration::from_millis(100));
                let now = Instant::now();
                let late = lock(&STEP)
                    .as_ref()
                    .filter(|(_, deadline)| now > *deadline)
                    .map(|(name, _)| name.clone());
                if let Some(name) = late {
                    abort(&format!("step \"{name}\" passed its deadline"), 3);
                }
                if now > end {
                    abort(&format!("the run passed its overall limit of {total:?}"), 3);
                }
            }
        })
        .expect("start the watchdog thread");
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
            .expect("catch signals");
    thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                abort(&format!("signal {sig}"), 130);
            }
        })
        .expect("start the signal thread");
    // Only that thread takes these signals: a thread blocked in a FUSE
    // request would take one and sit on it. Threads started from here on
    // inherit the mask; child processes are started through `spawn`.
    let set = caught_signals();
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Ends the run from any thread: prints what was measured, then cleans up.
pub(crate) fn abort(why: &str, code: i32) -> ! {
    ABORTING.store(true, Ordering::SeqCst);
    progress!("{why}: printing the partial results, cleaning up, exiting");
    report(true);
    emergency_cleanup();
    std::process::exit(code);
}

/// Kills every helper process and the daemon, unmounts lazily, restores sysctls.
pub(crate) fn emergency_cleanup() {
    let mut reg = lock(&REG);
    for &pg in &reg.pgroups {
        unsafe { libc::killpg(pg, libc::SIGKILL) };
    }
    for &pid in &reg.pids {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &reg.daemons {
        // Its /dev/fuse closes with it: blocked callers get ENOTCONN.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for m in &reg.mounts {
        detach(m);
    }
    restore_sysctls(&mut reg);
    for f in &reg.files {
        let _ = fs::remove_file(f);
    }
    for d in &reg.dirs {
        if !reg
            .mounts
            .iter()
            .any(|m| m.starts_with(d) && is_fuse_mounted(m))
        {
            // A thread unblocked by the daemon's death may still write here.
            for _ in 0..10 {
                if fs::remove_dir_all(d).is_ok() || !d.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    *reg = Registry::default();
}

pub(crate) fn restore_sysctls(reg: &mut Registry) {
    for (path, value) in reg.sysctl_restore.drain(..) {
        if fs::write(&path, &value).is_ok() {
            progress!("restored {} to {}", path.display(), value.trim());
        }
    }
}
