//! The ipcfs benchmark: ipcfs next to native IPC and next to
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
//!
//! This file parses the command line and runs the rows in order; beside it:
//! `plan` (sizes, repeats), `rows` (what each row measures), `vias` (how a
//! duplex is built for each way of passing messages), `endpoints` (the
//! descriptors and their senders and receivers), `remote` (the far end and the
//! measures of round trips and throughput), `daemon` (the ipcfs mount,
//! through the tests' harness `common`: tests/common),
//! `floor` (the floor's filesystem), `report` (the table), `watchdog`
//! (deadlines and clean-up), `stats` and `sys` (small helpers).

use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("bench: {}", format!($($arg)*)) };
}

// The tests' mount harness: it starts, awaits and cleans up the daemon here too.
mod broker;
#[path = "../../tests/common/mod.rs"]
mod common;
mod daemon;
mod endpoints;
mod floor;
mod plan;
mod remote;
mod report;
mod rows;
mod stats;
mod sys;
mod vias;
mod watchdog;

use broker::broker_rows;
use daemon::Daemon;
use endpoints::{H, Kind, Rx, Tx};
use floor::FloorMount;
use plan::Plan;
use remote::{Cmd, run_cmd};
use report::{EXTRA, HEADER, IDLE_LIMIT, REG, fmt_num, report};
use rows::{fan_rows, many_rows, shell_rows, size_rows};
use sys::{command_output, lock, mib, open_r, open_w, status_kib};
use vias::Ctx;
use watchdog::{emergency_cleanup, restore_sysctls, start_watchdog, step};

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
    let max_msg = fs::read_to_string(daemon.mnt().join("policy"))
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
        mnt: daemon.mnt().to_path_buf(),
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
    broker_rows(&bin, &plan, DAEMON_MAX_MEMORY, max_msg);

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
