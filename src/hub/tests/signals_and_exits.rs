//! Links, interrupts, process exits and shutdown.

use super::*;

#[test]
fn blocked_reader_is_answered_by_a_send_and_interrupted_by_a_signal() {
    let (hub, w) = hub("arbitrary");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "q");
    let s = send_fd(&hub, a, id, false);
    let rb = recv_fd(&hub, b, id);
    let rc = recv_fd(&hub, c, id);
    let wb = read(&hub, rb, 2, 100, false);
    let wc = read(&hub, rc, 3, 100, false);
    assert_eq!((wb.got(), wc.got()), (Got::Parked, Got::Parked));
    assert_eq!(status_of(&hub, id, a)["receivers-waiting"], "2");
    // b waited longest.
    write(&hub, s, 1, b"one", false);
    assert_eq!(wb.got(), Got::Data(b"one".to_vec()));
    assert_eq!(wc.got(), Got::Parked);
    // c is signalled: EINTR, and the next message is not consumed.
    w.signal(3);
    hub.interrupt(wc.req());
    assert_eq!(wc.got(), Got::Err(libc::EINTR));
    write(&hub, s, 1, b"two", false);
    assert_eq!(status_of(&hub, id, a)["messages"], "1");
    assert_eq!(status_of(&hub, id, a)["receivers-waiting"], "0");
    // An interrupt for a request already answered changes nothing.
    hub.interrupt(wb.req());
    assert_eq!(status_of(&hub, id, a)["messages"], "1");
}

#[test]
fn links_follow_the_kill_rule_and_are_reclaimed_on_exit() {
    let (hub, w) = hub("arbitrary");
    let (root, alice, bob) = (w.spawn(1, 0), w.spawn(2, 1000), w.spawn(3, 1001));
    assert_eq!(
        hub.open(alice, Target::Link(3, FileKind::Send), acc(false, true)),
        Err(Errno::EPERM.into())
    );
    assert_eq!(
        hub.open(alice, Target::Link(99, FileKind::Send), acc(false, true)),
        Err(Errno::ESRCH.into())
    );
    let s = hub
        .open(root, Target::Link(3, FileKind::Send), acc(false, true))
        .unwrap();
    write(&hub, s, 1, b"for bob", false);
    assert_eq!(hub.peers(root.process), vec![3]);
    assert_eq!(hub.peers(bob.process), vec![1]);
    // Only bob reads what root sent to bob.
    let r = hub
        .open(alice, Target::Link(1, FileKind::Recv), acc(true, false))
        .unwrap();
    assert_eq!(read(&hub, r, 2, 100, true).got(), Got::Err(libc::EAGAIN));
    let rb = hub
        .open(bob, Target::Link(1, FileKind::Recv), acc(true, false))
        .unwrap();
    assert_eq!(
        read(&hub, rb, 3, 100, false).got(),
        Got::Data(b"for bob".to_vec())
    );
    hub.release(rb);
    // Bob exits with a message queued: dropped, counted, reclaimed.
    write(&hub, s, 1, b"too late", false);
    w.exit(3);
    hub.watch_once(Duration::ZERO);
    assert_eq!(write(&hub, s, 1, b"x", false).got(), Got::Err(libc::ESRCH));
    hub.release(s);
    assert_eq!(
        hub.peers(root.process),
        vec![2],
        "only alice's link is left"
    );
    let t = hub
        .open(root, Target::DaemonStatus, acc(true, false))
        .unwrap();
    let Got::Data(text) = read(&hub, t, 1, 4096, false).got() else {
        panic!()
    };
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("dropped-on-exit: 1\n"), "{text}");
    // Left: descriptors r and t, and the link from root to alice.
    assert_eq!(hub.memory_used(), 2 * HANDLE_COST + LINK_COST);
    // A reused pid is a new process: nothing of the old one reaches it.
    let _ = hub.open(alice, Target::Link(1, FileKind::Recv), acc(true, false));
}

#[test]
fn blocked_reader_of_a_link_gets_esrch_when_the_peer_exits() {
    let (hub, w) = hub("arbitrary");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let r = hub
        .open(a, Target::Link(2, FileKind::Recv), acc(true, false))
        .unwrap();
    let waiting = read(&hub, r, 1, 10, false);
    assert_eq!(waiting.got(), Got::Parked);
    let _ = b;
    w.exit(2);
    hub.watch_once(Duration::ZERO);
    assert_eq!(waiting.got(), Got::Err(libc::ESRCH));
}

#[test]
fn shutdown_answers_enotconn() {
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "q");
    let r = recv_fd(&hub, a, id);
    let waiting = read(&hub, r, 1, 10, false);
    hub.shutdown();
    assert_eq!(waiting.got(), Got::Err(libc::ENOTCONN));
    assert_eq!(read(&hub, r, 1, 10, false).got(), Got::Err(libc::ENOTCONN));
}

#[test]
fn two_blocked_reads_of_one_descriptor_share_the_message() {
    let (hub, w) = hub("arbitrary");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "q");
    let s = send_fd(&hub, a, id, false);
    let r = recv_fd(&hub, b, id);
    // Two threads (or a parent and a child sharing the fd) block on it.
    let t1 = read(&hub, r, 2, 3, false);
    let t2 = read(&hub, r, 22, 3, false);
    assert_eq!(status_of(&hub, id, a)["receivers-waiting"], "1");
    write(&hub, s, 1, b"abcdef", false);
    assert_eq!(t1.got(), Got::Data(b"abc".to_vec()));
    assert_eq!(t2.got(), Got::Data(b"def".to_vec()));
    assert_eq!(read(&hub, r, 2, 3, true).got(), Got::Data(vec![]));
    // A read behind an interrupted one goes on waiting, and gets the next.
    let t1 = read(&hub, r, 2, 10, false);
    let t2 = read(&hub, r, 22, 10, false);
    w.signal(2);
    hub.interrupt(t1.req());
    assert_eq!(t1.got(), Got::Err(libc::EINTR));
    assert_eq!(t2.got(), Got::Parked);
    write(&hub, s, 1, b"XYZ", false);
    assert_eq!(t2.got(), Got::Data(b"XYZ".to_vec()));
}

#[test]
fn blocked_receipt_read_ends_when_its_message_is_not_sent() {
    let (hub, w) = hub("capacity=0");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "rv");
    let s = send_fd(&hub, a, id, true);
    let blocked = write(&hub, s, 1, b"x", false); // rendezvous, nobody reading
    assert_eq!(blocked.got(), Got::Parked);
    let receipt = read(&hub, s, 11, 64, false); // another thread waits for its receipt
    assert_eq!(receipt.got(), Got::Parked);
    w.signal(1); // the writing thread is interrupted
    hub.interrupt(blocked.req());
    assert_eq!(blocked.got(), Got::Err(libc::EINTR));
    assert_eq!(
        receipt.got(),
        Got::Data(vec![]),
        "nothing outstanding: end of file"
    );
}

#[test]
fn link_status_shows_what_an_exited_peer_left() {
    let (hub, w) = hub("arbitrary");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let s = hub
        .open(b, Target::Link(1, FileKind::Send), acc(false, true))
        .unwrap();
    write(&hub, s, 2, b"last words", false);
    hub.release(s);
    w.exit(2);
    assert!(hub.pending_from_exited(a.process, 2));
    let st = hub
        .open(a, Target::Link(2, FileKind::Status), acc(true, false))
        .unwrap();
    let Got::Data(t) = read(&hub, st, 1, 4096, false).got() else {
        panic!("link status unreadable")
    };
    let t = String::from_utf8(t).unwrap();
    assert!(
        t.contains("from-peer-messages: 1\n") && t.contains("peer-alive: no\n"),
        "{t}"
    );
}

/// A caller in a child pid namespace names peers by its own numbers, sees
/// neither host processes nor their messages in `proc/`, and finds an exited
/// sender's messages under the number it knew it by.
#[test]
fn a_nested_caller_names_peers_by_its_numbers() {
    let (hub, w) = hub("arbitrary");
    let host = w.spawn(5, 0);
    let a = w.spawn_nested(100, 1, 0);
    let b = w.spawn_nested(101, 2, 0);
    assert!(hub.peer_visible(100, 2).unwrap());
    assert!(
        !hub.peer_visible(100, 5).unwrap(),
        "a host process is not there"
    );
    assert!(!hub.peer_visible(100, 101).unwrap(), "nor a host pid");
    assert!(hub.peer_visible(5, 101).unwrap(), "the host sees everyone");
    assert_eq!(hub.own_number(100, a.process).unwrap(), 1);
    // b sends to a by a's number, and exits.
    let s = hub
        .open(b, Target::Link(1, FileKind::Send), acc(false, true))
        .unwrap();
    write(&hub, s, 101, b"from b", false);
    hub.release(s);
    // The host sends to a by a's host pid.
    let h = hub
        .open(host, Target::Link(100, FileKind::Send), acc(false, true))
        .unwrap();
    write(&hub, h, 5, b"from host", false);
    assert_eq!(hub.peers_seen_by(100, a.process), vec![2]);
    w.exit(101);
    hub.watch_once(Duration::ZERO);
    assert!(hub.peer_visible(100, 2).unwrap(), "b's message waits");
    assert_eq!(hub.peers_seen_by(100, a.process), vec![2]);
    let r = hub
        .open(a, Target::Link(2, FileKind::Recv), acc(true, false))
        .unwrap();
    assert_eq!(
        read(&hub, r, 100, 64, false).got(),
        Got::Data(b"from b".to_vec())
    );
}

#[test]
fn a_signal_that_does_not_end_calls_leaves_the_read_waiting_until_one_that_does() {
    let (hub, w) = hub("arbitrary");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "chld");
    let r = recv_fd(&hub, b, id);
    let waiting = read(&hub, r, 2, 10, false);
    // The kernel interrupts the read for a SIGCHLD: nothing that ends it.
    hub.interrupt(waiting.req());
    assert_eq!(waiting.got(), Got::Parked);
    hub.watch_once(Duration::ZERO);
    assert_eq!(waiting.got(), Got::Parked);
    // A later Ctrl-C comes with no second interrupt: the watcher sees it.
    w.signal(2);
    hub.watch_once(Duration::ZERO);
    assert_eq!(waiting.got(), Got::Err(libc::EINTR));
    let s = send_fd(&hub, a, id, false);
    write(&hub, s, 1, b"kept", false);
    assert_eq!(status_of(&hub, id, a)["messages"], "1", "not consumed");
}

#[test]
fn an_interrupt_that_comes_before_its_request_parks_still_ends_it() {
    let (hub, w) = hub("arbitrary");
    let b = w.spawn(2, 0);
    let id = mkbox(&hub, "early");
    let r = recv_fd(&hub, b, id);
    let a = Answer::default();
    // Another event-loop thread still has the read when its interrupt comes.
    w.signal(2);
    hub.interrupt(a.req());
    hub.read(io(&a, r, 2, 0, false), 10, Box::new(a.clone()));
    assert_eq!(a.got(), Got::Err(libc::EINTR));
    assert_eq!(status_of(&hub, id, b)["receivers-waiting"], "0");
}

#[test]
fn the_exit_of_a_pair_member_frees_its_slot() {
    let (hub, w) = hub("pair");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "duo");
    let _ra = recv_fd(&hub, a, id);
    let _sb = send_fd(&hub, b, id, false);
    assert_eq!(
        hub.open(c, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::EBUSY.into())
    );
    w.exit(2);
    hub.watch_once(Duration::ZERO);
    assert!(
        hub.open(c, Target::Mailbox(id, FileKind::Recv), acc(true, false))
            .is_ok()
    );
}
