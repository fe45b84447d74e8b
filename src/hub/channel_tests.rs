//! A channel on its own: queueing, waiters, rendezvous, broadcast.
use std::sync::Mutex;

use super::*;
use crate::hub::accounting::MemoryBudget;
use crate::hub::message::Payload;
use crate::hub::policy::Rule;
use crate::hub::reply::Replier;

type Log = Arc<Mutex<Vec<String>>>;

struct Rec(&'static str, Log);
impl Replier for Rec {
    fn reply(self: Box<Self>, o: Outcome) {
        let text = match &o {
            Outcome::Written(n) => format!("{} written {n}", self.0),
            Outcome::Error(e) => format!("{} error {}", self.0, e.errno.0),
            other => format!(
                "{} data {:?}",
                self.0,
                other.data().map(String::from_utf8_lossy)
            ),
        };
        self.1.lock().unwrap().push(text);
    }
}

fn p(pid: u32) -> Process {
    Process { pid, start: 1 }
}

fn policy(rule: Rule, cap: Option<usize>) -> Policy {
    Policy {
        rule,
        capacity: cap,
        max_message_size: 1024,
    }
}

fn msg(text: &str, from: u32) -> Message {
    let budget = Arc::new(MemoryBudget::new(1 << 20));
    Message {
        payload: Payload::new(text.as_bytes(), &budget, 0).unwrap(),
        sender: p(from),
        receipt: None,
        order: 0,
    }
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.payload.bytes()).into()
}

fn replies(fx: Effects, log: &Log) -> Vec<String> {
    let mut fx = fx;
    // Handoffs are finished by the hub; show them like replies.
    for (w, m) in fx.handoffs.drain(..) {
        log.lock()
            .unwrap()
            .push(format!("handoff {} {}", w.reader.pid, text(&m)));
    }
    fx.run(&|_| {});
    let mut out = log.lock().unwrap().clone();
    out.sort();
    out
}

fn recv_wait(id: u64, reader: u32, log: &Log) -> RecvWait {
    RecvWait {
        id,
        handle: id,
        reader: p(reader),
        size: 100,
        framing: crate::hub::framing::Framing::Stream,
        reply: Box::new(Rec("r", log.clone())),
    }
}

#[test]
fn fifo_and_one_receiver_per_message() {
    let mut c = Channel::new(policy(Rule::Arbitrary, Some(10)));
    let mut fx = Effects::default();
    for i in 0..5 {
        assert!(c.writable());
        c.accept(msg(&format!("m{i}"), 1), &mut fx);
    }
    assert_eq!(c.messages(), 5);
    for i in 0..5 {
        assert_eq!(
            text(&c.take(p(2 + i % 2), &mut fx).unwrap()),
            format!("m{i}")
        );
    }
    assert!(c.take(p(2), &mut fx).is_none());
    assert_eq!((c.counters.sent, c.counters.received), (5, 5));
}

#[test]
fn longest_waiting_reader_gets_it() {
    let log: Log = Default::default();
    let mut c = Channel::new(policy(Rule::Arbitrary, Some(10)));
    let mut fx = Effects::default();
    c.park_receiver(recv_wait(1, 10, &log), &mut fx);
    c.park_receiver(recv_wait(2, 11, &log), &mut fx);
    c.accept(msg("a", 1), &mut fx);
    assert_eq!(fx.handoffs.len(), 1);
    assert_eq!(fx.handoffs[0].0.reader, p(10));
    assert_eq!(c.receivers_waiting(), 1);
    c.accept(msg("b", 1), &mut fx);
    assert_eq!(replies(fx, &log), vec!["handoff 10 a", "handoff 11 b"]);
}

#[test]
fn full_queue_blocks_senders_in_order() {
    let log: Log = Default::default();
    let mut c = Channel::new(policy(Rule::Arbitrary, Some(1)));
    let mut fx = Effects::default();
    c.accept(msg("a", 1), &mut fx);
    assert!(!c.writable());
    for (id, t) in [(1, "b"), (2, "c")] {
        let w = SendWait {
            id,
            msgs: vec![msg(t, 1)],
            written: 1,
            reply: Box::new(Rec(if id == 1 { "s1" } else { "s2" }, log.clone())),
        };
        c.park_sender(w, &mut fx);
    }
    assert_eq!(text(&c.take(p(2), &mut fx).unwrap()), "a");
    // b moved into the queue, c still waits.
    assert_eq!((c.messages(), c.senders_waiting()), (1, 1));
    assert_eq!(text(&c.take(p(2), &mut fx).unwrap()), "b");
    assert_eq!(text(&c.take(p(2), &mut fx).unwrap()), "c");
    assert_eq!(replies(fx, &log), vec!["s1 written 1", "s2 written 1"]);
}

#[test]
fn rendezvous_completes_only_with_a_receiver() {
    let log: Log = Default::default();
    let mut c = Channel::new(policy(Rule::Arbitrary, Some(0)));
    let mut fx = Effects::default();
    assert!(!c.writable());
    c.park_sender(
        SendWait {
            id: 1,
            msgs: vec![msg("x", 1)],
            written: 1,
            reply: Box::new(Rec("s", log.clone())),
        },
        &mut fx,
    );
    assert_eq!(c.messages(), 0);
    assert!(c.readable_for(p(2)));
    c.park_receiver(recv_wait(2, 2, &log), &mut fx);
    assert_eq!((c.senders_waiting(), c.receivers_waiting()), (0, 0));
    assert_eq!(replies(fx, &log), vec!["handoff 2 x", "s written 1"]);
    // With a reader waiting, a send is accepted at once.
    let mut fx = Effects::default();
    c.park_receiver(recv_wait(3, 2, &log), &mut fx);
    assert!(c.writable());
}

#[test]
fn interrupted_sender_delivers_nothing() {
    let log: Log = Default::default();
    let mut c = Channel::new(policy(Rule::Arbitrary, Some(0)));
    let mut fx = Effects::default();
    c.park_sender(
        SendWait {
            id: 9,
            msgs: vec![msg("x", 1)],
            written: 1,
            reply: Box::new(Rec("s", log.clone())),
        },
        &mut fx,
    );
    assert!(matches!(
        c.remove_waiter(9, &mut fx),
        Some(Removed::Send(_))
    ));
    assert!(c.take(p(2), &mut fx).is_none());
    assert_eq!(c.counters.sent, 0);
}

#[test]
fn broadcast_copies_and_paces_by_slowest() {
    let mut c = Channel::new(policy(Rule::Broadcast, Some(2)));
    let mut fx = Effects::default();
    // Nobody listening: waits for the first reader, exactly one copy.
    c.accept(msg("early", 1), &mut fx);
    c.open_recv(p(2), &mut Effects::default());
    c.open_recv(p(3), &mut Effects::default());
    assert_eq!(text(&c.take(p(3), &mut fx).unwrap()), "early");
    assert!(c.take(p(2), &mut fx).is_none());
    c.accept(msg("a", 1), &mut fx);
    c.accept(msg("b", 1), &mut fx);
    assert_eq!(c.messages(), 4);
    assert!(!c.writable());
    assert_eq!(text(&c.take(p(2), &mut fx).unwrap()), "a");
    assert!(!c.writable(), "p3 still has two queued");
    assert_eq!(text(&c.take(p(3), &mut fx).unwrap()), "a");
    assert!(c.writable());
    // Closing drops the unread copies.
    c.close_recv(p(3), &mut fx);
    assert_eq!(c.counters.dropped, 1);
    assert_eq!(text(&c.take(p(2), &mut fx).unwrap()), "b");
}

#[test]
fn drain_fails_everyone() {
    let log: Log = Default::default();
    let mut c = Channel::new(policy(Rule::Arbitrary, Some(5)));
    let mut fx = Effects::default();
    c.accept(msg("a", 1), &mut fx);
    c.accept(msg("b", 1), &mut fx);
    assert_eq!(c.drain(Errno::EIDRM, &mut fx), 2);
    let mut fx = Effects::default();
    c.park_receiver(recv_wait(1, 2, &log), &mut fx);
    c.drain(Errno::EIDRM, &mut fx);
    assert_eq!(replies(fx, &log), vec![format!("r error {}", libc::EIDRM)]);
}
