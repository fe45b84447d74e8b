//! The core driven without a mount: fake processes, recorded replies.
//! This file is the harness; the tests are in the files beside it.

mod flow;
mod model;
mod rules;
mod signals_and_exits;
mod watches;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::hub::accounting::{HANDLE_COST, LINK_COST, MESSAGE_OVERHEAD};
use crate::hub::reply::{Outcome, Replier};
use crate::hub::waiters::WaiterId;

#[derive(Default)]
struct World {
    /// pid -> (start time, uid)
    alive: Mutex<HashMap<u32, (u64, u32)>>,
    /// Threads with a signal pending that ends a blocked call.
    signalled: Mutex<HashSet<u32>>,
    /// Exits not yet reported.
    exits: Mutex<Vec<Process>>,
    /// The daemon has no descriptor left: nothing can be asked of a pid.
    no_fds: std::sync::atomic::AtomicBool,
    /// Every process a watch was asked for, in order (whether or not
    /// watched already).
    watched: Mutex<Vec<Process>>,
    /// Processes in one child pid namespace: pid -> the number it has
    /// there. Everyone else is in the daemon's namespace.
    nested: Mutex<HashMap<u32, u32>>,
}

struct Fake(Arc<World>);

impl Fake {
    fn no_fds(&self) -> Result<()> {
        match self.0.no_fds.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(Errno::EMFILE.because("no descriptor left")),
            false => Ok(()),
        }
    }
}

impl Processes for Fake {
    fn of_thread(&self, tid: u32) -> process::Lookup {
        self.by_pid(tid)
    }
    fn by_pid(&self, pid: u32) -> process::Lookup {
        self.no_fds()?;
        let alive = self.0.alive.lock().unwrap();
        Ok(alive
            .get(&pid)
            .map(|(start, _)| Process { pid, start: *start }))
    }
    fn watch_exit(&self, p: Process) -> Result<()> {
        self.no_fds()?;
        self.0.watched.lock().unwrap().push(p);
        Ok(())
    }
    fn resolve(&self, tid: u32, pid: u32) -> process::Lookup {
        let nested = self.0.nested.lock().unwrap();
        if !nested.contains_key(&tid) {
            drop(nested);
            return self.by_pid(pid);
        }
        let host = nested.iter().find(|(_, n)| **n == pid).map(|(p, _)| *p);
        drop(nested);
        match host {
            Some(host) => self.by_pid(host),
            None => Ok(None),
        }
    }
    fn number_for(&self, tid: u32, p: u32) -> Option<u32> {
        let nested = self.0.nested.lock().unwrap();
        match nested.get(&tid) {
            None => Some(p),
            Some(_) => nested.get(&p).copied(),
        }
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
    /// A process in the child pid namespace, numbered `n` there.
    fn spawn_nested(&self, pid: u32, n: u32, uid: u32) -> Caller {
        self.nested.lock().unwrap().insert(pid, n);
        self.spawn(pid, uid)
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
        copy: false,
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
    // Room for 10,000 bytes beside one mailbox.
    hub_with_memory(policy, 10_000 + MAILBOX_COST)
}

fn hub_with_memory(policy: &str, max_memory: usize) -> (Hub, Arc<World>) {
    let world = Arc::new(World::default());
    let base = Policy {
        rule: Rule::Arbitrary,
        capacity: Some(8),
        max_message_size: MAX,
    };
    let config = Config {
        default_policy: policy::parse(policy.as_bytes(), &base, MAX).unwrap(),
        hard_max_message: MAX,
        max_memory,
        user_share: max_memory,
        // Watches cost nothing here, so that the figures of the other
        // tests stay those of what they make; see `watches.rs`.
        watch_cost: 0,
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
