//! `RedisStore` when things go wrong: a node that stops renewing its
//! lease is reaped, a node that lost its lease is fenced, the broker runs
//! out of memory, is stopped, killed, restarted (with AOF). Each test
//! starts its own redis-server; every wait has a deadline.

mod common;
#[path = "broker/node.rs"]
mod node;

use std::thread;
use std::time::{Duration, Instant};

use common::{Redis, RedisConfig};
use ipcfs::hub::errno::Errno;
use ipcfs::hub::policy::Rule;
use ipcfs::hub::receiver_rule::Role;
use ipcfs::hub::store::{Event, Received, Sent, Store};
use node::*;

#[test]
fn a_node_whose_lease_ran_out_is_reaped_by_another_nodes_heartbeat() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", Duration::from_millis(500));
    let b = Node::start(&r.url(), "b", LONG);
    let ex = mk(&b, "ex", policy(Rule::Exclusive, None));
    let q = mk(&b, "q", policy(Rule::Arbitrary, None));
    let all = mk(&b, "all", policy(Rule::Broadcast, None));
    a.open(ex, 10, Role::Recv).unwrap();
    a.open(all, 10, Role::Recv).unwrap();
    b.open(all, 20, Role::Recv).unwrap();
    b.send(all, &writer(1, false), &[out(b"copy")]).unwrap();
    assert_eq!(b.status(all).unwrap().messages, 2);
    b.send(q, &writer(1, false), &[out(b"m1"), out(b"m2")])
        .unwrap();
    // a takes m1 and never acks it; it also waits on ex.
    let Received::Messages { msgs, .. } = a.receive(q, &reader(1, 10)).unwrap() else {
        panic!()
    };
    assert_eq!(msgs, vec![b"m1".to_vec()]);
    assert_eq!(a.receive(ex, &reader(2, 10)).unwrap(), Received::Parked);
    assert_eq!(errno_of(b.open(ex, 20, Role::Recv)), "EBUSY");
    // a stops renewing; b's heartbeat reaps it once its lease is over.
    thread::sleep(Duration::from_millis(600));
    b.heartbeat().unwrap();
    assert!(!r.cli(&["SMEMBERS", "ipcfs:nodes"]).contains('a'));
    b.open(ex, 20, Role::Recv).unwrap();
    assert_eq!(b.status(ex).unwrap().receivers_waiting, 0);
    assert_eq!(take(&b, q, 20), b"m1");
    assert_eq!(take(&b, q, 20), b"m2");
    // a's copy went with it; b's stays.
    assert_eq!(b.status(all).unwrap().messages, 1);
    assert_eq!(b.status(all).unwrap().receivers, 1);
    assert_eq!(
        r.cli(&["EXISTS", "ipcfs:inbox:a", "ipcfs:seen:a"]).trim(),
        "0"
    );
}

/// How many `Fenced` events `a` has reported so far.
fn fenced(a: &Node) -> usize {
    let events = a.drain(Duration::ZERO);
    events.iter().filter(|e| **e == Event::Fenced).count()
}

#[test]
fn a_node_that_lost_its_lease_is_fenced_and_registers_anew() {
    let r = Redis::start();
    let a = Node::start(&r.url(), "a", Duration::from_millis(300));
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    thread::sleep(Duration::from_millis(500));
    // A call for a descriptor answers ESTALE: it belongs to the lost
    // incarnation.
    assert_eq!(
        errno_of(a.send(id, &writer(1, false), &[out(b"x")])),
        "ESTALE"
    );
    // A call no descriptor depends on registers a new incarnation, which
    // is reported before the call is made again and answered.
    assert_eq!(a.tree().unwrap().len(), 1);
    assert_eq!(
        fenced(&a),
        1,
        "Fenced is reported before the call made again returns, once"
    );
    assert_eq!(
        a.send(id, &writer(1, false), &[out(b"x")]).unwrap(),
        Sent::Accepted
    );
    a.heartbeat().unwrap();
    assert_eq!(a.status(id).unwrap().messages, 1);
    // The heartbeat, finding the lease lost, registers anew too, reports
    // it, and says ESTALE once.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(errno_of(a.heartbeat()), "ESTALE");
    assert_eq!(fenced(&a), 1);
    a.heartbeat().unwrap();
    assert_eq!(a.status(id).unwrap().messages, 1);
}

#[test]
fn a_broker_out_of_memory_refuses_with_enobufs() {
    let r = Redis::with(RedisConfig {
        maxmemory: Some(2 << 20),
        ..Default::default()
    });
    let a = Node::start(&r.url(), "a", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    let big = vec![7u8; 60_000];
    let mut sent = 0;
    let refusal = loop {
        match a.send(id, &writer(1, false), &[out(&big)]) {
            Ok(Sent::Accepted) => sent += 1,
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
        assert!(
            sent < 200,
            "the broker took {sent} messages of 60 kB past its 2 MiB"
        );
    };
    assert_eq!(
        refusal.errno,
        Errno::ENOBUFS,
        "after {sent} messages: {refusal}"
    );
    assert!(sent > 0);
    // What was accepted stays whole and receivable.
    assert_eq!(take(&a, id, 1), big);
    assert_eq!(a.status(id).unwrap().messages, sent - 1);
}

#[test]
fn a_broker_that_is_gone_or_stopped_fails_calls_within_the_timeout() {
    let mut r = Redis::start();
    let a = Node::start(&r.url(), "a", LONG);
    mk(&a, "box", policy(Rule::Arbitrary, None));

    // Stopped (SIGSTOP): the exchange times out.
    let pid = r.pid().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t = Instant::now();
    let e = a.tree();
    let took = t.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(errno_of(e), "EHOSTUNREACH");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(!a.reachable());
    a.tree().unwrap();

    r.kill();
    let t = Instant::now();
    assert_eq!(
        errno_of(a.mkdir(0, &name("x"), dir(), &policy(Rule::Arbitrary, None))),
        "EHOSTUNREACH"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(!a.reachable());
    a.expect("Unreachable on a", |e| *e == Event::Unreachable);
    r.restart();
    // Without persistence the lease went with the data: fenced, then back.
    a.expect("Fenced on a", |e| *e == Event::Fenced);
    a.expect("Reachable on a", |e| *e == Event::Reachable);
    assert!(a.reachable());
    assert!(a.tree().unwrap().is_empty());
    let unreachable = a.drain(Duration::from_millis(200));
    assert!(
        !unreachable.contains(&Event::Unreachable),
        "{unreachable:?}"
    );
}

#[test]
fn with_aof_queued_messages_survive_a_broker_restart_in_order() {
    let mut r = Redis::with(RedisConfig {
        aof: true,
        ..Default::default()
    });
    let a = Node::start(&r.url(), "a", LONG);
    let b = Node::start(&r.url(), "b", LONG);
    let id = mk(&a, "box", policy(Rule::Arbitrary, None));
    for m in [&b"m1"[..], b"m2", b"m3"] {
        a.send(id, &writer(1, false), &[out(m)]).unwrap();
    }
    r.restart();
    a.expect("Reachable on a", |e| *e == Event::Reachable);
    b.expect("Reachable on b", |e| *e == Event::Reachable);
    // The scripts are loaded again by the client (NOSCRIPT -> EVAL).
    assert_eq!(take(&b, id, 20), b"m1");
    assert_eq!(take(&b, id, 20), b"m2");
    assert_eq!(take(&b, id, 20), b"m3");
    assert_eq!(b.tree().unwrap().len(), 1);
}
