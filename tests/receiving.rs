//! Receiving (ipcfs(7) RECEIVING): each reader takes one whole message and
//! then reads end of file; parked readers are served longest waiting first,
//! every message reaches exactly one of them, a reader that closes
//! mid-message drops the rest, and an empty mailbox gives EAGAIN to a
//! non-blocking reader.
//!
//! Every blocking step has a deadline.

mod common;

use common::*;
use std::fs::File;
use std::io::Read;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[test]
fn three_blocked_cats_get_one_message_each() {
    let m = Mount::new();
    let b = m.mailbox("fan", "");
    let cats: Vec<Bg> = (0..3)
        .map(|_| m.spawn_sh("exec cat \"$M/fan/recv\""))
        .collect();
    wait_status(&b.join("status"), "receivers-waiting", "3");
    for i in 0..3 {
        send(&b, format!("m{i}\n").as_bytes());
    }
    let mut got: Vec<String> = cats
        .into_iter()
        .map(|c| {
            let o = c.wait_timeout(T);
            assert!(o.status.success(), "cat: {}", show(&o));
            String::from_utf8(o.stdout).unwrap()
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec!["m0\n", "m1\n", "m2\n"],
        "each cat gets exactly one message"
    );
    assert_eq!(status_of(&b, "messages"), "0");
    assert_eq!(status_of(&b, "receivers-waiting"), "0");
}

#[test]
fn hundred_parked_readers_each_get_one_message() {
    let m = Mount::new();
    let b = m.mailbox("many", "");
    let readers = m.spawn_sh(
        r#"for i in $(seq 1 100); do cat "$M/many/recv" > /dev/null & done
           wait"#,
    );
    wait_status(&b.join("status"), "receivers-waiting", "100");
    for i in 0..100 {
        send(&b, format!("{i}").as_bytes());
    }
    let o = readers.wait_timeout(Duration::from_secs(30));
    assert!(o.status.success(), "{}", show(&o));
    let s = status_map(&b.join("status"));
    assert_eq!(s["messages"], "0", "{s:?}");
    assert_eq!(s["received"], "100", "{s:?}");
    assert_eq!(s["receivers-waiting"], "0", "{s:?}");
}

#[test]
fn longest_waiting_receiver_is_served_first() {
    let m = Mount::new();
    let b = m.mailbox("fifo", "");
    let mut cats = Vec::new();
    for i in 1..=3 {
        cats.push(m.spawn_sh("exec cat \"$M/fifo/recv\""));
        wait_status(&b.join("status"), "receivers-waiting", &i.to_string());
    }
    for (i, c) in cats.into_iter().enumerate() {
        send(&b, format!("to-{i}").as_bytes());
        let o = c.wait_timeout(T);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("to-{i}"),
            "receiver {i} (waiting longest) should get message {i}: {}",
            show(&o)
        );
    }
}

#[test]
fn concurrent_senders_and_receivers_deliver_every_message_exactly_once() {
    let m = Mount::new();
    let b = m.mailbox("load", "");
    let receivers: Vec<Bg> = (0..3)
        .map(|_| {
            m.spawn_sh(
                r#"while :; do
                     msg=$(cat "$M/load/recv") || { echo "cat failed" >&2; exit 1; }
                     [ "$msg" = STOP ] && exit 0
                     printf '%s\n' "$msg"
                   done"#,
            )
        })
        .collect();
    let senders: Vec<Bg> = (0..4)
        .map(|s| {
            m.spawn_sh(&format!(
                r#"for i in $(seq 1 400); do echo "s{s}-$i" > "$M/load/send" || exit 1; done"#
            ))
        })
        .collect();
    for s in senders {
        let o = s.wait_timeout(Duration::from_secs(120));
        assert!(o.status.success(), "sender: {}", show(&o));
    }
    // All 1600 messages are queued before the STOPs; each receiver takes one STOP.
    for _ in 0..3 {
        send(&b, b"STOP\n");
    }
    let mut all: Vec<String> = Vec::new();
    let mut per = Vec::new();
    for r in receivers {
        let o = r.wait_timeout(Duration::from_secs(120));
        assert!(o.status.success(), "receiver: {}", show(&o));
        let lines: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        per.push(lines.len());
        all.extend(lines);
    }
    assert_eq!(
        all.len(),
        1600,
        "messages received in total (per receiver {per:?})"
    );
    let mut want: Vec<String> = (0..4)
        .flat_map(|s| (1..=400).map(move |i| format!("s{s}-{i}")))
        .collect();
    want.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert!(sorted == want, "some message lost or duplicated");
    let s = status_map(&b.join("status"));
    assert_eq!(s["messages"], "0", "{s:?}");
    assert_eq!(s["sent"], "1603", "{s:?}");
    assert_eq!(s["received"], "1603", "{s:?}");
}

#[test]
fn partial_reads_then_eof_then_next_message() {
    let m = Mount::new();
    let b = m.mailbox("part", "");
    let first = b"0123456789abcdefghijklmnopqrstuvwxyz"; // 36 bytes
    send(&b, first);
    send(&b, b"second message");
    let path = b.join("recv");
    let status = b.join("status");
    within(T, "partial reads", move || {
        let mut f = File::open(&path).unwrap();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut buf = [0u8; 10];
        loop {
            let n = f.read(&mut buf).unwrap();
            sizes.push(n);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if sizes.len() == 1 {
                // The first read took the message off the queue.
                assert_eq!(status_get(&status, "messages"), "1");
            }
            assert!(sizes.len() < 10, "message never ended: {sizes:?}");
        }
        assert_eq!(sizes, vec![10, 10, 10, 6, 0]);
        assert_eq!(&got[..], &first[..]);
        // A read after end-of-file receives the next message, on the same fd.
        let mut buf = [0u8; 100];
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"second message");
        assert_eq!(
            f.read(&mut buf).unwrap(),
            0,
            "end of file after the second message"
        );
    });
    assert_eq!(status_of(&b, "truncated"), "0");
}

#[test]
fn closing_mid_message_drops_the_rest_and_counts_truncated() {
    let m = Mount::new();
    let b = m.mailbox("trunc", "");
    send(&b, b"hello world, this message is long");
    send(&b, b"next");
    let path = b.join("recv");
    let head = within(T, "read 5 bytes", move || {
        let mut f = File::open(&path).unwrap();
        let mut buf = [0u8; 5];
        let n = f.read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    assert_eq!(head, b"hello");
    wait_status(&b.join("status"), "truncated", "1");
    assert_eq!(
        recv(&b),
        b"next",
        "the rest of the first message is dropped"
    );
}

#[test]
fn nonblocking_read_on_empty_gives_eagain() {
    let m = Mount::new();
    let b = m.mailbox("nb", "");
    let path = b.join("recv");
    let mut f = open_with(&path, true, false, libc::O_NONBLOCK).unwrap();
    let mut buf = [0u8; 64];
    assert_errno(
        f.read(&mut buf),
        libc::EAGAIN,
        "O_NONBLOCK read on empty recv",
    );
    send(&b, b"now");
    let n = f.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"now");
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    assert_errno(
        f.read(&mut buf),
        libc::EAGAIN,
        "O_NONBLOCK read after EOF on empty recv",
    );
}

/// Two threads blocked reading one `recv` descriptor share its place in the
/// message: one gets the start, the other the rest, and nothing is lost.
#[test]
fn two_threads_reading_one_descriptor_share_the_message() {
    let m = Mount::new();
    let b = m.mailbox("shared", "");
    let f = std::sync::Arc::new(open_with(&b.join("recv"), true, false, 0).unwrap());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let f = std::sync::Arc::clone(&f);
            std::thread::spawn(move || {
                let mut buf = [0u8; 3];
                let n = (&*f).read(&mut buf).unwrap();
                buf[..n].to_vec()
            })
        })
        .collect();
    wait_until(T, "both reads are parked", || {
        status_map(&m.p("proc/status"))
            .get("parked")
            .map(String::as_str)
            == Some("2")
    });
    send(&b, b"abcdef");
    let mut got: Vec<Vec<u8>> = readers
        .into_iter()
        .map(|r| within(T, "shared read", move || r.join().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, vec![b"abc".to_vec(), b"def".to_vec()]);
    assert_eq!(status_of(&b, "truncated"), "0");
}
