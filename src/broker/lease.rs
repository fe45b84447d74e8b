//! Leases and fencing. Each incarnation of a node holds a random token in
//! `ipcfs:node:NAME`, expiring after the lease unless renewed (every
//! lease/3 by the core's heartbeat). A node whose key is gone is dead to
//! the others: any heartbeat reaps it (its holds, waiters and blocked
//! senders go; messages in flight to it go back to their queues). Every
//! script refuses a token that is not current with `ESTALE`.
//!
//! The thread that finds the lease lost first (a call, the heartbeat or
//! the pump) registers a new incarnation and tells the core
//! ([`Event::Fenced`]) itself, before the new token is used: the core then
//! takes every descriptor existing now for stale, and none opened with the
//! new token is among them.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::warn;
use redis::{Connection, RedisResult, Value};

use super::{RedisStore, refusal};
use crate::hub::errno::{Errno, Result};
use crate::hub::store::Event;

thread_local! {
    /// This thread is telling the core of a new incarnation.
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is telling the core of a new incarnation: a store
/// call the core made meanwhile must not wait for that registration to end
/// (it would wait for itself); it answers `ESTALE`, the token being the
/// old one until the core has been told.
pub(super) fn reporting() -> bool {
    REPORTING.with(Cell::get)
}

/// A token no other incarnation has: random (the std hasher's keys are),
/// mixed with the time and the process.
fn new_token() -> String {
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}

fn lease_ms(lease: Duration) -> u64 {
    lease.as_millis().max(1) as u64
}

impl RedisStore {
    /// Registers a new incarnation of this node with a new token: `Ok`
    /// with the token, which the caller makes this store's, and the id of
    /// the inbox entry that starts the incarnation; or `Err` with the time
    /// left when a live incarnation holds the name.
    pub(super) fn register(
        &self,
        conn: &mut Connection,
    ) -> RedisResult<std::result::Result<(String, String), Duration>> {
        let token = new_token();
        let v: Vec<Value> = self
            .scripts
            .register
            .arg(&self.node)
            .arg(&token)
            .arg(lease_ms(self.lease))
            .invoke(conn)?;
        match v.as_slice() {
            [Value::BulkString(s), Value::Int(pttl)] if s == b"held" => {
                Ok(Err(Duration::from_millis((*pttl).max(0) as u64)))
            }
            [Value::BulkString(s), Value::BulkString(mark)] if s == b"ok" => {
                Ok(Ok((token, String::from_utf8_lossy(mark).into_owned())))
            }
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected answer to register",
            ))),
        }
    }

    /// The lease was lost: registers a new incarnation, tells the core
    /// ([`Event::Fenced`], through the pump's sink, on this thread), and
    /// only then uses the new token. Threads that find the lease lost
    /// meanwhile wait here and find the new token current.
    pub(super) fn reregister(&self, conn: &mut Connection) -> Result<()> {
        let _one = self.registering.lock().unwrap();
        if self.lease_held(conn).map_err(|e| refusal(&e))? {
            return Ok(());
        }
        match self.register(conn) {
            Ok(Ok((token, mark))) => {
                warn!(
                    "node {:?} lost its lease on the broker at {}: registered anew",
                    self.node, self.url
                );
                // The pump goes on after the new incarnation's first entry
                // (what came before was for the old one, whose calls the
                // core fences) — unless it has read past that entry
                // already: reading again what it has applied would apply
                // a delivery twice.
                *self.fence_mark.lock().unwrap() = mark;
                self.fenced.store(true, Ordering::SeqCst);
                // Before the token: an open made with the new one must not
                // be counted among the descriptors the core fences. (No
                // sink yet: the pump has not started, so the core has no
                // descriptor.)
                let sink = self.sink.lock().unwrap().clone();
                if let Some(sink) = sink {
                    REPORTING.with(|r| r.set(true));
                    sink(Event::Fenced);
                    REPORTING.with(|r| r.set(false));
                }
                *self.token.lock().unwrap() = token;
                Ok(())
            }
            Ok(Err(_)) => {
                warn!(
                    "node {:?} lost its lease on the broker at {}, and another daemon now serves that name",
                    self.node, self.url
                );
                Err(Errno::ESTALE.because("another daemon serves this node name now"))
            }
            Err(e) => Err(refusal(&e)),
        }
    }

    /// Whether this incarnation's token is still current.
    pub(super) fn lease_held(&self, conn: &mut Connection) -> RedisResult<bool> {
        let held: i64 = self
            .scripts
            .check
            .arg(&self.node)
            .arg(self.token())
            .invoke(conn)?;
        Ok(held == 1)
    }

    /// See [`crate::hub::store::Store::heartbeat`].
    pub(super) fn beat(&self) -> Result<()> {
        let ms = lease_ms(self.lease);
        match self.run(&self.scripts.heartbeat, |inv| {
            inv.arg(ms);
        }) {
            Err(r) if r.errno == Errno::ESTALE => {
                let mut conn = self.take()?;
                self.reregister(&mut conn)?;
                self.give(conn);
                Err(Errno::ESTALE.because("the lease was lost; a new incarnation is registered"))
            }
            other => other.map(drop),
        }
    }

    /// See [`crate::hub::store::Store::stop`]: the lease ends now.
    pub(super) fn leave(&self) {
        if let Err(e) = self.run(&self.scripts.unregister, |_| {}) {
            warn!(
                "node {:?} could not leave the broker at {}: {e}",
                self.node, self.url
            );
        }
    }
}
