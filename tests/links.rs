//! Direct links between processes: `proc/<pid>/send`, `proc/<pid>/recv`,
//! `proc/self`, `proc/<pid>/status`, `proc/status` (ipcfs(7) DIRECT LINKS).
//!
//! Every blocking step has a deadline; waits are on conditions (status keys,
//! marker files), never on a fixed sleep.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- local helpers

fn link(m: &Mount, pid: u32, file: &str) -> PathBuf {
    m.p(&format!("proc/{pid}/{file}"))
}

fn proc_status(m: &Mount) -> std::collections::HashMap<String, String> {
    status_map(&m.p("proc/status"))
}

fn me() -> u32 {
    std::process::id()
}

// ---------------------------------------------------------------------- tests

/// Two shell scripts that learn each other's pid through files talk with no
/// other setup: A sends ping to B, B answers pong to A.
#[test]
fn shell_pair_ping_pong_by_pid() {
    let m = Mount::new();
    let d = tempfile::tempdir().unwrap();
    let d = d.path().display();
    let a = m.spawn_sh(&format!(
        r#"set -e
        echo $$ > "{d}/a.tmp"; mv "{d}/a.tmp" "{d}/a.pid"
        while [ ! -s "{d}/b.pid" ]; do sleep 0.01; done
        B=$(cat "{d}/b.pid")
        echo ping > "$M/proc/$B/send"
        read -r r < "$M/proc/$B/recv"
        echo "A got $r"
        touch "{d}/a.done""#
    ));
    let b = m.spawn_sh(&format!(
        r#"set -e
        echo $$ > "{d}/b.tmp"; mv "{d}/b.tmp" "{d}/b.pid"
        while [ ! -s "{d}/a.pid" ]; do sleep 0.01; done
        A=$(cat "{d}/a.pid")
        read -r m < "$M/proc/$A/recv"
        echo "B got $m"
        echo pong > "$M/proc/$A/send"
        # Stay alive until A has looked us up (proc/<exited pid> is ENOENT).
        while [ ! -e "{d}/a.done" ]; do sleep 0.01; done"#
    ));
    let ob = b.wait_timeout(SHORT);
    let oa = a.wait_timeout(SHORT);
    assert!(ob.status.success(), "B failed:\n{}", show(&ob));
    assert!(oa.status.success(), "A failed:\n{}", show(&oa));
    assert_eq!(out_str(&ob), "B got ping\n", "{}", show(&ob));
    assert_eq!(out_str(&oa), "A got pong\n", "{}", show(&oa));
}

/// `proc/self` resolves per caller: from this process and from two different
/// child processes it names each caller's own pid (never a cached answer).
#[test]
fn proc_self_is_callers_pid() {
    let m = Mount::new();
    let mine = std::fs::read_link(m.p("proc/self")).expect("readlink proc/self");
    assert_eq!(
        mine,
        PathBuf::from(me().to_string()),
        "proc/self from the test process"
    );

    let mut seen = Vec::new();
    for _ in 0..3 {
        // `exec` keeps the pid: readlink runs as the process whose pid was printed.
        let o = m.sh(r#"echo $$; exec readlink "$M/proc/self""#, SHORT);
        assert!(o.status.success(), "{}", show(&o));
        let s = out_str(&o);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{}", show(&o));
        assert_eq!(
            lines[0],
            lines[1],
            "proc/self must be the caller's pid: {}",
            show(&o)
        );
        seen.push(lines[0].to_string());
        // The bash builtin path: cd through the symlink and ask where we are.
        let o = m.sh(r#"cd -P "$M/proc/self" && echo "$$ $(pwd -P)""#, SHORT);
        assert!(o.status.success(), "{}", show(&o));
        let s = out_str(&o);
        let (pid, dir) = s.trim().split_once(' ').expect("two fields");
        assert_eq!(
            dir,
            m.p(&format!("proc/{pid}")).display().to_string(),
            "{}",
            show(&o)
        );
    }
    assert_ne!(seen[0], seen[1], "two different processes");
    // And the test process still sees itself afterwards.
    let again = std::fs::read_link(m.p("proc/self")).unwrap();
    assert_eq!(again, PathBuf::from(me().to_string()));
}

/// A descriptor opened by shell P on `proc/Q/recv` and inherited by a child
/// (`cat <&3`) receives what Q sent to P: identity is the opener.
#[test]
fn inherited_descriptor_speaks_for_opener() {
    let m = Mount::new();
    let d = tempfile::tempdir().unwrap();
    let dd = d.path().display();
    let q = me();
    let p = m.spawn_sh(&format!(
        r#"exec 3<"$M/proc/{q}/recv" || exit 9
        echo $$ > "{dd}/p.tmp"; mv "{dd}/p.tmp" "{dd}/p.pid"
        ( timeout 8 cat <&3 ); echo "rc=$?""#
    ));
    let pidfile = d.path().join("p.pid");
    wait_until(SHORT, "P wrote its pid", || pidfile.exists());
    let ppid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ppid, p.pid(), "bash -c runs as the spawned pid");
    // If the reader's own pid (the cat's) were used, the cat would find nothing
    // from Q and time out (rc=124).
    send_nb(&link(&m, ppid, "send"), b"for P\n").expect("send to P");
    let o = p.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "for P\nrc=0\n", "{}", show(&o));
}

/// A third process cannot receive a message that Q sent to P: on its own
/// link with Q there is nothing (EAGAIN with O_NONBLOCK, nothing to a blocking
/// cat), and P still gets the message afterwards.
#[test]
fn third_process_cannot_receive_message_for_another() {
    let m = Mount::new();
    let d = tempfile::tempdir().unwrap();
    let dd = d.path().display();
    let q = me();
    let p = m.spawn_sh(&format!(
        r#"echo $$ > "{dd}/p.tmp"; mv "{dd}/p.tmp" "{dd}/p.pid"
        while [ ! -e "{dd}/go" ]; do sleep 0.01; done
        read -r x < "$M/proc/{q}/recv" && echo "P got $x""#
    ));
    let pidfile = d.path().join("p.pid");
    wait_until(SHORT, "P wrote its pid", || pidfile.exists());
    let ppid = p.pid();
    send_nb(&link(&m, ppid, "send"), b"secret\n").expect("send to P");

    // A third process: non-blocking read of its link with Q -> EAGAIN.
    assert_errno(
        in_child(
            &link(&m, q, "recv"),
            libc::O_RDONLY | libc::O_NONBLOCK,
            true,
            None,
        ),
        libc::EAGAIN,
        "third process reading proc/Q/recv",
    );
    // Nor may it read "P's side" by naming P.
    assert_errno(
        in_child(
            &link(&m, ppid, "recv"),
            libc::O_RDONLY | libc::O_NONBLOCK,
            true,
            None,
        ),
        libc::EAGAIN,
        "third process reading proc/P/recv",
    );
    // A blocking reader in a third process gets nothing either.
    let o = m.sh(
        &format!(r#"timeout -s INT 1 cat "$M/proc/{q}/recv"; echo "rc=$?""#),
        SHORT,
    );
    assert_eq!(
        out_str(&o),
        "rc=124\n",
        "third process must not get it: {}",
        show(&o)
    );

    // The message is still there for P.
    std::fs::write(d.path().join("go"), b"").unwrap();
    let o = p.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "P got secret\n", "{}", show(&o));
}

/// A process running as nobody may not send to a root process (EPERM at open
/// of `send`), while nobody may send to nobody and root may send to anyone.
#[test]
fn nobody_cannot_send_to_root_process() {
    let m = Mount::new();
    let root_peer = sleeper();
    let target = link(&m, root_peer.pid(), "send");
    assert_errno(
        in_child(&target, libc::O_WRONLY, false, Some(NOBODY)),
        libc::EPERM,
        "nobody opening proc/<root pid>/send",
    );
    assert_errno(
        in_child(&link(&m, me(), "send"), libc::O_WRONLY, false, Some(NOBODY)),
        libc::EPERM,
        "nobody opening proc/<test pid>/send",
    );
    // Controls: a nobody process can reach the mount and send to another
    // nobody process (same uid), and root can send to a nobody process.
    let nobody_peer = hold(&[], Some(NOBODY)).expect("spawn sleep as nobody");
    in_child(
        &link(&m, nobody_peer.pid(), "send"),
        libc::O_WRONLY,
        false,
        Some(NOBODY),
    )
    .expect("nobody -> nobody send must be allowed");
    let o = m.sh_as_nobody(
        &format!(
            r#"echo hi > "$M/proc/{}/send" && echo ok"#,
            nobody_peer.pid()
        ),
        SHORT,
    );
    assert_eq!(
        out_str(&o),
        "ok\n",
        "nobody shell sending to a nobody process: {}",
        show(&o)
    );
    send_nb(&link(&m, nobody_peer.pid(), "send"), b"from root\n").expect("root -> nobody");
}

/// `proc/<pid>` exists for a live process; after it exits (and is reaped),
/// looking it up again gives ENOENT. A pid that never existed: ENOENT.
#[test]
fn exited_pid_lookup_gives_enoent() {
    let m = Mount::new();
    let s = sleeper();
    let dir = m.p(&format!("proc/{}", s.pid()));
    let md = std::fs::metadata(&dir).expect("proc/<live pid> exists");
    assert!(md.is_dir(), "proc/<pid> is a directory");
    std::fs::metadata(dir.join("send")).expect("proc/<live pid>/send exists");
    let pid = s.kill_and_reap();
    assert_errno(
        std::fs::metadata(&dir),
        libc::ENOENT,
        "lookup of an exited pid",
    );
    assert_errno(
        std::fs::metadata(m.p(&format!("proc/{pid}/send"))),
        libc::ENOENT,
        "lookup of an exited pid's send",
    );
    // A pid that does not exist at all.
    let mut never = 4_000_000u32;
    while Path::new(&format!("/proc/{never}")).exists() {
        never += 1;
    }
    assert_errno(
        std::fs::metadata(m.p(&format!("proc/{never}"))),
        libc::ENOENT,
        "lookup of a pid that does not exist",
    );
}

/// A send descriptor opened while the peer lived fails with ESRCH once the
/// peer has exited; the message queued for it is dropped and counted.
#[test]
fn send_to_exited_peer_gives_esrch_and_counts_drop() {
    let m = Mount::new();
    let dropped0 = num(&proc_status(&m), "dropped-on-exit");
    let s = sleeper();
    let mut f = open_with(&link(&m, s.pid(), "send"), false, true, libc::O_NONBLOCK)
        .expect("open send while the peer lives");
    f.write_all(b"never read\n")
        .expect("send while the peer lives");
    s.kill_and_reap();
    // The daemon learns of the exit from the peer's pidfd, a moment after
    // it happens: a write in that moment is taken, then dropped and counted.
    let mut last = f.write(b"too late\n");
    wait_until(SHORT, "a write to the exited peer fails", || {
        last.is_err() || {
            last = f.write(b"too late\n");
            last.is_err()
        }
    });
    assert_errno(last, libc::ESRCH, "write to an exited peer");
    wait_until(SHORT, "dropped-on-exit counts the lost message", || {
        num(&proc_status(&m), "dropped-on-exit") > dropped0
    });
}

/// 200 short-lived processes each exchange a message with a long-lived shell
/// (both directions, nothing left queued) and exit: the link count in
/// `proc/status` returns to its baseline within a few seconds.
#[test]
fn churn_of_200_processes_leaves_no_link_state() {
    let m = Mount::new();
    let base = num(&proc_status(&m), "links");
    let d = tempfile::tempdir().unwrap();
    let dd = d.path().display();
    let t = m.spawn_sh(&format!(
        r#"T=$$
        n=0
        for i in $(seq 200); do
          sh -c 'echo "hi $$" > "$M/proc/$1/send" && read -r ack < "$M/proc/$1/recv" && [ "$ack" = ok ]' sh "$T" &
          c=$!
          read -r msg < "$M/proc/$c/recv" || {{ echo "recv from $c failed"; exit 1; }}
          [ "$msg" = "hi $c" ] || {{ echo "from $c got '$msg'"; exit 1; }}
          echo ok > "$M/proc/$c/send" || {{ echo "send to $c failed"; exit 1; }}
          wait "$c" || {{ echo "child $c failed"; exit 1; }}
          n=$((n+1))
        done
        echo "$n" > "{dd}/done.tmp"; mv "{dd}/done.tmp" "{dd}/done"
        exec sleep 120"#
    ));
    let done = d.path().join("done");
    let start = Instant::now();
    let mut peak = base;
    while !done.exists() {
        assert!(
            start.elapsed() < LONG,
            "200 round trips did not finish within {LONG:?}"
        );
        peak = peak.max(num(&proc_status(&m), "links"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = std::fs::read_to_string(&done).unwrap();
    assert_eq!(n.trim(), "200", "all 200 round trips completed");
    eprintln!(
        "links: baseline {base}, peak seen {peak}, after churn {}",
        num(&proc_status(&m), "links")
    );
    wait_until(
        Duration::from_secs(5),
        "links returns to its baseline",
        || num(&proc_status(&m), "links") <= base,
    );
    t.kill();
    drop(t);
    wait_until(Duration::from_secs(5), "links stays at baseline", || {
        num(&proc_status(&m), "links") <= base
    });
}

/// 200 short-lived processes each send one message to the test process and
/// exit. What they sent was sent: like data in a pipe whose writer has gone,
/// it stays receivable, and `proc/<pid>` stays visible to the receiver (and
/// listed in `proc/`) until it is received. Once received, the link state of
/// the exited processes is reclaimed: `links:` in `proc/status` returns to its
/// baseline (no growth with process churn).
#[test]
fn churn_of_200_senders_to_test_process_leaves_no_state() {
    let m = Mount::new();
    let base = num(&proc_status(&m), "links");
    let o = m.sh(
        &format!(
            r#"for i in $(seq 200); do
              sh -c 'echo "hi $$" > "$M/proc/$1/send"' sh {} || exit 1
            done
            echo sent"#,
            me()
        ),
        LONG,
    );
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));
    // The senders have exited; their messages are listed and receivable.
    let mut senders: Vec<u32> = std::fs::read_dir(m.p("proc"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    senders.sort();
    assert_eq!(
        senders.len(),
        200,
        "proc/ lists the exited senders: {senders:?}"
    );
    for pid in &senders {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(link(&m, *pid, "recv"))
            .unwrap_or_else(|e| panic!("open proc/{pid}/recv of an exited sender: {e}"));
        let mut buf = vec![0u8; 256];
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("hi {pid}\n").as_bytes());
        assert_eq!(f.read(&mut buf).unwrap(), 0, "end of message");
        // Nothing more will come from an exited process.
        assert_errno(
            f.read(&mut buf),
            libc::ESRCH,
            "read past the last message of an exited sender",
        );
    }
    let start = Instant::now();
    let mut last = proc_status(&m);
    while num(&last, "links") > base {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "links did not return to its baseline {base} within 5 s; proc/status: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        last = proc_status(&m);
    }
    // What is left is the watch of the test process itself: a link end,
    // watched until it exits.
    let own_watch = m.default_watch_cost();
    wait_until(
        Duration::from_secs(5),
        "memory-used back to the test process's own watch",
        || num(&proc_status(&m), "memory-used") == own_watch,
    );
    // And the exited pids are gone from proc/ once nothing waits.
    assert!(std::fs::metadata(link(&m, senders[0], "recv")).is_err());
}

/// `proc/P/status` shows the link from the caller's side: messages and bytes
/// queued each way, sent and received counts, the peer.
#[test]
fn link_status_shows_counts() {
    let m = Mount::new();
    let d = tempfile::tempdir().unwrap();
    let dd = d.path().display();
    let t = me();
    let p = m.spawn_sh(&format!(
        r#"while [ ! -e "{dd}/go" ]; do sleep 0.01; done
        read -r x < "$M/proc/{t}/recv" && echo "got $x"
        while IFS= read -r l; do echo "$l"; done < "$M/proc/{t}/status""#
    ));
    let ppid = p.pid();
    let send = link(&m, ppid, "send");
    send_nb(&send, b"ab\n").unwrap();
    send_nb(&send, b"cde\n").unwrap();

    let st = status_map(&link(&m, ppid, "status"));
    assert_eq!(
        st.get("peer").map(String::as_str),
        Some(ppid.to_string().as_str()),
        "{st:?}"
    );
    assert_eq!(num(&st, "to-peer-messages"), 2, "{st:?}");
    assert_eq!(num(&st, "to-peer-bytes"), 7, "{st:?}");
    assert_eq!(num(&st, "from-peer-messages"), 0, "{st:?}");
    assert_eq!(num(&st, "sent"), 2, "{st:?}");
    let alive = st.get("peer-alive").cloned().unwrap_or_default();
    assert!(
        !["0", "no", "false"].contains(&alive.as_str()) && !alive.is_empty(),
        "peer-alive for a live peer: {st:?}"
    );

    std::fs::write(d.path().join("go"), b"").unwrap();
    let o = p.wait_timeout(SHORT);
    let text = out_str(&o);
    assert!(text.starts_with("got ab\n"), "{}", show(&o));
    let theirs = parse_status(&text);
    assert_eq!(
        theirs.get("peer").map(String::as_str),
        Some(t.to_string().as_str()),
        "{}",
        show(&o)
    );
    assert_eq!(
        num(&theirs, "from-peer-messages"),
        1,
        "P's view: {}",
        show(&o)
    );
    assert_eq!(num(&theirs, "from-peer-bytes"), 4, "P's view: {}", show(&o));
    assert_eq!(num(&theirs, "received"), 1, "P's view: {}", show(&o));
    assert_eq!(
        num(&theirs, "to-peer-messages"),
        0,
        "P's view: {}",
        show(&o)
    );
}

/// A blocked read on a link ends promptly on SIGINT (`timeout -s INT 1`).
#[test]
fn blocked_link_read_is_interruptible() {
    let m = Mount::new();
    let start = Instant::now();
    let o = m.sh(
        &format!(
            r#"timeout -s INT 1 cat "$M/proc/{}/recv"; echo "rc=$?""#,
            me()
        ),
        SHORT,
    );
    let took = start.elapsed();
    assert_eq!(out_str(&o), "rc=124\n", "{}", show(&o));
    assert!(
        took < Duration::from_millis(1500),
        "interrupted read took {took:?}"
    );
}

/// O_NONBLOCK read on an empty link gives EAGAIN.
#[test]
fn nonblocking_link_read_gives_eagain() {
    let m = Mount::new();
    let s = sleeper();
    assert_errno(
        recv_nb(&link(&m, s.pid(), "recv")),
        libc::EAGAIN,
        "O_NONBLOCK read of an empty link",
    );
    let mut f = open_with(&link(&m, s.pid(), "recv"), true, false, libc::O_NONBLOCK).unwrap();
    let mut buf = [0u8; 64];
    assert_errno(f.read(&mut buf), libc::EAGAIN, "second O_NONBLOCK read");
}

/// poll(2) on a link's `recv`: not readable while empty, readable once the peer
/// has sent, and the message is then there to read.
#[test]
fn poll_on_link_recv_fires_after_send() {
    let m = Mount::new();
    let d = tempfile::tempdir().unwrap();
    let dd = d.path().display();
    let t = me();
    let p = m.spawn_sh(&format!(
        r#"while [ ! -e "{dd}/go" ]; do sleep 0.01; done
        echo hello > "$M/proc/{t}/send" && echo sent"#
    ));
    let mut f = open_with(&link(&m, p.pid(), "recv"), true, false, libc::O_NONBLOCK).unwrap();
    let (_, r) = poll1(&f, libc::POLLIN, 0);
    assert_eq!(
        r & libc::POLLIN,
        0,
        "recv must not be readable before a send (revents {r:#x})"
    );
    std::fs::write(d.path().join("go"), b"").unwrap();
    let start = Instant::now();
    let (_, r) = poll1(&f, libc::POLLIN, 5000);
    assert_ne!(
        r & libc::POLLIN,
        0,
        "poll did not report POLLIN within 5 s (revents {r:#x})"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(read_message(&mut f).unwrap(), b"hello\n");
    let o = p.wait_timeout(SHORT);
    assert_eq!(out_str(&o), "sent\n", "{}", show(&o));
}

/// Link state lives only while it carries something: once a message has
/// been received and both sides have closed their descriptors, nothing is
/// left of the link, though both processes live on.
#[test]
fn an_idle_link_between_live_processes_is_reclaimed() {
    let m = Mount::new();
    let links0 = num(&proc_status(&m), "links");
    let child = m.spawn_sh(&format!(
        r#"read -r msg < "$M/proc/{}/recv" && echo "got $msg" > "$M/proc/{}/send"; exec sleep 60"#,
        me(),
        me()
    ));
    let mut f = open_with(&link(&m, child.pid(), "send"), false, true, 0).unwrap();
    f.write_all(b"hi\n").unwrap();
    drop(f);
    let reply = within(SHORT, "the child's answer", {
        let p = link(&m, child.pid(), "recv");
        move || read_message(&mut std::fs::File::open(&p).unwrap()).unwrap()
    });
    assert_eq!(reply, b"got hi\n");
    wait_until(SHORT, "no link state left", || {
        num(&proc_status(&m), "links") == links0
    });
    assert!(
        std::fs::read_to_string(format!("/proc/{}/stat", child.pid())).is_ok(),
        "the child still lives"
    );
}
