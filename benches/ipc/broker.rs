//! Broker rows: what a hand-off through a Redis server costs with no FUSE
//! at all (the baseline: the redis crate, a Lua script that checks a
//! capacity and XADDs to the receiver's stream, XREAD BLOCK on one's own),
//! next to two ipcfs mounts on that server (`--broker URL --node a` and
//! `--node b`): `packets` round trips a -> b -> a, one-way latency a -> b,
//! and `batch` throughput b -> a, each with its ratio to the baseline; the
//! round trip also against baseline + the floor's 64 B round trip (a write
//! and a read through FUSE at each end added to the broker's hand-offs: the
//! least a FUSE mount can cost), the one-way against baseline + half that.
//!
//! A mount that does not start (or starts without broker support) makes
//! its rows "n/a (broker mount failed: REASON)"; the run goes on.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use redis::io::tcp::TcpSettings;
use redis::streams::StreamReadReply;
use redis::{Connection, IntoConnectionInfo, Value};

use crate::common::Redis;
use crate::daemon::Daemon;
use crate::endpoints::{H, Kind, Rx, Tx};
use crate::plan::{Plan, warm_count};
use crate::remote::{Duplex, ThreadRemote, measure_thr};
use crate::report::{Group, Lat, REG, ROWS, Role, Row, Thr, fmt_num, fmt_ratio, push_row};
use crate::rows::{na_row, row};
use crate::stats::{Meter, median, percentile};
use crate::sys::{lock, open_r, open_w, other, sys_read, sys_write};
use crate::watchdog::step;

const SIZE: usize = 64;
/// Sends per pipeline in the baseline's throughput run.
const PIPELINE: usize = 100;
/// The capacity the send script checks (ipcfs's default).
const CAPACITY: usize = 1024;
/// One XREAD BLOCK waits this long; a read gives up after `RECV_DEADLINE`.
const BLOCK_MS: usize = 1000;
const RECV_DEADLINE: Duration = Duration::from_secs(10);

/// KEYS[1]: the receiver's stream; ARGV[1]: capacity; ARGV[2]: the message.
const SEND_LUA: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('EAGAIN the stream is full')
end
redis.call('XADD', KEYS[1], '*', 'b', ARGV[2])
return 1
";

/// The clock both ends of a one-way measure read (threads of one process).
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A 64-byte message: sequence number, send time in ns, padding.
fn message(seq: u64) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..16].copy_from_slice(&now_ns().to_le_bytes());
    m
}

fn seq_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

fn sent_at(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[8..16].try_into().unwrap())
}

fn rerr(e: redis::RedisError) -> io::Error {
    other(format!("redis: {e}"))
}

/// One end of a message channel, movable to a thread.
trait End: Send {
    fn send(&mut self, m: &[u8]) -> io::Result<()>;
    fn recv(&mut self) -> io::Result<Vec<u8>>;
}

/// A baseline end: its own stream to read, the other's to send to.
struct RedisEnd {
    con: Connection,
    sha: String,
    own: String,
    other: String,
    /// The id after which the next XREAD reads.
    last: String,
    /// Ids read, deleted with the next XREAD (so that XLEN is the queue).
    read: Vec<String>,
    got: VecDeque<Vec<u8>>,
}

impl RedisEnd {
    fn connect(url: &str, own: &str, other_stream: &str) -> io::Result<RedisEnd> {
        let info = url
            .into_connection_info()
            .map_err(rerr)?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let mut con = redis::Client::open(info)
            .and_then(|c| c.get_connection())
            .map_err(rerr)?;
        let sha = redis::Script::new(SEND_LUA).load(&mut con).map_err(rerr)?;
        Ok(RedisEnd {
            con,
            sha,
            own: own.into(),
            other: other_stream.into(),
            last: "0-0".into(),
            read: Vec::new(),
            got: VecDeque::new(),
        })
    }

    fn send_cmd(&self, m: &[u8]) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(&self.sha)
            .arg(1)
            .arg(&self.other)
            .arg(CAPACITY)
            .arg(m);
        c
    }

    /// `msgs` sends in one pipeline.
    fn send_many(&mut self, msgs: &[[u8; SIZE]]) -> io::Result<()> {
        let mut p = redis::pipe();
        for m in msgs {
            p.add_command(self.send_cmd(m));
        }
        let r: Vec<i64> = p.query(&mut self.con).map_err(rerr)?;
        if r.len() != msgs.len() || r.iter().any(|&v| v != 1) {
            return Err(other(format!("send script answered {r:?}")));
        }
        Ok(())
    }

    /// Deletes what was read, then waits for up to `count` entries.
    fn fill(&mut self, count: usize) -> io::Result<()> {
        let deadline = Instant::now() + RECV_DEADLINE;
        while self.got.is_empty() {
            if Instant::now() > deadline {
                return Err(other(format!(
                    "nothing on {} within {RECV_DEADLINE:?}",
                    self.own
                )));
            }
            let mut p = redis::pipe();
            if !self.read.is_empty() {
                p.cmd("XDEL").arg(&self.own).arg(&self.read).ignore();
            }
            p.cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.own)
                .arg(&self.last);
            let (reply,): (Option<StreamReadReply>,) = p.query(&mut self.con).map_err(rerr)?;
            self.read.clear();
            for key in reply.into_iter().flat_map(|r| r.keys) {
                for entry in key.ids {
                    match entry.map.get("b") {
                        Some(Value::BulkString(b)) => self.got.push_back(b.clone()),
                        v => return Err(other(format!("entry {} holds {v:?}", entry.id))),
                    }
                    self.last = entry.id.clone();
                    self.read.push(entry.id);
                }
            }
        }
        Ok(())
    }

    fn recv_many(&mut self) -> io::Result<Vec<Vec<u8>>> {
        self.fill(PIPELINE)?;
        Ok(self.got.drain(..).collect())
    }
}

impl End for RedisEnd {
    fn send(&mut self, m: &[u8]) -> io::Result<()> {
        let r: i64 = self.send_cmd(m).query(&mut self.con).map_err(rerr)?;
        if r != 1 {
            return Err(other(format!("send script answered {r}")));
        }
        Ok(())
    }

    fn recv(&mut self) -> io::Result<Vec<u8>> {
        self.fill(1)?;
        Ok(self.got.pop_front().expect("filled"))
    }
}

/// An ipcfs `packets` end: a write is a message, a read returns one.
struct PacketEnd {
    tx: OwnedFd,
    rx: OwnedFd,
}

impl End for PacketEnd {
    fn send(&mut self, m: &[u8]) -> io::Result<()> {
        let n = sys_write(self.tx.as_raw_fd(), m)?;
        if n != m.len() {
            return Err(other(format!("short write: {n} of {}", m.len())));
        }
        Ok(())
    }

    fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        let n = sys_read(self.rx.as_raw_fd(), &mut buf)?;
        if n != SIZE {
            return Err(other(format!("received {n} bytes, expected {SIZE}")));
        }
        buf.truncate(n);
        Ok(buf)
    }
}

type FarJob = thread::JoinHandle<(Box<dyn End>, io::Result<Vec<f64>>)>;

/// The far end echoes `n` messages (with `lat`: records their one-way
/// latency and tells `done` instead of answering).
fn far(mut end: Box<dyn End>, n: usize, done: Option<mpsc::Sender<()>>) -> io::Result<FarJob> {
    thread::Builder::new()
        .name("bench-broker-far".into())
        .spawn(move || {
            let r = (|| {
                let mut lat = Vec::with_capacity(if done.is_some() { n } else { 0 });
                for _ in 0..n {
                    let m = end.recv()?;
                    match &done {
                        Some(tx) => {
                            lat.push(now_ns().saturating_sub(sent_at(&m)) as f64 / 1e3);
                            tx.send(()).map_err(|_| other("the sender is gone"))?;
                        }
                        None => end.send(&m)?,
                    }
                }
                Ok(lat)
            })();
            (end, r)
        })
}

/// A local end and a far end on another thread.
struct Pair {
    near: Box<dyn End>,
    far: Option<Box<dyn End>>,
}

impl Pair {
    fn join(&mut self, job: FarJob) -> io::Result<Vec<f64>> {
        let (end, r) = job.join().map_err(|_| other("the far end panicked"))?;
        self.far = Some(end);
        r
    }

    /// `n` round trips near -> far -> near, in µs each.
    fn pingpong(&mut self, n: usize) -> io::Result<Vec<f64>> {
        let f = self
            .far
            .take()
            .ok_or_else(|| other("the far end is gone"))?;
        let job = far(f, n, None)?;
        let mut samples = Vec::with_capacity(n);
        let mut r = Ok(());
        for i in 0..n as u64 {
            let t0 = Instant::now();
            let step = self.near.send(&message(i)).and_then(|()| self.near.recv());
            match step {
                Ok(m) if seq_of(&m) == i => samples.push(t0.elapsed().as_secs_f64() * 1e6),
                Ok(m) => {
                    r = Err(other(format!(
                        "message #{} back, #{i} expected",
                        seq_of(&m)
                    )));
                    break;
                }
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        let joined = if r.is_ok() {
            self.join(job)
        } else {
            // The far end waits for messages that will not come: it gives up
            // after RECV_DEADLINE (redis) or the run's watchdog ends it.
            drop(job);
            Ok(Vec::new())
        };
        r?;
        joined?;
        Ok(samples)
    }

    /// `n` messages near -> far one at a time, each sent once the one
    /// before arrived: the far end's one-way latencies in µs.
    fn one_way(&mut self, n: usize) -> io::Result<Vec<f64>> {
        let f = self
            .far
            .take()
            .ok_or_else(|| other("the far end is gone"))?;
        let (tx, rx) = mpsc::channel();
        let job = far(f, n, Some(tx))?;
        let mut r = Ok(());
        for i in 0..n as u64 {
            if let Err(e) = self.near.send(&message(i)) {
                r = Err(e);
                break;
            }
            if rx.recv_timeout(RECV_DEADLINE).is_err() {
                r = Err(other("the far end did not receive within 10 s"));
                break;
            }
        }
        r?;
        self.join(job)
    }
}

/// Median, p99 (medians over repeats) and pooled quartiles of `run`'s
/// samples, after a warm-up, as `remote::measure_rtt` does.
fn measure_lat(
    plan: &Plan,
    run: &mut dyn FnMut(usize) -> io::Result<Vec<f64>>,
) -> io::Result<(Lat, f64, f64)> {
    let warm = warm_count(plan.rtt_warm, SIZE);
    let t = Instant::now();
    run(warm)?;
    let per = t.elapsed().as_secs_f64() / warm as f64;
    let n = ((plan.target.as_secs_f64() / per) as usize).clamp(plan.rtt_n.0, plan.rtt_n.1);
    let (mut meds, mut p99s, mut all) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.repeats {
        let mut s = run(n)?;
        meds.push(median(&mut s));
        p99s.push(percentile(&mut s, 0.99));
        all.extend(s);
    }
    let (q1, q3) = (percentile(&mut all, 0.25), percentile(&mut all, 0.75));
    Ok((
        Lat {
            med: median(&mut meds),
            p99: Some(median(&mut p99s)),
        },
        q1,
        q3,
    ))
}

/// The baseline's throughput: a writer thread sends `count` messages in
/// pipelines of `PIPELINE`, the reader takes up to `PIPELINE` an XREAD.
/// The writer keeps at most CAPACITY - PIPELINE unread, so the script's
/// capacity check never refuses. Seconds until the last arrived.
fn redis_stream(url: &str, count: usize) -> io::Result<f64> {
    let (a, b) = streams("thr");
    let mut reader = RedisEnd::connect(url, &a, &b)?;
    let mut writer = RedisEnd::connect(url, &b, &a)?;
    let got = Arc::new(AtomicUsize::new(0));
    let seen = got.clone();
    let t0 = Instant::now();
    let job = thread::Builder::new()
        .name("bench-broker-writer".into())
        .spawn(move || -> io::Result<()> {
            let mut sent = 0;
            while sent < count {
                let m = PIPELINE.min(count - sent);
                let deadline = Instant::now() + RECV_DEADLINE;
                while sent + m - seen.load(Ordering::Acquire) > CAPACITY - PIPELINE {
                    if Instant::now() > deadline {
                        return Err(other("the reader took nothing for 10 s"));
                    }
                    thread::yield_now();
                }
                let msgs: Vec<[u8; SIZE]> = (sent..sent + m).map(|i| message(i as u64)).collect();
                writer.send_many(&msgs)?;
                sent += m;
            }
            Ok(())
        })?;
    let mut next = 0u64;
    let mut r = Ok(());
    while (next as usize) < count {
        match reader.recv_many() {
            Ok(msgs) => {
                for m in msgs {
                    if seq_of(&m) != next {
                        r = Err(other(format!(
                            "message #{} arrived, #{next} expected",
                            seq_of(&m)
                        )));
                    }
                    next += 1;
                }
                got.store(next as usize, Ordering::Release);
            }
            Err(e) => r = Err(e),
        }
        if r.is_err() {
            break;
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    if r.is_ok() {
        job.join().map_err(|_| other("the writer panicked"))??;
    }
    r.map(|()| dt)
}

fn measure_redis_thr(url: &str, plan: &Plan) -> io::Result<Thr> {
    let warm = warm_count(plan.thr_warm, SIZE);
    let rate = warm as f64 / redis_stream(url, warm)?;
    let n = ((rate * plan.target.as_secs_f64()) as usize).clamp(plan.thr_n.0, plan.thr_n.1);
    let mut rates = Vec::new();
    for _ in 0..plan.repeats {
        rates.push(n as f64 / redis_stream(url, n)?);
    }
    let msgs = median(&mut rates);
    Ok(Thr {
        msgs,
        mib: Some(msgs * SIZE as f64 / (1 << 20) as f64),
    })
}

/// Two fresh stream names (each run starts on empty streams).
fn streams(tag: &str) -> (String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let i = N.fetch_add(1, Ordering::Relaxed);
    (format!("bench:{tag}:{i}:a"), format!("bench:{tag}:{i}:b"))
}

fn redis_pair(url: &str) -> io::Result<Pair> {
    let (a, b) = streams("lat");
    Ok(Pair {
        near: Box::new(RedisEnd::connect(url, &a, &b)?),
        far: Some(Box::new(RedisEnd::connect(url, &b, &a)?)),
    })
}

/// The text of a panic (the harness panics when a mount fails).
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Runs `f`, turning a panic into its text, without printing it.
fn quietly<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(hook);
    r.unwrap_or_else(|p| Err(panic_text(p)))
}

/// Why a daemon did not mount, in one line: its exit and its last words.
fn mount_failure(text: &str) -> String {
    match text.split_once("its output:\n") {
        Some((head, out)) => {
            let exit = head
                .split_once("exited (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(st, _)| st.to_string());
            let last = out
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            match exit {
                Some(st) => format!("{st}: {}", last.trim()),
                None => last.trim().to_string(),
            }
        }
        None => text.lines().next().unwrap_or(text).to_string(),
    }
}

/// A broker mount named `node`, checked to serve from the broker.
fn broker_mount(bin: &Path, url: &str, node: &str, max_memory: &str) -> Result<Daemon, String> {
    let d = quietly(|| {
        Daemon::start(
            bin,
            &["--broker", url, "--node", node, "--max-memory", max_memory],
        )
    })
    .map_err(|e| mount_failure(&e))?;
    let status = fs::read_to_string(d.mnt().join("proc/status")).unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("broker:")) {
        return Err(format!(
            "--node {node}: mounted, but proc/status has no broker: line (this ipcfs keeps \
             its mailboxes to itself)"
        ));
    }
    Ok(d)
}

/// mkdir on `a`, then waits for the mailbox to show on `b`.
fn shared_box(a: &Path, b: &Path, name: &str) -> io::Result<(PathBuf, PathBuf)> {
    let (pa, pb) = (a.join(name), b.join(name));
    fs::create_dir(&pa).map_err(|e| io::Error::new(e.kind(), format!("mkdir {name}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pb.join("packets").exists() {
        if Instant::now() > deadline {
            return Err(other(format!(
                "{name} made on mount a did not show on mount b in 5 s"
            )));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok((pa, pb))
}

/// The figures the mount rows are compared with.
#[derive(Default)]
struct Baseline {
    rtt: Option<f64>,
    one_way: Option<f64>,
    thr: Option<f64>,
}

fn lat_row(name: &str, note: &str, r: io::Result<(Lat, f64, f64)>) -> (Row, Option<f64>) {
    let mut row = row(name, "64 B".into(), Group::Broker, Role::Other);
    match r {
        Ok((lat, q1, q3)) => {
            row.rtt = Some(Ok(lat));
            row.note = format!("{note}; quartiles {}–{} µs", fmt_num(q1), fmt_num(q3));
            (row, Some(lat.med))
        }
        Err(e) => (na_row(row, &e.to_string()), None),
    }
}

fn baseline_rows(url: &str, plan: &Plan) -> Baseline {
    let mut base = Baseline::default();
    let res = {
        let _s = step("broker baseline: round trips", plan.step_limit);
        redis_pair(url).and_then(|mut p| measure_lat(plan, &mut |n| p.pingpong(n)))
    };
    let (r, med) = lat_row(
        "redis Lua+XADD / XREAD BLOCK ping-pong",
        "baseline, no FUSE: redis crate, Lua script checks capacity and XADDs, XREAD BLOCK",
        res,
    );
    base.rtt = med;
    push_row(r);
    let res = {
        let _s = step("broker baseline: one-way", plan.step_limit);
        redis_pair(url).and_then(|mut p| measure_lat(plan, &mut |n| p.one_way(n)))
    };
    let (r, med) = lat_row(
        "redis Lua+XADD / XREAD BLOCK one-way",
        "baseline one-way latency (\"RTT\" column: one way, timestamp in the message)",
        res,
    );
    base.one_way = med;
    push_row(r);
    let mut r = row(
        "redis Lua+XADD pipelined",
        "64 B".into(),
        Group::Broker,
        Role::Other,
    );
    let _s = step("broker baseline: pipelined", plan.step_limit);
    match measure_redis_thr(url, plan) {
        Ok(t) => {
            base.thr = Some(t.msgs);
            r.thr = Some(Ok(t));
            r.note = format!(
                "baseline: {PIPELINE} sends a pipeline, XREAD COUNT {PIPELINE} (+ XDEL of the last)"
            );
        }
        Err(e) => r = na_row(r, &e.to_string()),
    }
    push_row(r);
    base
}

const RTT_NAME: &str = "ipcfs packets a->b->a (broker)";
const ONE_WAY_NAME: &str = "ipcfs packets a->b one-way (broker)";
const BATCH_NAME: &str = "ipcfs batch b->a (broker)";

fn mount_rows(a: &Daemon, b: &Daemon, base: &Baseline, plan: &Plan, max_msg: usize) {
    let ratio = |x: f64, of: Option<f64>, target: &str| match of {
        Some(b) => format!("×{} of the baseline (target {target})", fmt_ratio(x / b)),
        None => "baseline n/a".into(),
    };
    let boxes = (|| -> io::Result<_> {
        let ab = shared_box(a.mnt(), b.mnt(), "bench.ab")?;
        let ba = shared_box(a.mnt(), b.mnt(), "bench.ba")?;
        Ok((ab, ba))
    })();
    let ((ab_a, ab_b), (ba_a, ba_b)) = match boxes {
        Ok(x) => x,
        Err(e) => {
            for name in [RTT_NAME, ONE_WAY_NAME, BATCH_NAME] {
                let r = row(name, "64 B".into(), Group::Broker, Role::Other);
                push_row(na_row(r, &e.to_string()));
            }
            return;
        }
    };
    let packets = || -> io::Result<Pair> {
        Ok(Pair {
            near: Box::new(PacketEnd {
                tx: open_w(&ab_a.join("packets"))?,
                rx: open_r(&ba_a.join("packets"))?,
            }),
            far: Some(Box::new(PacketEnd {
                tx: open_w(&ba_b.join("packets"))?,
                rx: open_r(&ab_b.join("packets"))?,
            })),
        })
    };
    let res = {
        let _s = step("broker mounts: round trips", plan.step_limit);
        packets().and_then(|mut p| measure_lat(plan, &mut |n| p.pingpong(n)))
    };
    // What no FUSE mount can beat: the baseline's hand-offs plus a write
    // and a read through FUSE at each end (the floor's round trip).
    let floor = floor_rtt();
    let (mut r, med) = lat_row(RTT_NAME, "RTT", res);
    if let Some(m) = med {
        let bound = match (base.rtt, floor) {
            (Some(b), Some(f)) => format!(
                "; ×{} of baseline + floor RTT ({b:.0} + {f:.0} µs, the least through FUSE)",
                fmt_ratio(m / (b + f))
            ),
            _ => String::new(),
        };
        r.note = format!("{}{bound}; {}", ratio(m, base.rtt, "≤ 1.0"), r.note);
    }
    push_row(r);
    let res = {
        let _s = step("broker mounts: one-way", plan.step_limit);
        packets().and_then(|mut p| measure_lat(plan, &mut |n| p.one_way(n)))
    };
    let (mut r, med) = lat_row(ONE_WAY_NAME, "one-way (\"RTT\" column: one way)", res);
    if let Some(m) = med {
        let over = match base.one_way {
            Some(b) => {
                let bound = floor
                    .map(|f| {
                        format!(
                            "; {:+.1} µs over baseline + half the floor RTT",
                            m - b - f / 2.0
                        )
                    })
                    .unwrap_or_default();
                format!("{:+.1} µs over the baseline (target ≤ +40){bound}", m - b)
            }
            None => "baseline n/a".into(),
        };
        r.note = format!("{over}; {}", r.note);
    }
    push_row(r);
    let mut r = row(BATCH_NAME, "64 B".into(), Group::Broker, Role::Other);
    let _s = step("broker mounts: batch", plan.step_limit);
    let res = (|| -> io::Result<(Thr, Option<f64>)> {
        let mut d = Duplex {
            tx: Tx::new(Kind::Batch, H::Fd(open_w(&ab_a.join("batch"))?), max_msg),
            rx: Rx::new(Kind::Batch, H::Fd(open_r(&ba_a.join("batch"))?), max_msg),
            remote: ThreadRemote::boxed(
                Rx::new(Kind::Batch, H::Fd(open_r(&ab_b.join("batch"))?), max_msg),
                Tx::new(Kind::Batch, H::Fd(open_w(&ba_b.join("batch"))?), max_msg),
            ),
            meter: Meter::Off,
        };
        d.probe(SIZE)?;
        measure_thr(&mut d, SIZE, plan)
    })();
    match res {
        Ok((t, _)) => {
            r.note = format!(
                "64 frames a write, mount b writes, mount a reads; {}",
                ratio(t.msgs, base.thr, "≥ 0.7")
            );
            r.thr = Some(Ok(t));
        }
        Err(e) => r = na_row(r, &e.to_string()),
    }
    push_row(r);
}

/// The floor's 64 B round trip (median µs), measured earlier in this run.
fn floor_rtt() -> Option<f64> {
    lock(&ROWS)
        .iter()
        .find(|r| r.name == "floor (fuser)" && r.size == "64 B")
        .and_then(|r| r.rtt.as_ref())
        .and_then(|l| l.as_ref().ok())
        .map(|l| l.med)
}

/// The broker rows: the baseline on a fresh redis-server, then the mounts.
pub(crate) fn broker_rows(bin: &Path, plan: &Plan, max_memory: &str, max_msg: usize) {
    let redis = {
        let _s = step("start redis-server", Duration::from_secs(30));
        quietly(|| Ok(Redis::start())).inspect(|r| {
            let mut reg = lock(&REG);
            if let Some(pid) = r.pid() {
                reg.pids.push(pid as i32);
            }
            reg.dirs.push(r.dir().to_path_buf());
        })
    };
    let redis = match redis {
        Ok(r) => r,
        Err(e) => {
            let why = format!("no redis-server: {}", e.lines().next().unwrap_or(""));
            for name in [
                "redis Lua+XADD / XREAD BLOCK ping-pong",
                "redis Lua+XADD / XREAD BLOCK one-way",
                "redis Lua+XADD pipelined",
                RTT_NAME,
                ONE_WAY_NAME,
                BATCH_NAME,
            ] {
                let r = row(name, "64 B".into(), Group::Broker, Role::Other);
                push_row(na_row(r, &why));
            }
            return;
        }
    };
    let url = redis.url();
    let base = baseline_rows(&url, plan);
    let mounts = {
        let _s = step("mount ipcfs --broker (a and b)", Duration::from_secs(40));
        broker_mount(bin, &url, "a", max_memory)
            .and_then(|a| broker_mount(bin, &url, "b", max_memory).map(|b| (a, b)))
    };
    match mounts {
        Ok((a, b)) => {
            mount_rows(&a, &b, &base, plan, max_msg);
            let _s = step("unmount the broker mounts", Duration::from_secs(30));
            drop(b);
            drop(a);
        }
        Err(e) => {
            let why = format!("broker mount failed: {e}");
            for name in [RTT_NAME, ONE_WAY_NAME, BATCH_NAME] {
                let r = row(name, "64 B".into(), Group::Broker, Role::Other);
                push_row(na_row(r, &why));
            }
        }
    }
    let mut reg = lock(&REG);
    if let Some(pid) = redis.pid() {
        reg.pids.retain(|&p| p != pid as i32);
    }
    reg.dirs.retain(|d| d != redis.dir());
    drop(reg);
    drop(redis);
}
