//! A reference model of the core, and a property test that runs random
//! operations of several processes against both and compares everything
//! they show.
//!
//! The model (`Model`, in `reference/`) is written from ipcfs(7), not from
//! the core: per channel (a mailbox, or one direction of a direct link) a
//! queue of messages, a policy, a map from receiving process to its own
//! queue (broadcast copies), the pair and the exclusive holder, the blocked
//! readers and the blocked senders in waiting order, and the counters; per
//! descriptor its kind, its process, for `recv` the message it is in the
//! middle of, for a read-write `send` its receipts. Each operation is
//! applied to the real [`Hub`] (fake processes, no mount) and to the model,
//! and the test compares: the data and errno of every reply (also of
//! blocked reads, writes and receipt reads answered later), the outcome of
//! `mkdir`/`rmdir`/`open`, the text of `status` descriptors, and after every
//! operation each mailbox's `status` (every key but
//! `memory-used`/`memory-limit`), the names in the tree, `proc/status`
//! (links, processes, dropped-on-exit, parked) and every link's
//! `proc/<pid>/status` as each live process sees it.
//!
//! Operations, from 4 process slots (a slot's process is replaced by a new
//! pid when it exits) on the mailboxes `a`, `b` (both made first) and `a/c`,
//! capacity 1 by default (mailboxes and links): `mkdir`, `rmdir`; `open` of
//! `send` (write-only, or read-write: receipts), `recv`, `packets` and
//! `batch` (read-only, write-only, read-write) and `status`; the same files
//! of `proc/<pid>/` of another slot's process; writes (one message, a batch
//! of frames, a malformed batch), non-blocking and blocking; reads
//! (messages, or receipts), non-blocking and blocking; close; writes of a
//! mailbox's or the root's `policy` (any rule, capacity 0-3 or unlimited,
//! max-message-size, invalid texts); an interrupt of a blocked read, write
//! or receipt read; a process exit (`World::exit`, then `Hub::watch_once`).
//! Reads and writes mostly name an open descriptor that can do them, now and
//! then any descriptor ever opened (closed, or of another kind: `EBADF`).
//! About a third of the cases first run a scenario random operations rarely
//! reach (`blocked_batch`): a batch blocked with nothing queued, after the
//! capacity dropped below its frame count, then reads of it.
//! 128 cases of up to 80 operations run in about 4 s.
//!
//! What the model leaves out, so that it can predict every result exactly:
//! - A process exit first interrupts its blocked calls and closes all its
//!   descriptors (as the kernel does for a process that shares none), so no
//!   descriptor outlives its process: the pruning of exited members that
//!   an inherited descriptor would need is not covered. Pids are not reused.
//! - A descriptor with a blocked call is not closed (the kernel sends no
//!   release while a request is in flight): such a close is skipped.
//! - At most one read waits behind the blocked read of a `recv`
//!   descriptor (a third blocking read of it is skipped), so the order in
//!   which the core resumes such reads never matters.
//! - Links are opened only to live processes of other slots: no link of a
//!   process to itself, no open of `proc/<pid>/` of an exited process (the
//!   lookup is the adapter's), no `proc/<pid>/status` descriptors (every
//!   link's status is compared after each operation instead). Links use
//!   the mount's policy (arbitrary, capacity 1): no rule on links.
//! - Memory is not bounded (`--max-memory` of 1 GiB): no `ENOBUFS`/`ENOSPC`.
//! - No rename, no chmod, no poll, no shutdown, no read or write
//!   continuations (every request is at offset 0), no `O_APPEND`.
//! - All processes are root: permissions (and the kill(2) rule of links)
//!   are the kernel's, not the core's.
//!
//! The same property runs on a broker mount (`broker.rs`: a real
//! `redis-server`, 32 cases, a few seconds): mailbox operations only (no
//! links), rules arbitrary, exclusive and pair, receipts `PID NODE`,
//! holders `PID@NODE`, the broker lines in `status`. Each operation waits
//! until no answer is on its way (jobs run on the test's thread, the pump
//! drained). Nothing is left out there as a divergence any more; what
//! it found is fixed: receipts of messages dropped by `rmdir` fail with
//! EIDRM (also for a second blocked receipt read), writes no longer pass
//! blocked senders, blocked senders' messages wait on the broker (reads
//! take them, a policy written later does not check them again, room is
//! counted as a local mount counts it), and a rule written on a busy
//! mailbox binds its openers in open order, reads and writes claiming
//! free slots.
//!
//! This file is the harness that runs both and compares (`Run`) and the
//! property; `operations.rs` holds the operations and their strategies,
//! `reference/` the model.

mod broker;
mod operations;
mod reference;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use broker::{Broker, Redis};
use operations::{ALL_RULES, ANY_FD, BROKER_RULES, Kind, NEVER, Op, SLOTS, ops};
use reference::{Model, Pol, frame};

fn show(got: &Got) -> String {
    match got {
        Got::Data(d) => format!("Data(b\"{}\")", d.escape_ascii()),
        Got::Err(e) => Errno(*e).name().to_string(),
        other => format!("{other:?}"),
    }
}

fn outcome<T: std::fmt::Debug>(r: &std::result::Result<T, i32>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => Errno(*e).name().to_string(),
    }
}

fn errno_of<T>(r: std::result::Result<T, errno::Refusal>) -> std::result::Result<T, i32> {
    r.map_err(|e| e.errno.0)
}

/// A status text as compared: every key but the memory figures.
fn comparable(status: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    status
        .into_iter()
        .filter(|(k, _)| !k.starts_with("memory-"))
        .collect()
}

struct Run {
    hub: Arc<Hub>,
    /// On a broker mount: the store, and how its answers are awaited.
    broker: Option<Broker>,
    world: Arc<World>,
    model: Model,
    callers: [Caller; SLOTS],
    /// The real id each name had last (stale once removed).
    ids: BTreeMap<&'static str, MailboxId>,
    /// The real handle of each model descriptor.
    handles: Vec<u64>,
    /// Blocked calls not answered yet.
    pending: BTreeMap<u64, Answer>,
    /// Every pid a slot has had.
    pids: Vec<u32>,
    messages: usize,
    trace: Vec<String>,
}

impl Run {
    fn new() -> Run {
        // Capacity 1 by default (mailboxes and links), so that writes block.
        let (hub, world) = hub_with_memory("arbitrary capacity=1", 1 << 30);
        let callers = std::array::from_fn(|i| world.spawn(i as u32 + 1, 0));
        let default = hub.config().default_policy;
        let model = Model::new(Pol {
            rule: Rule::Arbitrary,
            capacity: Some(1),
            max: MAX,
        });
        assert_eq!(
            (default.rule, default.capacity, default.max_message_size),
            (Rule::Arbitrary, Some(1), MAX),
            "the harness's default policy"
        );
        Run {
            hub: Arc::new(hub),
            broker: None,
            world,
            model,
            callers,
            ids: BTreeMap::new(),
            handles: Vec::new(),
            pending: BTreeMap::new(),
            pids: (1..=SLOTS as u32).collect(),
            messages: 0,
            trace: Vec::new(),
        }
    }

    /// A run on a broker mount of `redis` (emptied first), as node `node`.
    fn on_broker(redis: &Redis, node: String) -> Run {
        let mut run = Run::new();
        run.broker = Some(Broker::attach(redis, node.clone(), &run.hub));
        run.model.node = Some(node);
        run
    }

    /// On a broker mount, waits until no answer is on its way.
    fn drive(&mut self) -> std::result::Result<(), TestCaseError> {
        let Some(b) = self.broker.as_mut() else {
            return Ok(());
        };
        b.drive(&self.hub).map_err(|e| self.fail(e))
    }

    /// A status text the model predicts, as this mount shows it: on a
    /// broker mount holders are `PID@NODE`, and the broker lines follow
    /// (ipcfs(7), ACROSS HOSTS).
    fn shown(&self, mut status: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let Some(b) = &self.broker else {
            return status;
        };
        for key in ["pair", "holder"] {
            if let Some(v) = status.get_mut(key)
                && v != "-"
            {
                *v = v
                    .split(' ')
                    .map(|p| format!("{p}@{}", b.node))
                    .collect::<Vec<_>>()
                    .join(" ");
            }
        }
        status.insert("broker".into(), b.url.clone());
        status.insert("node".into(), b.node.clone());
        status.insert("broker-reachable".into(), "yes".into());
        status
    }

    fn fail(&self, what: String) -> TestCaseError {
        TestCaseError::fail(format!(
            "{what}\n--- operations as run:\n{}",
            self.trace.join("\n")
        ))
    }

    /// An open in the core (`real`: its handle) and in the model (`model`:
    /// its descriptor): both succeed, or both fail alike.
    fn opened(
        &mut self,
        real: std::result::Result<u64, i32>,
        model: std::result::Result<usize, i32>,
    ) -> std::result::Result<(), TestCaseError> {
        if let Ok(h) = real {
            self.handles.push(h);
        }
        let shown = model.map(|fd| self.describe(fd));
        self.note(format!("-> {}", outcome(&shown)));
        self.check("open", real.is_ok(), model.is_ok())?;
        self.check("open", real.err(), model.err())
    }

    fn check<T: PartialEq + std::fmt::Debug>(
        &self,
        what: &str,
        real: T,
        model: T,
    ) -> std::result::Result<(), TestCaseError> {
        if real == model {
            Ok(())
        } else {
            Err(self.fail(format!(
                "{what}: the core says {real:?}, the model {model:?}"
            )))
        }
    }

    /// Compares two status texts, naming the keys that differ.
    fn check_status(
        &self,
        what: &str,
        real: BTreeMap<String, String>,
        model: BTreeMap<String, String>,
    ) -> std::result::Result<(), TestCaseError> {
        if real == model {
            return Ok(());
        }
        let keys: std::collections::BTreeSet<&String> = real.keys().chain(model.keys()).collect();
        let diff: Vec<String> = keys
            .into_iter()
            .filter(|k| real.get(*k) != model.get(*k))
            .map(|k| {
                format!(
                    "{k}: the core says {:?}, the model {:?}",
                    real.get(k),
                    model.get(k)
                )
            })
            .collect();
        Err(self.fail(format!("{what}: {}", diff.join("; "))))
    }

    fn id_of(&self, name: &str) -> MailboxId {
        self.ids.get(name).copied().unwrap_or(NEVER)
    }

    /// (parent id, leaf name) of a mailbox name.
    fn place(&self, name: &'static str) -> (MailboxId, &'static str) {
        match name.split_once('/') {
            Some((parent, leaf)) => (self.id_of(parent), leaf),
            None => (ROOT, name),
        }
    }

    fn describe(&self, fd: usize) -> String {
        let f = &self.model.fds[fd];
        let name = match f.peer {
            Some(peer) => format!("proc/{peer}"),
            None => self
                .model
                .by_name
                .iter()
                .find(|(_, m)| **m == f.mbox)
                .map_or("(removed)".to_string(), |(n, _)| n.to_string()),
        };
        let closed = if f.open { "" } else { " closed" };
        format!("fd{fd}[pid {} {:?} on {name}{closed}]", f.pid, f.kind)
    }

    /// The bytes of a write: fresh letters for each message.
    fn frames(&mut self, lens: &[usize]) -> Vec<Vec<u8>> {
        lens.iter()
            .map(|len| {
                self.messages += 1;
                (0..*len)
                    .map(|i| b'a' + ((self.messages * 3 + i) % 26) as u8)
                    .collect()
            })
            .collect()
    }

    /// Runs `ops`, after making the mailboxes `a` and `b`.
    fn run(&mut self, ops: &[Op]) -> std::result::Result<(), TestCaseError> {
        for name in ["a", "b"] {
            self.trace.push(format!("(first) Mkdir({name:?})"));
            self.step(&Op::Mkdir(name))?;
            self.drive()?;
        }
        for (i, op) in ops.iter().enumerate() {
            self.trace.push(format!("#{i} {op:?}"));
            self.step(op)?;
            self.drive()?;
            self.settle()?;
            self.compare_tree()?;
            self.compare_links()?;
        }
        Ok(())
    }

    fn note(&mut self, line: String) {
        if let Some(last) = self.trace.last_mut() {
            last.push_str("\n     ");
            last.push_str(&line);
        }
    }

    fn step(&mut self, op: &Op) -> std::result::Result<(), TestCaseError> {
        match op {
            Op::Mkdir(name) => {
                let (parent, leaf) = self.place(name);
                let real = errno_of(self.hub.mkdir(parent, OsStr::new(leaf), 0o755, 0, 0));
                let model = self.model.mkdir(name);
                self.note(format!("-> {}", outcome(&real)));
                if let Ok(id) = real {
                    self.ids.insert(name, id);
                }
                self.check("mkdir", real.map(|_| ()), model)
            }
            Op::Rmdir(name) => {
                let (parent, leaf) = self.place(name);
                let real = errno_of(self.hub.rmdir(parent, OsStr::new(leaf)));
                let model = self.model.rmdir(name);
                self.note(format!("-> {}", outcome(&real)));
                self.check("rmdir", real, model)
            }
            Op::Open { who, name, kind } => {
                let caller = self.callers[*who];
                let (file, access) = kind.target();
                let target = Target::Mailbox(self.id_of(name), file);
                let real = errno_of(self.hub.open(caller, target, access));
                let model = self.model.open(caller.process.pid, name, *kind);
                self.opened(real, model)
            }
            Op::Link { who, peer, kind } => {
                let caller = self.callers[*who];
                let peer = self.callers[*peer].process.pid;
                let (file, access) = kind.target();
                let real = errno_of(self.hub.open(caller, Target::Link(peer, file), access));
                let model = self.model.open_link(caller.process.pid, peer, *kind);
                self.opened(real, model)
            }
            Op::Write {
                fd,
                lens,
                cut,
                block,
            } => {
                let Some(fd) = self.pick(*fd, Kind::sends) else {
                    return Ok(());
                };
                let frames = self.frames(lens);
                let data = match self.model.fds[fd].kind {
                    Kind::Batch(_) => {
                        let mut out = Vec::new();
                        for f in &frames {
                            frame(&mut out, f);
                        }
                        if *cut {
                            out.pop();
                        }
                        out
                    }
                    _ => frames.concat(),
                };
                let pid = self.model.fds[fd].pid;
                let a = Answer::default();
                let model = self
                    .model
                    .write(fd, &frames, *cut, data.len(), *block, a.req());
                let io = io(&a, self.handles[fd], pid, 0, !block);
                self.hub.write(io, &data, Box::new(a.clone()));
                self.drive()?;
                let real = a.got();
                self.note(format!(
                    "{} writes b\"{}\" (req {}) -> {}",
                    self.describe(fd),
                    data.escape_ascii(),
                    a.req(),
                    show(&real)
                ));
                self.answer("write", a, model)
            }
            Op::Read { fd, size, block } => {
                let readable = |k: Kind| k.receives() || matches!(k, Kind::Status | Kind::SendRw);
                let Some(fd) = self.pick(*fd, readable) else {
                    return Ok(());
                };
                let f = &self.model.fds[fd];
                let pid = f.pid;
                if f.open && f.kind == Kind::Status {
                    let real = read(&self.hub, self.handles[fd], pid, 4096, true).got();
                    let Got::Data(text) = real else {
                        return Err(self.fail(format!("status read: {real:?}")));
                    };
                    let text = String::from_utf8(text).expect("status is text");
                    let real = comparable(text.lines().map(|l| {
                        let (k, v) = l.split_once(": ").expect("key: value");
                        (k.to_string(), v.to_string())
                    }));
                    self.note(format!("{} reads its snapshot", self.describe(fd)));
                    let snapshot = self.shown(self.model.fds[fd].snapshot.clone());
                    return self.check_status("status descriptor", real, snapshot);
                }
                let f = &self.model.fds[fd];
                if *block && f.kind == Kind::Recv && f.open && !f.behind.is_empty() {
                    self.note("skipped: a second read behind a blocked read".into());
                    return Ok(());
                }
                let a = Answer::default();
                let model = self.model.read(fd, *size, *block, a.req());
                self.hub.read(
                    io(&a, self.handles[fd], pid, 0, !block),
                    *size,
                    Box::new(a.clone()),
                );
                self.drive()?;
                let real = a.got();
                self.note(format!(
                    "{} reads (req {}) -> {}",
                    self.describe(fd),
                    a.req(),
                    show(&real)
                ));
                self.answer("read", a, model)
            }
            Op::Close { fd } => {
                let Some(fd) = self.pick(*fd, |_| true) else {
                    return Ok(());
                };
                if self.model.has_parked(fd) {
                    self.note("skipped: a call of it is blocked".into());
                    return Ok(());
                }
                self.note(format!("closes {}", self.describe(fd)));
                self.hub.release(self.handles[fd]);
                self.model.close(fd);
                Ok(())
            }
            Op::Policy { who, name, text } => {
                let caller = self.callers[*who];
                let target = match name {
                    None => Target::RootPolicy,
                    Some(n) => Target::Mailbox(self.id_of(n), FileKind::Policy),
                };
                let bytes = text.render();
                let real = match self.hub.open(caller, target, acc(true, true)) {
                    Err(e) => Got::Err(e.errno.0),
                    Ok(h) => {
                        let got = write(&self.hub, h, caller.process.pid, bytes.as_bytes(), true);
                        self.hub.release(h);
                        self.drive()?;
                        got.got()
                    }
                };
                let model = self.model.policy(*name, text);
                self.note(format!("{:?} -> {}", bytes, show(&real)));
                self.check("policy", real, model)
            }
            Op::Interrupt { nth } => {
                let parked = self.model.parked();
                if parked.is_empty() {
                    return Ok(());
                }
                let (req, pid) = parked[nth % parked.len()];
                self.note(format!("interrupts req {req} of pid {pid}"));
                self.interrupt(req, pid);
                Ok(())
            }
            Op::Exit { who } => self.exit(*who),
        }
    }

    /// Compares a read's or write's reply; when the model blocks it, the
    /// reply is compared once the operation has ended (in [`Run::settle`]):
    /// the same operation may answer it (a blocked sender let in).
    fn answer(
        &mut self,
        what: &str,
        a: Answer,
        model: Got,
    ) -> std::result::Result<(), TestCaseError> {
        if model == Got::Parked {
            self.pending.insert(a.req(), a);
            return Ok(());
        }
        self.check(what, a.got(), model)
    }

    /// The descriptor an operation names: `fd` below [`ANY_FD`] picks
    /// among the open descriptors that `suits` (none: the operation is
    /// skipped), above it among all descriptors ever opened, closed ones
    /// and those of other kinds too.
    fn pick(&self, fd: usize, suits: impl Fn(Kind) -> bool) -> Option<usize> {
        let fds = &self.model.fds;
        let suitable: Vec<usize> = (0..fds.len())
            .filter(|i| fds[*i].open && suits(fds[*i].kind))
            .collect();
        if fd < ANY_FD {
            (!suitable.is_empty()).then(|| suitable[fd % suitable.len()])
        } else {
            (!fds.is_empty()).then(|| fd % fds.len())
        }
    }

    fn interrupt(&mut self, req: u64, pid: u32) {
        self.world.signal(pid);
        self.hub.interrupt(req);
        self.model.interrupt(req);
    }

    /// A process exits: its blocked calls are interrupted, its descriptors
    /// closed, its exit reported; a new process takes its slot.
    fn exit(&mut self, who: usize) -> std::result::Result<(), TestCaseError> {
        let pid = self.callers[who].process.pid;
        while let Some(&(req, _)) = self.model.parked().iter().find(|(_, p)| *p == pid) {
            self.note(format!("interrupts req {req}"));
            self.interrupt(req, pid);
            self.drive()?;
            self.settle()?;
        }
        for fd in 0..self.model.fds.len() {
            if self.model.fds[fd].pid == pid && self.model.fds[fd].open {
                self.note(format!("closes {}", self.describe(fd)));
                self.hub.release(self.handles[fd]);
                self.model.close(fd);
            }
        }
        self.world.exit(pid);
        self.hub.watch_once(Duration::ZERO);
        self.model.exited(pid);
        self.callers[who] = self.world.spawn(pid + 10, 0);
        self.pids.push(pid + 10);
        Ok(())
    }

    /// Compares the blocked calls: those the model answered, and those
    /// still waiting.
    fn settle(&mut self) -> std::result::Result<(), TestCaseError> {
        for (req, model) in self.model.finish() {
            let Some(a) = self.pending.remove(&req) else {
                return Err(self.fail(format!("the model answered req {req}, never parked")));
            };
            let real = a.got();
            self.note(format!("blocked call req {req} -> {}", show(&real)));
            self.check(&format!("blocked call req {req}"), real, model)?;
        }
        for (req, a) in &self.pending {
            self.check(&format!("blocked call req {req}"), a.got(), Got::Parked)?;
        }
        Ok(())
    }

    /// A status text (`Target::DaemonStatus` or a link's) as compared.
    fn text_of(&self, caller: Caller, target: Target) -> BTreeMap<String, String> {
        let h = self
            .hub
            .open(caller, target, acc(true, false))
            .expect("a status opens");
        let Got::Data(text) = read(&self.hub, h, caller.process.pid, 4096, true).got() else {
            panic!("status unreadable")
        };
        self.hub.release(h);
        comparable(String::from_utf8(text).expect("text").lines().map(|l| {
            let (k, v) = l.split_once(": ").expect("key: value");
            (k.to_string(), v.to_string())
        }))
    }

    /// Compares `proc/status` and every link's status as each live process
    /// sees it.
    fn compare_links(&self) -> std::result::Result<(), TestCaseError> {
        let real = self.text_of(self.callers[0], Target::DaemonStatus);
        let model = self.model.daemon_status();
        self.check_status("proc/status", real, self.shown(model))?;
        if self.broker.is_some() {
            // No links on a broker mount's run.
            return Ok(());
        }
        for caller in &self.callers {
            let me = caller.process.pid;
            for &peer in self.pids.iter().filter(|p| **p != me) {
                if !self.model.visible(me, peer) {
                    continue;
                }
                let real = self.text_of(*caller, Target::Link(peer, FileKind::Status));
                let model = self.model.link_status(me, peer);
                self.check_status(&format!("proc/{peer}/status of {me}"), real, model)?;
            }
        }
        Ok(())
    }

    /// Compares each mailbox's status and the names in the tree.
    fn compare_tree(&self) -> std::result::Result<(), TestCaseError> {
        let names = |parent: MailboxId| {
            self.hub
                .children(parent)
                .into_iter()
                .map(|(n, _)| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        let mut real = names(ROOT);
        if self.model.by_name.contains_key("a") {
            real.extend(names(self.id_of("a")).iter().map(|n| format!("a/{n}")));
        }
        real.sort();
        let model: Vec<String> = self.model.by_name.keys().map(|n| n.to_string()).collect();
        self.check("mailboxes", real, model)?;
        for (name, m) in &self.model.by_name {
            let real = comparable(status_of(&self.hub, self.id_of(name), self.callers[0]));
            self.check_status(
                &format!("status of {name}"),
                real,
                self.shown(self.model.boxes[*m].status()),
            )?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        // Shrunk failures are reported, not written beside the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_core_agrees_with_the_model(ops in ops(ALL_RULES, true)) {
        Run::new().run(&ops)?;
    }
}

/// The same on a broker mount: fewer cases (each makes a few hundred
/// round trips to a real `redis-server`), mailbox operations only (no
/// `proc/` links: they stay local), the rules a broker mount's model
/// covers (not `broadcast`).
#[test]
fn the_core_on_a_broker_agrees_with_the_model() {
    let redis = Redis::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let n = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&ops(BROKER_RULES, false), |ops| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Run::on_broker(&redis, format!("model{n}")).run(&ops)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A case the model test on a broker once found (shrunk): after `pair`
/// then `exclusive`, the holder exits and the hold passes to the process
/// that has received the longest (pid 3, receiving since before pid 1,
/// though its first descriptor closed), not to the earliest descriptor
/// still open.
#[test]
fn on_a_broker_an_exclusive_hold_passes_to_the_longest_receiver() {
    use operations::Text;
    let redis = Redis::start();
    let open = |who, name, kind| Op::Open { who, name, kind };
    let policy = |who, rule| Op::Policy {
        who,
        name: Some("a"),
        text: Text::Set {
            rule: Some(rule),
            capacity: Some(None),
            max: None,
        },
    };
    let ops = vec![
        open(3, "a", Kind::Recv),
        Op::Mkdir("a/c"),
        open(2, "a", Kind::Recv),
        open(0, "a", Kind::Recv),
        open(0, "a", Kind::Send),
        open(0, "a", Kind::Recv),
        policy(0, Rule::Pair),
        open(0, "a/c", Kind::Recv),
        open(1, "a", Kind::Status),
        open(0, "a", Kind::Status),
        Op::Close { fd: 15 },
        Op::Close { fd: 14 },
        open(2, "a", Kind::Recv),
        open(3, "b", Kind::SendRw),
        policy(1, Rule::Exclusive),
        Op::Rmdir("b"),
        Op::Close { fd: 3 },
        Op::Close { fd: 8 },
        Op::Exit { who: 3 },
    ];
    if let Err(e) = Run::on_broker(&redis, "hold".into()).run(&ops) {
        panic!("{e}");
    }
}
