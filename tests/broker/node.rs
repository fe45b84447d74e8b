//! Two RedisStore nodes on one redis-server are two hosts: a node with its
//! pump on a thread and its events collected through a channel, and small
//! helpers, shared by the broker test binaries.
#![allow(dead_code)]

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ipcfs::broker::RedisStore;
use ipcfs::hub::MailboxId;
use ipcfs::hub::framing::Framing;
use ipcfs::hub::policy::{Policy, Rule};
use ipcfs::hub::store::{Event, Outgoing, Reader, Received, Store, Writer};
use ipcfs::hub::tree::Attr;

pub const LONG: Duration = Duration::from_secs(10);
pub const EVENT: Duration = Duration::from_secs(5);

/// One daemon's store, with its pump running on a thread and its events
/// collected through a channel.
pub struct Node {
    pub store: Arc<RedisStore>,
    pub events: Receiver<Event>,
    pump: Option<JoinHandle<()>>,
}

impl Node {
    pub fn start(url: &str, name: &str, lease: Duration) -> Node {
        let store = Arc::new(
            RedisStore::connect(url, name, lease).unwrap_or_else(|e| panic!("connect {name}: {e}")),
        );
        let (tx, events) = mpsc::channel();
        let s = store.clone();
        let pump = thread::spawn(move || {
            s.pump(Arc::new(move |e| {
                let _ = tx.send(e);
            }))
        });
        Node {
            store,
            events,
            pump: Some(pump),
        }
    }

    /// The first event `want` accepts (others are skipped), within `EVENT`.
    pub fn expect(&self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + EVENT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if want(&e) => return e,
                Ok(e) => seen.push(e),
                Err(_) => panic!("no {what} within {EVENT:?}; saw {seen:?}"),
            }
        }
    }

    /// Events arriving within `d`.
    pub fn drain(&self, d: Duration) -> Vec<Event> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(e) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(e);
        }
        out
    }
}

impl std::ops::Deref for Node {
    type Target = RedisStore;
    fn deref(&self) -> &RedisStore {
        &self.store
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.store.stop();
        if let Some(p) = self.pump.take() {
            // The pump sees stop within its XREAD block (1 s) or nap.
            let deadline = Instant::now() + LONG;
            while !p.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if p.is_finished() && !thread::panicking() {
                p.join().expect("the pump panicked");
            }
        }
    }
}

pub fn policy(rule: Rule, capacity: Option<usize>) -> Policy {
    Policy {
        rule,
        capacity,
        max_message_size: 65536,
    }
}

pub fn dir() -> Attr {
    Attr {
        mode: 0o755,
        uid: 1000,
        gid: 1000,
    }
}

pub fn name(s: &str) -> OsString {
    OsString::from(s)
}

pub fn mk(n: &Node, s: &str, p: Policy) -> MailboxId {
    n.mkdir(0, &name(s), dir(), &p).expect("mkdir")
}

pub fn out(bytes: &[u8]) -> Outgoing {
    Outgoing {
        bytes: bytes.to_vec(),
        receipt: None,
    }
}

/// A write of request `wid` by process 1.
pub fn writer(wid: u64, nonblock: bool) -> Writer {
    Writer {
        wid,
        pid: 1,
        nonblock,
        again: false,
    }
}

pub fn reader(wid: u64, pid: u32) -> Reader {
    Reader {
        wid,
        pid,
        size: 4096,
        framing: Framing::Stream,
        nonblock: false,
    }
}

pub fn nonblock(wid: u64, pid: u32) -> Reader {
    Reader {
        nonblock: true,
        ..reader(wid, pid)
    }
}

pub fn errno_of<T: std::fmt::Debug>(r: ipcfs::hub::errno::Result<T>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno.name(),
    }
}

/// Takes one message now, acks it, returns its bytes.
pub fn take(n: &Node, id: MailboxId, pid: u32) -> Vec<u8> {
    match n.receive(id, &nonblock(900, pid)).expect("receive") {
        Received::Messages { mut msgs, flight } => {
            n.ack(&flight).expect("ack");
            assert_eq!(msgs.len(), 1, "one message per stream read");
            msgs.remove(0)
        }
        other => panic!("expected a message, got {other:?}"),
    }
}
