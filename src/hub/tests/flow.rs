//! Sending and receiving, framing, the tree, memory bounds.

use super::*;

#[test]
fn one_message_per_receive_then_eof() {
    let (hub, w) = hub("arbitrary");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "jobs");
    let s = send_fd(&hub, a, id, false);
    let r = recv_fd(&hub, b, id);
    assert_eq!(
        write(&hub, s, 1, b"hello world", false).got(),
        Got::Written(11)
    );
    assert_eq!(write(&hub, s, 1, b"second", false).got(), Got::Written(6));
    assert_eq!(
        read(&hub, r, 2, 5, false).got(),
        Got::Data(b"hello".to_vec())
    );
    assert_eq!(
        read(&hub, r, 2, 100, false).got(),
        Got::Data(b" world".to_vec())
    );
    assert_eq!(read(&hub, r, 2, 100, false).got(), Got::Data(vec![]));
    assert_eq!(
        read(&hub, r, 2, 100, false).got(),
        Got::Data(b"second".to_vec())
    );
    assert_eq!(read(&hub, r, 2, 100, false).got(), Got::Data(vec![]));
    assert_eq!(read(&hub, r, 2, 100, true).got(), Got::Err(libc::EAGAIN));
}

#[test]
fn continuation_chunk_never_consumes_the_eof() {
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "big");
    let s = send_fd(&hub, a, id, false);
    let r = recv_fd(&hub, a, id);
    write(&hub, s, 1, &[7; 8], false);
    // One read(2) of 16 bytes split by the kernel into two 8-byte requests.
    assert_eq!(read(&hub, r, 1, 8, false).got(), Got::Data(vec![7; 8]));
    let cont = Answer::default();
    hub.read(io(&cont, r, 1, 8, false), 8, Box::new(cont.clone()));
    assert_eq!(cont.got(), Got::Data(vec![]));
    // The next read(2) still sees the end of the message.
    assert_eq!(read(&hub, r, 1, 8, true).got(), Got::Data(vec![]));
}

#[test]
fn oversized_and_continued_writes_are_refused_whole() {
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "b");
    let s = send_fd(&hub, a, id, false);
    assert_eq!(
        write(&hub, s, 1, &vec![0; MAX + 1], false).got(),
        Got::Err(libc::EMSGSIZE)
    );
    let cont = Answer::default();
    hub.write(
        io(&cont, s, 1, 4096, false),
        b"rest",
        Box::new(cont.clone()),
    );
    assert_eq!(cont.got(), Got::Err(libc::EMSGSIZE));
    assert_eq!(status_of(&hub, id, a)["messages"], "0");
    assert_eq!(
        write(&hub, s, 1, &vec![0; MAX], false).got(),
        Got::Written(MAX as u32)
    );
}

#[test]
fn rmdir_wakes_everyone_with_eidrm() {
    let (hub, w) = hub("capacity=1");
    let a = w.spawn(1, 0);
    let b = w.spawn(2, 0);
    let id = mkbox(&hub, "gone");
    let full = mkbox(&hub, "full");
    let r = recv_fd(&hub, a, id);
    let waiting = read(&hub, r, 1, 10, false);
    let s = send_fd(&hub, b, full, false);
    write(&hub, s, 2, b"x", false);
    let blocked = write(&hub, s, 2, b"y", false);
    assert_eq!(blocked.got(), Got::Parked);
    hub.rmdir(ROOT, OsStr::new("gone")).unwrap();
    hub.rmdir(ROOT, OsStr::new("full")).unwrap();
    assert_eq!(waiting.got(), Got::Err(libc::EIDRM));
    assert_eq!(blocked.got(), Got::Err(libc::EIDRM));
    assert_eq!(read(&hub, r, 1, 10, false).got(), Got::Err(libc::EIDRM));
    assert_eq!(
        hub.memory_used(),
        2 * HANDLE_COST,
        "dropped messages and ended waits give their memory back"
    );
}

#[test]
fn names_and_nesting() {
    let (hub, _) = hub("arbitrary");
    let a = mkbox(&hub, "a");
    let b = hub.mkdir(a, OsStr::new("b"), 0o750, 5, 6).unwrap();
    assert_eq!(
        hub.mkdir(ROOT, OsStr::new("a"), 0o755, 0, 0),
        Err(Errno::EEXIST.into())
    );
    assert_eq!(
        hub.mkdir(ROOT, OsStr::new("proc"), 0o755, 0, 0),
        Err(Errno::EEXIST.into())
    );
    assert_eq!(
        hub.mkdir(a, OsStr::new("send"), 0o755, 0, 0),
        Err(Errno::EEXIST.into())
    );
    assert_eq!(
        hub.mkdir(ROOT, OsStr::new(&"n".repeat(256)), 0o755, 0, 0),
        Err(Errno::ENAMETOOLONG.into())
    );
    assert_eq!(
        hub.rmdir(ROOT, OsStr::new("a")),
        Err(Errno::ENOTEMPTY.into())
    );
    let (dir, _) = hub.attr(b, None).unwrap();
    assert_eq!((dir.mode, dir.uid, dir.gid), (0o750, 5, 6));
    assert_eq!(hub.attr(b, Some(FileKind::Send)).unwrap().0.mode, 0o600);
    assert_eq!(hub.attr(b, Some(FileKind::Recv)).unwrap().0.mode, 0o400);
    assert_eq!(
        hub.rename(ROOT, OsStr::new("a"), b, OsStr::new("x")),
        Err(Errno::EINVAL.into())
    );
    hub.rename(a, OsStr::new("b"), ROOT, OsStr::new("c"))
        .unwrap();
    assert_eq!(hub.lookup(ROOT, OsStr::new("c")), Some(b));
    hub.rmdir(ROOT, OsStr::new("a")).unwrap();
}

#[test]
fn file_modes_from_the_directory() {
    // [send, recv, policy, status, packets, batch]: only who may send may
    // receive, so 0755 is private, 0775 shared with the group.
    let cases = [
        (0o755, [0o600, 0o400, 0o644, 0o444, 0o600, 0o600]),
        (0o775, [0o660, 0o440, 0o644, 0o444, 0o660, 0o660]),
        (0o1777, [0o666, 0o444, 0o644, 0o444, 0o666, 0o666]),
        (0o700, [0o600, 0o400, 0o600, 0o400, 0o600, 0o600]),
        (0o733, [0o666, 0o444, 0o600, 0o400, 0o666, 0o666]),
    ];
    for (dir, files) in cases {
        assert_eq!(file_modes(dir), files, "{dir:o}");
    }
}

#[test]
fn memory_bound_refuses_with_enobufs() {
    // A mailbox, two descriptors and ten 1000-byte messages, each with its
    // overhead: exactly the bound.
    let msg = 1000 + MESSAGE_OVERHEAD;
    let (hub, w) = hub_with_memory(
        "capacity=unlimited",
        MAILBOX_COST + 2 * HANDLE_COST + 10 * msg,
    );
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "flood");
    let s = send_fd(&hub, a, id, false);
    let r = recv_fd(&hub, a, id);
    for _ in 0..10 {
        assert_eq!(
            write(&hub, s, 1, &[1; 1000], true).got(),
            Got::Written(1000)
        );
    }
    assert_eq!(
        write(&hub, s, 1, &[1; 1], true).got(),
        Got::Err(libc::ENOBUFS)
    );
    assert_eq!(hub.memory_used(), MAILBOX_COST + 2 * HANDLE_COST + 10 * msg);
    // Another descriptor would pass the bound too.
    assert_eq!(
        hub.open(a, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::ENOBUFS.into())
    );
    read(&hub, r, 1, 1000, false);
    read(&hub, r, 1, 1000, false); // EOF releases the message
    assert_eq!(hub.memory_used(), MAILBOX_COST + 2 * HANDLE_COST + 9 * msg);
    assert_eq!(
        write(&hub, s, 1, &[1; 1000], true).got(),
        Got::Written(1000)
    );
}

#[test]
fn closed_descriptors_leave_no_poll_registrations() {
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "idle");
    let count = Arc::new(Mutex::new(0usize));
    let c2 = Arc::clone(&count);
    hub.set_notifier(Box::new(move |_| *c2.lock().unwrap() += 1));
    for kh in 0..1000u64 {
        let r = recv_fd(&hub, a, id);
        hub.poll(r, Some(kh));
        hub.release(r);
    }
    let r = recv_fd(&hub, a, id);
    assert_eq!(hub.poll(r, Some(5000)) & libc::POLLIN as u32, 0);
    let s = send_fd(&hub, a, id, false);
    write(&hub, s, 1, b"x", false);
    assert_eq!(
        *count.lock().unwrap(),
        1,
        "only the open descriptor's poll is notified"
    );
}

#[test]
fn unread_receipts_count_against_the_memory_bound() {
    // Room for the mailbox, two descriptors, one message in flight, and
    // 10,000 bytes of receipts.
    let (hub, w) = hub_with_memory(
        "capacity=unlimited",
        MAILBOX_COST + 2 * HANDLE_COST + 1 + MESSAGE_OVERHEAD + 10_000,
    );
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "prod");
    // `exec 3<>box/send` used only to write: receipts never read.
    let s = send_fd(&hub, a, id, true);
    let r = recv_fd(&hub, b, id);
    let mut sent = 0;
    while write(&hub, s, 1, b"x", true).got() == Got::Written(1) {
        read(&hub, r, 2, 10, false);
        read(&hub, r, 2, 10, false);
        sent += 1;
        assert!(sent < 10_000, "receipts never bounded");
    }
    assert_eq!(write(&hub, s, 1, b"x", true).got(), Got::Err(libc::ENOBUFS));
    assert_eq!(sent, 10_000 / crate::hub::receipts::RECEIPT_COST);
    // Reading the receipts gives the memory back.
    for _ in 0..sent {
        assert_eq!(read(&hub, s, 1, 64, true).got(), Got::Data(b"2\n".to_vec()));
    }
    assert_eq!(hub.memory_used(), MAILBOX_COST + 2 * HANDLE_COST);
    hub.release(s);
}

#[test]
fn mailboxes_count_against_the_memory_bound() {
    let (hub, _) = hub("arbitrary");
    let n = (10_000 + MAILBOX_COST) / MAILBOX_COST;
    for i in 0..n {
        mkbox(&hub, &format!("b{i}"));
    }
    assert_eq!(
        hub.mkdir(ROOT, OsStr::new("one-more"), 0o755, 0, 0),
        Err(Errno::ENOSPC.into())
    );
    hub.rmdir(ROOT, OsStr::new("b0")).unwrap();
    assert!(hub.mkdir(ROOT, OsStr::new("one-more"), 0o755, 0, 0).is_ok());
}

#[test]
fn receipt_read_after_rmdir_is_eidrm() {
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "gone");
    let s = send_fd(&hub, a, id, true);
    write(&hub, s, 1, b"queued", false);
    hub.rmdir(ROOT, OsStr::new("gone")).unwrap();
    // The message queued was dropped: its receipt says so...
    assert_eq!(read(&hub, s, 1, 64, true).got(), Got::Err(libc::EIDRM));
    // ...and with nothing left, the descriptor's mailbox is gone.
    assert_eq!(read(&hub, s, 1, 64, true).got(), Got::Err(libc::EIDRM));
    assert_eq!(write(&hub, s, 1, b"x", true).got(), Got::Err(libc::EIDRM));
}

#[test]
fn an_open_refused_at_the_memory_bound_leaves_no_receiver_behind() {
    // Room for the mailbox and one descriptor only.
    let (hub, w) = hub_with_memory("broadcast", MAILBOX_COST + HANDLE_COST);
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "full");
    let r = recv_fd(&hub, a, id);
    assert_eq!(
        hub.open(b, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::ENOBUFS.into())
    );
    hub.release(r);
    assert_eq!(status_of_free(&hub, id), "0");
}

/// The `receivers` of a mailbox's status, read with the budget full: the
/// snapshot is taken before its own descriptor is charged.
fn status_of_free(hub: &Hub, id: MailboxId) -> String {
    let who = Caller {
        process: Process { pid: 1, start: 10 },
        uid: 0,
        gid: 0,
    };
    status_of(hub, id, who)["receivers"].clone()
}

#[test]
fn status_can_be_read_when_the_daemon_is_full() {
    let (hub, w) = hub_with_memory("arbitrary", MAILBOX_COST + HANDLE_COST);
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "full");
    let _s = send_fd(&hub, a, id, false);
    assert_eq!(
        hub.open(a, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::ENOBUFS.into()),
        "the bound is reached"
    );
    assert_eq!(
        status_of(&hub, id, a)["memory-used"],
        (MAILBOX_COST + HANDLE_COST).to_string()
    );
}

#[test]
fn a_new_broadcast_receiver_lets_a_blocked_sender_in() {
    // Found by the model test: each broadcast receiver has a queue of its
    // own, so the first receiver's open is room for a sender blocked on the
    // shared queue (ipcfs(7) BUFFERING: blocked senders go in while there
    // is room).
    let (hub, w) = hub("broadcast capacity=1");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "news");
    let s = send_fd(&hub, a, id, false);
    assert_eq!(write(&hub, s, 1, b"first", false).got(), Got::Written(5));
    let blocked = write(&hub, s, 1, b"second", false);
    assert_eq!(blocked.got(), Got::Parked);
    let r = recv_fd(&hub, b, id);
    assert_eq!(blocked.got(), Got::Written(6));
    assert_eq!(
        read(&hub, r, 2, 64, true).got(),
        Got::Data(b"first".to_vec())
    );
}

#[test]
fn an_interrupted_blocked_batch_lets_the_sender_behind_it_in() {
    // Found by the model test: room the first blocked sender could not use
    // may be enough for the next one once it has gone.
    let (hub, w) = hub("capacity=2");
    let (a, c, d) = (w.spawn(1, 0), w.spawn(3, 0), w.spawn(4, 0));
    let id = mkbox(&hub, "jobs");
    let s = send_fd(&hub, a, id, false);
    assert_eq!(write(&hub, s, 1, b"queued", false).got(), Got::Written(6));
    let batch = hub
        .open(c, Target::Mailbox(id, FileKind::Batch), acc(false, true))
        .unwrap();
    let mut frames = Vec::new();
    for m in [b"x", b"y"] {
        frames.extend_from_slice(&1u32.to_le_bytes());
        frames.extend_from_slice(m);
    }
    let big = write(&hub, batch, 3, &frames, false);
    assert_eq!(big.got(), Got::Parked, "two frames, room for one");
    let single = send_fd(&hub, d, id, false);
    let small = write(&hub, single, 4, b"z", false);
    assert_eq!(small.got(), Got::Parked, "behind the blocked batch");
    w.signal(3);
    hub.interrupt(big.req());
    assert_eq!(big.got(), Got::Err(libc::EINTR));
    assert_eq!(small.got(), Got::Written(1));
    assert_eq!(status_of(&hub, id, a)["messages"], "2");
}

#[test]
fn blocked_receipt_reads_wake_with_eidrm_on_rmdir() {
    // Found by the model test: a blocked receipt read left with nothing
    // outstanding by rmdir ended with end of file, where a read made then
    // gets EIDRM (ipcfs(7) SENDER RECEIPTS, ERRORS).
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "gone");
    let s = send_fd(&hub, a, id, true);
    assert_eq!(write(&hub, s, 1, b"queued", false).got(), Got::Written(6));
    let first = read(&hub, s, 1, 64, false);
    let second = read(&hub, s, 1, 64, false);
    assert_eq!((first.got(), second.got()), (Got::Parked, Got::Parked));
    hub.rmdir(ROOT, OsStr::new("gone")).unwrap();
    assert_eq!(
        first.got(),
        Got::Err(libc::EIDRM),
        "its message was dropped"
    );
    assert_eq!(second.got(), Got::Err(libc::EIDRM), "its mailbox is gone");
}
