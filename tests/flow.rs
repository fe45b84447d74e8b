//! Buffering and flow control: capacity in the policy file, blocking and
//! non-blocking senders, rendezvous (capacity 0), lowering capacity, poll on
//! `send`, rmdir waking senders, the daemon memory bound (ipcfs(7) BUFFERING).
//!
//! Every blocking step has a deadline; waits are on status keys, never on a
//! fixed sleep.

mod common;
use common::*;

use std::io::Write;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------- tests

/// The capacity is set through the policy file, from the shell, and reads back.
#[test]
fn policy_capacity_roundtrip() {
    let m = Mount::new();
    let b = m.mailbox("box", "");
    let o = m.sh(r#"echo "arbitrary capacity=2" > "$M/box/policy""#, SHORT);
    assert!(o.status.success(), "{}", show(&o));
    let p = read_policy(&b.join("policy"));
    assert!(p.starts_with("arbitrary "), "{p:?}");
    assert!(p.split_whitespace().any(|w| w == "capacity=2"), "{p:?}");
    assert_eq!(status_get(&b.join("status"), "capacity"), "2");
    // Other words keep their values; the size suffix is understood.
    set_policy(&b.join("policy"), "max-message-size=4K\n");
    let p = read_policy(&b.join("policy"));
    assert!(p.split_whitespace().any(|w| w == "capacity=2"), "{p:?}");
    assert!(
        p.split_whitespace().any(|w| w == "max-message-size=4096"),
        "{p:?}"
    );
    assert_eq!(status_get(&b.join("status"), "max-message-size"), "4096");
}

/// capacity 2: a third non-blocking send gets EAGAIN; a blocking third send
/// waits (senders-waiting: 1) and completes after one receive; order is kept.
#[test]
fn capacity_two_third_send_eagain_then_completes_after_receive() {
    let m = Mount::new();
    let b = m.mailbox("box", "arbitrary capacity=2\n");
    let send = b.join("send");
    send_nb(&send, b"m1\n").unwrap();
    send_nb(&send, b"m2\n").unwrap();
    assert_errno(
        send_nb(&send, b"x\n"),
        libc::EAGAIN,
        "third O_NONBLOCK send at capacity 2",
    );
    assert_eq!(count(&b, "messages"), 2);

    let mut bg = m.spawn_sh(r#"echo m3 > "$M/box/send" && echo sent"#);
    wait_until(SHORT, "the third sender waits", || {
        count(&b, "senders-waiting") == 1
    });
    assert!(
        bg.try_wait().is_none(),
        "the blocking send must not complete while full"
    );
    assert_eq!(count(&b, "messages"), 2);
    assert_eq!(recv_nb(&b.join("recv")).unwrap(), b"m1\n");
    let o = bg.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));
    assert_eq!(recv_nb(&b.join("recv")).unwrap(), b"m2\n");
    assert_eq!(recv_nb(&b.join("recv")).unwrap(), b"m3\n");
    assert_eq!(count(&b, "senders-waiting"), 0);
}

/// capacity 0 (rendezvous): a send blocks until a receiver takes the message.
#[test]
fn capacity_zero_send_blocks_until_receive() {
    let m = Mount::new();
    m.mailbox("sync", "");
    let o = m.sh(r#"echo "arbitrary capacity=0" > "$M/sync/policy""#, SHORT);
    assert!(o.status.success(), "{}", show(&o));
    let b = m.p("sync");
    assert!(read_policy(&b.join("policy")).contains("capacity=0"));

    let mut bg = m.spawn_sh(r#"echo go > "$M/sync/send" && echo sent"#);
    wait_until(SHORT, "the rendezvous sender waits", || {
        count(&b, "senders-waiting") == 1
    });
    assert!(
        bg.try_wait().is_none(),
        "a capacity-0 send must wait for a receiver"
    );
    let o = m.sh(r#"timeout 5 cat "$M/sync/recv""#, SHORT);
    assert_eq!(out_str(&o), "go\n", "{}", show(&o));
    let o = bg.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));
    let st = stat(&b);
    assert_eq!(num(&st, "senders-waiting"), 0, "{st:?}");
    assert_eq!(num(&st, "messages"), 0, "{st:?}");
}

/// capacity 0: `timeout -s INT 1` on a blocked send returns promptly and
/// delivers nothing.
#[test]
fn capacity_zero_interrupted_send_delivers_nothing() {
    let m = Mount::new();
    let b = m.mailbox("sync", "arbitrary capacity=0\n");
    let start = Instant::now();
    let o = m.sh(
        r#"timeout -s INT 1 sh -c 'echo x > "$M/sync/send"'; echo "rc=$?""#,
        SHORT,
    );
    let took = start.elapsed();
    assert_eq!(out_str(&o), "rc=124\n", "{}", show(&o));
    assert!(
        took < Duration::from_millis(1500),
        "interrupted send took {took:?}"
    );
    wait_until(SHORT, "no sender waits any more", || {
        count(&b, "senders-waiting") == 0
    });
    let st = stat(&b);
    assert_eq!(num(&st, "messages"), 0, "{st:?}");
    assert_errno(
        recv_nb(&b.join("recv")),
        libc::EAGAIN,
        "nothing was delivered",
    );
    // A later receiver still finds nothing.
    let o = m.sh(
        r#"timeout -s INT 1 cat "$M/sync/recv"; echo "rc=$?""#,
        SHORT,
    );
    assert_eq!(out_str(&o), "rc=124\n", "{}", show(&o));
}

/// capacity 0 with a reader already waiting: the send completes at once.
#[test]
fn capacity_zero_with_waiting_reader_completes_at_once() {
    let m = Mount::new();
    let b = m.mailbox("sync", "arbitrary capacity=0\n");
    let reader = m.spawn_sh(r#"timeout 8 cat "$M/sync/recv""#);
    wait_until(SHORT, "a reader waits", || {
        count(&b, "receivers-waiting") == 1
    });
    let start = Instant::now();
    let o = m.sh(
        r#"timeout 5 sh -c 'echo now > "$M/sync/send"'; echo "rc=$?""#,
        SHORT,
    );
    let took = start.elapsed();
    assert_eq!(out_str(&o), "rc=0\n", "{}", show(&o));
    assert!(
        took < Duration::from_secs(1),
        "rendezvous with a waiting reader took {took:?}"
    );
    let o = reader.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "now\n", "{}", show(&o));
}

/// Lowering the capacity below the queue length drops nothing: senders wait
/// (EAGAIN) until the queue falls below the new capacity.
#[test]
fn lowering_capacity_loses_nothing() {
    let m = Mount::new();
    let b = m.mailbox("box", "");
    let (send, recv) = (b.join("send"), b.join("recv"));
    for msg in ["a\n", "b\n", "c\n", "d\n", "e\n"] {
        send_nb(&send, msg.as_bytes()).unwrap();
    }
    set_policy(&b.join("policy"), "capacity=2\n");
    assert!(read_policy(&b.join("policy")).contains("capacity=2"));
    let st = stat(&b);
    assert_eq!(num(&st, "messages"), 5, "{st:?}");
    assert_eq!(num(&st, "dropped"), 0, "{st:?}");
    assert_errno(
        send_nb(&send, b"f\n"),
        libc::EAGAIN,
        "send with 5 queued, capacity 2",
    );
    assert_eq!(recv_nb(&recv).unwrap(), b"a\n");
    assert_eq!(recv_nb(&recv).unwrap(), b"b\n");
    assert_eq!(recv_nb(&recv).unwrap(), b"c\n");
    assert_errno(
        send_nb(&send, b"f\n"),
        libc::EAGAIN,
        "send with 2 queued, capacity 2",
    );
    assert_eq!(recv_nb(&recv).unwrap(), b"d\n");
    send_nb(&send, b"f\n").expect("send with 1 queued, capacity 2");
    assert_eq!(recv_nb(&recv).unwrap(), b"e\n");
    assert_eq!(recv_nb(&recv).unwrap(), b"f\n");
    assert_errno(recv_nb(&recv), libc::EAGAIN, "all received");
    assert_eq!(count(&b, "dropped"), 0);
}

/// poll(2) on `send`: writable with room, not writable when full, writable
/// again after a receive.
#[test]
fn poll_on_send_reports_room() {
    let m = Mount::new();
    let b = m.mailbox("box", "capacity=1\n");
    let mut f = open_with(&b.join("send"), false, true, libc::O_NONBLOCK).unwrap();
    let (_, r) = poll1(&f, libc::POLLOUT, 0);
    assert_ne!(
        r & libc::POLLOUT,
        0,
        "empty mailbox: send writable (revents {r:#x})"
    );
    f.write_all(b"one\n").unwrap();
    let (_, r) = poll1(&f, libc::POLLOUT, 0);
    assert_eq!(
        r & libc::POLLOUT,
        0,
        "full mailbox: send not writable (revents {r:#x})"
    );
    let (_, r) = poll1(&f, libc::POLLOUT, 200);
    assert_eq!(
        r & libc::POLLOUT,
        0,
        "still full: not writable (revents {r:#x})"
    );
    let reader = m.spawn_sh(r#"cat "$M/box/recv""#);
    let (_, r) = poll1(&f, libc::POLLOUT, 5000);
    assert_ne!(
        r & libc::POLLOUT,
        0,
        "writable after a receive (revents {r:#x})"
    );
    let o = reader.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "one\n", "{}", show(&o));
    f.write_all(b"two\n")
        .expect("write after poll said writable");
}

/// rmdir wakes a sender blocked on a full mailbox with EIDRM.
#[test]
fn rmdir_wakes_blocked_sender_with_eidrm() {
    let m = Mount::new();
    let b = m.mailbox("box", "capacity=1\n");
    send_nb(&b.join("send"), b"fill\n").unwrap();
    let bg = m.spawn_sh(r#"echo blocked > "$M/box/send"; echo "rc=$?""#);
    wait_until(SHORT, "the sender waits", || {
        count(&b, "senders-waiting") == 1
    });
    let start = Instant::now();
    std::fs::remove_dir(&b).expect("rmdir a mailbox with a blocked sender");
    let o = bg.wait_timeout(SHORT);
    assert!(start.elapsed() < Duration::from_secs(2), "woke too late");
    assert_eq!(out_str(&o), "rc=1\n", "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Identifier removed"),
        "sender must fail with EIDRM: {}",
        show(&o)
    );
    // Same for a rendezvous mailbox.
    let b = m.mailbox("sync", "capacity=0\n");
    let bg = m.spawn_sh(r#"echo blocked > "$M/sync/send"; echo "rc=$?""#);
    wait_until(SHORT, "the rendezvous sender waits", || {
        count(&b, "senders-waiting") == 1
    });
    std::fs::remove_dir(&b).expect("rmdir sync");
    let o = bg.wait_timeout(SHORT);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Identifier removed"),
        "{}",
        show(&o)
    );
}

/// `capacity=unlimited` is accepted, reads back, and queues past the default
/// capacity of 1024.
#[test]
fn capacity_unlimited_accepted() {
    let m = Mount::new();
    let b = m.mailbox("box", "");
    let o = m.sh(r#"echo "capacity=unlimited" > "$M/box/policy""#, SHORT);
    assert!(o.status.success(), "{}", show(&o));
    let p = read_policy(&b.join("policy"));
    assert!(
        p.split_whitespace().any(|w| w == "capacity=unlimited"),
        "{p:?}"
    );
    let mut f = open_with(&b.join("send"), false, true, libc::O_NONBLOCK).unwrap();
    for i in 0..1100 {
        f.write_all(format!("{i}\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {i} with unlimited capacity: {e}"));
    }
    assert_eq!(count(&b, "messages"), 1100);
    assert_eq!(recv_nb(&b.join("recv")).unwrap(), b"0\n");
}

/// `--max-memory 4M`, unlimited capacity, a flood of 40 MiB of 64 KiB
/// messages: sends past the bound fail with ENOBUFS (also blocking ones),
/// `memory-used` never exceeds `memory-limit`, the daemon's RSS stays under the
/// bound plus a constant; after draining, sends work again.
#[test]
fn memory_bound_flood_enobufs_and_rss_bounded() {
    const LIMIT: u64 = 4 << 20;
    const CONSTANT: u64 = 40 << 20;
    const MSG: usize = 64 << 10;
    const COUNT: usize = 640; // 40 MiB
    let m = Mount::with_args(&["--max-memory", "4M"]);
    let b = m.mailbox("box", "capacity=unlimited\n");
    let st = stat(&b);
    assert_eq!(num(&st, "memory-limit"), LIMIT, "{st:?}");
    // What the mailbox itself holds of the bound, before any message.
    let base = num(&st, "memory-used");
    assert!(base < 4096, "{st:?}");
    let rss0 = proc_kb(m.daemon_pid(), "VmRSS");

    let mut f = open_with(&b.join("send"), false, true, libc::O_NONBLOCK).unwrap();
    let (mut ok, mut nobufs, mut peak_rss, mut peak_used) = (0usize, 0usize, rss0, 0u64);
    for i in 0..COUNT {
        let msg = vec![(i % 251) as u8; MSG];
        match f.write(&msg) {
            Ok(n) => {
                assert_eq!(n, MSG, "message {i} written whole");
                assert_eq!(
                    nobufs, 0,
                    "message {i} accepted after an ENOBUFS with nothing drained"
                );
                ok += 1;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => nobufs += 1,
            Err(e) => panic!("message {i}: expected success or ENOBUFS, got {e}"),
        }
        if i % 16 == 15 {
            let st = stat(&b);
            let used = num(&st, "memory-used");
            assert!(
                used <= num(&st, "memory-limit"),
                "memory-used over the limit: {st:?}"
            );
            peak_used = peak_used.max(used);
            peak_rss = peak_rss.max(proc_kb(m.daemon_pid(), "VmRSS"));
        }
    }
    peak_rss = peak_rss.max(proc_kb(m.daemon_pid(), "VmRSS"));
    eprintln!(
        "flood: {ok} accepted, {nobufs} ENOBUFS; memory-used peak {peak_used}; daemon VmRSS before {rss0} bytes, peak {peak_rss} bytes (bound {} bytes)",
        LIMIT + CONSTANT
    );
    assert!(ok > 0, "nothing was accepted");
    assert!(nobufs > 0, "the flood never hit the bound");
    assert!(
        (ok * MSG) as u64 <= LIMIT,
        "{ok} messages of {MSG} bytes exceed --max-memory"
    );
    assert!(
        peak_rss < LIMIT + CONSTANT,
        "daemon VmRSS {peak_rss} >= {}",
        LIMIT + CONSTANT
    );
    assert_eq!(count(&b, "messages"), ok as u64);

    // A blocking send past the bound fails at once too.
    let o = m.sh(
        r#"timeout 5 dd if=/dev/zero of="$M/box/send" bs=64k count=1 2>&1; echo "rc=$?""#,
        SHORT,
    );
    assert!(
        out_str(&o).contains("No buffer space available"),
        "{}",
        show(&o)
    );

    // Drain, in order, then sends work again.
    let mut r = open_with(&b.join("recv"), true, false, libc::O_NONBLOCK).unwrap();
    for i in 0..ok {
        let got = read_message(&mut r).unwrap_or_else(|e| panic!("drain {i}: {e}"));
        assert_eq!(got.len(), MSG, "message {i} length");
        assert!(
            got.iter().all(|&x| x == (i % 251) as u8),
            "message {i} content"
        );
    }
    drop(r);
    // Left: the mailbox, and the send descriptor still open (descriptors
    // hold 1 KiB of the bound each).
    wait_until(SHORT, "memory-used back to what the mailbox holds", || {
        count(&b, "memory-used") == base + 1024
    });
    f.write_all(&vec![7u8; MSG]).expect("send after draining");
    assert_eq!(count(&b, "messages"), 1);
}

/// Flow control applies to direct links: with `--capacity 1` a second
/// non-blocking send on `proc/P/send` gets EAGAIN.
#[test]
fn flow_control_applies_to_direct_links() {
    let m = Mount::with_args(&["--capacity", "1"]);
    assert!(read_policy(&m.p("policy")).contains("capacity=1"));
    let s = sleeper();
    let send = m.p(&format!("proc/{}/send", s.pid()));
    let mut f = open_with(&send, false, true, libc::O_NONBLOCK).unwrap();
    f.write_all(b"first\n").expect("first send on the link");
    assert_errno(
        f.write(b"second\n"),
        libc::EAGAIN,
        "second O_NONBLOCK send on a full link",
    );
    let (_, r) = poll1(&f, libc::POLLOUT, 0);
    assert_eq!(
        r & libc::POLLOUT,
        0,
        "full link: not writable (revents {r:#x})"
    );
    let st = status_map(&m.p(&format!("proc/{}/status", s.pid())));
    assert_eq!(num(&st, "to-peer-messages"), 1, "{st:?}");
}

/// A background job that ends sends bash a SIGCHLD, whose handler bash
/// installs with SA_RESTART: a pipe write would just go on. A blocked send
/// must go on too, not fail with EINTR and lose the message.
#[test]
fn sigchld_from_a_finished_background_job_does_not_break_a_blocked_send() {
    let m = Mount::new();
    let b = m.mailbox("sync", "arbitrary capacity=0\n");
    let marker = tempfile::tempdir().unwrap();
    let done = marker.path().join("done");
    let sender = m.spawn_sh(&format!(
        r#"(sleep 0.2; : > "{}") &
        echo go > "$M/sync/send"
        echo "send rc=$?""#,
        done.display()
    ));
    wait_status(&b.join("status"), "senders-waiting", "1");
    wait_until(SHORT, "the background job has ended", || done.exists());
    // bash now has SIGCHLD pending while its write is parked.
    let sigchld = 1u64 << (libc::SIGCHLD - 1);
    wait_until(SHORT, "bash has SIGCHLD pending", || {
        let st =
            std::fs::read_to_string(format!("/proc/{}/status", sender.pid())).unwrap_or_default();
        ["SigPnd:", "ShdPnd:"].iter().any(|k| {
            st.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .is_some_and(|m| m & sigchld != 0)
        })
    });
    // Several watcher rounds (100 ms each) pass without ending the send.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(count(&b, "senders-waiting"), 1, "the send is still waiting");
    assert_eq!(recv_nb(&b.join("recv")).unwrap(), b"go\n");
    let o = sender.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "send rc=0\n", "{}", show(&o));
}
