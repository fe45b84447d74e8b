//! The helper processes: the test binary run again with
//! `IPCFS_TORTURE_CHILD` naming a role (receiver, sender, link peer,
//! blocker, linker, opener, parker), and `Kid`, the parent's handle on one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

use crate::harness::step;
use crate::messages::{
    F_DEST, F_LEN, HDR, RBUF, Rec, STOP, check, encode, payload_field, read_one, rec_bytes,
};

pub(crate) const CHILD_ENV: &str = "IPCFS_TORTURE_CHILD";

pub(crate) fn child_entry() {
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

pub(crate) fn env_str(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("child: {k} is not set"))
}

pub(crate) fn env_num<T: std::str::FromStr>(k: &str) -> T {
    let v = env_str(k);
    v.parse()
        .unwrap_or_else(|_| panic!("child: {k}={v:?} is not a number"))
}

/// A line for the parent (on stdout, after whatever libtest printed).
pub(crate) fn say(line: &str) {
    let mut o = io::stdout().lock();
    let _ = write!(o, "\n@@{line}\n");
    let _ = o.flush();
}

/// Receives from `T_PATH` with one persistent descriptor and logs every
/// message to `T_LOG`; exits on a STOP message or after `T_LIMIT` messages.
/// `T_BUSY`: `fail` (EBUSY is an error), `report` (say EBUSY and exit) or
/// `retry` (retry the open, for a new exclusive holder).
pub(crate) fn child_receiver() {
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
            Err(e) if errno(&e) == libc::EBUSY && busy == "report" => {
                say("EBUSY");
                return;
            }
            Err(e)
                if errno(&e) == libc::EBUSY
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
pub(crate) fn child_sender() {
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
pub(crate) fn child_peer() {
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
pub(crate) fn child_blocker() {
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
        Err(e) => say(&format!("RESULT errno {}", errno(&e))),
    }
}

/// Makes the descriptors `opens` gives until the first refusal; reports
/// `OPENED n` and `REFUSED errno` (or `REFUSED 0`), then holds them until
/// stdin closes.
fn open_until_refused(opens: impl Iterator<Item = io::Result<File>>) {
    let mut held = Vec::new();
    let mut refused = 0;
    for r in opens {
        match r {
            Ok(f) => held.push(f),
            Err(e) => {
                refused = errno(&e);
                break;
            }
        }
    }
    say(&format!("OPENED {}", held.len()));
    say(&format!("REFUSED {refused}"));
    let _ = io::stdin().read_line(&mut String::new());
}

/// Opens `proc/<pid>/recv` (O_NONBLOCK) of `T_MOUNT` for every pid read from
/// stdin (see [`open_until_refused`]).
pub(crate) fn child_linker() {
    let mount = PathBuf::from(env_str("T_MOUNT"));
    let mut line = String::new();
    io::stdin().read_line(&mut line).expect("read the pids");
    open_until_refused(line.split_whitespace().map(|p| {
        open_with(
            &mount.join(format!("proc/{p}/recv")),
            true,
            false,
            libc::O_NONBLOCK,
        )
    }));
}

/// Opens `T_PATH` write-only up to `T_MAX` times (see [`open_until_refused`]).
pub(crate) fn child_opener() {
    let path = PathBuf::from(env_str("T_PATH"));
    let max: usize = env_num("T_MAX");
    open_until_refused((0..max).map(|_| OpenOptions::new().write(true).open(&path)));
}

/// `T_THREADS` threads, each opening `T_PATH` and blocking in a read of it;
/// each refusal (of the open or of the read) is reported as `REFUSED errno`.
/// Killed by the parent.
pub(crate) fn child_parker() {
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
                    Err(e) => errno(&e),
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
pub(crate) struct Kid {
    pub(crate) what: String,
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) stderr: Arc<Mutex<Vec<u8>>>,
    pub(crate) status: Option<ExitStatus>,
}

impl Kid {
    pub(crate) fn spawn(role: &str, what: &str, env: &[(&str, String)]) -> Kid {
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub(crate) fn tell(&mut self, line: &str) {
        let w = self.stdin.as_mut().expect("child stdin");
        writeln!(w, "{line}").unwrap_or_else(|e| panic!("write to {}: {e}", self.what));
        w.flush().unwrap();
    }

    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line from the child starting with `prefix` (the rest of it);
    /// other lines are skipped. Panics on deadline or if the child ends.
    pub(crate) fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
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
    pub(crate) fn drain(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on a child");
        }
        self.status
    }

    /// Wait for the child to exit; on deadline SIGKILL it and panic.
    pub(crate) fn wait(&mut self, timeout: Duration) -> ExitStatus {
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
    pub(crate) fn wait_ok(&mut self, timeout: Duration) {
        let st = self.wait(timeout);
        self.assert_ok(st);
    }

    pub(crate) fn assert_ok(&self, st: ExitStatus) {
        assert!(
            st.success(),
            "child {} failed ({}); stderr:\n{}",
            self.what,
            describe(&st),
            self.stderr()
        );
    }

    /// SIGKILL and reap (no-op once reaped).
    pub(crate) fn kill(&mut self) {
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

pub(crate) fn receiver_kid(what: &str, recv: &Path, log: &Path, busy: &str, limit: u64) -> Kid {
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

pub(crate) fn sender_kid(
    what: &str,
    send: &Path,
    id: u32,
    count: u32,
    log: &Path,
    stops: u32,
) -> Kid {
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

pub(crate) fn blocker_kid(op: &str, path: &Path) -> Kid {
    Kid::spawn(
        "blocker",
        &format!("{op} {}", path.display()),
        &[
            ("T_OP", op.to_string()),
            ("T_PATH", path.display().to_string()),
        ],
    )
}
