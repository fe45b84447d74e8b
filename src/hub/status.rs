//! The text of `status` files: `key: value` lines, stable and documented in
//! ipcfs(7).

use std::fmt::Write;

use crate::hub::accounting::MemoryBudget;
use crate::hub::channel::Channel;
use crate::hub::policy::{Policy, Rule};
use crate::hub::store::RemoteStatus;

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

/// The first lines of a mailbox's `status`: its policy.
fn policy_lines(p: &Policy) -> String {
    let mut out = String::new();
    line(&mut out, "policy", p.rule);
    match p.capacity {
        Some(c) => line(&mut out, "capacity", c),
        None => line(&mut out, "capacity", "unlimited"),
    }
    line(&mut out, "max-message-size", p.max_message_size);
    out
}

/// A mailbox's `status`.
pub fn mailbox(ch: &Channel, budget: &MemoryBudget) -> String {
    let mut out = policy_lines(&ch.policy);
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

/// The lines of a mount with a broker (ipcfs(7), ACROSS HOSTS): where it
/// is, which node this daemon is, and whether the broker answers.
pub fn broker(url: &str, node: &str, reachable: bool) -> String {
    let mut out = String::new();
    line(&mut out, "broker", url);
    line(&mut out, "node", node);
    line(
        &mut out,
        "broker-reachable",
        if reachable { "yes" } else { "no" },
    );
    out
}

/// A remote mailbox's `status`: its policy, the broker's shared counters,
/// this daemon's memory, and the broker lines.
pub fn remote_mailbox(
    p: &Policy,
    s: &RemoteStatus,
    budget: &MemoryBudget,
    url: &str,
    node: &str,
    reachable: bool,
) -> String {
    let mut out = policy_lines(p);
    line(&mut out, "messages", s.messages);
    line(&mut out, "bytes", s.bytes);
    line(&mut out, "receivers", s.receivers);
    line(&mut out, "receivers-waiting", s.receivers_waiting);
    line(&mut out, "senders-waiting", s.senders_waiting);
    line(&mut out, "sent", s.sent);
    line(&mut out, "received", s.received);
    line(&mut out, "dropped", s.dropped);
    line(&mut out, "truncated", s.truncated);
    let held = |s: &RemoteStatus| {
        let v: Vec<String> = s.holders.iter().map(|(p, n)| format!("{p}@{n}")).collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(" ")
        }
    };
    let (pair, holder) = match p.rule {
        Rule::Pair => (held(s), "-".to_string()),
        Rule::Exclusive => ("-".to_string(), held(s)),
        _ => ("-".to_string(), "-".to_string()),
    };
    line(&mut out, "pair", pair);
    line(&mut out, "holder", holder);
    line(&mut out, "memory-used", budget.used());
    line(&mut out, "memory-limit", budget.limit());
    out.push_str(&broker(url, node, reachable));
    out
}
