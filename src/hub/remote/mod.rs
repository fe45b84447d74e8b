//! Mailboxes kept by a [`Store`] elsewhere (ipcfs(7), ACROSS HOSTS): the
//! part of the core a mount with `--broker` adds.
//!
//! A read or write of such a mailbox is decided under the lock (which
//! descriptor, which framing, which receipt), parked like any blocked call
//! — so that an interrupt finds it and ends it at once — and recorded as a
//! call ([`calls`]). The store is asked on a broker thread ([`Job`]), and
//! its answer, or a later [`Event`](super::store::Event) from the pump
//! ([`events`]), is applied under the lock again. No store call is ever
//! made with the lock held or on a FUSE event-loop thread: opens, `mkdir`,
//! `rmdir`, `rename`, `chmod` and `chown` ([`admin`]) are handed to a
//! broker thread too ([`Hub::defer`]), and poll lists a descriptor as a
//! reader there ([`poll`]).

mod admin;
mod calls;
mod events;
mod poll;

use std::sync::Arc;
use std::time::Duration;

use log::debug;

use super::Hub;
use super::errno::{Errno, Refusal};
use super::receiver_rule::binds;
use super::store::Store;

pub(super) use admin::Bound;
pub(super) use calls::Call;
pub(super) use poll::Held;

/// Work for a broker thread: a store call and the application of its answer.
pub type Job = Box<dyn FnOnce(&Hub) + Send>;

/// The store of a mount with `--broker`, and how its calls are run.
pub struct Remote {
    pub store: Arc<dyn Store>,
    /// Hands a job to a broker thread.
    pub run: Box<dyn Fn(Job) + Send + Sync>,
    /// Runs a job this long from now.
    pub soon: Box<dyn Fn(Duration, Job) + Send + Sync>,
}

/// How long an acknowledgement waits for the reader's next read to carry
/// it: a reader that reads on makes one call to the broker per message,
/// not two. Receipts come this much later when nobody reads on.
pub const ACK_DELAY: Duration = Duration::from_millis(2);

/// How long an interrupted blocked write waits for the broker to say
/// whether its message went in: past it, the write ends with `EINTR` all
/// the same (an interrupt ends a call at once, never waiting on the
/// network, ipcfs(7) ACROSS HOSTS), and the withdrawal goes on.
pub const INTERRUPT_GRACE: Duration = Duration::from_millis(200);

fn stale() -> Refusal {
    Errno::ESTALE.because("this daemon lost its lease on the broker: reopen the file")
}

impl Hub {
    /// Makes this a mount whose mailboxes live in `remote.store` (once,
    /// before serving), and loads the tree.
    pub fn set_remote(&self, remote: Remote) -> Result<(), Refusal> {
        let metas = remote.store.tree()?;
        let _ = self.remote.set(remote);
        self.lock().tree.load(metas, &self.budget);
        Ok(())
    }

    pub(super) fn store(&self) -> Option<&Arc<dyn Store>> {
        self.remote.get().map(|r| &r.store)
    }

    /// Whether mailboxes live on a broker (the tree is shared: the kernel
    /// caches none of it).
    pub fn is_shared(&self) -> bool {
        self.remote.get().is_some()
    }

    /// Runs jobs left by an operation, on broker threads.
    pub(super) fn dispatch(&self, jobs: Vec<Job>) {
        if let Some(r) = self.remote.get() {
            for j in jobs {
                (r.run)(j);
            }
        }
    }

    /// Runs jobs left by an operation when they are due.
    pub(super) fn dispatch_soon(&self, jobs: Vec<(Duration, Job)>) {
        if let Some(r) = self.remote.get() {
            for (after, j) in jobs {
                (r.soon)(after, j);
            }
        }
    }

    /// Rebuilds the mirror of the tree from the store.
    pub fn reload(&self, store: &dyn Store) {
        let metas = match store.tree() {
            Ok(metas) => metas,
            Err(e) => return debug!("cannot reload the tree from the broker: {e}"),
        };
        let mut st = self.lock();
        // A rule written on any node binds those that have the mailbox open
        // (ipcfs(7), RECEIVER RULES): this node watches its own for their
        // exit, which frees their slots on the broker.
        let mut newly = Vec::new();
        for m in &metas {
            let before = st.tree.get(m.id).map(|b| b.chan.policy.rule);
            if before.is_none_or(|r| r == m.policy.rule) {
                continue;
            }
            for (p, role) in st.handles.openers(m.id) {
                if binds(m.policy.rule, role) && st.bound.entry(p).or_default().insert(m.id) {
                    newly.push(p);
                }
            }
        }
        st.tree.load(metas, &self.budget);
        drop(st);
        for p in newly {
            if let Err(e) = self.procs.watch_exit(p) {
                debug!("cannot watch process {}: {e}", p.pid);
            }
        }
    }
}

impl Hub {
    /// Runs `job` on a broker thread (a mount with `--broker`): for
    /// requests whose answer needs the broker, so that no FUSE event-loop
    /// thread waits on the network.
    pub fn defer(&self, job: Job) {
        match self.remote.get() {
            Some(r) => (r.run)(job),
            None => job(self),
        }
    }

    /// The daemon is stopping: this node's lease is given up, so that its
    /// holds go at once rather than after the lease.
    pub fn stop_store(&self) {
        if let Some(store) = self.store() {
            store.stop();
        }
    }
}
