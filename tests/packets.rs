//! `packets` and `batch` (ipcfs(7) PACKETS AND BATCH): whole messages for programs. One
//! message per read or write on `packets`, no end of file between them;
//! framed messages, many per read or write, on `batch`.
//!
//! Every blocking step has a deadline.

mod common;
use common::*;

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);

/// One read(2) of at most `size` bytes.
fn read1(f: &mut File, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let n = f.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn packets_reads_one_whole_message_each_and_no_end_of_file() {
    let m = Mount::new();
    let b = m.mailbox("pk", "");
    let mut w = open_with(&b.join("packets"), false, true, 0).unwrap();
    for msg in [&b"a"[..], b"bb", b"ccc\n"] {
        assert_eq!(w.write(msg).unwrap(), msg.len());
    }
    assert_eq!(count(&b, "messages"), 3);
    let mut r = open_with(&b.join("packets"), true, false, libc::O_NONBLOCK).unwrap();
    assert_eq!(read1(&mut r, 100).unwrap(), b"a");
    assert_eq!(read1(&mut r, 100).unwrap(), b"bb");
    assert_eq!(read1(&mut r, 100).unwrap(), b"ccc\n");
    assert_errno(
        read1(&mut r, 100),
        libc::EAGAIN,
        "no end of file, nothing left",
    );
    assert_eq!(count(&b, "received"), 3);
}

#[test]
fn packets_and_send_recv_are_one_mailbox() {
    let m = Mount::new();
    let b = m.mailbox("mix", "");
    let o = m.sh("echo from-send > \"$M/mix/send\"", DEADLINE);
    assert!(o.status.success(), "{}", show(&o));
    let mut p = open_with(&b.join("packets"), true, true, libc::O_NONBLOCK).unwrap();
    assert_eq!(read1(&mut p, 100).unwrap(), b"from-send\n");
    p.write_all(b"from-packets").unwrap();
    assert_eq!(recv_nb(&b.join("recv")).unwrap(), b"from-packets");
}

#[test]
fn a_packets_buffer_too_small_gives_emsgsize_and_leaves_the_message() {
    let m = Mount::new();
    let b = m.mailbox("small", "");
    send_nb(&b.join("packets"), b"0123456789").unwrap();
    let mut r = open_with(&b.join("packets"), true, false, libc::O_NONBLOCK).unwrap();
    assert_errno(
        read1(&mut r, 5),
        libc::EMSGSIZE,
        "5-byte buffer, 10-byte message",
    );
    assert_eq!(count(&b, "messages"), 1, "still queued");
    assert_eq!(read1(&mut r, 10).unwrap(), b"0123456789");
}

#[test]
fn a_blocked_packets_read_too_small_for_what_arrives_gets_emsgsize() {
    let m = Mount::new();
    let b = m.mailbox("late", "");
    let path = b.join("packets");
    let reader = std::thread::spawn(move || {
        let mut r = open_with(&path, true, false, 0).unwrap();
        read1(&mut r, 4).map_err(|e| errno(&e))
    });
    wait_status(&b.join("status"), "receivers-waiting", "1");
    send_nb(&b.join("send"), b"longer than four").unwrap();
    let got = within(DEADLINE, "blocked read", move || reader.join().unwrap());
    assert_eq!(got, Err(libc::EMSGSIZE));
    assert_eq!(count(&b, "messages"), 1, "the message stays queued");
}

#[test]
fn batch_write_is_one_message_per_frame_all_or_nothing() {
    let m = Mount::new();
    let b = m.mailbox("bt", "");
    let mut w = open_with(&b.join("batch"), false, true, 0).unwrap();
    let data = frames(&[b"one", b"two", b"three"]);
    assert_eq!(w.write(&data).unwrap(), data.len());
    assert_eq!(count(&b, "messages"), 3);
    assert_eq!(count(&b, "sent"), 3);
    for bad in [
        data[..data.len() - 1].to_vec(),         // ends inside a frame
        data[..2].to_vec(),                      // ends inside a header
        [&data[..], &[0, 0, 0, 0][..]].concat(), // an empty frame
    ] {
        assert_errno(w.write(&bad), libc::EINVAL, "malformed batch");
    }
    assert_eq!(count(&b, "messages"), 3, "nothing of a malformed batch");
    let mut r = open_with(&b.join("packets"), true, false, libc::O_NONBLOCK).unwrap();
    for want in [&b"one"[..], b"two", b"three"] {
        assert_eq!(read1(&mut r, 100).unwrap(), want);
    }
}

#[test]
fn batch_read_returns_as_many_whole_messages_as_fit() {
    let m = Mount::new();
    let b = m.mailbox("br", "");
    for i in 0..5 {
        send_nb(&b.join("send"), format!("msg{i}").as_bytes()).unwrap();
    }
    let mut r = open_with(&b.join("batch"), true, false, libc::O_NONBLOCK).unwrap();
    // Two frames of 4 + 4 bytes fit in 16, a third does not.
    assert_eq!(
        unframe(&read1(&mut r, 17).unwrap()),
        vec![b"msg0".to_vec(), b"msg1".to_vec()]
    );
    assert_errno(read1(&mut r, 7), libc::EMSGSIZE, "not even the first fits");
    let rest = unframe(&read1(&mut r, 4096).unwrap());
    assert_eq!(
        rest,
        vec![b"msg2".to_vec(), b"msg3".to_vec(), b"msg4".to_vec()]
    );
    assert_errno(read1(&mut r, 4096), libc::EAGAIN, "nothing queued");
    assert_eq!(count(&b, "received"), 5);
}

#[test]
fn batch_meets_capacity_whole_or_not_at_all() {
    let m = Mount::new();
    let b = m.mailbox("cap", "");
    set_policy(&b.join("policy"), "capacity=4");
    let mut w = open_with(&b.join("batch"), false, true, libc::O_NONBLOCK).unwrap();
    assert_errno(
        w.write(&frames(&[b"1", b"2", b"3", b"4", b"5"])),
        libc::EMSGSIZE,
        "more frames than the capacity",
    );
    w.write_all(&frames(&[b"1", b"2", b"3"])).unwrap();
    assert_errno(
        w.write(&frames(&[b"4", b"5"])),
        libc::EAGAIN,
        "room for one of two frames",
    );
    assert_eq!(count(&b, "messages"), 3, "none of the refused batch");
    // A blocking batch waits until both fit, then goes in whole.
    let path = b.join("batch");
    let writer = std::thread::spawn(move || {
        let mut w = open_with(&path, false, true, 0).unwrap();
        w.write(&frames(&[b"4", b"5"])).map_err(|e| errno(&e))
    });
    wait_status(&b.join("status"), "senders-waiting", "1");
    let mut r = open_with(&b.join("packets"), true, false, libc::O_NONBLOCK).unwrap();
    assert_eq!(read1(&mut r, 10).unwrap(), b"1");
    // Room for both now: the batch goes in whole.
    let written = within(DEADLINE, "blocked batch", move || writer.join().unwrap());
    assert_eq!(written, Ok(10));
    assert_eq!(count(&b, "messages"), 4);
    let got: Vec<Vec<u8>> = (0..4).map(|_| read1(&mut r, 10).unwrap()).collect();
    let want: Vec<Vec<u8>> = [b"2", b"3", b"4", b"5"]
        .iter()
        .map(|m| m.to_vec())
        .collect();
    assert_eq!(got, want);
}

/// Under `arbitrary` with several readers (each its own descriptor, read
/// while the batches arrive), each frame goes to exactly one of them.
#[test]
fn batch_frames_go_to_exactly_one_of_several_readers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let m = Mount::new();
    let b = m.mailbox("many", "");
    set_policy(&b.join("policy"), "capacity=64");
    let n = 4000;
    let got = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (path, got) = (b.join("batch"), Arc::clone(&got));
            std::thread::spawn(move || {
                let mut f = open_with(&path, true, false, libc::O_NONBLOCK).unwrap();
                let mut mine = Vec::new();
                let deadline = std::time::Instant::now() + DEADLINE;
                while got.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
                    poll1(&f, libc::POLLIN, 50);
                    match read1(&mut f, 65536) {
                        Ok(data) => {
                            let msgs = unframe(&data);
                            got.fetch_add(msgs.len(), Ordering::SeqCst);
                            mine.extend(msgs);
                        }
                        Err(e) => assert_eq!(errno(&e), libc::EAGAIN),
                    }
                }
                mine
            })
        })
        .collect();
    let mut w = open_with(&b.join("batch"), false, true, 0).unwrap();
    for chunk in (0..n).collect::<Vec<usize>>().chunks(50) {
        let msgs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|i| format!("m{i:05}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        w.write_all(&frames(&refs)).unwrap();
    }
    let mut seen = HashSet::new();
    let mut per_reader = Vec::new();
    for r in readers {
        let mine = within(DEADLINE * 2, "reader", move || r.join().unwrap());
        per_reader.push(mine.len());
        for msg in mine {
            assert!(seen.insert(msg.clone()), "received twice: {msg:?}");
        }
    }
    assert_eq!(
        seen.len(),
        n,
        "each frame exactly once ({per_reader:?} per reader)"
    );
    assert_eq!(count(&b, "received"), n as u64);
    assert_eq!(count(&b, "messages"), 0);
}

#[test]
fn a_blocked_packets_read_ends_on_a_signal_and_consumes_nothing() {
    let m = Mount::new();
    let b = m.mailbox("intr", "");
    let mut cmd = Command::new("dd");
    cmd.arg(format!("if={}", b.join("packets").display()))
        .args(["bs=4096", "count=1", "status=none"]);
    let dd = Bg::spawn(cmd, "dd packets");
    wait_status(&b.join("status"), "receivers-waiting", "1");
    dd.signal(libc::SIGTERM);
    let o = dd.wait_timeout(DEADLINE);
    assert_eq!(o.status.signal(), Some(libc::SIGTERM), "{}", show(&o));
    wait_status(&b.join("status"), "receivers-waiting", "0");
    send_nb(&b.join("batch"), &frames(&[b"kept"])).unwrap();
    assert_eq!(count(&b, "messages"), 1);
}

#[test]
fn poll_on_packets_reports_messages_and_room() {
    let m = Mount::new();
    let b = m.mailbox("poll", "");
    set_policy(&b.join("policy"), "capacity=1");
    let f = open_with(&b.join("packets"), true, true, libc::O_NONBLOCK).unwrap();
    let (_, ev) = poll1(&f, libc::POLLIN | libc::POLLOUT, 0);
    assert_eq!(
        ev & (libc::POLLIN | libc::POLLOUT),
        libc::POLLOUT,
        "empty, room"
    );
    send_nb(&b.join("send"), b"x").unwrap();
    let (_, ev) = poll1(&f, libc::POLLIN | libc::POLLOUT, 0);
    assert_eq!(
        ev & (libc::POLLIN | libc::POLLOUT),
        libc::POLLIN,
        "full, readable"
    );
    // A blocked poll wakes when a message arrives.
    let mut r = open_with(&b.join("packets"), true, false, libc::O_NONBLOCK).unwrap();
    read1(&mut r, 10).unwrap();
    let g = open_with(&b.join("packets"), true, false, 0).unwrap();
    let sender = std::thread::spawn({
        let s = b.join("send");
        move || {
            std::thread::sleep(Duration::from_millis(50));
            send_nb(&s, b"y").unwrap();
        }
    });
    let (n, ev) = poll1(&g, libc::POLLIN, 5000);
    sender.join().unwrap();
    assert_eq!((n, ev & libc::POLLIN), (1, libc::POLLIN));
}

#[test]
fn exclusive_applies_to_packets_readers() {
    let m = Mount::new();
    let b = m.mailbox("ex", "");
    set_policy(&b.join("policy"), "exclusive");
    let holder = hold(&[(&b.join("packets"), libc::O_RDONLY)], None).expect("holder");
    assert_errno(
        in_child(&b.join("packets"), libc::O_RDONLY, false, None),
        libc::EBUSY,
        "second receiving process",
    );
    assert_errno(
        in_child(&b.join("recv"), libc::O_RDONLY, false, None),
        libc::EBUSY,
        "recv of a second process",
    );
    // Writing only is sending: allowed.
    in_child(&b.join("packets"), libc::O_WRONLY, false, None).expect("a sender");
    drop(holder);
}

#[test]
fn packets_on_a_direct_link() {
    let m = Mount::new();
    let me = std::process::id();
    let reader = m.spawn_sh(&format!(
        r#"dd if="$M/proc/{me}/packets" bs=4096 count=1 status=none"#
    ));
    let link = m.p(&format!("proc/{}/packets", reader.pid()));
    wait_until(DEADLINE, "the reader waits on its link", || {
        std::fs::read_to_string(m.p(&format!("proc/{}/status", reader.pid())))
            .is_ok_and(|s| s.contains("receivers-waiting: 1"))
            || num(&status_map(&m.p("proc/status")), "parked") == 1
    });
    let mut w = open_with(&link, false, true, 0).unwrap();
    w.write_all(b"over the link").unwrap();
    let o = reader.wait_timeout(DEADLINE);
    assert_eq!(out_str(&o), "over the link", "{}", show(&o));
}

/// An `O_APPEND` descriptor (`exec 3>>box/send`, Python's `open(p, 'a')`)
/// sends one message per write, as any other: the kernel puts each write at
/// the file's size, which is no continuation of an earlier one.
#[test]
fn append_descriptors_send_one_message_per_write() {
    let m = Mount::new();
    let b = m.mailbox("app", "");
    let o = m.sh(
        r#"exec 3>>"$M/app/send"; echo a >&3; echo b >&3; exec 4>>"$M/app/packets"; echo c >&4"#,
        DEADLINE,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(count(&b, "messages"), 3);
    let mut r = open_with(&b.join("packets"), true, false, libc::O_NONBLOCK).unwrap();
    for want in [&b"a\n"[..], b"b\n", b"c\n"] {
        assert_eq!(read1(&mut r, 100).unwrap(), want);
    }
}

/// A write blocked on `packets` or `batch` (a rendezvous with nobody
/// receiving) is parked in the daemon like any sender: the writer sleeps
/// interruptibly, `O_NONBLOCK` gets `EAGAIN` at once, SIGKILL ends it, and
/// nothing of it is sent.
#[test]
fn blocked_packets_and_batch_writers_are_killable_and_send_nothing() {
    let m = Mount::new();
    let b = m.mailbox("rv", "");
    set_policy(&b.join("policy"), "capacity=0");
    let writers: Vec<Bg> = [
        r#"exec printf one > "$M/rv/packets""#,
        r#"exec printf '\003\000\000\000two' > "$M/rv/batch""#,
    ]
    .iter()
    .map(|script| m.spawn_sh(script))
    .collect();
    wait_status(&b.join("status"), "senders-waiting", "2");
    for w in &writers {
        let state = proc_state(w.pid());
        assert_eq!(state, 'S', "writer {} sleeps interruptibly", w.pid());
    }
    for file in ["packets", "batch"] {
        let p = b.join(file);
        let data = if file == "batch" {
            frames(&[b"x"])
        } else {
            b"x".to_vec()
        };
        let r = within(DEADLINE, "O_NONBLOCK write", move || {
            open_with(&p, false, true, libc::O_NONBLOCK).and_then(|mut f| f.write(&data))
        });
        assert_errno(r, libc::EAGAIN, "O_NONBLOCK write on a full rendezvous");
    }
    for w in writers {
        w.signal(libc::SIGKILL);
        let o = w.wait_timeout(DEADLINE);
        assert_eq!(o.status.signal(), Some(libc::SIGKILL), "{}", show(&o));
    }
    wait_status(&b.join("status"), "senders-waiting", "0");
    assert_eq!(count(&b, "sent"), 0, "killed writers sent nothing");
    assert_eq!(count(&b, "messages"), 0);
}
