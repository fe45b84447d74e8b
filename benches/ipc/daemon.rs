//! The ipcfs daemon under measure, mounted on a temporary directory and
//! unmounted on drop.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::report::REG;
use crate::sys::{detach, is_mounted, lock, spawn};

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) mnt: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

impl Daemon {
    pub(crate) fn start(bin: &Path, args: &[&str]) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("ipcfs-bench.")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mnt = dir.path().join("mnt");
        let log = dir.path().join("daemon.log");
        fs::create_dir(&mnt).map_err(|e| format!("mkdir {}: {e}", mnt.display()))?;
        let logf = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf);
        // Should this process die without cleaning up, the daemon unmounts itself.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = spawn(&mut cmd).map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        {
            let mut reg = lock(&REG);
            reg.daemon = Some(child.id() as i32);
            reg.mounts.push(mnt.clone());
            reg.dirs.push(dir.path().to_path_buf());
        }
        let mut d = Daemon {
            child,
            mnt,
            log,
            dir,
        };
        let end = Instant::now() + Duration::from_secs(15);
        while !d.mnt.join("policy").exists() {
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!(
                    "ipcfs exited ({st}) before mounting: {}",
                    d.log_text()
                ));
            }
            if Instant::now() > end {
                return Err(format!("ipcfs did not mount within 15 s: {}", d.log_text()));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.pid();
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                progress!("ipcfs did not exit within 10 s of SIGTERM; killing it");
                let _ = self.child.kill();
            } else if t0.elapsed() > Duration::from_secs(1) {
                progress!(
                    "ipcfs took {:.1} s to exit after SIGTERM",
                    t0.elapsed().as_secs_f64()
                );
            }
            let _ = self.child.wait();
        }
        if is_mounted(&self.mnt) {
            detach(&self.mnt);
        }
        let mut reg = lock(&REG);
        reg.daemon = None;
        reg.mounts.retain(|m| m != &self.mnt);
        reg.dirs.retain(|d| d != self.dir.path());
    }
}
