//! What real tools do with a mailbox's files: poll and epoll event loops
//! (ipcfs(7) BLOCKING AND INTERRUPTS, "poll, select, epoll"), lseek (ESPIPE
//! on the message files, seekable status and policy snapshots: ERRORS,
//! STATUS FILES), and cp, tar and mv (COPYING AND BACKUPS).
//!
//! Every blocking step has a deadline.

mod common;

use common::*;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

// ---------------------- lseek: the message files are streams, snapshots seek

#[test]
fn lseek_gives_espipe() {
    let m = Mount::new();
    let b = m.mailbox("seek", "");
    let mut r = File::open(b.join("recv")).unwrap();
    assert_errno(r.seek(SeekFrom::Start(0)), libc::ESPIPE, "lseek on recv");
    let mut w = open_with(&b.join("send"), false, true, 0).unwrap();
    assert_errno(w.seek(SeekFrom::Start(0)), libc::ESPIPE, "lseek on send");
    assert_errno(
        w.seek(SeekFrom::End(0)),
        libc::ESPIPE,
        "lseek SEEK_END on send",
    );
}

/// Status and policy files are snapshots that seek like a /proc file:
/// `head` seeks back to just after the lines it printed, and a program may
/// read a snapshot again from the start.
#[test]
fn status_and_policy_snapshots_seek() {
    let m = Mount::new();
    let b = m.mailbox("snap", "");
    let o = m.sh(
        "head -2 \"$M/snap/status\" && head -1 \"$M/snap/policy\" && head -1 \"$M/policy\" \
         && head -1 \"$M/proc/status\"",
        T,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(o.stderr, b"", "{}", show(&o));
    assert_eq!(out_str(&o).lines().count(), 5, "{}", show(&o));
    assert!(out_str(&o).starts_with("policy: arbitrary\ncapacity: "));
    let o = m.sh(
        "python3 -c 'import sys\nfor p in sys.argv[1:]:\n f = open(p)\n a = f.read()\n f.seek(0)\n b = f.read()\n assert a and a == b, (p, a, b)\n f.seek(3)\n assert f.read() == a[3:]\nprint(\"same\")' \
         \"$M/snap/status\" \"$M/snap/policy\" \"$M/policy\" \"$M/proc/status\"",
        T,
    );
    assert_eq!(out_str(&o), "same\n", "{}", show(&o));
    // Message files stay streams.
    let mut r = File::open(b.join("recv")).unwrap();
    assert_errno(r.seek(SeekFrom::Start(0)), libc::ESPIPE, "lseek on recv");
}

// ------------------------------------------------------ poll, select, epoll

#[test]
fn poll_on_empty_recv_times_out_then_fires_after_send() {
    let m = Mount::new();
    let b = m.mailbox("poll", "");
    let f = File::open(b.join("recv")).unwrap();
    let fd = f.as_raw_fd();
    let (n, rev) = within(T, "poll with 200 ms timeout", move || {
        poll1(&fd, libc::POLLIN, 200)
    });
    assert_eq!(
        (n, rev & libc::POLLIN),
        (0, 0),
        "poll on empty recv must time out"
    );
    // Now poll while another thread sends: the poll must wake up.
    let bb = b.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300)); // let the poll start waiting first
        send(&bb, b"wake");
    });
    let start = Instant::now();
    let (n, rev) = within(T, "poll waiting for a send", move || {
        poll1(&fd, libc::POLLIN, 5000)
    });
    let took = start.elapsed();
    sender.join().unwrap();
    assert_eq!(n, 1, "poll should fire after the send (took {took:?})");
    assert!(rev & libc::POLLIN != 0, "revents {rev:#x}");
    assert!(
        took < Duration::from_secs(3),
        "poll woke only after {took:?}"
    );
    let mut f = f;
    let mut buf = [0u8; 16];
    let n = f.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"wake");
    // After the message and its end of file are consumed, the fd is not readable.
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    let (n, _) = within(T, "poll after draining", move || {
        poll1(&fd, libc::POLLIN, 100)
    });
    assert_eq!(n, 0, "recv must not be readable once drained");
}

/// One `epoll_wait` with EPOLLIN|EPOLLET, waiting at most `ms`: the number
/// of events.
fn epoll_wait1(ep: i32, ms: i32) -> i32 {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one event buffer on the stack.
    let n = unsafe { libc::epoll_wait(ep, &mut ev, 1, ms) };
    assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
    n
}

/// Edge-triggered epoll: each message that arrives is an edge, also when it
/// arrives while the end of file of the one before is still unread (the
/// descriptor keeps watching its mailbox while it holds a message).
#[test]
fn edge_triggered_epoll_wakes_for_each_message() {
    let m = Mount::new();
    let b = m.mailbox("et", "");
    let mut r = open_with(&b.join("recv"), true, false, libc::O_NONBLOCK).unwrap();
    // SAFETY: epoll_create1 and epoll_ctl on descriptors we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 1,
    };
    assert_eq!(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, r.as_raw_fd(), &mut ev) },
        0
    );
    let wait = move |what: &str| within(T, what, move || epoll_wait1(ep, 5000));
    let mut buf = [0u8; 64];
    send(&b, b"m1");
    assert_eq!(wait("epoll for m1"), 1, "m1 is an edge");
    assert_eq!(r.read(&mut buf).unwrap(), 2, "m1, its end of file unread");
    send(&b, b"m2");
    assert_eq!(wait("epoll for m2"), 1, "m2 is an edge");
    assert_eq!(r.read(&mut buf).unwrap(), 0, "m1's end of file");
    assert_eq!(r.read(&mut buf).unwrap(), 2, "m2");
    assert_eq!(r.read(&mut buf).unwrap(), 0, "m2's end of file");
    assert_errno(r.read(&mut buf), libc::EAGAIN, "nothing queued");
    send(&b, b"m3");
    assert_eq!(wait("epoll for m3"), 1, "m3 is an edge");
    assert_eq!(r.read(&mut buf).unwrap(), 2, "m3");
    // SAFETY: our own epoll descriptor.
    unsafe { libc::close(ep) };
}

#[test]
fn poll_on_recv_is_readable_when_message_queued_and_send_is_writable() {
    let m = Mount::new();
    let b = m.mailbox("pq", "");
    send(&b, b"queued");
    let r = File::open(b.join("recv")).unwrap();
    let rfd = r.as_raw_fd();
    let (n, rev) = within(T, "poll recv", move || poll1(&rfd, libc::POLLIN, 1000));
    assert_eq!(n, 1);
    assert!(rev & libc::POLLIN != 0);
    let w = open_with(&b.join("send"), false, true, 0).unwrap();
    let wfd = w.as_raw_fd();
    let (n, rev) = within(T, "poll send", move || poll1(&wfd, libc::POLLOUT, 1000));
    assert_eq!(n, 1);
    assert!(
        rev & libc::POLLOUT != 0,
        "send should be writable: {rev:#x}"
    );
}

// ---------------------------------------------------- COPYING AND BACKUPS

/// Copy and archive tools (`cp -r`, `cp -a`, `mv` across filesystems, `tar`)
/// open what they copy with `O_NOFOLLOW`: they read empty message files,
/// take no message and never block; a plain `cp` of `recv` reads one
/// message like `cat`.
#[test]
fn copying_a_mailbox_takes_no_message_and_does_not_block() {
    let m = Mount::new();
    let b = m.mailbox("box", "");
    for msg in [&b"m1\n"[..], b"m2\n", b"m3\n"] {
        send(&b, msg);
    }
    let o = m.sh(
        r#"set -u; out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
        timeout 10 cp -r "$M/box" "$out/r"; echo "cp-r=$?"
        timeout 10 cp -a "$M/box" "$out/a"; echo "cp-a=$?"
        echo "recv-size=$(stat -c %s "$out/r/recv") $(stat -c %s "$out/a/recv")"
        timeout 10 tar cf "$out/t.tar" -C "$M" box 2>"$out/tar.err"; echo "tar=$?"
        grep -c 'File shrank' "$out/tar.err"
        timeout 10 mv "$M/box" "$out/mv" 2>/dev/null; echo "mv=$?"
        "#,
        T,
    );
    assert_eq!(
        out_str(&o),
        "cp-r=0\ncp-a=0\nrecv-size=0 0\ntar=1\n3\nmv=1\n",
        "cp exits 0; tar warns that send, packets and batch shrank; mv cannot remove the files\n{}",
        show(&o)
    );
    assert_eq!(
        status_get(&b.join("status"), "messages"),
        "3",
        "nothing taken"
    );
    let o = m.sh(
        r#"out=$(mktemp); timeout 10 cp "$M/box/recv" "$out" && cat "$out"; rm -f "$out""#,
        T,
    );
    assert_eq!(
        out_str(&o),
        "m1\n",
        "cp of recv alone reads one message\n{}",
        show(&o)
    );
    assert_eq!(recv(&b), b"m2\n");
}
