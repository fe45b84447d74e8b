//! The message-passing core: mailboxes, direct links, open descriptors and
//! blocked requests, behind one lock. No FUSE types and no system calls of
//! its own: the adapter in [`crate::fuse::adapter`] turns kernel requests
//! into calls here, [`Replier`](reply::Replier)s carry the answers back,
//! now or later, and questions about processes go through [`Processes`],
//! off the lock or visibly at the call.
//!
//! The modules, one concern each:
//! - [`tree`]: names, nesting, modes (`mkdir`, `rmdir`, `rename`, `chmod`);
//! - [`links`]: direct links between processes, and their reclaim;
//! - [`handles`]: open descriptors;
//! - [`waiters`]: parked requests — what each carries, and the table
//!   interrupts are looked up in;
//! - [`reply`]: what requests are answered with ([`reply::Outcome`]) and
//!   through ([`reply::Replier`]), and the [`reply::Effects`] an operation
//!   leaves for once the lock is released;
//! - [`channel`]: a queue with its blocked readers and senders, and
//!   [`receiver_rule`], where who receives a message is decided;
//! - [`attrs`]: what each node shows to `stat(2)`, and who a caller is;
//! - [`open`], [`transfer`], [`watch`]: opening and closing; reading,
//!   writing and polling; interrupts, exits and shutdown;
//! - [`policy`], [`receipts`], [`accounting`], [`status`], [`message`],
//!   [`framing`], [`errno`], [`process`].
//!
//! This file holds the lock and the step that finishes every operation:
//! hand messages to the descriptors of the readers they went to, fill in
//! receipts, then — with the lock released — send the replies and poll
//! notifications, and register processes whose exit matters.

pub mod accounting;
pub mod attrs;
pub mod channel;
pub mod errno;
pub mod framing;
pub mod handles;
pub mod links;
pub mod message;
pub(crate) mod open;
pub mod policy;
pub mod process;
pub mod receipts;
pub mod receiver_rule;
pub mod remote;
pub mod reply;
pub mod status;
pub mod store;
mod transfer;
pub mod tree;
pub mod waiters;
mod watch;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use log::{debug, info};

use self::accounting::{Charge, MemoryBudget, Shares};
use self::channel::Channel;
use self::errno::{Errno, Refusal, Result};
use self::handles::{HandleKind, Handles};
use self::links::Links;
use self::policy::{Policy, Rule};
use self::process::{Process, Processes};
use self::receiver_rule::Role;
use self::reply::Effects;
use self::tree::Tree;
use self::waiters::{Place, WaiterId, Waiters};

pub use self::tree::{
    Attr, FileKind, MAILBOX_COST, MAILBOX_FILES, MAX_MAILBOX_ID, NAME_MAX, ROOT, ROOT_NAMES,
    file_modes,
};

pub type MailboxId = u64;

/// A channel's place: a mailbox, or one direction of a direct link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChanKey {
    Mailbox(MailboxId),
    Link { from: Process, to: Process },
}

/// What is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Mailbox(MailboxId, FileKind),
    /// `proc/<pid>/<kind>`.
    Link(u32, FileKind),
    RootPolicy,
    /// `proc/status`.
    DaemonStatus,
}

/// Whoever makes a request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub process: Process,
    pub uid: u32,
    pub gid: u32,
}

/// One read or write request: the descriptor, the kernel's id of the
/// request (the waiter's id if it parks; an interrupt names it), the
/// calling thread, the offset, and whether it may block.
#[derive(Clone, Copy, Debug)]
pub struct Io {
    pub handle: u64,
    pub req: WaiterId,
    pub tid: u32,
    pub offset: u64,
    pub nonblock: bool,
}

/// What an open asks for: read, write, and `O_APPEND`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    /// Read-only with `O_NOFOLLOW`: a copier's (`cp -r`, `cp -a`, `tar`),
    /// which gets an empty file (see ipcfs(7), COPYING AND BACKUPS).
    pub copy: bool,
}

/// What the system said about the peer of a `proc/<pid>` target, asked
/// before the lock was taken: its live process, and whether the caller may
/// send to it (the `kill(2)` rule).
#[derive(Clone, Copy)]
struct PeerFacts {
    peer: Option<Process>,
    may_send: bool,
    /// What the peer calls the caller (pid namespaces differ).
    seen_as: Option<u32>,
}

/// Mount-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The root policy's initial value; links use its capacity and size.
    pub default_policy: Policy,
    /// The largest message any policy may allow.
    pub hard_max_message: usize,
    pub max_memory: usize,
    /// The most one user other than root and `uid` may hold of `max_memory`.
    pub user_share: usize,
    /// What watching a process's exit (a pidfd) holds of `max_memory`:
    /// see [`accounting::watch_cost`].
    pub watch_cost: usize,
    /// Owner of the mount's root and root policy.
    pub uid: u32,
    pub gid: u32,
}

struct State {
    tree: Tree,
    links: Links,
    handles: Handles,
    waiters: Waiters,
    /// The processes whose exit the daemon watches (a pidfd each), with
    /// what each watch holds of the bound, charged to the user whose open
    /// made it watched; dropped when the exit is reported.
    watched: HashMap<Process, Charge>,
    shut_down: bool,
    /// Reads and writes of remote mailboxes not yet answered (ipcfs(7),
    /// ACROSS HOSTS), by request id.
    calls: HashMap<WaiterId, remote::Call>,
    /// Descriptors numbered up to this were opened before the daemon lost
    /// its lease on the broker: their I/O fails with `ESTALE`.
    fenced_below: u64,
    /// Processes bound to remote mailboxes by a rule (`pair`, `exclusive`):
    /// their exit frees their slots on the broker.
    bound: remote::Bound,
    /// Messages taken from the broker for a descriptor's poll, not yet
    /// read, by descriptor.
    held: HashMap<u64, remote::Held>,
    /// What each descriptor read from the broker and has not yet
    /// acknowledged (see `Hub::ack_soon`).
    unacked: HashMap<u64, Vec<store::FlightId>>,
    /// Descriptors with a flush of `unacked` on the timer.
    ack_timers: HashSet<u64>,
    /// Blocked senders interrupted while the broker could not be reached:
    /// taken off the broker when it comes back.
    withdraw: Vec<(MailboxId, store::Wid)>,
    /// The store's numbers of each descriptor's opens of a remote mailbox,
    /// given back when it closes.
    opens: HashMap<u64, Vec<(receiver_rule::Role, store::OpenId)>>,
}

impl State {
    /// Hands messages to blocked readers' descriptors and fills in receipts,
    /// turning both into replies.
    fn settle(&mut self, fx: &mut Effects) {
        for id in fx.unparked.drain(..) {
            let Some(parked) = self.waiters.unpark(id) else {
                continue;
            };
            let Place::Chan(_, Some(h)) = parked.place else {
                continue;
            };
            if let Some(HandleKind::Recv {
                reading, behind, ..
            }) = self.handles.recv_mut(h)
            {
                *reading = false;
                if !behind.is_empty() {
                    self.waiters.resume.push(h);
                }
            }
        }
        for (w, msg) in std::mem::take(&mut fx.handoffs) {
            let cursor = match self.handles.recv_mut(w.handle) {
                Some(HandleKind::Recv { cursor, .. }) => Some(cursor),
                _ => None,
            };
            let out = framing::deliver(w.framing, cursor, msg, w.size, &mut |_| None);
            fx.reply(w.reply, out);
        }
        let named_any = fx
            .remote
            .as_ref()
            .is_some_and(|r| !r.receipts_on.is_empty());
        if fx.receipts.is_empty() && fx.cancelled.is_empty() && !named_any {
            return;
        }
        let resolved = std::mem::take(&mut fx.receipts)
            .into_iter()
            .map(|(tag, fate)| (tag, Some(fate)));
        let cancelled = std::mem::take(&mut fx.cancelled)
            .into_iter()
            .map(|tag| (tag, None));
        let named = fx
            .remote
            .as_mut()
            .map(|r| std::mem::take(&mut r.receipts_on))
            .into_iter()
            .flatten()
            .map(|(tag, pid, node)| (tag, Some(Fate::On(pid, node))));
        let resolved = resolved.map(|(tag, fate)| (tag, fate.map(Fate::Here)));
        for (tag, fate) in resolved.chain(named).chain(cancelled) {
            // A blocked read of receipts on a mailbox that is gone ends as
            // a read made now (ipcfs(7), SENDER RECEIPTS).
            let ended = match self.handles.get(tag.handle).map(|h| &h.kind) {
                Some(HandleKind::Send { chan, .. }) if !self.has_chan(*chan) => Some(gone(*chan)),
                _ => None,
            };
            let Some(book) = self.handles.receipts_mut(tag.handle) else {
                continue;
            };
            match fate {
                Some(Fate::Here(fate)) => book.resolve(tag.seq, fate),
                Some(Fate::On(pid, node)) => book.resolve_on(tag.seq, pid, node),
                None => book.cancel(tag.seq),
            }
            for (w, out) in book.serve_waiters(ended) {
                self.waiters.unpark(w.id);
                fx.reply(w.reply, out);
            }
        }
    }
}

/// Who took a message: a process of this daemon (or why it was lost), or
/// a process of another node.
enum Fate {
    Here(std::result::Result<u32, Errno>),
    On(u32, Arc<str>),
}

impl State {
    /// Whether the channel at `key` still exists.
    fn has_chan(&self, key: ChanKey) -> bool {
        match key {
            ChanKey::Mailbox(id) => self.tree.get(id).is_some(),
            ChanKey::Link { from, to } => self.links.get(from, to).is_some(),
        }
    }
}

/// The channel at `key`: a mailbox's, or a link direction's.
fn chan_mut<'a>(tree: &'a mut Tree, links: &'a mut Links, key: ChanKey) -> Option<&'a mut Channel> {
    match key {
        ChanKey::Mailbox(id) => tree.get_mut(id).map(|m| &mut m.chan),
        ChanKey::Link { from, to } => links.get_mut(from, to),
    }
}

/// The error for I/O on a channel that no longer exists.
fn gone(key: ChanKey) -> Refusal {
    match key {
        ChanKey::Mailbox(_) => Errno::EIDRM.because("the mailbox was removed"),
        ChanKey::Link { .. } => Errno::ESRCH.because("the peer has exited"),
    }
}

pub struct Hub {
    state: Mutex<State>,
    procs: Arc<dyn Processes>,
    budget: Arc<MemoryBudget>,
    config: Config,
    notifier: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
    /// The broker, on a mount with `--broker`.
    remote: OnceLock<remote::Remote>,
}

/// Answers `$reply` with the error of `$e` and returns, or gives its value.
macro_rules! check {
    ($fx:expr, $reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                $fx.reply($reply, Outcome::Error(e.into()));
                return;
            }
        }
    };
}
use check;

impl Hub {
    pub fn new(config: Config, procs: Box<dyn Processes>) -> Hub {
        let root_policy_attr = Attr {
            mode: 0o644,
            uid: config.uid,
            gid: config.gid,
        };
        Hub {
            state: Mutex::new(State {
                tree: Tree::new(config.default_policy, root_policy_attr),
                links: Links::default(),
                handles: Handles::default(),
                waiters: Waiters::default(),
                watched: HashMap::new(),
                shut_down: false,
                calls: HashMap::new(),
                fenced_below: 0,
                bound: Default::default(),
                held: HashMap::new(),
                unacked: HashMap::new(),
                ack_timers: HashSet::new(),
                withdraw: Vec::new(),
                opens: HashMap::new(),
            }),
            procs: Arc::from(procs),
            budget: Arc::new(MemoryBudget::with_shares(
                config.max_memory,
                Some(Shares {
                    exempt: [0, config.uid],
                    per_user: config.user_share,
                    others_total: config.max_memory / 4 * 3,
                }),
            )),
            config,
            notifier: OnceLock::new(),
            remote: OnceLock::new(),
        }
    }

    /// Sets how poll handles are notified (once; before serving).
    pub fn set_notifier(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.notifier.set(f);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn procs(&self) -> &dyn Processes {
        &*self.procs
    }

    /// The one lock of the core.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finishes an operation: settle under the lock (and let reads that
    /// waited behind an ended one go on), then reply, notify and watch
    /// outside it.
    fn finish(&self, mut st: MutexGuard<'_, State>, mut fx: Effects) {
        loop {
            st.settle(&mut fx);
            let Some(h) = st.waiters.resume.pop() else {
                break;
            };
            let next = match st.handles.recv_mut(h) {
                Some(HandleKind::Recv {
                    reading: false,
                    behind,
                    ..
                }) => behind.pop_front(),
                _ => None,
            };
            if let Some(r) = next {
                let tid = st.waiters.unpark(r.id).map_or(0, |p| p.tid);
                let io = Io {
                    handle: h,
                    req: r.id,
                    tid,
                    offset: 0,
                    nonblock: false,
                };
                self.read_locked(&mut st, &mut fx, io, r.size, r.reply);
                if let Some(HandleKind::Recv {
                    reading: false,
                    behind,
                    ..
                }) = st.handles.recv_mut(h)
                    && !behind.is_empty()
                {
                    st.waiters.resume.push(h);
                }
            }
        }
        drop(st);
        let suspects = std::mem::take(&mut fx.suspects);
        let remote = fx.remote.take();
        let watch = std::mem::take(&mut fx.watch);
        fx.run(&|kh| {
            if let Some(n) = self.notifier.get() {
                n(kh)
            }
        });
        // pidfd_open and epoll_ctl, unless already watched. A watch the
        // system has no descriptor for is not made (the error is logged):
        // its charge goes, and the process is never taken for gone.
        let unwatched: Vec<Process> = watch
            .into_iter()
            .filter(|p| self.procs.watch_exit(*p).is_err())
            .collect();
        if !unwatched.is_empty() {
            let mut st = self.lock();
            for p in unwatched {
                st.watched.remove(&p);
            }
        }
        if let Some(r) = remote {
            self.dispatch(r.later);
            self.dispatch_soon(r.soon);
        }
        for req in suspects {
            self.interrupt(req);
        }
    }

    // ----- the tree --------------------------------------------------------

    pub fn lookup(&self, parent: MailboxId, name: &OsStr) -> Option<MailboxId> {
        self.lock().tree.lookup(parent, name)
    }

    pub fn exists(&self, id: MailboxId) -> bool {
        self.lock().tree.get(id).is_some()
    }

    pub fn children(&self, parent: MailboxId) -> Vec<(OsString, MailboxId)> {
        self.lock()
            .tree
            .children(parent)
            .map(|c| c.iter().map(|(n, id)| (n.clone(), *id)).collect())
            .unwrap_or_default()
    }

    /// The attributes of a mailbox's directory (`None`) or one of its files,
    /// and its maximum message size.
    pub fn attr(&self, id: MailboxId, file: Option<FileKind>) -> Option<(Attr, usize)> {
        let st = self.lock();
        let m = st.tree.get(id)?;
        let attr = match file {
            None => m.dir,
            Some(k) => m.files[k as usize],
        };
        Some((attr, m.chan.policy.max_message_size))
    }

    pub fn root_policy_attr(&self) -> Attr {
        self.lock().tree.root_policy_attr
    }

    pub fn mkdir(
        &self,
        parent: MailboxId,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<MailboxId> {
        if let Some(r) = self.mkdir_remote(parent, name, Attr { mode, uid, gid }) {
            return r;
        }
        let mut st = self.lock();
        let id = st
            .tree
            .mkdir(parent, name, Attr { mode, uid, gid }, &self.budget)?;
        debug!("mkdir {} ({})", st.tree.path(id), st.tree.default_policy);
        Ok(id)
    }

    /// Destroys a mailbox: its queued messages are dropped, its waiters
    /// get `EIDRM`.
    pub fn rmdir(&self, parent: MailboxId, name: &OsStr) -> Result<()> {
        if let Some(r) = self.rmdir_remote(parent, name) {
            return r;
        }
        let mut st = self.lock();
        let (mut mailbox, path) = st.tree.rmdir(parent, name)?;
        let mut fx = Effects::default();
        let dropped = mailbox.chan.drain(Errno::EIDRM, &mut fx);
        if dropped > 0 {
            info!("rmdir {path}: dropped {dropped} queued message(s)");
        } else {
            debug!("rmdir {path}");
        }
        self.finish(st, fx);
        Ok(())
    }

    /// Moves a mailbox, queue and all.
    pub fn rename(
        &self,
        parent: MailboxId,
        name: &OsStr,
        new_parent: MailboxId,
        new_name: &OsStr,
    ) -> Result<()> {
        if let Some(r) = self.rename_remote(parent, name, new_parent, new_name) {
            return r;
        }
        self.lock().tree.rename(parent, name, new_parent, new_name)
    }

    /// `chmod`/`chown` of a mailbox (`file` None), one of its files, or
    /// (`id` ROOT) the root policy file.
    pub fn set_attr(
        &self,
        id: MailboxId,
        file: Option<FileKind>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Attr> {
        if let Some(r) = self.set_attr_remote(id, file, mode, uid, gid) {
            return r;
        }
        self.lock().tree.set_attr(id, file, mode, uid, gid)
    }

    // ----- direct links ----------------------------------------------------

    /// The peers `caller` has link state with.
    pub fn peers(&self, caller: Process) -> Vec<u32> {
        self.lock().links.peers(caller)
    }

    /// The peers `caller` (thread `tid`) has link state with, by the
    /// numbers it uses; those it cannot see are left out. The system is
    /// asked after the lock is released, and only about peers whose number
    /// the channel does not keep.
    pub fn peers_seen_by(&self, tid: u32, caller: Process) -> Vec<u32> {
        let named = self.lock().links.peers_named(caller);
        let mut out: Vec<u32> = named
            .into_iter()
            .filter_map(|(pid, alias)| alias.or_else(|| self.procs.number_for(tid, pid)))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether messages sent to `me` by a process with pid `pid` that has
    /// since exited still wait to be received: they keep `proc/<pid>`
    /// visible to `me` until they are.
    pub fn pending_from_exited(&self, me: Process, pid: u32) -> bool {
        self.lock().links.pending_from(me, pid)
    }

    /// Whether `p` may act in `role` on `ch`, under its receiver rule. The
    /// system is asked whether a bound process lives (a system call under
    /// the lock) only when the rule would refuse: that process may have
    /// exited before the event of its exit arrived.
    fn admit(&self, ch: &mut Channel, p: Process, role: Role) -> Result<()> {
        ch.admit(p, role, &|q| self.procs.is_alive(q))
    }

    /// A watch of `p`'s exit charged to `uid` (`ENOBUFS` past its share),
    /// or `None` if `p` is watched already. Kept in `State::watched` by the
    /// caller once what needs the watch is admitted.
    fn charge_watch(
        &self,
        watched: &HashMap<Process, Charge>,
        uid: u32,
        p: Process,
    ) -> Result<Option<Charge>> {
        if watched.contains_key(&p) {
            return Ok(None);
        }
        self.budget.charge(uid, self.config.watch_cost).map(Some)
    }

    fn link_policy(&self) -> Policy {
        Policy {
            rule: Rule::Arbitrary,
            ..self.config.default_policy
        }
    }

    // ----- figures -----------------------------------------------------------

    fn daemon_status(&self, st: &State) -> String {
        let broker = self.broker_lines();
        let mut text = status::daemon(&status::DaemonFigures {
            mailboxes: st.tree.len(),
            links: st.links.len(),
            processes: st.links.processes(),
            dropped_on_exit: st.links.dropped_on_exit,
            parked: st.waiters.len(),
            memory_used: self.budget.used(),
            memory_limit: self.budget.limit(),
        });
        text.push_str(&broker);
        text
    }

    /// What the daemon holds of `--max-memory`.
    pub fn memory_used(&self) -> usize {
        self.budget.used()
    }
}

#[cfg(test)]
mod tests;
