//! Direct links (`proc/<pid>/send`, `proc/<pid>/recv`) between many
//! processes (ipcfs(7) DIRECT LINKS).

use std::time::{Duration, Instant};

use crate::common::*;

use crate::harness::{by_mode, seed, step};
use crate::workers::Kid;

/// P processes, each sending K sequence-numbered messages to every other over
/// `proc/<pid>/send` and receiving theirs over `proc/<pid>/recv`.
pub(crate) fn direct_links_between_many_processes() {
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
    wait_until(deadline, "links: peers", || {
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
        // A child's last lines reach us through a reader thread, maybe after
        // it has exited: wait for both.
        kids.iter_mut().all(|c| c.try_wait().is_some()) && results.iter().all(Option::is_some)
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
