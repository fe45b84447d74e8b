//! Torture suite on a real mount: many senders and receivers under each
//! receiver rule, direct links between many processes, SIGKILL of clients
//! under load, SIGKILL of the daemon itself, floods against `--max-memory`,
//! and hostile names and policy texts.
//!
//! Two sizes, chosen by the environment variable `IPCFS_TORTURE`:
//!
//! - `quick` (the default, what `cargo test` runs): a few seconds a test;
//! - `long`, by hand, for a few minutes:
//!   `IPCFS_TORTURE=long cargo test --release --test torture -- --nocapture`.
//!
//! Every test prints its figures (visible with `--nocapture`) and asserts
//! correctness. Random choices come from a small xorshift generator whose
//! seed each test prints; `IPCFS_TORTURE_SEED=N` replays a run.
//!
//! Senders and receivers are separate processes: the test binary runs itself
//! again (`current_exe() child_entry --exact`) with `IPCFS_TORTURE_CHILD` naming
//! the child's role; `child_entry` does nothing without it. Children talk back
//! on stdout with lines starting with `@@`, and receivers log every message
//! they receive to a file with one write(2) each, so that a receiver killed at
//! any moment leaves an exact record of what it had received.
//!
//! Every blocking step has a deadline: children are awaited with deadlines
//! and killed on drop; long runs are watched for progress (status counters)
//! and fail when it stalls.
//!
//! This file lists the tests; each runs a scenario of the module named for
//! its topic: `rules`, `links`, `kills`, `daemon_death`, `floods`, `hostile`.
//! Beside them: `harness` (sizes, deadlines, random choices, helpers on a
//! mount), `messages` (self-checking messages, receivers' logs, tallies) and
//! `workers` (the helper processes).

#[path = "../common/mod.rs"]
mod common;

mod daemon_death;
mod floods;
mod harness;
mod hostile;
mod kills;
mod links;
mod messages;
mod rules;
mod workers;

/// Not a test: the entry point of the helper processes of this suite (see the
/// top of the file). Does nothing unless `IPCFS_TORTURE_CHILD` is set.
#[test]
fn child_entry() {
    workers::child_entry();
}

// Receiver rules (ipcfs(7), RECEIVER RULES): N sender and M receiver processes.

#[test]
fn rule_arbitrary_every_message_exactly_once() {
    rules::rule_run("arbitrary");
}

#[test]
fn rule_broadcast_every_receiver_gets_every_message_in_order() {
    rules::rule_run("broadcast");
}

#[test]
fn rule_exclusive_one_holder_gets_everything() {
    rules::rule_run("exclusive");
}

#[test]
fn rule_pair_one_sender_one_receiver() {
    rules::rule_run("pair");
}

/// Every process sends to every other over `proc/<pid>/`.
#[test]
fn direct_links_between_many_processes() {
    links::direct_links_between_many_processes();
}

/// SIGKILL of senders, receivers and the exclusive holder under load.
#[test]
fn kills_under_load() {
    kills::kills_under_load();
}

/// SIGKILL of the daemon: every client fails, the mountpoint mounts again.
#[test]
fn daemon_sigkill_frees_every_client_and_the_mountpoint_mounts_again() {
    daemon_death::daemon_sigkill_frees_every_client_and_the_mountpoint_mounts_again();
}

// Floods against `--max-memory` (ipcfs(7), LIMITS): one driver, five fills.

#[test]
fn flood_small_messages() {
    floods::flood::<floods::SmallMessages>();
}

#[test]
fn flood_mailboxes() {
    floods::flood::<floods::Mailboxes>();
}

#[test]
fn flood_links() {
    floods::flood::<floods::Links>();
}

#[test]
fn flood_descriptors() {
    floods::flood::<floods::Descriptors>();
}

#[test]
fn flood_parked_readers() {
    floods::flood::<floods::ParkedReaders>();
}

// Hostile input.

#[test]
fn hostile_names() {
    hostile::hostile_names();
}

#[test]
fn hostile_policy_writes() {
    hostile::hostile_policy_writes();
}
