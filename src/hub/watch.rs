//! What the core learns from outside, after the fact: interrupts (the
//! kernel's `FUSE_INTERRUPT`), process exits (pidfds), and the daemon
//! stopping. Questions to the system are asked with the lock released.

use std::time::Duration;

use log::debug;

use super::channel::Removed;
use super::errno::Errno;
use super::handles::HandleKind;
use super::process::Process;
use super::reply::{Effects, Outcome};
use super::waiters::{Place, WaiterId};
use super::{Hub, State, chan_mut};

impl Hub {
    /// The kernel interrupted request `req`: its caller got a signal. A
    /// parked request is answered `EINTR` at once, unless the signal is one
    /// that does not end calls (see [`crate::os::signals`]); then it waits on,
    /// and the watcher looks at its thread from now on. An interrupt for a
    /// request that has not parked is remembered a moment: the request may
    /// still be on its way through another event-loop thread.
    pub fn interrupt(&self, req: WaiterId) {
        let tid = {
            let mut st = self.lock();
            match st.waiters.get(req) {
                Some(p) => p.tid,
                None => {
                    debug!("interrupt for request {req}: not parked (answered, or on its way)");
                    return st.waiters.remember_early(req);
                }
            }
        };
        // Which signal? One read of /proc/<tid>/status, off the lock.
        let ends = self.procs.signal_ends_call(tid);
        let mut st = self.lock();
        if ends {
            let mut fx = Effects::default();
            self.interrupt_locked(&mut st, &mut fx, req);
            self.finish(st, fx);
        } else if st.waiters.get(req).is_some() {
            debug!("request {req} (thread {tid}) waits on: its signal does not end calls");
            st.waiters.keep(req, tid);
        }
    }

    /// Answers `EINTR` to the requests kept waiting after an interrupt
    /// whose thread has since got a signal that ends the call (the kernel
    /// sends no second interrupt). Reads `/proc` off the lock, for those
    /// requests only.
    pub fn check_kept(&self) {
        let kept = self.lock().waiters.kept();
        let hit: Vec<WaiterId> = kept
            .into_iter()
            .filter(|(_, tid)| self.procs.interrupted(*tid))
            .map(|(id, _)| id)
            .collect();
        if !hit.is_empty() {
            let mut st = self.lock();
            let mut fx = Effects::default();
            for id in hit {
                self.interrupt_locked(&mut st, &mut fx, id);
            }
            self.finish(st, fx);
        }
    }

    fn interrupt_locked(&self, st: &mut State, fx: &mut Effects, id: WaiterId) {
        let Some(parked) = st.waiters.get(id) else {
            return;
        };
        let (tid, place) = (parked.tid, parked.place);
        let State {
            tree,
            links,
            handles,
            waiters,
            ..
        } = st;
        let reply = match place {
            // Leaving the channel unparks it (and lets reads behind it go on).
            Place::Chan(key, _) => {
                match chan_mut(tree, links, key).and_then(|ch| ch.remove_waiter(id, fx)) {
                    Some(Removed::Recv(w)) => Some(w.reply),
                    Some(Removed::Send(w)) => Some(w.reply),
                    None => None,
                }
            }
            Place::Behind(h) => {
                waiters.unpark(id);
                match handles.recv_mut(h) {
                    Some(HandleKind::Recv { behind, .. }) => behind
                        .iter()
                        .position(|r| r.id == id)
                        .and_then(|i| behind.remove(i))
                        .map(|r| r.reply),
                    _ => None,
                }
            }
            Place::Remote(_) => return self.interrupt_remote(st, fx, id),
            Place::Receipts(h) => {
                waiters.unpark(id);
                handles
                    .receipts_mut(h)
                    .and_then(|b| b.remove_waiter(id))
                    .map(|w| w.reply)
            }
        };
        if let Some(r) = reply {
            debug!("interrupted waiter {id} (tid {tid})");
            fx.reply(
                r,
                Outcome::Error(Errno::EINTR.because("interrupted by a signal")),
            );
        }
    }

    /// Process `p` has exited (its pidfd said so): messages queued for it
    /// are dropped and counted, its blocked senders get `ESRCH`, readers of
    /// what it sent get `ESRCH` once nothing is left, link state that
    /// nothing uses any more is reclaimed, and its `pair`/`exclusive` slots
    /// are freed. Its watch's charge is given back.
    pub fn exited(&self, p: Process) {
        let mut st = self.lock();
        st.watched.remove(&p);
        let mut fx = Effects::default();
        st.links.exited(p, &mut fx);
        self.exited_remote(&mut st, &mut fx, p);
        for m in st.tree.mailboxes_mut() {
            m.chan.prune_members(&|q| q != p);
        }
        self.finish(st, fx);
    }

    /// The daemon is stopping: every parked request gets `ENOTCONN` and no
    /// new one parks.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shut_down = true;
        let mut fx = Effects::default();
        let ids: Vec<WaiterId> = st.waiters.ids();
        for id in ids {
            self.interrupt_locked(&mut st, &mut fx, id);
        }
        for (_, out) in fx.replies.iter_mut() {
            *out = Outcome::Error(Errno::ENOTCONN.because("the daemon is stopping"));
        }
        self.finish(st, fx);
    }

    /// One round of the watcher (the daemon runs it in a loop): reports
    /// process exits as their pidfds signal them, waiting up to `timeout`
    /// for one, then looks at the calls kept waiting after an interrupt
    /// (usually none).
    pub fn watch_once(&self, timeout: Duration) {
        for p in self.procs.exits(timeout) {
            self.exited(p);
        }
        self.check_kept();
    }
}
