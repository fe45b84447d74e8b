//! The model test on a broker mount (ipcfs(7), ACROSS HOSTS): the core
//! with its mailboxes in a [`RedisStore`] on a real `redis-server` started
//! for the test (tests/common/redis.rs, shared with the integration
//! tests: a free port, killed on drop, a loud failure when `redis-server`
//! is missing).
//!
//! Replies to reads and writes of a broker mailbox come later, from the
//! store's answers (jobs, run here on the test's thread, in the order the
//! core hands them over) and from the store's pump (its own thread, as in
//! the daemon). [`Broker::drive`] runs jobs until none is left and the
//! pump has reported every entry ever added to this node's inbox: then no
//! answer is on its way, and the core can be compared with the model.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::broker::RedisStore;
use crate::hub::remote::{Job, Remote};
use crate::hub::store::{Event, Store};

#[allow(dead_code)]
#[path = "../../../../tests/common/redis.rs"]
mod redis_server;

pub(super) use redis_server::Redis;

use super::super::Hub;

/// How long the core and the store may take to settle after an operation.
const SETTLE: Duration = Duration::from_secs(10);

/// The store side of a model run on a broker mount.
pub(super) struct Broker {
    pub(super) store: Arc<RedisStore>,
    pub(super) node: String,
    pub(super) url: String,
    /// Jobs the core handed over, not run yet.
    jobs: Arc<Mutex<VecDeque<Job>>>,
    /// Inbox entries the pump has reported (and the core has applied).
    reported: Arc<AtomicU64>,
    /// The test's own connection: how many entries the inbox ever had.
    conn: redis::Connection,
    /// Entries the inbox had when the node registered (the `t=start` that
    /// opens an incarnation), which the pump reports to no one.
    base: u64,
}

use std::sync::{Arc, Mutex};

impl Broker {
    /// Empties the server, connects node `node` to it, makes `hub` a mount
    /// of it and starts the pump.
    pub(super) fn attach(redis: &Redis, node: String, hub: &Arc<Hub>) -> Broker {
        let url = redis.url();
        let mut conn = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("a connection to the test's redis-server");
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("FLUSHALL");
        // No heartbeat runs: the lease must outlast the case.
        let store = Arc::new(
            RedisStore::connect(&url, &node, Duration::from_secs(600)).expect("connect the store"),
        );
        let jobs: Arc<Mutex<VecDeque<Job>>> = Arc::default();
        let (queue, later) = (Arc::clone(&jobs), Arc::clone(&jobs));
        hub.set_remote(Remote {
            store: Arc::clone(&store) as Arc<dyn Store>,
            run: Box::new(move |job| queue.lock().unwrap().push_back(job)),
            // Acknowledgements the next read did not carry: run with the
            // rest when the case settles.
            soon: Box::new(move |_, job| later.lock().unwrap().push_back(job)),
        })
        .expect("the mount loads the broker's tree");
        let reported: Arc<AtomicU64> = Arc::default();
        let (pump_hub, pump_store, count) =
            (Arc::clone(hub), Arc::clone(&store), Arc::clone(&reported));
        std::thread::Builder::new()
            .name(format!("model-pump-{node}"))
            .spawn(move || {
                pump_store.pump(Arc::new(move |ev| {
                    let from_inbox = matches!(
                        ev,
                        Event::Deliver { .. }
                            | Event::TooBig { .. }
                            | Event::Sent { .. }
                            | Event::Busy { .. }
                            | Event::Receipt { .. }
                            | Event::TreeChanged
                            | Event::Removed { .. }
                    );
                    pump_hub.on_event(ev);
                    if from_inbox {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }))
            })
            .expect("a pump thread");
        let mut broker = Broker {
            url: crate::broker::redact(&url),
            store,
            node,
            jobs,
            reported,
            conn,
            base: 0,
        };
        broker.base = broker.added().expect("the inbox of a registered node");
        broker
    }

    /// Entries ever added to this node's inbox (`entries-added` of XINFO
    /// STREAM; none while the stream does not exist).
    fn added(&mut self) -> Result<u64, String> {
        let inbox = format!("ipcfs:inbox:{}", self.node);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&inbox)
            .query(&mut self.conn)
            .map_err(|e| format!("EXISTS {inbox}: {e}"))?;
        if !exists {
            return Ok(0);
        }
        let info: redis::Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&inbox)
            .query(&mut self.conn)
            .map_err(|e| format!("XINFO STREAM {inbox}: {e}"))?;
        let fields: Vec<(String, redis::Value)> = match info {
            redis::Value::Array(v) => v
                .chunks(2)
                .filter_map(|kv| match kv {
                    [redis::Value::BulkString(k), v] => {
                        Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                    }
                    _ => None,
                })
                .collect(),
            redis::Value::Map(m) => m
                .into_iter()
                .filter_map(|(k, v)| match k {
                    redis::Value::BulkString(k) => {
                        Some((String::from_utf8_lossy(&k).into_owned(), v))
                    }
                    _ => None,
                })
                .collect(),
            other => return Err(format!("XINFO STREAM {inbox}: {other:?}")),
        };
        match fields.iter().find(|(k, _)| k == "entries-added") {
            Some((_, redis::Value::Int(n))) => Ok(*n as u64),
            _ => Err(format!("XINFO STREAM {inbox}: no entries-added")),
        }
    }

    /// Runs the core's jobs and waits for the pump until nothing is on its
    /// way: no job left, and every inbox entry reported. The inbox count
    /// is read before the reported count, and the jobs checked after it:
    /// an entry reported has had its jobs queued.
    pub(super) fn drive(&mut self, hub: &Hub) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            loop {
                let job = self.jobs.lock().unwrap().pop_front();
                match job {
                    Some(job) => job(hub),
                    None => break,
                }
            }
            let added = self.added()?;
            let reported = self.reported.load(Ordering::SeqCst);
            if reported + self.base >= added && self.jobs.lock().unwrap().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the broker did not settle within {SETTLE:?}: {added} inbox entries, \
                     {reported} reported by the pump, {} jobs left",
                    self.jobs.lock().unwrap().len()
                ));
            }
            // Polling the pump's progress (it blocks on the broker, on its
            // own connection): a short pause between looks.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Broker {
    /// The pump ends within a second of this (its XREAD's timeout); the
    /// next case uses another node.
    fn drop(&mut self) {
        self.store.stop();
    }
}
