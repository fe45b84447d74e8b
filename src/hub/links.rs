//! Direct links (`proc/<pid>/`): one [`Channel`] per direction between two
//! processes, created when a process opens a link file, and reclaimed once
//! one end has exited and nothing uses the channel any more.

use std::collections::{BTreeSet, HashMap};

use log::info;

use std::sync::Arc;

use super::accounting::{Charge, LINK_COST, MemoryBudget};
use super::channel::Channel;
use super::errno::{Errno, Result};
use super::policy::Policy;
use super::process::Process;
use super::waiter::Effects;

#[derive(Default)]
pub struct Links {
    /// `(from, to)`: what `from` sends to `to`.
    map: HashMap<(Process, Process), Channel>,
    /// What each channel holds of the memory bound, charged to the user
    /// whose open made it.
    charges: HashMap<(Process, Process), Charge>,
    /// Messages dropped because their receiver exited, mount-wide.
    pub dropped_on_exit: u64,
}

impl Links {
    pub fn get(&self, from: Process, to: Process) -> Option<&Channel> {
        self.map.get(&(from, to))
    }

    pub fn get_mut(&mut self, from: Process, to: Process) -> Option<&mut Channel> {
        self.map.get_mut(&(from, to))
    }

    /// The channel from `from` to `to`, created with `policy` if need be
    /// and charged to `uid` (`ENOBUFS` past its share).
    pub fn open(
        &mut self,
        from: Process,
        to: Process,
        policy: Policy,
        budget: &Arc<MemoryBudget>,
        uid: u32,
    ) -> Result<&mut Channel> {
        if !self.map.contains_key(&(from, to)) {
            let charge = budget.charge(uid, LINK_COST)?;
            self.charges.insert((from, to), charge);
        }
        Ok(self
            .map
            .entry((from, to))
            .or_insert_with(|| Channel::new(policy)))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many processes have link state.
    pub fn processes(&self) -> usize {
        let all: BTreeSet<Process> = self.map.keys().flat_map(|(a, b)| [*a, *b]).collect();
        all.len()
    }

    /// The peers `me` has link state with.
    pub fn peers(&self, me: Process) -> Vec<u32> {
        let set: BTreeSet<u32> = self
            .map
            .keys()
            .filter_map(|(from, to)| {
                if *from == me {
                    Some(to.pid)
                } else if *to == me {
                    Some(from.pid)
                } else {
                    None
                }
            })
            .collect();
        set.into_iter().collect()
    }

    /// The process with pid `pid` that sent `me` messages (it may have
    /// exited since: they keep `proc/<pid>` visible to `me`).
    pub fn sender_to(&self, me: Process, pid: u32) -> Option<Process> {
        self.map
            .keys()
            .find(|(from, to)| from.pid == pid && *to == me)
            .map(|(from, _)| *from)
    }

    /// Whether messages sent to `me` by pid `pid`, a process that has
    /// exited, still wait to be received.
    pub fn pending_from(&self, me: Process, pid: u32) -> bool {
        self.map
            .iter()
            .any(|((from, to), ch)| from.pid == pid && *to == me && ch.messages() > 0)
    }

    /// `p` has exited: messages queued for it are dropped and counted, its
    /// blocked senders get `ESRCH`, readers of what it sent get `ESRCH`
    /// once nothing is left, and idle channels are reclaimed.
    pub fn exited(&mut self, p: Process, fx: &mut Effects) {
        let mut dropped_total = 0;
        self.map.retain(|(from, to), ch| {
            if *to == p {
                ch.ends.receiver_gone = true;
                let n = ch.fail_senders_and_drop(Errno::ESRCH, fx);
                if n > 0 {
                    info!(
                        "process {} exited: dropped {n} message(s) from {}",
                        to.pid, from.pid
                    );
                }
                dropped_total += n as u64;
            }
            if *from == p {
                ch.ends.sender_gone = true;
                if ch.messages() == 0 {
                    ch.fail_readers(Errno::ESRCH, fx);
                }
            }
            !((ch.ends.sender_gone || ch.ends.receiver_gone) && ch.is_idle())
        });
        let map = &self.map;
        self.charges.retain(|key, _| map.contains_key(key));
        self.dropped_on_exit += dropped_total;
    }

    /// Drops the channel `from` → `to` if one of its ends has exited and
    /// nothing uses it any more.
    pub fn reclaim(&mut self, from: Process, to: Process) {
        if self
            .map
            .get(&(from, to))
            .is_some_and(|ch| (ch.ends.sender_gone || ch.ends.receiver_gone) && ch.is_idle())
        {
            self.map.remove(&(from, to));
            self.charges.remove(&(from, to));
        }
    }
}
