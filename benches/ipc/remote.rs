//! The far end of a duplex (a thread, or a peer process for direct links),
//! and round trips and throughput measured through a duplex.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::endpoints::{Kind, Rx, Tx, per_write};
use crate::plan::{Plan, warm_count};
use crate::report::{Lat, REG, Thr};
use crate::stats::{Meter, median, percentile};
use crate::sys::{clk_tck, lock, other};

/// What the far end of a duplex does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cmd {
    /// Receive a message and send it back, `count` times.
    Echo { count: usize, size: usize },
    /// Send `count` messages numbered from 0.
    Source { count: usize, size: usize },
}

pub(crate) fn run_cmd(cmd: Cmd, rx: &mut Rx, tx: &mut Tx) -> io::Result<()> {
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

pub(crate) trait Remote {
    fn start(&mut self, cmd: Cmd) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

pub(crate) type Job = JoinHandle<(Rx, Tx, io::Result<()>)>;

/// The far end as a thread of this process.
pub(crate) struct ThreadRemote {
    pub(crate) eps: Option<(Rx, Tx)>,
    pub(crate) job: Option<Job>,
}

impl ThreadRemote {
    pub(crate) fn boxed(rx: Rx, tx: Tx) -> Box<dyn Remote> {
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
pub(crate) struct PeerRemote {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: BufReader<ChildStdout>,
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
pub(crate) struct Duplex {
    pub(crate) tx: Tx,
    pub(crate) rx: Rx,
    pub(crate) remote: Box<dyn Remote>,
    pub(crate) meter: Meter,
}

impl Duplex {
    /// One message there and back, before measuring: a message that cannot
    /// be sent (too large for this channel) fails here, before the far end
    /// waits for it.
    pub(crate) fn probe(&mut self, size: usize) -> io::Result<()> {
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
    pub(crate) fn pingpong(
        &mut self,
        count: usize,
        size: usize,
        each: &mut dyn FnMut(f64),
    ) -> io::Result<()> {
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
    pub(crate) fn stream(&mut self, count: usize, size: usize) -> io::Result<f64> {
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

pub(crate) fn measure_rtt(d: &mut Duplex, size: usize, plan: &Plan) -> io::Result<Lat> {
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
pub(crate) fn measure_thr(
    d: &mut Duplex,
    size: usize,
    plan: &Plan,
) -> io::Result<(Thr, Option<f64>)> {
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
