//! Torture suite on a real mount (issue 11, item 7): many senders and
//! receivers under each receiver rule, direct links between many processes,
//! SIGKILL of clients under load, SIGKILL of the daemon itself, floods against
//! `--max-memory`, and hostile names and policy texts.
//!
//! Two sizes, chosen by the environment variable `IPCFS_TORTURE`:
//!
//! - `quick` (the default, what `cargo test` runs): a few seconds a test;
//! - `long`, by hand, for a few minutes:
//!   `IPCFS_TORTURE=long cargo test --release --test torture -- --nocapture`.
//!
//! Every test prints its figures (visible with `--nocapture`) and asserts
//! correctness. Random choices come from a small xorshift generator whose
//! seed each test prints; `IPCFS_TORTURE_SEED=N` replays a run.
//!
//! Senders and receivers are separate processes: the test binary runs itself
//! again (`current_exe() child_entry --exact`) with `IPCFS_TORTURE_CHILD` naming
//! the child's role; `child_entry` does nothing without it. Children talk back
//! on stdout with lines starting with `@@`, and receivers log every message
//! they receive to a file with one write(2) each, so that a receiver killed at
//! any moment leaves an exact record of what it had received.
//!
//! Every blocking step has a deadline: children are awaited with deadlines
//! and killed on drop; long runs are watched for progress (status counters)
//! and fail when it stalls.

mod common;
use common::*;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ modes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Quick,
    Long,
}

fn mode() -> Mode {
    match std::env::var("IPCFS_TORTURE").as_deref() {
        Err(_) | Ok("") | Ok("quick") => Mode::Quick,
        Ok("long") => Mode::Long,
        Ok(other) => panic!("IPCFS_TORTURE={other:?}: expected `quick` or `long`"),
    }
}

/// `quick` in quick mode, `long` in long mode.
fn by_mode<T>(quick: T, long: T) -> T {
    match mode() {
        Mode::Quick => quick,
        Mode::Long => long,
    }
}

/// Deadline of one step (a child's answer, a status value, one system call).
fn step() -> Duration {
    by_mode(Duration::from_secs(15), Duration::from_secs(60))
}

/// A load that makes no progress for this long has failed.
fn stall() -> Duration {
    by_mode(Duration::from_secs(20), Duration::from_secs(60))
}

/// The most any one load may take.
fn cap() -> Duration {
    by_mode(Duration::from_secs(120), Duration::from_secs(3600))
}

// ------------------------------------------------------------------ randomness

/// xorshift64*: small, deterministic, good enough to pick kills and fuzz input.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of a test: `IPCFS_TORTURE_SEED`, or the clock. Printed.
fn seed(test: &str) -> u64 {
    let s = match std::env::var("IPCFS_TORTURE_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("IPCFS_TORTURE_SEED={v:?} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    println!(
        "torture {test}: mode {:?}, seed {s} (IPCFS_TORTURE_SEED={s} replays it)",
        mode()
    );
    s
}

// ------------------------------------------------------------------ messages

/// Every test message: a 24-byte header (magic, sender id, destination, sequence
/// number, payload length, FNV-1a checksum of the rest), then a payload whose
/// length and bytes follow from (sender, destination, sequence).
const MAGIC: u32 = 0x5a7e_1bcf;
const HDR: usize = 24;
/// The sender id of the message that tells a receiver to exit.
const STOP: u32 = u32::MAX;
/// The largest payload: rare messages are between half of it and all of it.
const BIG: usize = 64 << 10;
/// A receiver's buffer: larger than any test message, so one read takes one.
const RBUF: usize = 256 << 10;

const F_SHORT: u32 = 1;
const F_MAGIC: u32 = 2;
const F_LEN: u32 = 4;
const F_SUM: u32 = 8;
const F_CONTENT: u32 = 16;
const F_DEST: u32 = 32;

fn key(sender: u32, dest: u32, seq: u32) -> u64 {
    (u64::from(sender) << 32 | u64::from(seq)) ^ mix(u64::from(dest))
}

fn payload_len(sender: u32, dest: u32, seq: u32) -> usize {
    if sender == STOP {
        return 0;
    }
    let h = mix(key(sender, dest, seq));
    let r = (h >> 16) as usize;
    match h % 1000 {
        0..=1 => BIG / 2 + r % (BIG / 2 + 1),
        2..=60 => 256 + r % 3840,
        _ => r % 200,
    }
}

const FNV0: u32 = 0x811c_9dc5;

fn fnv(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn encode(sender: u32, dest: u32, seq: u32) -> Vec<u8> {
    let len = payload_len(sender, dest, seq);
    let mut v = Vec::with_capacity(HDR + len + 8);
    for w in [MAGIC, sender, dest, seq, len as u32, 0] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    let mut r = Rng::new(key(sender, dest, seq) ^ 0x00c0_ffee);
    while v.len() < HDR + len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(HDR + len);
    let sum = fnv(fnv(FNV0, &v[..20]), &v[HDR..]);
    v[20..24].copy_from_slice(&sum.to_le_bytes());
    v
}

/// What a receiver saw: (sender, destination, sequence, flags); flags 0 is a
/// whole, uncorrupted message.
fn check(msg: &[u8]) -> (u32, u32, u32, u32) {
    if msg.len() < HDR {
        return (0, 0, 0, F_SHORT);
    }
    let w = |i: usize| u32::from_le_bytes(msg[i * 4..i * 4 + 4].try_into().unwrap());
    let (magic, sender, dest, seq, len, sum) = (w(0), w(1), w(2), w(3), w(4), w(5));
    let mut flags = 0;
    if magic != MAGIC {
        flags |= F_MAGIC;
    }
    if len as usize != msg.len() - HDR {
        flags |= F_LEN;
    }
    if fnv(fnv(FNV0, &msg[..20]), &msg[HDR..]) != sum {
        flags |= F_SUM;
    }
    if flags == 0 && encode(sender, dest, seq) != msg {
        flags |= F_CONTENT;
    }
    (sender, dest, seq, flags)
}

/// The payload length a message's header announces (0 if it has no header).
fn payload_field(msg: &[u8]) -> usize {
    msg.get(16..20)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
}

/// One entry of a receiver's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    sender: u32,
    seq: u32,
    flags: u32,
}

const REC: usize = 12;

fn rec_bytes(r: Rec) -> [u8; REC] {
    let mut b = [0u8; REC];
    b[..4].copy_from_slice(&r.sender.to_le_bytes());
    b[4..8].copy_from_slice(&r.seq.to_le_bytes());
    b[8..].copy_from_slice(&r.flags.to_le_bytes());
    b
}

fn read_log(path: &Path) -> Vec<Rec> {
    let data = fs::read(path).unwrap_or_default();
    data.chunks_exact(REC)
        .map(|c| Rec {
            sender: u32::from_le_bytes(c[..4].try_into().unwrap()),
            seq: u32::from_le_bytes(c[4..8].try_into().unwrap()),
            flags: u32::from_le_bytes(c[8..].try_into().unwrap()),
        })
        .collect()
}

/// How many messages a sender has written whole (its counter file).
fn sender_done(path: &Path) -> u32 {
    let data = fs::read(path).unwrap_or_default();
    data.get(..4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
}

/// Read one message from a persistent recv descriptor: data, then the 0 that
/// ends it. An end of file with no message before it is an error.
fn read_one(f: &mut File, buf: &mut [u8]) -> io::Result<Vec<u8>> {
    let mut msg = Vec::new();
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            if msg.is_empty() {
                return Err(io::Error::other("end of file with no message before it"));
            }
            return Ok(msg);
        }
        msg.extend_from_slice(&buf[..n]);
    }
}

// ------------------------------------------------------------------ children

const CHILD_ENV: &str = "IPCFS_TORTURE_CHILD";

/// Not a test: the entry point of the helper processes of this suite (see the
/// top of the file). Does nothing unless `IPCFS_TORTURE_CHILD` is set.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    match role.as_str() {
        "receiver" => child_receiver(),
        "sender" => child_sender(),
        "peer" => child_peer(),
        "blocker" => child_blocker(),
        "linker" => child_linker(),
        "opener" => child_opener(),
        "parker" => child_parker(),
        other => panic!("unknown child role {other:?}"),
    }
}

fn env_str(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("child: {k} is not set"))
}

fn env_num<T: std::str::FromStr>(k: &str) -> T {
    let v = env_str(k);
    v.parse()
        .unwrap_or_else(|_| panic!("child: {k}={v:?} is not a number"))
}

/// A line for the parent (on stdout, after whatever libtest printed).
fn say(line: &str) {
    let mut o = io::stdout().lock();
    let _ = write!(o, "\n@@{line}\n");
    let _ = o.flush();
}

fn os_err(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Receives from `T_PATH` with one persistent descriptor and logs every
/// message to `T_LOG`; exits on a STOP message or after `T_LIMIT` messages.
/// `T_BUSY`: `fail` (EBUSY is an error), `report` (say EBUSY and exit) or
/// `retry` (retry the open, for a new exclusive holder).
fn child_receiver() {
    let path = PathBuf::from(env_str("T_PATH"));
    let busy = env_str("T_BUSY");
    let limit: u64 = env_num("T_LIMIT");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(env_str("T_LOG"))
        .expect("open the receiver's log");
    let start = Instant::now();
    let mut f = loop {
        match File::open(&path) {
            Ok(f) => break f,
            Err(e) if os_err(&e) == libc::EBUSY && busy == "report" => {
                say("EBUSY");
                return;
            }
            Err(e)
                if os_err(&e) == libc::EBUSY
                    && busy == "retry"
                    && start.elapsed() < Duration::from_secs(30) =>
            {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    };
    say(&format!("OPEN {}", start.elapsed().as_micros()));
    let mut buf = vec![0u8; RBUF];
    let mut n = 0u64;
    let mut rec = |r: Rec| {
        log.write_all(&rec_bytes(r))
            .expect("write the receiver's log")
    };
    loop {
        // The data of one message: it is logged as soon as its header's length
        // has arrived, before the end-of-file read, so that a receiver killed
        // at any point holds at most the one message its read just returned.
        let mut msg = Vec::new();
        let mut eof = false;
        while msg.len() < HDR || msg.len() < HDR + payload_field(&msg) {
            let k = f
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("read after {n} messages: {e}"));
            if k == 0 {
                eof = true;
                break;
            }
            msg.extend_from_slice(&buf[..k]);
        }
        assert!(!msg.is_empty(), "end of file with no message before it");
        let (sender, dest, seq, mut flags) = check(&msg);
        if flags == 0 && dest != 0 {
            flags |= F_DEST;
        }
        rec(Rec { sender, seq, flags });
        if !eof {
            // The end of file; more data means the message was longer than
            // its header says: logged again, as corrupt.
            let mut more = 0;
            loop {
                let k = f
                    .read(&mut buf)
                    .unwrap_or_else(|e| panic!("end-of-file read after {n} messages: {e}"));
                if k == 0 {
                    break;
                }
                more += k;
            }
            if more > 0 {
                rec(Rec {
                    sender,
                    seq,
                    flags: F_LEN,
                });
            }
        }
        if sender == STOP && flags == 0 {
            break;
        }
        n += 1;
        if n == limit {
            break;
        }
    }
    say(&format!("DONE {n}"));
}

/// Sends `T_COUNT` messages as sender `T_ID` on `T_PATH`, one write each, and
/// after each whole write stores how many are done in `T_LOG`; then `T_STOPS`
/// STOP messages.
fn child_sender() {
    let path = PathBuf::from(env_str("T_PATH"));
    let id: u32 = env_num("T_ID");
    let count: u32 = env_num("T_COUNT");
    let stops: u32 = env_num("T_STOPS");
    let ctr = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(env_str("T_LOG"))
        .expect("open the sender's counter");
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    for seq in 0..count {
        let msg = encode(id, 0, seq);
        let n = f
            .write(&msg)
            .unwrap_or_else(|e| panic!("sender {id}: write {seq}: {e}"));
        assert_eq!(n, msg.len(), "sender {id}: short write of message {seq}");
        ctr.write_all_at(&(seq + 1).to_le_bytes(), 0)
            .expect("write the sender's counter");
    }
    for _ in 0..stops {
        f.write_all(&encode(STOP, 0, 0)).expect("send STOP");
    }
    say("DONE");
}

/// One of `T_N` processes exchanging `T_COUNT` messages with every other over
/// `proc/<pid>/send` and `proc/<pid>/recv` of mount `T_MOUNT`. Reads the pids
/// (index-aligned) from stdin, opens everything, says READY, waits for `go`.
fn child_peer() {
    let mount = PathBuf::from(env_str("T_MOUNT"));
    let me: usize = env_num("T_INDEX");
    let k: u32 = env_num("T_COUNT");
    let mut stdin = BufReader::new(io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).expect("read the pids");
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids[me], std::process::id(), "my index in the pid list");
    let mut sends = Vec::new();
    let mut recvs = Vec::new();
    for (j, &p) in pids.iter().enumerate() {
        if j == me {
            continue;
        }
        let s = mount.join(format!("proc/{p}/send"));
        let r = mount.join(format!("proc/{p}/recv"));
        let sf = OpenOptions::new()
            .write(true)
            .open(&s)
            .unwrap_or_else(|e| panic!("open {}: {e}", s.display()));
        let rf = File::open(&r).unwrap_or_else(|e| panic!("open {}: {e}", r.display()));
        sends.push((j, sf));
        recvs.push((j, rf));
    }
    say("READY");
    line.clear();
    stdin.read_line(&mut line).expect("read go");
    assert_eq!(line.trim(), "go");
    let totals = thread::scope(|s| {
        for (j, mut f) in sends {
            s.spawn(move || {
                for seq in 0..k {
                    let msg = encode(me as u32, j as u32, seq);
                    let n = f
                        .write(&msg)
                        .unwrap_or_else(|e| panic!("{me} -> {j}: write {seq}: {e}"));
                    assert_eq!(n, msg.len(), "{me} -> {j}: short write");
                }
            });
        }
        let readers: Vec<_> = recvs
            .into_iter()
            .map(|(j, mut f)| {
                s.spawn(move || {
                    // [received, corrupt, misrouted, duplicated or reordered, lost]
                    let mut t = [0u64; 5];
                    let mut buf = vec![0u8; RBUF];
                    let mut want = 0u32;
                    while want < k {
                        let msg = read_one(&mut f, &mut buf)
                            .unwrap_or_else(|e| panic!("{me} <- {j}: read {want}: {e}"));
                        let (sender, dest, seq, flags) = check(&msg);
                        t[0] += 1;
                        if flags != 0 {
                            t[1] += 1;
                        } else if sender != j as u32 || dest != me as u32 {
                            t[2] += 1;
                        } else if seq < want {
                            t[3] += 1;
                        } else {
                            t[4] += u64::from(seq - want);
                            want = seq + 1;
                        }
                    }
                    t
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .fold([0u64; 5], |a, t| std::array::from_fn(|i| a[i] + t[i]))
    });
    say(&format!(
        "RESULT {} {} {} {} {}",
        totals[0], totals[1], totals[2], totals[3], totals[4]
    ));
}

/// One call that blocks in the daemon (`T_OP` on `T_PATH`), or a loop of
/// sends or receives; reports how it ended: `RESULT errno N` or `RESULT ok`.
fn child_blocker() {
    let op = env_str("T_OP");
    let path = PathBuf::from(env_str("T_PATH"));
    let mut buf = vec![0u8; RBUF];
    let r: io::Result<String> = (|| match op.as_str() {
        "read" | "packets-read" => {
            let mut f = File::open(&path)?;
            say("OPEN");
            let n = f.read(&mut buf)?;
            Ok(format!("read {n} bytes"))
        }
        "write" => {
            let mut f = OpenOptions::new().write(true).open(&path)?;
            say("OPEN");
            let n = f.write(b"blocked sender")?;
            Ok(format!("wrote {n} bytes"))
        }
        "receipt" => {
            let mut f = OpenOptions::new().read(true).write(true).open(&path)?;
            f.write_all(b"wants a receipt")?;
            say("OPEN");
            let n = f.read(&mut buf)?;
            Ok(format!("receipt of {n} bytes"))
        }
        "poll" => {
            let mut f = open_with(&path, true, false, libc::O_NONBLOCK)?;
            say("OPEN");
            let mut p = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&f),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, -1) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            // poll returned: the next read says why.
            let n = f.read(&mut buf)?;
            Ok(format!("poll {:#x}, then read {n} bytes", p.revents))
        }
        "loop-send" => {
            let mut f = OpenOptions::new().write(true).open(&path)?;
            say("OPEN");
            for seq in 0.. {
                f.write_all(&encode(1, 0, seq))?;
            }
            unreachable!()
        }
        "loop-recv" => {
            let mut f = File::open(&path)?;
            say("OPEN");
            loop {
                read_one(&mut f, &mut buf)?;
            }
        }
        other => panic!("unknown blocker op {other:?}"),
    })();
    match r {
        Ok(what) => say(&format!("RESULT ok {what}")),
        Err(e) => say(&format!("RESULT errno {}", os_err(&e))),
    }
}

/// Opens `proc/<pid>/recv` (O_NONBLOCK) of `T_MOUNT` for every pid read from
/// stdin, until the first refusal; reports `OPENED n` and `REFUSED errno`
/// (or `REFUSED 0`), then holds the descriptors until stdin closes.
fn child_linker() {
    let mount = PathBuf::from(env_str("T_MOUNT"));
    let mut stdin = BufReader::new(io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).expect("read the pids");
    let mut held = Vec::new();
    let mut refused = 0;
    for p in line.split_whitespace() {
        match open_with(
            &mount.join(format!("proc/{p}/recv")),
            true,
            false,
            libc::O_NONBLOCK,
        ) {
            Ok(f) => held.push(f),
            Err(e) => {
                refused = os_err(&e);
                break;
            }
        }
    }
    say(&format!("OPENED {}", held.len()));
    say(&format!("REFUSED {refused}"));
    let _ = stdin.read_line(&mut line);
}

/// Opens `T_PATH` write-only up to `T_MAX` times, until the first refusal;
/// reports like `child_linker`, holds the descriptors until stdin closes.
fn child_opener() {
    let path = PathBuf::from(env_str("T_PATH"));
    let max: usize = env_num("T_MAX");
    let mut held = Vec::new();
    let mut refused = 0;
    while held.len() < max {
        match OpenOptions::new().write(true).open(&path) {
            Ok(f) => held.push(f),
            Err(e) => {
                refused = os_err(&e);
                break;
            }
        }
    }
    say(&format!("OPENED {}", held.len()));
    say(&format!("REFUSED {refused}"));
    let _ = io::stdin().read_line(&mut String::new());
}

/// `T_THREADS` threads, each opening `T_PATH` and blocking in a read of it;
/// each refusal (of the open or of the read) is reported as `REFUSED errno`.
/// Killed by the parent.
fn child_parker() {
    let path = PathBuf::from(env_str("T_PATH"));
    let threads: usize = env_num("T_THREADS");
    let (tx, rx) = mpsc::channel::<i32>();
    for _ in 0..threads {
        let (path, tx) = (path.clone(), tx.clone());
        thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let r = File::open(&path).and_then(|mut f| f.read(&mut [0u8; 64]));
                let _ = tx.send(match r {
                    Ok(_) => -1,
                    Err(e) => os_err(&e),
                });
            })
            .expect("spawn a parked reader thread");
    }
    drop(tx);
    for e in rx {
        say(&format!("REFUSED {e}"));
    }
}

/// A child process of this suite, killed and reaped on drop.
struct Kid {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Kid {
    fn spawn(role: &str, what: &str, env: &[(&str, String)]) -> Kid {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn child {what}: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&line);
                        if let Some(i) = s.find("@@")
                            && tx.send(s[i + 2..].trim_end().to_string()).is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().expect("child stderr");
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Kid {
            what: what.to_string(),
            child,
            stdin,
            lines,
            stderr,
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn tell(&mut self, line: &str) {
        let w = self.stdin.as_mut().expect("child stdin");
        writeln!(w, "{line}").unwrap_or_else(|e| panic!("write to {}: {e}", self.what));
        w.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line from the child starting with `prefix` (the rest of it);
    /// other lines are skipped. Panics on deadline or if the child ends.
    fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "child {} (pid {}) did not say {prefix:?} within {timeout:?}; stderr:\n{}",
                    self.what,
                    self.pid(),
                    self.stderr()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.wait(step());
                    panic!(
                        "child {} ended ({}) without saying {prefix:?}; stderr:\n{}",
                        self.what,
                        describe(&st),
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Lines the child has said so far and not yet taken.
    fn drain(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on a child");
        }
        self.status
    }

    /// Wait for the child to exit; on deadline SIGKILL it and panic.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "child {} (pid {}) still running after {timeout:?} (killed); stderr:\n{}",
                    self.what,
                    self.pid(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Wait for the child and require a successful exit.
    fn wait_ok(&mut self, timeout: Duration) {
        let st = self.wait(timeout);
        self.assert_ok(st);
    }

    fn assert_ok(&self, st: ExitStatus) {
        assert!(
            st.success(),
            "child {} failed ({}); stderr:\n{}",
            self.what,
            describe(&st),
            self.stderr()
        );
    }

    /// SIGKILL and reap (no-op once reaped).
    fn kill(&mut self) {
        if self.try_wait().is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.kill();
    }
}

fn receiver_kid(what: &str, recv: &Path, log: &Path, busy: &str, limit: u64) -> Kid {
    Kid::spawn(
        "receiver",
        what,
        &[
            ("T_PATH", recv.display().to_string()),
            ("T_LOG", log.display().to_string()),
            ("T_BUSY", busy.to_string()),
            ("T_LIMIT", limit.to_string()),
        ],
    )
}

fn sender_kid(what: &str, send: &Path, id: u32, count: u32, log: &Path, stops: u32) -> Kid {
    Kid::spawn(
        "sender",
        what,
        &[
            ("T_PATH", send.display().to_string()),
            ("T_ID", id.to_string()),
            ("T_COUNT", count.to_string()),
            ("T_LOG", log.display().to_string()),
            ("T_STOPS", stops.to_string()),
        ],
    )
}

fn blocker_kid(op: &str, path: &Path) -> Kid {
    Kid::spawn(
        "blocker",
        &format!("{op} {}", path.display()),
        &[
            ("T_OP", op.to_string()),
            ("T_PATH", path.display().to_string()),
        ],
    )
}

// ------------------------------------------------------------------ helpers

/// A mailbox `name` with `policy` written to its policy file (if not empty).
fn mailbox(m: &Mount, name: &str, policy: &str) -> PathBuf {
    let b = m.p(name);
    fs::create_dir(&b).unwrap_or_else(|e| panic!("mkdir {}: {e}", b.display()));
    if !policy.is_empty() {
        set_policy(&b.join("policy"), policy);
    }
    b
}

fn stat(b: &Path) -> HashMap<String, String> {
    status_map(&b.join("status"))
}

/// One message sent from this process, blocking (with a deadline).
fn send_blocking(path: &Path, msg: Vec<u8>) {
    let p = path.to_path_buf();
    let r = within(step(), &format!("send to {}", path.display()), move || {
        OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut f| f.write_all(&msg))
    });
    r.unwrap_or_else(|e| panic!("send to {}: {e}", path.display()));
}

/// A field of /proc/<pid>/status given in kB (VmRSS, VmHWM), in bytes.
fn proc_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Polls `done` every few ms until it returns Some. Fails when `progress`
/// stays the same for `stall()`, or after `cap()`.
fn drive<T>(
    what: &str,
    mut progress: impl FnMut() -> u64,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    let mut last = progress();
    let mut changed = Instant::now();
    loop {
        if let Some(v) = done() {
            return v;
        }
        let p = progress();
        if p != last {
            last = p;
            changed = Instant::now();
        }
        if changed.elapsed() > stall() {
            panic!(
                "{what}: no progress for {:?} (progress counter at {p})",
                stall()
            );
        }
        if start.elapsed() > cap() {
            panic!("{what}: not done after {:?}", cap());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `done` every few ms until it holds; panics naming `what` after `timeout`.
fn drive_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            panic!("{what}: not done after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The daemon must still be running and serving: a mailbox round trip.
fn daemon_answers(m: &mut Mount, what: &str) {
    assert!(
        m.daemon_exited().is_none(),
        "{what}: the daemon has exited; its output:\n{}",
        m.daemon_log()
    );
    let name = format!("alive-{}", std::process::id());
    let b = m.p(&name);
    let r = within(step(), "daemon round trip", move || {
        fs::create_dir(&b)?;
        // Whatever the root policy says (the fuzz may leave capacity=0).
        write_policy(
            &b.join("policy"),
            "arbitrary capacity=16 max-message-size=64K",
        )?;
        send_nb(&b.join("send"), b"still here")?;
        let got = recv_nb(&b.join("recv"))?;
        fs::remove_dir(&b)?;
        Ok::<_, io::Error>(got)
    });
    assert_eq!(
        r.unwrap_or_else(|e| panic!("{what}: the daemon does not answer: {e}")),
        b"still here",
        "{what}"
    );
}

// ------------------------------------------------------------------ tallies

/// What the senders of a run did: id -> (messages written whole, killed).
type Senders = HashMap<u32, (u32, bool)>;

#[derive(Debug, Default)]
struct Tally {
    /// Data messages in the logs.
    received: u64,
    stops: u64,
    duplicated: u64,
    corrupted: u64,
    /// A receiver saw a sender's sequence numbers go backwards.
    out_of_order: u64,
    /// Messages never written (past the sender's last write + its in-flight one).
    phantom: u64,
    unknown_sender: u64,
    /// Written whole (the sender saw its write return) and never received.
    lost: u64,
    /// The in-flight message of a killed sender, received (whole).
    in_flight_delivered: u64,
}

fn tally(senders: &Senders, logs: &[Vec<Rec>]) -> Tally {
    let mut t = Tally::default();
    let mut seen: HashMap<(u32, u32), u32> = HashMap::new();
    for log in logs {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for r in log {
            if r.flags != 0 {
                t.corrupted += 1;
                continue;
            }
            if r.sender == STOP {
                t.stops += 1;
                continue;
            }
            let Some(&(done, killed)) = senders.get(&r.sender) else {
                t.unknown_sender += 1;
                continue;
            };
            t.received += 1;
            if r.seq > done || (r.seq == done && !killed) {
                t.phantom += 1;
            } else if r.seq == done {
                t.in_flight_delivered += 1;
            }
            if last.get(&r.sender).is_some_and(|&l| r.seq <= l) {
                t.out_of_order += 1;
            }
            last.insert(r.sender, r.seq);
            *seen.entry((r.sender, r.seq)).or_default() += 1;
        }
    }
    t.duplicated = seen.values().map(|&c| u64::from(c) - 1).sum();
    for (&id, &(done, _)) in senders {
        t.lost += (0..done).filter(|s| !seen.contains_key(&(id, *s))).count() as u64;
    }
    t
}

fn assert_clean(what: &str, t: &Tally) {
    assert!(
        t.duplicated == 0
            && t.corrupted == 0
            && t.out_of_order == 0
            && t.phantom == 0
            && t.unknown_sender == 0,
        "{what}: {t:?}"
    );
}

// ------------------------------------------------------------------ 1. rules

/// N senders and M receivers (separate processes) on one mailbox under `rule`.
fn rule_run(rule: &str) {
    let _ = seed(&format!("rule {rule}"));
    let (n_send, n_recv) = by_mode((4u32, 4usize), (8, 8));
    let total: u32 = match rule {
        "broadcast" => by_mode(20_000, 250_000),
        _ => by_mode(20_000, 1_000_000),
    };
    let n_send = if rule == "pair" { 1 } else { n_send };
    let per = total / n_send;
    let total = per * n_send;
    let m = Mount::new();
    let b = mailbox(&m, "box", rule);
    let (send, recv) = (b.join("send"), b.join("recv"));
    let logs = tempfile::tempdir().unwrap();
    let log = |n: &str| logs.path().join(n);

    // Receivers first, all open before the first message.
    let full = match rule {
        "exclusive" | "pair" => 1,
        _ => n_recv,
    };
    let mut recvs: Vec<(Kid, PathBuf)> = (0..full)
        .map(|i| {
            let l = log(&format!("r{i}"));
            (
                receiver_kid(&format!("receiver {i}"), &recv, &l, "fail", 0),
                l,
            )
        })
        .collect();
    for (k, _) in &mut recvs {
        k.expect("OPEN", step());
    }
    // broadcast: one more receiver that leaves halfway (its log must be a
    // prefix of everybody's); exclusive: the others are refused.
    let mut leaver = None;
    let mut contenders = 0;
    match rule {
        "broadcast" => {
            let l = log("leaver");
            let mut k = receiver_kid("leaver", &recv, &l, "fail", u64::from(total / 2));
            k.expect("OPEN", step());
            leaver = Some((k, l));
        }
        "exclusive" => {
            assert_eq!(stat(&b)["holder"], recvs[0].0.pid().to_string());
            for i in 1..n_recv {
                let mut k = receiver_kid(
                    &format!("contender {i}"),
                    &recv,
                    &log(&format!("c{i}")),
                    "report",
                    0,
                );
                k.expect("EBUSY", step());
                k.wait_ok(step());
                contenders += 1;
            }
        }
        _ => {}
    }
    let opened = full + usize::from(leaver.is_some());
    assert_eq!(stat(&b)["receivers"], opened.to_string(), "{:?}", stat(&b));

    let start = Instant::now();
    let stops_by_sender = u32::from(rule == "pair");
    let mut senders: Vec<Kid> = (0..n_send)
        .map(|i| {
            sender_kid(
                &format!("sender {i}"),
                &send,
                i + 1,
                per,
                &log(&format!("s{i}")),
                stops_by_sender,
            )
        })
        .collect();

    // While the load runs: the rule refuses others; a broadcast receiver joins
    // late (its log must be a suffix of everybody's).
    let mut joiner = None;
    let mut probes = 0u32;
    let mut last_probe = Instant::now();
    let received = || num(&stat(&b), "received");
    drive(&format!("{rule}: senders"), received, || {
        if rule == "pair" && last_probe.elapsed() > Duration::from_millis(50) {
            last_probe = Instant::now();
            let s = stat(&b);
            if s["pair"].split(' ').count() == 2 {
                for (p, fl) in [(&send, libc::O_WRONLY), (&recv, libc::O_RDONLY)] {
                    let r = in_child(p, fl | libc::O_NONBLOCK, false, None);
                    // Once the sender has exited, its slot is free again.
                    if r.is_ok() && senders[0].try_wait().is_some() {
                        continue;
                    }
                    assert_errno(r, libc::EBUSY, "a third process opening a busy pair");
                    probes += 1;
                }
            }
        }
        if rule == "exclusive" && last_probe.elapsed() > Duration::from_millis(50) {
            last_probe = Instant::now();
            assert_errno(
                in_child(&recv, libc::O_RDONLY | libc::O_NONBLOCK, false, None),
                libc::EBUSY,
                "a second process opening recv of a held exclusive mailbox",
            );
            probes += 1;
        }
        if rule == "broadcast" && joiner.is_none() && num(&stat(&b), "sent") >= u64::from(total / 3)
        {
            let l = log("joiner");
            let mut k = receiver_kid("joiner", &recv, &l, "fail", 0);
            k.expect("OPEN", step());
            joiner = Some((k, l));
        }
        for s in &mut senders {
            if let Some(st) = s.try_wait() {
                s.assert_ok(st);
            }
        }
        for (r, _) in &mut recvs {
            if let Some(st) = r.try_wait() {
                panic!(
                    "{rule}: {} ended before the end ({}); stderr:\n{}",
                    r.what,
                    describe(&st),
                    r.stderr()
                );
            }
        }
        senders
            .iter_mut()
            .all(|s| s.try_wait().is_some())
            .then_some(())
    });
    let stops = match rule {
        "arbitrary" => full as u32,
        "pair" => 0,
        _ => 1,
    };
    for _ in 0..stops {
        send_blocking(&send, encode(STOP, 0, 0));
    }
    let mut all: Vec<(Kid, PathBuf)> = recvs;
    all.extend(joiner);
    drive(&format!("{rule}: receivers"), received, || {
        all.iter_mut()
            .all(|(k, _)| k.try_wait().is_some())
            .then_some(())
    });
    let elapsed = start.elapsed();
    for (k, _) in &mut all {
        k.wait_ok(step());
    }
    if let Some((k, _)) = &mut leaver {
        k.wait_ok(step());
    }
    let joiner_log = (rule == "broadcast").then(|| read_log(&all.pop().unwrap().1));
    let logs: Vec<Vec<Rec>> = all.iter().map(|(_, l)| read_log(l)).collect();
    let senders: Senders = (1..=n_send).map(|id| (id, (per, false))).collect();
    let s = stat(&b);
    let bytes: u64 = (0..n_send)
        .flat_map(|i| (0..per).map(move |q| (HDR + payload_len(i + 1, 0, q)) as u64))
        .sum();
    let per_recv: Vec<usize> = logs.iter().map(Vec::len).collect();

    if rule == "broadcast" {
        // Everybody open for the whole run: the same messages in the same order.
        let common = &logs[0];
        for (i, l) in logs.iter().enumerate() {
            assert!(
                l == common,
                "broadcast: receiver {i} got {} records, receiver 0 {}; first difference at {:?}",
                l.len(),
                common.len(),
                l.iter().zip(common).position(|(a, b)| a != b)
            );
        }
        let t = tally(&senders, std::slice::from_ref(common));
        assert_clean("broadcast", &t);
        assert_eq!(t.lost, 0, "broadcast: {t:?}");
        assert_eq!(t.received, u64::from(total), "broadcast: {t:?}");
        let lv = read_log(&leaver.as_ref().unwrap().1);
        assert_eq!(lv.len() as u32, total / 2, "the leaver's messages");
        assert!(lv[..] == common[..lv.len()], "the leaver's log is a prefix");
        let jl = joiner_log.unwrap();
        assert!(
            !jl.is_empty() && jl.len() < common.len(),
            "the joiner got {} of {}",
            jl.len(),
            common.len()
        );
        assert!(
            jl[..] == common[common.len() - jl.len()..],
            "the joiner's log is a suffix of everybody's"
        );
        let copies: u64 =
            logs.iter().map(|l| l.len() as u64).sum::<u64>() + lv.len() as u64 + jl.len() as u64;
        assert_eq!(num(&s, "received"), copies, "{s:?}");
        assert_eq!(num(&s, "sent"), u64::from(total + stops), "{s:?}");
        assert_eq!(num(&s, "messages"), 0, "{s:?}");
        assert_eq!(num(&s, "truncated"), 0, "{s:?}");
        println!(
            "torture rule broadcast: {n_send} senders x {full} receivers + 1 leaving at {} + 1 joining after {}: \
             {total} messages ({:.1} MiB) in {elapsed:.2?} = {:.0} msg/s, {:.0} copies/s; \
             lost 0, duplicated 0, corrupted 0, out of order 0; \
             status sent {} received {} dropped {} (the leaver's unread copies)",
            total / 2,
            common.len() - jl.len(),
            mib(bytes),
            f64::from(total) / elapsed.as_secs_f64(),
            copies as f64 / elapsed.as_secs_f64(),
            s["sent"],
            s["received"],
            s["dropped"],
        );
        return;
    }

    let t = tally(&senders, &logs);
    assert_clean(rule, &t);
    assert_eq!(t.lost, 0, "{rule}: {t:?}");
    assert_eq!(t.received, u64::from(total), "{rule}: {t:?}");
    assert_eq!(
        t.stops,
        u64::from(stops.max(stops_by_sender)),
        "{rule}: {t:?}"
    );
    if rule != "arbitrary" {
        assert_eq!(logs.len(), 1);
    }
    assert_eq!(num(&s, "messages"), 0, "{s:?}");
    assert_eq!(
        num(&s, "sent"),
        u64::from(total + stops.max(stops_by_sender)),
        "{s:?}"
    );
    assert_eq!(num(&s, "received"), num(&s, "sent"), "{s:?}");
    assert_eq!(num(&s, "dropped"), 0, "{s:?}");
    assert_eq!(num(&s, "truncated"), 0, "{s:?}");
    println!(
        "torture rule {rule}: {n_send} senders x {full} receivers{}: {total} messages ({:.1} MiB) \
         in {elapsed:.2?} = {:.0} msg/s; per receiver (with its STOP) {per_recv:?}; \
         lost 0, duplicated 0, corrupted 0, out of order 0;{} \
         status sent {} received {}",
        if contenders > 0 {
            format!(" (+{contenders} refused with EBUSY)")
        } else {
            String::new()
        },
        mib(bytes),
        f64::from(total) / elapsed.as_secs_f64(),
        if probes > 0 {
            format!(" {probes} other processes refused with EBUSY while it ran;")
        } else {
            String::new()
        },
        s["sent"],
        s["received"],
    );
}

#[test]
fn rule_arbitrary_every_message_exactly_once() {
    rule_run("arbitrary");
}

#[test]
fn rule_broadcast_every_receiver_gets_every_message_in_order() {
    rule_run("broadcast");
}

#[test]
fn rule_exclusive_one_holder_gets_everything() {
    rule_run("exclusive");
}

#[test]
fn rule_pair_one_sender_one_receiver() {
    rule_run("pair");
}

// ------------------------------------------------------------------ 2. links

/// P processes, each sending K sequence-numbered messages to every other over
/// `proc/<pid>/send` and receiving theirs over `proc/<pid>/recv`.
#[test]
fn direct_links_between_many_processes() {
    let _ = seed("links");
    let (p, k) = by_mode((4usize, 1500u32), (8, 4000));
    let m = Mount::new();
    let mut kids: Vec<Kid> = (0..p)
        .map(|i| {
            Kid::spawn(
                "peer",
                &format!("peer {i}"),
                &[
                    ("T_MOUNT", m.path().display().to_string()),
                    ("T_INDEX", i.to_string()),
                    ("T_COUNT", k.to_string()),
                ],
            )
        })
        .collect();
    let pids: Vec<String> = kids.iter().map(|c| c.pid().to_string()).collect();
    let line = pids.join(" ");
    for c in &mut kids {
        c.tell(&line);
    }
    for c in &mut kids {
        c.expect("READY", step());
    }
    let start = Instant::now();
    for c in &mut kids {
        c.tell("go");
    }
    let mut results: Vec<Option<String>> = vec![None; p];
    let deadline = by_mode(Duration::from_secs(60), Duration::from_secs(900));
    drive_until("links: peers", deadline, || {
        for (i, c) in kids.iter_mut().enumerate() {
            if results[i].is_none()
                && let Some(l) = c.drain().into_iter().find(|l| l.starts_with("RESULT"))
            {
                results[i] = Some(l);
            }
            if let Some(st) = c.try_wait() {
                c.assert_ok(st);
            }
        }
        kids.iter_mut().all(|c| c.try_wait().is_some())
    });
    let elapsed = start.elapsed();
    let mut sum = [0u64; 5];
    for (i, r) in results.iter().enumerate() {
        let r = r
            .as_ref()
            .unwrap_or_else(|| panic!("peer {i} gave no result"));
        let v: Vec<u64> = r
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(
            v,
            vec![u64::from(k) * (p as u64 - 1), 0, 0, 0, 0],
            "peer {i}: [received, corrupted, misrouted, duplicated or reordered, lost]"
        );
        for j in 0..5 {
            sum[j] += v[j];
        }
    }
    // Every link is idle once both ends have gone: its state is reclaimed.
    wait_until(step(), "proc/status shows no link left", || {
        num(&status_map(&m.p("proc/status")), "links") == 0
    });
    let ps = status_map(&m.p("proc/status"));
    assert_eq!(num(&ps, "dropped-on-exit"), 0, "{ps:?}");
    println!(
        "torture links: {p} processes, {} directed links x {k} messages = {} messages in {elapsed:.2?} \
         = {:.0} msg/s; lost 0, duplicated 0, corrupted 0, misrouted 0, out of order 0; \
         proc/status afterwards: links {} dropped-on-exit {}",
        p * (p - 1),
        sum[0],
        sum[0] as f64 / elapsed.as_secs_f64(),
        ps["links"],
        ps["dropped-on-exit"],
    );
}

// ------------------------------------------------------------------ 3. kills

/// One mailbox under load whose processes get killed: its live senders and
/// receivers, and a record of every one that has ended.
struct Load {
    name: &'static str,
    b: PathBuf,
    dir: PathBuf,
    per_sender: u32,
    /// What a new receiver does on EBUSY (`retry` for an exclusive holder).
    busy: &'static str,
    senders: Vec<(Kid, u32)>,
    receivers: Vec<Kid>,
    /// Senders that have ended: (id, killed).
    ended: Vec<(u32, bool)>,
    /// The log of every receiver there has been.
    logs: Vec<PathBuf>,
    killed_senders: u32,
    killed_receivers: u32,
}

impl Load {
    fn new(
        name: &'static str,
        b: PathBuf,
        dir: &Path,
        per_sender: u32,
        busy: &'static str,
    ) -> Load {
        Load {
            name,
            b,
            dir: dir.to_path_buf(),
            per_sender,
            busy,
            senders: Vec::new(),
            receivers: Vec::new(),
            ended: Vec::new(),
            logs: Vec::new(),
            killed_senders: 0,
            killed_receivers: 0,
        }
    }

    fn sender_log(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{}-s{id}", self.name))
    }

    fn spawn_sender(&mut self, next_id: &mut u32) {
        let id = *next_id;
        *next_id += 1;
        let k = sender_kid(
            &format!("{} sender {id}", self.name),
            &self.b.join("send"),
            id,
            self.per_sender,
            &self.sender_log(id),
            0,
        );
        self.senders.push((k, id));
    }

    fn spawn_receiver(&mut self) {
        let l = self.dir.join(format!("{}-r{}", self.name, self.logs.len()));
        let k = receiver_kid(
            &format!("{} receiver {}", self.name, self.logs.len()),
            &self.b.join("recv"),
            &l,
            self.busy,
            0,
        );
        self.receivers.push(k);
        self.logs.push(l);
    }

    /// Senders that have finished are recorded (and replaced if `respawn`);
    /// a receiver must never end on its own.
    fn reap(&mut self, respawn: bool, next_id: &mut u32) {
        let mut i = 0;
        while i < self.senders.len() {
            if let Some(st) = self.senders[i].0.try_wait() {
                self.senders[i].0.assert_ok(st);
                let (_, id) = self.senders.swap_remove(i);
                self.ended.push((id, false));
                if respawn {
                    self.spawn_sender(next_id);
                }
            } else {
                i += 1;
            }
        }
        for r in &mut self.receivers {
            if let Some(st) = r.try_wait() {
                panic!(
                    "{} ended on its own ({}); stderr:\n{}",
                    r.what,
                    describe(&st),
                    r.stderr()
                );
            }
        }
    }

    fn kill_sender(&mut self, rng: &mut Rng, next_id: &mut u32) {
        let i = rng.below(self.senders.len() as u64) as usize;
        let (mut k, id) = self.senders.swap_remove(i);
        let finished = k.try_wait();
        k.kill();
        if let Some(st) = finished {
            k.assert_ok(st);
        } else {
            self.killed_senders += 1;
        }
        self.ended.push((id, finished.is_none()));
        self.spawn_sender(next_id);
    }

    fn kill_receiver(&mut self, rng: &mut Rng) {
        let i = rng.below(self.receivers.len() as u64) as usize;
        let mut k = self.receivers.swap_remove(i);
        if let Some(st) = k.try_wait() {
            panic!(
                "{} ended on its own ({}); stderr:\n{}",
                k.what,
                describe(&st),
                k.stderr()
            );
        }
        k.kill();
        self.killed_receivers += 1;
        self.spawn_receiver();
    }

    /// After the STOPs: check what every receiver logged against what every
    /// sender wrote, and the status counters; print the figures.
    fn verify(&self, stops: u64) {
        let senders: Senders = self
            .ended
            .iter()
            .map(|&(id, killed)| (id, (sender_done(&self.sender_log(id)), killed)))
            .collect();
        let logs: Vec<Vec<Rec>> = self.logs.iter().map(|l| read_log(l)).collect();
        let t = tally(&senders, &logs);
        let what = format!("kills, {} mailbox", self.name);
        assert_clean(&what, &t);
        assert_eq!(t.stops, stops, "{what}: {t:?}");
        let s = stat(&self.b);
        let (sent, received, queued, dropped) = (
            num(&s, "sent"),
            num(&s, "received"),
            num(&s, "messages"),
            num(&s, "dropped"),
        );
        assert_eq!(queued, 0, "{what}: {s:?}");
        assert_eq!(
            sent,
            received + queued + dropped,
            "{what}: sent = received + queued + dropped: {s:?}"
        );
        let written: u64 = senders.values().map(|&(d, _)| u64::from(d)).sum();
        let logged = t.received + t.stops;
        // Accepted by the daemon beyond the writes that returned: the
        // in-flight writes of killed senders (whole, or they would be corrupt).
        let in_flight_accepted = sent as i64 - written as i64 - stops as i64;
        assert!(
            in_flight_accepted >= t.in_flight_delivered as i64
                && in_flight_accepted <= i64::from(self.killed_senders),
            "{what}: {in_flight_accepted} messages accepted beyond the completed writes, \
             {} killed senders, {} in-flight messages received; {t:?} {s:?}",
            self.killed_senders,
            t.in_flight_delivered
        );
        // Accepted and never logged by any receiver: taken with a killed receiver.
        let vanished = sent - queued - logged;
        assert!(
            t.lost <= vanished && vanished <= u64::from(self.killed_receivers),
            "{what}: {} written and never received, {vanished} accepted and never logged, \
             but only {} receivers were killed; {t:?} {s:?}",
            t.lost,
            self.killed_receivers
        );
        println!(
            "torture kills, {} mailbox: {} senders ({} killed), {} receivers ({} killed); \
             {written} messages written whole, {} received; lost {} (at most one per killed receiver: {}), \
             in-flight writes of killed senders accepted {in_flight_accepted} / received whole {}; \
             duplicated 0, corrupted 0, out of order 0; \
             status sent {sent} = received {received} + queued {queued} + dropped {dropped}, truncated {}",
            self.name,
            senders.len(),
            self.killed_senders,
            self.logs.len(),
            self.killed_receivers,
            t.received,
            t.lost,
            self.killed_receivers,
            t.in_flight_delivered,
            s["truncated"],
        );
    }
}

/// While an `arbitrary` mailbox (4 senders, 4 receivers) and an `exclusive` one
/// (2 senders, 1 holder) carry load, SIGKILL senders, receivers and the holder
/// at random points and replace them. Nothing duplicated or corrupted, at most
/// one message lost per killed receiver, killed senders' messages whole or
/// absent, status counters consistent.
#[test]
fn kills_under_load() {
    let mut rng = Rng::new(seed("kills"));
    let kills = by_mode(20u32, 300);
    let per_sender = by_mode(300u32, 1000);
    let m = Mount::new();
    let dir = tempfile::tempdir().unwrap();
    let mut next_id = 1u32;
    let mut a = Load::new(
        "arbitrary",
        mailbox(&m, "a", "arbitrary capacity=32"),
        dir.path(),
        per_sender,
        "fail",
    );
    let mut x = Load::new(
        "exclusive",
        mailbox(&m, "x", "exclusive capacity=16"),
        dir.path(),
        per_sender,
        "retry",
    );
    for _ in 0..4 {
        a.spawn_receiver();
    }
    x.spawn_receiver();
    for _ in 0..4 {
        a.spawn_sender(&mut next_id);
    }
    for _ in 0..2 {
        x.spawn_sender(&mut next_id);
    }
    let (ab, xb) = (a.b.clone(), x.b.clone());
    let progress = || num(&stat(&ab), "received") + num(&stat(&xb), "received");
    let start = Instant::now();
    let mut done = 0u32;
    let mut next_at = progress() + rng.range(20, 400);
    drive("kills: the kill phase", progress, || {
        a.reap(true, &mut next_id);
        x.reap(true, &mut next_id);
        let p = progress();
        if p >= next_at {
            match rng.below(100) {
                0..35 => a.kill_receiver(&mut rng),
                35..60 => a.kill_sender(&mut rng, &mut next_id),
                60..75 => x.kill_sender(&mut rng, &mut next_id),
                _ => x.kill_receiver(&mut rng),
            }
            done += 1;
            next_at = p + rng.range(20, 400);
        }
        (done == kills).then_some(())
    });
    // The end: the last senders finish, the queues drain, every receiver waits.
    drive("kills: the last senders", progress, || {
        a.reap(false, &mut next_id);
        x.reap(false, &mut next_id);
        (a.senders.is_empty() && x.senders.is_empty()).then_some(())
    });
    drive("kills: the queues drain", progress, || {
        a.reap(false, &mut next_id);
        x.reap(false, &mut next_id);
        let (sa, sx) = (stat(&a.b), stat(&x.b));
        (num(&sa, "messages") == 0
            && num(&sa, "receivers-waiting") == a.receivers.len() as u64
            && num(&sx, "messages") == 0
            && num(&sx, "receivers-waiting") == 1)
            .then_some(())
    });
    let elapsed = start.elapsed();
    for _ in 0..a.receivers.len() {
        send_blocking(&a.b.join("send"), encode(STOP, 0, 0));
    }
    send_blocking(&x.b.join("send"), encode(STOP, 0, 0));
    for k in a.receivers.iter_mut().chain(x.receivers.iter_mut()) {
        k.wait_ok(step());
    }
    println!(
        "torture kills: {done} SIGKILLs in {elapsed:.2?} ({} arbitrary receivers, {} arbitrary senders, \
         {} exclusive senders, {} exclusive holders)",
        a.killed_receivers, a.killed_senders, x.killed_senders, x.killed_receivers
    );
    a.verify(4);
    x.verify(1);
}

// ------------------------------------------------------------------ 4. daemon death

/// SIGKILL of the daemon while readers, senders, a receipt reader, a link
/// reader, a packets reader, a poller and a sending and a receiving loop use
/// the mount: every one gets an error within seconds; after `umount -l` a new
/// daemon mounts the same mountpoint and works.
#[test]
fn daemon_sigkill_frees_every_client_and_the_mountpoint_mounts_again() {
    let _ = seed("daemon-kill");
    let parent = tempfile::tempdir().unwrap();
    let mp = parent.path().canonicalize().unwrap().join("mnt");
    let argv = vec![
        "--allow-other".to_string(),
        mp.to_string_lossy().into_owned(),
    ];
    let mut m = Mount::spawn_raw(&argv, mp.clone(), None);
    let e = mailbox(&m, "e", "");
    let f = mailbox(&m, "f", "capacity=1");
    send_nb(&f.join("send"), b"fills it").unwrap();
    let z = mailbox(&m, "z", "capacity=0");
    let r = mailbox(&m, "r", "");
    let p = mailbox(&m, "p", "");
    let h = mailbox(&m, "h", "");
    let peer = sleeper();
    let mut clients = vec![
        blocker_kid("read", &e.join("recv")),
        blocker_kid("read", &e.join("recv")),
        blocker_kid("packets-read", &p.join("packets")),
        blocker_kid("write", &f.join("send")),
        blocker_kid("write", &f.join("send")),
        blocker_kid("write", &z.join("send")),
        blocker_kid("receipt", &r.join("send")),
        blocker_kid("read", &m.p(&format!("proc/{}/recv", peer.pid()))),
    ];
    let parked = clients.len() as u64;
    for c in &mut clients {
        c.expect("OPEN", step());
    }
    wait_until(step(), "every blocked call is parked", || {
        num(&status_map(&m.p("proc/status")), "parked") == parked
    });
    let mut poller = blocker_kid("poll", &e.join("recv"));
    poller.expect("OPEN", step());
    clients.push(poller);
    clients.push(blocker_kid("loop-recv", &h.join("recv")));
    clients.push(blocker_kid("loop-send", &h.join("send")));
    wait_until(step(), "the loops move messages", || {
        num(&stat(&h), "received") > 200
    });

    let t0 = Instant::now();
    m.signal_daemon(libc::SIGKILL);
    let st = m.wait_daemon_exit(step());
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{}", describe(&st));
    let deadline = Duration::from_secs(5);
    let mut outcomes = Vec::new();
    let mut slowest = Duration::ZERO;
    for c in &mut clients {
        let res = c.expect("RESULT", deadline.saturating_sub(t0.elapsed()));
        let took = t0.elapsed();
        slowest = slowest.max(took);
        c.wait_ok(step());
        let errno: i32 = res
            .strip_prefix("errno ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: expected an error, got {res:?}", c.what));
        assert!(
            errno == libc::ENOTCONN || errno == libc::ECONNABORTED,
            "{}: {} (expected ENOTCONN or ECONNABORTED)",
            c.what,
            io::Error::from_raw_os_error(errno)
        );
        outcomes.push(format!(
            "{} -> {}",
            c.what.split(' ').next().unwrap(),
            errname(errno)
        ));
    }
    // New calls on the dead mount fail the same way, at once.
    let probe = e.join("send");
    let r = within(step(), "open on a dead mount", move || File::open(&probe));
    let probe_errno = os_err(&r.expect_err("open on a dead mount"));
    assert_eq!(probe_errno, libc::ENOTCONN, "open on a dead mount");

    // The same mountpoint, mounted again by a new daemon, after a lazy unmount.
    let o = Command::new("umount").arg("-l").arg(&mp).output().unwrap();
    assert!(o.status.success(), "umount -l: {}", show(&o));
    wait_until(step(), "the dead mount is gone", || !is_fuse_mounted(&mp));
    let t1 = Instant::now();
    let mut m2 = Mount::spawn_raw(&argv, mp.clone(), None);
    let remount = t1.elapsed();
    assert!(
        !m2.p("e").exists(),
        "a new daemon starts empty: all state was in the old one"
    );
    let b = mailbox(&m2, "again", "");
    let reader = blocker_kid("read", &b.join("recv"));
    wait_status(&b.join("status"), "receivers-waiting", "1");
    send_nb(&b.join("send"), b"after the crash").unwrap();
    let mut reader = reader;
    assert_eq!(
        reader.expect("RESULT", step()),
        format!("ok read {} bytes", b"after the crash".len())
    );
    daemon_answers(&mut m2, "the new daemon");
    println!(
        "torture daemon SIGKILL: {} clients ({parked} parked, a poller, a sending and a receiving loop) \
         all failed within {slowest:.2?}: {}; a new open: {}; remounted on the same path in {remount:.2?}",
        clients.len(),
        outcomes.join(", "),
        errname(probe_errno)
    );
    drop(m2);
    drop(m);
}

fn errname(e: i32) -> String {
    let name = match e {
        libc::ENOTCONN => "ENOTCONN",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOSPC => "ENOSPC",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::ESPIPE => "ESPIPE",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EMFILE => "EMFILE",
        0 => "none",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

// ------------------------------------------------------------------ 5. floods

const FLOOD_LIMIT: u64 = 4 << 20;

fn flood_mount() -> Mount {
    Mount::with_args(&["--max-memory", "4M"])
}

fn flood_rounds() -> usize {
    by_mode(1, 3)
}

/// A few descriptors held by the test, given back one at a time when a status
/// file must be read at the bound (opening it costs a descriptor's share).
struct Reserve {
    path: PathBuf,
    held: Vec<File>,
}

impl Reserve {
    const SIZE: usize = 8;

    fn new(path: PathBuf) -> Reserve {
        let mut r = Reserve {
            path,
            held: Vec::new(),
        };
        r.refill();
        r
    }

    fn refill(&mut self) {
        while self.held.len() < Reserve::SIZE {
            let f = open_with(&self.path, false, true, 0)
                .unwrap_or_else(|e| panic!("reserve descriptor {}: {e}", self.path.display()));
            self.held.push(f);
        }
    }

    /// A status file, read even at the bound.
    fn status(&mut self, path: &Path) -> HashMap<String, String> {
        loop {
            match fs::read_to_string(path) {
                Ok(t) => return parse_status(&t),
                Err(e) if os_err(&e) == libc::ENOBUFS && !self.held.is_empty() => {
                    self.held.pop();
                }
                Err(e) => panic!("read {}: {e}", path.display()),
            }
        }
    }
}

struct FloodFigures {
    what: &'static str,
    unit: &'static str,
    accepted: Vec<u64>,
    refusal: i32,
    rss_before: u64,
    rss_after: Vec<u64>,
    used_peak: u64,
}

impl FloodFigures {
    /// Figures of a flood about to start on `m`'s daemon.
    fn new(what: &'static str, unit: &'static str, m: &Mount) -> FloodFigures {
        FloodFigures {
            what,
            unit,
            accepted: Vec::new(),
            refusal: 0,
            rss_before: proc_kb(m.daemon_pid(), "VmRSS"),
            rss_after: Vec::new(),
            used_peak: 0,
        }
    }

    fn print(&self, m: &Mount) {
        let peak = proc_kb(m.daemon_pid(), "VmHWM");
        println!(
            "torture flood {}: {:?} {} accepted (per round), first refusal {}; memory-used at the bound {} of {}; \
             daemon VmRSS before {:.1} MiB, peak {:.1} MiB, after cleanup {:?} MiB; \
             rss_peak / max_memory = {:.2}",
            self.what,
            self.accepted,
            self.unit,
            errname(self.refusal),
            self.used_peak,
            FLOOD_LIMIT,
            mib(self.rss_before),
            mib(peak),
            self.rss_after
                .iter()
                .map(|&r| (mib(r) * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            peak as f64 / FLOOD_LIMIT as f64,
        );
    }
}

fn memory_used(res: &mut Reserve, m: &Mount) -> u64 {
    num(&res.status(&m.p("proc/status")), "memory-used")
}

/// After a flood's cleanup: what the daemon holds is back to what it held before.
fn back_to(m: &Mount, res: &mut Reserve, base: u64, what: &str) {
    res.refill();
    wait_until(
        step(),
        &format!("{what}: memory-used back to {base}"),
        || memory_used(res, m) == base,
    );
}

/// (a) 1-byte messages into an unlimited mailbox until the bound.
#[test]
fn flood_small_messages() {
    let _ = seed("flood messages");
    let mut m = flood_mount();
    let b = mailbox(&m, "box", "capacity=unlimited");
    let mut res = Reserve::new(b.join("send"));
    let base = memory_used(&mut res, &m);
    let mut fig = FloodFigures::new("(a) 1-byte messages", "messages", &m);
    for round in 0..flood_rounds() {
        let mut f = open_with(&b.join("send"), false, true, libc::O_NONBLOCK).unwrap();
        let mut n = 0u64;
        let err = loop {
            match f.write(&[(n % 251) as u8]) {
                Ok(1) => n += 1,
                Ok(k) => panic!("a 1-byte write returned {k}"),
                Err(e) => break e,
            }
            assert!(n < 10_000_000, "no refusal after {n} messages");
        };
        assert_eq!(
            os_err(&err),
            libc::ENOBUFS,
            "round {round}: a send past the bound: {err}"
        );
        fig.refusal = os_err(&err);
        for _ in 0..10 {
            assert_errno(f.write(b"x"), libc::ENOBUFS, "a send past the bound, again");
        }
        let p = b.join("send");
        let r = within(step(), "a blocking send past the bound", move || {
            OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|mut f| f.write(b"y"))
        });
        assert!(
            r.as_ref()
                .is_err_and(|e| matches!(os_err(e), libc::ENOBUFS)),
            "a blocking send past the bound fails at once with ENOBUFS: {r:?}"
        );
        let s = res.status(&b.join("status"));
        assert_eq!(num(&s, "messages"), n, "{s:?}");
        let used = num(&s, "memory-used");
        assert!(used <= FLOOD_LIMIT, "{s:?}");
        fig.used_peak = fig.used_peak.max(used);
        fig.accepted.push(n);
        drop(f);
        // Cleanup: drain in order.
        let mut r = open_with(&b.join("recv"), true, false, libc::O_NONBLOCK).unwrap();
        for i in 0..n {
            let got = read_message(&mut r).unwrap_or_else(|e| panic!("drain {i}: {e}"));
            assert_eq!(got, [(i % 251) as u8], "message {i}");
        }
        assert_errno(read_message(&mut r), libc::EAGAIN, "drained");
        drop(r);
        back_to(&m, &mut res, base, "(a)");
        fig.rss_after.push(proc_kb(m.daemon_pid(), "VmRSS"));
    }
    daemon_answers(&mut m, "after the message flood");
    fig.print(&m);
}

/// (b) mkdir until ENOSPC.
#[test]
fn flood_mailboxes() {
    let _ = seed("flood mailboxes");
    let mut m = flood_mount();
    let mut res = Reserve::new(mailbox(&m, "reserve", "").join("send"));
    let base = memory_used(&mut res, &m);
    let mut fig = FloodFigures::new("(b) mailboxes", "mkdirs", &m);
    for round in 0..flood_rounds() {
        let mut n = 0u64;
        let err = loop {
            match fs::create_dir(m.p(&format!("m{n:07}"))) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 1_000_000, "no refusal after {n} mailboxes");
        };
        assert_eq!(
            os_err(&err),
            libc::ENOSPC,
            "round {round}: mkdir past the bound: {err}"
        );
        fig.refusal = os_err(&err);
        let s = res.status(&m.p("proc/status"));
        assert_eq!(num(&s, "mailboxes"), n + 1, "{s:?}");
        fig.used_peak = fig.used_peak.max(num(&s, "memory-used"));
        fig.accepted.push(n);
        for i in 0..n {
            fs::remove_dir(m.p(&format!("m{i:07}"))).unwrap_or_else(|e| panic!("rmdir {i}: {e}"));
        }
        back_to(&m, &mut res, base, "(b)");
        fig.rss_after.push(proc_kb(m.daemon_pid(), "VmRSS"));
    }
    daemon_answers(&mut m, "after the mailbox flood");
    fig.print(&m);
}

/// (c) many processes each opening `proc/<pid>/recv` of many live processes.
#[test]
fn flood_links() {
    let _ = seed("flood links");
    let mut m = flood_mount();
    let mut res = Reserve::new(mailbox(&m, "reserve", "").join("send"));
    let base = memory_used(&mut res, &m);
    let targets: Vec<Held> = (0..50).map(|_| sleeper()).collect();
    let line = targets
        .iter()
        .map(|t| t.pid().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut fig = FloodFigures::new("(c) direct links", "proc/<pid>/recv opens", &m);
    let mut links_at_bound = 0;
    for round in 0..flood_rounds() {
        let mut linkers: Vec<Kid> = Vec::new();
        let mut opened = 0u64;
        let refused = loop {
            assert!(linkers.len() < 200, "no refusal after {opened} link opens");
            let mut k = Kid::spawn(
                "linker",
                &format!("linker {}", linkers.len()),
                &[("T_MOUNT", m.path().display().to_string())],
            );
            k.tell(&line);
            opened += k.expect("OPENED", step()).parse::<u64>().unwrap();
            let r: i32 = k.expect("REFUSED", step()).parse().unwrap();
            linkers.push(k);
            if r != 0 {
                break r;
            }
        };
        assert_eq!(
            refused,
            libc::ENOBUFS,
            "round {round}: a link open past the bound"
        );
        fig.refusal = refused;
        let s = res.status(&m.p("proc/status"));
        links_at_bound = num(&s, "links");
        fig.used_peak = fig.used_peak.max(num(&s, "memory-used"));
        fig.accepted.push(opened);
        for k in &mut linkers {
            k.close_stdin();
        }
        for k in &mut linkers {
            k.wait_ok(step());
        }
        wait_until(step(), "every link is reclaimed", || {
            num(&res.status(&m.p("proc/status")), "links") == 0
        });
        back_to(&m, &mut res, base, "(c)");
        fig.rss_after.push(proc_kb(m.daemon_pid(), "VmRSS"));
    }
    daemon_answers(&mut m, "after the link flood");
    fig.print(&m);
    println!("torture flood (c): {links_at_bound} links held at the bound, 50 target processes");
}

/// (d) many open descriptors on one `send`.
#[test]
fn flood_descriptors() {
    let _ = seed("flood descriptors");
    let mut m = flood_mount();
    let b = mailbox(&m, "box", "");
    let mut res = Reserve::new(b.join("send"));
    let base = memory_used(&mut res, &m);
    let mut fig = FloodFigures::new("(d) open descriptors", "opens", &m);
    for round in 0..flood_rounds() {
        let mut openers: Vec<Kid> = Vec::new();
        let mut opened = 0u64;
        let refused = loop {
            assert!(openers.len() < 100, "no refusal after {opened} opens");
            let mut k = Kid::spawn(
                "opener",
                &format!("opener {}", openers.len()),
                &[
                    ("T_PATH", b.join("send").display().to_string()),
                    ("T_MAX", "900".to_string()),
                ],
            );
            opened += k.expect("OPENED", step()).parse::<u64>().unwrap();
            let r: i32 = k.expect("REFUSED", step()).parse().unwrap();
            openers.push(k);
            if r != 0 {
                break r;
            }
        };
        assert_eq!(
            refused,
            libc::ENOBUFS,
            "round {round}: an open past the bound"
        );
        fig.refusal = refused;
        fig.used_peak = fig.used_peak.max(memory_used(&mut res, &m));
        fig.accepted.push(opened);
        for k in &mut openers {
            k.close_stdin();
        }
        for k in &mut openers {
            k.wait_ok(step());
        }
        back_to(&m, &mut res, base, "(d)");
        fig.rss_after.push(proc_kb(m.daemon_pid(), "VmRSS"));
    }
    daemon_answers(&mut m, "after the descriptor flood");
    fig.print(&m);
}

/// (e) many readers parked on one empty mailbox.
#[test]
fn flood_parked_readers() {
    let _ = seed("flood parked readers");
    const THREADS: u64 = 200;
    let mut m = flood_mount();
    let b = mailbox(&m, "box", "");
    let mut res = Reserve::new(b.join("send"));
    let base = memory_used(&mut res, &m);
    let mut fig = FloodFigures::new("(e) parked readers", "parked reads", &m);
    for round in 0..flood_rounds() {
        let mut parkers: Vec<Kid> = Vec::new();
        let mut refusals: Vec<i32> = Vec::new();
        while refusals.is_empty() {
            assert!(
                parkers.len() < 100,
                "no refusal after {} parkers",
                parkers.len()
            );
            parkers.push(Kid::spawn(
                "parker",
                &format!("parker {}", parkers.len()),
                &[
                    ("T_PATH", b.join("recv").display().to_string()),
                    ("T_THREADS", THREADS.to_string()),
                ],
            ));
            let total = THREADS * parkers.len() as u64;
            wait_until(step(), "every reader is parked or refused", || {
                for k in &mut parkers {
                    refusals.extend(
                        k.drain()
                            .iter()
                            .filter_map(|l| l.strip_prefix("REFUSED "))
                            .map(|e| e.parse::<i32>().unwrap()),
                    );
                }
                let waiting = num(&res.status(&b.join("status")), "receivers-waiting");
                waiting + refusals.len() as u64 == total
            });
        }
        for &e in &refusals {
            assert_eq!(
                e,
                libc::ENOBUFS,
                "round {round}: a parked read past the bound"
            );
        }
        fig.refusal = refusals[0];
        let s = res.status(&b.join("status"));
        fig.used_peak = fig.used_peak.max(num(&s, "memory-used"));
        fig.accepted.push(num(&s, "receivers-waiting"));
        for k in &mut parkers {
            k.kill();
        }
        wait_until(step(), "no reader waits any more", || {
            num(&res.status(&b.join("status")), "receivers-waiting") == 0
        });
        back_to(&m, &mut res, base, "(e)");
        fig.rss_after.push(proc_kb(m.daemon_pid(), "VmRSS"));
    }
    daemon_answers(&mut m, "after the parked-reader flood");
    fig.print(&m);
}

// ------------------------------------------------------------------ 6. hostile input

fn os_path(parent: &Path, name: &[u8]) -> PathBuf {
    parent.join(std::ffi::OsStr::from_bytes(name))
}

/// mkdir `name` in `parent`: refused with `want`, or (None) accepted, listed
/// with its exact bytes, usable, and removable.
fn try_name(parent: &Path, name: &[u8], want: Option<i32>) -> bool {
    let p = os_path(parent, name);
    let shown = String::from_utf8_lossy(&name[..name.len().min(40)]).into_owned();
    match (fs::create_dir(&p), want) {
        (Ok(()), None) => {
            let listed = fs::read_dir(parent)
                .unwrap()
                .any(|e| e.unwrap().file_name().into_vec() == name);
            assert!(listed, "{shown:?} is listed in {}", parent.display());
            assert!(p.join("send").is_file(), "{shown:?}/send");
            send_nb(&p.join("send"), name).unwrap_or_else(|e| panic!("send to {shown:?}: {e}"));
            assert_eq!(recv_nb(&p.join("recv")).unwrap(), name, "{shown:?}");
            let s = stat(&p);
            assert_eq!(num(&s, "received"), 1, "{shown:?}: {s:?}");
            assert!(read_policy(&p.join("policy")).ends_with('\n'));
            fs::remove_dir(&p).unwrap_or_else(|e| panic!("rmdir {shown:?}: {e}"));
            assert_errno(fs::symlink_metadata(&p), libc::ENOENT, "a removed mailbox");
            true
        }
        (Err(e), Some(w)) => {
            assert_eq!(
                os_err(&e),
                w,
                "mkdir {shown:?} (len {}) in {}: expected {} got {e}",
                name.len(),
                parent.display(),
                errname(w)
            );
            false
        }
        (Ok(()), Some(w)) => panic!(
            "mkdir {shown:?} (len {}) in {} succeeded; expected {}",
            name.len(),
            parent.display(),
            errname(w)
        ),
        (Err(e), None) => panic!(
            "mkdir {shown:?} (len {}) in {} failed: {e}",
            name.len(),
            parent.display()
        ),
    }
}

/// The policy as a policy file shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pol {
    rule: &'static str,
    capacity: Option<u64>,
    size: u64,
}

const RULES: [&str; 4] = ["arbitrary", "pair", "exclusive", "broadcast"];

impl Pol {
    fn shown(&self) -> String {
        let cap = self
            .capacity
            .map_or("unlimited".to_string(), |c| c.to_string());
        format!(
            "{} capacity={cap} max-message-size={}\n",
            self.rule, self.size
        )
    }

    /// Parse what a policy file shows; panics if it is not the documented line.
    fn parse_shown(text: &str) -> Pol {
        let p = (|| {
            let w: Vec<&str> = text.strip_suffix('\n')?.split(' ').collect();
            let [rule, cap, size] = w[..] else {
                return None;
            };
            Some(Pol {
                rule: RULES.into_iter().find(|r| *r == rule)?,
                capacity: match cap.strip_prefix("capacity=")? {
                    "unlimited" => None,
                    n => Some(n.parse().ok()?),
                },
                size: size.strip_prefix("max-message-size=")?.parse().ok()?,
            })
        })()
        .unwrap_or_else(|| panic!("a policy file shows {text:?}"));
        assert_eq!(p.shown(), text, "a policy file shows the canonical form");
        p
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Valid(Pol),
    Invalid,
    /// A number the manual calls "too large" without saying where that starts.
    Unsure,
}

/// The policy grammar of ipcfs(7) ("POLICY FILE FORMAT"), applied to `cur`.
fn reference(text: &[u8], cur: Pol, hard_max: u64) -> Verdict {
    if text.len() > 4096 {
        return Verdict::Invalid;
    }
    let Ok(s) = std::str::from_utf8(text) else {
        return Verdict::Invalid;
    };
    let s = s.strip_suffix('\n').unwrap_or(s);
    let mut out = cur;
    let (mut rule, mut cap, mut size, mut any, mut unsure) = (false, false, false, false, false);
    for w in s.split([' ', '\t']).filter(|w| !w.is_empty()) {
        any = true;
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if let Some(r) = RULES.iter().find(|r| **r == w) {
            if std::mem::replace(&mut rule, true) {
                return Verdict::Invalid;
            }
            out.rule = r;
        } else if let Some(v) = w.strip_prefix("capacity=") {
            if std::mem::replace(&mut cap, true) {
                return Verdict::Invalid;
            }
            if v == "unlimited" {
                out.capacity = None;
            } else if !digits(v) {
                return Verdict::Invalid;
            } else {
                match v.parse::<u64>() {
                    Ok(n) if n <= u64::from(u32::MAX) => out.capacity = Some(n),
                    _ => unsure = true,
                }
            }
        } else if let Some(v) = w.strip_prefix("max-message-size=") {
            if std::mem::replace(&mut size, true) {
                return Verdict::Invalid;
            }
            let (d, unit) = match v.as_bytes().last() {
                Some(b'K' | b'k') => (&v[..v.len() - 1], 1u64 << 10),
                Some(b'M' | b'm') => (&v[..v.len() - 1], 1 << 20),
                Some(b'G' | b'g') => (&v[..v.len() - 1], 1 << 30),
                _ => (v, 1),
            };
            if !digits(d) {
                return Verdict::Invalid;
            }
            // Past u64, or past the mount's hard maximum: too large either way.
            match d.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
                Some(n) if n >= 1 && n <= hard_max => out.size = n,
                _ => return Verdict::Invalid,
            }
        } else {
            return Verdict::Invalid;
        }
    }
    if !any {
        Verdict::Invalid
    } else if unsure {
        Verdict::Unsure
    } else {
        Verdict::Valid(out)
    }
}

/// One fuzz case of policy text.
fn gen_policy(rng: &mut Rng, hard_max: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "arbitrary",
        "pair",
        "exclusive",
        "broadcast",
        "Arbitrary",
        "PAIR",
        "exclusive2",
        "broad",
        "capacity=0",
        "capacity=1",
        "capacity=16",
        "capacity=1024",
        "capacity=unlimited",
        "capacity=Unlimited",
        "capacity=",
        "capacity=-1",
        "capacity=+1",
        "capacity=1K",
        "capacity=0x10",
        "capacity=1.5",
        "capacity=4294967295",
        "capacity=18446744073709551616",
        "capacity=99999999999999999999999",
        "max-message-size=1",
        "max-message-size=64K",
        "max-message-size=64k",
        "max-message-size=1M",
        "max-message-size=1m",
        "max-message-size=1G",
        "max-message-size=0",
        "max-message-size=0K",
        "max-message-size=1T",
        "max-message-size=",
        "max-message-size=K",
        "max-message-size=-1",
        "max-message-size=1KK",
        "max-message-size=18446744073709551615",
        "max-message-size=18446744073709551616",
        "max-message-size=17179869184G",
        "capacity",
        "max-message-size",
        "unlimited",
        "=",
        "rule=pair",
        "policy",
        "é",
    ];
    const SEPS: &[&str] = &[
        " ", " ", " ", "  ", "\t", " \t", "\n", "\r", "\0", "", ",", "\u{a0}", "\x0b", ";",
    ];
    match rng.below(10) {
        // Random bytes.
        0 | 1 => {
            let n = rng.range(1, 65) as usize;
            (0..n).map(|_| rng.next() as u8).collect()
        }
        // Random printable text.
        2 => {
            let n = rng.range(1, 41) as usize;
            (0..n).map(|_| rng.range(0x20, 0x7f) as u8).collect()
        }
        // Around the 4096-byte limit: blanks, then a valid word.
        3 => {
            let word = *rng.pick(&RULES);
            let total = rng.range(4090, 4101) as usize;
            let nl = rng.below(2) == 0;
            let pad = total - word.len() - usize::from(nl);
            let mut v = vec![b' '; pad];
            v.extend_from_slice(word.as_bytes());
            if nl {
                v.push(b'\n');
            }
            v
        }
        // Words, mostly plausible, sometimes mutated.
        _ => {
            let mut s = String::new();
            if rng.below(8) == 0 {
                s.push_str(rng.pick::<&str>(SEPS));
            }
            for i in 0..rng.range(1, 5) {
                if i > 0 {
                    s.push_str(if rng.below(3) == 0 {
                        rng.pick::<&str>(SEPS)
                    } else {
                        " "
                    });
                }
                match rng.below(4) {
                    0 => s.push_str(&format!("capacity={}", rng.below(5000))),
                    1 => s.push_str(&format!(
                        "max-message-size={}{}",
                        rng.below(hard_max + hard_max / 8),
                        rng.pick(&["", "", "", "K", "k", "M", "m", "G", "g", "B", "KiB"])
                    )),
                    _ => s.push_str(rng.pick::<&str>(WORDS)),
                }
            }
            if rng.below(8) == 0 {
                s.push_str(rng.pick::<&str>(SEPS));
            }
            if rng.below(2) == 0 {
                s.push('\n');
            }
            let mut v = s.into_bytes();
            if rng.below(4) == 0 && !v.is_empty() {
                let i = rng.below(v.len() as u64) as usize;
                match rng.below(3) {
                    0 => v[i] = rng.next() as u8,
                    1 => v.insert(i, rng.next() as u8),
                    _ => {
                        v.remove(i);
                    }
                }
            }
            if v.is_empty() {
                v.push(b' ');
            }
            v
        }
    }
}

/// Hostile mailbox names, proc lookups, renames, and random text written to
/// policy files: every refusal is a clean errno, a refused policy write changes
/// nothing, an accepted one does what the manual's grammar says, and the
/// daemon survives.
#[test]
fn hostile_names_and_policy_fuzz() {
    let mut rng = Rng::new(seed("hostile input"));
    let mut m = Mount::new();
    let root = m.path().to_path_buf();
    let bx = mailbox(&m, "box", "");

    // Names.
    let euro = "€";
    let mut names: Vec<(Vec<u8>, Option<i32>)> = [
        &b"a\nb"[..],
        b"\n",
        b"\n\n",
        b"two words",
        b" ",
        b"\t",
        b" lead",
        b"trail ",
        b"-",
        b"--help",
        b"-rf",
        b"...",
        b".. ",
        b" ..",
        b"..\n",
        b"....",
        b".hidden",
        b"\xff\xfe",
        b"a\x80b",
        b"\xc0\xaf",
        b"\x01\x02\x1b[31m\x7f",
        b"\\",
        b"*?[]",
        b"$(reboot)",
        b"'\"`",
        b"%s%n",
        "日本語".as_bytes(),
        "\u{202e}txt.exe".as_bytes(),
        b"self",
        b"status",
        b"0",
        b"1",
    ]
    .iter()
    .map(|n| (n.to_vec(), None))
    .collect();
    names.push((vec![b'x'; 255], None));
    names.push((euro.repeat(85).into_bytes(), None));
    names.push((vec![b'x'; 256], Some(libc::ENAMETOOLONG)));
    names.push((euro.repeat(86).into_bytes(), Some(libc::ENAMETOOLONG)));
    names.push((vec![b'y'; 1000], Some(libc::ENAMETOOLONG)));
    names.push((vec![b'z'; 5000], Some(libc::ENAMETOOLONG)));
    names.push((b".".to_vec(), Some(libc::EEXIST)));
    names.push((b"..".to_vec(), Some(libc::EEXIST)));
    names.push((b"box".to_vec(), Some(libc::EEXIST)));
    let (mut ok, mut refused) = (0u32, 0u32);
    for (parent, reserved) in [
        (root.clone(), &["proc", "policy"][..]),
        (
            bx.clone(),
            &["send", "recv", "packets", "batch", "policy", "status"][..],
        ),
    ] {
        for (name, want) in &names {
            let want = if reserved.iter().any(|r| r.as_bytes() == &name[..]) {
                Some(libc::EEXIST)
            } else if name == b"box" && parent == bx {
                None
            } else {
                *want
            };
            if try_name(&parent, name, want) {
                ok += 1;
            } else {
                refused += 1;
            }
        }
        for r in reserved {
            try_name(&parent, r.as_bytes(), Some(libc::EEXIST));
            refused += 1;
        }
    }
    // `proc` is reserved at the root only; nesting works under odd names.
    assert!(try_name(&bx, b"proc", None));
    let odd = os_path(&root, b"odd\nparent \xff");
    fs::create_dir(&odd).unwrap();
    let kid = os_path(&odd, b"kid\tname");
    fs::create_dir(&kid).unwrap();
    assert_errno(
        fs::remove_dir(&odd),
        libc::ENOTEMPTY,
        "rmdir of an odd parent",
    );
    send_nb(&kid.join("send"), b"nested").unwrap();
    assert_eq!(recv_nb(&kid.join("recv")).unwrap(), b"nested");
    // Renames onto hostile or reserved names.
    let renames: Vec<(PathBuf, Option<Vec<i32>>)> = vec![
        (os_path(&root, b"re\nnamed"), None),
        (
            root.join("proc"),
            Some(vec![
                libc::EEXIST,
                libc::ENOTEMPTY,
                libc::EBUSY,
                libc::EPERM,
            ]),
        ),
        (
            root.join("policy"),
            Some(vec![libc::EEXIST, libc::ENOTDIR, libc::EPERM]),
        ),
        (
            bx.join("send"),
            Some(vec![libc::EEXIST, libc::ENOTDIR, libc::EPERM]),
        ),
        (os_path(&root, &[b'r'; 256]), Some(vec![libc::ENAMETOOLONG])),
        (kid.join("inside"), Some(vec![libc::EINVAL, libc::ENOENT])),
        (
            root.join("proc/newname"),
            Some(vec![libc::EPERM, libc::EXDEV, libc::ENOENT]),
        ),
    ];
    for (to, want) in &renames {
        let r = fs::rename(&odd, to);
        match (r, want) {
            (Ok(()), None) => {
                fs::rename(to, &odd).unwrap();
                ok += 1;
            }
            (Err(e), Some(w)) => {
                assert!(
                    w.contains(&os_err(&e)),
                    "rename to {}: {e} (expected one of {w:?})",
                    to.display()
                );
                refused += 1;
            }
            (r, w) => panic!("rename to {}: {r:?}, expected {w:?}", to.display()),
        }
        assert!(odd.is_dir(), "the renamed mailbox is still there");
    }
    fs::remove_dir(&kid).unwrap();
    fs::remove_dir(&odd).unwrap();
    // mkdir under proc/, and lookups of names that are not pids.
    for n in [&b"newname"[..], b"\xff", b"12345678901234567890"] {
        try_name(&root.join("proc"), n, Some(libc::EPERM));
        refused += 1;
    }
    for n in [
        &b"0"[..],
        b"-1",
        b"+1",
        b"01",
        b" 1",
        b"1 ",
        b"1\n",
        b"4294967296",
        b"99999999999999999999",
        b"\xff",
        b"self2",
        b"..1",
    ] {
        let p = os_path(&root.join("proc"), n);
        assert_errno(
            fs::symlink_metadata(&p),
            libc::ENOENT,
            &format!("lookup of proc/{}", String::from_utf8_lossy(n)),
        );
        refused += 1;
    }
    println!("torture hostile names: {ok} accepted and round-tripped, {refused} refused cleanly");

    // Policy texts.
    let hard_max = Pol::parse_shown(&read_policy(&root.join("policy"))).size;
    let cases = by_mode(500u32, 30_000);
    let (mut accepted, mut rejected, mut unsure) = (0u32, 0u32, 0u32);
    let mut wrong: Vec<String> = Vec::new();
    for i in 0..cases {
        let target = if rng.below(10) == 0 {
            root.join("policy")
        } else {
            bx.join("policy")
        };
        let text = gen_policy(&mut rng, hard_max);
        let before_text = read_policy(&target);
        let before = Pol::parse_shown(&before_text);
        let verdict = reference(&text, before, hard_max);
        let r = write_policy(&target, &text);
        let after_text = read_policy(&target);
        let after = Pol::parse_shown(&after_text);
        let fine = match (&verdict, &r) {
            (Verdict::Valid(p), Ok(n)) => *n == text.len() && after == *p,
            (Verdict::Invalid, Err(e)) => os_err(e) == libc::EINVAL && after_text == before_text,
            (Verdict::Unsure, Ok(n)) => *n == text.len(),
            (Verdict::Unsure, Err(e)) => os_err(e) == libc::EINVAL && after_text == before_text,
            _ => false,
        };
        match (&verdict, &r) {
            (Verdict::Unsure, _) => unsure += 1,
            (_, Ok(_)) => accepted += 1,
            (_, Err(_)) => rejected += 1,
        }
        if !fine {
            wrong.push(format!(
                "case {i}: {:?} -> {} ({:?}): {r:?}; manual says {verdict:?}; policy before {before_text:?} after {after_text:?}",
                String::from_utf8_lossy(&text[..text.len().min(120)]),
                target.strip_prefix(&root).unwrap().display(),
                text.len(),
            ));
        }
    }
    // A policy file seeks like a /proc file, and one write is one whole
    // policy text wherever it lands (pwrite too); status and recv take no
    // writes.
    let f = open_with(&bx.join("policy"), false, true, 0).unwrap();
    let pw = f.write_at(b"pair", 1);
    assert_eq!(pw.ok(), Some(4), "pwrite to a policy file");
    assert!(read_policy(&bx.join("policy")).starts_with("pair "));
    drop(f);
    let mut other = Vec::new();
    for (file, flags) in [
        ("status", libc::O_WRONLY),
        ("recv", libc::O_WRONLY),
        ("status", libc::O_RDWR),
    ] {
        let bytes: Vec<u8> = (0..rng.range(1, 64)).map(|_| rng.next() as u8).collect();
        let r = OpenOptions::new()
            .write(true)
            .read(flags == libc::O_RDWR)
            .open(bx.join(file))
            .and_then(|mut f| f.write(&bytes));
        let e = os_err(&r.expect_err(&format!("writing to {file}")));
        assert!(
            [libc::EACCES, libc::EPERM, libc::EBADF, libc::EINVAL].contains(&e),
            "writing to {file}: {}",
            errname(e)
        );
        other.push(format!("{file}: {}", errname(e)));
    }
    assert_eq!(num(&stat(&bx), "messages"), 0, "nothing was queued");
    // The root policy, whatever the fuzz left in it, is what a new mailbox gets.
    let root_pol = Pol::parse_shown(&read_policy(&root.join("policy")));
    let fresh = mailbox(&m, "fresh", "");
    assert_eq!(
        Pol::parse_shown(&read_policy(&fresh.join("policy"))),
        root_pol
    );
    daemon_answers(&mut m, "after the hostile input");
    println!(
        "torture policy fuzz: {cases} cases: {accepted} accepted, {rejected} refused with EINVAL, \
         {unsure} with huge capacities; {} disagreements with the manual's grammar; \
         pwrite: one policy text; writes to {}",
        wrong.len(),
        other.join(", ")
    );
    assert!(
        wrong.is_empty(),
        "{} policy writes disagree with ipcfs(7):\n{}",
        wrong.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
}
