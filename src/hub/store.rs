//! The seam between the core and a store that keeps mailboxes elsewhere:
//! the broker of ipcfs(7), ACROSS HOSTS. What stays in the core is what is
//! local to one daemon — descriptors, parked requests, interrupts, the
//! memory bound, receipts owed to local descriptors, `proc/` links. What a
//! [`Store`] keeps is what every mount of the broker shares: the tree of
//! mailboxes, their queues, rule holds, counters, and the first-come list
//! of readers waiting on each mailbox across hosts.
//!
//! A store is called without the core's lock held, and never from a FUSE
//! event-loop thread: the core decides under its lock, a broker thread
//! makes the call, and the answer is applied under the lock again. Waking
//! comes the other way, as [`Event`]s from the store's pump.
//!
//! Each daemon is one *node* (`--node`, by default the host name). A parked
//! request is known to the store by the kernel's request id on its node
//! ([`Wid`]); a node's incarnation holds a lease, and a store that finds
//! the lease lost refuses with `ESTALE` (fenced).

use std::ffi::{OsStr, OsString};

use super::MailboxId;
use super::errno::Result;
use super::framing::Framing;
use super::message::ReceiptTag;
use super::policy::Policy;
use super::receiver_rule::Role;
use super::tree::Attr;

/// A parked request, as the store knows it: the kernel's request id, unique
/// on its node.
pub type Wid = u64;

/// The record of messages handed to this node and not yet acknowledged
/// (the node's inbox entry): what the reaper gives to other readers if the
/// node dies before [`Store::ack`].
pub type FlightId = String;

/// One mailbox as the store keeps it: what the local mirror of the tree is
/// rebuilt from.
#[derive(Clone, Debug, PartialEq)]
pub struct MailboxMeta {
    pub id: MailboxId,
    pub parent: MailboxId,
    pub name: OsString,
    pub dir: Attr,
    /// The files' attributes, in [`super::FileKind::ALL`] order.
    pub files: [Attr; 6],
    pub policy: Policy,
}

/// A message on its way into the store. The sender's node is the store's
/// own; the receipt, when there is one, comes back as [`Event::Receipt`].
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub receipt: Option<ReceiptTag>,
}

/// What a send did.
#[derive(Debug, PartialEq)]
pub enum Sent {
    /// Queued, or handed to a waiting reader.
    Accepted,
    /// No room (capacity, or a rendezvous with no reader waiting), or
    /// senders blocked before it: the sender is listed as blocked on the
    /// mailbox, its messages kept by the store, where readers of every node
    /// can take them (a rendezvous) or let them in (room). [`Event::Sent`]
    /// comes when they are in. Never for `nonblock` (that is `EAGAIN`).
    Full,
}

/// A write that sends messages.
#[derive(Clone, Copy, Debug)]
pub struct Writer {
    pub wid: Wid,
    /// The sending process (a `pair` rule binds it).
    pub pid: u32,
    /// Do not wait: `EAGAIN` rather than [`Sent::Full`].
    pub nonblock: bool,
    /// Listed as blocked before the broker went away: if the store still
    /// lists it, or has let its messages in already, it is left as it is.
    pub again: bool,
}

/// What taking a blocked sender off the store found.
#[derive(Debug, PartialEq)]
pub enum Withdrawn {
    /// Its messages were still waiting: dropped, nothing was sent.
    Cancelled,
    /// Its messages went in before: [`Event::Sent`] is on its way.
    WentIn,
    /// The store does not know it (a broker restarted without its data).
    Unknown,
}

/// A read that wants messages.
#[derive(Clone, Copy, Debug)]
pub struct Reader {
    pub wid: Wid,
    /// The receiving process, as its receipt names it.
    pub pid: u32,
    /// The reader's buffer: `packets` takes one message that fits, `batch`
    /// as many framed messages as fit (at least one), a stream one message
    /// of any length.
    pub size: u32,
    pub framing: Framing,
    /// Do not wait: [`Received::Empty`] rather than [`Received::Parked`].
    pub nonblock: bool,
}

/// What a receive got.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// Messages taken now, oldest first; ack `flight` once they are handed
    /// to the caller.
    Messages {
        msgs: Vec<Vec<u8>>,
        flight: FlightId,
    },
    /// Nothing queued: the reader is listed as waiting on the mailbox, and
    /// its messages come as [`Event::Deliver`].
    Parked,
    /// Nothing queued, and the reader may not wait.
    Empty,
    /// The next message (of this many bytes) does not fit the buffer; it
    /// stays queued.
    TooBig(usize),
}

/// The store's number for one open of a mailbox, in the order of all its
/// opens on every node: given back when the descriptor closes, so that a
/// rule written later binds those that have it open in the order they
/// opened it.
pub type OpenId = u64;

/// A mailbox's shared counters, for its `status` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteStatus {
    pub messages: usize,
    pub bytes: usize,
    pub receivers: usize,
    pub receivers_waiting: usize,
    pub senders_waiting: usize,
    pub sent: u64,
    pub received: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// `exclusive`: the holder; `pair`: the bound processes — as `PID NODE`.
    pub holders: Vec<(u32, String)>,
}

/// Where a store reports [`Event`]s: called from any thread that has not
/// the hub's lock.
pub type Sink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// What the store's pump reports to the core.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Messages for the parked reader `wid` of this node. If it no longer
    /// waits, the core gives them back ([`Store::give_back`]).
    Deliver {
        mailbox: MailboxId,
        wid: Wid,
        msgs: Vec<Vec<u8>>,
        flight: FlightId,
    },
    /// The parked `packets`/`batch` reader `wid` of this node cannot take
    /// the message that came for it (`len` bytes, more than its buffer):
    /// it is no longer listed as waiting, and is answered `EMSGSIZE`, as
    /// on a local mount (the message goes to the next reader, or the
    /// queue, or stays with its blocked sender).
    TooBig {
        mailbox: MailboxId,
        wid: Wid,
        len: usize,
    },
    /// The messages of the blocked sender `wid` of this node went in (a
    /// reader took them, or room let them in): its write completes.
    Sent { mailbox: MailboxId, wid: Wid },
    /// The parked call `wid` of this node is refused by a rule written
    /// meanwhile (`pair`, `exclusive`): it ends with `EBUSY`, and a
    /// blocked sender's messages were dropped.
    Busy { mailbox: MailboxId, wid: Wid },
    /// A message sent from this node with a receipt was received.
    Receipt {
        tag: ReceiptTag,
        pid: u32,
        node: String,
    },
    /// The tree changed on some node: the mirror reloads
    /// ([`Store::tree`]) and the kernel's cached entries are invalidated.
    TreeChanged,
    /// A mailbox was removed: calls blocked on it end with `EIDRM`.
    Removed { mailbox: MailboxId },
    /// The broker became reachable again (after [`Event::Unreachable`]):
    /// parked readers and senders are listed anew.
    Reachable,
    /// The broker cannot be reached.
    Unreachable,
    /// This node's lease was lost: descriptors opened before fail with
    /// `ESTALE`; the store has registered a new incarnation.
    Fenced,
}

/// A store of mailboxes shared by several daemons. Every call may fail with
/// `EHOSTUNREACH` (the broker cannot be reached), `ESTALE` (this node was
/// fenced; only calls for descriptors, which belong to one incarnation:
/// the others have the node registered anew and go through), `ENOBUFS` (the broker's memory is full), or `EIDRM` (the
/// mailbox is gone), besides the errors each call lists.
pub trait Store: Send + Sync {
    /// This daemon's node name.
    fn node(&self) -> &str;
    /// The broker's address, without its password (for `status` and logs).
    fn url(&self) -> &str;
    /// Whether the last exchange with the broker succeeded.
    fn reachable(&self) -> bool;

    /// Every mailbox.
    fn tree(&self) -> Result<Vec<MailboxMeta>>;
    /// Creates a mailbox (`EEXIST`, `ENOENT` for a missing parent).
    fn mkdir(
        &self,
        parent: MailboxId,
        name: &OsStr,
        dir: Attr,
        policy: &Policy,
    ) -> Result<MailboxId>;
    /// Removes a mailbox without child mailboxes (`ENOENT`, `ENOTEMPTY`),
    /// dropping its queue; every node's calls on it end (`Event::Removed`).
    fn rmdir(&self, parent: MailboxId, name: &OsStr) -> Result<MailboxId>;
    /// Moves a mailbox, queue and all (`ENOENT`, `EEXIST`, `EINVAL`).
    fn rename(
        &self,
        parent: MailboxId,
        name: &OsStr,
        new_parent: MailboxId,
        new_name: &OsStr,
    ) -> Result<()>;
    /// Sets the attributes of a mailbox and its files.
    fn set_attrs(&self, id: MailboxId, dir: Attr, files: [Attr; 6]) -> Result<()>;
    fn set_policy(&self, id: MailboxId, policy: &Policy) -> Result<()>;

    /// Admits process `pid` of this node in `role` under the mailbox's rule
    /// (`EBUSY` for `exclusive` and `pair`), and counts it as a receiver.
    fn open(&self, id: MailboxId, pid: u32, role: Role) -> Result<OpenId>;
    /// One descriptor of `pid` in `role` closed (`open`: what its open
    /// returned); `exited`: the process is gone, and its `pair` slot with
    /// it (`open` is then None).
    fn close(
        &self,
        id: MailboxId,
        pid: u32,
        role: Role,
        open: Option<OpenId>,
        exited: bool,
    ) -> Result<()>;

    /// Sends `msgs` (one, or a batch's frames: all or none) for `writer`
    /// (`EMSGSIZE`; `EAGAIN` as [`Sent`] says).
    fn send(&self, id: MailboxId, writer: &Writer, msgs: &[Outgoing]) -> Result<Sent>;
    /// The blocked sender `wid` gave up.
    fn cancel_send(&self, id: MailboxId, wid: Wid) -> Result<Withdrawn>;
    /// Takes messages for `reader`, or lists it as waiting.
    fn receive(&self, id: MailboxId, reader: &Reader) -> Result<Received>;
    /// The parked reader `wid` gave up (interrupted, closed). A message
    /// already on its way to it comes as [`Event::Deliver`] and is given
    /// back.
    fn cancel_receive(&self, id: MailboxId, wid: Wid) -> Result<()>;
    /// Messages delivered to a reader that no longer waits go back to the
    /// head of the queue, or to the next waiting reader.
    fn give_back(&self, id: MailboxId, flight: &FlightId) -> Result<()>;
    /// Messages of `flight` reached their reader.
    fn ack(&self, flight: &FlightId) -> Result<()>;
    /// [`Store::ack`] of each of `flights`, in one exchange.
    fn ack_all(&self, flights: &[FlightId]) -> Result<()>;
    /// [`Store::ack_all`] of `acks` (earlier reads of the same reader),
    /// then [`Store::receive`], in one exchange: a reader that reads on
    /// acknowledges what it took with its next read.
    fn ack_and_receive(
        &self,
        id: MailboxId,
        reader: &Reader,
        acks: &[FlightId],
    ) -> Result<Received>;
    /// A reader closed its descriptor in the middle of a message.
    fn truncated(&self, id: MailboxId) -> Result<()>;
    fn status(&self, id: MailboxId) -> Result<RemoteStatus>;

    /// Renews this node's lease and reaps nodes whose lease ran out.
    fn heartbeat(&self) -> Result<()>;
    /// Blocks reading this node's inbox and reports what arrives to `on`,
    /// until [`Store::stop`]; reconnects by itself when the broker goes
    /// away. [`Event::Fenced`] comes through `on` from whichever thread
    /// finds the lease lost (a call, the heartbeat, the pump), before any
    /// call uses the new incarnation.
    fn pump(&self, on: Sink);
    /// Ends the pump and releases this node's lease (its holds go at once).
    fn stop(&self);
}
