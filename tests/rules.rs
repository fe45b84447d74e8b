//! Receiver rules and the `policy` file: arbitrary with receipts, pair,
//! exclusive, broadcast, changing the rule of a busy mailbox (ipcfs(7) RECEIVER RULES).
//!
//! Every blocking step has a deadline; waits are on status keys, never on a
//! fixed sleep.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- local helpers

fn rule_of(path: &Path) -> String {
    read_policy(path)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A fresh mount with one mailbox `box` whose rule is set to `rule`.
fn mount_with_box(rule: &str) -> (Mount, PathBuf) {
    let m = Mount::new();
    let policy = if rule.is_empty() {
        String::new()
    } else {
        format!("{rule}\n")
    };
    let b = m.mailbox("box", &policy);
    if !rule.is_empty() {
        assert_eq!(rule_of(&b.join("policy")), rule);
    }
    (m, b)
}

fn pids_of(v: &str) -> Vec<u32> {
    let mut p: Vec<u32> = v
        .split_whitespace()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("not a pid list: {v:?}"))
        })
        .collect();
    p.sort_unstable();
    p
}

// ---------------------------------------------------------------------- tests

/// Bogus policy texts fail with EINVAL and change nothing, on a mailbox's
/// policy and on the root policy. A valid text then does change it.
#[test]
fn bogus_policy_texts_rejected_and_unchanged() {
    let (m, b) = mount_with_box("");
    let mut huge = b"exclusive".to_vec();
    huge.resize(1 << 20, b' ');
    let bogus: Vec<(&str, Vec<u8>)> = vec![
        ("unknown word", b"nonsense\n".to_vec()),
        ("empty (newline only)", b"\n".to_vec()),
        ("blank", b"   \t \n".to_vec()),
        ("two rules", b"arbitrary pair\n".to_vec()),
        ("bad number", b"capacity=abc\n".to_vec()),
        ("negative number", b"capacity=-1\n".to_vec()),
        ("trailing garbage", b"arbitrary x\n".to_vec()),
        ("key twice", b"exclusive capacity=2 capacity=3\n".to_vec()),
        ("a 1 MiB write", huge),
        ("invalid UTF-8", b"exclusive \xff\xfe\n".to_vec()),
        ("NUL byte", b"exclusive\0\n".to_vec()),
        ("max-message-size=0", b"max-message-size=0\n".to_vec()),
        ("unknown key", b"exclusive colour=blue\n".to_vec()),
    ];
    for policy in [b.join("policy"), m.p("policy")] {
        let before = read_policy(&policy);
        assert!(
            before.starts_with("arbitrary "),
            "initial policy: {before:?}"
        );
        for (what, text) in &bogus {
            assert_errno(write_policy(&policy, text), libc::EINVAL, what);
            assert_eq!(
                read_policy(&policy),
                before,
                "{} changed after a rejected write ({what})",
                policy.display()
            );
        }
        // An empty write(2) and `: > policy` (open with O_TRUNC, no write) change nothing.
        let _ = write_policy(&policy, b"");
        let o = m.sh(&format!(": > '{}'", policy.display()), SHORT);
        assert!(o.status.success(), "`: > policy` failed: {}", show(&o));
        assert_eq!(
            read_policy(&policy),
            before,
            "empty write changed the policy"
        );
    }
    assert_eq!(status_get(&b.join("status"), "policy"), "arbitrary");
    // Control: a valid text is accepted, through the shell too.
    let o = m.sh(r#"echo exclusive > "$M/box/policy""#, SHORT);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(rule_of(&b.join("policy")), "exclusive");
    assert_eq!(status_get(&b.join("status"), "policy"), "exclusive");
}

/// Writing the root policy sets the rule of mailboxes created afterwards, not
/// of mailboxes that already exist.
#[test]
fn root_policy_applies_to_new_mailboxes_only() {
    let m = Mount::new();
    m.mailbox("old", "");
    let o = m.sh(r#"echo exclusive > "$M/policy""#, SHORT);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(rule_of(&m.p("policy")), "exclusive");
    m.mailbox("new", "");
    m.mailbox("new/child", "");
    assert_eq!(rule_of(&m.p("new/policy")), "exclusive");
    assert_eq!(rule_of(&m.p("new/child/policy")), "exclusive");
    assert_eq!(rule_of(&m.p("old/policy")), "arbitrary");
    assert_eq!(status_get(&m.p("new/status"), "policy"), "exclusive");
    assert_eq!(status_get(&m.p("old/status"), "policy"), "arbitrary");
    write_policy(&m.p("policy"), b"pair\n").unwrap();
    m.mailbox("third", "");
    assert_eq!(rule_of(&m.p("third/policy")), "pair");
    assert_eq!(rule_of(&m.p("new/policy")), "exclusive");
}

/// `--default-policy` sets the root policy's initial rule.
#[test]
fn default_policy_option_sets_root_policy() {
    let m = Mount::with_args(&["--default-policy", "exclusive"]);
    assert_eq!(rule_of(&m.p("policy")), "exclusive");
    m.mailbox("box", "");
    assert_eq!(rule_of(&m.p("box/policy")), "exclusive");
    assert_eq!(status_get(&m.p("box/status"), "policy"), "exclusive");
}

/// exclusive: while one process has `recv` open, another process's open of
/// `recv` fails with EBUSY (senders are unrestricted); it is free again once
/// the holder has exited.
#[test]
fn exclusive_second_process_ebusy_until_holder_exits() {
    let (m, b) = mount_with_box("exclusive");
    let recv = b.join("recv");
    let holder = hold(&[(&recv, libc::O_RDONLY)], None).expect("first process opens recv");
    assert_eq!(
        status_get(&b.join("status"), "holder"),
        holder.pid().to_string()
    );
    assert_errno(
        in_child(&recv, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "second process opens recv",
    );
    assert_errno(
        open_with(&recv, true, false, libc::O_NONBLOCK),
        libc::EBUSY,
        "test process opens recv",
    );
    in_child(&b.join("send"), libc::O_WRONLY, false, None).expect("senders are unrestricted");
    let o = m.sh(r#"cat "$M/box/recv""#, SHORT);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Device or resource busy"),
        "a shell's cat gets EBUSY: {}",
        show(&o)
    );
    holder.kill_and_reap();
    wait_until(SHORT, "recv is free after the holder exited", || {
        in_child(&recv, libc::O_RDONLY, false, None).is_ok()
    });
}

/// exclusive: the holder may open `recv` several times; the mailbox is free
/// only after its last recv descriptor is closed.
#[test]
fn exclusive_holder_may_open_recv_twice() {
    let (_m, b) = mount_with_box("exclusive");
    let recv = b.join("recv");
    hold(&[(&recv, libc::O_RDONLY), (&recv, libc::O_RDONLY)], None)
        .expect("a child opens recv twice");
    // The child above was dropped (killed); now the test process is the holder.
    wait_until(SHORT, "recv free after that child exited", || {
        in_child(&recv, libc::O_RDONLY, false, None).is_ok()
    });
    let f1 = open_with(&recv, true, false, libc::O_NONBLOCK).expect("first open by the holder");
    let f2 = open_with(&recv, true, false, libc::O_NONBLOCK).expect("second open by the holder");
    assert_eq!(
        status_get(&b.join("status"), "holder"),
        std::process::id().to_string()
    );
    assert_errno(
        in_child(&recv, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "other process while held",
    );
    send_nb(&b.join("send"), b"to holder\n").unwrap();
    let mut f2 = f2;
    assert_eq!(read_message(&mut f2).unwrap(), b"to holder\n");
    drop(f1);
    assert_errno(
        in_child(&recv, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "other process while the holder still has one recv open",
    );
    drop(f2);
    wait_until(SHORT, "recv free after the holder's last close", || {
        in_child(&recv, libc::O_RDONLY, false, None).is_ok()
    });
}

/// pair: the first two processes to open send or recv are the pair; a third
/// process's opens fail with EBUSY; status shows the pair; a slot frees when a
/// member exits.
#[test]
fn pair_third_process_ebusy_until_member_exits() {
    let (_m, b) = mount_with_box("pair");
    let (send, recv) = (b.join("send"), b.join("recv"));
    assert_eq!(status_get(&b.join("status"), "pair"), "-");
    let a = hold(&[(&send, libc::O_WRONLY)], None).expect("first member opens send");
    let bb = hold(&[(&recv, libc::O_RDONLY)], None).expect("second member opens recv");
    let mut want = vec![a.pid(), bb.pid()];
    want.sort_unstable();
    assert_eq!(
        pids_of(&status_get(&b.join("status"), "pair")),
        want,
        "pair in status"
    );
    assert_errno(
        in_child(&recv, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "third process opens recv",
    );
    assert_errno(
        in_child(&send, libc::O_WRONLY, false, None),
        libc::EBUSY,
        "third process opens send",
    );
    assert_errno(
        open_with(&send, false, true, libc::O_NONBLOCK),
        libc::EBUSY,
        "test process opens send",
    );
    // Members may open again.
    let a_pid = a.pid();
    a.kill_and_reap();
    wait_until(SHORT, "a slot frees after a member exited", || {
        in_child(&send, libc::O_WRONLY, false, None).is_ok()
    });
    let c = hold(&[(&send, libc::O_WRONLY)], None).expect("new member takes the free slot");
    let mut want = vec![bb.pid(), c.pid()];
    want.sort_unstable();
    let pair = pids_of(&status_get(&b.join("status"), "pair"));
    assert_eq!(pair, want, "pair after the change");
    assert!(!pair.contains(&a_pid));
    assert_errno(
        in_child(&recv, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "fourth process opens recv",
    );
}

/// Receipts: a bash script that opened `send` read-write learns the pid of the
/// `cat` that received its message.
#[test]
fn receipts_name_the_receiving_cat() {
    let (m, _b) = mount_with_box("");
    let d = tempfile::tempdir().unwrap();
    let dd = d.path().display();
    let o = m.sh(
        &format!(
            r#"cat "$M/box/recv" > "{dd}/out" &
            c=$!
            exec 3<>"$M/box/send"
            echo job >&3
            read -r who <&3
            echo "$c $who"
            wait $c
            cat "{dd}/out""#
        ),
        SHORT,
    );
    assert!(o.status.success(), "{}", show(&o));
    let s = out_str(&o);
    let mut lines = s.lines();
    let first = lines.next().unwrap_or_default();
    let (c, who) = first.split_once(' ').unwrap_or(("?", "?"));
    assert!(
        !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()),
        "{}",
        show(&o)
    );
    assert_eq!(who, c, "receipt must name the cat's pid: {}", show(&o));
    assert_eq!(lines.next(), Some("job"), "{}", show(&o));
}

/// Receipts come one line per message, in send order, each naming its receiver.
#[test]
fn receipts_come_in_send_order() {
    let (m, _b) = mount_with_box("");
    let o = m.sh(
        r#"exec 3<>"$M/box/send"
        echo job1 >&3; echo job2 >&3
        # Both messages are queued, so these cats do not block.
        m1=$(cat "$M/box/recv" & c1=$!; wait $c1; echo " $c1")
        m2=$(cat "$M/box/recv" & c2=$!; wait $c2; echo " $c2")
        read -r w1 <&3; read -r w2 <&3
        echo "$m1" | tr -d '\n'; echo " $w1"
        echo "$m2" | tr -d '\n'; echo " $w2""#,
        SHORT,
    );
    assert!(o.status.success(), "{}", show(&o));
    // Each line: "<message> <cat pid> <receipt pid>".
    let out = out_str(&o);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{}", show(&o));
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.len(), 3, "{}", show(&o));
        assert_eq!(l[0], format!("job{}", i + 1), "FIFO delivery: {}", show(&o));
        assert_eq!(
            l[2],
            l[1],
            "receipt {} names its receiver: {}",
            i + 1,
            show(&o)
        );
    }
}

/// Receipts with O_NONBLOCK: EAGAIN before the message is received, then
/// readable (poll) with the receiver's pid, then end of file.
#[test]
fn receipts_nonblocking_eagain_before_reception() {
    let (m, b) = mount_with_box("");
    let mut f = open_with(&b.join("send"), true, true, libc::O_NONBLOCK).expect("open send O_RDWR");
    f.write_all(b"m\n").unwrap();
    let mut buf = [0u8; 64];
    assert_errno(f.read(&mut buf), libc::EAGAIN, "receipt before reception");
    let (_, r) = poll1(&f, libc::POLLIN, 0);
    assert_eq!(r & libc::POLLIN, 0, "no receipt ready yet (revents {r:#x})");
    // The message is already queued, so this cat does not block; `exec` keeps
    // the printed pid.
    let o = m.sh(r#"echo $$; exec cat "$M/box/recv""#, SHORT);
    assert!(o.status.success(), "{}", show(&o));
    let out = out_str(&o);
    let (cat_pid, got) = out.split_once('\n').unwrap_or_default();
    assert_eq!(got, "m\n", "{}", show(&o));
    let (_, r) = poll1(&f, libc::POLLIN, 5000);
    assert_ne!(
        r & libc::POLLIN,
        0,
        "receipt ready after reception (revents {r:#x})"
    );
    let receipt = read_message(&mut f).expect("read receipt");
    let text = String::from_utf8_lossy(&receipt).into_owned();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "one receipt line: {text:?}"
    );
    let pid: u32 = text
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("receipt starts with a pid: {text:?}"));
    assert_eq!(pid.to_string(), cat_pid, "receipt names the receiving cat");
    // Nothing outstanding any more: end of file.
    assert_eq!(
        f.read(&mut buf).unwrap(),
        0,
        "read with nothing outstanding"
    );
}

/// Reading a receipts descriptor with nothing outstanding returns 0 at once.
#[test]
fn receipts_read_with_nothing_outstanding_returns_eof() {
    let (_m, b) = mount_with_box("");
    let send = b.join("send");
    let n = within(
        SHORT,
        "blocking read of receipts with nothing sent",
        move || {
            let mut f = open_with(&send, true, true, 0).expect("open send O_RDWR");
            let mut buf = [0u8; 64];
            f.read(&mut buf).map_err(|e| e.raw_os_error())
        },
    );
    assert_eq!(n, Ok(0));
}

/// broadcast: three processes with recv open each get every message, in order.
#[test]
fn broadcast_every_receiver_gets_every_message() {
    let (m, b) = mount_with_box("broadcast");
    let script = r#"exec 3<"$M/box/recv" || exit 9
        for i in 1 2 3; do timeout 8 cat <&3 || echo "cat failed: $?"; done"#;
    let rs: Vec<Bg> = (0..3).map(|_| m.spawn_sh(script)).collect();
    wait_until(SHORT, "three receivers have recv open", || {
        num(&status_map(&b.join("status")), "receivers") == 3
    });
    for msg in ["m1\n", "m2\n", "m3\n"] {
        send_nb(&b.join("send"), msg.as_bytes()).expect("broadcast send");
    }
    for r in rs {
        let o = r.wait_timeout(SHORT);
        assert_eq!(out_str(&o), "m1\nm2\nm3\n", "{}", show(&o));
    }
    let st = status_map(&b.join("status"));
    assert_eq!(num(&st, "sent"), 3, "{st:?}");
    assert_eq!(num(&st, "messages"), 0, "{st:?}");
}

/// broadcast with no receiver: the message waits and goes to the first reader
/// (exactly one).
#[test]
fn broadcast_without_receiver_waits_for_first_reader() {
    let (m, b) = mount_with_box("broadcast");
    send_nb(&b.join("send"), b"early\n").expect("send with nobody listening");
    assert_eq!(num(&status_map(&b.join("status")), "messages"), 1);
    let o = m.sh(r#"timeout 5 cat "$M/box/recv""#, SHORT);
    assert_eq!(out_str(&o), "early\n", "{}", show(&o));
    assert_errno(
        recv_nb(&b.join("recv")),
        libc::EAGAIN,
        "a second reader gets nothing",
    );
    assert_errno(
        in_child(
            &b.join("recv"),
            libc::O_RDONLY | libc::O_NONBLOCK,
            true,
            None,
        ),
        libc::EAGAIN,
        "a third reader gets nothing",
    );
}

/// Changing a busy mailbox to exclusive: the earliest process with recv open
/// becomes the holder; another process's blocked read wakes with EBUSY, its
/// next read fails with EBUSY, and queued messages stay queued.
#[test]
fn switching_busy_mailbox_to_exclusive_refuses_others() {
    let (m, b) = mount_with_box("");
    let recv = b.join("recv");
    let first = hold(&[(&recv, libc::O_RDONLY)], None).expect("earliest recv opener");
    let blocked = m.spawn_sh(
        r#"exec 3<"$M/box/recv" || exit 9
        timeout 8 cat <&3; echo "rc=$?""#,
    );
    wait_until(SHORT, "a reader is blocked", || {
        num(&status_map(&b.join("status")), "receivers-waiting") == 1
    });
    let mut mine =
        open_with(&recv, true, false, libc::O_NONBLOCK).expect("test process opens recv");
    assert_eq!(num(&status_map(&b.join("status")), "receivers"), 3);

    let start = Instant::now();
    write_policy(&b.join("policy"), b"exclusive\n").expect("switch to exclusive");
    assert_eq!(
        status_get(&b.join("status"), "holder"),
        first.pid().to_string()
    );
    let o = blocked.wait_timeout(SHORT);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "blocked reader woke late"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Device or resource busy"),
        "blocked reader wakes with EBUSY: {}",
        show(&o)
    );
    assert_eq!(out_str(&o), "rc=1\n", "{}", show(&o));

    send_nb(&b.join("send"), b"for the holder\n").expect("senders are unrestricted");
    let mut buf = [0u8; 64];
    assert_errno(
        mine.read(&mut buf),
        libc::EBUSY,
        "next read of a refused process",
    );
    assert_eq!(
        num(&status_map(&b.join("status")), "messages"),
        1,
        "message stays queued"
    );
    assert_errno(
        in_child(&recv, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "new opener while held",
    );
}

/// Under broadcast, a message that waited in the shared queue (sent before
/// anyone listened) is older than the copies made afterwards: a receiver
/// gets them in the order their sends completed.
#[test]
fn broadcast_keeps_send_order() {
    let (m, _b) = mount_with_box("broadcast");
    let o = m.sh(
        r#"echo first > "$M/box/send"
        exec 3<"$M/box/recv"
        echo second > "$M/box/send"
        timeout 5 cat <&3; timeout 5 cat <&3"#,
        SHORT,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(out_str(&o), "first\nsecond\n", "{}", show(&o));
}

/// A receipt read waiting for a message whose write is then interrupted
/// (nothing was sent) ends with end of file instead of blocking forever.
#[test]
fn receipt_read_ends_when_the_blocked_send_is_interrupted() {
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Arc, mpsc};
    let (m, b) = mount_with_box("");
    set_policy(&b.join("policy"), "arbitrary capacity=0\n");
    let mut f = open_with(&b.join("send"), true, true, 0).expect("open send O_RDWR");
    let fd = f.as_raw_fd();
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a handler that does nothing, so SIGUSR1 only interrupts.
    unsafe { libc::signal(libc::SIGUSR1, nothing as *const () as libc::sighandler_t) };
    // One thread blocks in the rendezvous write...
    let tid = Arc::new(AtomicI32::new(0));
    let t2 = Arc::clone(&tid);
    let writer = std::thread::spawn(move || {
        t2.store(unsafe { libc::gettid() }, Ordering::SeqCst);
        // SAFETY: a valid fd and buffer.
        let r = unsafe { libc::write(fd, b"x\n".as_ptr().cast(), 2) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    wait_status(&b.join("status"), "senders-waiting", "1");
    // ...another in the read of its receipt.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let _ = tx.send(f.read(&mut buf).map_err(|e| e.raw_os_error()));
    });
    wait_until(SHORT, "both requests are parked", || {
        status_map(&m.p("proc/status"))
            .get("parked")
            .map(String::as_str)
            == Some("2")
    });
    let t = tid.load(Ordering::SeqCst);
    // SAFETY: signalling a thread of this process.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), t, libc::SIGUSR1) };
    let (r, e) = writer.join().unwrap();
    assert_eq!((r, e), (-1, Some(libc::EINTR)), "the write is interrupted");
    let n = rx
        .recv_timeout(SHORT)
        .expect("the receipt read is still blocked");
    assert_eq!(
        n,
        Ok(0),
        "nothing was sent: the receipt read ends with end of file"
    );
    assert_eq!(status_get(&b.join("status"), "messages"), "0");
}

/// A read of a receipt that waits for its message to be received ends on
/// Ctrl-C like any blocked read.
#[test]
fn blocked_receipt_read_is_interruptible() {
    let (m, b) = mount_with_box("");
    let start = Instant::now();
    let o = m.sh(
        r#"exec 3<>"$M/box/send"
        echo job >&3
        timeout -s INT 1 cat <&3; echo "rc=$?""#,
        SHORT,
    );
    let took = start.elapsed();
    assert_eq!(out_str(&o), "rc=124\n", "{}", show(&o));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    // The message itself is still queued for a receiver.
    assert_eq!(status_get(&b.join("status"), "messages"), "1");
}
