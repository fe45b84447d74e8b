//! The text of `status` files: `key: value` lines, stable and documented in
//! ipcfs(7).

use std::fmt::Write;

use crate::hub::accounting::MemoryBudget;
use crate::hub::channel::Channel;

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{key}: {value}");
}

fn pids(list: impl IntoIterator<Item = u32>) -> String {
    let s: Vec<String> = list.into_iter().map(|p| p.to_string()).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s.join(" ")
    }
}

/// A mailbox's `status`.
pub fn mailbox(ch: &Channel, budget: &MemoryBudget) -> String {
    let mut out = String::new();
    let p = &ch.policy;
    line(&mut out, "policy", p.rule);
    match p.capacity {
        Some(c) => line(&mut out, "capacity", c),
        None => line(&mut out, "capacity", "unlimited"),
    }
    line(&mut out, "max-message-size", p.max_message_size);
    line(&mut out, "messages", ch.messages());
    line(&mut out, "bytes", ch.bytes());
    line(&mut out, "receivers", ch.receivers());
    line(&mut out, "receivers-waiting", ch.receivers_waiting());
    line(&mut out, "senders-waiting", ch.senders_waiting());
    let c = ch.counters;
    line(&mut out, "sent", c.sent);
    line(&mut out, "received", c.received);
    line(&mut out, "dropped", c.dropped);
    line(&mut out, "truncated", c.truncated);
    line(
        &mut out,
        "pair",
        pids(ch.members.pair.iter().map(|m| m.pid)),
    );
    line(&mut out, "holder", pids(ch.members.holder.map(|m| m.pid)));
    line(&mut out, "memory-used", budget.used());
    line(&mut out, "memory-limit", budget.limit());
    out
}

/// `proc/<pid>/status`: the link between the caller and `peer`, with the
/// caller's outgoing (`to`) and incoming (`from`) directions.
pub fn link(peer: u32, alive: bool, to: Option<&Channel>, from: Option<&Channel>) -> String {
    let mut out = String::new();
    let n = |c: Option<&Channel>, f: fn(&Channel) -> usize| c.map_or(0, f);
    line(&mut out, "peer", peer);
    line(&mut out, "peer-alive", if alive { "yes" } else { "no" });
    line(&mut out, "to-peer-messages", n(to, Channel::messages));
    line(&mut out, "to-peer-bytes", n(to, Channel::bytes));
    line(&mut out, "from-peer-messages", n(from, Channel::messages));
    line(&mut out, "from-peer-bytes", n(from, Channel::bytes));
    line(&mut out, "sent", to.map_or(0, |c| c.counters.sent));
    line(
        &mut out,
        "received",
        from.map_or(0, |c| c.counters.received),
    );
    line(
        &mut out,
        "dropped",
        to.map_or(0, |c| c.counters.dropped) + from.map_or(0, |c| c.counters.dropped),
    );
    line(
        &mut out,
        "receivers-waiting",
        n(from, Channel::receivers_waiting),
    );
    line(&mut out, "senders-waiting", n(to, Channel::senders_waiting));
    out
}

pub struct DaemonFigures {
    pub mailboxes: usize,
    pub links: usize,
    pub processes: usize,
    pub dropped_on_exit: u64,
    pub parked: usize,
    pub memory_used: usize,
    pub memory_limit: usize,
}

/// `proc/status`: daemon-wide figures.
pub fn daemon(f: &DaemonFigures) -> String {
    let mut out = String::new();
    line(&mut out, "mailboxes", f.mailboxes);
    line(&mut out, "links", f.links);
    line(&mut out, "processes", f.processes);
    line(&mut out, "dropped-on-exit", f.dropped_on_exit);
    line(&mut out, "parked", f.parked);
    line(&mut out, "memory-used", f.memory_used);
    line(&mut out, "memory-limit", f.memory_limit);
    out
}
