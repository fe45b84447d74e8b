//! The pump: reads this node's inbox (`ipcfs:inbox:NODE`, a stream) with
//! `XREAD BLOCK` on a connection of its own and reports what arrives as
//! [`Event`]s. Entries:
//! - `t=deliver` (m, w, p, n, b1..bn): messages handed to a waiting
//!   reader; they stay until `ack` or `give_back` removes them, so that
//!   the reaper can give them back if this node dies;
//! - `t=flight` entries are not here: a direct receive records what it took
//!   in `ipcfs:flight:NODE`, which no pump reads;
//! - `t=sent` (m, w), `t=busy` (m, w), `t=toobig` (m, w, n), `t=receipt` (tag, pid, node), `t=tree`, `t=removed`
//!   (m): deleted once reported.
//!
//! When the broker goes away the pump reports [`Event::Unreachable`] once,
//! retries with a growing pause (50 ms to 1 s), checks the lease when it
//! comes back (registering anew if it was lost, which reports
//! [`Event::Fenced`], unless a call or the heartbeat found it lost first
//! and did so) and reports [`Event::Reachable`].

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use log::{debug, warn};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{Commands, Connection, Value};

use super::{RedisStore, TIMEOUT};
use crate::hub::message::ReceiptTag;
use crate::hub::store::{Event, Sink};

/// How long one XREAD waits: how soon [`RedisStore::stop`] is seen.
const BLOCK_MS: usize = 1000;

/// The payload of a queued message "SENDERNODE\nTAG\nBYTES".
pub(super) fn payload(raw: &[u8]) -> Vec<u8> {
    let mut it = raw.splitn(3, |&b| b == b'\n');
    let _node = it.next();
    let _tag = it.next();
    it.next().unwrap_or_default().to_vec()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn bytes(v: Option<&Value>) -> Vec<u8> {
    match v {
        Some(Value::BulkString(b)) => b.clone(),
        _ => Vec::new(),
    }
}

fn parse_tag(s: &str) -> Option<ReceiptTag> {
    let (h, q) = s.split_once(':')?;
    Some(ReceiptTag {
        handle: h.parse().ok()?,
        seq: q.parse().ok()?,
    })
}

impl RedisStore {
    pub(super) fn run_pump(&self, on: Sink) {
        *self.sink.lock().unwrap() = Some(on.clone());
        let on = &mut |ev| on(ev);
        let inbox = format!("ipcfs:inbox:{}", self.node);
        let mut last = "0-0".to_string();
        // The id of the latest `t=start` entry read: how far the pump is
        // into the current incarnation's inbox.
        let mut started = String::new();
        let mut conn: Option<Connection> = None;
        let mut down = false;
        let mut pause = Duration::from_millis(50);
        while !self.stopped.load(Ordering::SeqCst) {
            if self.fenced.swap(false, Ordering::SeqCst) {
                last = self.read_on_from(last, &started);
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.open_conn_with(TIMEOUT + Duration::from_millis(BLOCK_MS as u64))
                {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        debug!("pump: cannot reach the broker at {}: {e}", self.url);
                        self.went_down(&mut down, on);
                        self.nap(pause);
                        pause = (pause * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            if down {
                match self.lease_held(c) {
                    Ok(true) => {}
                    Ok(false) => {
                        if let Err(e) = self.reregister(c) {
                            warn!("pump: {e}");
                        }
                        if self.fenced.swap(false, Ordering::SeqCst) {
                            last = self.read_on_from(last, &started);
                        }
                    }
                    Err(e) => {
                        debug!("pump: lease check failed: {e}");
                        conn = None;
                        self.nap(pause);
                        continue;
                    }
                }
                down = false;
                pause = Duration::from_millis(50);
                self.drain_pool();
                self.reachable.store(true, Ordering::SeqCst);
                on(Event::Reachable);
            }
            let opts = StreamReadOptions::default().block(BLOCK_MS).count(256);
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                c.xread_options(&[&inbox], &[&last], &opts);
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    debug!("pump: XREAD failed: {e}");
                    conn = None;
                    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                        self.went_down(&mut down, on);
                    } else {
                        warn!(
                            "pump: unexpected answer from the broker at {}: {e}",
                            self.url
                        );
                        self.nap(pause);
                    }
                    continue;
                }
            };
            let mut done = Vec::new();
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in key.ids {
                    last = entry.id.clone();
                    let f = &entry.map;
                    let mailbox = text(f.get("m")).parse().unwrap_or(0);
                    let event = match text(f.get("t")).as_str() {
                        "flight" => continue,
                        "deliver" => {
                            let n: usize = text(f.get("n")).parse().unwrap_or(0);
                            Event::Deliver {
                                mailbox,
                                wid: text(f.get("w")).parse().unwrap_or(0),
                                msgs: (1..=n)
                                    .map(|i| payload(&bytes(f.get(&format!("b{i}")))))
                                    .collect(),
                                flight: entry.id.clone(),
                            }
                        }
                        "sent" => Event::Sent {
                            mailbox,
                            wid: text(f.get("w")).parse().unwrap_or(0),
                        },
                        "busy" => Event::Busy {
                            mailbox,
                            wid: text(f.get("w")).parse().unwrap_or(0),
                        },
                        "toobig" => Event::TooBig {
                            mailbox,
                            wid: text(f.get("w")).parse().unwrap_or(0),
                            len: text(f.get("n")).parse().unwrap_or(0),
                        },
                        "receipt" => match parse_tag(&text(f.get("tag"))) {
                            Some(tag) => Event::Receipt {
                                tag,
                                pid: text(f.get("pid")).parse().unwrap_or(0),
                                node: text(f.get("node")),
                            },
                            None => continue,
                        },
                        "start" => {
                            started = entry.id.clone();
                            done.push(entry.id.clone());
                            continue;
                        }
                        "tree" => Event::TreeChanged,
                        "removed" => Event::Removed { mailbox },
                        other => {
                            warn!("pump: unknown inbox entry {other:?}");
                            done.push(entry.id.clone());
                            continue;
                        }
                    };
                    if !matches!(event, Event::Deliver { .. }) {
                        done.push(entry.id.clone());
                    }
                    on(event);
                }
            }
            if !done.is_empty() {
                let r: redis::RedisResult<i64> = c.xdel(&inbox, &done);
                if let Err(e) = r {
                    debug!("pump: XDEL failed: {e}");
                }
            }
        }
    }

    /// Where the pump reads on after a new incarnation was registered:
    /// after the entry that starts it, unless it has read that entry (and
    /// maybe some after it) already, and then where it is. Entries before
    /// the mark were for the old incarnation.
    fn read_on_from(&self, last: String, started: &str) -> String {
        let mark = self.fence_mark.lock().unwrap().clone();
        if mark.is_empty() {
            "0-0".to_string()
        } else if mark == started {
            last
        } else {
            mark
        }
    }

    /// The broker cannot be reached: said once per outage.
    fn went_down(&self, down: &mut bool, on: &mut dyn FnMut(Event)) {
        if !*down {
            *down = true;
            self.reachable.store(false, Ordering::SeqCst);
            self.drain_pool();
            warn!("the broker at {} cannot be reached", self.url);
            on(Event::Unreachable);
        }
    }

    /// Sleeps `d`, in steps short enough to see [`RedisStore::stop`].
    fn nap(&self, d: Duration) {
        let step = Duration::from_millis(20);
        let mut left = d;
        while !left.is_zero() && !self.stopped.load(Ordering::SeqCst) {
            let s = left.min(step);
            thread::sleep(s);
            left -= s;
        }
    }
}
