//! Many senders and receivers, separate processes, on one mailbox under
//! each receiver rule (ipcfs(7), RECEIVER RULES).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;

use crate::harness::{by_mode, drive, mib, seed, step};
use crate::messages::{
    HDR, Rec, STOP, Senders, assert_clean, encode, payload_len, read_log, tally,
};
use crate::workers::{Kid, receiver_kid, sender_kid};

/// N senders and M receivers (separate processes) on one mailbox under `rule`.
pub(crate) fn rule_run(rule: &str) {
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
    let b = m.mailbox("box", rule);
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
    let received = || count(&b, "received");
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
        if rule == "broadcast" && joiner.is_none() && count(&b, "sent") >= u64::from(total / 3) {
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
                // Under pair the sender's STOP ends the receiver, and the
                // receiver may end before the sender has: once the sender
                // ends too, that is the end of the run (both exit statuses
                // and the logs are checked below).
                if stops_by_sender > 0 {
                    for s in &mut senders {
                        s.wait_ok(step());
                    }
                    return Some(());
                }
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
        send_within(step(), &send, &encode(STOP, 0, 0));
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
