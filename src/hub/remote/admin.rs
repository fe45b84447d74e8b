//! Opening, closing and naming mailboxes kept by the broker (ipcfs(7),
//! ACROSS HOSTS): rule admission across hosts, the shared tree, policies
//! and status. These calls are short, one script each, bounded by the
//! store's timeout; they are made with the lock released.

use std::collections::HashSet;
use std::ffi::OsStr;

use log::debug;

use super::super::errno::{Errno, Result};
use super::super::handles::HandleKind;
use super::super::policy::Policy;
use super::super::process::Process;
use super::super::receiver_rule::{Role, binds};
use super::super::reply::{Effects, Outcome, Replier};
use super::super::store::OpenId;
use super::super::tree::{Attr, FileKind, change_attrs};
use super::super::{Access, Caller, ChanKey, Hub, MailboxId, State, status};
use super::Job;

impl Hub {
    /// Opens a file of a remote mailbox: its rule is asked of the store
    /// (`EBUSY` across hosts), before the lock is taken.
    pub(in crate::hub) fn open_remote(
        &self,
        caller: Caller,
        id: MailboxId,
        kind: FileKind,
        access: Access,
    ) -> Result<Option<(HandleKind, Opens)>> {
        let Some(store) = self.store() else {
            return Ok(None);
        };
        let me = caller.process;
        let policy = self
            .lock()
            .tree
            .get(id)
            .map(|m| m.chan.policy)
            .ok_or(Errno::ENOENT)?;
        match kind {
            FileKind::Policy => {
                return Ok(Some((
                    HandleKind::Policy {
                        of: Some(id),
                        text: format!("{policy}\n").into_bytes(),
                    },
                    Vec::new(),
                )));
            }
            FileKind::Status => {
                let shared = store.status(id)?;
                let text = status::remote_mailbox(
                    &policy,
                    &shared,
                    &self.budget,
                    store.url(),
                    store.node(),
                    store.reachable(),
                );
                return Ok(Some((HandleKind::Snapshot(text.into_bytes()), Vec::new())));
            }
            _ if access.copy => return Ok(Some((HandleKind::Snapshot(Vec::new()), Vec::new()))),
            _ => {}
        }
        super::super::open::check_access(kind, access)?;
        let reads = kind.receives() && access.read;
        let writes = kind.sends() && access.write;
        let mut opens = Vec::new();
        if reads {
            opens.push((Role::Recv, store.open(id, me.pid, Role::Recv)?));
        }
        if writes {
            match store.open(id, me.pid, Role::Send) {
                Ok(n) => opens.push((Role::Send, n)),
                Err(e) => {
                    self.close_opens(id, me.pid, &opens);
                    return Err(e);
                }
            }
        }
        // A process the rule binds is watched: its `pair` slot goes when
        // it exits.
        if (reads && binds(policy.rule, Role::Recv)) || (writes && binds(policy.rule, Role::Send)) {
            let mut st = self.lock();
            st.bound.entry(me).or_default().insert(id);
            drop(st);
            if let Err(e) = self.procs.watch_exit(me) {
                debug!("cannot watch process {}: {e}", me.pid);
            }
        }
        let key = ChanKey::Mailbox(id);
        Ok(Some((self.message_handle(kind, access, key, key), opens)))
    }

    /// Closes `opens` of mailbox `id` on the store (a descriptor's, or
    /// those of an open that failed after them). Called off the lock.
    pub(in crate::hub) fn close_opens(&self, id: MailboxId, pid: u32, opens: &Opens) {
        let Some(store) = self.store() else { return };
        for (role, n) in opens {
            if let Err(e) = store.close(id, pid, *role, Some(*n), false) {
                debug!("close on the broker: {e}");
            }
        }
    }

    /// A descriptor of a remote mailbox was closed: the store is told,
    /// off the lock.
    pub(in crate::hub) fn release_remote(
        &self,
        st: &mut State,
        fx: &mut Effects,
        h: u64,
        owner: Process,
        kind: &HandleKind,
    ) {
        if !self.is_shared() {
            return;
        }
        let opens = st.opens.remove(&h).unwrap_or_default();
        let truncated = matches!(kind, HandleKind::Recv { cursor, .. } if cursor.partial());
        // A descriptor of a broker's mailbox is open on that one mailbox,
        // in each role it was opened in (both for `packets` or `batch`
        // opened for reading and writing).
        let Some(id) = kind.channels().into_iter().find_map(|(c, _)| match c {
            ChanKey::Mailbox(id) => Some(id),
            _ => None,
        }) else {
            return;
        };
        let pid = owner.pid;
        let job: Job = Box::new(move |hub: &Hub| {
            hub.close_opens(id, pid, &opens);
            if truncated
                && let Some(store) = hub.store()
                && let Err(e) = store.truncated(id)
            {
                debug!("truncation count on the broker: {e}");
            }
        });
        fx.remote().later.push(job);
    }

    /// Process `p` exited: its `pair` slots on remote mailboxes go.
    pub(in crate::hub) fn exited_remote(&self, st: &mut State, fx: &mut Effects, p: Process) {
        let Some(ids) = st.bound.remove(&p) else {
            return;
        };
        let job: Job = Box::new(move |hub: &Hub| {
            if let Some(store) = hub.store() {
                for id in ids {
                    for role in [Role::Recv, Role::Send] {
                        if let Err(e) = store.close(id, p.pid, role, None, true) {
                            debug!("exit of {} on the broker: {e}", p.pid);
                        }
                    }
                }
            }
        });
        fx.remote().later.push(job);
    }

    /// `mkdir` on a mount with a broker.
    pub(in crate::hub) fn mkdir_remote(
        &self,
        parent: MailboxId,
        name: &OsStr,
        dir: Attr,
    ) -> Option<Result<MailboxId>> {
        let store = self.store()?;
        let policy = self.lock().tree.default_policy;
        let dir = Attr {
            mode: dir.mode & 0o7777,
            ..dir
        };
        let result = store
            .mkdir(parent, name, dir, &policy)
            .inspect(|_| self.reload(store.as_ref()));
        Some(result)
    }

    pub(in crate::hub) fn rmdir_remote(
        &self,
        parent: MailboxId,
        name: &OsStr,
    ) -> Option<Result<()>> {
        let store = self.store()?;
        let result = store.rmdir(parent, name).map(|id| {
            self.reload(store.as_ref());
            // Calls blocked here end now; other nodes hear of it from
            // their pump.
            self.on_event(super::super::store::Event::Removed { mailbox: id });
        });
        Some(result)
    }

    pub(in crate::hub) fn rename_remote(
        &self,
        parent: MailboxId,
        name: &OsStr,
        new_parent: MailboxId,
        new_name: &OsStr,
    ) -> Option<Result<()>> {
        let store = self.store()?;
        let result = store
            .rename(parent, name, new_parent, new_name)
            .inspect(|_| self.reload(store.as_ref()));
        Some(result)
    }

    /// `chmod`/`chown` of a remote mailbox or one of its files (the root
    /// policy file stays this mount's).
    pub(in crate::hub) fn set_attr_remote(
        &self,
        id: MailboxId,
        file: Option<FileKind>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Option<Result<Attr>> {
        let store = self.store()?;
        if id == super::super::ROOT {
            return None;
        }
        let (mut dir, mut files) = {
            let st = self.lock();
            match st.tree.get(id) {
                Some(m) => (m.dir, m.files),
                None => return Some(Err(Errno::ENOENT.into())),
            }
        };
        let attr = change_attrs(&mut dir, &mut files, file, mode, uid, gid);
        let result = store.set_attrs(id, dir, files).map(|()| {
            self.reload(store.as_ref());
            attr
        });
        Some(result)
    }

    /// A write of a remote mailbox's `policy`: set on the store, then
    /// answered.
    pub(in crate::hub) fn write_policy_remote(
        &self,
        fx: &mut Effects,
        id: MailboxId,
        new: Policy,
        written: u32,
        reply: Box<dyn Replier>,
    ) {
        let job: Job = Box::new(move |hub: &Hub| {
            let Some(store) = hub.store() else { return };
            let out = match store.set_policy(id, &new) {
                Ok(()) => {
                    hub.reload(store.as_ref());
                    Outcome::Written(written)
                }
                Err(e) => Outcome::Error(e),
            };
            reply.reply(out);
        });
        fx.remote().later.push(job);
    }

    /// The lines `proc/status` gains on a mount with a broker.
    pub(in crate::hub) fn broker_lines(&self) -> String {
        match self.store() {
            Some(s) => status::broker(s.url(), s.node(), s.reachable()),
            None => String::new(),
        }
    }
}

/// The store's numbers of a descriptor's opens, by role.
pub(crate) type Opens = Vec<(Role, OpenId)>;

/// Mailboxes a process is bound to by a rule, on a remote store.
pub(crate) type Bound = std::collections::HashMap<Process, HashSet<MailboxId>>;
