//! The suite's own harness, beside the tests' (tests/common): its two sizes
//! (quick, long) and the deadlines that go with them, a seeded generator of
//! random choices, waiting for progress, and whether the daemon still
//! answers.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Quick,
    Long,
}

pub(crate) fn mode() -> Mode {
    match std::env::var("IPCFS_TORTURE").as_deref() {
        Err(_) | Ok("") | Ok("quick") => Mode::Quick,
        Ok("long") => Mode::Long,
        Ok(other) => panic!("IPCFS_TORTURE={other:?}: expected `quick` or `long`"),
    }
}

/// `quick` in quick mode, `long` in long mode.
pub(crate) fn by_mode<T>(quick: T, long: T) -> T {
    match mode() {
        Mode::Quick => quick,
        Mode::Long => long,
    }
}

/// Deadline of one step (a child's answer, a status value, one system call).
pub(crate) fn step() -> Duration {
    by_mode(Duration::from_secs(15), Duration::from_secs(60))
}

/// A load that makes no progress for this long has failed.
pub(crate) fn stall() -> Duration {
    by_mode(Duration::from_secs(20), Duration::from_secs(60))
}

/// The most any one load may take.
pub(crate) fn cap() -> Duration {
    by_mode(Duration::from_secs(120), Duration::from_secs(3600))
}

/// xorshift64*: small, deterministic, good enough to pick kills and fuzz input.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

/// splitmix64's finaliser.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of a test: `IPCFS_TORTURE_SEED`, or the clock. Printed.
pub(crate) fn seed(test: &str) -> u64 {
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

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Polls `done` every few ms until it returns Some. Fails when `progress`
/// stays the same for `stall()`, or after `cap()`.
pub(crate) fn drive<T>(
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

/// The daemon must still be running and serving: a mailbox round trip.
pub(crate) fn daemon_answers(m: &mut Mount, what: &str) {
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
