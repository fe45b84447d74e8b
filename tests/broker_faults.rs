//! Mailboxes across hosts when things go wrong (ipcfs(7), ACROSS HOSTS):
//! a broker that cannot be reached at mount time, a wrong password, a node
//! name already served; a broker killed under parked calls and restarted
//! (with AOF); a daemon killed while it holds a rule's hold, has messages
//! queued or has one on its way to it (leases of 1 s); a broker down longer
//! than the leases (new calls never stale, old descriptors stale); rmdir
//! under blocked calls on another mount; a broker out of memory.
//!
//! Every test starts its own redis-server and its own mounts. Every blocking
//! step has a deadline; waits are on conditions, never on a fixed sleep.

mod common;
use common::*;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// The lease of daemons that a test kills: short, so that the test is.
const LEASE: &[&str] = &["--lease", "1"];

/// How long after a lease of 1 s ends its holds and messages may take to
/// be released (the other daemon reaps at its own lease/3 beats).
const AFTER_LEASE: Duration = Duration::from_secs(5);

/// How long a refused mount may take (connecting to a closed local port is
/// refused at once).
const REFUSAL: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- local helpers

fn two(redis: &Redis, extra: &[&str]) -> (Mount, Mount) {
    (
        Mount::on_broker(redis, "a", extra),
        Mount::on_broker(redis, "b", extra),
    )
}

/// What the mount's `proc/status` (local, readable in any outage) says of
/// the broker.
fn reachable(m: &Mount) -> String {
    status_get(&m.p("proc/status"), "broker-reachable")
}

fn wait_reachable(m: &Mount, node: &str, want: &str) {
    wait_until(
        T,
        &format!("{node}'s proc/status shows broker-reachable: {want}"),
        || reachable(m) == want,
    );
}

/// Kills the broker and waits until both mounts see it gone.
fn broker_gone(redis: &mut Redis, a: &Mount, b: &Mount) {
    redis.kill();
    wait_reachable(a, "a", "no");
    wait_reachable(b, "b", "no");
}

/// Starts the broker again and waits until both mounts reach it.
fn broker_back(redis: &mut Redis, a: &Mount, b: &Mount) {
    redis.restart();
    wait_reachable(a, "a", "yes");
    wait_reachable(b, "b", "yes");
}

/// One read(2) on an open descriptor, within the deadline.
fn read_within(f: &File, what: &str) -> std::io::Result<Vec<u8>> {
    let mut f = f.try_clone().expect("dup a descriptor");
    within(T, what, move || {
        let mut buf = vec![0u8; 4096];
        let n = f.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    })
}

/// One write(2) on an open descriptor, within the deadline.
fn write_within(f: &File, msg: &[u8], what: &str) -> std::io::Result<usize> {
    let mut f = f.try_clone().expect("dup a descriptor");
    let msg = msg.to_vec();
    within(T, what, move || f.write(&msg))
}

fn assert_stderr_sentence(r: &Refused, parts: &[&str], secret: Option<&str>) {
    assert_eq!(
        r.status.code(),
        Some(1),
        "a refused mount exits with status 1: {r:?}"
    );
    assert!(
        r.stderr.starts_with("ipcfs: "),
        "the error starts with `ipcfs: `: {r:?}"
    );
    for p in parts {
        assert!(r.stderr.contains(p), "the error says {p:?}: {r:?}");
    }
    if let Some(s) = secret {
        assert!(
            !r.stderr.contains(s) && !r.stdout.contains(s),
            "the error never shows the password: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------- tests

/// A broker nobody listens on: exit 1, the error names the URL without its
/// password, nothing is mounted.
#[test]
fn an_unreachable_broker_at_mount_is_refused_naming_the_url() {
    let port = free_port();
    let url = format!("redis://ipcfs:hunter2-secret@127.0.0.1:{port}");
    let start = Instant::now();
    let r = mount_refused(&[], &["--broker", &url, "--node", "a"], REFUSAL);
    assert_stderr_sentence(
        &r,
        &[&format!(
            "cannot reach the broker at redis://ipcfs@127.0.0.1:{port}"
        )],
        Some("hunter2-secret"),
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        start.elapsed()
    );
    // The same from the environment.
    let r = mount_refused(&[("IPCFS_BROKER_URL", &url)], &["--node", "a"], REFUSAL);
    assert_stderr_sentence(
        &r,
        &[&format!(
            "cannot reach the broker at redis://ipcfs@127.0.0.1:{port}"
        )],
        Some("hunter2-secret"),
    );
}

/// A wrong password: exit 1, the error says the broker refused the
/// password (and does not show it), nothing is mounted.
#[test]
fn a_wrong_password_is_refused() {
    let redis = Redis::with(RedisConfig {
        password: Some("the-right-one".into()),
        ..RedisConfig::default()
    });
    let url = format!("redis://:not-the-pw-4711@127.0.0.1:{}", redis.port());
    let r = mount_refused(&[], &["--broker", &url, "--node", "a"], REFUSAL);
    assert_stderr_sentence(
        &r,
        &[
            "refused the password",
            &format!("127.0.0.1:{}", redis.port()),
        ],
        Some("not-the-pw-4711"),
    );
    // No password at all is refused the same way, and the right one mounts.
    let bare = format!("redis://127.0.0.1:{}", redis.port());
    let r = mount_refused(&[], &["--broker", &bare, "--node", "a"], REFUSAL);
    assert_stderr_sentence(
        &r,
        &[
            "refused the password",
            &format!("127.0.0.1:{}", redis.port()),
        ],
        None,
    );
    let m = Mount::on_broker(&redis, "a", &[]);
    m.mailbox("box", "");
}

/// A second daemon with the node name of a live one is refused (exit 1,
/// naming the node); the first keeps serving; once it has stopped (SIGTERM
/// releases its lease), the name is free at once.
#[test]
fn a_node_name_served_by_a_live_daemon_is_refused() {
    let redis = Redis::start();
    let mut a = Mount::on_broker(&redis, "a", &[]);
    let r = mount_refused(&[], &["--broker", &redis.url(), "--node", "a"], REFUSAL);
    assert_stderr_sentence(
        &r,
        &[
            "node \"a\" is already served by a live daemon",
            &redis.url(),
        ],
        None,
    );
    assert!(a.daemon_exited().is_none(), "the first daemon still runs");
    let bx = a.mailbox("box", "");
    send(&bx, b"still served\n");
    assert_eq!(recv(&bx), b"still served\n");

    a.signal_daemon(libc::SIGTERM);
    let st = a.wait_daemon_exit(T);
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
    let again = Mount::on_broker(&redis, "a", &[]);
    assert!(
        again.p("box").is_dir(),
        "the new daemon serves the shared tree"
    );
}

/// The broker SIGKILLed under a reader parked on `b`: the daemons say
/// `broker-reachable: no`; the parked reader stays interruptible (SIGINT
/// ends it at once); new calls fail with EHOSTUNREACH, O_NONBLOCK ones
/// without blocking; proc/ links keep working. Once the broker is back
/// (AOF), another reader parked before the outage gets a message sent
/// after it, exactly once, and the write refused in the outage was not
/// delivered.
#[test]
fn a_broker_outage_keeps_parked_readers_and_refuses_new_calls() {
    let mut redis = Redis::with(RedisConfig {
        aof: true,
        ..RedisConfig::default()
    });
    // The default lease (10 s): this outage is shorter, so no daemon is fenced.
    let (a, b) = two(&redis, &[]);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    let nb_recv = open_with(&b.p("box/recv"), true, false, libc::O_NONBLOCK).unwrap();
    let send_a = open_with(&bx.join("send"), false, true, 0).unwrap();
    let first = cat_bg(&b.p("box/recv"));
    wait_receivers_waiting(&bx, 1, T);
    let second = cat_bg(&b.p("box/recv"));
    wait_receivers_waiting(&bx, 2, T);

    broker_gone(&mut redis, &a, &b);

    assert_eq!(
        proc_state(first.pid()),
        'S',
        "the parked reader sleeps interruptibly"
    );
    let start = Instant::now();
    first.signal(libc::SIGINT);
    let o = first.wait_timeout(T);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "SIGINT ended the parked reader only after {:?} in the outage",
        start.elapsed()
    );
    assert_eq!(o.status.signal(), Some(libc::SIGINT), "{}", show(&o));

    assert_errno(
        read_within(&nb_recv, "an O_NONBLOCK read on b in the outage"),
        libc::EHOSTUNREACH,
        "an O_NONBLOCK read on b in the outage",
    );
    assert_errno(
        write_within(&send_a, b"refused\n", "a write on a in the outage"),
        libc::EHOSTUNREACH,
        "a write on a in the outage",
    );
    let path = b.p("box/recv");
    assert_errno(
        within(T, "an O_NONBLOCK open in the outage", move || {
            open_with(&path, true, false, libc::O_NONBLOCK)
        }),
        libc::EHOSTUNREACH,
        "an open of recv on b in the outage",
    );
    let path = b.p("other");
    assert_errno(
        within(T, "mkdir in the outage", move || std::fs::create_dir(&path)),
        libc::EHOSTUNREACH,
        "mkdir on b in the outage",
    );
    assert_proc_link_works(&a, "in the outage");
    let mut second = second;
    assert!(
        second.try_wait().is_none(),
        "the second reader stays parked through the outage"
    );
    assert_eq!(proc_state(second.pid()), 'S', "and sleeps interruptibly");

    broker_back(&mut redis, &a, &b);
    send(&bx, b"after the restart\n");
    let o = second.wait_timeout(T);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        out_str(&o),
        "after the restart\n",
        "the reader parked before the outage gets the message sent after it"
    );
    assert_errno(
        recv_nb(&b.p("box/recv")),
        libc::EAGAIN,
        "exactly once, and the write refused in the outage sent nothing",
    );
}

/// Messages queued when the broker is SIGKILLed survive its restart (AOF):
/// each is received once, in order, and the counters survive too.
#[test]
fn queued_messages_survive_a_broker_restart_with_aof() {
    let mut redis = Redis::with(RedisConfig {
        aof: true,
        ..RedisConfig::default()
    });
    let (a, b) = two(&redis, &[]);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    for i in 0..5 {
        send(&bx, format!("m{i}\n").as_bytes());
    }
    broker_gone(&mut redis, &a, &b);
    broker_back(&mut redis, &a, &b);
    assert_eq!(count(&b.p("box"), "messages"), 5, "{:?}", stat(&b.p("box")));
    for i in 0..5 {
        assert_eq!(
            String::from_utf8_lossy(&recv(&b.p("box"))),
            format!("m{i}\n"),
            "message {i}, once, in order"
        );
    }
    assert_errno(recv_nb(&b.p("box/recv")), libc::EAGAIN, "no duplicate");
    let s = stat(&a.p("box"));
    assert_eq!((num(&s, "sent"), num(&s, "received")), (5, 5), "{s:?}");
}

/// `what` every 10 ms, on a thread, until it succeeds (within `T`): the
/// error of each attempt that failed, in order.
fn until_it_succeeds(
    what: String,
    mut f: impl FnMut() -> std::io::Result<()> + Send + 'static,
) -> std::thread::JoinHandle<Vec<i32>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + T;
        let mut failed = Vec::new();
        loop {
            match f() {
                Ok(()) => return failed,
                Err(e) => failed.push(errno(&e)),
            }
            assert!(
                Instant::now() < deadline,
                "{what} never succeeded within {T:?}; errors: {:?}",
                failed.iter().map(|e| errname(*e)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// A broker down longer than the lease, restarted (with AOF: the lease keys
/// have expired meanwhile): a call that opened nothing, made from the
/// instant the broker listens again, never fails with ESTALE (the daemon
/// registers anew and makes it again), nor does a descriptor opened then;
/// a descriptor opened before the outage does, until it is reopened.
#[test]
fn after_a_lost_lease_new_calls_never_get_estale_old_descriptors_do() {
    let mut redis = Redis::with(RedisConfig {
        aof: true,
        ..RedisConfig::default()
    });
    let (a, b) = two(&redis, LEASE);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    let old = open_with(&bx.join("send"), false, true, 0).unwrap();
    assert_eq!(
        write_within(&old, b"before\n", "a write before").unwrap(),
        7
    );

    redis.kill();
    let killed = Instant::now();
    wait_reachable(&a, "a", "no");
    wait_reachable(&b, "b", "no");
    // The leases run out on the broker's clock while it is down, at most
    // a lease after the kill: nothing here can tell, so wait that long.
    std::thread::sleep(Duration::from_millis(1300).saturating_sub(killed.elapsed()));
    // Each mount's pump now retries once a second and its heartbeat beats
    // every third of a second: the first calls after the restart come
    // before either has seen the lease lost.
    let x = a.p("x");
    let mkdir_a = until_it_succeeds("mkdir on a".into(), move || std::fs::create_dir(&x));
    // On b, the open itself has b register anew: the descriptor it makes
    // is not among those fenced.
    let send_b = b.p("box/send");
    let open_b = until_it_succeeds("open and write on b".into(), move || {
        let mut f = open_with(&send_b, false, true, 0)?;
        f.write_all(b"opened-on-b\n")
    });
    redis.restart();
    for (what, t) in [("mkdir on a", mkdir_a), ("open and write on b", open_b)] {
        let failed = t.join().expect("the loop ends within its deadline");
        assert!(
            failed.iter().all(|&e| e == libc::EHOSTUNREACH),
            "{what} after the broker came back failed with {:?} \
             (only EHOSTUNREACH, while it is unreachable, is allowed)",
            failed.iter().map(|e| errname(*e)).collect::<Vec<_>>()
        );
    }
    assert!(a.p("x").is_dir(), "mkdir on a took");

    assert_errno(
        write_within(&old, b"stale\n", "a write on the old descriptor"),
        libc::ESTALE,
        "a write on a descriptor opened before the lease was lost",
    );
    let new = open_with(&bx.join("send"), false, true, 0).unwrap();
    assert_eq!(
        write_within(&new, b"after\n", "a write after reopening").unwrap(),
        6
    );
    for want in ["before\n", "opened-on-b\n", "after\n"] {
        assert_eq!(
            String::from_utf8_lossy(&recv_nb(&b.p("box/recv")).unwrap()),
            want,
            "the old descriptor sent before the outage, the new ones after it"
        );
    }
    assert_errno(
        recv_nb(&b.p("box/recv")),
        libc::EAGAIN,
        "the stale descriptor sent nothing",
    );
}

/// A daemon SIGKILLed while one of its processes holds an exclusive
/// mailbox: the other mount may open recv once the dead daemon's lease has
/// ended.
#[test]
fn an_exclusive_hold_of_a_killed_daemon_ends_with_its_lease() {
    let redis = Redis::start();
    let (mut a, b) = two(&redis, LEASE);
    let bx = shared_mailbox(&a, &[&b], "box", "exclusive\n");
    let recv_b = b.p("box/recv");
    let _holder = hold(&[(&bx.join("recv"), libc::O_RDONLY)], None).expect("a holder on a");
    assert_errno(
        in_child(&recv_b, libc::O_RDONLY, false, None),
        libc::EBUSY,
        "recv on b while a's process holds it",
    );
    a.signal_daemon(libc::SIGKILL);
    a.wait_daemon_exit(T);
    let start = Instant::now();
    wait_until(AFTER_LEASE, "recv on b is free after a's lease", || {
        in_child(&recv_b, libc::O_RDONLY, false, None).is_ok()
    });
    eprintln!("the hold ended {:?} after the kill", start.elapsed());
    assert_eq!(status_of(&b.p("box"), "holder"), "-");
}

/// Messages queued by a daemon that is SIGKILLed stay queued: the other
/// mount receives them, in order, at once.
#[test]
fn queued_messages_outlive_a_killed_daemon() {
    let redis = Redis::start();
    let (mut a, b) = two(&redis, LEASE);
    let bx = shared_mailbox(&a, &[&b], "box", "");
    for i in 0..3 {
        send(&bx, format!("m{i}\n").as_bytes());
    }
    a.signal_daemon(libc::SIGKILL);
    a.wait_daemon_exit(T);
    for i in 0..3 {
        assert_eq!(
            String::from_utf8_lossy(&recv(&b.p("box"))),
            format!("m{i}\n"),
            "message {i} of the killed daemon"
        );
    }
    assert_errno(recv_nb(&b.p("box/recv")), libc::EAGAIN, "each once");
}

/// A message on its way to a reader of a daemon that dies before handing
/// it over (the daemon is stopped, then SIGKILLed) is not lost: after the
/// daemon's lease it goes to a reader on the other mount, once.
#[test]
fn a_message_in_flight_to_a_killed_daemon_goes_to_another_reader() {
    let redis = Redis::start();
    let (mut a, b) = two(&redis, LEASE);
    let bx = shared_mailbox(&b, &[&a], "box", "");
    let on_a = cat_bg(&a.p("box/recv"));
    wait_receivers_waiting(&bx, 1, T);
    a.signal_daemon(libc::SIGSTOP);
    send(&bx, b"in flight\n");
    // Handed to a's reader, in flight (or, should a's lease run out first,
    // left queued with a's reader reaped: either way b must get it once).
    wait_until(T, "a's reader no longer waits", || {
        count(&bx, "receivers-waiting") == 0
    });
    let in_flight = count(&bx, "messages") == 0;
    eprintln!("the message was in flight to the stopped daemon: {in_flight}");
    a.signal_daemon(libc::SIGKILL);
    a.wait_daemon_exit(T);
    drop(on_a);
    let got = recv_within(AFTER_LEASE + T, &bx.join("recv"));
    assert_eq!(got, b"in flight\n", "the message went to b's reader");
    assert_errno(recv_nb(&bx.join("recv")), libc::EAGAIN, "once");
}

/// A lease lost while the daemon runs on (its key gone from the broker, as
/// after a daemon stopped for longer than its lease): the next call
/// registers the node anew, and a message handed to a reader of the new
/// incarnation at once reaches it once — not also given back to the queue
/// when the pump, told of the new incarnation, reads its inbox again.
#[test]
fn a_message_delivered_just_after_a_lost_lease_is_received_once() {
    let redis = Redis::start();
    let (a, b) = two(&redis, &[]);
    let bx = shared_mailbox(&b, &[&a], "box", "");
    for i in 0..3 {
        assert_eq!(
            count(&bx, "messages"),
            0,
            "round {i}: nothing is queued (a copy of the message of the round before was given back)"
        );
        redis.cli(&["DEL", "ipcfs:node:a"]);
        let reader = cat_bg(&a.p("box/recv"));
        wait_receivers_waiting(&bx, 1, T);
        send(&bx, format!("m{i}\n").as_bytes());
        let o = reader.wait_timeout(T);
        assert_eq!(
            out_str(&o),
            format!("m{i}\n"),
            "round {i}: a's reader gets the message sent after the lease was lost: {}",
            show(&o)
        );
    }
    // A message sent now comes next: no copy of an earlier one is queued.
    send(&bx, b"last\n");
    assert_eq!(String::from_utf8_lossy(&recv(&bx)), "last\n");
    assert_errno(recv_nb(&bx.join("recv")), libc::EAGAIN, "each message once");
}

/// rmdir on `a` ends calls blocked on `b` with EIDRM (a reader, a sender at
/// a full mailbox), at once; I/O on descriptors opened on `b` before then
/// fails with EIDRM.
#[test]
fn rmdir_on_a_ends_calls_blocked_on_b_with_eidrm() {
    let redis = Redis::start();
    let (a, b) = two(&redis, &[]);
    let r = shared_mailbox(&a, &[&b], "r", "");
    let s = shared_mailbox(&a, &[&b], "s", "arbitrary capacity=1\n");
    send_nb(&s.join("send"), b"fill\n").unwrap();
    let old = open_with(&b.p("r/send"), false, true, 0).unwrap();
    let reader = b.spawn_sh(r#"cat "$M/r/recv"; echo "rc=$?""#);
    let sender = b.spawn_sh(r#"echo blocked > "$M/s/send"; echo "rc=$?""#);
    wait_receivers_waiting(&r, 1, T);
    wait_until(T, "b's sender waits", || count(&s, "senders-waiting") == 1);
    let start = Instant::now();
    std::fs::remove_dir(&r).expect("rmdir r on a");
    std::fs::remove_dir(&s).expect("rmdir s on a (messages queued)");
    for (bg, who) in [(reader, "reader"), (sender, "sender")] {
        let o = bg.wait_timeout(T);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the blocked {who} on b woke only {:?} after the rmdir",
            start.elapsed()
        );
        assert_eq!(out_str(&o), "rc=1\n", "{who}: {}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Identifier removed"),
            "the blocked {who} on b fails with EIDRM: {}",
            show(&o)
        );
    }
    assert_errno(
        write_within(&old, b"late\n", "a write on an old descriptor"),
        libc::EIDRM,
        "a write on b's descriptor opened before the rmdir",
    );
}

/// A broker at its maxmemory (noeviction) refuses sends with ENOBUFS —
/// never a hang; what it accepted before is received whole; once drained
/// it takes messages again.
#[test]
fn a_broker_out_of_memory_gives_enobufs() {
    let redis = Redis::with(RedisConfig {
        maxmemory: Some(8 << 20),
        ..RedisConfig::default()
    });
    let (a, b) = two(&redis, &[]);
    let bx = shared_mailbox(&a, &[&b], "big", "arbitrary capacity=unlimited\n");
    let msg: Vec<u8> = (0..256 << 10).map(|i: u32| (i % 251) as u8).collect();
    let mut accepted = 0;
    let refused = loop {
        assert!(
            accepted < 64,
            "64 messages of 256 KiB accepted by a broker with maxmemory 8 MiB"
        );
        let path = bx.join("send");
        let m = msg.clone();
        let r = within(T, "a send to a broker near its maxmemory", move || {
            open_with(&path, false, true, 0)?.write(&m)
        });
        match r {
            Ok(n) => {
                assert_eq!(n, msg.len(), "a whole message");
                accepted += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        errno(&refused),
        libc::ENOBUFS,
        "the broker's refusal after {accepted} messages: expected ENOBUFS, got {} ({refused})",
        errname(errno(&refused))
    );
    assert!(accepted >= 1, "the broker took messages before its bound");
    for i in 0..accepted {
        assert!(
            recv(&b.p("big")) == msg,
            "accepted message {i} arrives whole on b"
        );
    }
    assert_errno(
        recv_nb(&b.p("big/recv")),
        libc::EAGAIN,
        "the refused message was not queued",
    );
    wait_until(T, "the drained broker takes messages again", || {
        send_nb(&bx.join("send"), b"small\n").is_ok()
    });
    assert_eq!(recv(&b.p("big")), b"small\n");
}

/// A broker that stops answering (SIGSTOP) holds up no FUSE event loop:
/// while chmods, opens, mkdirs and an rmdir wait on it (up to the store's 2 s
/// timeout, more of them than the daemon has event-loop threads), other
/// requests on the same mount — `proc/status`, a `proc/` link — are
/// answered at once.
#[test]
fn a_stopped_broker_holds_up_no_event_loop() {
    let redis = Redis::start();
    let (a, _b) = two(&redis, &[]);
    // One mailbox each: the kernel lets one chmod of an inode at a time
    // reach the daemon.
    let boxes: Vec<_> = (0..4).map(|i| a.mailbox(&format!("box{i}"), "")).collect();
    for i in 0..4 {
        std::fs::create_dir(a.p(&format!("gone{i}"))).unwrap();
    }
    let pid = redis.pid().expect("redis runs") as libc::pid_t;
    // SAFETY: kill(2) on the redis-server this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let waiting: Vec<Bg> = boxes
        .iter()
        .enumerate()
        .map(|(i, bx)| {
            a.spawn_sh(&format!(
                "chmod 700 {box} 2>/dev/null; cat {box}/status >/dev/null 2>&1; mkdir {m}/new{i} 2>/dev/null; rmdir {m}/gone{i} 2>/dev/null; true",
                box = bx.display(),
                m = a.path().display()
            ))
        })
        .collect();
    // Each shell's `chmod` waits in the kernel for the daemon's answer.
    let waits_for_fuse = |sh: u32| {
        let kids =
            std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children")).unwrap_or_default();
        kids.split_whitespace().any(|kid| {
            std::fs::read_to_string(format!("/proc/{kid}/wchan"))
                .is_ok_and(|c| c.contains("request_wait_answer"))
        })
    };
    wait_until(T, "the four chmods wait on the daemon", || {
        waiting.iter().all(|w| waits_for_fuse(w.pid()))
    });
    let start = Instant::now();
    let status = within(T, "proc/status while the broker is stopped", {
        let p = a.p("proc/status");
        move || std::fs::read_to_string(p)
    })
    .expect("proc/status");
    let took = start.elapsed();
    assert!(status.contains("node: a"), "{status}");
    assert_proc_link_works(&a, "while the broker is stopped");
    assert!(
        took < Duration::from_millis(500),
        "proc/status took {took:?} while calls waited on a stopped broker"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    for w in waiting {
        let o = w.wait_timeout(T);
        assert!(o.status.success(), "{}", show(&o));
    }
}

/// A broker restarted without persistence has forgotten everything, the
/// functions ipcfs runs on it too: the mounts load them again by
/// themselves and go on. The old mailbox is gone from both mounts, and a
/// new one works across them.
#[test]
fn a_broker_restarted_without_its_data_is_used_again() {
    let mut redis = Redis::start();
    let (a, b) = two(&redis, &[]);
    shared_mailbox(&a, &[&b], "old", "");
    broker_gone(&mut redis, &a, &b);
    broker_back(&mut redis, &a, &b);
    wait_until(T, "the forgotten mailbox is gone from both mounts", || {
        !a.p("old").exists() && !b.p("old").exists()
    });
    let bx = shared_mailbox(&a, &[&b], "new", "");
    send(&bx, b"after the restart\n");
    assert_eq!(recv(&b.p("new")), b"after the restart\n");
}

/// A write blocked on a full broker mailbox ends within half a second of
/// SIGINT even when the broker has stopped answering (SIGSTOP): its wait
/// for the broker's word on its message is bounded, never on the network.
/// Once the broker answers again, the message is withdrawn: nothing of it
/// is delivered.
#[test]
fn a_blocked_write_ends_at_once_on_a_signal_while_the_broker_is_stopped() {
    let redis = Redis::start();
    let (a, b) = two(&redis, &[]);
    let bx = shared_mailbox(&a, &[&b], "box", "arbitrary capacity=1\n");
    send(&bx, b"first\n");
    let w = blocked_writer(&b, &bx);
    let pid = redis.pid().expect("redis runs") as libc::pid_t;
    // SAFETY: kill(2) on the redis-server this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let start = Instant::now();
    w.signal(libc::SIGINT);
    let o = w.wait_timeout(T);
    let took = start.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        took < Duration::from_millis(500),
        "SIGINT ended the blocked write only after {took:?} with the broker stopped"
    );
    assert_eq!(o.status.signal(), Some(libc::SIGINT), "{}", show(&o));
    wait_until(T, "the broker forgets the interrupted writer", || {
        count(&bx, "senders-waiting") == 0
    });
    assert_eq!(recv(&b.p("box")), b"first\n");
    assert_errno(
        recv_nb(&b.p("box/recv")),
        libc::EAGAIN,
        "nothing the interrupted write carried",
    );
}
