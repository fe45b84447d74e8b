//! Mailboxes across hosts (ipcfs(7), ACROSS HOSTS): two daemons, `a` and
//! `b`, mounted on one real redis-server stand for two hosts. The tree, the
//! queues, the receiver rules, flow control, receipts and status are shared;
//! blocked calls wait in their own daemon (interruptible at once); `proc/`
//! stays local; a mount without `--broker` keeps its own mailboxes.
//!
//! Every test starts its own redis-server and its own mounts. Every blocking
//! step has a deadline; waits are on conditions, never on a fixed sleep.

mod common;
use common::*;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Less than the kernel's entry and attribute cache time of the tree (1 s):
/// what mount `a` changes must show on mount `b` sooner, so `b` must have
/// been told (its cached entries invalidated), not merely have waited them out.
const AT_ONCE: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------- local helpers

/// Two mounts, nodes `a` and `b`, on `redis`.
fn two(redis: &Redis) -> (Mount, Mount) {
    (
        Mount::on_broker(redis, "a", &[]),
        Mount::on_broker(redis, "b", &[]),
    )
}

/// One read(2) of at most `size` bytes, within the deadline.
fn read1(f: &File, size: usize, what: &str) -> std::io::Result<Vec<u8>> {
    let mut f = f.try_clone().expect("dup a descriptor");
    within(T, what, move || {
        let mut buf = vec![0u8; size];
        let n = f.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    })
}

// ---------------------------------------------------------------------- tests

/// mkdir on `a`, with its mode and owner, shows on `b` at once (ls, stat);
/// chmod and chown on `a` show on `b` at once; the files inside carry the
/// same attributes on both mounts.
#[test]
fn mkdir_chmod_chown_on_a_show_on_b_at_once() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    // b looks first: whatever it caches must not hide a's mkdir.
    assert!(
        std::fs::metadata(b.p("box")).is_err(),
        "no mailbox yet on b"
    );
    let o = a.sh("mkdir -m 0750 box", T);
    assert!(o.status.success(), "mkdir on a: {}", show(&o));
    wait_until(AT_ONCE, "b sees a's mkdir", || b.p("box").is_dir());
    let o = b.sh("ls", T);
    assert_eq!(out_str(&o), "box\npolicy\nproc\n", "ls on b: {}", show(&o));
    let meta = std::fs::metadata(b.p("box")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o750, "the mode mkdir asked for on a");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "owned by a's caller");
    for f in ["send", "recv", "packets", "batch", "policy", "status"] {
        let (ma, mb) = (
            std::fs::metadata(a.p("box").join(f)).unwrap(),
            std::fs::metadata(b.p("box").join(f)).unwrap(),
        );
        assert_eq!(
            (ma.mode(), ma.uid(), ma.gid()),
            (mb.mode(), mb.uid(), mb.gid()),
            "box/{f}: the same attributes on both mounts"
        );
    }

    // b has the attributes cached now; a's changes must show at once.
    let _ = std::fs::metadata(b.p("box")).unwrap();
    std::fs::set_permissions(a.p("box"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(a.p("box"), Some(NOBODY), Some(NOBODY)).unwrap();
    wait_until(AT_ONCE, "b sees a's chmod and chown", || {
        let m = std::fs::metadata(b.p("box")).unwrap();
        m.mode() & 0o7777 == 0o1777 && m.uid() == NOBODY && m.gid() == NOBODY
    });
    // Owners are shared as numbers: nobody may now use the mailbox from b.
    let o = b.sh_as_nobody("echo hi > \"$M/box/send\" && cat \"$M/box/recv\"", T);
    assert!(o.status.success(), "nobody on b: {}", show(&o));
    assert_eq!(out_str(&o), "hi\n");
}

/// rename on `a` moves the mailbox with its queue, and rmdir on `a` removes
/// it, both seen on `b` at once.
#[test]
fn rename_and_rmdir_on_a_show_on_b_at_once() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let ba = shared_mailbox(&a, &[&b], "old", "");
    send(&ba, b"kept across the rename\n");
    // b has the entry cached now: the rename must show at once all the same.
    assert!(b.p("old").is_dir(), "b sees old");
    std::fs::rename(a.p("old"), a.p("new")).expect("rename on a");
    wait_until(AT_ONCE, "b sees the rename", || {
        b.p("new").is_dir() && std::fs::metadata(b.p("old")).is_err()
    });
    assert_eq!(
        recv(&b.p("new")),
        b"kept across the rename\n",
        "the queue moved with the mailbox"
    );
    let _ = std::fs::metadata(b.p("new")).unwrap();
    std::fs::remove_dir(a.p("new")).expect("rmdir on a");
    wait_until(AT_ONCE, "b sees the rmdir", || {
        std::fs::metadata(b.p("new")).is_err()
    });
    let o = b.sh("ls", T);
    assert_eq!(out_str(&o), "policy\nproc\n", "ls on b: {}", show(&o));
}

/// echo on `a`, cat on `b`: one message each, exact bytes (every byte
/// value), several in the order they were sent.
#[test]
fn echo_on_a_cat_on_b_exact_bytes_in_order() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    shared_mailbox(&a, &[&b], "box", "");
    let o = a.sh("echo hello > box/send", T);
    assert!(o.status.success(), "{}", show(&o));
    let o = b.sh("cat box/recv", T);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(out_str(&o), "hello\n", "one message, exactly");

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    send(&a.p("box"), &binary);
    assert!(
        recv(&b.p("box")) == binary,
        "70,000 bytes of every value arrive unchanged"
    );

    for i in 0..20 {
        send(&a.p("box"), format!("m{i}\n").as_bytes());
    }
    for i in 0..20 {
        assert_eq!(
            String::from_utf8_lossy(&recv(&b.p("box"))),
            format!("m{i}\n"),
            "message {i} in send order"
        );
    }
    assert_errno(
        recv_nb(&b.p("box/recv")),
        libc::EAGAIN,
        "nothing more is queued",
    );
}

/// A reader blocked on `b` wakes as soon as `a` sends (no polling
/// interval), and poll(2) on `b` reports the message as soon as it is sent.
#[test]
fn a_reader_blocked_on_b_wakes_when_a_sends() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    for round in 0..3 {
        let reader = cat_bg(&b.p("box/recv"));
        wait_receivers_waiting(&bx, 1, T);
        let start = Instant::now();
        send(&bx, format!("wake {round}\n").as_bytes());
        let o = reader.wait_timeout(T);
        let took = start.elapsed();
        assert_eq!(out_str(&o), format!("wake {round}\n"), "{}", show(&o));
        assert!(
            took < Duration::from_millis(500),
            "round {round}: the reader on b woke {took:?} after a's send (no polling interval expected)"
        );
    }

    let r = open_with(&b.p("box/recv"), true, false, libc::O_NONBLOCK).unwrap();
    let (n, _) = poll1(&r, libc::POLLIN, 0);
    assert_eq!(n, 0, "nothing to read yet");
    let start = Instant::now();
    send(&bx, b"polled\n");
    let (n, rev) = poll1(&r, libc::POLLIN, 5_000);
    assert!(
        n == 1 && rev & libc::POLLIN != 0,
        "poll on b reports a's message (n {n}, revents {rev:#x})"
    );
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "poll woke {:?} after the send",
        start.elapsed()
    );
    let mut r = r;
    assert_eq!(read_message(&mut r).unwrap(), b"polled\n");
}

/// packets and batch across mounts: a batch written on `a` is one message
/// per frame on `b`; a packets buffer too small gets EMSGSIZE and leaves
/// the message queued; a batch read on `a` frames what `b` wrote.
#[test]
fn packets_and_batch_across_mounts() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    shared_mailbox(&a, &[&b], "pk", "");
    let mut w = open_with(&a.p("pk/batch"), false, true, 0).unwrap();
    let data = frames(&[b"one", b"two", b"three"]);
    assert_eq!(w.write(&data).unwrap(), data.len(), "one batch write");
    wait_until(T, "b counts three messages", || {
        count(&b.p("pk"), "messages") == 3
    });

    let r = open_with(&b.p("pk/packets"), true, false, libc::O_NONBLOCK).unwrap();
    assert_errno(
        read1(&r, 2, "packets read of 2 bytes on b"),
        libc::EMSGSIZE,
        "a 3-byte message in a 2-byte packets buffer",
    );
    assert_eq!(read1(&r, 100, "packets read on b").unwrap(), b"one");
    let rb = open_with(&b.p("pk/batch"), true, false, libc::O_NONBLOCK).unwrap();
    assert_eq!(
        unframe(&read1(&rb, 4096, "batch read on b").unwrap()),
        vec![b"two".to_vec(), b"three".to_vec()],
        "the rest, framed, in order"
    );
    assert_errno(
        read1(&r, 100, "packets read on b"),
        libc::EAGAIN,
        "nothing more queued",
    );

    let mut wb = open_with(&b.p("pk/packets"), false, true, 0).unwrap();
    for msg in [&b"x"[..], b"yy", b"zzz"] {
        assert_eq!(wb.write(msg).unwrap(), msg.len());
    }
    let ra = open_with(&a.p("pk/batch"), true, false, libc::O_NONBLOCK).unwrap();
    assert_eq!(
        unframe(&read1(&ra, 4096, "batch read on a").unwrap()),
        vec![b"x".to_vec(), b"yy".to_vec(), b"zzz".to_vec()],
        "b's packets, framed on a"
    );
}

/// capacity across mounts: with the mailbox full, O_NONBLOCK writes get
/// EAGAIN on both mounts; a blocking writer on `a` waits (senders-waiting
/// on both mounts) until a reader on `b` takes a message, then completes,
/// and order is kept.
#[test]
fn a_full_mailbox_blocks_a_writer_on_a_until_b_reads() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "arbitrary capacity=1\n");
    send_nb(&bx.join("send"), b"first\n").unwrap();
    for (m, who) in [(&a, "a"), (&b, "b")] {
        assert_errno(
            send_nb(&m.p("box/send"), b"x\n"),
            libc::EAGAIN,
            &format!("O_NONBLOCK send on {who} to a full mailbox"),
        );
    }
    let mut writer = a.spawn_sh(r#"echo second > "$M/box/send" && echo sent"#);
    wait_until(T, "b shows a's writer waiting", || {
        count(&b.p("box"), "senders-waiting") == 1
    });
    assert!(
        writer.try_wait().is_none(),
        "the writer on a must wait while the mailbox is full"
    );
    assert_eq!(recv_nb(&b.p("box/recv")).unwrap(), b"first\n");
    let o = writer.wait_timeout(T);
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));
    assert_eq!(recv(&b.p("box")), b"second\n");
    assert_eq!(count(&a.p("box"), "senders-waiting"), 0);
}

/// capacity 0 across mounts: a send on `a` completes only when a reader on
/// `b` has taken the message; O_NONBLOCK with no reader gets EAGAIN; with a
/// reader parked on `b`, a send on `a` completes at once.
#[test]
fn rendezvous_across_mounts() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "sync", "arbitrary capacity=0\n");
    assert_errno(
        send_nb(&bx.join("send"), b"x\n"),
        libc::EAGAIN,
        "O_NONBLOCK rendezvous with no reader",
    );
    let mut writer = a.spawn_sh(r#"echo rdv > "$M/sync/send" && echo sent"#);
    wait_until(T, "the rendezvous sender waits", || {
        count(&b.p("sync"), "senders-waiting") == 1
    });
    assert!(writer.try_wait().is_none(), "no reader yet: the send waits");
    assert_eq!(count(&b.p("sync"), "messages"), 0, "nothing is queued");
    assert_eq!(recv(&b.p("sync")), b"rdv\n");
    let o = writer.wait_timeout(T);
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));

    let reader = cat_bg(&b.p("sync/recv"));
    wait_receivers_waiting(&bx, 1, T);
    send_nb(&bx.join("send"), b"to the parked reader\n")
        .expect("a rendezvous with a reader parked on b completes at once");
    let o = reader.wait_timeout(T);
    assert_eq!(out_str(&o), "to the parked reader\n", "{}", show(&o));
}

/// A blocked sender's message waits on the broker, where a reader of any
/// mount takes it as a local mount's reader would: an O_NONBLOCK read on
/// `b` of a rendezvous takes the message of a writer blocked on `a` and
/// completes its write; a batch read takes what is queued and, as each
/// taken message makes room, what blocked writers carry, in order; a
/// maximum size lowered under a blocked writer does not fail it (its
/// message was checked when it was written).
#[test]
fn blocked_writers_messages_are_taken_by_readers_of_any_mount() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let rdv = shared_mailbox(&a, &[&b], "sync", "arbitrary capacity=0\n");
    let writer = a.spawn_sh(r#"echo rdv > "$M/sync/send" && echo sent"#);
    wait_until(T, "the rendezvous writer on a waits", || {
        count(&rdv, "senders-waiting") == 1
    });
    assert_eq!(
        recv_nb(&b.p("sync/recv"))
            .expect("an O_NONBLOCK read of a rendezvous with a blocked writer"),
        b"rdv\n"
    );
    let o = writer.wait_timeout(T);
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));

    let q = shared_mailbox(&a, &[&b], "q", "arbitrary capacity=1\n");
    send_nb(&q.join("send"), b"one").unwrap();
    let two_ = a.spawn_sh(r#"printf two > "$M/q/send" && echo sent"#);
    wait_until(T, "the first blocked writer waits", || {
        count(&q, "senders-waiting") == 1
    });
    let three = a.spawn_sh(r#"printf three > "$M/q/send" && echo sent"#);
    wait_until(T, "the second blocked writer waits", || {
        count(&q, "senders-waiting") == 2
    });
    std::fs::write(b.p("q/policy"), "arbitrary capacity=1 max-message-size=4\n")
        .expect("lower the maximum size under the blocked writers");
    let rb = open_with(&b.p("q/batch"), true, false, libc::O_NONBLOCK).unwrap();
    let got = read1(&rb, 4096, "an O_NONBLOCK batch read on b").expect("a batch read");
    assert_eq!(
        unframe(&got),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()],
        "the queued message, then both blocked writers' messages, in order"
    );
    for (w, what) in [(two_, "two"), (three, "three")] {
        let o = w.wait_timeout(T);
        assert_eq!(out_str(&o), "sent\n", "the writer of {what}: {}", show(&o));
    }
    assert_eq!(count(&q, "senders-waiting"), 0);
    assert_eq!(count(&q, "messages"), 0);
}

/// arbitrary: the reader waiting longest across mounts gets the message —
/// not the one on the sender's own mount.
#[test]
fn the_longest_waiting_reader_across_mounts_gets_the_message() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    let on_b = cat_bg(&b.p("box/recv"));
    wait_receivers_waiting(&bx, 1, T);
    let on_a = cat_bg(&a.p("box/recv"));
    wait_receivers_waiting(&bx, 2, T);
    send(&bx, b"first\n");
    let o = on_b.wait_timeout(T);
    assert_eq!(
        out_str(&o),
        "first\n",
        "b's reader waited longest: {}",
        show(&o)
    );
    send(&b.p("box"), b"second\n");
    let o = on_a.wait_timeout(T);
    assert_eq!(out_str(&o), "second\n", "{}", show(&o));

    // The other way round.
    let on_a = cat_bg(&a.p("box/recv"));
    wait_receivers_waiting(&bx, 1, T);
    let on_b = cat_bg(&b.p("box/recv"));
    wait_receivers_waiting(&bx, 2, T);
    send(&b.p("box"), b"third\n");
    assert_eq!(out_str(&on_a.wait_timeout(T)), "third\n");
    send(&bx, b"fourth\n");
    assert_eq!(out_str(&on_b.wait_timeout(T)), "fourth\n");
}

/// exclusive across mounts: while a process on `a` has recv open, opens of
/// recv on `b` get EBUSY (senders are free); the hold ends when the holder
/// closes its last descriptor, and when it exits.
#[test]
fn exclusive_holds_across_mounts() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "exclusive\n");
    let recv_b = b.p("box/recv");
    let holder = hold(&[(&bx.join("recv"), libc::O_RDONLY)], None).expect("a holder on a");
    assert!(
        status_of(&b.p("box"), "holder").contains(&holder.pid().to_string()),
        "b's status names a's holder: {:?}",
        stat(&b.p("box"))
    );
    assert_errno(
        in_child(&recv_b, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "another process opens recv on b",
    );
    assert_errno(
        open_with(&recv_b, true, false, libc::O_NONBLOCK),
        libc::EBUSY,
        "the test process opens recv on b",
    );
    in_child(&b.p("box/send"), libc::O_WRONLY, false, None).expect("senders on b are free");
    holder.kill_and_reap();
    wait_until(T, "recv on b is free once a's holder exited", || {
        in_child(&recv_b, libc::O_RDONLY, false, None).is_ok()
    });

    // Closing the last descriptor ends the hold too.
    let f = open_with(&bx.join("recv"), true, false, libc::O_NONBLOCK).expect("hold from a");
    assert_errno(
        in_child(&recv_b, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "another process opens recv on b while the test process holds it on a",
    );
    drop(f);
    wait_until(T, "recv on b is free once a's holder closed", || {
        in_child(&recv_b, libc::O_RDONLY, false, None).is_ok()
    });
}

/// pair across mounts: one process on `a` and one on `b` are the pair; a
/// third process on either mount gets EBUSY until a member exits.
#[test]
fn pair_holds_across_mounts() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "pair\n");
    let x = hold(&[(&bx.join("send"), libc::O_WRONLY)], None).expect("first member, on a");
    let y = hold(&[(&b.p("box/recv"), libc::O_RDONLY)], None).expect("second member, on b");
    let pair = status_of(&b.p("box"), "pair");
    for p in [x.pid(), y.pid()] {
        assert!(
            pair.contains(&p.to_string()),
            "status names both members: {pair:?}"
        );
    }
    assert_errno(
        in_child(&bx.join("recv"), libc::O_RDONLY, false, None),
        libc::EBUSY,
        "a third process opens recv on a",
    );
    assert_errno(
        in_child(&b.p("box/send"), libc::O_WRONLY, false, None),
        libc::EBUSY,
        "a third process opens send on b",
    );
    x.kill_and_reap();
    wait_until(T, "a slot frees on b once a's member exited", || {
        in_child(&b.p("box/send"), libc::O_WRONLY, false, None).is_ok()
    });
    drop(y);
}

/// A rule written on one mount binds the processes that have the mailbox
/// open on every mount, in the order they opened it (ipcfs(7), RECEIVER
/// RULES): made `exclusive`, the first receiver (on `a`) holds it, and the
/// later one's blocked read (on `b`) ends with EBUSY; made `pair`, the
/// first two openers are bound and a third gets EBUSY at its next read.
#[test]
fn a_rule_written_on_b_binds_the_openers_of_both_mounts_in_open_order() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "arbitrary\n");
    let first = cat_bg(&bx.join("recv"));
    wait_receivers_waiting(&bx, 1, T);
    let second = cat_bg(&b.p("box/recv"));
    wait_receivers_waiting(&bx, 2, T);
    std::fs::write(b.p("box/policy"), "exclusive\n").expect("make the busy mailbox exclusive");
    let o = second.wait_timeout(T);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("busy"),
        "the later receiver's blocked read on b ends with EBUSY: {}",
        show(&o)
    );
    assert!(
        status_of(&b.p("box"), "holder").contains(&first.pid().to_string()),
        "the first receiver holds the mailbox: {:?}",
        stat(&b.p("box"))
    );
    send(&b.p("box"), b"to the holder\n");
    let o = first.wait_timeout(T);
    assert_eq!(out_str(&o), "to the holder\n", "{}", show(&o));

    // pair: the first two openers, whichever their mount (once the
    // exited readers' descriptors are closed on the broker too).
    std::fs::write(a.p("box/policy"), "arbitrary\n").unwrap();
    wait_until(T, "the exited readers' descriptors are closed", || {
        count(&bx, "receivers") == 0
    });
    let x = hold(&[(&bx.join("send"), libc::O_WRONLY)], None).expect("an opener on a");
    let y = hold(&[(&b.p("box/recv"), libc::O_RDONLY)], None).expect("an opener on b");
    let third = open_with(&bx.join("recv"), true, false, libc::O_NONBLOCK).expect("a third on a");
    std::fs::write(a.p("box/policy"), "pair\n").expect("make the busy mailbox a pair");
    // b learns of the new rule from its pump, a moment later.
    let bound = |pair: &str| {
        [x.pid(), y.pid()]
            .iter()
            .all(|p| pair.contains(&p.to_string()))
    };
    wait_until(T, "b's status names both first openers as the pair", || {
        bound(&status_of(&b.p("box"), "pair"))
    });
    let pair = status_of(&a.p("box"), "pair");
    assert!(bound(&pair), "a's status names the same pair: {pair:?}");
    assert_errno(
        read1(&third, 64, "a read by a third process"),
        libc::EBUSY,
        "a read by an opener the pair does not bind",
    );
}

/// Receipts across mounts: a sender on `a` reads `PID NODE` — the pid of
/// the reader on `b`, and `b`.
#[test]
fn receipts_name_the_reader_pid_and_its_node() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    let reader = cat_bg(&b.p("box/recv"));
    wait_receivers_waiting(&bx, 1, T);
    let o = a.sh(
        r#"exec 3<>"$M/box/send"
        echo job >&3
        read -r who <&3
        echo "$who""#,
        T,
    );
    assert!(o.status.success(), "{}", show(&o));
    let pid = reader.pid();
    let r = reader.wait_timeout(T);
    assert_eq!(out_str(&r), "job\n", "{}", show(&r));
    assert_eq!(
        out_str(&o),
        format!("{pid} b\n"),
        "the receipt names b's reader and b"
    );
}

/// status on both mounts: the same shared counters, and the lines
/// `broker: URL`, `node: NAME`, `broker-reachable: yes` (in mailbox status
/// files and in proc/status).
#[test]
fn status_shows_shared_counters_and_the_broker() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    for i in 0..3 {
        send(&bx, format!("m{i}\n").as_bytes());
    }
    assert_eq!(recv(&b.p("box")), b"m0\n");
    for (m, node) in [(&a, "a"), (&b, "b")] {
        let s = stat(&m.p("box"));
        for (k, v) in [
            ("messages", "2"),
            ("bytes", "6"),
            ("sent", "3"),
            ("received", "1"),
            ("broker", redis.url().as_str()),
            ("node", node),
            ("broker-reachable", "yes"),
        ] {
            assert_eq!(
                s.get(k).map(String::as_str),
                Some(v),
                "{node}'s box/status `{k}`: {s:?}"
            );
        }
        let p = status_map(&m.p("proc/status"));
        for (k, v) in [
            ("broker", redis.url().as_str()),
            ("node", node),
            ("broker-reachable", "yes"),
        ] {
            assert_eq!(
                p.get(k).map(String::as_str),
                Some(v),
                "{node}'s proc/status `{k}`: {p:?}"
            );
        }
    }
}

/// A password in the broker's URL never shows: not in status, not in the
/// daemon's log (even at RUST_LOG=debug), and — given through
/// IPCFS_BROKER_URL — not in the daemon's command line (what `ps` shows).
#[test]
fn a_broker_password_never_shows() {
    const PW: &str = "pw-4711-never-shown";
    let redis = Redis::with(RedisConfig {
        password: Some(PW.into()),
        ..RedisConfig::default()
    });
    let url = redis.url();
    assert!(url.contains(PW));
    let a = Mount::with_env(&[("RUST_LOG", "debug")], &["--broker", &url, "--node", "a"]);
    let b = Mount::with_env(
        &[("RUST_LOG", "debug"), ("IPCFS_BROKER_URL", &url)],
        &["--node", "b"],
    );
    let bx = shared_mailbox(&a, &[&b], "box", "");
    send(&bx, b"secret-free\n");
    assert_eq!(recv(&b.p("box")), b"secret-free\n");
    let hostport = format!("127.0.0.1:{}", redis.port());
    for (m, node) in [(&a, "a"), (&b, "b")] {
        for file in ["box/status", "proc/status"] {
            let text = std::fs::read_to_string(m.p(file)).unwrap();
            let broker = parse_status(&text)
                .get("broker")
                .cloned()
                .unwrap_or_else(|| panic!("{node}'s {file} has no broker line: {text}"));
            assert!(
                broker.contains(&hostport) && !text.contains(PW),
                "{node}'s {file} names the broker without its password: {text}"
            );
        }
        let log = m.daemon_log();
        assert!(!log.contains(PW), "{node}'s log shows the password:\n{log}");
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", b.daemon_pid())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(PW),
        "the daemon given IPCFS_BROKER_URL shows no password to ps: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let o = Command::new("ps")
        .args(["-o", "args=", "-p", &b.daemon_pid().to_string()])
        .output()
        .expect("run ps (apt-get install procps)");
    let line = out_str(&o);
    assert!(
        line.contains("--node b"),
        "ps shows b's daemon: {}",
        show(&o)
    );
    assert!(!line.contains(PW), "ps shows b's password: {line}");
}

/// A reader blocked on `b` ends at once on SIGINT or SIGTERM, or at
/// `timeout`'s signal, and the message it waited for is not consumed: the
/// next reader gets it.
#[test]
fn a_blocked_reader_on_b_ends_at_once_on_a_signal_and_consumes_nothing() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let reader = cat_bg(&b.p("box/recv"));
        wait_receivers_waiting(&bx, 1, T);
        assert_eq!(
            proc_state(reader.pid()),
            'S',
            "a parked reader sleeps interruptibly"
        );
        let start = Instant::now();
        reader.signal(sig);
        let o = reader.wait_timeout(T);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "signal {sig} ended the reader only after {:?}",
            start.elapsed()
        );
        assert_eq!(o.status.signal(), Some(sig), "{}", show(&o));
        wait_receivers_waiting(&bx, 0, T);
        send(&bx, format!("after signal {sig}\n").as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&recv(&b.p("box"))),
            format!("after signal {sig}\n"),
            "the interrupted reader consumed nothing"
        );
    }
    let start = Instant::now();
    let o = b.sh("timeout 0.5 cat box/recv; echo rc=$?", T);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "timeout 0.5 cat took {:?}",
        start.elapsed()
    );
    assert_eq!(out_str(&o), "rc=124\n", "{}", show(&o));
    wait_receivers_waiting(&bx, 0, T);
    send(&bx, b"after timeout\n");
    assert_eq!(recv(&b.p("box")), b"after timeout\n");
}

/// `proc/` links on a broker mount are local and work as on any mount.
#[test]
fn proc_links_work_on_a_broker_mount() {
    let redis = Redis::start();
    let (a, _b) = two(&redis);
    assert_proc_link_works(&a, "on a broker mount");
    assert_eq!(
        redis.cli(&["KEYS", "*proc*"]).trim(),
        "",
        "nothing of proc/ reaches the broker"
    );
}

/// IPCFS_BROKER_URL serves instead of --broker.
#[test]
fn the_broker_url_may_come_from_the_environment() {
    let redis = Redis::start();
    let a = Mount::on_broker(&redis, "a", &[]);
    let b = Mount::with_env(&[("IPCFS_BROKER_URL", &redis.url())], &["--node", "b"]);
    let bx = a.mailbox("box", "");
    wait_until(
        T,
        "b, on the broker of IPCFS_BROKER_URL, sees a's mailbox",
        || b.p("box").is_dir(),
    );
    send(&b.p("box"), b"from b\n");
    assert_eq!(recv(&bx), b"from b\n");
    assert_eq!(status_of(&b.p("box"), "broker"), redis.url());
    assert_eq!(status_of(&b.p("box"), "node"), "b");
}

/// A mount without --broker keeps its own mailboxes beside broker mounts:
/// neither sees the other's, and its status has no broker lines.
#[test]
fn a_mount_without_broker_keeps_its_own_mailboxes() {
    let redis = Redis::start();
    let a = Mount::on_broker(&redis, "a", &[]);
    let local = Mount::new();
    a.mailbox("shared", "");
    let lx = local.mailbox("mine", "");
    assert!(
        std::fs::metadata(local.p("shared")).is_err(),
        "the local mount does not see the broker's mailbox"
    );
    assert!(
        std::fs::metadata(a.p("mine")).is_err(),
        "the broker mount does not see the local mailbox"
    );
    send(&lx, b"local\n");
    assert_eq!(recv(&lx), b"local\n");
    for file in ["mine/status", "proc/status"] {
        let s = status_map(&local.p(file));
        for k in ["broker", "node", "broker-reachable"] {
            assert!(!s.contains_key(k), "local {file} has no `{k}`: {s:?}");
        }
    }
    let keys = redis.cli(&["HKEYS", "ipcfs:names"]);
    assert!(
        keys.contains("shared"),
        "the broker holds a's mailbox: {keys}"
    );
    assert!(
        !keys.contains("mine"),
        "the broker holds nothing local: {keys}"
    );
}

/// A write blocked on a full broker mailbox sleeps interruptibly (never in
/// state D); SIGINT ends it at once and SIGKILL kills it, and neither
/// sends anything: the queue keeps only what was accepted before.
#[test]
fn a_blocked_write_on_b_ends_at_once_on_a_signal_and_sends_nothing() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(&a, &[&b], "box", "arbitrary capacity=1\n");
    send(&bx, b"first\n");
    let writer = |sig: i32| {
        let w = blocked_writer(&b, &bx);
        assert_eq!(
            proc_state(w.pid()),
            'S',
            "the blocked writer sleeps interruptibly"
        );
        let start = Instant::now();
        w.signal(sig);
        let o = w.wait_timeout(T);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "signal {sig} ended the blocked write only after {:?}",
            start.elapsed()
        );
        assert_eq!(o.status.signal(), Some(sig), "{}", show(&o));
        wait_until(T, "the broker forgets the blocked writer", || {
            count(&bx, "senders-waiting") == 0
        });
    };
    writer(libc::SIGINT);
    writer(libc::SIGKILL);
    assert_eq!(
        count(&bx, "messages"),
        1,
        "only the accepted message is queued"
    );
    assert_eq!(recv(&b.p("box")), b"first\n");
    assert_errno(
        recv_nb(&b.p("box/recv")),
        libc::EAGAIN,
        "nothing the interrupted writes carried",
    );
    // O_NONBLOCK on the full mailbox never waits.
    send(&bx, b"again\n");
    assert_errno(
        send_nb(&b.p("box/send"), b"x"),
        libc::EAGAIN,
        "an O_NONBLOCK write to a full broker mailbox",
    );
}

/// Bad input on a broker mount gets the errno a local mount gives, and
/// changes nothing: a policy text that is not valid (EINVAL, policy as it
/// was on both mounts), a message over the maximum size (EMSGSIZE, nothing
/// queued), a user whom the mode bits refuse (EACCES), an oversized batch
/// frame count and a malformed batch (EMSGSIZE, EINVAL, nothing queued).
#[test]
fn bad_input_on_a_broker_mount_gets_a_clear_errno_and_changes_nothing() {
    let redis = Redis::start();
    let (a, b) = two(&redis);
    let bx = shared_mailbox(
        &a,
        &[&b],
        "box",
        "arbitrary capacity=2 max-message-size=8\n",
    );
    let before = read_policy(&b.p("box/policy"));
    assert_errno(
        write_policy(&b.p("box/policy"), "sometimes capacity=-3\n"),
        libc::EINVAL,
        "a policy text that is not valid, on b",
    );
    assert_eq!(
        read_policy(&b.p("box/policy")),
        before,
        "b's policy unchanged"
    );
    assert_eq!(
        read_policy(&bx.join("policy")),
        before,
        "a's policy unchanged"
    );
    assert_errno(
        send_nb(&b.p("box/send"), b"123456789"),
        libc::EMSGSIZE,
        "a message over max-message-size, on b",
    );
    assert_errno(
        open_with(&b.p("box/batch"), false, true, 0)
            .and_then(|mut f| f.write(&frames(&[b"1", b"2", b"3"]))),
        libc::EMSGSIZE,
        "a batch of more frames than the capacity",
    );
    assert_errno(
        open_with(&b.p("box/batch"), false, true, 0).and_then(|mut f| f.write(&[9, 0, 0, 0, 1])),
        libc::EINVAL,
        "a truncated batch frame",
    );
    assert_eq!(count(&bx, "messages"), 0, "nothing was queued");
    // A private (0755) mailbox: another user may neither send nor receive.
    let o = b.sh_as_nobody(
        &format!(
            "echo hi > {p}/send; s=$?; cat {p}/recv; echo \"send=$s recv=$?\"",
            p = b.p("box").display()
        ),
        T,
    );
    assert!(
        out_str(&o).contains("send=1 recv=1")
            && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "nobody is refused on b: {}",
        show(&o)
    );
    assert_eq!(count(&bx, "messages"), 0, "nothing was queued");
}
