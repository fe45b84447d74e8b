//! Who receives a message: the one place where a mailbox's receiver rule is
//! applied.
//!
//! - [`Membership::admit`] decides whether a process may use the mailbox at
//!   all (open, read, write): `pair` and `exclusive` refuse with `EBUSY`.
//! - [`delivery`] decides where a message that is sent now goes: to one
//!   receiver (`arbitrary`, `pair`, `exclusive`) or a copy to each process
//!   that has `recv` open (`broadcast`).
//! - [`pick_waiter`] decides which blocked reader gets it: the one that has
//!   waited longest.
//!
//! Adding a rule means adding a [`Rule`] variant and its arms here.

use std::collections::VecDeque;

use crate::hub::errno::{Errno, Result};
use crate::hub::policy::Rule;
use crate::hub::process::Process;
use crate::hub::waiters::RecvWait;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Send,
    Recv,
}

/// The processes a rule has bound to a mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// `pair`: the (at most two) processes associated with the mailbox.
    pub pair: Vec<Process>,
    /// `exclusive`: the process that may receive.
    pub holder: Option<Process>,
}

/// Why `rule` refuses a process, for the log.
fn refusal(rule: Rule) -> &'static str {
    match rule {
        Rule::Pair => "pair: two other live processes hold the mailbox",
        Rule::Exclusive => "exclusive: another process has recv open",
        Rule::Arbitrary | Rule::Broadcast => "refused by the receiver rule",
    }
}

/// Whether `rule` binds a process that uses the mailbox in `role` (a
/// member of a pair, a receiver that holds or may come to hold an
/// exclusive mailbox): its exit must be watched, to free its slot.
pub fn binds(rule: Rule, role: Role) -> bool {
    match rule {
        Rule::Pair => true,
        Rule::Exclusive => role == Role::Recv,
        Rule::Arbitrary | Rule::Broadcast => false,
    }
}

impl Membership {
    /// May `p` act in `role` under `rule`? Claims a free slot for it; the
    /// slot of a bound process that has exited is free.
    pub fn admit(
        &mut self,
        rule: Rule,
        p: Process,
        role: Role,
        alive: &dyn Fn(Process) -> bool,
    ) -> Result<()> {
        if !self.allows(rule, p, role) {
            self.prune(alive, &[]);
            if !self.allows(rule, p, role) {
                return Err(Errno::EBUSY.because(refusal(rule)));
            }
        }
        match rule {
            Rule::Pair if !self.pair.contains(&p) => self.pair.push(p),
            Rule::Exclusive if role == Role::Recv => self.holder = Some(p),
            _ => {}
        }
        Ok(())
    }

    /// Would `admit` let `p` act in `role`, with the processes bound now?
    pub fn allows(&self, rule: Rule, p: Process, role: Role) -> bool {
        match rule {
            Rule::Arbitrary | Rule::Broadcast => true,
            Rule::Pair => self.pair.len() < 2 || self.pair.contains(&p),
            Rule::Exclusive => role == Role::Send || self.holder.is_none_or(|h| h == p),
        }
    }

    /// `p` has closed its last `recv` descriptor; `remaining` are the
    /// processes that still have `recv` open, earliest first. An exclusive
    /// hold passes to the earliest of them (one that kept a descriptor from
    /// before the rule changed), else is free.
    pub fn recv_closed(&mut self, p: Process, remaining: &[Process]) {
        if self.holder == Some(p) {
            self.holder = remaining.first().copied();
        }
    }

    /// The rule changed to `rule`: bind the processes that have the mailbox
    /// open now, `openers` in the order they opened it.
    pub fn reseed(&mut self, rule: Rule, openers: impl IntoIterator<Item = (Process, Role)>) {
        *self = Membership::default();
        for (p, role) in openers {
            match rule {
                Rule::Pair if self.pair.len() < 2 && !self.pair.contains(&p) => self.pair.push(p),
                Rule::Exclusive if role == Role::Recv && self.holder.is_none() => {
                    self.holder = Some(p)
                }
                _ => {}
            }
        }
    }

    /// Frees the slots of processes that have exited; an exclusive hold
    /// passes to the earliest live process of `remaining` (those with
    /// `recv` open, earliest first).
    pub fn prune(&mut self, alive: &dyn Fn(Process) -> bool, remaining: &[Process]) {
        self.pair.retain(|m| alive(*m));
        if self.holder.is_some_and(|h| !alive(h)) {
            self.holder = remaining.iter().copied().find(|p| alive(*p));
        }
    }
}

/// Whether a reader may take its message straight from a blocked sender
/// (a rendezvous): every rule but `broadcast`, whose message must go to all
/// receivers at once.
pub fn takes_from_blocked_sender(rule: Rule) -> bool {
    rule != Rule::Broadcast
}

/// Where a message sent now goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// To exactly one receiver: a blocked one, else the shared queue.
    One,
    /// A copy to each of these processes (those with `recv` open).
    Each(Vec<Process>),
}

pub fn delivery(rule: Rule, receivers: impl Iterator<Item = Process>) -> Delivery {
    match rule {
        Rule::Broadcast => {
            let all: Vec<Process> = receivers.collect();
            if all.is_empty() {
                // Nobody listens yet: the message waits for the first reader.
                Delivery::One
            } else {
                Delivery::Each(all)
            }
        }
        Rule::Arbitrary | Rule::Pair | Rule::Exclusive => Delivery::One,
    }
}

/// The blocked reader that gets the next message (of those that are `for_`
/// one process, if given): the one that has waited longest.
pub fn pick_waiter(waiters: &VecDeque<RecvWait>, for_: Option<Process>) -> Option<usize> {
    waiters
        .iter()
        .position(|w| for_.is_none_or(|p| w.reader == p))
}

/// Under [`Delivery::Each`]: splits the blocked readers into the one that
/// has waited longest of each receiving process, which take their copies
/// now, and the rest, in waiting order. One pass, whatever their number.
pub fn first_waiter_of_each(
    waiters: VecDeque<RecvWait>,
) -> (VecDeque<RecvWait>, VecDeque<RecvWait>) {
    let mut seen = std::collections::HashSet::with_capacity(waiters.len());
    waiters.into_iter().partition(|w| seen.insert(w.reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32) -> Process {
        Process { pid, start: 1 }
    }

    #[test]
    fn pair_binds_first_two_and_frees_on_exit() {
        let mut m = Membership::default();
        let all_alive = |_: Process| true;
        assert!(m.admit(Rule::Pair, p(1), Role::Send, &all_alive).is_ok());
        assert!(m.admit(Rule::Pair, p(2), Role::Recv, &all_alive).is_ok());
        assert!(m.admit(Rule::Pair, p(1), Role::Recv, &all_alive).is_ok());
        assert_eq!(
            m.admit(Rule::Pair, p(3), Role::Recv, &all_alive),
            Err(Errno::EBUSY.into())
        );
        assert!(!m.allows(Rule::Pair, p(3), Role::Send));
        let two_dead = |q: Process| q != p(2);
        assert!(m.admit(Rule::Pair, p(3), Role::Send, &two_dead).is_ok());
        assert_eq!(m.pair, vec![p(1), p(3)]);
    }

    #[test]
    fn pid_reuse_is_another_process() {
        let mut m = Membership::default();
        let old = p(7);
        let new = Process { pid: 7, start: 2 };
        let only_new_alive = |q: Process| q == new || q == p(8);
        m.admit(Rule::Pair, old, Role::Send, &|_| true).unwrap();
        m.admit(Rule::Pair, p(8), Role::Send, &|_| true).unwrap();
        assert!(
            m.admit(Rule::Pair, new, Role::Recv, &only_new_alive)
                .is_ok()
        );
        assert_eq!(m.pair, vec![p(8), new]);
    }

    #[test]
    fn exclusive_holds_receiving_only() {
        let mut m = Membership::default();
        let alive = |_: Process| true;
        assert!(m.admit(Rule::Exclusive, p(1), Role::Recv, &alive).is_ok());
        assert!(m.admit(Rule::Exclusive, p(1), Role::Recv, &alive).is_ok());
        assert_eq!(
            m.admit(Rule::Exclusive, p(2), Role::Recv, &alive),
            Err(Errno::EBUSY.into())
        );
        assert!(m.admit(Rule::Exclusive, p(2), Role::Send, &alive).is_ok());
        m.recv_closed(p(1), &[]);
        assert!(m.admit(Rule::Exclusive, p(2), Role::Recv, &alive).is_ok());
        // A holder that died without closing frees the mailbox too.
        assert!(
            m.admit(Rule::Exclusive, p(3), Role::Recv, &|q| q != p(2))
                .is_ok()
        );
    }

    #[test]
    fn exclusive_hold_passes_to_a_process_still_receiving() {
        let mut m = Membership::default();
        m.reseed(Rule::Exclusive, [(p(1), Role::Recv), (p(2), Role::Recv)]);
        assert_eq!(m.holder, Some(p(1)));
        m.recv_closed(p(1), &[p(2)]);
        assert_eq!(m.holder, Some(p(2)));
        assert_eq!(
            m.admit(Rule::Exclusive, p(3), Role::Recv, &|_| true),
            Err(Errno::EBUSY.into())
        );
        m.prune(&|q| q != p(2), &[p(2), p(4)]);
        assert_eq!(m.holder, Some(p(4)));
    }

    #[test]
    fn other_rules_admit_everyone() {
        let mut m = Membership::default();
        for rule in [Rule::Arbitrary, Rule::Broadcast] {
            for pid in 1..10 {
                assert!(m.admit(rule, p(pid), Role::Recv, &|_| true).is_ok());
            }
        }
    }

    #[test]
    fn reseed_from_current_openers() {
        let mut m = Membership::default();
        let openers = [
            (p(5), Role::Send),
            (p(6), Role::Recv),
            (p(5), Role::Recv),
            (p(7), Role::Recv),
        ];
        m.reseed(Rule::Pair, openers);
        assert_eq!(m.pair, vec![p(5), p(6)]);
        m.reseed(Rule::Exclusive, openers);
        assert_eq!((m.pair.len(), m.holder), (0, Some(p(6))));
    }

    #[test]
    fn broadcast_copies_to_each_receiver_or_waits() {
        assert_eq!(delivery(Rule::Broadcast, [].into_iter()), Delivery::One);
        assert_eq!(
            delivery(Rule::Broadcast, [p(1), p(2)].into_iter()),
            Delivery::Each(vec![p(1), p(2)])
        );
        assert_eq!(
            delivery(Rule::Arbitrary, [p(1), p(2)].into_iter()),
            Delivery::One
        );
    }
}
