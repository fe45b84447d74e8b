//! The ipcfs daemon under measure. The tests' harness (tests/common,
//! [`Mount`]) starts it on a temporary directory and waits for the mount;
//! what is the benchmark's own: the daemon's options and binary, a
//! parent-death SIGTERM, its place in the watchdog's registry for an
//! emergency clean-up, and a graceful end with SIGTERM.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Launch, Mount};
use crate::report::REG;
use crate::sys::lock;

pub(crate) struct Daemon {
    m: Mount,
}

impl Daemon {
    /// `bin args MOUNTPOINT` on a fresh temporary directory.
    pub(crate) fn start(bin: &Path, args: &[&str]) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("ipcfs-bench.")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mnt = dir
            .path()
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.path().display()))?;
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.push(mnt.to_string_lossy().into_owned());
        let launch = Launch {
            bin: Some(bin.to_path_buf()),
            // Should this process die without cleaning up, the daemon unmounts itself.
            parent_death_signal: Some(libc::SIGTERM),
            ..Launch::default()
        };
        let m = Mount::launch(&launch, &argv, mnt.clone(), Some(dir));
        let mut reg = lock(&REG);
        reg.daemons.push(m.daemon_pid() as i32);
        reg.mounts.push(mnt.clone());
        reg.dirs.push(mnt);
        Ok(Daemon { m })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.m.daemon_pid() as i32
    }

    pub(crate) fn mnt(&self) -> &Path {
        self.m.path()
    }
}

impl Drop for Daemon {
    /// SIGTERM, up to 10 s for the daemon to unmount and exit; then the
    /// harness's own clean-up (SIGKILL if still running, lazy unmount).
    fn drop(&mut self) {
        if self.m.daemon_exited().is_none() {
            self.m.signal_daemon(libc::SIGTERM);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) && self.m.daemon_exited().is_none() {
                thread::sleep(Duration::from_millis(20));
            }
            if self.m.daemon_exited().is_none() {
                progress!("ipcfs did not exit within 10 s of SIGTERM; killing it");
            } else if t0.elapsed() > Duration::from_secs(1) {
                progress!(
                    "ipcfs took {:.1} s to exit after SIGTERM",
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        let pid = self.pid();
        let mut reg = lock(&REG);
        reg.daemons.retain(|&p| p != pid);
        reg.mounts.retain(|m| m != self.m.path());
        reg.dirs.retain(|d| d != self.m.path());
    }
}
