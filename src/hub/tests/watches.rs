//! Watched exits: only the processes a rule binds or a link joins are
//! watched, each watch is charged to the opener's user, and a process is
//! never taken for gone for want of a descriptor.

use std::sync::atomic::Ordering;

use super::*;

const NOBODY: u32 = 65534;

/// A hub whose watches cost `watch_cost`, users other than root held to
/// `share` each.
fn hub_with_watches(policy: &str, watch_cost: usize, share: usize) -> (Hub, Arc<World>) {
    let (hub, world) = hub_with_memory(policy, 1 << 20);
    let config = Config {
        watch_cost,
        user_share: share,
        ..hub.config().clone()
    };
    (Hub::new(config, Box::new(Fake(Arc::clone(&world)))), world)
}

fn watched(w: &World) -> Vec<u32> {
    w.watched.lock().unwrap().iter().map(|p| p.pid).collect()
}

fn open(hub: &Hub, who: Caller, id: MailboxId, k: FileKind, a: Access) -> Result<u64> {
    hub.open(who, Target::Mailbox(id, k), a)
}

#[test]
fn status_and_policy_opens_watch_nobody() {
    let (hub, w) = hub_with_watches("exclusive", 3000, 1 << 18);
    let (a, b) = (w.spawn(1, NOBODY), w.spawn(2, NOBODY));
    let id = mkbox(&hub, "pub");
    for _ in 0..3 {
        let s = open(&hub, a, id, FileKind::Status, acc(true, false)).unwrap();
        let p = open(&hub, a, id, FileKind::Policy, acc(true, false)).unwrap();
        hub.release(s);
        hub.release(p);
    }
    assert_eq!(
        watched(&w),
        Vec::<u32>::new(),
        "status and policy bind no one"
    );
    assert_eq!(
        hub.budget.used_by(NOBODY),
        0,
        "and hold nothing once closed"
    );
    // An exclusive sender is not bound either; its receiver is.
    open(&hub, b, id, FileKind::Send, acc(false, true)).unwrap();
    assert_eq!(watched(&w), Vec::<u32>::new());
    open(&hub, a, id, FileKind::Recv, acc(true, false)).unwrap();
    assert_eq!(watched(&w), vec![1]);
    assert_eq!(hub.budget.used_by(NOBODY), 2 * HANDLE_COST + 3000);
    // Any member of a pair is bound, sender or receiver.
    let (hub, w) = hub_with_watches("pair", 3000, 1 << 18);
    let (a, b) = (w.spawn(1, NOBODY), w.spawn(2, NOBODY));
    let id = mkbox(&hub, "duo");
    open(&hub, a, id, FileKind::Send, acc(false, true)).unwrap();
    open(&hub, b, id, FileKind::Recv, acc(true, false)).unwrap();
    assert_eq!(watched(&w), vec![1, 2]);
}

#[test]
fn a_watch_costs_its_users_share_and_a_refused_one_leaves_nothing() {
    // One descriptor and one watch fit in the share, a second descriptor
    // too, but not a second watch.
    let cost = 3000;
    let (hub, w) = hub_with_watches("pair", cost, 2 * HANDLE_COST + cost + 100);
    let (a, b, c) = (w.spawn(1, NOBODY), w.spawn(2, NOBODY), w.spawn(3, 0));
    let id = mkbox(&hub, "duo");
    let _ra = open(&hub, a, id, FileKind::Recv, acc(true, false)).unwrap();
    assert_eq!(hub.budget.used_by(NOBODY), HANDLE_COST + cost);
    // A second descriptor of the same process needs no second watch.
    let again = open(&hub, a, id, FileKind::Recv, acc(true, false)).unwrap();
    hub.release(again);
    assert_eq!(
        open(&hub, b, id, FileKind::Send, acc(false, true)),
        Err(Errno::ENOBUFS.into()),
        "the user's share has no room for a second watch"
    );
    assert_eq!(hub.budget.used_by(NOBODY), HANDLE_COST + cost);
    assert_eq!(watched(&w), vec![1, 1]);
    // b took no place in the pair: root's process still finds one.
    open(&hub, c, id, FileKind::Send, acc(false, true)).unwrap();
    // The watch is given back when its process exits.
    w.exit(1);
    hub.watch_once(Duration::ZERO);
    assert_eq!(hub.budget.used_by(NOBODY), HANDLE_COST);
}

#[test]
fn a_link_watches_both_ends_charged_to_the_opener() {
    let (hub, w) = hub_with_watches("arbitrary", 3000, 1 << 18);
    let (a, peer) = (w.spawn(1, NOBODY), w.spawn(2, 0));
    let status = hub
        .open(a, Target::Link(2, FileKind::Status), acc(true, false))
        .unwrap();
    hub.release(status);
    assert_eq!(
        watched(&w),
        Vec::<u32>::new(),
        "a link's status binds no one"
    );
    hub.open(a, Target::Link(2, FileKind::Recv), acc(true, false))
        .unwrap();
    assert_eq!(watched(&w), vec![1, 2]);
    assert_eq!(
        hub.budget.used_by(NOBODY),
        HANDLE_COST + LINK_COST + 2 * 3000
    );
    // The peer's watch goes with its exit, whoever paid for it (the link
    // stays while a's descriptor is open).
    w.exit(peer.process.pid);
    hub.watch_once(Duration::ZERO);
    assert_eq!(hub.budget.used_by(NOBODY), HANDLE_COST + LINK_COST + 3000);
}

#[test]
fn without_descriptors_a_live_holder_keeps_its_hold_and_callers_get_emfile() {
    let (hub, w) = hub_with_watches("exclusive", 3000, 1 << 18);
    let (a, b) = (w.spawn(1, NOBODY), w.spawn(2, NOBODY));
    let id = mkbox(&hub, "ex");
    let _ra = open(&hub, a, id, FileKind::Recv, acc(true, false)).unwrap();
    w.no_fds.store(true, Ordering::Relaxed);
    // Whether the holder lives cannot be told: it is taken to live.
    assert_eq!(
        open(&hub, b, id, FileKind::Recv, acc(true, false)),
        Err(Errno::EBUSY.into())
    );
    assert_eq!(
        hub.caller(2, NOBODY, NOBODY).map(drop),
        Err(Errno::EMFILE.into())
    );
    assert_eq!(hub.peer_visible(2, 1), Err(Errno::EMFILE.into()));
    assert_eq!(
        hub.open(b, Target::Link(1, FileKind::Recv), acc(true, false)),
        Err(Errno::EMFILE.into())
    );
    w.no_fds.store(false, Ordering::Relaxed);
    assert_eq!(
        open(&hub, b, id, FileKind::Recv, acc(true, false)),
        Err(Errno::EBUSY.into())
    );
}

#[test]
fn an_open_whose_watch_cannot_be_made_is_undone() {
    let (hub, w) = hub_with_watches("exclusive", 3000, 1 << 18);
    let (a, b) = (w.spawn(1, NOBODY), w.spawn(2, NOBODY));
    let id = mkbox(&hub, "ex");
    w.no_fds.store(true, Ordering::Relaxed);
    assert_eq!(
        open(&hub, a, id, FileKind::Recv, acc(true, false)),
        Err(Errno::EMFILE.into())
    );
    assert_eq!(
        hub.budget.used_by(NOBODY),
        0,
        "neither descriptor nor watch held"
    );
    w.no_fds.store(false, Ordering::Relaxed);
    // a holds nothing: b may hold the mailbox.
    open(&hub, b, id, FileKind::Recv, acc(true, false)).unwrap();
    assert_eq!(watched(&w), vec![2]);
    assert_eq!(
        open(&hub, a, id, FileKind::Recv, acc(true, false)),
        Err(Errno::EBUSY.into())
    );
}
