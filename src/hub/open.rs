//! Opening and closing: who may open what (the receiver rule's admission,
//! the kill(2) rule for links), the descriptor each open makes, and what a
//! close leaves behind (truncated messages, broadcast copies, idle links).

use log::warn;

use super::accounting::{Charge, HANDLE_COST};
use super::errno::{Errno, Result};
use super::framing::Framing;
use super::handles::{Cursor, HandleKind};
use super::process::Process;
use super::receipts::ReceiptBook;
use super::receiver_rule::{Role, binds};
use super::reply::Effects;
use super::{
    Access, Caller, ChanKey, FileKind, Hub, MailboxId, PeerFacts, State, Target, chan_mut, status,
};

/// Who opens a link file, how, and what the system said of its peer.
#[derive(Clone, Copy)]
struct Opener {
    me: Process,
    uid: u32,
    access: Access,
    facts: PeerFacts,
}

/// The processes an open needs watched for their exit (see [`Hub::open`]),
/// and those it charged a new watch for.
#[derive(Default)]
struct ToWatch {
    needed: Vec<Process>,
    charged: Vec<Process>,
}

impl ToWatch {
    /// Keeps the charges of new watches (`pending`), now that the open
    /// that needs them is admitted.
    fn admitted(&mut self, st: &mut State, pending: Vec<(Process, Charge)>) {
        for (p, charge) in pending {
            st.watched.insert(p, charge);
            self.charged.push(p);
        }
    }
}

/// `recv` is for reading, `send` for writing (and reading receipts);
/// `packets` and `batch` for either or both.
pub(super) fn check_access(kind: FileKind, access: Access) -> Result<()> {
    match kind {
        FileKind::Recv if access.write => Err(Errno::EACCES.because("recv is for reading")),
        FileKind::Send if !access.write => {
            Err(Errno::EACCES.because("send is for writing (and reading receipts)"))
        }
        _ => Ok(()),
    }
}

impl Hub {
    /// Opens `target` for `caller` with the access asked for.
    ///
    /// An open that binds a process to a `pair` or `exclusive` mailbox, or
    /// opens a direct link, needs the exit of the processes involved
    /// watched (a pidfd each). A new watch is charged to the opener's user
    /// before anything is admitted, like the descriptor, so that a refusal
    /// (`ENOBUFS`) leaves nothing behind. The pidfd itself is a system
    /// call, made once the lock is released; when the system has none to
    /// give (`EMFILE`, `ENFILE`), the open is undone and fails with that
    /// error, rather than leave a process bound that nobody watches — and
    /// no process is ever taken for gone for want of a descriptor.
    pub fn open(&self, caller: Caller, target: Target, access: Access) -> Result<u64> {
        let result = self.open_watched(caller, target, access);
        if let Err(e) = &result
            && [Errno::ENOBUFS, Errno::EMFILE, Errno::ENFILE, Errno::ENOMEM].contains(&e.errno)
        {
            warn!(
                "open of {target:?} by process {} of user {}: refused {e}",
                caller.process.pid, caller.uid
            );
        }
        result
    }

    fn open_watched(&self, caller: Caller, target: Target, access: Access) -> Result<u64> {
        let me = caller.process;
        // A mailbox kept by the broker is admitted there (ipcfs(7), ACROSS
        // HOSTS), before the lock is taken.
        if let Target::Mailbox(id, kind) = target
            && let Some((kind, opens)) = self.open_remote(caller, id, kind, access)?
        {
            let charge = match self.budget.charge(caller.uid, HANDLE_COST) {
                Ok(c) => c,
                Err(e) => {
                    self.close_opens(id, me.pid, &opens);
                    return Err(e);
                }
            };
            let mut st = self.lock();
            let h = st.handles.insert(me, caller.uid, kind, charge);
            if !opens.is_empty() {
                st.opens.insert(h, opens);
            }
            return Ok(h);
        }
        // What the system says about a link's peer is asked before taking
        // the lock (pidfd_open, /proc/<pid>/status). `pid` is the number the
        // caller uses (all threads of a process share one pid namespace).
        let peer = match target {
            Target::Link(pid, _) => self.procs.resolve(me.pid, pid)?,
            _ => None,
        };
        let may_send = match (target, peer) {
            (Target::Link(_, k), Some(peer)) if k.sends() && access.write => {
                self.procs.may_signal(me, peer)
            }
            _ => false,
        };
        // What the peer calls the caller: it names the caller once the
        // caller has exited (see Links::sender_to).
        let seen_as = match peer {
            Some(peer) if may_send => self.procs.number_for(peer.pid, me.pid),
            _ => None,
        };
        let facts = PeerFacts {
            peer,
            may_send,
            seen_as,
        };
        // A descriptor of a message file is charged before it is admitted,
        // so that a refusal leaves no receiver or rule slot behind; a status
        // or policy snapshot (no side effects) is taken before its own
        // descriptor is charged, so that it shows what the others hold.
        let snapshot = matches!(target, Target::RootPolicy | Target::DaemonStatus)
            || matches!(
                target,
                Target::Mailbox(_, FileKind::Status | FileKind::Policy)
                    | Target::Link(_, FileKind::Status | FileKind::Policy)
            );
        let early = if snapshot {
            None
        } else {
            Some(self.budget.charge(caller.uid, HANDLE_COST)?)
        };
        let mut watch = ToWatch::default();
        let mut fx = Effects::default();
        let mut st = self.lock();
        let result = self
            .open_locked(&mut st, &mut fx, caller, target, access, facts, &mut watch)
            .and_then(|kind| {
                let charge = match early {
                    Some(charge) => charge,
                    None => self.budget.charge_snapshot(caller.uid, HANDLE_COST)?,
                };
                Ok(st.handles.insert(me, caller.uid, kind, charge))
            });
        // A new receiver may have let blocked senders in.
        self.finish(st, fx);
        let h = result?;
        for (i, p) in watch.needed.iter().enumerate() {
            // pidfd_open and epoll_ctl, unless already watched.
            if let Err(e) = self.procs.watch_exit(*p) {
                // Undone: the charges of the watches not made go, the
                // descriptor is closed as if by close(2).
                let unmade = &watch.needed[i..];
                let mut st = self.lock();
                for q in watch.charged.iter().filter(|q| unmade.contains(q)) {
                    st.watched.remove(q);
                }
                drop(st);
                self.release(h);
                return Err(e);
            }
        }
        Ok(h)
    }

    #[allow(clippy::too_many_arguments)]
    fn open_locked(
        &self,
        st: &mut State,
        fx: &mut Effects,
        caller: Caller,
        target: Target,
        access: Access,
        facts: PeerFacts,
        watch: &mut ToWatch,
    ) -> Result<HandleKind> {
        let me = caller.process;
        let kind = match target {
            Target::RootPolicy => HandleKind::Policy {
                of: None,
                text: format!("{}\n", st.tree.default_policy).into_bytes(),
            },
            Target::DaemonStatus => HandleKind::Snapshot(self.daemon_status(st).into_bytes()),
            Target::Mailbox(id, kind) => {
                self.open_mailbox(st, fx, caller, id, kind, access, watch)?
            }
            Target::Link(pid, kind) => {
                let opener = Opener {
                    me,
                    uid: caller.uid,
                    access,
                    facts,
                };
                self.open_link(st, fx, &opener, pid, kind, watch)?
            }
        };
        Ok(kind)
    }

    /// What a descriptor of a message file is, once its channels admit it.
    pub(super) fn message_handle(
        &self,
        kind: FileKind,
        access: Access,
        recv: ChanKey,
        send: ChanKey,
    ) -> HandleKind {
        match kind {
            FileKind::Recv => HandleKind::Recv {
                chan: recv,
                cursor: Cursor::default(),
                reading: false,
                behind: Default::default(),
            },
            FileKind::Send => HandleKind::Send {
                chan: send,
                receipts: access.read.then(|| ReceiptBook::new(&self.budget)),
                append: access.append,
            },
            _ => HandleKind::Framed {
                recv: access.read.then_some(recv),
                send: access.write.then_some(send),
                framing: if kind == FileKind::Batch {
                    Framing::Batch
                } else {
                    Framing::Packet
                },
                append: access.append,
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open_mailbox(
        &self,
        st: &mut State,
        fx: &mut Effects,
        caller: Caller,
        id: MailboxId,
        kind: FileKind,
        access: Access,
        watch: &mut ToWatch,
    ) -> Result<HandleKind> {
        let me = caller.process;
        let ch = &mut st.tree.get_mut(id).ok_or(Errno::ENOENT)?.chan;
        match kind {
            FileKind::Policy => {
                return Ok(HandleKind::Policy {
                    of: Some(id),
                    text: format!("{}\n", ch.policy).into_bytes(),
                });
            }
            FileKind::Status => {
                // The status shows live holders only (a system call each
                // under the lock: only when a status is opened).
                ch.prune_members(&|p| self.procs.is_alive(p));
                return Ok(HandleKind::Snapshot(
                    status::mailbox(ch, &self.budget).into_bytes(),
                ));
            }
            // A copier's: an empty file; it takes no message, counts as no
            // receiver or sender and holds no rule slot.
            _ if access.copy => return Ok(HandleKind::Snapshot(Vec::new())),
            _ => {}
        }
        check_access(kind, access)?;
        let reads = kind.receives() && access.read;
        let writes = kind.sends() && access.write;
        // The exit of a process the rule binds is watched, so that its slot
        // is freed when it exits.
        let rule = ch.policy.rule;
        let bound = (reads && binds(rule, Role::Recv)) || (writes && binds(rule, Role::Send));
        let pending = if bound {
            self.charge_watch(&st.watched, caller.uid, me)?
        } else {
            None
        };
        if reads {
            self.admit(ch, me, Role::Recv)?;
        }
        if writes {
            self.admit(ch, me, Role::Send)?;
        }
        if reads {
            ch.open_recv(me, fx);
        }
        ch.handles += 1;
        if bound {
            watch.needed.push(me);
            watch.admitted(st, pending.map(|c| (me, c)).into_iter().collect());
        }
        let key = ChanKey::Mailbox(id);
        Ok(self.message_handle(kind, access, key, key))
    }

    fn open_link(
        &self,
        st: &mut State,
        fx: &mut Effects,
        opener: &Opener,
        pid: u32,
        kind: FileKind,
        watch: &mut ToWatch,
    ) -> Result<HandleKind> {
        let Opener {
            me,
            uid,
            access,
            facts,
        } = *opener;
        let PeerFacts {
            peer,
            may_send,
            seen_as,
        } = facts;
        let peer_alive = peer.is_some();
        // A peer that has exited may have left messages for `me`.
        let peer = peer.or_else(|| st.links.sender_to(me, pid));
        if matches!(kind, FileKind::Status | FileKind::Policy) {
            let text = match peer {
                Some(peer) => status::link(
                    pid,
                    peer_alive,
                    st.links.get(me, peer),
                    st.links.get(peer, me),
                ),
                None => status::link(pid, false, None, None),
            };
            return Ok(HandleKind::Snapshot(text.into_bytes()));
        }
        if access.copy {
            // A copier's: an empty file; it takes nothing and joins no link.
            return Ok(HandleKind::Snapshot(Vec::new()));
        }
        check_access(kind, access)?;
        let Some(peer) = peer else {
            return Err(Errno::ESRCH.because("the peer has exited"));
        };
        let policy = self.link_policy();
        let (to_peer, from_peer) = (
            ChanKey::Link { from: me, to: peer },
            ChanKey::Link { from: peer, to: me },
        );
        if kind.sends() && access.write {
            if !peer_alive {
                return Err(Errno::ESRCH.because("the peer has exited"));
            }
            if !may_send {
                return Err(Errno::EPERM.because("kill(2) rule: not the same user"));
            }
            if st
                .links
                .get(me, peer)
                .is_some_and(|ch| ch.ends.receiver_gone)
            {
                return Err(Errno::ESRCH.because("the peer has exited"));
            }
        }
        // Both ends' exits are watched (see `Links::exited`); new watches
        // are charged to the opener before anything is made. A peer that
        // has exited was watched when its link was made, and its exit is
        // reported (or about to be): watching it anew would only report
        // it twice.
        let ends = if me == peer || !peer_alive {
            vec![me]
        } else {
            vec![me, peer]
        };
        let mut pending = Vec::new();
        for p in &ends {
            if let Some(charge) = self.charge_watch(&st.watched, uid, *p)? {
                pending.push((*p, charge));
            }
        }
        if kind.sends() && access.write {
            let ch = st
                .links
                .open((me, peer), seen_as, policy, &self.budget, uid)?;
            ch.handles += 1;
        }
        if kind.receives() && access.read {
            let ch = st
                .links
                .open((peer, me), Some(pid), policy, &self.budget, uid)?;
            ch.open_recv(me, fx);
            ch.handles += 1;
        }
        watch.needed.extend(ends);
        watch.admitted(st, pending);
        Ok(self.message_handle(kind, access, from_peer, to_peer))
    }

    pub fn release(&self, h: u64) {
        let mut st = self.lock();
        let mut fx = Effects::default();
        let Some(handle) = st.handles.remove(h) else {
            return;
        };
        let shared = self.is_shared();
        if shared {
            self.release_remote(&mut st, &mut fx, h, handle.owner, &handle.kind);
            self.release_held(&mut st, &mut fx, h);
        }
        let State { tree, links, .. } = &mut *st;
        for (chan, reads) in handle.kind.channels() {
            // A broker's mailbox counts its descriptors there.
            if shared && matches!(chan, ChanKey::Mailbox(_)) {
                continue;
            }
            if let Some(ch) = chan_mut(tree, links, chan) {
                ch.handles -= 1;
                if let Some(kh) = handle.poll {
                    ch.unwatch(kh);
                }
                if let HandleKind::Recv { cursor, .. } = &handle.kind
                    && cursor.partial()
                {
                    ch.counters.truncated += 1;
                }
                if reads {
                    ch.close_recv(handle.owner, &mut fx);
                }
            }
            // Link state lives only while it carries something.
            if let ChanKey::Link { from, to } = chan {
                links.reclaim(from, to);
            }
        }
        self.finish(st, fx);
    }
}
