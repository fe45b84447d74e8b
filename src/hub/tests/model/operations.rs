//! The operations of the model test and their strategies: what a process
//! slot may do (mkdir, rmdir, open of a mailbox's or a link's files, write,
//! read, close, policy writes, interrupts, exits) and how proptest draws
//! sequences of them.

use proptest::prelude::*;

use super::reference::Pol;
use super::*;

/// Process slots; slot `i` runs pid `i + 1`, then `i + 11`, `i + 21`… after
/// each exit.
pub(super) const SLOTS: usize = 4;
/// Descriptor numbers in operations are below `ANY_FD + 2`; see [`Run::pick`].
pub(super) const ANY_FD: usize = 14;
/// A mailbox id the core never gives (above its largest).
pub(super) const NEVER: MailboxId = MAX_MAILBOX_ID + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    R,
    W,
    RW,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Send,
    /// `send` opened read-write: with receipts.
    SendRw,
    Recv,
    Packets(Dir),
    Batch(Dir),
    Status,
}

impl Kind {
    /// Reads of it receive (it counts as a receiver).
    pub(super) fn receives(self) -> bool {
        match self {
            Kind::Recv => true,
            Kind::Packets(d) | Kind::Batch(d) => d != Dir::W,
            Kind::Send | Kind::SendRw | Kind::Status => false,
        }
    }

    /// Writes to it send.
    pub(super) fn sends(self) -> bool {
        match self {
            Kind::Send | Kind::SendRw => true,
            Kind::Packets(d) | Kind::Batch(d) => d != Dir::R,
            Kind::Recv | Kind::Status => false,
        }
    }

    /// The file and the access an `open` of it asks for.
    pub(super) fn target(self) -> (FileKind, Access) {
        let file = match self {
            Kind::Send | Kind::SendRw => FileKind::Send,
            Kind::Recv => FileKind::Recv,
            Kind::Packets(_) => FileKind::Packets,
            Kind::Batch(_) => FileKind::Batch,
            Kind::Status => FileKind::Status,
        };
        (
            file,
            acc(
                self.receives() || matches!(self, Kind::Status | Kind::SendRw),
                self.sends(),
            ),
        )
    }
}

/// The text written to a `policy` file.
#[derive(Clone, Debug)]
pub(super) enum Text {
    Set {
        rule: Option<Rule>,
        capacity: Option<Option<usize>>,
        max: Option<usize>,
    },
    Bad(&'static str),
}

pub(super) const BAD_TEXTS: [&str; 5] = [
    "pair exclusive",
    "capacity=x",
    "capacity=1 capacity=2",
    "max-message-size=2000",
    "fifo",
];

impl Text {
    pub(super) fn render(&self) -> String {
        match self {
            Text::Bad(t) => format!("{t}\n"),
            Text::Set {
                rule,
                capacity,
                max,
            } => {
                let mut words = Vec::new();
                if let Some(r) = rule {
                    words.push(r.name().to_string());
                }
                match capacity {
                    Some(Some(n)) => words.push(format!("capacity={n}")),
                    Some(None) => words.push("capacity=unlimited".into()),
                    None => {}
                }
                if let Some(m) = max {
                    words.push(format!("max-message-size={m}"));
                }
                format!("{}\n", words.join(" "))
            }
        }
    }

    /// The policy that `current` becomes, or `None` for `EINVAL`.
    pub(super) fn apply(&self, current: Pol) -> Option<Pol> {
        match *self {
            Text::Bad(_)
            | Text::Set {
                rule: None,
                capacity: None,
                max: None,
            } => None,
            Text::Set {
                rule,
                capacity,
                max,
            } => Some(Pol {
                rule: rule.unwrap_or(current.rule),
                capacity: capacity.unwrap_or(current.capacity),
                max: max.unwrap_or(current.max),
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Mkdir(&'static str),
    Rmdir(&'static str),
    Open {
        who: usize,
        name: &'static str,
        kind: Kind,
    },
    /// Opens `proc/<pid of slot peer>/<kind>` (another slot's process).
    Link {
        who: usize,
        peer: usize,
        kind: Kind,
    },
    /// One message of the frames' bytes on `send`/`packets`; the frames
    /// on `batch` (`cut`: its last byte missing, a malformed batch);
    /// `block`: without O_NONBLOCK.
    Write {
        fd: usize,
        lens: Vec<usize>,
        cut: bool,
        block: bool,
    },
    Read {
        fd: usize,
        size: u32,
        block: bool,
    },
    Close {
        fd: usize,
    },
    /// `name` None: the root policy.
    Policy {
        who: usize,
        name: Option<&'static str>,
        text: Text,
    },
    /// Interrupts the `nth` blocked call (modulo their number).
    Interrupt {
        nth: usize,
    },
    Exit {
        who: usize,
    },
}

pub(super) fn kind() -> impl Strategy<Value = Kind> {
    let dir = prop::sample::select(&[Dir::RW, Dir::R, Dir::W][..]);
    prop_oneof![
        2 => Just(Kind::Send),
        2 => Just(Kind::SendRw),
        3 => Just(Kind::Recv),
        2 => dir.clone().prop_map(Kind::Packets),
        2 => dir.prop_map(Kind::Batch),
        1 => Just(Kind::Status),
    ]
}

/// Mostly the two mailboxes made first; `a/c` now and then.
pub(super) fn name() -> impl Strategy<Value = &'static str> {
    prop_oneof![5 => Just("a"), 2 => Just("b"), 1 => Just("a/c")]
}

/// Every rule: what a local mount's mailboxes take.
pub(super) const ALL_RULES: &[Rule] = &Rule::ALL;
/// The rules of a broker mount's mailboxes the model test covers there.
pub(super) const BROKER_RULES: &[Rule] = &[Rule::Arbitrary, Rule::Exclusive, Rule::Pair];

pub(super) fn text(rules: &'static [Rule]) -> impl Strategy<Value = Text> {
    let capacity = prop_oneof![4 => (0usize..4).prop_map(Some), 1 => Just(None)];
    prop_oneof![
        6 => (
            prop::option::weighted(0.7, prop::sample::select(rules)),
            prop::option::of(capacity),
            prop::option::weighted(0.3, prop::sample::select(&[3usize, 6, MAX][..])),
        )
            .prop_map(|(rule, capacity, max)| Text::Set {
                rule,
                capacity,
                max
            }),
        1 => prop::sample::select(&BAD_TEXTS[..]).prop_map(Text::Bad),
    ]
}

/// A link's files: no `status` (every link's status is compared after
/// each operation).
pub(super) fn link_kind() -> impl Strategy<Value = Kind> {
    kind().prop_map(|k| if k == Kind::Status { Kind::Recv } else { k })
}

/// An operation; `links`: opens of `proc/<pid>/` files too (a broker
/// mount's links are local: the broker run leaves them out).
pub(super) fn op(rules: &'static [Rule], links: bool) -> impl Strategy<Value = Op> {
    let fd = 0usize..ANY_FD + 2;
    prop_oneof![
        2 => name().prop_map(Op::Mkdir),
        1 => name().prop_map(Op::Rmdir),
        6 => (0..SLOTS, name(), kind()).prop_map(|(who, name, kind)| Op::Open {
            who,
            name,
            kind
        }),
        // Without links, these open a mailbox's file instead.
        3 => (0..SLOTS, 1..SLOTS, link_kind(), name()).prop_map(move |(who, peer, kind, name)| {
            if links {
                Op::Link {
                    who,
                    peer: (who + peer) % SLOTS,
                    kind,
                }
            } else {
                Op::Open { who, name, kind }
            }
        }),
        9 => (
            fd.clone(),
            prop::collection::vec(1usize..=8, 1..=3),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.5),
        )
            .prop_map(|(fd, lens, cut, block)| Op::Write {
                fd,
                lens,
                cut,
                block
            }),
        9 => (fd.clone(), 1u32..=24, prop::bool::weighted(0.3))
            .prop_map(|(fd, size, block)| Op::Read { fd, size, block }),
        2 => fd.prop_map(|fd| Op::Close { fd }),
        3 => (0..SLOTS, prop::option::weighted(0.85, name()), text(rules))
            .prop_map(|(who, name, text)| Op::Policy { who, name, text }),
        2 => (0usize..4).prop_map(|nth| Op::Interrupt { nth }),
        1 => (0..SLOTS).prop_map(|who| Op::Exit { who }),
    ]
}

/// A scenario random operations rarely reach: a batch blocks behind a
/// queued message, the capacity drops below the batch's frame count (0
/// too), and the queue drains, so the batch stays blocked with nothing
/// queued. A reader must not pull a single frame out of it (ipcfs(7),
/// PACKETS AND BATCH: a batch goes in whole). Run first in a case, so that
/// its descriptor numbers name its own descriptors.
pub(super) fn blocked_batch(rules: &'static [Rule]) -> impl Strategy<Value = Vec<Op>> {
    let reader =
        prop::sample::select(&[Kind::Recv, Kind::Packets(Dir::R), Kind::Batch(Dir::R)][..]);
    (
        prop::sample::select(&["a", "b"][..]),
        prop::option::of(prop::sample::select(rules)),
        2usize..=3,
        prop::collection::vec(1usize..=8, 3),
        prop::bool::ANY,
        reader,
        prop::collection::vec(prop::bool::weighted(0.3), 3),
    )
        .prop_flat_map(|(name, rule, capacity, lens, by_packets, reader, blocks)| {
            (0..capacity).prop_map(move |lower| {
                let policy = |rule, capacity| Op::Policy {
                    who: 0,
                    name: Some(name),
                    text: Text::Set {
                        rule,
                        capacity: Some(Some(capacity)),
                        max: None,
                    },
                };
                let sender = if by_packets {
                    Kind::Packets(Dir::W)
                } else {
                    Kind::Send
                };
                let mut ops = vec![
                    policy(rule, capacity),
                    Op::Open {
                        who: 0,
                        name,
                        kind: sender,
                    },
                    Op::Open {
                        who: 0,
                        name,
                        kind: Kind::Batch(Dir::W),
                    },
                    // Descriptor 0: one message queued.
                    Op::Write {
                        fd: 0,
                        lens: vec![lens[0]],
                        cut: false,
                        block: false,
                    },
                    // Descriptor 1: a batch filling the capacity blocks.
                    Op::Write {
                        fd: 1,
                        lens: lens[..capacity].to_vec(),
                        cut: false,
                        block: true,
                    },
                    policy(None, lower),
                    Op::Open {
                        who: 1,
                        name,
                        kind: reader,
                    },
                ];
                ops.extend(blocks.iter().map(|&block| Op::Read {
                    fd: 0,
                    size: 24,
                    block,
                }));
                ops
            })
        })
}

/// A case: now and then [`blocked_batch`] first, then random operations
/// (of `rules`, with links or not).
pub(super) fn ops(rules: &'static [Rule], links: bool) -> impl Strategy<Value = Vec<Op>> {
    (
        prop::option::weighted(0.3, blocked_batch(rules)),
        prop::collection::vec(op(rules, links), 1..80),
    )
        .prop_map(|(first, rest)| first.into_iter().flatten().chain(rest).collect())
}
