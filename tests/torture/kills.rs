//! SIGKILL of senders, receivers and the exclusive holder under load
//! (ipcfs(7) RECEIVING, RECEIVER RULES): nothing is lost or doubled.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::*;

use crate::harness::{Rng, by_mode, drive, seed, step};
use crate::messages::{Rec, STOP, Senders, assert_clean, encode, read_log, sender_done, tally};
use crate::workers::{Kid, receiver_kid, sender_kid};

/// One mailbox under load whose processes get killed: its live senders and
/// receivers, and a record of every one that has ended.
pub(crate) struct Load {
    pub(crate) name: &'static str,
    pub(crate) b: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) per_sender: u32,
    /// What a new receiver does on EBUSY (`retry` for an exclusive holder).
    pub(crate) busy: &'static str,
    pub(crate) senders: Vec<(Kid, u32)>,
    pub(crate) receivers: Vec<Kid>,
    /// Senders that have ended: (id, killed).
    pub(crate) ended: Vec<(u32, bool)>,
    /// The log of every receiver there has been.
    pub(crate) logs: Vec<PathBuf>,
    pub(crate) killed_senders: u32,
    pub(crate) killed_receivers: u32,
}

impl Load {
    pub(crate) fn new(
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

    pub(crate) fn sender_log(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{}-s{id}", self.name))
    }

    pub(crate) fn spawn_sender(&mut self, next_id: &mut u32) {
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

    pub(crate) fn spawn_receiver(&mut self) {
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
    pub(crate) fn reap(&mut self, respawn: bool, next_id: &mut u32) {
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

    pub(crate) fn kill_sender(&mut self, rng: &mut Rng, next_id: &mut u32) {
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

    pub(crate) fn kill_receiver(&mut self, rng: &mut Rng) {
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
    pub(crate) fn verify(&self, stops: u64) {
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
pub(crate) fn kills_under_load() {
    let mut rng = Rng::new(seed("kills"));
    let kills = by_mode(20u32, 300);
    let per_sender = by_mode(300u32, 1000);
    let m = Mount::new();
    let dir = tempfile::tempdir().unwrap();
    let mut next_id = 1u32;
    let mut a = Load::new(
        "arbitrary",
        m.mailbox("a", "arbitrary capacity=32"),
        dir.path(),
        per_sender,
        "fail",
    );
    let mut x = Load::new(
        "exclusive",
        m.mailbox("x", "exclusive capacity=16"),
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
    let progress = || count(&ab, "received") + count(&xb, "received");
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
        send_within(step(), &a.b.join("send"), &encode(STOP, 0, 0));
    }
    send_within(step(), &x.b.join("send"), &encode(STOP, 0, 0));
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
