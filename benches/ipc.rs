//! The ipcfs benchmark (issue 10): ipcfs next to native IPC and next to
//! "the floor", in one run, as one table.
//!
//! ```sh
//! bash scripts/bench.sh [--quick]            # as root, with /dev/fuse
//! cargo bench --bench ipc -- [--quick]        # the same, without the release build first
//! ```
//!
//! It mounts the real daemon (the `ipcfs` binary cargo builds next to this
//! benchmark, or `$IPCFS_BIN`) on a temporary directory, and mounts "the
//! floor": a tiny fuser filesystem served by this process, whose files pass
//! each write straight to a parked read (or queue it when no reader waits).
//! The floor costs exactly one FUSE write request and one FUSE read request
//! per message, so it is the least any FUSE message passing can cost here.
//!
//! Rows: ping-pong round trips (median and p99 of single round trips) and
//! one-way throughput for 64 B, 4 KiB, 64 KiB and 1 MiB messages through the
//! mailbox files `send`/`recv`, `packets` and `batch`, a direct link
//! `proc/<pid>/`, a pipe, a `SOCK_SEQPACKET` socketpair, POSIX message queues
//! and the floor; a shell loop `echo x > send; cat recv` against a tmpfs file,
//! a FIFO and the floor; 4 senders x 4 receivers on one mailbox; round trips
//! with 10,000 mailboxes and 1,000 parked readers present; the daemon's CPU
//! time per message and its memory. Each figure is a median over repeats
//! after a warm-up; figures are printed, never asserted.
//!
//! Every blocking step runs under a deadline kept by a watchdog thread: past
//! it (or on Ctrl-C), the run prints what it has, kills its helpers, unmounts
//! both filesystems lazily and exits.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::VecDeque;
use std::ffi::{CString, OsStr};
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    BackgroundSession, BsdFileFlags, Config as FuseConfig, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyWrite, Request, Session, SessionACL,
    TimeOrNow, WriteFlags,
};

/// The hidden subcommand that runs the other end of a direct link.
const PEER_CMD: &str = "__ipc-bench-link-peer";
/// The largest ipcfs message when its `policy` file does not say.
const DEFAULT_MAX_MSG: usize = 1_044_480;
/// Per-mount bound on queued bytes given to the daemon: room for a full
/// default-capacity (1024) queue of the largest messages.
const DAEMON_MAX_MEMORY: &str = "1100M";
/// Floor files: 0 and 1 carry ping-pong, 2 the 4x4 run, 3 the shell loop.
const FLOOR_FILES: u64 = 4;
/// Messages a floor file queues before it parks writers (ipcfs's default).
const FLOOR_CAPACITY: usize = 1024;
/// POSIX mq queue length (the kernel's default `msg_max`).
const MQ_MAXMSG: usize = 10;
/// Sequence number of the message that stops a 4x4 receiver.
const STOP: u64 = u64::MAX;

// ------------------------------------------------------------------ plan

struct Plan {
    quick: bool,
    sizes: Vec<usize>,
    repeats: usize,
    /// Length of one timed repeat.
    target: Duration,
    /// Warm-up volume in bytes (message counts are clamped to [lo, hi]).
    thr_warm: (usize, usize, usize),
    rtt_warm: (usize, usize, usize),
    rtt_n: (usize, usize),
    thr_n: (usize, usize),
    fan_target: Duration,
    fan_repeats: usize,
    shell_n: usize,
    shell_repeats: usize,
    many_boxes: usize,
    many_readers: usize,
    step_limit: Duration,
    total_limit: Duration,
}

impl Plan {
    fn new(quick: bool, max_msg: usize) -> Plan {
        if quick {
            Plan {
                quick,
                sizes: vec![64, max_msg],
                repeats: 3,
                target: Duration::from_millis(30),
                thr_warm: (2 << 20, 5, 500),
                rtt_warm: (256 << 10, 5, 200),
                rtt_n: (50, 100_000),
                thr_n: (10, 1_000_000),
                fan_target: Duration::from_millis(80),
                fan_repeats: 2,
                shell_n: 100,
                shell_repeats: 2,
                many_boxes: 1_000,
                many_readers: 100,
                step_limit: Duration::from_secs(45),
                total_limit: Duration::from_secs(170),
            }
        } else {
            Plan {
                quick,
                sizes: vec![64, 4 << 10, 64 << 10, max_msg],
                repeats: 7,
                target: Duration::from_millis(200),
                thr_warm: (8 << 20, 10, 2000),
                rtt_warm: (1 << 20, 10, 500),
                rtt_n: (200, 1_000_000),
                thr_n: (20, 5_000_000),
                fan_target: Duration::from_millis(400),
                fan_repeats: 3,
                shell_n: 500,
                shell_repeats: 3,
                many_boxes: 10_000,
                many_readers: 1_000,
                step_limit: Duration::from_secs(120),
                total_limit: Duration::from_secs(900),
            }
        }
    }
}

fn warm_count((bytes, lo, hi): (usize, usize, usize), size: usize) -> usize {
    (bytes / size.max(1)).clamp(lo, hi)
}

// ------------------------------------------------- results, report, watchdog

#[derive(Clone, Copy, PartialEq, Debug)]
enum Group {
    Size(usize),
    Fan,
    Shell,
    Many,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Role {
    Floor,
    Pipe,
    Other,
}

/// Microseconds per round trip (or per shell iteration).
#[derive(Clone, Copy, Debug)]
struct Lat {
    med: f64,
    p99: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
struct Thr {
    msgs: f64,
    mib: Option<f64>,
}

#[derive(Clone, Debug)]
struct Row {
    name: String,
    size: String,
    group: Group,
    role: Role,
    rtt: Option<Result<Lat, String>>,
    thr: Option<Result<Thr, String>>,
    note: String,
    /// CPU time of the ipcfs daemon (or of the floor's threads) per message.
    cpu_us: Option<f64>,
}

#[derive(Default)]
struct Registry {
    daemon: Option<i32>,
    mounts: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    pids: Vec<i32>,
    pgroups: Vec<i32>,
    sysctl_restore: Vec<(PathBuf, String)>,
}

static REG: Mutex<Registry> = Mutex::new(Registry {
    daemon: None,
    mounts: Vec::new(),
    dirs: Vec::new(),
    files: Vec::new(),
    pids: Vec::new(),
    pgroups: Vec::new(),
    sysctl_restore: Vec::new(),
});
static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());
static HEADER: Mutex<Vec<String>> = Mutex::new(Vec::new());
static EXTRA: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The current step and its deadline (between steps: the end of the last
/// one plus `IDLE_LIMIT`, so no blocking call is ever without a deadline).
static STEP: Mutex<Option<(String, Instant)>> = Mutex::new(None);
static IDLE_LIMIT: Mutex<Duration> = Mutex::new(Duration::from_secs(60));
static REPORTED: Mutex<bool> = Mutex::new(false);
/// Set when the run is being ended: the main thread then stops at its next
/// step or row instead of racing the clean-up.
static ABORTING: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("bench: {}", format!($($arg)*)) };
}

/// A named step with a deadline; the watchdog ends the run past it.
struct Step;

fn step(name: impl Into<String>, limit: Duration) -> Step {
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

fn halt_if_aborting() {
    while ABORTING.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_secs(1));
    }
}

fn start_watchdog(total: Duration) {
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
fn abort(why: &str, code: i32) -> ! {
    ABORTING.store(true, Ordering::SeqCst);
    progress!("{why}: printing the partial results, cleaning up, exiting");
    report(true);
    emergency_cleanup();
    std::process::exit(code);
}

/// Kills every helper process and the daemon, unmounts lazily, restores sysctls.
fn emergency_cleanup() {
    let mut reg = lock(&REG);
    for &pg in &reg.pgroups {
        unsafe { libc::killpg(pg, libc::SIGKILL) };
    }
    for &pid in &reg.pids {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let Some(pid) = reg.daemon {
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
        if !reg.mounts.iter().any(|m| m.starts_with(d) && is_mounted(m)) {
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

fn restore_sysctls(reg: &mut Registry) {
    for (path, value) in reg.sysctl_restore.drain(..) {
        if fs::write(&path, &value).is_ok() {
            progress!("restored {} to {}", path.display(), value.trim());
        }
    }
}

fn push_row(row: Row) {
    halt_if_aborting();
    let mut line = format!("{} {}", row.name, row.size);
    match &row.rtt {
        Some(Ok(l)) => {
            let _ = write!(line, ": RTT {} µs", fmt_num(l.med));
            if let Some(p) = l.p99 {
                let _ = write!(line, " (p99 {})", fmt_num(p));
            }
        }
        Some(Err(e)) => line.push_str(&format!(": RTT n/a ({e})")),
        None => {}
    }
    match &row.thr {
        Some(Ok(t)) => {
            let _ = write!(line, "; {} msgs/s", fmt_num(t.msgs));
            if let Some(m) = t.mib {
                let _ = write!(line, ", {} MiB/s", fmt_num(m));
            }
        }
        Some(Err(e)) => line.push_str(&format!("; throughput n/a ({e})")),
        None => {}
    }
    progress!("{line}");
    lock(&ROWS).push(row);
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        let s = format!("{:.0}", x);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}

fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        fmt_num(x)
    }
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1_000_000 => "1 MiB".into(),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn report(partial: bool) {
    {
        let mut done = lock(&REPORTED);
        if *done {
            return;
        }
        *done = true;
    }
    let rows = lock(&ROWS).clone();
    let mut out = String::new();
    for h in lock(&HEADER).iter() {
        out.push_str(h);
        out.push('\n');
    }
    if partial {
        out.push_str("\n(partial results: the run was cut short)\n");
    }
    out.push('\n');
    let reference = |group: Group, role: Role| {
        let g = if group == Group::Many {
            Group::Size(64)
        } else {
            group
        };
        rows.iter().find(|r| r.group == g && r.role == role)
    };
    let head = [
        "channel",
        "size",
        "RTT median µs",
        "RTT p99 µs",
        "RTT ×floor",
        "RTT ×pipe",
        "msgs/s",
        "MiB/s",
        "thr ×floor",
        "thr ×pipe",
        "notes",
    ];
    let mut table: Vec<Vec<String>> = Vec::new();
    for r in &rows {
        let mut cells = vec![r.name.clone(), r.size.clone()];
        let ratio_rtt = |role| {
            let base = reference(r.group, role).and_then(|b| match &b.rtt {
                Some(Ok(l)) => Some(l.med),
                _ => None,
            });
            match (&r.rtt, base) {
                (Some(Ok(l)), Some(b)) => fmt_ratio(l.med / b),
                _ => "—".into(),
            }
        };
        let ratio_thr = |role| {
            let base = reference(r.group, role).and_then(|b| match &b.thr {
                Some(Ok(t)) => Some(t.msgs),
                _ => None,
            });
            match (&r.thr, base) {
                (Some(Ok(t)), Some(b)) => fmt_ratio(t.msgs / b),
                _ => "—".into(),
            }
        };
        match &r.rtt {
            Some(Ok(l)) => {
                cells.push(fmt_num(l.med));
                cells.push(l.p99.map_or("—".into(), fmt_num));
            }
            Some(Err(_)) => cells.extend(["n/a".into(), "n/a".into()]),
            None => cells.extend(["—".into(), "—".into()]),
        }
        cells.push(ratio_rtt(Role::Floor));
        cells.push(ratio_rtt(Role::Pipe));
        match &r.thr {
            Some(Ok(t)) => {
                cells.push(fmt_num(t.msgs));
                cells.push(t.mib.map_or("—".into(), fmt_num));
            }
            Some(Err(_)) => cells.extend(["n/a".into(), "n/a".into()]),
            None => cells.extend(["—".into(), "—".into()]),
        }
        cells.push(ratio_thr(Role::Floor));
        cells.push(ratio_thr(Role::Pipe));
        cells.push(r.note.clone());
        table.push(cells);
    }
    let width = |i: usize| {
        table
            .iter()
            .map(|c| c[i].chars().count())
            .chain([head[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let left = |i: usize| i < 2 || i == head.len() - 1;
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if left(i) {
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{c} |", " ".repeat(pad));
            }
        }
        s
    };
    out.push_str(&line(&head.map(String::from)));
    out.push('\n');
    let mut sep = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        if left(i) {
            let _ = write!(sep, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(sep, " {}: |", "-".repeat(w - 1));
        }
    }
    out.push_str(&sep);
    out.push('\n');
    for cells in &table {
        out.push_str(&line(cells));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(
        "×floor, ×pipe: this row's figure divided by the floor's and the pipe's for the same \
         size (RTT: above 1 is slower; throughput: below 1 is slower). Shell rows compare with \
         the same loop through the floor and through a FIFO; 4x4 rows with the floor and a pipe \
         under 4x4; the many-mailbox rows with the 64 B round trips. Shell rows: \
         \"RTT\" is the time of one loop iteration, msgs/s iterations per second.\n",
    );
    // CPU per message, grouped by channel in order of appearance.
    let mut names: Vec<&str> = Vec::new();
    for r in &rows {
        if r.cpu_us.is_some() && !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    if !names.is_empty() {
        out.push_str(
            "\nCPU time per message (utime+stime of the ipcfs daemon from /proc/PID/stat over the \
             timed throughput repeats, divided by the messages; for the floor, its fuser \
             threads):\n",
        );
        for n in names {
            let parts: Vec<String> = rows
                .iter()
                .filter(|r| r.name == n)
                .filter_map(|r| r.cpu_us.map(|c| format!("{} {} µs", r.size, fmt_num(c))))
                .collect();
            let _ = writeln!(out, "  {n}: {}", parts.join(", "));
        }
    }
    let extra = lock(&EXTRA);
    if !extra.is_empty() {
        out.push('\n');
        for e in extra.iter() {
            out.push_str(e);
            out.push('\n');
        }
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

// ------------------------------------------------------------ small helpers

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn is_interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn sys_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if !is_interrupted(&e) {
            return Err(e);
        }
    }
}

fn sys_write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if !is_interrupted(&e) {
            return Err(e);
        }
    }
}

fn open_r(p: &Path) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .open(p)
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
}

fn open_w(p: &Path) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .write(true)
        .open(p)
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
}

/// The signals only the signal thread takes (see `start_watchdog`).
fn caught_signals() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Spawns `cmd` with those signals unblocked: a child inherits the
/// spawning thread's signal mask, and the daemon must see its SIGTERM.
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let set = caught_signals();
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old) };
    let child = cmd.spawn();
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    child
}

fn detach(path: &Path) {
    if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.as_bytes() == want)
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn clk_tck() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime, in clock ticks, from a `/proc/.../stat` file.
fn stat_ticks(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Whose CPU time a throughput run charges.
#[derive(Clone, Copy)]
enum Meter {
    Daemon(i32),
    Floor,
    Off,
}

impl Meter {
    fn ticks(self) -> Option<u64> {
        match self {
            Meter::Daemon(pid) => stat_ticks(Path::new(&format!("/proc/{pid}/stat"))),
            Meter::Floor => {
                // The floor's event loops: this process's threads named fuser-*.
                let mut sum = 0;
                for e in fs::read_dir("/proc/self/task").ok()?.flatten() {
                    let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                    if comm.starts_with("fuser") {
                        sum += stat_ticks(&e.path().join("stat")).unwrap_or(0);
                    }
                }
                Some(sum)
            }
            Meter::Off => None,
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

// --------------------------------------------------------- aligned buffers

/// A zeroed, page-aligned buffer: large messages then cross in one FUSE
/// request (the kernel counts pages, and an unaligned buffer touches one more).
struct ABuf {
    ptr: NonNull<u8>,
    len: usize,
}

unsafe impl Send for ABuf {}

impl ABuf {
    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len.max(1), 4096).expect("buffer layout")
    }

    fn new(len: usize) -> ABuf {
        let layout = Self::layout(len);
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        ABuf { ptr, len }
    }
}

impl Deref for ABuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for ABuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for ABuf {
    fn drop(&mut self) {
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
    }
}

// ------------------------------------------------------------- endpoints

/// How a descriptor carries messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// ipcfs `send`/`recv`: a write is a message; a read returns it, then 0.
    Msg,
    /// ipcfs `packets` and the floor: a write is a message, a read returns one.
    Packet,
    /// ipcfs `batch`: frames of 4-byte LE length + bytes.
    Batch,
    /// A pipe: bytes; the reader knows the size.
    Stream,
    /// `SOCK_SEQPACKET`.
    Seq,
    /// POSIX message queue.
    Mq,
}

fn frame_len(kind: Kind, size: usize) -> usize {
    if kind == Kind::Batch { size + 4 } else { size }
}

/// Messages per write: up to 64 frames in one write of at most `cap` bytes.
fn per_write(kind: Kind, size: usize, cap: usize) -> usize {
    if kind == Kind::Batch {
        (cap / (size + 4)).clamp(1, 64)
    } else {
        1
    }
}

struct Mq(libc::mqd_t);

impl Drop for Mq {
    fn drop(&mut self) {
        unsafe { libc::mq_close(self.0) };
    }
}

enum H {
    Fd(OwnedFd),
    Mq(Mq),
}

/// Writes one message (or one batch) whole.
fn write_wire(h: &H, kind: Kind, data: &[u8]) -> io::Result<()> {
    match h {
        H::Mq(q) => loop {
            let r = unsafe { libc::mq_send(q.0, data.as_ptr().cast(), data.len(), 0) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if !is_interrupted(&e) {
                return Err(e);
            }
        },
        H::Fd(fd) if kind == Kind::Stream => {
            let mut off = 0;
            while off < data.len() {
                off += sys_write(fd.as_raw_fd(), &data[off..])?;
            }
            Ok(())
        }
        H::Fd(fd) => {
            let w = sys_write(fd.as_raw_fd(), data)?;
            if w != data.len() {
                return Err(other(format!("short write: {w} of {} bytes", data.len())));
            }
            Ok(())
        }
    }
}

struct Tx {
    kind: Kind,
    h: H,
    /// Largest write (the ipcfs maximum message size): bounds a batch.
    cap: usize,
    scratch: ABuf,
}

impl Tx {
    fn new(kind: Kind, h: H, cap: usize) -> Tx {
        Tx {
            kind,
            h,
            cap,
            scratch: ABuf::new(0),
        }
    }

    fn write_wire(&self, data: &[u8]) -> io::Result<()> {
        write_wire(&self.h, self.kind, data)
    }

    /// Sends `count` messages of `size` bytes numbered from `first`, as many
    /// a write as the kind allows (batch: up to 64 frames).
    fn send_seqs(&mut self, first: u64, count: usize, size: usize) -> io::Result<()> {
        let per = per_write(self.kind, size, self.cap);
        let flen = frame_len(self.kind, size);
        if self.scratch.len() < per * flen {
            self.scratch = ABuf::new(per * flen);
        }
        let mut i = 0;
        while i < count {
            let m = per.min(count - i);
            for j in 0..m {
                let off = j * flen;
                let payload = if self.kind == Kind::Batch {
                    self.scratch[off..off + 4].copy_from_slice(&(size as u32).to_le_bytes());
                    off + 4
                } else {
                    off
                };
                let seq = first.wrapping_add((i + j) as u64);
                self.scratch[payload..payload + 8].copy_from_slice(&seq.to_le_bytes());
            }
            write_wire(&self.h, self.kind, &self.scratch[..m * flen])?;
            i += m;
        }
        Ok(())
    }
}

struct Rx {
    kind: Kind,
    h: H,
    buf: ABuf,
    read_len: usize,
    expect: usize,
}

impl Rx {
    fn new(kind: Kind, h: H, max_msg: usize) -> Rx {
        Rx {
            kind,
            h,
            buf: ABuf::new(max_msg + 8192),
            read_len: 4096,
            expect: 64,
        }
    }

    /// Sets how much one read asks for, for messages of `size` bytes.
    fn prepare(&mut self, size: usize, per: usize) {
        let flen = frame_len(self.kind, size);
        self.expect = flen;
        self.read_len = match self.kind {
            Kind::Batch => per * flen,
            Kind::Stream => flen,
            _ => size + 4096,
        }
        .min(self.buf.len());
    }

    /// Receives one message (batch: one read of frames); returns its bytes.
    fn recv(&mut self) -> io::Result<usize> {
        let Rx {
            kind,
            h,
            buf,
            read_len,
            expect,
        } = self;
        let len = *read_len;
        match (h, *kind) {
            (H::Mq(q), _) => loop {
                let r = unsafe {
                    libc::mq_receive(q.0, buf.as_mut_ptr().cast(), len, std::ptr::null_mut())
                };
                if r >= 0 {
                    return Ok(r as usize);
                }
                let e = io::Error::last_os_error();
                if !is_interrupted(&e) {
                    return Err(e);
                }
            },
            (H::Fd(fd), Kind::Stream) => {
                let mut off = 0;
                while off < *expect {
                    let r = sys_read(fd.as_raw_fd(), &mut buf[off..*expect])?;
                    if r == 0 {
                        return Err(other("end of stream"));
                    }
                    off += r;
                }
                Ok(off)
            }
            (H::Fd(fd), Kind::Msg) => {
                // The message, then its end of file.
                let mut off = 0;
                loop {
                    let r = sys_read(fd.as_raw_fd(), &mut buf[off..len])?;
                    if r == 0 {
                        if off == 0 {
                            return Err(other("end of file before a message"));
                        }
                        return Ok(off);
                    }
                    off += r;
                    if off >= len {
                        return Err(other("message larger than expected"));
                    }
                }
            }
            (H::Fd(fd), _) => {
                let r = sys_read(fd.as_raw_fd(), &mut buf[..len])?;
                if r == 0 {
                    return Err(other("end of file"));
                }
                Ok(r)
            }
        }
    }

    /// Checks the `n` bytes just received (sizes, sequence numbers from
    /// `*next`) and returns how many messages they hold.
    fn take(&self, n: usize, next: &mut u64, size: usize) -> io::Result<usize> {
        let seq_at = |off: usize| u64::from_le_bytes(self.buf[off..off + 8].try_into().unwrap());
        let mut check = |seq: u64| {
            if seq != *next {
                return Err(other(format!("message #{seq} arrived, #{next} expected")));
            }
            *next += 1;
            Ok(())
        };
        if self.kind != Kind::Batch {
            if n != size {
                return Err(other(format!("received {n} bytes, expected {size}")));
            }
            check(seq_at(0))?;
            return Ok(1);
        }
        let (mut pos, mut count) = (0, 0);
        while pos < n {
            if pos + 4 > n {
                return Err(other("truncated frame header"));
            }
            let len = u32::from_le_bytes(self.buf[pos..pos + 4].try_into().unwrap()) as usize;
            if len != size || pos + 4 + len > n {
                return Err(other(format!("bad frame of {len} bytes")));
            }
            check(seq_at(pos + 4))?;
            pos += 4 + len;
            count += 1;
        }
        Ok(count)
    }

    fn first_seq(&self) -> u64 {
        let off = if self.kind == Kind::Batch { 4 } else { 0 };
        u64::from_le_bytes(self.buf[off..off + 8].try_into().unwrap())
    }
}

// ----------------------------------------------------- the remote end

/// What the far end of a duplex does.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    /// Receive a message and send it back, `count` times.
    Echo { count: usize, size: usize },
    /// Send `count` messages numbered from 0.
    Source { count: usize, size: usize },
}

fn run_cmd(cmd: Cmd, rx: &mut Rx, tx: &mut Tx) -> io::Result<()> {
    match cmd {
        Cmd::Echo { count, size } => {
            rx.prepare(size, 1);
            for _ in 0..count {
                let n = rx.recv()?;
                tx.write_wire(&rx.buf[..n])?;
            }
            Ok(())
        }
        Cmd::Source { count, size } => tx.send_seqs(0, count, size),
    }
}

trait Remote {
    fn start(&mut self, cmd: Cmd) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

type Job = JoinHandle<(Rx, Tx, io::Result<()>)>;

/// The far end as a thread of this process.
struct ThreadRemote {
    eps: Option<(Rx, Tx)>,
    job: Option<Job>,
}

impl ThreadRemote {
    fn boxed(rx: Rx, tx: Tx) -> Box<dyn Remote> {
        Box::new(ThreadRemote {
            eps: Some((rx, tx)),
            job: None,
        })
    }
}

impl Remote for ThreadRemote {
    fn start(&mut self, cmd: Cmd) -> io::Result<()> {
        let (mut rx, mut tx) = self
            .eps
            .take()
            .ok_or_else(|| other("the far end is gone (an earlier run failed)"))?;
        self.job = Some(
            thread::Builder::new()
                .name("bench-remote".into())
                .spawn(move || {
                    let r = run_cmd(cmd, &mut rx, &mut tx);
                    (rx, tx, r)
                })?,
        );
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let job = self.job.take().ok_or_else(|| other("no run to finish"))?;
        let (rx, tx, r) = job.join().map_err(|_| other("the far end panicked"))?;
        self.eps = Some((rx, tx));
        r
    }
}

/// The far end as a separate process (for direct links: identity is the
/// process): this binary re-executed with `PEER_CMD`, driven by lines on
/// its stdin and answering `ok` or `err ...` on its stdout.
struct PeerRemote {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Remote for PeerRemote {
    fn start(&mut self, cmd: Cmd) -> io::Result<()> {
        let line = match cmd {
            Cmd::Echo { count, size } => format!("echo {count} {size}\n"),
            Cmd::Source { count, size } => format!("source {count} {size}\n"),
        };
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        match line.trim() {
            "ok" => Ok(()),
            "" => Err(other("the link peer exited")),
            l => Err(other(format!("link peer: {l}"))),
        }
    }
}

impl Drop for PeerRemote {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = self.stdin.write_all(b"quit\n");
        let _ = self.stdin.flush();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        lock(&REG).pids.retain(|&p| p != pid);
    }
}

/// The local end (tx to the far end, rx from it) and the far end.
struct Duplex {
    tx: Tx,
    rx: Rx,
    remote: Box<dyn Remote>,
    meter: Meter,
}

impl Duplex {
    /// One message there and back, before measuring: a message that cannot
    /// be sent (too large for this channel) fails here, before the far end
    /// waits for it.
    fn probe(&mut self, size: usize) -> io::Result<()> {
        if self.tx.kind == Kind::Stream {
            return Ok(()); // a large write would block without a reader; pipes carry anything
        }
        self.rx.prepare(size, 1);
        self.tx.send_seqs(0, 1, size)?;
        self.remote.start(Cmd::Echo { count: 1, size })?;
        let n = self.rx.recv()?;
        self.rx.take(n, &mut 0, size)?;
        self.remote.finish()
    }

    /// `count` round trips; `each` gets every round trip's time in µs.
    fn pingpong(&mut self, count: usize, size: usize, each: &mut dyn FnMut(f64)) -> io::Result<()> {
        self.rx.prepare(size, 1);
        self.remote.start(Cmd::Echo { count, size })?;
        let mut next = 0;
        for i in 0..count {
            let t0 = Instant::now();
            self.tx.send_seqs(i as u64, 1, size)?;
            let n = self.rx.recv()?;
            let dt = t0.elapsed();
            self.rx.take(n, &mut next, size)?;
            each(dt.as_secs_f64() * 1e6);
        }
        self.remote.finish()
    }

    /// The far end sends `count` messages; returns the seconds until the last arrived.
    fn stream(&mut self, count: usize, size: usize) -> io::Result<f64> {
        let per = per_write(self.rx.kind, size, self.tx.cap);
        self.rx.prepare(size, per);
        let t0 = Instant::now();
        self.remote.start(Cmd::Source { count, size })?;
        let (mut next, mut got) = (0, 0);
        while got < count {
            let n = self.rx.recv()?;
            got += self.rx.take(n, &mut next, size)?;
        }
        let dt = t0.elapsed().as_secs_f64();
        self.remote.finish()?;
        Ok(dt)
    }
}

fn measure_rtt(d: &mut Duplex, size: usize, plan: &Plan) -> io::Result<Lat> {
    let warm = warm_count(plan.rtt_warm, size);
    let t = Instant::now();
    d.pingpong(warm, size, &mut |_| {})?;
    let per = t.elapsed().as_secs_f64() / warm as f64;
    let n = ((plan.target.as_secs_f64() / per) as usize).clamp(plan.rtt_n.0, plan.rtt_n.1);
    // A fresh far end each repeat: where the scheduler puts the two threads
    // (one CPU or two) changes round trips several-fold, so each repeat
    // samples a placement and the median takes the usual one.
    let (mut meds, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..plan.repeats {
        let mut samples = Vec::with_capacity(n);
        d.pingpong(n, size, &mut |us| samples.push(us))?;
        meds.push(median(&mut samples));
        p99s.push(percentile(&mut samples, 0.99));
    }
    Ok(Lat {
        med: median(&mut meds),
        p99: Some(median(&mut p99s)),
    })
}

/// Median messages per second, and the meter's CPU µs per message.
fn measure_thr(d: &mut Duplex, size: usize, plan: &Plan) -> io::Result<(Thr, Option<f64>)> {
    let warm = warm_count(plan.thr_warm, size);
    let rate = warm as f64 / d.stream(warm, size)?;
    let n = ((rate * plan.target.as_secs_f64()) as usize).clamp(plan.thr_n.0, plan.thr_n.1);
    let c0 = d.meter.ticks();
    let mut rates = Vec::new();
    for _ in 0..plan.repeats {
        rates.push(n as f64 / d.stream(n, size)?);
    }
    let c1 = d.meter.ticks();
    let msgs = median(&mut rates);
    let cpu = match (c0, c1) {
        (Some(a), Some(b)) => Some((b - a) as f64 / clk_tck() * 1e6 / (n * plan.repeats) as f64),
        _ => None,
    };
    Ok((
        Thr {
            msgs,
            mib: Some(msgs * size as f64 / (1 << 20) as f64),
        },
        cpu,
    ))
}

// ------------------------------------------------------------- the floor

/// One floor file: messages waiting, reads waiting, writes waiting for room.
#[derive(Default)]
struct FloorChan {
    queue: VecDeque<Vec<u8>>,
    readers: VecDeque<(ReplyData, usize)>,
    writers: VecDeque<(Vec<u8>, ReplyWrite)>,
}

/// "The floor": each write is handed to a parked read (or queued); each read
/// takes a queued message (or parks). One write request and one read request
/// per message, nothing else.
struct FloorFs {
    chans: Vec<Mutex<FloorChan>>,
    started: SystemTime,
}

const FLOOR_TTL: Duration = Duration::from_secs(60);

impl FloorFs {
    fn attr(&self, ino: u64) -> FileAttr {
        let dir = ino == 1;
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o666 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn chan(&self, ino: INodeNo) -> Option<&Mutex<FloorChan>> {
        self.chans.get(ino.0.checked_sub(2)? as usize)
    }

    fn valid(&self, ino: u64) -> bool {
        ino == 1 || (2..2 + self.chans.len() as u64).contains(&ino)
    }
}

impl Filesystem for FloorFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let idx = std::str::from_utf8(name.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&i| parent.0 == 1 && i < self.chans.len() as u64);
        match idx {
            Some(i) => reply.entry(&FLOOR_TTL, &self.attr(i + 2), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if self.valid(ino.0) {
            reply.attr(&FLOOR_TTL, &self.attr(ino.0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    // Only for the shell row: `echo x > file` truncates on open.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.getattr(_req, ino, None, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.chan(ino).is_none() {
            return reply.error(Errno::EISDIR);
        }
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE | FopenFlags::FOPEN_STREAM,
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(chan) = self.chan(ino) else {
            return reply.error(Errno::EISDIR);
        };
        let mut c = lock(chan);
        let Some(msg) = c.queue.pop_front() else {
            c.readers.push_back((reply, size as usize));
            return;
        };
        let woken = c.writers.pop_front().map(|(data, w)| {
            let n = data.len();
            c.queue.push_back(data);
            (w, n)
        });
        drop(c);
        reply.data(&msg[..msg.len().min(size as usize)]);
        if let Some((w, n)) = woken {
            w.written(n as u32);
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(chan) = self.chan(ino) else {
            return reply.error(Errno::EISDIR);
        };
        let mut c = lock(chan);
        if let Some((r, size)) = c.readers.pop_front() {
            drop(c);
            r.data(&data[..data.len().min(size)]);
            reply.written(data.len() as u32);
        } else if c.queue.len() < FLOOR_CAPACITY {
            c.queue.push_back(data.to_vec());
            drop(c);
            reply.written(data.len() as u32);
        } else {
            c.writers.push_back((data.to_vec(), reply));
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (1, FileType::Directory, ".".to_string()),
            (1, FileType::Directory, "..".to_string()),
        ];
        for i in 0..self.chans.len() as u64 {
            entries.push((i + 2, FileType::RegularFile, i.to_string()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

struct FloorMount {
    session: Option<BackgroundSession>,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl FloorMount {
    fn mount() -> io::Result<FloorMount> {
        let dir = tempfile::Builder::new().prefix("ipcfs-floor.").tempdir()?;
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt)?;
        let fs = FloorFs {
            chans: (0..FLOOR_FILES).map(|_| Mutex::default()).collect(),
            started: SystemTime::now(),
        };
        let mut config = FuseConfig::default();
        config.mount_options = vec![
            MountOption::FSName("ipcfs-floor".into()),
            MountOption::Subtype("floor".into()),
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(2);
        config.clone_fd = true;
        {
            let mut reg = lock(&REG);
            reg.mounts.push(mnt.clone());
            reg.dirs.push(dir.path().to_path_buf());
        }
        let session = Session::new(fs, &mnt, &config)?.spawn()?;
        let end = Instant::now() + Duration::from_secs(10);
        while !mnt.join("0").exists() {
            if Instant::now() > end {
                return Err(other("the floor did not appear"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(FloorMount {
            session: Some(session),
            mnt,
            _dir: dir,
        })
    }
}

impl Drop for FloorMount {
    fn drop(&mut self) {
        detach(&self.mnt);
        if let Some(s) = self.session.take() {
            // The lazy unmount ends the session once nothing holds it open;
            // do not wait for ever if something still does.
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let _ = thread::Builder::new()
                .name("bench-floor-join".into())
                .spawn(move || {
                    let _ = s.join();
                    let _ = done_tx.send(());
                });
            let _ = done_rx.recv_timeout(Duration::from_secs(3));
        }
        let mut reg = lock(&REG);
        reg.mounts.retain(|m| m != &self.mnt);
        reg.dirs.retain(|d| !self.mnt.starts_with(d));
    }
}

// --------------------------------------------------------- the daemon

struct Daemon {
    child: Child,
    mnt: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bin: &Path, args: &[&str]) -> Result<Daemon, String> {
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

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log_text(&self) -> String {
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

// ------------------------------------------------------ building duplexes

#[derive(Clone, Copy, PartialEq, Debug)]
enum Via {
    SendRecv,
    Packets,
    Batch,
    Link,
    Pipe,
    Seq,
    PosixMq,
    Floor,
}

const VIAS: [Via; 8] = [
    Via::SendRecv,
    Via::Packets,
    Via::Batch,
    Via::Link,
    Via::Pipe,
    Via::Seq,
    Via::PosixMq,
    Via::Floor,
];

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::SendRecv => "ipcfs send/recv",
            Via::Packets => "ipcfs packets",
            Via::Batch => "ipcfs batch",
            Via::Link => "ipcfs proc/PID link",
            Via::Pipe => "pipe",
            Via::Seq => "SOCK_SEQPACKET",
            Via::PosixMq => "POSIX mq",
            Via::Floor => "floor (fuser)",
        }
    }

    fn role(self) -> Role {
        match self {
            Via::Floor => Role::Floor,
            Via::Pipe => Role::Pipe,
            _ => Role::Other,
        }
    }
}

struct Ctx {
    mnt: PathBuf,
    floor: PathBuf,
    daemon_pid: i32,
    max_msg: usize,
    boxes: usize,
    mq_seq: usize,
    mq_note: Option<String>,
    work: tempfile::TempDir,
}

impl Ctx {
    fn new_box(&mut self, tag: &str) -> io::Result<PathBuf> {
        self.boxes += 1;
        let p = self.mnt.join(format!("{tag}.{}", self.boxes));
        fs::create_dir(&p).map_err(|e| io::Error::new(e.kind(), format!("mkdir: {e}")))?;
        Ok(p)
    }

    fn fd(&self, kind: Kind, fd: OwnedFd) -> (Tx, Rx) {
        let dup = fd.try_clone().expect("dup");
        (
            Tx::new(kind, H::Fd(fd), self.max_msg),
            Rx::new(kind, H::Fd(dup), self.max_msg),
        )
    }

    fn tx(&self, kind: Kind, fd: OwnedFd) -> Tx {
        Tx::new(kind, H::Fd(fd), self.max_msg)
    }

    fn rx(&self, kind: Kind, fd: OwnedFd) -> Rx {
        Rx::new(kind, H::Fd(fd), self.max_msg)
    }

    /// A one-way channel, as (sending end, receiving end).
    fn channel(&mut self, via: Via, size: usize, tag: &str) -> io::Result<(Tx, Rx)> {
        match via {
            Via::SendRecv | Via::Packets | Via::Batch => {
                let b = self.new_box(tag)?;
                let (w, r, kind) = match via {
                    Via::SendRecv => ("send", "recv", Kind::Msg),
                    Via::Packets => ("packets", "packets", Kind::Packet),
                    _ => ("batch", "batch", Kind::Batch),
                };
                if !b.join(w).exists() {
                    return Err(other(format!("no {w} file")));
                }
                Ok((
                    self.tx(kind, open_w(&b.join(w))?),
                    self.rx(kind, open_r(&b.join(r))?),
                ))
            }
            Via::Pipe => {
                let mut fds = [0; 2];
                cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
                let (r, w) =
                    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                Ok((self.tx(Kind::Stream, w), self.rx(Kind::Stream, r)))
            }
            Via::PosixMq => {
                self.mq_seq += 1;
                let name = format!("/ipcfs-bench.{}.{}", std::process::id(), self.mq_seq);
                let maxmsg = mq_maxmsg(size).map_err(other)?;
                if maxmsg < MQ_MAXMSG {
                    self.mq_note = Some(format!("mq_maxmsg {maxmsg} (RLIMIT_MSGQUEUE)"));
                }
                let (w, r) = mq_pair(&name, size, maxmsg).map_err(other)?;
                Ok((
                    Tx::new(Kind::Mq, H::Mq(w), self.max_msg),
                    Rx::new(Kind::Mq, H::Mq(r), self.max_msg),
                ))
            }
            Via::Floor | Via::Seq | Via::Link => Err(other("not a one-way channel")),
        }
    }

    fn duplex(&mut self, via: Via, size: usize) -> io::Result<Duplex> {
        let meter = match via {
            Via::SendRecv | Via::Packets | Via::Batch | Via::Link => Meter::Daemon(self.daemon_pid),
            Via::Floor => Meter::Floor,
            _ => Meter::Off,
        };
        let (tx, rx, remote) = match via {
            Via::Floor => {
                let ab = self.floor.join("0");
                let ba = self.floor.join("1");
                (
                    self.tx(Kind::Packet, open_w(&ab)?),
                    self.rx(Kind::Packet, open_r(&ba)?),
                    ThreadRemote::boxed(
                        self.rx(Kind::Packet, open_r(&ab)?),
                        self.tx(Kind::Packet, open_w(&ba)?),
                    ),
                )
            }
            Via::Seq => {
                let mut fds = [0; 2];
                cvt(unsafe {
                    libc::socketpair(
                        libc::AF_UNIX,
                        libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                        0,
                        fds.as_mut_ptr(),
                    )
                })?;
                let (a, b) =
                    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                // A datagram must fit in the sender's buffer: as root, force
                // a larger one (wmem_max does not apply) for big messages.
                let want = (4 * size + (256 << 10)) as libc::c_int;
                for s in [&a, &b] {
                    unsafe {
                        libc::setsockopt(
                            s.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_SNDBUFFORCE,
                            (&want as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                }
                let (tx, rx) = self.fd(Kind::Seq, a);
                let (rtx, rrx) = self.fd(Kind::Seq, b);
                (tx, rx, ThreadRemote::boxed(rrx, rtx))
            }
            Via::Link => return Err(other("links are built once, with their peer")),
            _ => {
                let tag = match via {
                    Via::SendRecv => "sr",
                    Via::Packets => "pk",
                    Via::Batch => "bt",
                    _ => "x",
                };
                let (tx, rrx) = self.channel(via, size, tag)?;
                let (rtx, rx) = self.channel(via, size, tag)?;
                (tx, rx, ThreadRemote::boxed(rrx, rtx))
            }
        };
        Ok(Duplex {
            tx,
            rx,
            remote,
            meter,
        })
    }

    /// A direct link with a child process (identity is the process, so the
    /// far end cannot be a thread of this one).
    fn link(&mut self) -> io::Result<Duplex> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg(PEER_CMD)
            .arg(&self.mnt)
            .arg(std::process::id().to_string())
            .arg(self.max_msg.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = spawn(&mut cmd)?;
        let pid = child.id();
        lock(&REG).pids.push(pid as i32);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut peer = PeerRemote {
            child,
            stdin,
            stdout,
        };
        let mut line = String::new();
        peer.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(other(format!("link peer did not start: {}", line.trim())));
        }
        let base = self.mnt.join("proc").join(pid.to_string());
        Ok(Duplex {
            tx: self.tx(Kind::Msg, open_w(&base.join("send"))?),
            rx: self.rx(Kind::Msg, open_r(&base.join("recv"))?),
            remote: Box::new(peer),
            meter: Meter::Daemon(self.daemon_pid),
        })
    }
}

/// How many messages each of two queues of `size`-byte messages may hold
/// within RLIMIT_MSGQUEUE (at most `MQ_MAXMSG`).
fn mq_maxmsg(size: usize) -> Result<usize, String> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut r) };
    if r.rlim_cur == libc::RLIM_INFINITY {
        return Ok(MQ_MAXMSG);
    }
    // The kernel charges a queue maxmsg x (msgsize + about 100 bytes).
    match r.rlim_cur as usize / (2 * (size + 128)) {
        0 => Err(format!(
            "2 queues of {} B > RLIMIT_MSGQUEUE {} B; raising it needs CAP_SYS_RESOURCE",
            fmt_num(size as f64),
            fmt_num(r.rlim_cur as f64)
        )),
        n => Ok(n.min(MQ_MAXMSG)),
    }
}

/// Opens a new POSIX queue for `size`-byte messages twice (a sending and a
/// receiving descriptor) and unlinks its name.
fn mq_pair(name: &str, size: usize, maxmsg: usize) -> Result<(Mq, Mq), String> {
    let cname = CString::new(name).expect("mq name");
    let open = |create: bool| -> io::Result<Mq> {
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = maxmsg as _;
        attr.mq_msgsize = size as _;
        let flags = libc::O_RDWR
            | libc::O_CLOEXEC
            | if create {
                libc::O_CREAT | libc::O_EXCL
            } else {
                0
            };
        let q = unsafe {
            libc::mq_open(
                cname.as_ptr(),
                flags,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        if q < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Mq(q))
        }
    };
    let first = match open(true) {
        Ok(q) => q,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // msgsize above fs.mqueue.msgsize_max: raise it (as root) and retry.
            let path = PathBuf::from("/proc/sys/fs/mqueue/msgsize_max");
            let old = fs::read_to_string(&path).unwrap_or_default();
            let cur: usize = old.trim().parse().unwrap_or(0);
            if cur >= size {
                return Err(format!("mq_open: {e}"));
            }
            fs::write(&path, size.to_string()).map_err(|w| {
                format!("mq_open: {e} (msgsize {size} > msgsize_max {cur}; raising it: {w})")
            })?;
            let mut reg = lock(&REG);
            if !reg.sysctl_restore.iter().any(|(p, _)| p == &path) {
                reg.sysctl_restore.push((path.clone(), old.clone()));
            }
            drop(reg);
            progress!("raised fs.mqueue.msgsize_max from {} to {size}", old.trim());
            open(true).map_err(|e| format!("mq_open after raising msgsize_max: {e}"))?
        }
        Err(e) => return Err(format!("mq_open: {e}")),
    };
    let second = open(false).map_err(|e| format!("mq_open: {e}"));
    unsafe { libc::mq_unlink(cname.as_ptr()) };
    Ok((first, second?))
}

// ----------------------------------------------------------- the rows

fn row(name: &str, size: String, group: Group, role: Role) -> Row {
    Row {
        name: name.into(),
        size,
        group,
        role,
        rtt: None,
        thr: None,
        note: String::new(),
        cpu_us: None,
    }
}

fn na_row(mut r: Row, why: &str) -> Row {
    r.rtt = Some(Err(why.into()));
    r.thr = Some(Err(why.into()));
    r.note = format!("n/a ({why})");
    r
}

fn size_rows(ctx: &mut Ctx, plan: &Plan) {
    let mut link: Result<Duplex, String> = {
        let _s = step("start the link peer", Duration::from_secs(20));
        ctx.link().map_err(|e| e.to_string())
    };
    for &size in &plan.sizes {
        for via in VIAS {
            let eff = if via == Via::Batch && size + 4 > ctx.max_msg {
                ctx.max_msg - 4
            } else {
                size
            };
            let mut r = row(via.name(), size_label(size), Group::Size(size), via.role());
            let _s = step(format!("{} {}", via.name(), r.size), plan.step_limit);
            let mut fresh;
            let d = match via {
                Via::Link => match &mut link {
                    Ok(d) => d,
                    Err(e) => {
                        push_row(na_row(r, e));
                        continue;
                    }
                },
                _ => match ctx.duplex(via, eff) {
                    Ok(d) => {
                        fresh = d;
                        &mut fresh
                    }
                    Err(e) => {
                        push_row(na_row(r, &e.to_string()));
                        continue;
                    }
                },
            };
            if let Err(e) = d.probe(eff) {
                push_row(na_row(r, &e.to_string()));
                if via == Via::Link {
                    link = Err(format!("link peer unusable after: {e}"));
                }
                continue;
            }
            if via == Via::Batch {
                let per = per_write(Kind::Batch, eff, ctx.max_msg);
                r.note = if eff != size {
                    format!(
                        "1 frame of {} B a write (+ its 4 B header: the largest write)",
                        fmt_num(eff as f64)
                    )
                } else {
                    format!("{per} frames a write (RTT: 1)")
                };
            }
            if via == Via::PosixMq {
                r.note = ctx.mq_note.take().unwrap_or_default();
            }
            if via == Via::SendRecv || via == Via::Link {
                r.note = "each message: data + 0-byte EOF read".into();
            }
            r.rtt = Some(measure_rtt(d, eff, plan).map_err(|e| e.to_string()));
            match measure_thr(d, eff, plan) {
                Ok((t, cpu)) => {
                    r.thr = Some(Ok(t));
                    r.cpu_us = cpu;
                }
                Err(e) => r.thr = Some(Err(e.to_string())),
            }
            if via == Via::Link && (matches!(r.rtt, Some(Err(_))) || matches!(r.thr, Some(Err(_))))
            {
                link = Err("link peer unusable after an earlier failure".into());
            }
            push_row(r);
        }
    }
}

/// 4 senders x 4 receivers on one channel, 64-byte messages: messages/s.
fn fan_once(
    mk_tx: &mut dyn FnMut() -> io::Result<Tx>,
    mk_rx: &mut dyn FnMut() -> io::Result<Rx>,
    per_sender: usize,
    meter: Meter,
) -> io::Result<(f64, Option<u64>)> {
    const SIZE: usize = 64;
    const N: usize = 4;
    let total = N * per_sender;
    let got = Arc::new(AtomicUsize::new(0));
    let done: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let barrier = Arc::new(Barrier::new(2 * N + 1));
    let mut receivers = Vec::new();
    for _ in 0..N {
        let mut rx = mk_rx()?;
        let (got, done, barrier) = (got.clone(), done.clone(), barrier.clone());
        receivers.push(thread::spawn(move || -> io::Result<()> {
            rx.prepare(SIZE, 1);
            barrier.wait();
            loop {
                let n = rx.recv()?;
                if n != SIZE {
                    return Err(other(format!("received {n} bytes, expected {SIZE}")));
                }
                if rx.first_seq() == STOP {
                    return Ok(());
                }
                if got.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    *lock(&done) = Some(Instant::now());
                }
            }
        }));
    }
    let mut senders = Vec::new();
    for _ in 0..N {
        let mut tx = mk_tx()?;
        let barrier = barrier.clone();
        senders.push(thread::spawn(move || {
            barrier.wait();
            tx.send_seqs(0, per_sender, SIZE)
        }));
    }
    let c0 = meter.ticks();
    barrier.wait();
    let t0 = Instant::now();
    let mut result = Ok(());
    for s in senders {
        let r = s.join().unwrap_or_else(|_| Err(other("sender panicked")));
        result = result.and(r);
    }
    if result.is_ok() {
        while got.load(Ordering::SeqCst) < total {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let c1 = meter.ticks();
    let mut stop = mk_tx()?;
    for _ in 0..N {
        stop.send_seqs(STOP, 1, SIZE)?;
    }
    for r in receivers {
        let r = r.join().unwrap_or_else(|_| Err(other("receiver panicked")));
        result = result.and(r);
    }
    result?;
    let end = lock(&done).ok_or_else(|| other("no end time"))?;
    let ticks = c0.zip(c1).map(|(a, b)| b - a);
    Ok((total as f64 / (end - t0).as_secs_f64(), ticks))
}

fn fan_row(
    name: &str,
    role: Role,
    plan: &Plan,
    meter: Meter,
    mk_tx: &mut dyn FnMut() -> io::Result<Tx>,
    mk_rx: &mut dyn FnMut() -> io::Result<Rx>,
) {
    let mut r = row(name, "64 B".into(), Group::Fan, role);
    r.note = "4 senders x 4 receivers, aggregate".into();
    let _s = step(format!("4x4 {name}"), plan.step_limit);
    let res = (|| -> io::Result<(f64, Option<f64>)> {
        let warm = if plan.quick { 50 } else { 200 };
        let (rate, _) = fan_once(mk_tx, mk_rx, warm, Meter::Off)?;
        let per = ((rate * plan.fan_target.as_secs_f64() / 4.0) as usize).clamp(100, 1_000_000);
        let mut rates = Vec::new();
        let mut ticks = Some(0);
        for _ in 0..plan.fan_repeats {
            let (rate, t) = fan_once(mk_tx, mk_rx, per, meter)?;
            rates.push(rate);
            ticks = ticks.zip(t).map(|(a, b)| a + b);
        }
        let msgs = (4 * per * plan.fan_repeats) as f64;
        let cpu = ticks.map(|t| t as f64 / clk_tck() * 1e6 / msgs);
        Ok((median(&mut rates), cpu))
    })();
    match res {
        Ok((msgs, cpu)) => {
            r.thr = Some(Ok(Thr {
                msgs,
                mib: Some(msgs * 64.0 / (1 << 20) as f64),
            }));
            r.cpu_us = cpu;
        }
        Err(e) => r = na_row(r, &e.to_string()),
    }
    push_row(r);
}

fn fan_rows(ctx: &mut Ctx, plan: &Plan) {
    let max = ctx.max_msg;
    match ctx.new_box("fan") {
        Ok(b) => fan_row(
            "ipcfs send/recv 4x4",
            Role::Other,
            plan,
            Meter::Daemon(ctx.daemon_pid),
            &mut || Ok(Tx::new(Kind::Msg, H::Fd(open_w(&b.join("send"))?), max)),
            &mut || Ok(Rx::new(Kind::Msg, H::Fd(open_r(&b.join("recv"))?), max)),
        ),
        Err(e) => push_row(na_row(
            row(
                "ipcfs send/recv 4x4",
                "64 B".into(),
                Group::Fan,
                Role::Other,
            ),
            &e.to_string(),
        )),
    }
    let f = ctx.floor.join("2");
    fan_row(
        "floor (fuser) 4x4",
        Role::Floor,
        plan,
        Meter::Floor,
        &mut || Ok(Tx::new(Kind::Packet, H::Fd(open_w(&f)?), max)),
        &mut || Ok(Rx::new(Kind::Packet, H::Fd(open_r(&f)?), max)),
    );
    match ctx.channel(Via::Pipe, 64, "") {
        Ok((w, r)) => {
            let (H::Fd(wfd), H::Fd(rfd)) = (&w.h, &r.h) else {
                unreachable!("pipes are descriptors")
            };
            fan_row(
                "pipe 4x4",
                Role::Pipe,
                plan,
                Meter::Off,
                &mut || Ok(Tx::new(Kind::Stream, H::Fd(wfd.try_clone()?), max)),
                &mut || Ok(Rx::new(Kind::Stream, H::Fd(rfd.try_clone()?), max)),
            );
        }
        Err(e) => push_row(na_row(
            row("pipe 4x4", "64 B".into(), Group::Fan, Role::Pipe),
            &e.to_string(),
        )),
    }
}

/// Runs `sh -c SCRIPT sh A1 A2` with N=n; returns the seconds it took.
fn run_sh(script: &str, a1: &Path, a2: &Path, n: usize, errlog: &Path) -> io::Result<f64> {
    let err = fs::File::create(errlog)?;
    let t0 = Instant::now();
    let mut child = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(a1)
            .arg(a2)
            .env("N", n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0),
    )?;
    let pg = child.id() as i32;
    lock(&REG).pgroups.push(pg);
    let st = child.wait();
    let dt = t0.elapsed().as_secs_f64();
    unsafe { libc::killpg(pg, libc::SIGKILL) };
    lock(&REG).pgroups.retain(|&p| p != pg);
    let st = st?;
    if !st.success() {
        let msg = fs::read_to_string(errlog).unwrap_or_default();
        let first = msg.lines().next().unwrap_or("").to_string();
        return Err(other(format!("sh loop failed ({st}): {first}")));
    }
    Ok(dt)
}

fn shell_rows(ctx: &mut Ctx, plan: &Plan) {
    const ECHO_CAT: &str =
        r#"i=0; while [ $i -lt $N ]; do echo x > "$1"; cat "$2" > /dev/null; i=$((i+1)); done"#;
    const FIFO: &str = r#"i=0; while [ $i -lt $N ]; do cat "$2" > /dev/null & echo x > "$1"; wait; i=$((i+1)); done"#;
    const FLOOR: &str = r#"i=0; while [ $i -lt $N ]; do echo x > "$1"; head -c 2 "$2" > /dev/null; i=$((i+1)); done"#;
    let errlog = ctx.work.path().join("sh.err");
    let shm = PathBuf::from(format!("/dev/shm/ipcfs-bench.{}", std::process::id()));
    lock(&REG).files.push(shm.clone());
    let fifo = ctx.work.path().join("fifo");
    let fifo_ok = CString::new(fifo.as_os_str().as_bytes())
        .ok()
        .is_some_and(|c| unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0);
    let shell_box = ctx.new_box("sh");
    let floor_file = ctx.floor.join("3");
    type Case = (
        &'static str,
        Role,
        &'static str,
        Result<(PathBuf, PathBuf), String>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "shell: ipcfs",
            Role::Other,
            ECHO_CAT,
            shell_box
                .map(|b| (b.join("send"), b.join("recv")))
                .map_err(|e| e.to_string()),
            "echo x > box/send; cat box/recv",
        ),
        (
            "shell: tmpfs file",
            Role::Other,
            ECHO_CAT,
            Ok((shm.clone(), shm.clone())),
            "echo x > /dev/shm/f; cat /dev/shm/f",
        ),
        (
            "shell: FIFO",
            Role::Pipe,
            FIFO,
            if fifo_ok {
                Ok((fifo.clone(), fifo.clone()))
            } else {
                Err(format!("mkfifo: {}", io::Error::last_os_error()))
            },
            "cat fifo & echo x > fifo; wait",
        ),
        (
            "shell: floor",
            Role::Floor,
            FLOOR,
            Ok((floor_file.clone(), floor_file)),
            "echo x > floor/f; head -c 2 floor/f",
        ),
    ];
    for (name, role, script, paths, what) in cases {
        let mut r = row(name, "2 B".into(), Group::Shell, role);
        r.note = format!("sh -c loop: {what}");
        let _s = step(name, plan.step_limit);
        let res = paths.map_err(other).and_then(|(a1, a2)| {
            run_sh(script, &a1, &a2, 20.min(plan.shell_n), &errlog)?;
            let mut per = Vec::new();
            for _ in 0..plan.shell_repeats {
                per.push(
                    run_sh(script, &a1, &a2, plan.shell_n, &errlog)? * 1e6 / plan.shell_n as f64,
                );
            }
            Ok(median(&mut per))
        });
        match res {
            Ok(us) => {
                r.rtt = Some(Ok(Lat { med: us, p99: None }));
                r.thr = Some(Ok(Thr {
                    msgs: 1e6 / us,
                    mib: None,
                }));
            }
            Err(e) => r = na_row(r, &e.to_string()),
        }
        push_row(r);
    }
    let _ = fs::remove_file(&shm);
    lock(&REG).files.retain(|f| f != &shm);
}

/// Round trips with many mailboxes and parked readers present, against none.
fn many_rows(ctx: &mut Ctx, plan: &Plan) {
    let (nb, nr) = (plan.many_boxes, plan.many_readers);
    let label = format!(
        "{} mailboxes, {} parked readers",
        fmt_num(nb as f64),
        fmt_num(nr as f64)
    );
    let name = "ipcfs send/recv, none present";
    let loaded = format!(
        "ipcfs send/recv + {} boxes, {} readers",
        fmt_num(nb as f64),
        fmt_num(nr as f64)
    );
    let mut d = match ctx.duplex(Via::SendRecv, 64) {
        Ok(d) => d,
        Err(e) => {
            push_row(na_row(
                row(name, "64 B".into(), Group::Many, Role::Other),
                &e.to_string(),
            ));
            return;
        }
    };
    let base = {
        let _s = step("many: baseline round trips", plan.step_limit);
        measure_rtt(&mut d, 64, plan).map_err(|e| e.to_string())
    };
    let mut r = row(name, "64 B".into(), Group::Many, Role::Other);
    r.note = "RTT, no extra mailboxes or parked readers".into();
    r.rtt = Some(base.clone());
    push_row(r);

    let mut r = row(&loaded, "64 B".into(), Group::Many, Role::Other);
    let prefix = format!("many.{}", std::process::id());
    let boxes: Vec<PathBuf> = (0..nb)
        .map(|i| ctx.mnt.join(format!("{prefix}.{i:05}")))
        .collect();
    let mut made = 0;
    let mut readers: Vec<Child> = Vec::new();
    let mut pg = 0;
    let res = (|| -> io::Result<(Lat, String)> {
        {
            let _s = step(format!("many: mkdir {nb} mailboxes"), plan.step_limit);
            let t = Instant::now();
            for b in &boxes {
                fs::create_dir(b).map_err(|e| other(format!("mkdir {}: {e}", b.display())))?;
                made += 1;
            }
            progress!(
                "created {nb} mailboxes in {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
        {
            let _s = step(format!("many: start {nr} readers"), plan.step_limit);
            for b in boxes.iter().take(nr) {
                let mut cmd = Command::new("cat");
                cmd.arg(b.join("recv"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(pg);
                let c = spawn(&mut cmd)?;
                if pg == 0 {
                    pg = c.id() as i32;
                    lock(&REG).pgroups.push(pg);
                }
                readers.push(c);
            }
        }
        let parked = {
            let _s = step("many: wait for the readers to park", plan.step_limit);
            let end = Instant::now() + Duration::from_secs(30);
            let mut pending: Vec<&PathBuf> = boxes.iter().take(nr).collect();
            while !pending.is_empty() && Instant::now() < end {
                pending.retain(|b| {
                    !fs::read_to_string(b.join("status"))
                        .unwrap_or_default()
                        .lines()
                        .any(|l| l == "receivers-waiting: 1")
                });
                if !pending.is_empty() {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            nr - pending.len()
        };
        // What idling with parked readers costs the daemon.
        let idle = if plan.quick { 0.5 } else { 2.0 };
        let c0 = Meter::Daemon(ctx.daemon_pid).ticks();
        thread::sleep(Duration::from_secs_f64(idle));
        let c1 = Meter::Daemon(ctx.daemon_pid).ticks();
        if let (Some(a), Some(b)) = (c0, c1) {
            lock(&EXTRA).push(format!(
                "ipcfs daemon CPU while idle with {label}: {:.1} % of one core (over {idle} s)",
                (b - a) as f64 / clk_tck() / idle * 100.0
            ));
        }
        let _s = step("many: round trips", plan.step_limit);
        let lat = measure_rtt(&mut d, 64, plan)?;
        let mut note = format!("RTT with {label} present");
        note = note.replace("mailboxes, ", "mailboxes and ");
        if parked < nr {
            let _ = write!(note, " (only {parked} seen parked)");
        }
        if let Ok(b) = &base {
            let _ = write!(note, "; ×{} vs none", fmt_ratio(lat.med / b.med));
        }
        Ok((lat, note))
    })();
    match res {
        Ok((lat, note)) => {
            r.rtt = Some(Ok(lat));
            r.note = note;
        }
        Err(e) => r = na_row(r, &format!("{label}: {e}")),
    }
    push_row(r);
    // rmdir wakes the parked readers with EIDRM.
    let _s = step("many: clean up", plan.step_limit);
    let t = Instant::now();
    let mut failed = 0;
    for b in boxes.iter().take(made) {
        if fs::remove_dir(b).is_err() {
            failed += 1;
        }
    }
    let end = Instant::now() + Duration::from_secs(20);
    let mut left = readers.len();
    while left > 0 && Instant::now() < end {
        left = readers
            .iter_mut()
            .map(|c| matches!(c.try_wait(), Ok(Some(_))))
            .filter(|exited| !exited)
            .count();
        if left > 0 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let woke = readers.len() - left;
    if pg != 0 {
        unsafe { libc::killpg(pg, libc::SIGKILL) };
        lock(&REG).pgroups.retain(|&p| p != pg);
    }
    for c in &mut readers {
        let _ = c.wait();
    }
    lock(&EXTRA).push(format!(
        "rmdir of {made} mailboxes ({failed} failed) ended {woke} of {} parked readers in {:.2} s",
        readers.len(),
        t.elapsed().as_secs_f64()
    ));
}

// ------------------------------------------------------------ main

fn peer_main(args: &[String]) -> i32 {
    // Never outlive a stuck run by much.
    unsafe { libc::alarm(1800) };
    let [mnt, parent, max_msg] = args else {
        eprintln!("usage: {PEER_CMD} MOUNTPOINT PARENT_PID MAX_MESSAGE");
        return 2;
    };
    let max_msg: usize = max_msg.parse().unwrap_or(DEFAULT_MAX_MSG);
    let base = Path::new(mnt).join("proc").join(parent);
    let (mut rx, mut tx) = match (open_r(&base.join("recv")), open_w(&base.join("send"))) {
        (Ok(r), Ok(w)) => (
            Rx::new(Kind::Msg, H::Fd(r), max_msg),
            Tx::new(Kind::Msg, H::Fd(w), max_msg),
        ),
        (Err(e), _) | (_, Err(e)) => {
            println!("err {e}");
            return 1;
        }
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
        let cmd = match f.first().copied() {
            Some("echo") => Cmd::Echo {
                count: num(1),
                size: num(2),
            },
            Some("source") => Cmd::Source {
                count: num(1),
                size: num(2),
            },
            _ => break,
        };
        let answer = match run_cmd(cmd, &mut rx, &mut tx) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("err {e}"),
        };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    0
}

fn ipcfs_bin() -> PathBuf {
    std::env::var_os("IPCFS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ipcfs")))
}

fn run(quick: bool) -> Result<(), String> {
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: the benchmark mounts FUSE filesystems".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing".into());
    }
    let run_start = Instant::now();
    // Two 1 MiB POSIX queues exceed the default RLIMIT_MSGQUEUE (800 KiB).
    let inf = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    unsafe { libc::setrlimit(libc::RLIMIT_MSGQUEUE, &inf) };

    let plan0 = Plan::new(quick, DEFAULT_MAX_MSG);
    start_watchdog(plan0.total_limit);
    let bin = ipcfs_bin();
    let work = tempfile::Builder::new()
        .prefix("ipcfs-bench-work.")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    lock(&REG).dirs.push(work.path().to_path_buf());

    let daemon = {
        let _s = step("mount ipcfs", Duration::from_secs(30));
        Daemon::start(&bin, &["--max-memory", DAEMON_MAX_MEMORY])?
    };
    let rss_start = status_kib(daemon.pid(), "VmRSS:");
    let max_msg = fs::read_to_string(daemon.mnt.join("policy"))
        .ok()
        .and_then(|p| {
            p.split_whitespace()
                .find_map(|w| w.strip_prefix("max-message-size="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(DEFAULT_MAX_MSG);
    let plan = Plan::new(quick, max_msg);
    *lock(&IDLE_LIMIT) = plan.step_limit;
    let floor = {
        let _s = step("mount the floor", Duration::from_secs(30));
        FloorMount::mount().map_err(|e| format!("cannot mount the floor: {e}"))?
    };

    {
        progress!(
            "cores (nproc): {}, kernel (uname -r): {}",
            command_output("nproc", &[]),
            command_output("uname", &["-r"])
        );
        let mut h = lock(&HEADER);
        h.push(format!(
            "ipcfs benchmark ({}) — cores (nproc): {}, kernel (uname -r): {}, \
             fs.fuse.max_pages_limit: {}",
            if quick { "--quick" } else { "full run" },
            command_output("nproc", &[]),
            command_output("uname", &["-r"]),
            fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
        ));
        h.push(format!(
            "ipcfs: {} --max-memory {DAEMON_MAX_MEMORY} MOUNTPOINT (default capacity 1024, \
             default event-loop threads); largest message {} B, so \"1 MiB\" below is {} B",
            bin.display(),
            fmt_num(max_msg as f64),
            fmt_num(max_msg as f64)
        ));
        h.push(format!(
            "floor: a fuser mount inside this benchmark: writes handed to parked reads \
             (queue of {FLOOR_CAPACITY} otherwise), FOPEN_DIRECT_IO|FOPEN_NONSEEKABLE|FOPEN_STREAM, \
             2 event-loop threads with clone_fd"
        ));
        h.push(format!(
            "method: threads of one process (a child process for proc/PID links), persistent \
             descriptors; warm-up, then {} repeats of ~{} ms; RTT = per-round-trip median and p99 \
             (median over repeats); throughput = median over repeats, one writer -> one reader; \
             POSIX mq with mq_maxmsg {MQ_MAXMSG} unless noted",
            plan.repeats,
            plan.target.as_millis()
        ));
    }

    let mut ctx = Ctx {
        mnt: daemon.mnt.clone(),
        floor: floor.mnt.clone(),
        daemon_pid: daemon.pid(),
        max_msg,
        boxes: 0,
        mq_seq: 0,
        mq_note: None,
        work,
    };
    size_rows(&mut ctx, &plan);
    fan_rows(&mut ctx, &plan);
    shell_rows(&mut ctx, &plan);
    many_rows(&mut ctx, &plan);

    let pid = daemon.pid();
    lock(&EXTRA).push(format!(
        "ipcfs daemon RSS (VmRSS): {} at start, {} at end (peak VmHWM {})",
        mib(rss_start),
        mib(status_kib(pid, "VmRSS:")),
        mib(status_kib(pid, "VmHWM:"))
    ));
    lock(&EXTRA).push(format!(
        "run time: {:.1} s",
        run_start.elapsed().as_secs_f64()
    ));
    restore_sysctls(&mut lock(&REG));
    report(false);
    let _s = step("unmount", Duration::from_secs(30));
    drop(floor);
    drop(daemon);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(PEER_CMD) {
        std::process::exit(peer_main(&args[2..]));
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: cargo bench --bench ipc -- [--quick]   (as root, with /dev/fuse)\n\
             --quick  64 B and 1 MiB only, fewer repeats, 1,000 mailboxes / 100 readers\n\
             IPCFS_BIN=path  use another ipcfs binary"
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing:
    // then there is nothing to test.
    if !quick && !args.iter().any(|a| a == "--bench" || a == "--full") {
        eprintln!("ipc bench: run it with `cargo bench --bench ipc` or scripts/bench.sh");
        return;
    }
    match std::panic::catch_unwind(|| run(quick)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            progress!("{e}");
            report(true);
            emergency_cleanup();
            std::process::exit(1);
        }
        Err(_) => {
            progress!("panicked");
            report(true);
            emergency_cleanup();
            std::process::exit(101);
        }
    }
}
