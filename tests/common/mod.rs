//! Test harness, shared by every test binary and the benchmark
//! (benches/ipc/): mounts the built `ipcfs` binary on a fresh temporary
//! directory and always cleans up (SIGKILL the daemon, `umount -l`, reap),
//! also on panic; makes mailboxes, runs shells, reads status files, sends
//! and receives, all with deadlines.
//!
//! Every blocking step has a deadline. Tests run in parallel threads, so nothing
//! here is global: each `Mount` owns its own daemon and mountpoint.
#![allow(dead_code)]

mod broker;
mod child;
mod mountinfo;
mod msg;
mod redis;
mod status;
// Not every test binary uses every helper (same reason as `dead_code` above).
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use child::*;
#[allow(unused_imports)]
pub use mountinfo::*;
#[allow(unused_imports)]
pub use msg::*;
#[allow(unused_imports)]
pub use redis::*;
#[allow(unused_imports)]
pub use status::*;

use ipcfs::hub::errno::Errno;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The uid/gid of `nobody`, used to check permissions as an unprivileged user.
pub const NOBODY: u32 = 65534;

/// Deadline for the daemon to mount (and for it to exit when told to).
const MOUNT_DEADLINE: Duration = Duration::from_secs(10);

/// How [`Mount::launch`] starts the daemon, beyond its arguments.
#[derive(Default)]
pub struct Launch {
    /// The ipcfs binary: the one cargo built beside this test binary if None.
    pub bin: Option<PathBuf>,
    /// The daemon's RLIMIT_NOFILE (soft and hard), set before it starts.
    pub nofile: Option<u64>,
    /// The signal the daemon gets when the thread that started it ends
    /// (PR_SET_PDEATHSIG), so that it unmounts itself should its starter
    /// die without cleaning up; with it the daemon also starts with no
    /// signal blocked. Only for a mount that its starting thread outlives
    /// (the benchmark's main thread): a test thread may end first.
    pub parent_death_signal: Option<i32>,
    /// Environment variables given to the daemon (e.g. `IPCFS_BROKER_URL`,
    /// `RUST_LOG`). `IPCFS_BROKER_URL` is removed from the daemon's
    /// environment unless given here, so that a test mount never goes to a
    /// broker by accident of the caller's environment.
    pub env: Vec<(String, String)>,
}

/// A mounted ipcfs daemon on a temporary mountpoint.
pub struct Mount {
    /// Keeps the temporary directory alive (removed after unmount), if we made it.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    child: Child,
    /// Set once the child has been reaped, so Drop never signals a reused pid.
    exited: Option<ExitStatus>,
    /// The daemon's own mount: another may come to sit at the same path.
    key: MountKey,
    /// The daemon's stderr goes here; printed if the test panics.
    log: tempfile::NamedTempFile,
}

impl Mount {
    /// Mount with default options (plus `--allow-other`, so that processes running
    /// as `nobody` can reach the mount).
    pub fn new() -> Mount {
        Mount::with_args(&[])
    }

    /// Mount with extra CLI args placed before the mountpoint, e.g.
    /// `&["--capacity", "2"]`. `--allow-other` is always given first.
    pub fn with_args(args: &[&str]) -> Mount {
        Mount::with_nofile_opt(None, args)
    }

    /// Like `with_args`, with the daemon's RLIMIT_NOFILE (soft and hard)
    /// set to `limit` before it starts.
    pub fn with_nofile(limit: u64, args: &[&str]) -> Mount {
        Mount::with_nofile_opt(Some(limit), args)
    }

    fn with_nofile_opt(nofile: Option<u64>, args: &[&str]) -> Mount {
        let launch = Launch {
            nofile,
            ..Launch::default()
        };
        Mount::with_launch(&launch, args)
    }

    /// Like `with_args`, started as `launch` says (its environment, limits).
    pub fn with_launch(launch: &Launch, args: &[&str]) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("ipcfs-test.")
            .tempdir()
            .expect("create temporary mountpoint");
        let path = dir.path().canonicalize().expect("canonicalize mountpoint");
        let mut argv: Vec<String> = vec!["--allow-other".into()];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.push(path.to_string_lossy().into_owned());
        Mount::launch(launch, &argv, path, Some(dir))
    }

    /// Start the daemon with exactly `argv` (no implicit options) and wait until
    /// a new FUSE mount shows up at `mountpoint` in /proc/self/mountinfo (one
    /// that was not there before: another may already be mounted there).
    /// `mountpoint` need not exist (the daemon creates missing mountpoints);
    /// the caller is responsible for removing it if `dir` is None.
    pub fn spawn_raw(
        argv: &[String],
        mountpoint: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Mount {
        Mount::launch(&Launch::default(), argv, mountpoint, dir)
    }

    /// Like [`Mount::spawn_raw`], started as `launch` says.
    pub fn launch(
        launch: &Launch,
        argv: &[String],
        mountpoint: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Mount {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: these tests need FUSE (load the fuse module / run the container with --device /dev/fuse)"
        );
        let log = tempfile::Builder::new()
            .prefix("ipcfs-test-log.")
            .tempfile()
            .expect("create daemon log file");
        let stderr = log.reopen().expect("reopen daemon log file");
        let before = fuse_mounts_at(&mountpoint);
        let bin = launch
            .bin
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ipcfs")));
        let mut cmd = Command::new(&bin);
        cmd.env_remove("IPCFS_BROKER_URL")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr.try_clone().expect("clone log fd")))
            .stderr(Stdio::from(stderr));
        if let Some(n) = launch.nofile {
            // SAFETY: the closure only calls setrlimit(2) (async-signal-safe).
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(sig) = launch.parent_death_signal {
            // SAFETY: prctl(2) and sigprocmask(2) only (async-signal-safe).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, sig) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The caller may block signals it takes on one thread
                    // of its own; the daemon must see its SIGTERM.
                    let mut none: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut none);
                    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the ipcfs daemon {}: {e}", bin.display()));
        let mut m = Mount {
            dir,
            path: mountpoint,
            child,
            exited: None,
            key: MountKey { id: 0, dev: 0 },
            log,
        };
        let start = Instant::now();
        loop {
            if let Some(key) = fuse_mounts_at(&m.path)
                .into_iter()
                .find(|k| !before.contains(k))
            {
                m.key = key;
                break;
            }
            if let Some(st) = m.child.try_wait().expect("try_wait on daemon") {
                m.exited = Some(st);
                panic!(
                    "ipcfs daemon exited ({st}) before mounting {}; args {argv:?}; its output:\n{}",
                    m.path.display(),
                    m.daemon_log()
                );
            }
            if start.elapsed() > MOUNT_DEADLINE {
                panic!(
                    "ipcfs did not mount {} within {MOUNT_DEADLINE:?}; args {argv:?}; its output:\n{}",
                    m.path.display(),
                    m.daemon_log()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        m
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn daemon_pid(&self) -> u32 {
        self.child.id()
    }

    /// What one watched process holds of --max-memory in a daemon started
    /// with `--max-memory max_memory` and `--threads threads`: that bound
    /// over the descriptors it can spare (its RLIMIT_NOFILE less 64 and one
    /// per thread), at least 1 KiB (ipcfs(7), Memory).
    pub fn watch_cost(&self, max_memory: u64, threads: u64) -> u64 {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("read the daemon's limits");
        let nofile: u64 = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .expect("the daemon's soft RLIMIT_NOFILE");
        max_memory.div_ceil(nofile - 64 - threads).max(1024)
    }

    /// [`Mount::watch_cost`] with the defaults (256 MiB, 2 threads).
    pub fn default_watch_cost(&self) -> u64 {
        self.watch_cost(256 << 20, 2)
    }

    /// How many descriptors the daemon has open now.
    pub fn daemon_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("list the daemon's descriptors")
            .count()
    }

    /// Everything the daemon wrote to stdout/stderr so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Send `sig` to the daemon (no-op if it has already been reaped).
    pub fn signal_daemon(&self, sig: i32) {
        if self.exited.is_none() {
            // SAFETY: plain kill(2) on our own (not yet reaped) child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// Wait for the daemon to exit; panics (naming `what`) on deadline.
    pub fn wait_daemon_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait on daemon") {
                self.exited = Some(st);
                return st;
            }
            if start.elapsed() > timeout {
                panic!(
                    "ipcfs daemon (pid {}) did not exit within {timeout:?}; its output:\n{}",
                    self.child.id(),
                    self.daemon_log()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the daemon has exited (reaps it if so).
    pub fn daemon_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait on daemon");
        }
        self.exited
    }

    /// Whether the daemon's own mount is still listed at its path. Its
    /// mount id and device number alone do not name it once it is gone:
    /// the kernel hands out the lowest free of each, so a test mounting
    /// in parallel may get both at once.
    pub fn is_mounted(&self) -> bool {
        mount_listed_at(self.key, &self.path)
    }

    /// Run `bash -c script` with env `M`=mountpoint and cwd = mountpoint.
    /// Panics (after SIGKILLing its process group) if it does not finish in time.
    pub fn sh(&self, script: &str, timeout: Duration) -> Output {
        self.spawn_sh(script).wait_timeout(timeout)
    }

    /// Like `sh`, but runs as uid/gid `nobody` (65534), with no supplementary groups,
    /// in the directory `/`.
    pub fn sh_as_nobody(&self, script: &str, timeout: Duration) -> Output {
        self.sh_as(NOBODY, NOBODY, script, timeout)
    }

    /// Like `sh`, but runs as `uid`/`gid`, with no supplementary groups
    /// (std drops root's when it sets the uid), in the directory `/`.
    pub fn sh_as(&self, uid: u32, gid: u32, script: &str, timeout: Duration) -> Output {
        let mut cmd = self.bash(script);
        // cwd "/" so that spawning works even when the user cannot enter the mount.
        cmd.uid(uid).gid(gid).current_dir("/");
        Bg::spawn(cmd, script).wait_timeout(timeout)
    }

    /// Make the mailbox `name` (a path relative to the mountpoint) and, if
    /// `policy` is not empty, write it to its policy file (one write).
    /// Panics naming the path on failure.
    pub fn mailbox(&self, name: &str, policy: &str) -> PathBuf {
        let b = self.p(name);
        std::fs::create_dir(&b).unwrap_or_else(|e| panic!("mkdir {}: {e}", b.display()));
        if !policy.is_empty() {
            set_policy(&b.join("policy"), policy);
        }
        b
    }

    /// Run `bash -c script` in the background (own process group, env `M`).
    pub fn spawn_sh(&self, script: &str) -> Bg {
        Bg::spawn(self.bash(script), script)
    }

    fn bash(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .env("M", &self.path)
            .env("LC_ALL", "C")
            .current_dir(&self.path);
        cmd
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        }
        // Detach the mount (harmless if the daemon already unmounted it), and
        // any FUSE mount still at the path: a test may stack mounts there (a
        // new daemon after a lazy unmount; one killed before it was refused),
        // and each detach takes only the topmost. All are this test's own:
        // the path is a fresh temporary directory.
        for _ in 0..8 {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if fuse_mounts_at(&self.path).is_empty() {
                break;
            }
        }
        if self.exited.is_none() {
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- ipcfs daemon output ({}) ----\n{}---- end of daemon output ----",
                self.path.display(),
                self.daemon_log()
            );
        }
        if self.dir.is_none() {
            let _ = std::fs::remove_dir(&self.path);
        }
        // `dir` (TempDir) removes the now-empty mountpoint when dropped.
    }
}

/// A background process (bash or other) in its own process group.
pub struct Bg {
    child: Child,
    what: String,
    out: mpsc::Receiver<Vec<u8>>,
    err: mpsc::Receiver<Vec<u8>>,
    done: Option<ExitStatus>,
}

fn pump(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

impl Bg {
    /// Spawn `cmd` with piped stdout/stderr, null stdin, in a new process group.
    pub fn spawn(mut cmd: Command, what: &str) -> Bg {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what:?}: {e}"));
        let out = pump(child.stdout.take().expect("stdout pipe"));
        let err = pump(child.stderr.take().expect("stderr pipe"));
        Bg {
            child,
            what: what.to_string(),
            out,
            err,
            done: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `sig` to the process itself (not its group); no-op once reaped.
    pub fn signal(&self, sig: i32) {
        if self.done.is_none() {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// SIGKILL the whole process group (no-op once reaped).
    pub fn kill(&self) {
        if self.done.is_none() {
            // SAFETY: kill(2) on the process group we created for our child.
            unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        }
    }

    /// Has the process exited? (Reaps it if so.)
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.done.is_none() {
            self.done = self.child.try_wait().expect("try_wait");
        }
        self.done
    }

    /// Wait for exit and collect its output. On deadline: SIGKILL the process
    /// group and panic with whatever output there was.
    pub fn wait_timeout(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                self.kill();
                let st = self.child.wait().ok();
                self.done = st;
                let out = self
                    .out
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default();
                let err = self
                    .err
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default();
                panic!(
                    "deadline of {timeout:?} passed for {:?} (killed; status {st:?})\nstdout:\n{}\nstderr:\n{}",
                    self.what,
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
            thread::sleep(Duration::from_millis(2));
        };
        // The process has exited; its pipes close unless it left children behind.
        let rest = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2));
        let stdout = match self.out.recv_timeout(rest) {
            Ok(v) => v,
            Err(_) => {
                self.kill_group_anyway();
                panic!(
                    "{:?} exited but something still holds its stdout open",
                    self.what
                );
            }
        };
        let stderr = match self.err.recv_timeout(Duration::from_secs(2)) {
            Ok(v) => v,
            Err(_) => {
                self.kill_group_anyway();
                panic!(
                    "{:?} exited but something still holds its stderr open",
                    self.what
                );
            }
        };
        Output {
            status,
            stdout,
            stderr,
        }
    }

    fn kill_group_anyway(&self) {
        // The leader is reaped, but its process group id may still name stray children.
        // SAFETY: kill(2) on the process group we created.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if self.done.is_none() {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Poll `cond` every few ms until it holds; panic naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Run `f` on its own thread and return its result, or panic naming `what` if it
/// takes longer than `timeout`. (The stuck thread is abandoned; dropping the Mount
/// kills the daemon, which ends any FUSE call it is blocked in.)
pub fn within<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {timeout:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// The errno of an io::Error, or panic.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {e:?}"))
}

/// The symbolic name of an errno (`ENOBUFS`, `none` for 0), for figures and
/// failure messages: the crate's names, else what the system calls it.
pub fn errname(e: i32) -> String {
    match (e, Errno(e).name()) {
        (0, _) => "none".into(),
        (_, "errno") => std::io::Error::from_raw_os_error(e).to_string(),
        (_, name) => name.into(),
    }
}

/// Assert that `r` failed with `want` (an errno), naming `what`.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: std::io::Result<T>, want: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {} but it succeeded ({v:?})",
            errname(want)
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(want),
            "{what}: expected {} but got {e}",
            errname(want)
        ),
    }
}

/// Open a file with extra open(2) flags (e.g. `libc::O_NONBLOCK`).
pub fn open_with(path: &Path, read: bool, write: bool, flags: i32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(flags)
        .open(path)
}

/// A field of /proc/<pid>/status given in kB (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {field}"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kb * 1024
}

/// The state letter of a process (`S`, `D`, `Z`…) from /proc/<pid>/stat,
/// `?` if it cannot be read.
pub fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?')
}

/// Describe how a process ended, for messages.
pub fn describe(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{st:?}"),
    }
}

/// Stdout and stderr of an Output as one printable string.
pub fn show(o: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        describe(&o.status),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The stdout of an Output as a (lossy) string.
pub fn out_str(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `cat FILE` in the background, with every signal at its default action,
/// in its own process group.
pub fn cat_bg(file: &Path) -> Bg {
    let mut cmd = Command::new("cat");
    cmd.arg(file);
    default_signals(&mut cmd);
    Bg::spawn(cmd, &format!("cat {}", file.display()))
}
