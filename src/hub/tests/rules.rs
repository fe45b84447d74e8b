//! Receiver rules, policies and receipts.

use super::*;

#[test]
fn receipts_name_the_receiver_in_send_order() {
    let (hub, w) = hub("arbitrary");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "r");
    let s = send_fd(&hub, a, id, true);
    assert_eq!(
        read(&hub, s, 1, 64, false).got(),
        Got::Data(vec![]),
        "nothing outstanding"
    );
    write(&hub, s, 1, b"m1", false);
    write(&hub, s, 1, b"m2", false);
    let pending = read(&hub, s, 1, 64, false);
    assert_eq!(pending.got(), Got::Parked);
    let rb = recv_fd(&hub, b, id);
    let rc = recv_fd(&hub, c, id);
    read(&hub, rb, 2, 64, false);
    assert_eq!(pending.got(), Got::Data(b"2\n".to_vec()));
    assert_eq!(read(&hub, s, 1, 64, true).got(), Got::Err(libc::EAGAIN));
    read(&hub, rc, 3, 64, false);
    assert_eq!(
        read(&hub, s, 1, 64, false).got(),
        Got::Data(b"3\n".to_vec())
    );
}

#[test]
fn pair_and_exclusive_refuse_with_ebusy() {
    let (hub, w) = hub("pair");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "p");
    send_fd(&hub, a, id, false);
    recv_fd(&hub, b, id);
    assert_eq!(
        hub.open(c, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::EBUSY.into())
    );
    assert_eq!(status_of(&hub, id, a)["pair"], "1 2");
    w.exit(2);
    assert!(
        hub.open(c, Target::Mailbox(id, FileKind::Recv), acc(true, false))
            .is_ok()
    );

    let (hub, w) = hub_with_exclusive();
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "x");
    let r1 = recv_fd(&hub, a, id);
    let r2 = recv_fd(&hub, a, id);
    assert_eq!(
        hub.open(b, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::EBUSY.into())
    );
    assert!(
        hub.open(b, Target::Mailbox(id, FileKind::Send), acc(false, true))
            .is_ok()
    );
    hub.release(r1);
    assert_eq!(
        hub.open(b, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::EBUSY.into())
    );
    hub.release(r2);
    assert!(
        hub.open(b, Target::Mailbox(id, FileKind::Recv), acc(true, false))
            .is_ok()
    );
}

fn hub_with_exclusive() -> (Hub, Arc<World>) {
    hub("exclusive")
}

#[test]
fn policy_writes_are_validated_and_apply_to_new_mailboxes() {
    let (hub, w) = hub("arbitrary");
    let a = w.spawn(1, 0);
    let old = mkbox(&hub, "old");
    let root = hub.open(a, Target::RootPolicy, acc(true, true)).unwrap();
    assert_eq!(
        write(&hub, root, 1, b"bogus\n", false).got(),
        Got::Err(libc::EINVAL)
    );
    assert_eq!(
        write(&hub, root, 1, b"broadcast capacity=3\n", false).got(),
        Got::Written(21)
    );
    let new = mkbox(&hub, "new");
    assert_eq!(status_of(&hub, old, a)["policy"], "arbitrary");
    assert_eq!(status_of(&hub, new, a)["policy"], "broadcast");
    assert_eq!(status_of(&hub, new, a)["capacity"], "3");
    let p = hub
        .open(a, Target::Mailbox(new, FileKind::Policy), acc(true, true))
        .unwrap();
    assert_eq!(
        read(&hub, p, 1, 100, false).got(),
        Got::Data(b"broadcast capacity=3 max-message-size=1000\n".to_vec())
    );
    assert_eq!(
        write(&hub, p, 1, b"max-message-size=1001", false).got(),
        Got::Err(libc::EINVAL)
    );
    assert_eq!(status_of(&hub, new, a)["max-message-size"], "1000");
}

#[test]
fn broadcast_keeps_send_order_across_shared_and_own_copies() {
    let (hub, w) = hub("broadcast");
    let (a, b) = (w.spawn(1, 0), w.spawn(2, 0));
    let id = mkbox(&hub, "bc");
    let s = send_fd(&hub, a, id, false);
    write(&hub, s, 1, b"first", false); // nobody listening: shared queue
    let r = recv_fd(&hub, b, id);
    write(&hub, s, 1, b"second", false); // b's own copy
    assert_eq!(
        read(&hub, r, 2, 100, false).got(),
        Got::Data(b"first".to_vec())
    );
    assert_eq!(read(&hub, r, 2, 100, false).got(), Got::Data(vec![]));
    assert_eq!(
        read(&hub, r, 2, 100, false).got(),
        Got::Data(b"second".to_vec())
    );
}

#[test]
fn broadcast_receipt_names_a_receiver_not_a_process_that_closed() {
    let (hub, w) = hub("broadcast");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "bc");
    let s = send_fd(&hub, a, id, true);
    let rb = recv_fd(&hub, b, id);
    let rc = recv_fd(&hub, c, id);
    write(&hub, s, 1, b"m", false);
    hub.release(rb); // b leaves without reading: its copy is dropped
    assert_eq!(
        read(&hub, rc, 3, 100, false).got(),
        Got::Data(b"m".to_vec())
    );
    assert_eq!(
        read(&hub, s, 1, 64, false).got(),
        Got::Data(b"3\n".to_vec())
    );
    // With every copy dropped unread, the receipt says the message was lost.
    write(&hub, s, 1, b"n", false);
    hub.release(rc);
    assert_eq!(read(&hub, s, 1, 64, false).got(), Got::Err(libc::EIDRM));
}

#[test]
fn broadcast_rendezvous_never_queues_past_capacity() {
    let (hub, w) = hub("broadcast capacity=0");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "bc0");
    let s = send_fd(&hub, a, id, false);
    let rb = recv_fd(&hub, b, id);
    let rc = recv_fd(&hub, c, id);
    let wb = read(&hub, rb, 2, 10, false);
    let wc = read(&hub, rc, 3, 10, false);
    w.signal(2); // b is interrupted
    hub.interrupt(wb.req());
    let sent = write(&hub, s, 1, b"x", false);
    assert_eq!(wb.got(), Got::Err(libc::EINTR));
    assert_eq!(sent.got(), Got::Parked, "b has no room: the sender waits");
    assert_eq!(wc.got(), Got::Parked);
    assert_eq!(status_of(&hub, id, a)["messages"], "0");
}

#[test]
fn refused_sender_leaves_no_receipt() {
    let (hub, w) = hub("capacity=0");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "p");
    let _rb = recv_fd(&hub, b, id);
    let _sc = send_fd(&hub, c, id, false);
    let s = send_fd(&hub, a, id, true);
    let blocked = write(&hub, s, 1, b"x", false);
    assert_eq!(blocked.got(), Got::Parked);
    let p = hub
        .open(b, Target::Mailbox(id, FileKind::Policy), acc(true, true))
        .unwrap();
    write(&hub, p, 2, b"pair", false); // pair = {b, c} by open order: a refused
    assert_eq!(blocked.got(), Got::Err(libc::EBUSY));
    assert_eq!(read(&hub, s, 1, 64, true).got(), Got::Data(vec![]));
}

#[test]
fn exclusive_hold_passes_to_a_process_that_kept_recv_open() {
    let (hub, w) = hub("arbitrary");
    let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
    let id = mkbox(&hub, "x");
    let ra = recv_fd(&hub, a, id);
    let _rb = recv_fd(&hub, b, id);
    let p = hub
        .open(a, Target::Mailbox(id, FileKind::Policy), acc(true, true))
        .unwrap();
    write(&hub, p, 1, b"exclusive", false); // holder = a, the earliest
    assert_eq!(status_of(&hub, id, a)["holder"], "1");
    hub.release(ra); // a leaves; b still has recv open
    assert_eq!(status_of(&hub, id, a)["holder"], "2");
    assert_eq!(
        hub.open(c, Target::Mailbox(id, FileKind::Recv), acc(true, false)),
        Err(Errno::EBUSY.into())
    );
}

/// A copier's open (read-only, `O_NOFOLLOW`: `cp -r`, `tar`) of any message
/// file is an empty file: it takes no message, never blocks, and holds no
/// `exclusive` or `pair` slot.
#[test]
fn a_copier_reads_empty_files_and_holds_no_slot() {
    let copy = Access {
        copy: true,
        ..acc(true, false)
    };
    for rule in ["exclusive", "pair"] {
        let (hub, w) = hub(rule);
        let (a, b, c) = (w.spawn(1, 0), w.spawn(2, 0), w.spawn(3, 0));
        let id = mkbox(&hub, "x");
        let s = send_fd(&hub, a, id, false);
        assert_eq!(write(&hub, s, 1, b"m1", true).got(), Got::Written(2));
        for k in FileKind::ALL {
            let h = hub
                .open(b, Target::Mailbox(id, k), copy)
                .unwrap_or_else(|e| panic!("{rule}: copier's open of {}: {e:?}", k.name()));
            let got = read(&hub, h, 2, 4096, false).got();
            if k.sends() || k.receives() {
                assert_eq!(got, Got::Data(vec![]), "{rule}: {}", k.name());
            }
            hub.release(h);
        }
        assert_eq!(status_of(&hub, id, a)["messages"], "1", "{rule}");
        assert_eq!(status_of(&hub, id, a)["receivers"], "0", "{rule}");
        // The copier took no slot: another process may still receive.
        let r = recv_fd(&hub, c, id);
        assert_eq!(
            read(&hub, r, 3, 4096, false).got(),
            Got::Data(b"m1".to_vec())
        );
    }
}
