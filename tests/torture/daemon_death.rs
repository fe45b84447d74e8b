//! SIGKILL of the daemon itself while clients use the mount: blocked calls
//! end with ECONNABORTED or ENOTCONN (ipcfs(7) BLOCKING AND INTERRUPTS), and
//! the mountpoint mounts again.

use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

use crate::harness::{daemon_answers, seed, step};
use crate::workers::blocker_kid;

/// SIGKILL of the daemon while readers, senders, a receipt reader, a link
/// reader, a packets reader, a poller and a sending and a receiving loop use
/// the mount: every one gets an error within seconds; after `umount -l` a new
/// daemon mounts the same mountpoint and works.
pub(crate) fn daemon_sigkill_frees_every_client_and_the_mountpoint_mounts_again() {
    let _ = seed("daemon-kill");
    let parent = tempfile::tempdir().unwrap();
    let mp = parent.path().canonicalize().unwrap().join("mnt");
    let argv = vec![
        "--allow-other".to_string(),
        mp.to_string_lossy().into_owned(),
    ];
    let mut m = Mount::spawn_raw(&argv, mp.clone(), None);
    let e = m.mailbox("e", "");
    let f = m.mailbox("f", "capacity=1");
    send_nb(&f.join("send"), b"fills it").unwrap();
    let z = m.mailbox("z", "capacity=0");
    let r = m.mailbox("r", "");
    let p = m.mailbox("p", "");
    let h = m.mailbox("h", "");
    let peer = sleeper();
    let mut clients = vec![
        blocker_kid("read", &e.join("recv")),
        blocker_kid("read", &e.join("recv")),
        blocker_kid("packets-read", &p.join("packets")),
        blocker_kid("write", &f.join("send")),
        blocker_kid("write", &f.join("send")),
        blocker_kid("write", &z.join("send")),
        blocker_kid("receipt", &r.join("send")),
        blocker_kid("read", &m.p(&format!("proc/{}/recv", peer.pid()))),
    ];
    let parked = clients.len() as u64;
    for c in &mut clients {
        c.expect("OPEN", step());
    }
    wait_until(step(), "every blocked call is parked", || {
        num(&status_map(&m.p("proc/status")), "parked") == parked
    });
    let mut poller = blocker_kid("poll", &e.join("recv"));
    poller.expect("OPEN", step());
    clients.push(poller);
    clients.push(blocker_kid("loop-recv", &h.join("recv")));
    clients.push(blocker_kid("loop-send", &h.join("send")));
    wait_until(step(), "the loops move messages", || {
        count(&h, "received") > 200
    });

    let t0 = Instant::now();
    m.signal_daemon(libc::SIGKILL);
    let st = m.wait_daemon_exit(step());
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{}", describe(&st));
    let deadline = Duration::from_secs(5);
    let mut outcomes = Vec::new();
    let mut slowest = Duration::ZERO;
    for c in &mut clients {
        let res = c.expect("RESULT", deadline.saturating_sub(t0.elapsed()));
        let took = t0.elapsed();
        slowest = slowest.max(took);
        c.wait_ok(step());
        let errno: i32 = res
            .strip_prefix("errno ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: expected an error, got {res:?}", c.what));
        assert!(
            errno == libc::ENOTCONN || errno == libc::ECONNABORTED,
            "{}: {} (expected ENOTCONN or ECONNABORTED)",
            c.what,
            io::Error::from_raw_os_error(errno)
        );
        outcomes.push(format!(
            "{} -> {}",
            c.what.split(' ').next().unwrap(),
            errname(errno)
        ));
    }
    // New calls on the dead mount fail the same way, at once.
    let probe = e.join("send");
    let r = within(step(), "open on a dead mount", move || File::open(&probe));
    let probe_errno = errno(&r.expect_err("open on a dead mount"));
    assert_eq!(probe_errno, libc::ENOTCONN, "open on a dead mount");

    // The same mountpoint, mounted again by a new daemon, after a lazy unmount.
    let o = Command::new("umount").arg("-l").arg(&mp).output().unwrap();
    assert!(o.status.success(), "umount -l: {}", show(&o));
    wait_until(step(), "the dead mount is gone", || !is_fuse_mounted(&mp));
    let t1 = Instant::now();
    let mut m2 = Mount::spawn_raw(&argv, mp.clone(), None);
    let remount = t1.elapsed();
    assert!(
        !m2.p("e").exists(),
        "a new daemon starts empty: all state was in the old one"
    );
    let b = m2.mailbox("again", "");
    let reader = blocker_kid("read", &b.join("recv"));
    wait_status(&b.join("status"), "receivers-waiting", "1");
    send_nb(&b.join("send"), b"after the crash").unwrap();
    let mut reader = reader;
    assert_eq!(
        reader.expect("RESULT", step()),
        format!("ok read {} bytes", b"after the crash".len())
    );
    daemon_answers(&mut m2, "the new daemon");
    println!(
        "torture daemon SIGKILL: {} clients ({parked} parked, a poller, a sending and a receiving loop) \
         all failed within {slowest:.2?}: {}; a new open: {}; remounted on the same path in {remount:.2?}",
        clients.len(),
        outcomes.join(", "),
        errname(probe_errno)
    );
    drop(m2);
    drop(m);
}
