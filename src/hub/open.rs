//! Opening and closing: who may open what (the receiver rule's admission,
//! the kill(2) rule for links), the descriptor each open makes, and what a
//! close leaves behind (truncated messages, broadcast copies, idle links).

use super::errno::{Errno, Result};
use super::handles::{Cursor, HandleKind};
use super::policy::Rule;
use super::process::Process;
use super::receipts::ReceiptBook;
use super::receiver_rule::Role;
use super::waiter::Effects;
use super::{Access, Caller, ChanKey, FileKind, Hub, PeerFacts, State, Target, chan_mut, status};

impl Hub {
    /// Opens `target` for `caller` with the access asked for.
    pub fn open(&self, caller: Caller, target: Target, access: Access) -> Result<u64> {
        let me = caller.process;
        // What the system says about a link's peer is asked before taking
        // the lock (pidfd_open, /proc/<pid>/status).
        let peer = match target {
            Target::Link(pid, _) => self.procs.by_pid(pid),
            _ => None,
        };
        let may_send = match (target, peer) {
            (Target::Link(_, FileKind::Send), Some(peer)) => self.procs.may_signal(me, peer),
            _ => false,
        };
        let facts = PeerFacts { peer, may_send };
        let mut watch = Vec::new();
        let mut st = self.lock();
        let result = self.open_locked(&mut st, me, target, access, facts, &mut watch);
        drop(st);
        for p in watch {
            // pidfd_open and epoll_ctl, unless already watched.
            self.procs.watch_exit(p);
        }
        result
    }

    fn open_locked(
        &self,
        st: &mut State,
        me: Process,
        target: Target,
        access: Access,
        facts: PeerFacts,
        watch: &mut Vec<Process>,
    ) -> Result<u64> {
        let PeerFacts { peer, may_send } = facts;
        let Access {
            read,
            write,
            append,
        } = access;
        let recv_handle = |chan| HandleKind::Recv {
            chan,
            cursor: Cursor::default(),
            reading: false,
            behind: Default::default(),
        };
        let send_handle = |chan| HandleKind::Send {
            chan,
            receipts: read.then(|| ReceiptBook::new(&self.budget)),
            append,
        };
        let kind =
            match target {
                Target::RootPolicy => HandleKind::Policy {
                    of: None,
                    text: format!("{}\n", st.tree.default_policy).into_bytes(),
                },
                Target::DaemonStatus => HandleKind::Text(self.daemon_status(st).into_bytes()),
                Target::Mailbox(id, kind) => {
                    let m = st.tree.get_mut(id).ok_or(Errno::ENOENT)?;
                    let ch = &mut m.chan;
                    // Only asked when the rule refuses: a bound process may have exited.
                    let alive = |p: Process| self.procs.is_alive(p);
                    if matches!(ch.policy.rule, Rule::Pair | Rule::Exclusive) {
                        watch.push(me);
                    }
                    match kind {
                        FileKind::Policy => HandleKind::Policy {
                            of: Some(id),
                            text: format!("{}\n", ch.policy).into_bytes(),
                        },
                        FileKind::Status => {
                            ch.prune_members(&alive);
                            HandleKind::Text(status::mailbox(ch, &self.budget).into_bytes())
                        }
                        FileKind::Recv => {
                            if write {
                                return Err(Errno::EACCES.because("recv is for reading"));
                            }
                            ch.members.admit(ch.policy.rule, me, Role::Recv, &alive)?;
                            ch.open_recv(me);
                            ch.handles += 1;
                            recv_handle(ChanKey::Mailbox(id))
                        }
                        FileKind::Send => {
                            if !write {
                                return Err(Errno::EACCES
                                    .because("send is for writing (and reading receipts)"));
                            }
                            ch.members.admit(ch.policy.rule, me, Role::Send, &alive)?;
                            ch.handles += 1;
                            send_handle(ChanKey::Mailbox(id))
                        }
                    }
                }
                Target::Link(pid, kind) => {
                    let peer_alive = peer.is_some();
                    // A peer that has exited may have left messages for `me`.
                    let peer = peer.or_else(|| st.links.sender_to(me, pid));
                    let policy = self.link_policy();
                    match kind {
                        FileKind::Send => {
                            if !write {
                                return Err(Errno::EACCES
                                    .because("send is for writing (and reading receipts)"));
                            }
                            let Some(peer) = peer.filter(|_| peer_alive) else {
                                return Err(Errno::ESRCH.because("the peer has exited"));
                            };
                            if !may_send {
                                return Err(Errno::EPERM.because("kill(2) rule: not the same user"));
                            }
                            let ch = st.links.open(me, peer, policy);
                            if ch.ends.receiver_gone {
                                return Err(Errno::ESRCH.because("the peer has exited"));
                            }
                            ch.handles += 1;
                            watch.extend([me, peer]);
                            send_handle(ChanKey::Link { from: me, to: peer })
                        }
                        FileKind::Recv => {
                            if write {
                                return Err(Errno::EACCES.because("recv is for reading"));
                            }
                            let peer = peer.ok_or(Errno::ESRCH)?;
                            let ch = st.links.open(peer, me, policy);
                            ch.open_recv(me);
                            ch.handles += 1;
                            watch.extend([me, peer]);
                            recv_handle(ChanKey::Link { from: peer, to: me })
                        }
                        FileKind::Status | FileKind::Policy => {
                            let text = match peer {
                                Some(peer) => status::link(
                                    pid,
                                    peer_alive,
                                    st.links.get(me, peer),
                                    st.links.get(peer, me),
                                ),
                                None => status::link(pid, false, None, None),
                            };
                            HandleKind::Text(text.into_bytes())
                        }
                    }
                }
            };
        Ok(st.handles.insert(me, kind))
    }

    pub fn release(&self, h: u64) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        let Some(handle) = st.handles.remove(h) else {
            return;
        };
        let State { tree, links, .. } = &mut *st;
        let chan = match &handle.kind {
            HandleKind::Recv { chan, .. } | HandleKind::Send { chan, .. } => *chan,
            HandleKind::Text(_) | HandleKind::Policy { .. } => return,
        };
        if let Some(ch) = chan_mut(tree, links, chan) {
            ch.handles -= 1;
            if let Some(kh) = handle.poll {
                ch.unwatch(kh);
            }
            if let HandleKind::Recv { cursor, .. } = &handle.kind {
                if cursor.partial() {
                    ch.counters.truncated += 1;
                }
                ch.close_recv(handle.owner, &mut fx);
            }
        }
        // The last descriptor of a link one of whose ends has exited.
        if let ChanKey::Link { from, to } = chan {
            links.reclaim(from, to);
        }
        self.finish(st, fx);
    }
}
