//! Direct links (`proc/<pid>/`): one [`Channel`] per direction between two
//! processes. A channel exists only while it carries something — an open
//! descriptor, a queued message, a blocked call — and is reclaimed as soon
//! as it is idle; each is charged to the user whose open made it. An index
//! by process keeps every question about one process (its peers, its exit)
//! proportional to its own links, never to all of them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use log::info;

use super::accounting::{Charge, LINK_COST, MemoryBudget};
use super::channel::Channel;
use super::errno::{Errno, Result};
use super::policy::Policy;
use super::process::Process;
use super::reply::Effects;

struct Link {
    chan: Channel,
    /// What the channel holds of the memory bound.
    _charge: Charge,
    /// The number the receiver uses for the sender (they differ from
    /// pids for a receiver in a child pid namespace), if it sees it: what
    /// names the sender once it has exited.
    alias: Option<u32>,
}

#[derive(Default)]
pub struct Links {
    /// `(from, to)`: what `from` sends to `to`.
    map: HashMap<(Process, Process), Link>,
    /// For each process with a channel, the processes at the other end
    /// (with how many directions: 1 or 2).
    index: HashMap<Process, HashMap<Process, u8>>,
    /// Messages dropped because their receiver exited, mount-wide.
    pub dropped_on_exit: u64,
}

impl Links {
    pub fn get(&self, from: Process, to: Process) -> Option<&Channel> {
        self.map.get(&(from, to)).map(|l| &l.chan)
    }

    pub fn get_mut(&mut self, from: Process, to: Process) -> Option<&mut Channel> {
        self.map.get_mut(&(from, to)).map(|l| &mut l.chan)
    }

    /// The channel from `from` to `to`, created with `policy` if need be
    /// and charged to `uid` (`ENOBUFS` past its share); `alias`: what `to`
    /// calls `from`.
    pub fn open(
        &mut self,
        (from, to): (Process, Process),
        alias: Option<u32>,
        policy: Policy,
        budget: &Arc<MemoryBudget>,
        uid: u32,
    ) -> Result<&mut Channel> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.map.entry((from, to)) {
            let charge = budget.charge(uid, LINK_COST)?;
            slot.insert(Link {
                chan: Channel::new(policy),
                _charge: charge,
                alias,
            });
            *self.index.entry(from).or_default().entry(to).or_default() += 1;
            *self.index.entry(to).or_default().entry(from).or_default() += 1;
        }
        Ok(&mut self.map.get_mut(&(from, to)).expect("just made").chan)
    }

    fn remove(&mut self, from: Process, to: Process) {
        if self.map.remove(&(from, to)).is_none() {
            return;
        }
        for (a, b) in [(from, to), (to, from)] {
            if let Some(others) = self.index.get_mut(&a) {
                if let Some(n) = others.get_mut(&b) {
                    *n -= 1;
                    if *n == 0 {
                        others.remove(&b);
                    }
                }
                if others.is_empty() {
                    self.index.remove(&a);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many processes have link state.
    pub fn processes(&self) -> usize {
        self.index.len()
    }

    /// The peers `me` has link state with.
    pub fn peers(&self, me: Process) -> Vec<u32> {
        let set: BTreeSet<u32> = self
            .index
            .get(&me)
            .map(|others| others.keys().map(|p| p.pid).collect())
            .unwrap_or_default();
        set.into_iter().collect()
    }

    /// The peers `me` has link state with, each with the number `me` calls
    /// it by when it sends to `me` (see [`Links::sender_to`]).
    pub fn peers_named(&self, me: Process) -> Vec<(u32, Option<u32>)> {
        self.index.get(&me).map_or_else(Vec::new, |others| {
            let alias = |p: &Process| self.map.get(&(*p, me)).and_then(|l| l.alias);
            others.keys().map(|p| (p.pid, alias(p))).collect()
        })
    }

    /// The process `me` calls `pid` that has a channel to `me` (it may have
    /// exited since, leaving messages that keep `proc/<pid>` visible to
    /// `me`). Matched by the number `me` uses, kept with the channel: an
    /// exited process has no pid to translate any more.
    pub fn sender_to(&self, me: Process, pid: u32) -> Option<Process> {
        self.index.get(&me)?.keys().copied().find(|from| {
            self.map
                .get(&(*from, me))
                .is_some_and(|l| l.alias == Some(pid))
        })
    }

    /// Whether messages sent to `me` by pid `pid`, a process that has
    /// exited, still wait to be received.
    pub fn pending_from(&self, me: Process, pid: u32) -> bool {
        self.sender_to(me, pid)
            .and_then(|from| self.get(from, me))
            .is_some_and(|ch| ch.messages() > 0)
    }

    /// `p` has exited: messages queued for it are dropped and counted, its
    /// blocked senders get `ESRCH`, readers of what it sent get `ESRCH`
    /// once nothing is left, and idle channels are reclaimed.
    pub fn exited(&mut self, p: Process, fx: &mut Effects) {
        let others: Vec<Process> = self
            .index
            .get(&p)
            .map(|o| o.keys().copied().collect())
            .unwrap_or_default();
        for q in others {
            if let Some(ch) = self.get_mut(q, p) {
                ch.ends.receiver_gone = true;
                let n = ch.fail_senders_and_drop(Errno::ESRCH, fx);
                if n > 0 {
                    info!(
                        "process {} exited: dropped {n} message(s) from {}",
                        p.pid, q.pid
                    );
                }
                self.dropped_on_exit += n as u64;
            }
            if let Some(ch) = self.get_mut(p, q) {
                ch.ends.sender_gone = true;
                if ch.messages() == 0 {
                    ch.fail_readers(Errno::ESRCH, fx);
                }
            }
            self.reclaim(q, p);
            self.reclaim(p, q);
        }
    }

    /// Drops the channel `from` → `to` if nothing uses it any more.
    pub fn reclaim(&mut self, from: Process, to: Process) {
        if self.get(from, to).is_some_and(Channel::is_idle) {
            self.remove(from, to);
        }
    }
}
