//! `RedisStore` (the broker of ipcfs(7), ACROSS HOSTS) against a real
//! redis-server: two stores with different node names on one server are
//! two hosts. Each test starts its own server; every wait has a deadline.
//! Leases, fencing and broker failures: broker_faults.rs.

mod common;
#[path = "broker/node.rs"]
mod node;

use std::thread;
use std::time::Duration;

use common::{Redis, RedisConfig, free_port, wait_until};
use ipcfs::broker::{RedisStore, redact};
use ipcfs::hub::framing::Framing;
use ipcfs::hub::message::ReceiptTag;
use ipcfs::hub::policy::{Policy, Rule};
use ipcfs::hub::receiver_rule::Role;
use ipcfs::hub::store::{Event, Outgoing, Reader, Received, Sent, Store, Withdrawn};
use ipcfs::hub::tree::Attr;
use node::*;

#[test]
fn redact_hides_the_password_only() {
    assert_eq!(redact("redis://u:pw@h:6379/2"), "redis://u@h:6379/2");
    assert_eq!(redact("rediss://:pw@h:6380"), "rediss://h:6380");
    assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    assert_eq!(redact("redis://u@h"), "redis://u@h");
}

#[test]
fn connect_errors_are_sentences_without_the_password() {
    let port = free_port();
    let url = format!("redis://u:secret@127.0.0.1:{port}");
    let e = RedisStore::connect(&url, "a", Duration::from_secs(10))
        .err()
        .expect("no server: refused");
    assert!(
        e.starts_with(&format!(
            "cannot reach the broker at redis://u@127.0.0.1:{port}: "
        )),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");

    let r = Redis::with(RedisConfig {
        password: Some("right".into()),
        ..Default::default()
    });
    let wrong = format!("redis://:wrong@127.0.0.1:{}", r.port());
    let e = RedisStore::connect(&wrong, "a", Duration::from_secs(10))
        .err()
        .expect("wrong password: refused");
    assert!(
        e.starts_with(&format!(
            "the broker at redis://127.0.0.1:{} refused the password: ",
            r.port()
        )),
        "{e}"
    );
    assert!(!e.contains("wrong"), "{e}");

    let a = Node::start(&r.url(), "a", Duration::from_secs(10));
    let e = RedisStore::connect(&r.url(), "a", Duration::from_secs(10))
        .err()
        .expect("a live node name: refused");
    assert_eq!(
        e,
        format!(
            "node \"a\" is already served by a live daemon on the broker at redis://127.0.0.1:{} \
             (its lease ends within 10 s)",
            r.port()
        )
    );
    drop(a);
    // Stopped: the name is free at once.
    drop(Node::start(&r.url(), "a", Duration::from_secs(10)));

    // Not stopped, not renewed: free once its lease ran out.
    let gone = RedisStore::connect(&r.url(), "x", Duration::from_millis(300)).expect("x");
    std::mem::forget(gone);
    assert!(RedisStore::connect(&r.url(), "x", Duration::from_secs(10)).is_err());
    wait_until(LONG, "the name x is free again", || {
        RedisStore::connect(&r.url(), "x", Duration::from_secs(10)).is_ok()
    });
}

#[test]
fn the_tree_is_shared_and_changes_reach_the_other_node() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Exclusive, Some(7)));
    b.expect("TreeChanged on b", |e| *e == Event::TreeChanged);
    let tree = b.tree().unwrap();
    assert_eq!(tree.len(), 1);
    let m = &tree[0];
    assert_eq!((m.id, m.parent, m.name.clone()), (id, 0, name("box")));
    assert_eq!(m.policy, policy(Rule::Exclusive, Some(7)));
    assert_eq!(m.dir, dir());
    assert_eq!(m.files[0].uid, 1000);

    assert_eq!(
        errno_of(b.mkdir(0, &name("box"), dir(), &policy(Rule::Arbitrary, None))),
        "EEXIST"
    );
    assert_eq!(
        errno_of(b.mkdir(99, &name("x"), dir(), &policy(Rule::Arbitrary, None))),
        "ENOENT"
    );
    let sub = b
        .mkdir(id, &name("sub"), dir(), &policy(Rule::Arbitrary, None))
        .unwrap();
    assert_eq!(
        errno_of(b.rename(0, &name("box"), sub, &name("x"))),
        "EINVAL"
    );
    b.rename(0, &name("box"), 0, &name("renamed")).unwrap();
    a.expect("TreeChanged on a", |e| *e == Event::TreeChanged);
    let names: Vec<_> = a.tree().unwrap().into_iter().map(|m| m.name).collect();
    assert!(
        names.contains(&name("renamed")) && !names.contains(&name("box")),
        "{names:?}"
    );

    let p = policy(Rule::Pair, None);
    a.set_policy(id, &p).unwrap();
    let files = [Attr {
        mode: 0o600,
        uid: 5,
        gid: 6,
    }; 6];
    a.set_attrs(
        id,
        Attr {
            mode: 0o700,
            uid: 5,
            gid: 6,
        },
        files,
    )
    .unwrap();
    let m = b.tree().unwrap().into_iter().find(|m| m.id == id).unwrap();
    assert_eq!((m.policy, m.dir.mode, m.files), (p, 0o700, files));

    assert_eq!(errno_of(b.rmdir(0, &name("renamed"))), "ENOTEMPTY");
    assert_eq!(b.rmdir(id, &name("sub")).unwrap(), sub);
    assert_eq!(b.rmdir(0, &name("renamed")).unwrap(), id);
    a.expect("Removed on a", |e| *e == Event::Removed { mailbox: id });
    assert!(a.tree().unwrap().is_empty());
    assert_eq!(
        errno_of(a.send(id, &writer(1, false), &[out(b"x")])),
        "EIDRM"
    );
    assert_eq!(errno_of(a.rmdir(0, &name("renamed"))), "ENOENT");
}

#[test]
fn a_message_sent_on_a_is_received_on_b_and_its_receipt_names_b() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    let tag = ReceiptTag { handle: 3, seq: 1 };
    let m = Outgoing {
        bytes: b"hello\n\0bin".to_vec(),
        receipt: Some(tag),
    };
    assert_eq!(a.send(id, &writer(1, false), &[m]).unwrap(), Sent::Accepted);
    b.open(id, 42, Role::Recv).unwrap();
    let Received::Messages { msgs, flight } = b.receive(id, &reader(7, 42)).unwrap() else {
        panic!("a queued message")
    };
    assert_eq!(msgs, vec![b"hello\n\0bin".to_vec()]);
    b.ack(&flight).unwrap();
    let e = a.expect("Receipt on a", |e| matches!(e, Event::Receipt { .. }));
    assert_eq!(
        e,
        Event::Receipt {
            tag,
            pid: 42,
            node: "b".into()
        }
    );

    // Nothing queued: b parks, and a's send reaches its pump.
    assert_eq!(b.receive(id, &reader(8, 42)).unwrap(), Received::Parked);
    let tag2 = ReceiptTag { handle: 3, seq: 2 };
    let m = Outgoing {
        bytes: b"two".to_vec(),
        receipt: Some(tag2),
    };
    assert_eq!(a.send(id, &writer(2, false), &[m]).unwrap(), Sent::Accepted);
    let e = b.expect("Deliver on b", |e| matches!(e, Event::Deliver { .. }));
    let Event::Deliver {
        mailbox,
        wid,
        msgs,
        flight,
    } = e
    else {
        unreachable!()
    };
    assert_eq!((mailbox, wid, msgs), (id, 8, vec![b"two".to_vec()]));
    b.ack(&flight).unwrap();
    let e = a.expect("Receipt on a", |e| matches!(e, Event::Receipt { .. }));
    assert_eq!(
        e,
        Event::Receipt {
            tag: tag2,
            pid: 42,
            node: "b".into()
        }
    );
    let st = a.status(id).unwrap();
    assert_eq!(
        (st.sent, st.received, st.messages, st.receivers),
        (2, 2, 0, 1)
    );
    assert_eq!(b.receive(id, &nonblock(9, 42)).unwrap(), Received::Empty);
}

#[test]
fn calls_from_several_threads_at_once_keep_each_senders_order() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    thread::scope(|s| {
        for t in 0..4u8 {
            let a: &RedisStore = &a.store;
            s.spawn(move || {
                for i in 0..50u8 {
                    a.send(id, &writer(t as u64, false), &[out(&[t, i])])
                        .unwrap();
                }
            });
        }
    });
    let mut next = [0u8; 4];
    for _ in 0..200 {
        let m = take(&b, id, 20);
        assert_eq!(m[1], next[m[0] as usize], "sender {} out of order", m[0]);
        next[m[0] as usize] += 1;
    }
    assert_eq!(next, [50; 4]);
    assert_eq!(b.receive(id, &nonblock(1, 20)).unwrap(), Received::Empty);
}

#[test]
fn packets_and_batch_take_what_fits() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    let three = [out(&[1; 10]), out(&[2; 10]), out(&[3; 30])];
    assert_eq!(
        a.send(id, &writer(1, false), &three).unwrap(),
        Sent::Accepted
    );
    let small = Reader {
        size: 5,
        framing: Framing::Packet,
        ..nonblock(1, 1)
    };
    assert_eq!(a.receive(id, &small).unwrap(), Received::TooBig(10));
    let batch = Reader {
        size: 3,
        framing: Framing::Batch,
        ..nonblock(1, 1)
    };
    assert_eq!(a.receive(id, &batch).unwrap(), Received::TooBig(10));
    let batch = Reader {
        size: 30,
        framing: Framing::Batch,
        ..nonblock(1, 1)
    };
    let Received::Messages { msgs, flight } = a.receive(id, &batch).unwrap() else {
        panic!()
    };
    assert_eq!(msgs, vec![vec![1; 10], vec![2; 10]]);
    a.ack(&flight).unwrap();
    let packet = Reader {
        size: 30,
        framing: Framing::Packet,
        ..nonblock(1, 1)
    };
    let Received::Messages { msgs, .. } = a.receive(id, &packet).unwrap() else {
        panic!()
    };
    assert_eq!(msgs, vec![vec![3; 30]]);
    let big = Policy {
        max_message_size: 8,
        ..policy(Rule::Arbitrary, None)
    };
    a.set_policy(id, &big).unwrap();
    assert_eq!(
        errno_of(a.send(id, &writer(1, false), &[out(&[0; 9])])),
        "EMSGSIZE"
    );
}

#[test]
fn a_waiting_reader_too_small_for_the_message_is_told_so() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    let small = Reader {
        size: 5,
        framing: Framing::Packet,
        ..reader(1, 20)
    };
    assert_eq!(b.receive(id, &small).unwrap(), Received::Parked);
    assert_eq!(a.receive(id, &reader(2, 10)).unwrap(), Received::Parked);
    // The small reader waited longest: passed over, told, and the next
    // reader gets the message.
    a.send(id, &writer(1, false), &[out(&[1; 10])]).unwrap();
    let e = b.expect("TooBig on b", |e| matches!(e, Event::TooBig { .. }));
    assert_eq!(
        e,
        Event::TooBig {
            mailbox: id,
            wid: 1,
            len: 10
        }
    );
    let e = a.expect("Deliver on a", |e| matches!(e, Event::Deliver { .. }));
    assert!(matches!(&e, Event::Deliver { wid: 2, .. }), "{e:?}");
    assert_eq!(a.status(id).unwrap().receivers_waiting, 0);

    // A rendezvous: a small reader and a big sender would wait for ever.
    let rv = mk(&a, "rv", policy(Rule::Arbitrary, Some(0)));
    let small = Reader {
        size: 5,
        framing: Framing::Batch,
        ..reader(3, 20)
    };
    assert_eq!(b.receive(rv, &small).unwrap(), Received::Parked);
    assert_eq!(
        a.send(rv, &writer(1, false), &[out(&[1; 2]), out(&[1; 9])])
            .unwrap(),
        Sent::Full
    );
    let e = b.expect("TooBig on b", |e| matches!(e, Event::TooBig { .. }));
    assert_eq!(
        e,
        Event::TooBig {
            mailbox: rv,
            wid: 3,
            len: 9
        }
    );
    assert_eq!(a.status(rv).unwrap().receivers_waiting, 0);
}

#[test]
fn the_reader_waiting_longest_across_nodes_gets_the_message() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    assert_eq!(a.receive(id, &reader(1, 10)).unwrap(), Received::Parked);
    assert_eq!(b.receive(id, &reader(2, 20)).unwrap(), Received::Parked);
    // Listing a reader again does not move it behind others twice.
    assert_eq!(a.receive(id, &reader(1, 10)).unwrap(), Received::Parked);
    assert_eq!(a.status(id).unwrap().receivers_waiting, 2);
    b.send(id, &writer(5, false), &[out(b"m1")]).unwrap();
    // a re-listed wid 1 after b: b waited longest now.
    let e = b.expect("Deliver on b", |e| matches!(e, Event::Deliver { .. }));
    assert!(
        matches!(&e, Event::Deliver { wid: 2, msgs, .. } if msgs == &vec![b"m1".to_vec()]),
        "{e:?}"
    );
    a.send(id, &writer(6, false), &[out(b"m2")]).unwrap();
    let e = a.expect("Deliver on a", |e| matches!(e, Event::Deliver { .. }));
    assert!(
        matches!(&e, Event::Deliver { wid: 1, msgs, .. } if msgs == &vec![b"m2".to_vec()]),
        "{e:?}"
    );
}

#[test]
fn a_full_mailbox_blocks_the_sender_until_a_receive_makes_room() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, Some(1)));
    assert_eq!(
        a.send(id, &writer(1, false), &[out(b"m1")]).unwrap(),
        Sent::Accepted
    );
    assert_eq!(
        errno_of(a.send(id, &writer(2, true), &[out(b"m2")])),
        "EAGAIN"
    );
    assert_eq!(
        a.send(id, &writer(2, false), &[out(b"m2")]).unwrap(),
        Sent::Full
    );
    assert_eq!(a.status(id).unwrap().senders_waiting, 1);
    assert_eq!(take(&b, id, 20), b"m1");
    // The receive made room: the blocked sender's message went in.
    a.expect("Sent on a", |e| {
        *e == Event::Sent {
            mailbox: id,
            wid: 2,
        }
    });
    assert_eq!(a.status(id).unwrap().senders_waiting, 0);
    assert_eq!(a.status(id).unwrap().messages, 1);
    // A batch is all or none; withdrawn, it leaves nothing.
    assert_eq!(
        a.send(id, &writer(3, false), &[out(b"x"), out(b"y")])
            .unwrap(),
        Sent::Full
    );
    assert_eq!(a.cancel_send(id, 3).unwrap(), Withdrawn::Cancelled);
    assert_eq!(a.status(id).unwrap().senders_waiting, 0);
    assert_eq!(a.status(id).unwrap().messages, 1);
    // A sender whose message went in before its withdrawal is not
    // withdrawn (WentIn while its event is unread; once the pump reported
    // it, the broker has forgotten it).
    assert_eq!(
        a.send(id, &writer(4, false), &[out(b"z")]).unwrap(),
        Sent::Full
    );
    assert_eq!(take(&b, id, 20), b"m2");
    assert_ne!(a.cancel_send(id, 4).unwrap(), Withdrawn::Cancelled);
    a.expect("Sent on a", |e| {
        *e == Event::Sent {
            mailbox: id,
            wid: 4,
        }
    });
    assert_eq!(take(&b, id, 20), b"z");
}

#[test]
fn a_rendezvous_accepts_only_what_waiting_readers_take() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, Some(0)));
    assert_eq!(
        errno_of(a.send(id, &writer(1, true), &[out(b"m")])),
        "EAGAIN"
    );
    assert_eq!(
        a.send(id, &writer(1, false), &[out(b"m")]).unwrap(),
        Sent::Full
    );
    // A reader of another node takes the blocked sender's message straight
    // away, even one that may not wait.
    match b.receive(id, &nonblock(3, 20)).unwrap() {
        Received::Messages { msgs, .. } => assert_eq!(msgs, vec![b"m".to_vec()]),
        other => panic!("{other:?}"),
    }
    a.expect("Sent on a", |e| {
        *e == Event::Sent {
            mailbox: id,
            wid: 1,
        }
    });
    assert_eq!(b.receive(id, &reader(4, 20)).unwrap(), Received::Parked);
    // One reader waits: two messages are one too many.
    assert_eq!(
        a.send(id, &writer(2, false), &[out(b"m"), out(b"n")])
            .unwrap(),
        Sent::Full
    );
    assert_eq!(a.cancel_send(id, 2).unwrap(), Withdrawn::Cancelled);
    assert_eq!(
        a.send(id, &writer(5, false), &[out(b"m")]).unwrap(),
        Sent::Accepted
    );
    let e = b.expect("Deliver on b", |e| matches!(e, Event::Deliver { .. }));
    assert!(matches!(&e, Event::Deliver { wid: 4, .. }), "{e:?}");
    assert_eq!(a.status(id).unwrap().messages, 0);
}

#[test]
fn exclusive_and_pair_hold_across_nodes_until_close_or_exit() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let ex = mk(&a, "ex", policy(Rule::Exclusive, None));
    a.open(ex, 10, Role::Recv).unwrap();
    a.open(ex, 10, Role::Recv).unwrap();
    b.open(ex, 20, Role::Send).unwrap();
    assert_eq!(errno_of(b.open(ex, 20, Role::Recv)), "EBUSY");
    assert_eq!(errno_of(a.open(ex, 11, Role::Recv)), "EBUSY");
    assert_eq!(b.status(ex).unwrap().holders, vec![(10, "a".to_string())]);
    a.close(ex, 10, Role::Recv, None, false).unwrap();
    assert_eq!(errno_of(b.open(ex, 20, Role::Recv)), "EBUSY");
    a.close(ex, 10, Role::Recv, None, false).unwrap();
    b.open(ex, 20, Role::Recv).unwrap();

    let pair = mk(&a, "pair", policy(Rule::Pair, None));
    a.open(pair, 1, Role::Send).unwrap();
    b.open(pair, 2, Role::Recv).unwrap();
    assert_eq!(errno_of(a.open(pair, 3, Role::Recv)), "EBUSY");
    assert_eq!(errno_of(b.open(pair, 4, Role::Send)), "EBUSY");
    b.close(pair, 2, Role::Recv, None, false).unwrap();
    assert_eq!(errno_of(a.open(pair, 3, Role::Recv)), "EBUSY");
    b.close(pair, 2, Role::Recv, None, true).unwrap();
    a.open(pair, 3, Role::Recv).unwrap();
}

#[test]
fn a_late_delivery_to_a_reader_that_gave_up_goes_back_to_the_head() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    assert_eq!(b.receive(id, &reader(3, 20)).unwrap(), Received::Parked);
    a.send(id, &writer(1, false), &[out(b"first")]).unwrap();
    // Too late: the message is already on its way to b.
    b.cancel_receive(id, 3).unwrap();
    a.send(id, &writer(1, false), &[out(b"second")]).unwrap();
    let e = b.expect("Deliver on b", |e| matches!(e, Event::Deliver { .. }));
    let Event::Deliver { flight, .. } = e else {
        unreachable!()
    };
    b.give_back(id, &flight).unwrap();
    assert_eq!(take(&a, id, 10), b"first");
    assert_eq!(take(&a, id, 10), b"second");

    // Cancelled in time: the next send is queued, not delivered.
    assert_eq!(b.receive(id, &reader(4, 20)).unwrap(), Received::Parked);
    b.cancel_receive(id, 4).unwrap();
    a.send(id, &writer(1, false), &[out(b"third")]).unwrap();
    assert_eq!(take(&a, id, 10), b"third");
}

#[test]
fn broadcast_gives_every_receiving_process_its_own_copy() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Broadcast, Some(1)));
    // Sent before anybody receives: it waits for the first reader.
    b.send(id, &writer(1, false), &[out(b"early")]).unwrap();
    a.open(id, 10, Role::Recv).unwrap();
    b.open(id, 20, Role::Recv).unwrap();
    assert_eq!(take(&b, id, 20), b"early");
    assert_eq!(a.receive(id, &nonblock(1, 10)).unwrap(), Received::Empty);

    assert_eq!(a.receive(id, &reader(1, 10)).unwrap(), Received::Parked);
    let tag = ReceiptTag { handle: 9, seq: 1 };
    let m = Outgoing {
        bytes: b"m1".to_vec(),
        receipt: Some(tag),
    };
    assert_eq!(b.send(id, &writer(2, false), &[m]).unwrap(), Sent::Accepted);
    let e = a.expect("Deliver on a", |e| matches!(e, Event::Deliver { .. }));
    let Event::Deliver {
        wid, msgs, flight, ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!((wid, msgs), (1, vec![b"m1".to_vec()]));
    a.ack(&flight).unwrap();
    // b's own copy was queued for it.
    assert_eq!(take(&b, id, 20), b"m1");
    let e = b.expect("Receipt on b", |e| matches!(e, Event::Receipt { .. }));
    assert_eq!(
        e,
        Event::Receipt {
            tag,
            pid: 10,
            node: "a".into()
        }
    );
    let later = b.drain(Duration::from_millis(300));
    assert!(
        !later.iter().any(|e| matches!(e, Event::Receipt { .. })),
        "one receipt: {later:?}"
    );

    // The capacity is per receiving process.
    assert_eq!(
        a.send(id, &writer(3, false), &[out(b"m2")]).unwrap(),
        Sent::Accepted
    );
    assert_eq!(a.status(id).unwrap().messages, 2);
    assert_eq!(
        a.send(id, &writer(3, false), &[out(b"m3")]).unwrap(),
        Sent::Full
    );
    assert_eq!(take(&b, id, 20), b"m2");
    assert_eq!(
        errno_of(a.send(id, &writer(3, true), &[out(b"m3")])),
        "EAGAIN"
    );
    // A late copy given back goes to the head of its own process's copies.
    let Received::Messages { msgs, flight } = a.receive(id, &nonblock(4, 10)).unwrap() else {
        panic!()
    };
    assert_eq!(msgs, vec![b"m2".to_vec()]);
    a.give_back(id, &flight).unwrap();
    assert_eq!(take(&a, id, 10), b"m2");
    // That made room in a's copies: the blocked m3 went in.
    a.expect("Sent on a", |e| {
        *e == Event::Sent {
            mailbox: id,
            wid: 3,
        }
    });
    // A process that stops receiving drops its copies.
    b.close(id, 20, Role::Recv, None, false).unwrap();
    assert_eq!(a.status(id).unwrap().messages, 1);
    assert_eq!(take(&a, id, 10), b"m3");
    // Nothing of the mailbox is left behind it, and the pumps cleared
    // what they reported.
    a.send(id, &writer(5, false), &[out(b"left")]).unwrap();
    b.rmdir(0, &name("box")).unwrap();
    a.expect("Removed on a", |e| *e == Event::Removed { mailbox: id });
    assert_eq!(r.cli(&["KEYS", "{m:*"]).trim(), "");
    wait_until(EVENT, "the inboxes are empty", || {
        r.cli(&["XLEN", "ipcfs:inbox:a"]).trim() == "0"
            && r.cli(&["XLEN", "ipcfs:inbox:b"]).trim() == "0"
    });
}

#[test]
fn an_acl_user_limited_to_the_ipcfs_keys_can_do_everything() {
    let r = Redis::start();
    let ok = r.cli(&[
        "ACL", "SETUSER", "ipcfs", "on", ">s3cret", "~ipcfs:*", "~{m:*", "+@all",
    ]);
    assert_eq!(ok.trim(), "OK");
    let url = format!("redis://ipcfs:s3cret@127.0.0.1:{}", r.port());
    let a = Node::start(&url, "a", LONG);
    let b = Node::start(&url, "b", LONG);
    assert_eq!(a.url(), format!("redis://ipcfs@127.0.0.1:{}", r.port()));
    let id = mk(&a, "box", policy(Rule::Arbitrary, Some(4)));
    assert_eq!(b.receive(id, &reader(1, 2)).unwrap(), Received::Parked);
    a.send(id, &writer(1, false), &[out(b"hi")]).unwrap();
    let e = b.expect("Deliver on b", |e| matches!(e, Event::Deliver { .. }));
    let Event::Deliver { flight, .. } = e else {
        unreachable!()
    };
    b.ack(&flight).unwrap();
    b.heartbeat().unwrap();
    assert_eq!(b.status(id).unwrap().received, 1);

    let wrong = format!("redis://ipcfs:nope@127.0.0.1:{}", r.port());
    let e = RedisStore::connect(&wrong, "c", LONG)
        .err()
        .expect("refused");
    assert!(
        e.starts_with(&format!(
            "the broker at redis://ipcfs@127.0.0.1:{} refused the password: ",
            r.port()
        )),
        "{e}"
    );
}
