//! The core driven without a mount: fake processes, recorded replies.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::hub::waiter::{Outcome, Replier, WaiterId};

#[derive(Default)]
struct World {
    /// pid -> (start time, uid)
    alive: Mutex<HashMap<u32, (u64, u32)>>,
    /// Threads with a signal pending that ends a blocked call.
    signalled: Mutex<HashSet<u32>>,
    /// Exits not yet reported.
    exits: Mutex<Vec<Process>>,
}

struct Fake(Arc<World>);

impl Processes for Fake {
    fn of_thread(&self, tid: u32) -> Option<Process> {
        self.by_pid(tid)
    }
    fn by_pid(&self, pid: u32) -> Option<Process> {
        let alive = self.0.alive.lock().unwrap();
        alive
            .get(&pid)
            .map(|(start, _)| Process { pid, start: *start })
    }
    fn may_signal(&self, from: Process, to: Process) -> bool {
        let alive = self.0.alive.lock().unwrap();
        let uid = |p: Process| alive.get(&p.pid).map(|(_, u)| *u);
        uid(from) == Some(0) || (uid(from).is_some() && uid(from) == uid(to))
    }
    fn interrupted(&self, tid: u32) -> bool {
        self.0.signalled.lock().unwrap().contains(&tid)
    }
    fn exits(&self, _timeout: Duration) -> Vec<Process> {
        std::mem::take(&mut *self.0.exits.lock().unwrap())
    }
}

impl World {
    fn spawn(&self, pid: u32, uid: u32) -> Caller {
        self.alive
            .lock()
            .unwrap()
            .insert(pid, (pid as u64 * 10, uid));
        Caller {
            process: Process {
                pid,
                start: pid as u64 * 10,
            },
            uid,
            gid: uid,
        }
    }
    fn exit(&self, pid: u32) {
        if let Some((start, _)) = self.alive.lock().unwrap().remove(&pid) {
            self.exits.lock().unwrap().push(Process { pid, start });
        }
    }
    fn signal(&self, pid: u32) {
        self.signalled.lock().unwrap().insert(pid);
    }
}

/// A reply slot: `None` while the request is parked; `req` is the
/// request's id, as the kernel would number it.
#[derive(Clone)]
struct Answer(Arc<Mutex<Option<Outcome>>>, WaiterId);

impl Default for Answer {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2);
        let req = NEXT.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        Answer(Arc::default(), req)
    }
}

impl Answer {
    fn req(&self) -> WaiterId {
        self.1
    }
}

impl Replier for Answer {
    fn reply(self: Box<Self>, o: Outcome) {
        assert!(
            self.0.lock().unwrap().replace(o).is_none(),
            "answered twice"
        );
    }
}

fn acc(read: bool, write: bool) -> Access {
    Access {
        read,
        write,
        append: false,
    }
}

fn io(a: &Answer, h: u64, tid: u32, offset: u64, nonblock: bool) -> Io {
    Io {
        handle: h,
        req: a.req(),
        tid,
        offset,
        nonblock,
    }
}

#[derive(Debug, PartialEq)]
enum Got {
    Parked,
    Data(Vec<u8>),
    Written(u32),
    Err(i32),
}

impl Answer {
    fn got(&self) -> Got {
        match &*self.0.lock().unwrap() {
            None => Got::Parked,
            Some(Outcome::Written(n)) => Got::Written(*n),
            Some(Outcome::Error(e)) => Got::Err(e.errno.0),
            Some(o) => Got::Data(o.data().unwrap().to_vec()),
        }
    }
}

const MAX: usize = 1000;

fn hub(policy: &str) -> (Hub, Arc<World>) {
    let world = Arc::new(World::default());
    let base = Policy {
        rule: Rule::Arbitrary,
        capacity: Some(8),
        max_message_size: MAX,
    };
    let config = Config {
        default_policy: policy::parse(policy.as_bytes(), &base, MAX).unwrap(),
        hard_max_message: MAX,
        // Room for 10,000 bytes of messages beside one mailbox.
        max_memory: 10_000 + MAILBOX_COST,
        uid: 0,
        gid: 0,
    };
    (Hub::new(config, Box::new(Fake(Arc::clone(&world)))), world)
}

fn read(hub: &Hub, h: u64, tid: u32, size: u32, nonblock: bool) -> Answer {
    let a = Answer::default();
    hub.read(io(&a, h, tid, 0, nonblock), size, Box::new(a.clone()));
    a
}

fn write(hub: &Hub, h: u64, tid: u32, data: &[u8], nonblock: bool) -> Answer {
    let a = Answer::default();
    hub.write(io(&a, h, tid, 0, nonblock), data, Box::new(a.clone()));
    a
}

fn mkbox(hub: &Hub, name: &str) -> MailboxId {
    hub.mkdir(ROOT, OsStr::new(name), 0o755, 0, 0).unwrap()
}

/// Opens a mailbox's `send` (read-write, with receipts, when `receipts`).
fn send_fd(hub: &Hub, who: Caller, id: MailboxId, receipts: bool) -> u64 {
    hub.open(
        who,
        Target::Mailbox(id, FileKind::Send),
        acc(receipts, true),
    )
    .unwrap()
}

/// Opens a mailbox's `recv`.
fn recv_fd(hub: &Hub, who: Caller, id: MailboxId) -> u64 {
    hub.open(who, Target::Mailbox(id, FileKind::Recv), acc(true, false))
        .unwrap()
}

fn status_of(hub: &Hub, id: MailboxId, who: Caller) -> HashMap<String, String> {
    let h = hub
        .open(who, Target::Mailbox(id, FileKind::Status), acc(true, false))
        .unwrap();
    let Got::Data(text) = read(hub, h, who.process.pid, 4096, false).got() else {
        panic!("status unreadable")
    };
    hub.release(h);
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

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
        0,
        "dropped messages give their memory back"
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
    assert_eq!(hub.attr(b, Some(FileKind::Recv)).unwrap().0.mode, 0o440);
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
    assert_eq!(file_modes(0o755), [0o600, 0o444, 0o644, 0o444]);
    assert_eq!(file_modes(0o775), [0o660, 0o444, 0o644, 0o444]);
    assert_eq!(file_modes(0o700), [0o600, 0o400, 0o600, 0o400]);
    assert_eq!(file_modes(0o733), [0o666, 0o400, 0o600, 0o400]);
}

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
fn memory_bound_refuses_with_enobufs() {
    let (hub, w) = hub("capacity=unlimited");
    let a = w.spawn(1, 0);
    let id = mkbox(&hub, "flood");
    let s = send_fd(&hub, a, id, false);
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
    assert_eq!(hub.memory_used(), 10_000 + MAILBOX_COST);
    let r = recv_fd(&hub, a, id);
    read(&hub, r, 1, 1000, false);
    read(&hub, r, 1, 1000, false); // EOF releases the message
    assert_eq!(hub.memory_used(), 9_000 + MAILBOX_COST);
    assert_eq!(
        write(&hub, s, 1, &[1; 1000], true).got(),
        Got::Written(1000)
    );
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
    assert_eq!(hub.memory_used(), 0);
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

#[test]
fn unread_receipts_count_against_the_memory_bound() {
    let (hub, w) = hub("capacity=unlimited");
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
    assert_eq!(hub.memory_used(), MAILBOX_COST);
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
