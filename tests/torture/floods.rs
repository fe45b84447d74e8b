//! Floods against `--max-memory` (ipcfs(7) BUFFERING, "Memory"): one driver, five fills.
//! Each round fills the daemon up to the bound, checks the refusal past it,
//! gives everything back and checks that the daemon holds again what it held
//! before; the figures are printed after the last round.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::harness::{by_mode, daemon_answers, mib, seed, step};
use crate::workers::Kid;

const FLOOD_LIMIT: u64 = 4 << 20;

fn flood_mount() -> Mount {
    Mount::with_args(&["--max-memory", "4M"])
}

fn flood_rounds() -> usize {
    by_mode(1, 3)
}

/// A few descriptors held by the test, given back one at a time when a status
/// file must be read at the bound (opening it costs a descriptor's share).
pub(crate) struct Reserve {
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

    /// A descriptor opened even at the bound: reserve descriptors are given
    /// back while the open is refused, and the open is tried again until the
    /// daemon has seen their release (a close reaches it asynchronously).
    fn open(&mut self, path: &Path, read: bool, write: bool, flags: i32) -> File {
        let mut last = None;
        wait_until(
            step(),
            &format!("open {} at the bound", path.display()),
            || match open_with(path, read, write, flags) {
                Ok(f) => {
                    last = Some(f);
                    true
                }
                Err(e) if errno(&e) == libc::ENOBUFS => {
                    self.held.pop();
                    false
                }
                Err(e) => panic!("open {}: {e}", path.display()),
            },
        );
        last.expect("opened")
    }

    /// A status file, read even at the bound.
    fn status(&mut self, path: &Path) -> HashMap<String, String> {
        loop {
            match fs::read_to_string(path) {
                Ok(t) => return parse_status(&t),
                Err(e) if errno(&e) == libc::ENOBUFS && !self.held.is_empty() => {
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

/// What one round of a flood reached at the bound.
pub(crate) struct Filled {
    /// Requests accepted before the first refusal (the figures' unit).
    accepted: u64,
    /// The errno of the first refusal.
    refusal: i32,
    /// memory-used at the bound.
    used: u64,
}

/// What a flood fills the daemon with, and how it gives it back.
pub(crate) trait Fill: Sized {
    /// The seed's name, the figures' heading (starting with the flood's
    /// letter) and unit, and the flood's name in "after the ... flood".
    const SEED: &'static str;
    const WHAT: &'static str;
    const UNIT: &'static str;
    const NAME: &'static str;
    /// The errno past the bound, and how a failure message calls that request.
    const REFUSAL: i32;
    const PAST: &'static str;

    /// Prepares the mount; `reserve()` then names the file whose descriptors
    /// the test holds in reserve.
    fn setup(m: &Mount) -> Self;
    fn reserve(&self) -> PathBuf;
    /// Fills the daemon until a request is refused.
    fn fill(&mut self, m: &Mount, res: &mut Reserve, round: usize) -> Filled;
    /// Gives back everything `fill` took.
    fn clean(&mut self, m: &Mount, res: &mut Reserve);
    /// What stays held of the memory bound once `clean` is done (watches of
    /// processes that live on).
    fn still_held(&self, _m: &Mount) -> u64 {
        0
    }
    /// Figures of its own, printed after the flood's.
    fn report(&self) {}
}

/// Runs the flood `F`: rounds of fill, refusal, cleanup and return to the
/// memory held before; then the daemon must still answer.
pub(crate) fn flood<F: Fill>() {
    let _ = seed(F::SEED);
    let mut m = flood_mount();
    let mut fill = F::setup(&m);
    let mut res = Reserve::new(fill.reserve());
    let base = memory_used(&mut res, &m);
    let tag = F::WHAT.split(' ').next().unwrap();
    let mut fig = FloodFigures::new(F::WHAT, F::UNIT, &m);
    for round in 0..flood_rounds() {
        let got = fill.fill(&m, &mut res, round);
        assert_eq!(
            got.refusal,
            F::REFUSAL,
            "round {round}: {} past the bound",
            F::PAST
        );
        fig.refusal = got.refusal;
        fig.used_peak = fig.used_peak.max(got.used);
        fig.accepted.push(got.accepted);
        fill.clean(&m, &mut res);
        back_to(&m, &mut res, base + fill.still_held(&m), tag);
        fig.rss_after.push(proc_kb(m.daemon_pid(), "VmRSS"));
    }
    daemon_answers(&mut m, &format!("after the {} flood", F::NAME));
    fig.print(&m);
    fill.report();
}

/// (a) 1-byte messages into an unlimited mailbox until the bound.
pub(crate) struct SmallMessages {
    b: PathBuf,
    sent: u64,
}

impl Fill for SmallMessages {
    const SEED: &'static str = "flood messages";
    const WHAT: &'static str = "(a) 1-byte messages";
    const UNIT: &'static str = "messages";
    const NAME: &'static str = "message";
    const REFUSAL: i32 = libc::ENOBUFS;
    const PAST: &'static str = "a send";

    fn setup(m: &Mount) -> Self {
        SmallMessages {
            b: m.mailbox("box", "capacity=unlimited"),
            sent: 0,
        }
    }

    fn reserve(&self) -> PathBuf {
        self.b.join("send")
    }

    fn fill(&mut self, _: &Mount, res: &mut Reserve, round: usize) -> Filled {
        let b = &self.b;
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
            errno(&err),
            libc::ENOBUFS,
            "round {round}: a send past the bound: {err}"
        );
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
            r.as_ref().is_err_and(|e| matches!(errno(e), libc::ENOBUFS)),
            "a blocking send past the bound fails at once with ENOBUFS: {r:?}"
        );
        let s = res.status(&b.join("status"));
        assert_eq!(num(&s, "messages"), n, "{s:?}");
        let used = num(&s, "memory-used");
        assert!(used <= FLOOD_LIMIT, "{s:?}");
        self.sent = n;
        Filled {
            accepted: n,
            refusal: errno(&err),
            used,
        }
    }

    /// Drains in order.
    fn clean(&mut self, _: &Mount, res: &mut Reserve) {
        let mut r = res.open(&self.b.join("recv"), true, false, libc::O_NONBLOCK);
        for i in 0..self.sent {
            let got = read_message(&mut r).unwrap_or_else(|e| panic!("drain {i}: {e}"));
            assert_eq!(got, [(i % 251) as u8], "message {i}");
        }
        assert_errno(read_message(&mut r), libc::EAGAIN, "drained");
    }
}

/// (b) mkdir until ENOSPC.
pub(crate) struct Mailboxes {
    reserve: PathBuf,
    made: u64,
}

impl Fill for Mailboxes {
    const SEED: &'static str = "flood mailboxes";
    const WHAT: &'static str = "(b) mailboxes";
    const UNIT: &'static str = "mkdirs";
    const NAME: &'static str = "mailbox";
    const REFUSAL: i32 = libc::ENOSPC;
    const PAST: &'static str = "mkdir";

    fn setup(m: &Mount) -> Self {
        Mailboxes {
            reserve: m.mailbox("reserve", "").join("send"),
            made: 0,
        }
    }

    fn reserve(&self) -> PathBuf {
        self.reserve.clone()
    }

    fn fill(&mut self, m: &Mount, res: &mut Reserve, _: usize) -> Filled {
        let mut n = 0u64;
        let err = loop {
            match fs::create_dir(m.p(&format!("m{n:07}"))) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 1_000_000, "no refusal after {n} mailboxes");
        };
        let s = res.status(&m.p("proc/status"));
        assert_eq!(num(&s, "mailboxes"), n + 1, "{s:?}");
        self.made = n;
        Filled {
            accepted: n,
            refusal: errno(&err),
            used: num(&s, "memory-used"),
        }
    }

    fn clean(&mut self, m: &Mount, _: &mut Reserve) {
        for i in 0..self.made {
            fs::remove_dir(m.p(&format!("m{i:07}"))).unwrap_or_else(|e| panic!("rmdir {i}: {e}"));
        }
    }
}

/// (c) many processes each opening `proc/<pid>/recv` of many live processes.
pub(crate) struct Links {
    reserve: PathBuf,
    /// The pids of the target processes, as a linker reads them.
    line: String,
    _targets: Vec<Held>,
    linkers: Vec<Kid>,
    links_at_bound: u64,
}

impl Fill for Links {
    const SEED: &'static str = "flood links";
    const WHAT: &'static str = "(c) direct links";
    const UNIT: &'static str = "proc/<pid>/recv opens";
    const NAME: &'static str = "link";
    const REFUSAL: i32 = libc::ENOBUFS;
    const PAST: &'static str = "a link open";

    fn setup(m: &Mount) -> Self {
        let reserve = m.mailbox("reserve", "").join("send");
        let targets: Vec<Held> = (0..50).map(|_| sleeper()).collect();
        let line = targets
            .iter()
            .map(|t| t.pid().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        Links {
            reserve,
            line,
            _targets: targets,
            linkers: Vec::new(),
            links_at_bound: 0,
        }
    }

    fn reserve(&self) -> PathBuf {
        self.reserve.clone()
    }

    fn fill(&mut self, m: &Mount, res: &mut Reserve, _: usize) -> Filled {
        let linkers = &mut self.linkers;
        let mut opened = 0u64;
        let refused = loop {
            assert!(linkers.len() < 200, "no refusal after {opened} link opens");
            let mut k = Kid::spawn(
                "linker",
                &format!("linker {}", linkers.len()),
                &[("T_MOUNT", m.path().display().to_string())],
            );
            k.tell(&self.line);
            opened += k.expect("OPENED", step()).parse::<u64>().unwrap();
            let r: i32 = k.expect("REFUSED", step()).parse().unwrap();
            linkers.push(k);
            if r != 0 {
                break r;
            }
        };
        let s = res.status(&m.p("proc/status"));
        self.links_at_bound = num(&s, "links");
        Filled {
            accepted: opened,
            refusal: refused,
            used: num(&s, "memory-used"),
        }
    }

    fn still_held(&self, m: &Mount) -> u64 {
        // The targets live on, and are watched until they exit.
        self._targets.len() as u64 * m.watch_cost(4 << 20, 2)
    }

    fn clean(&mut self, m: &Mount, res: &mut Reserve) {
        for k in &mut self.linkers {
            k.close_stdin();
        }
        for k in &mut self.linkers {
            k.wait_ok(step());
        }
        self.linkers.clear();
        wait_until(step(), "every link is reclaimed", || {
            num(&res.status(&m.p("proc/status")), "links") == 0
        });
    }

    fn report(&self) {
        println!(
            "torture flood (c): {} links held at the bound, 50 target processes",
            self.links_at_bound
        );
    }
}

/// (d) many open descriptors on one `send`.
pub(crate) struct Descriptors {
    b: PathBuf,
    openers: Vec<Kid>,
}

impl Fill for Descriptors {
    const SEED: &'static str = "flood descriptors";
    const WHAT: &'static str = "(d) open descriptors";
    const UNIT: &'static str = "opens";
    const NAME: &'static str = "descriptor";
    const REFUSAL: i32 = libc::ENOBUFS;
    const PAST: &'static str = "an open";

    fn setup(m: &Mount) -> Self {
        Descriptors {
            b: m.mailbox("box", ""),
            openers: Vec::new(),
        }
    }

    fn reserve(&self) -> PathBuf {
        self.b.join("send")
    }

    fn fill(&mut self, m: &Mount, res: &mut Reserve, _: usize) -> Filled {
        let openers = &mut self.openers;
        let mut opened = 0u64;
        let refused = loop {
            assert!(openers.len() < 100, "no refusal after {opened} opens");
            let mut k = Kid::spawn(
                "opener",
                &format!("opener {}", openers.len()),
                &[
                    ("T_PATH", self.b.join("send").display().to_string()),
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
        Filled {
            accepted: opened,
            refusal: refused,
            used: memory_used(res, m),
        }
    }

    fn clean(&mut self, _: &Mount, _: &mut Reserve) {
        for k in &mut self.openers {
            k.close_stdin();
        }
        for k in &mut self.openers {
            k.wait_ok(step());
        }
        self.openers.clear();
    }
}

/// (e) many readers parked on one empty mailbox.
pub(crate) struct ParkedReaders {
    b: PathBuf,
    parkers: Vec<Kid>,
}

impl ParkedReaders {
    /// Readers each parker parks, one per thread.
    const THREADS: u64 = 200;
}

impl Fill for ParkedReaders {
    const SEED: &'static str = "flood parked readers";
    const WHAT: &'static str = "(e) parked readers";
    const UNIT: &'static str = "parked reads";
    const NAME: &'static str = "parked-reader";
    const REFUSAL: i32 = libc::ENOBUFS;
    const PAST: &'static str = "a parked read";

    fn setup(m: &Mount) -> Self {
        ParkedReaders {
            b: m.mailbox("box", ""),
            parkers: Vec::new(),
        }
    }

    fn reserve(&self) -> PathBuf {
        self.b.join("send")
    }

    fn fill(&mut self, _: &Mount, res: &mut Reserve, round: usize) -> Filled {
        let (b, parkers) = (&self.b, &mut self.parkers);
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
                    ("T_THREADS", Self::THREADS.to_string()),
                ],
            ));
            let total = Self::THREADS * parkers.len() as u64;
            wait_until(step(), "every reader is parked or refused", || {
                for k in parkers.iter_mut() {
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
        let s = res.status(&b.join("status"));
        Filled {
            accepted: num(&s, "receivers-waiting"),
            refusal: refusals[0],
            used: num(&s, "memory-used"),
        }
    }

    fn clean(&mut self, _: &Mount, res: &mut Reserve) {
        for k in &mut self.parkers {
            k.kill();
        }
        self.parkers.clear();
        wait_until(step(), "no reader waits any more", || {
            num(&res.status(&self.b.join("status")), "receivers-waiting") == 0
        });
    }
}
